package dimse

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// A minimal service class user for tests: raw PDUs for the malformed-input
// cases and a fast C-STORE loop for throughput measurements.

const uidCTImage = "1.2.840.10008.5.1.4.1.1.2"

// buildAssociateRQ encodes an A-ASSOCIATE-RQ PDU.
func buildAssociateRQ(called, calling string, maxPDU uint32, pcs []pcProposal) []byte {
	b := appendPDUHeader(nil, pduAssociateRQ)
	b = append(b, 0, 1, 0, 0)
	b = appendAE(b, called)
	b = appendAE(b, calling)
	b = append(b, make([]byte, 32)...)
	b = appendItem(b, itemAppContext, appContextDICOM)
	for _, pc := range pcs {
		var sub []byte
		sub = appendItem(sub, itemAbstractSyn, pc.abstract)
		for _, ts := range pc.ts {
			sub = appendItem(sub, itemTransferSyn, ts)
		}
		b = append(b, itemPresContextRQ, 0)
		b = binary.BigEndian.AppendUint16(b, uint16(4+len(sub)))
		b = append(b, pc.id, 0, 0, 0)
		b = append(b, sub...)
	}
	var ui []byte
	ui = append(ui, itemMaxLength, 0, 0, 4)
	ui = binary.BigEndian.AppendUint32(ui, maxPDU)
	ui = appendItem(ui, itemImplClassUID, "1.2.3.4")
	b = append(b, itemUserInfo, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(len(ui)))
	b = append(b, ui...)
	return finishPDU(b, 0)
}

// buildPData encodes one P-DATA-TF PDU holding one PDV.
func buildPData(ctxID, flags byte, v []byte) []byte {
	b := appendPDUHeader(nil, pduPData)
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)+2))
	b = append(b, ctxID, flags)
	b = append(b, v...)
	return finishPDU(b, 0)
}

func buildCommand(field, msgID uint16, sopClass, sopInstance string, dataSet bool) []byte {
	var b []byte
	b = appendElemU32(b, tagCommandGroupLength, 0)
	b = appendElemStr(b, tagAffectedSOPClass, sopClass, 0)
	b = appendElemU16(b, tagCommandField, field)
	if field == cmdCCancelRQ {
		b = appendElemU16(b, tagMessageIDRespondTo, msgID)
	} else {
		b = appendElemU16(b, tagMessageID, msgID)
	}
	dst := dataSetAbsent
	if dataSet {
		dst = dataSetPresent
	}
	b = appendElemU16(b, tagCommandDataSetType, dst)
	if sopInstance != "" {
		b = appendElemStr(b, tagAffectedSOPInstance, sopInstance, 0)
	}
	binary.LittleEndian.PutUint32(b[8:], uint32(len(b)-12))
	return b
}

type scu struct {
	t     testing.TB
	c     net.Conn
	r     *bufio.Reader
	w     *bufio.Writer
	msgID uint16
	maxPD int
}

