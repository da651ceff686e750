package dimse

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// rejectedError is an association answered with A-ASSOCIATE-RJ.
type rejectedError struct{ why string }

func (e *rejectedError) Error() string { return "dicom: association rejected: " + e.why }

var (
	errRelease   = errors.New("dicom upper layer: peer released the association")
	errPeerAbort = errors.New("dicom upper layer: peer aborted the association")
	errShutdown  = errors.New("dicom upper layer: server shutting down")
	errDataDone  = errors.New("dimse: data set read after the handler returned")
)

// Presentation context kinds.
const (
	kindNone byte = iota
	kindEcho
	kindFind
	kindStore
)

const (
	uidVerification    = "1.2.840.10008.1.1"
	uidPatientRootFind = "1.2.840.10008.5.1.4.1.2.1.1"
	uidStudyRootFind   = "1.2.840.10008.5.1.4.1.2.2.1"
)

var (
	echoSyntaxes  = []string{tsImplicitLE, tsExplicitLE, tsExplicitBE}
	findSyntaxes  = []string{tsImplicitLE, tsExplicitLE}
	storeSyntaxes = []string{
		tsImplicitLE, tsExplicitLE, tsExplicitBE, tsDeflated,
		"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", // JPEG baseline, extended
		"1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70", // JPEG lossless
		"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", // JPEG-LS
		"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", // JPEG 2000
		"1.2.840.10008.1.2.5", // RLE
	}
)

// classify maps an abstract syntax to the service it is accepted for.
// Standard (1.2.840.10008) UIDs are storage only under the storage roots, so
// e.g. C-MOVE or worklist contexts are refused; private UIDs are assumed to
// be private storage classes.
func classify(uid string) byte {
	switch uid {
	case "":
		return kindNone
	case uidVerification:
		return kindEcho
	case uidPatientRootFind, uidStudyRootFind:
		return kindFind
	}
	if strings.HasPrefix(uid, "1.2.840.10008.5.1.4.1.1.") {
		return kindStore
	}
	switch uid {
	case "1.2.840.10008.5.1.4.38.1", "1.2.840.10008.5.1.4.39.1", // hanging protocol, color palette
		"1.2.840.10008.5.1.4.43.1", "1.2.840.10008.5.1.4.44.1", "1.2.840.10008.5.1.4.45.1": // implant templates
		return kindStore
	}
	if strings.HasPrefix(uid, "1.2.840.10008.") {
		return kindNone
	}
	return kindStore
}

type presCtx struct {
	kind     byte
	abstract string
	ts       string
}

// timedReader applies the idle read timeout to every read from the socket
// and fails fast once the server is shutting down.
type timedReader struct {
	nc      net.Conn
	timeout time.Duration
	poll    bool
	closing *atomic.Bool
}

func (t *timedReader) Read(p []byte) (int, error) {
	if t.closing.Load() {
		return 0, errShutdown
	}
	switch {
	case t.poll:
		_ = t.nc.SetReadDeadline(time.Now().Add(time.Millisecond))
	case t.timeout > 0:
		_ = t.nc.SetReadDeadline(time.Now().Add(t.timeout))
	}
	// Checked again after setting the deadline so a concurrent shutdown
	// cannot be overwritten by the new deadline.
	if t.closing.Load() {
		return 0, errShutdown
	}
	return t.nc.Read(p)
}

// conn is one association. Only its goroutine touches it, apart from the
// closing flag and the socket deadline set on shutdown.
type conn struct {
	s       *Server
	ctx     context.Context
	nc      net.Conn
	tr      *timedReader
	r       *bufio.Reader
	w       *bufio.Writer
	log     *slog.Logger
	closing atomic.Bool
	aborted bool

	rq      *assocRQ
	ctxs    [256]presCtx
	peerMax uint32

	// P-DATA-TF read state: bytes left in the current PDU (after the PDV
	// being read) and in the current PDV's value.
	pduLeft  uint32
	pdvLeft  uint32
	pdvCtx   byte
	pdvFlags byte
	hdr      [6]byte

	cmdBuf   []byte
	wbuf     []byte
	idBuf    []byte
	lastPoll time.Time
	stats    AssociationStats
}

