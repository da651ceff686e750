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

	rq       *assocRQ
	perms    Perm // what the calling AE may do
	admitted bool
	ctxs     [256]presCtx
	peerMax  uint32

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
	c.stats.RemoteAddr = nc.RemoteAddr().String()
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
		s.metrics.ended(c)
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
	c.perms, c.admitted = c.s.policy.lookup(rq.callingAE)
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
	case !c.admitted:
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
