package dimse

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

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
	if c.perms&PermStore == 0 {
		if err := d.drain(); err != nil {
			return err
		}
		c.log.Warn("dicom: C-STORE refused: the calling AE may not store", "sop_instance", cmd.sopInstanceUID)
		rsp.status, rsp.errorComment = StatusNotAuthorized, "calling AE not authorized to store"
		return c.respond(ctxID, rsp, nil)
	}
	c.stats.Stores++
	req := &StoreRequest{
		CallingAE: c.rq.callingAE, CalledAE: c.rq.calledAE, RemoteAddr: c.stats.RemoteAddr,
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
	if c.perms&PermFind == 0 {
		if err := d.drain(); err != nil {
			return err
		}
		c.log.Warn("dicom: C-FIND refused: the calling AE may not query")
		rsp.status, rsp.errorComment = StatusNotAuthorized, "calling AE not authorized to query"
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
	keys, reqVRs, err := decodeIdentifierVRs(c.idBuf, explicit)
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
	req := &FindRequest{CallingAE: c.rq.callingAE, CalledAE: c.rq.calledAE, RemoteAddr: c.stats.RemoteAddr,
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
		out = appendIdentifierFor(out[:0], m, explicit, level, reqVRs)
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
