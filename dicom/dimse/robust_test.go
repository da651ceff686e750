package dimse

import (
	"context"
	"encoding/binary"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

func validRQ() []byte {
	return buildAssociateRQ("EMBER", "TESTSCU", 16384, []pcProposal{
		{id: 1, abstract: uidVerification, ts: []string{tsImplicitLE}},
		{id: 3, abstract: uidCTImage, ts: []string{tsExplicitLE}},
		{id: 5, abstract: uidStudyRootFind, ts: []string{tsImplicitLE}},
	})
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func TestMalformedPDUs(t *testing.T) {
	addr, _, _ := startServer(t, Config{AssociationTimeout: 300 * time.Millisecond, ReadTimeout: 500 * time.Millisecond})
	rq := validRQ()
	badItem := append([]byte(nil), rq...)
	binary.BigEndian.PutUint16(badItem[74+2:], 0xFFF0) // application context item length
	echo := buildPData(1, pdvCommand|pdvLast, buildCommand(cmdCEchoRQ, 1, uidVerification, "", false))
	badPDV := append([]byte(nil), echo...)
	binary.BigEndian.PutUint32(badPDV[6:], 5000) // PDV longer than its PDU
	for _, tc := range []struct {
		name      string
		send      []byte
		halfClose bool // close our write side after sending
	}{
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: ember\r\n\r\n"), false},
		{"huge A-ASSOCIATE-RQ", []byte{pduAssociateRQ, 0, 0x7f, 0xff, 0xff, 0xff}, false},
		{"item length beyond PDU", badItem, false},
		{"short A-ASSOCIATE-RQ", []byte{pduAssociateRQ, 0, 0, 0, 0, 4, 0, 1, 0, 0}, false},
		{"truncated A-ASSOCIATE-RQ then close", rq[:40], true},
		{"truncated A-ASSOCIATE-RQ then silence (ARTIM)", rq[:40], false},
		{"P-DATA before association", echo, false},
		{"PDV length beyond PDU", cat(rq, badPDV), false},
		{"unknown PDU type", cat(rq, []byte{0x09, 0, 0, 0, 0, 0}), false},
		{"huge P-DATA", cat(rq, []byte{pduPData, 0, 0x7f, 0xff, 0xff, 0xff}), false},
		{"P-DATA on unaccepted context", cat(rq, buildPData(7, pdvCommand|pdvLast, buildCommand(cmdCEchoRQ, 1, uidVerification, "", false))), false},
		{"data PDV where command expected", cat(rq, buildPData(1, pdvLast, []byte{1, 2, 3, 4})), false},
		{"garbage command set", cat(rq, buildPData(1, pdvCommand|pdvLast, []byte{0, 0, 0, 1, 9, 9, 9, 9})), false},
		{"second A-ASSOCIATE-RQ", cat(rq, rq), false},
		{"A-RELEASE-RQ with wrong length", cat(rq, []byte{pduReleaseRQ, 0, 0, 0, 0, 2, 0, 0}), false},
		{"truncated P-DATA then close", cat(rq, echo[:12]), true},
		{"idle after association (read timeout)", rq, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			if tc.halfClose {
				_ = c.(*net.TCPConn).CloseWrite()
			}
			expectAbort(t, c)
		})
	}
	// The server and other associations are unharmed.
	if out, ok := dcmtk(t, addr, "echoscu", []string{"-aec", "EMBER"}); !ok {
		t.Fatalf("echoscu after malformed input: %s", out)
	}
}

// TestUnknownCommand checks an unsupported DIMSE request gets a failure
// response and the association stays usable.
func TestUnknownCommand(t *testing.T) {
	addr, _, _ := startServer(t, Config{})
	s, _ := dialSCU(t, addr, "TESTSCU", pcs(uidCTImage, uidVerification))
	s.writePDVs(1, pdvCommand, buildCommand(0x0130, 7, uidCTImage, "1.2.3", false)) // N-ACTION-RQ
	s.w.Flush()
	rsp := s.readResponse()
	if rsp.field != 0x8130 || rsp.status != StatusUnrecognizedOperation || rsp.respondingTo != 7 {
		t.Errorf("response %+v", rsp)
	}
	// C-STORE on the Verification context: SOP class not supported.
	if st := s.store(3, uidVerification, "1.2.3", []byte{8, 0, 0x18, 0, 'U', 'I', 2, 0, '1', 0}); st != StatusSOPClassNotSupported {
		t.Errorf("C-STORE on a Verification context: status 0x%04x", st)
	}
	s.msgID++
	s.writePDVs(3, pdvCommand, buildCommand(cmdCEchoRQ, s.msgID, uidVerification, "", false))
	s.w.Flush()
	if rsp := s.readResponse(); rsp.status != StatusSuccess || rsp.field != cmdCEchoRQ|cmdResponse {
		t.Errorf("echo after unknown command: %+v", rsp)
	}
	s.release()
}

// TestNegotiation checks presentation context results.
func TestNegotiation(t *testing.T) {
	addr, _, _ := startServer(t, Config{})
	_, res := dialSCU(t, addr, "TESTSCU", []pcProposal{
		{id: 1, abstract: uidCTImage, ts: []string{"1.2.3.4.5", "1.2.840.10008.1.2.4.90", tsImplicitLE}},
		{id: 3, abstract: uidStudyRootFind, ts: []string{"1.2.840.10008.1.2.4.90"}},
		{id: 5, abstract: "1.2.840.10008.5.1.4.1.2.2.2", ts: []string{tsImplicitLE}},  // Study Root MOVE
		{id: 7, abstract: "1.2.826.0.1.3680043.9.9999.1", ts: []string{tsExplicitLE}}, // private storage
		{id: 9, abstract: uidVerification, ts: []string{tsExplicitLE}},
	})
	want := map[byte]byte{1: pcAccept, 3: pcTransferUnsupported, 5: pcAbstractUnsupported, 7: pcAccept, 9: pcAccept}
	for id, r := range want {
		if res[id] != r {
			t.Errorf("context %d: result %d, want %d", id, res[id], r)
		}
	}
}

func TestFindCancel(t *testing.T) {
	h := newTestHandler(t)
	var emitted atomic.Int32
	h.matches = func(req *FindRequest) []FindMatch {
		return nil
	}
	slow := &slowFind{testHandler: h, emitted: &emitted}
	addr, _, _ := startServer(t, Config{Handler: slow})
	s, _ := dialSCU(t, addr, "TESTSCU", pcs(uidStudyRootFind))
	ident := appendIdentifier(nil, FindMatch{0x0020000D: ""}, false, "STUDY")
	s.writePDVs(1, pdvCommand, buildCommand(cmdCFindRQ, 1, uidStudyRootFind, "", true))
	s.writePDVs(1, 0, ident)
	s.w.Flush()
	time.Sleep(20 * time.Millisecond)
	s.writePDVs(1, pdvCommand, buildCommand(cmdCCancelRQ, 1, uidStudyRootFind, "", false))
	s.w.Flush()
	pending := 0
	for {
		typ, body := s.readPDU()
		if typ != pduPData {
			t.Fatalf("PDU type %d", typ)
		}
		if body[5]&pdvCommand == 0 {
			continue // identifier
		}
		cmd, err := parseCommand(body[6:])
		if err != nil {
			t.Fatal(err)
		}
		if cmd.status == StatusPending {
			pending++
			continue
		}
		if cmd.status != StatusCancel {
			t.Errorf("final status 0x%04x after cancel, want 0xFE00", cmd.status)
		}
		break
	}
	t.Logf("%d pending responses before the cancel took effect", pending)
	if pending >= 1000 {
		t.Errorf("all %d matches sent despite cancel", pending)
	}
	s.release()
}

// slowFind emits up to 1000 matches, 1ms apart, until emit fails.
type slowFind struct {
	*testHandler
	emitted *atomic.Int32
}

func (h *slowFind) CFind(ctx context.Context, req *FindRequest, emit func(FindMatch) error) (uint16, error) {
	for i := range 1000 {
		if err := emit(FindMatch{0x0020000D: "1.2.3." + string(rune('0'+i%10))}); err != nil {
			return StatusFindUnableToProcess, err
		}
		h.emitted.Add(1)
		time.Sleep(time.Millisecond)
	}
	return StatusSuccess, nil
}

// blockingStore blocks in CStore until its context ends.
type blockingStore struct {
	*testHandler
	entered chan struct{}
	exited  chan error
}

func (h *blockingStore) CStore(ctx context.Context, req *StoreRequest) (uint16, error) {
	close(h.entered)
	<-ctx.Done()
	h.exited <- ctx.Err()
	return StatusOutOfResources, ctx.Err()
}

func TestShutdown(t *testing.T) {
	h := &blockingStore{testHandler: newTestHandler(t), entered: make(chan struct{}), exited: make(chan error, 1)}
	addr, _, shutdown := startServer(t, Config{Handler: h})
	idle, _ := dialSCU(t, addr, "TESTSCU", pcs(uidCTImage))
	busy, _ := dialSCU(t, addr, "TESTSCU", pcs(uidCTImage))
	busy.writePDVs(1, pdvCommand, buildCommand(cmdCStoreRQ, 1, uidCTImage, "1.2.3", true))
	busy.writePDVs(1, 0, make([]byte, 100))
	busy.w.Flush()
	select {
	case <-h.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("C-STORE never reached the handler")
	}
	start := time.Now()
	shutdown() // fails the test if Serve does not return
	if err := <-h.exited; err == nil {
		t.Error("handler context not cancelled on shutdown")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	expectAbort(t, idle.c)
	expectAbort(t, busy.c)
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("listener still accepting after shutdown")
	}
}

func TestTooManyAssociations(t *testing.T) {
	addr, _, _ := startServer(t, Config{MaxAssociations: 1})
	first, _ := dialSCU(t, addr, "TESTSCU", pcs(uidVerification))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(validRQ())
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var rj [10]byte
	if _, err := c.Read(rj[:]); err != nil || rj[0] != pduAssociateRJ || rj[7] != rjTransient || rj[8] != rjSourceProvider {
		t.Errorf("second association: %x, %v", rj, err)
	}
	first.release()
	if out, ok := dcmtk(t, addr, "echoscu", []string{"-aec", "EMBER"}); !ok {
		t.Fatalf("echoscu after a slot freed: %s", out)
	}
}

// failingFind fails every query.
type failingFind struct{ *testHandler }

func (failingFind) CFind(ctx context.Context, req *FindRequest, emit func(FindMatch) error) (uint16, error) {
	return 0, context.DeadlineExceeded
}

func TestFindFailures(t *testing.T) {
	addr, _, _ := startServer(t, Config{Handler: failingFind{newTestHandler(t)}})
	s, _ := dialSCU(t, addr, "TESTSCU", pcs(uidStudyRootFind))
	find := func(ident []byte) uint16 {
		s.msgID++
		s.writePDVs(1, pdvCommand, buildCommand(cmdCFindRQ, s.msgID, uidStudyRootFind, "", true))
		s.writePDVs(1, 0, ident)
		s.w.Flush()
		rsp := s.readResponse()
		if rsp.respondingTo != s.msgID || rsp.field != cmdCFindRQ|cmdResponse {
			t.Fatalf("response %+v", rsp)
		}
		return rsp.status
	}
	if st := find(appendIdentifier(nil, FindMatch{0x0020000D: ""}, false, "")); st != StatusIdentifierMismatch {
		t.Errorf("no level: status 0x%04x", st)
	}
	if st := find([]byte{1, 2, 3}); st != StatusIdentifierMismatch {
		t.Errorf("garbage identifier: status 0x%04x", st)
	}
	if st := find(appendIdentifier(nil, FindMatch{0x0020000D: ""}, false, "STUDY")); st != StatusFindUnableToProcess {
		t.Errorf("handler error: status 0x%04x", st)
	}
	s.release()
}