func (s *Server) serveConn(ctx context.Context, nc net.Conn) {
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := &conn{s: s, ctx: ctx, nc: nc, log: s.log.With("remote", nc.RemoteAddr().String())}
	c.tr = &timedReader{nc: nc, closing: &c.closing}
	// Small buffers until the association is accepted, so connections
	// that never associate cost little.
	c.r = bufio.NewReaderSize(c.tr, 4096)
	c.w = bufio.NewWriterSize(nc, 4096)
	// On shutdown, interrupt blocked reads and writes; the association then
	// sends A-ABORT under a fresh short deadline.
	stop := context.AfterFunc(ctx, func() {
		c.closing.Store(true)
		_ = nc.SetDeadline(time.Now())
	})
	defer func() {
		stop()
		if p := recover(); p != nil {
			c.log.Error("dicom: panic in association", "panic", p, "stack", string(debug.Stack()))
			if s.onPanic != nil {
				s.onPanic(p)
			}
			c.abort(abortNotSpecified)
			c.stats.Err = fmt.Errorf("panic: %v", p)
		}
		nc.Close()
		c.stats.Duration = time.Since(start)
		if s.cfg.OnAssociation != nil && c.rq != nil {
			s.cfg.OnAssociation(c.stats)
		}
	}()
	c.stats.Err = c.run()
	var re *rejectedError
	if c.rq == nil || errors.As(c.stats.Err, &re) {
		return
	}
	lvl := slog.LevelInfo
	if c.stats.Err != nil {
		lvl = slog.LevelWarn
	}
	c.log.Log(ctx, lvl, "dicom: association ended", "stores", c.stats.Stores, "finds", c.stats.Finds, "failures", c.stats.Failures,
		"bytes", c.stats.BytesReceived, "duration", time.Since(start), "err", c.stats.Err)
}

// run negotiates the association and serves messages until release, abort
// or error; protocol errors are answered with A-ABORT.
func (c *conn) run() error {
	accepted, err := c.negotiate()
	if err != nil || !accepted {
		return c.fail(err)
	}
	defer func() { <-c.s.slots }()
	for {
		err := c.serveMessage()
		switch {
		case err == nil:
			continue
		case errors.Is(err, errRelease):
			c.wbuf = appendReleaseRP(c.wbuf[:0])
			if err := c.send(c.wbuf); err != nil {
				return fmt.Errorf("dicom: sending A-RELEASE-RP: %w", err)
			}
			return nil
		default:
			return c.fail(err)
		}
	}
}

// fail aborts the association as err warrants and returns err.
func (c *conn) fail(err error) error {
	var pe *protoError
	var re *rejectedError
	switch {
	case err == nil, errors.Is(err, errPeerAbort), errors.Is(err, io.EOF), errors.As(err, &re):
	case errors.As(err, &pe):
		c.abort(pe.reason)
	default: // timeouts, shutdown, handler-side cancellation
		c.abort(abortNotSpecified)
	}
	if c.closing.Load() && !errors.Is(err, errPeerAbort) {
		return errShutdown
	}
	return err
}

// abort sends an A-ABORT (source: service provider) once, best effort.
func (c *conn) abort(reason byte) {
	if c.aborted {
		return
	}
	c.aborted = true
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	c.w.Reset(c.nc) // drop anything half-written
	_, _ = c.nc.Write(appendAbort(nil, 2, reason))
}

func (c *conn) send(b []byte) error {
	if _, err := c.w.Write(b); err != nil {
		return err
	}
	return c.flush()
}