// dialSCU associates with one presentation context per proposal and returns
// the results by context id.
func dialSCU(t testing.TB, addr, calling string, pcs []pcProposal) (*scu, map[byte]byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &scu{t: t, c: c, r: bufio.NewReaderSize(c, 64<<10), w: bufio.NewWriterSize(c, 256<<10)}
	if _, err := c.Write(buildAssociateRQ("EMBER", calling, 1<<20, pcs)); err != nil {
		t.Fatal(err)
	}
	typ, body := s.readPDU()
	if typ != pduAssociateAC {
		t.Fatalf("association: got PDU type %d, body %x", typ, body)
	}
	results := map[byte]byte{}
	if err := forEachItem(body[68:], func(typ byte, v []byte) error {
		switch typ {
		case itemPresContextAC:
			results[v[0]] = v[2]
		case itemUserInfo:
			return forEachItem(v, func(typ byte, v []byte) error {
				if typ == itemMaxLength {
					s.maxPD = int(binary.BigEndian.Uint32(v))
				}
				return nil
			})
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return s, results
}

func (s *scu) readPDU() (byte, []byte) {
	s.t.Helper()
	_ = s.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var h [6]byte
	if _, err := io.ReadFull(s.r, h[:]); err != nil {
		s.t.Fatalf("reading PDU: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint32(h[2:]))
	if _, err := io.ReadFull(s.r, body); err != nil {
		s.t.Fatalf("reading PDU body: %v", err)
	}
	return h[0], body
}

// readResponse reads one response command set (skipping nothing else).
func (s *scu) readResponse() command {
	s.t.Helper()
	var cmdBytes []byte
	for {
		typ, body := s.readPDU()
		if typ != pduPData {
			s.t.Fatalf("expected P-DATA-TF, got PDU type %d %x", typ, body)
		}
		for len(body) > 0 {
			n := binary.BigEndian.Uint32(body[0:4])
			flags := body[5]
			if flags&pdvCommand == 0 {
				s.t.Fatalf("unexpected data PDV")
			}
			cmdBytes = append(cmdBytes, body[6:4+n]...)
			body = body[4+n:]
			if flags&pdvLast != 0 {
				cmd, err := parseCommand(cmdBytes)
				if err != nil {
					s.t.Fatal(err)
				}
				return cmd
			}
		}
	}
}

// writePDVs sends v as PDVs of at most the server's max PDU length.
func (s *scu) writePDVs(ctxID, flags byte, v []byte) {
	maxVal := s.maxPD - 6
	for {
		n := min(len(v), maxVal)
		f := flags
		if n == len(v) {
			f |= pdvLast
		}
		var h [12]byte
		h[0] = pduPData
		binary.BigEndian.PutUint32(h[2:], uint32(n+6))
		binary.BigEndian.PutUint32(h[6:], uint32(n+2))
		h[10], h[11] = ctxID, f
		s.w.Write(h[:])
		s.w.Write(v[:n])
		v = v[n:]
		if len(v) == 0 {
			return
		}
	}
}

// store sends one C-STORE and returns the response status.
func (s *scu) store(ctxID byte, sopClass, sopInstance string, data []byte) uint16 {
	s.t.Helper()
	s.msgID++
	s.writePDVs(ctxID, pdvCommand, buildCommand(cmdCStoreRQ, s.msgID, sopClass, sopInstance, true))
	s.writePDVs(ctxID, 0, data)
	if err := s.w.Flush(); err != nil {
		s.t.Fatal(err)
	}
	rsp := s.readResponse()
	if rsp.respondingTo != s.msgID || rsp.field != cmdCStoreRQ|cmdResponse {
		s.t.Fatalf("response %+v to message %d", rsp, s.msgID)
	}
	return rsp.status
}

func (s *scu) release() {
	s.t.Helper()
	s.c.Write([]byte{pduReleaseRQ, 0, 0, 0, 0, 4, 0, 0, 0, 0})
	if typ, _ := s.readPDU(); typ != pduReleaseRP {
		s.t.Fatalf("release: got PDU type %d", typ)
	}
	s.c.Close()
}

// expectAbort asserts the server, after any PDUs it answered first (such
// as an A-ASSOCIATE-AC), sends A-ABORT or nothing and closes the connection
// within a few seconds.
func expectAbort(t testing.TB, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("connection not closed: %v (read %x)", err, b)
	}
	last := byte(0)
	for len(b) > 0 {
		if len(b) < 6 {
			t.Fatalf("trailing bytes %x", b)
		}
		n := 6 + int(binary.BigEndian.Uint32(b[2:6]))
		if n > len(b) {
			t.Fatalf("truncated PDU %x", b)
		}
		last = b[0]
		b = b[n:]
	}
	if last != pduAbort && last != 0 {
		t.Fatalf("last PDU before close: type %d, want A-ABORT", last)
	}
}

func pcs(specs ...string) []pcProposal {
	var out []pcProposal
	for i, s := range specs {
		out = append(out, pcProposal{id: byte(2*i + 1), abstract: s, ts: []string{tsImplicitLE, tsExplicitLE}})
	}
	return out
}
