package dimse

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

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