func (c *conn) flush() error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	// Checked after setting the deadline, as in timedReader.Read.
	if c.closing.Load() {
		return errShutdown
	}
	return c.w.Flush()
}

func (c *conn) readPDUHeader() (typ byte, n uint32, err error) {
	if _, err := io.ReadFull(c.r, c.hdr[:]); err != nil {
		return 0, 0, err
	}
	return c.hdr[0], binary.BigEndian.Uint32(c.hdr[2:6]), nil
}

// negotiate reads the A-ASSOCIATE-RQ and answers AC or RJ. It reports
// whether the association was accepted (and a server slot taken).
func (c *conn) negotiate() (bool, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(c.s.cfg.AssociationTimeout))
	typ, n, err := c.readPDUHeader()
	if err != nil {
		return false, fmt.Errorf("dicom: reading A-ASSOCIATE-RQ: %w", err)
	}
	if typ != pduAssociateRQ {
		return false, protoErrf(abortUnexpectedPDU, "expected A-ASSOCIATE-RQ, got PDU type 0x%02x", typ)
	}
	if n > maxAssociateRQ {
		return false, protoErrf(abortInvalidParm, "A-ASSOCIATE-RQ length %d too large", n)
	}
	// ReadAll grows the buffer as bytes arrive rather than trusting n.
	body, err := io.ReadAll(io.LimitReader(c.r, int64(n)))
	if err == nil && len(body) < int(n) {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return false, fmt.Errorf("dicom: reading A-ASSOCIATE-RQ: %w", err)
	}
	rq, err := parseAssociateRQ(body)
	if err != nil {
		return false, err
	}
	c.rq = rq
	c.stats.CallingAE, c.stats.CalledAE = rq.callingAE, rq.calledAE
	c.log = c.log.With("calling_ae", rq.callingAE)

	reject := func(result, source, reason byte, why string) (bool, error) {
		c.log.Warn("dicom: association rejected", "called_ae", rq.calledAE, "reason", why)
		if err := c.send(appendAssociateRJ(nil, result, source, reason)); err != nil {
			return false, fmt.Errorf("dicom: sending A-ASSOCIATE-RJ: %w", err)
		}
		return false, &rejectedError{why}
	}
	switch {
	case rq.protocolVersion&1 == 0:
		return reject(rjPermanent, rjSourceACSE, rjACSEProtocolVersion, "protocol version not supported")
	case rq.appContext != appContextDICOM:
		return reject(rjPermanent, rjSourceUser, rjUserAppContext, "application context not supported")
	case rq.calledAE != c.s.cfg.AETitle:
		return reject(rjPermanent, rjSourceUser, rjUserCalledAE, "called AE title not recognized")
	case c.s.allowed != nil && !c.s.allowed[rq.callingAE]:
		return reject(rjPermanent, rjSourceUser, rjUserCallingAE, "calling AE title not allowed")
	case rq.maxPDU != 0 && rq.maxPDU < 64:
		return false, protoErrf(abortInvalidParm, "peer maximum PDU length %d too small", rq.maxPDU)
	}
	select {
	case c.s.slots <- struct{}{}:
	default:
		return reject(rjTransient, rjSourceProvider, rjProviderLimitReached, "too many associations")
	}
	c.peerMax = rq.maxPDU
	results := make([]pcResult, 0, len(rq.contexts))
	accepted := 0
	for _, pc := range rq.contexts {
		r := c.negotiateContext(pc)
		if r.result == pcAccept {
			accepted++
		}
		results = append(results, r)
	}
	if err := c.send(appendAssociateAC(nil, rq, results, c.s.cfg.MaxPDULength)); err != nil {
		<-c.s.slots
		return false, fmt.Errorf("dicom: sending A-ASSOCIATE-AC: %w", err)
	}
	c.tr.timeout = c.s.cfg.ReadTimeout
	// Full-size buffers for data. A peer should not send before the AC, but
	// if it did, the small reader keeps those bytes and drains first.
	if c.r.Buffered() == 0 {
		c.r = bufio.NewReaderSize(c.tr, 128<<10)
	} else {
		c.r = bufio.NewReaderSize(c.r, 128<<10)
	}
	c.w = bufio.NewWriterSize(c.nc, 64<<10)
	c.log.Debug("dicom: association accepted", "contexts", len(rq.contexts), "accepted", accepted,
		"peer_max_pdu", rq.maxPDU, "peer_impl", rq.implClassUID, "peer_version", rq.implVersion)
	return true, nil
}

func (c *conn) negotiateContext(pc pcProposal) pcResult {
	r := pcResult{id: pc.id, ts: tsImplicitLE}
	if pc.id%2 == 0 {
		r.result = pcProviderReject
		return r
	}
	kind := classify(pc.abstract)
	var supported []string
	switch kind {
	case kindEcho:
		supported = echoSyntaxes
	case kindFind:
		supported = findSyntaxes
	case kindStore:
		supported = storeSyntaxes
	default:
		r.result = pcAbstractUnsupported
		return r
	}
	for _, ts := range pc.ts {
		for _, ok := range supported {
			if ts == ok {
				r.ts, r.result = ts, pcAccept
				c.ctxs[pc.id] = presCtx{kind: kind, abstract: pc.abstract, ts: ts}
				return r
			}
		}
	}
	r.result = pcTransferUnsupported
	return r
}

// nextPDV reads up to the next PDV header, reading a new PDU header when the
// current P-DATA-TF is used up. It returns errRelease or errPeerAbort for
// those PDUs.
func (c *conn) nextPDV() error {
	for c.pduLeft == 0 {
		typ, n, err := c.readPDUHeader()
		if err != nil {
			return err
		}
		switch typ {
		case pduPData:
			if n < 6 || n > maxIncomingPDU {
				return protoErrf(abortInvalidParm, "P-DATA-TF length %d", n)
			}
			c.pduLeft = n
		case pduReleaseRQ, pduAbort:
			if n != 4 {
				return protoErrf(abortInvalidParm, "PDU type 0x%02x length %d", typ, n)
			}
			if _, err := c.r.Discard(4); err != nil {
				return midPDU(err)
			}
			if typ == pduAbort {
				return errPeerAbort
			}
			return errRelease
		case pduAssociateRQ, pduAssociateAC, pduAssociateRJ, pduReleaseRP:
			return protoErrf(abortUnexpectedPDU, "unexpected PDU type 0x%02x", typ)
		default:
			return protoErrf(abortUnrecognizedPDU, "unknown PDU type 0x%02x", typ)
		}
	}
	if c.pduLeft < 6 {
		return protoErrf(abortInvalidParm, "%d stray bytes in P-DATA-TF", c.pduLeft)
	}
	if _, err := io.ReadFull(c.r, c.hdr[:]); err != nil {
		return midPDU(err)
	}
	n := binary.BigEndian.Uint32(c.hdr[0:4])
	if n < 2 || n > c.pduLeft-4 {
		return protoErrf(abortInvalidParm, "PDV length %d in P-DATA-TF with %d bytes left", n, c.pduLeft)
	}
	c.pduLeft -= 4 + n
	c.pdvLeft = n - 2
	c.pdvCtx, c.pdvFlags = c.hdr[4], c.hdr[5]
	if c.ctxs[c.pdvCtx].kind == kindNone {
		return protoErrf(abortInvalidParm, "PDV for presentation context %d, which was not accepted", c.pdvCtx)
	}
	return nil
}

// midPDU reports end of stream inside a PDU as truncation, not a clean close.
func midPDU(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

const (
	pdvCommand = 0x01
	pdvLast    = 0x02
)

// readCommand reads the command PDVs of the next message into c.cmdBuf.
func (c *conn) readCommand() (byte, error) {
	c.cmdBuf = c.cmdBuf[:0]
	var ctxID byte
	for first := true; ; first = false {
		if err := c.nextPDV(); err != nil {
			if !first {
				if errors.Is(err, errRelease) {
					return 0, protoErrf(abortUnexpectedPDU, "A-RELEASE-RQ inside a command")
				}
				err = midPDU(err)
			}
			return 0, err
		}
		if c.pdvFlags&pdvCommand == 0 {
			return 0, protoErrf(abortUnexpectedParm, "data PDV where a command was expected")
		}
		if first {
			ctxID = c.pdvCtx
		} else if c.pdvCtx != ctxID {
			return 0, protoErrf(abortUnexpectedParm, "command fragments on different presentation contexts")
		}
		if len(c.cmdBuf)+int(c.pdvLeft) > maxCommandSet {
			return 0, protoErrf(abortInvalidParm, "command set larger than %d bytes", maxCommandSet)
		}
		off := len(c.cmdBuf)
		c.cmdBuf = append(c.cmdBuf, make([]byte, c.pdvLeft)...)
		if _, err := io.ReadFull(c.r, c.cmdBuf[off:]); err != nil {
			return 0, midPDU(err)
		}
		c.pdvLeft = 0
		if c.pdvFlags&pdvLast != 0 {
			return ctxID, nil
		}
	}
}

// dataStream is the io.Reader over one message's data set PDVs.
type dataStream struct {
	c    *conn
	ctx  byte
	last bool
	done bool
	n    int64
	err  error
}

func (c *conn) dataStream(ctxID byte) *dataStream {
	c.pdvLeft = 0
	return &dataStream{c: c, ctx: ctxID}
}

// next advances to the following data PDV of this message.
func (d *dataStream) next() error {
	c := d.c
	if err := c.nextPDV(); err != nil {
		if errors.Is(err, errRelease) {
			err = protoErrf(abortUnexpectedPDU, "A-RELEASE-RQ inside a data set")
		}
		return midPDU(err)
	}
	if c.pdvFlags&pdvCommand != 0 {
		return protoErrf(abortUnexpectedParm, "command PDV inside a data set")
	}
	if c.pdvCtx != d.ctx {
		return protoErrf(abortUnexpectedParm, "data set fragments on different presentation contexts")
	}
	d.last = c.pdvFlags&pdvLast != 0
	return nil
}

// ready makes c.pdvLeft > 0, or reports io.EOF at the end of the data set.
func (d *dataStream) ready() error {
	if d.err != nil {
		return d.err
	}
	if d.done {
		return errDataDone
	}
	for d.c.pdvLeft == 0 {
		if d.last {
			return io.EOF
		}
		if err := d.next(); err != nil {
			d.err = err
			return err
		}
	}
	return nil
}

func (d *dataStream) Read(p []byte) (int, error) {
	if err := d.ready(); err != nil {
		return 0, err
	}
	c := d.c
	p = p[:min(len(p), int(c.pdvLeft))]
	n, err := c.r.Read(p)
	c.pdvLeft -= uint32(n)
	d.n += int64(n)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		d.err = err
	}
	return n, err
}

// WriteTo lets io.Copy write straight from the read buffer.
func (d *dataStream) WriteTo(w io.Writer) (int64, error) {
	c := d.c
	var total int64
	for {
		if err := d.ready(); err != nil {
			if err == io.EOF {
				return total, nil
			}
			return total, err
		}
		want := min(int(c.pdvLeft), c.r.Size())
		if b := c.r.Buffered(); b > 0 {
			want = min(want, b)
		}
		buf, err := c.r.Peek(want)
		if len(buf) == 0 && err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			d.err = err
			return total, err
		}
		n, werr := w.Write(buf)
		_, _ = c.r.Discard(n)
		c.pdvLeft -= uint32(n)
		d.n += int64(n)
		total += int64(n)
		if werr != nil {
			return total, werr
		}
	}
}

// drain discards what the handler left unread and closes the stream.
func (d *dataStream) drain() error {
	defer func() { d.done = true }()
	for {
		if err := d.ready(); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		n, err := d.c.r.Discard(int(d.c.pdvLeft))
		d.c.pdvLeft -= uint32(n)
		d.n += int64(n)
		if err != nil {
			err = midPDU(err)
			d.err = err
			return err
		}
	}
}

// writePData sends data as PDVs on ctxID, fragmented to the peer's maximum
// PDU length.
func (c *conn) writePData(ctxID byte, flags byte, data []byte) error {
	maxVal := defaultMaxPDU - 6
	if c.peerMax != 0 {
		maxVal = int(c.peerMax) - 6
	}
	for {
		chunk := data[:min(len(data), maxVal)]
		data = data[len(chunk):]
		f := flags
		if len(data) == 0 {
			f |= pdvLast
		}
		var h [12]byte
		h[0] = pduPData
		binary.BigEndian.PutUint32(h[2:6], uint32(len(chunk)+6))
		binary.BigEndian.PutUint32(h[6:10], uint32(len(chunk)+2))
		h[10], h[11] = ctxID, f
		if _, err := c.w.Write(h[:]); err != nil {
			return err
		}
		if _, err := c.w.Write(chunk); err != nil {
			return err
		}
		if len(data) == 0 {
			return nil
		}
	}
}

// respond sends a response command (and identifier, if any) and flushes.
func (c *conn) respond(ctxID byte, r *response, identifier []byte) error {
	r.dataSet = identifier != nil
	if isFailure(r.status) {
		c.stats.Failures++
	}
	c.wbuf = appendResponse(c.wbuf[:0], r)
	if err := c.writePData(ctxID, pdvCommand, c.wbuf); err != nil {
		return fmt.Errorf("dicom: sending response: %w", err)
	}
	if identifier != nil {
		if err := c.writePData(ctxID, 0, identifier); err != nil {
			return fmt.Errorf("dicom: sending identifier: %w", err)
		}
	}
	if err := c.flush(); err != nil {
		return fmt.Errorf("dicom: sending response: %w", err)
	}
	return nil
}

// isFailure reports whether a DIMSE status is a failure (not success,
// warning, pending or cancel).
func isFailure(s uint16) bool {
	switch {
	case s == StatusSuccess, s == StatusPending, s == 0xFF01, s == StatusCancel:
		return false
	case s&0xF000 == 0xB000, s == 0x0107, s == 0x0116:
		return false
	}
	return true
}

// serveMessage reads and answers one DIMSE message.
func (c *conn) serveMessage() error {
	ctxID, err := c.readCommand()
	if err != nil {
		return err
	}
	cmd, err := parseCommand(c.cmdBuf)
	if err != nil {
		return protoErrf(abortInvalidParm, "%v", err)
	}
	pc := &c.ctxs[ctxID]
	switch cmd.field {
	case cmdCEchoRQ:
		if err := c.skipDataSet(ctxID, &cmd); err != nil {
			return err
		}
		return c.respond(ctxID, &response{field: cmdCEchoRQ | cmdResponse, respondingTo: cmd.messageID,
			status: StatusSuccess, sopClassUID: cmd.sopClassUID}, nil)
	case cmdCStoreRQ:
		return c.handleStore(ctxID, pc, &cmd)
	case cmdCFindRQ:
		return c.handleFind(ctxID, pc, &cmd)
	case cmdCCancelRQ:
		// A cancel that arrives after its C-FIND finished: nothing to do.
		return c.skipDataSet(ctxID, &cmd)
	}
	if cmd.field&cmdResponse != 0 {
		return protoErrf(abortUnexpectedParm, "unexpected DIMSE response 0x%04x", cmd.field)
	}
	if err := c.skipDataSet(ctxID, &cmd); err != nil {
		return err
	}
	c.log.Warn("dicom: unsupported DIMSE command", "command", fmt.Sprintf("0x%04x", cmd.field))
	return c.respond(ctxID, &response{field: cmd.field | cmdResponse, respondingTo: cmd.messageID,
		status: StatusUnrecognizedOperation, sopClassUID: cmd.sopClassUID}, nil)
}

func (c *conn) skipDataSet(ctxID byte, cmd *command) error {
	if !cmd.hasDataSet() {
		return nil
	}
	return c.dataStream(ctxID).drain()
}

func (c *conn) handleStore(ctxID byte, pc *presCtx, cmd *command) error {
	rsp := &response{field: cmdCStoreRQ | cmdResponse, respondingTo: cmd.messageID,
		sopClassUID: cmd.sopClassUID, sopInstanceUID: cmd.sopInstanceUID}
	if !cmd.hasDataSet() {
		rsp.status, rsp.errorComment = StatusCannotUnderstand, "C-STORE without a data set"
		return c.respond(ctxID, rsp, nil)
	}
	d := c.dataStream(ctxID)
	if pc.kind != kindStore {
		if err := d.drain(); err != nil {
			return err
		}
		rsp.status = StatusSOPClassNotSupported
		return c.respond(ctxID, rsp, nil)
	}
	c.stats.Stores++
	req := &StoreRequest{
		CallingAE: c.rq.callingAE, CalledAE: c.rq.calledAE,
		SOPClassUID: cmd.sopClassUID, SOPInstanceUID: cmd.sopInstanceUID,
		TransferSyntaxUID: pc.ts, Dataset: d,
	}
	status, herr := c.s.cfg.Handler.CStore(c.ctx, req)
	// A broken stream means the association is unusable whatever the
	// handler said.
	if d.err != nil {
		return d.err
	}
	if err := d.drain(); err != nil {
		return err
	}
	c.stats.BytesReceived += d.n
	if c.ctx.Err() != nil {
		return c.ctx.Err()
	}
	if herr != nil {
		c.log.Warn("dicom: C-STORE failed", "sop_instance", cmd.sopInstanceUID, "err", herr)
		if !isFailure(status) {
			status = StatusProcessingFailure
		}
		// The handler's error stays in our log; peers get a generic comment.
		rsp.errorComment = "storage failed"
	}
	rsp.status = status
	return c.respond(ctxID, rsp, nil)
}

var errFindCancelled = errors.New("dimse: C-FIND cancelled by the peer")

func (c *conn) handleFind(ctxID byte, pc *presCtx, cmd *command) error {
	rsp := &response{field: cmdCFindRQ | cmdResponse, respondingTo: cmd.messageID, sopClassUID: cmd.sopClassUID}
	if !cmd.hasDataSet() {
		rsp.status, rsp.errorComment = StatusIdentifierMismatch, "C-FIND without an identifier"
		return c.respond(ctxID, rsp, nil)
	}
	d := c.dataStream(ctxID)
	if pc.kind != kindFind {
		if err := d.drain(); err != nil {
			return err
		}
		rsp.status = StatusSOPClassNotSupported
		return c.respond(ctxID, rsp, nil)
	}
	c.stats.Finds++
	c.idBuf = c.idBuf[:0]
	tooBig := false
	for {
		if err := d.ready(); err != nil {
			if err == io.EOF {
				break
			}
			return err
		}
		if len(c.idBuf)+int(c.pdvLeft) > maxIdentifier {
			tooBig = true
			break
		}
		off := len(c.idBuf)
		c.idBuf = append(c.idBuf, make([]byte, c.pdvLeft)...)
		if _, err := io.ReadFull(c.r, c.idBuf[off:]); err != nil {
			return midPDU(err)
		}
		c.pdvLeft = 0
	}
	if err := d.drain(); err != nil {
		return err
	}
	if tooBig {
		rsp.status, rsp.errorComment = StatusIdentifierMismatch, "identifier too large"
		return c.respond(ctxID, rsp, nil)
	}
	explicit := pc.ts == tsExplicitLE
	keys, err := decodeIdentifier(c.idBuf, explicit)
	if err != nil {
		rsp.status, rsp.errorComment = StatusIdentifierMismatch, err.Error()
		return c.respond(ctxID, rsp, nil)
	}
	level := keys[tagQueryRetrieveLevel]
	delete(keys, tagQueryRetrieveLevel)
	switch level {
	case "PATIENT", "STUDY", "SERIES", "IMAGE":
	default:
		rsp.status, rsp.errorComment = StatusIdentifierMismatch, "missing or unknown Query/Retrieve Level"
		return c.respond(ctxID, rsp, nil)
	}
	req := &FindRequest{CallingAE: c.rq.callingAE, CalledAE: c.rq.calledAE,
		SOPClassUID: pc.abstract, Level: level, Keys: keys}

	fctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	var (
		mu        sync.Mutex // emit may be misused concurrently or late; keep the wire sane
		returned  bool
		sendErr   error
		cancelled bool
		out       []byte
	)
	emit := func(m FindMatch) error {
		mu.Lock()
		defer mu.Unlock()
		if returned {
			return errors.New("dimse: emit called after CFind returned")
		}
		if sendErr != nil {
			return sendErr
		}
		if cancelled || c.pollCancel(cmd.messageID) {
			cancelled = true
			cancel()
			return errFindCancelled
		}
		out = appendIdentifier(out[:0], m, explicit, level)
		pending := &response{field: rsp.field, respondingTo: rsp.respondingTo, sopClassUID: rsp.sopClassUID,
			status: StatusPending}
		if err := c.respond(ctxID, pending, out); err != nil {
			sendErr = err
			cancel()
			return err
		}
		return nil
	}
	status, herr := c.s.cfg.Handler.CFind(fctx, req, emit)
	mu.Lock()
	returned = true
	mu.Unlock()
	if sendErr != nil {
		return sendErr
	}
	if c.ctx.Err() != nil {
		return c.ctx.Err()
	}
	switch {
	case cancelled:
		status = StatusCancel
	case herr != nil:
		c.log.Warn("dicom: C-FIND failed", "level", level, "err", herr)
		if !isFailure(status) {
			status = StatusFindUnableToProcess
		}
		rsp.errorComment = "query failed"
	case status == StatusPending:
		status = StatusSuccess
	}
	rsp.status = status
	return c.respond(ctxID, rsp, nil)
}

// pollCancel reports, best effort and without blocking, whether the peer
// has sent a C-CANCEL-RQ for messageID. It checks at most every 50ms and
// only consumes a complete cancel PDU; anything else stays buffered.
func (c *conn) pollCancel(messageID uint16) bool {
	if c.pduLeft != 0 {
		return false
	}
	now := time.Now()
	if now.Sub(c.lastPoll) < 50*time.Millisecond && c.r.Buffered() == 0 {
		return false
	}
	c.lastPoll = now
	c.tr.poll = true
	defer func() { c.tr.poll = false }()
	h, err := c.r.Peek(6)
	if err != nil || h[0] != pduPData {
		return false
	}
	n := int(binary.BigEndian.Uint32(h[2:6]))
	if n < 6 || n > 1024 {
		return false
	}
	b, err := c.r.Peek(6 + n)
	if err != nil {
		return false
	}
	pdv := b[6:]
	l := int(binary.BigEndian.Uint32(pdv[0:4]))
	if l+4 != n || pdv[5] != pdvCommand|pdvLast || c.ctxs[pdv[4]].kind == kindNone {
		return false
	}
	cmd, err := parseCommand(pdv[6:])
	if err != nil || cmd.field != cmdCCancelRQ || cmd.respondingTo != messageID {
		return false
	}
	_, _ = c.r.Discard(6 + n)
	return true
}
