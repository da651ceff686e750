package dimse

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

// fakeConn feeds a fixed byte stream to an association and collects what
// the server writes, so a fuzz iteration needs no sockets or goroutines.
type fakeConn struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (c *fakeConn) Read(p []byte) (int, error)       { return c.in.Read(p) }
func (c *fakeConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *fakeConn) Close() error                     { return nil }
func (c *fakeConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *fakeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }
func (c *fakeConn) String() string                   { return "fake" }

// discardHandler reads every data set and answers each query with one match.
type discardHandler struct{}

func (discardHandler) CStore(ctx context.Context, req *StoreRequest) (uint16, error) {
	_, err := io.Copy(io.Discard, req.Dataset)
	return StatusSuccess, err
}

func (discardHandler) CFind(ctx context.Context, req *FindRequest, emit func(FindMatch) error) (uint16, error) {
	m := FindMatch{}
	for k, v := range req.Keys {
		m[k] = v
	}
	m[0x0020000D] = "1.2.3"
	return StatusSuccess, emit(m)
}

// runSession plays in through one association and returns the server's
// output; a recovered panic fails the test.
func runSession(t *testing.T, in []byte) []byte {
	s, err := NewServer(Config{Handler: discardHandler{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	s.onPanic = func(p any) { t.Fatalf("panic: %v", p) }
	c := &fakeConn{in: bytes.NewReader(in)}
	s.serveConn(context.Background(), c)
	return c.out.Bytes()
}

// seedSession is a complete valid association: echo, a C-STORE whose data
// set spans PDVs and PDUs, a C-FIND, release.
func seedSession() []byte {
	storeCmd := buildCommand(cmdCStoreRQ, 2, uidCTImage, "1.2.3.4", true)
	ds := appendIdentifier(nil, FindMatch{0x00100010: "Doe^Jane", 0x0020000D: "1.2.3", 0x00280010: "512"}, true, "")
	twoPDVs := buildPData(3, 0, ds[:10])
	second := buildPData(3, pdvLast, ds[10:])
	twoPDVs = append(twoPDVs, second[6:]...) // second PDV in the same PDU
	binary.BigEndian.PutUint32(twoPDVs[2:], uint32(len(twoPDVs)-6))
	findID := appendIdentifier(nil, FindMatch{0x0020000D: "", 0x00100010: "D*", 0x00080020: "2024-"}, false, "STUDY")
	return cat(
		validRQ(),
		buildPData(1, pdvCommand|pdvLast, buildCommand(cmdCEchoRQ, 1, uidVerification, "", false)),
		buildPData(3, pdvCommand, storeCmd[:20]),
		buildPData(3, pdvCommand|pdvLast, storeCmd[20:]),
		twoPDVs,
		buildPData(5, pdvCommand|pdvLast, buildCommand(cmdCFindRQ, 3, uidStudyRootFind, "", true)),
		buildPData(5, pdvLast, findID),
		[]byte{pduReleaseRQ, 0, 0, 0, 0, 4, 0, 0, 0, 0},
	)
}

func pduSeeds() [][]byte {
	rq := validRQ()
	return [][]byte{
		seedSession(),
		rq,
		cat(rq, []byte{pduAbort, 0, 0, 0, 0, 4, 0, 0, 0, 0}),
		buildAssociateRQ("OTHER", "TESTSCU", 0, pcs(uidCTImage)),
		// C-FIND then C-CANCEL: the cancel is already buffered at the
		// first match, so the find ends with status Cancel.
		cat(rq, buildPData(5, pdvCommand|pdvLast, buildCommand(cmdCFindRQ, 3, uidStudyRootFind, "", true)),
			buildPData(5, pdvLast, appendIdentifier(nil, FindMatch{0x0020000D: ""}, false, "SERIES")),
			buildPData(5, pdvCommand|pdvLast, buildCommand(cmdCCancelRQ, 3, uidStudyRootFind, "", false))),
		cat(rq, buildPData(1, pdvCommand|pdvLast, buildCommand(0x0130, 9, uidCTImage, "", true)), buildPData(1, pdvLast, []byte{1, 2})),
	}
}

func FuzzPDU(f *testing.F) {
	for _, s := range pduSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		runSession(t, in)
	})
}

func FuzzIdentifier(f *testing.F) {
	f.Add(appendIdentifier(nil, FindMatch{0x0020000D: "1.2", 0x00100010: "A^B", 0x00280010: "5"}, true, "STUDY"), true)
	f.Add(appendIdentifier(nil, FindMatch{0x0020000D: "1.2", 0x00100010: "A^B", 0x00280010: "5"}, false, "SERIES"), false)
	// An undefined-length sequence with one undefined-length item.
	seq := []byte{0x08, 0x00, 0x15, 0x11, 'S', 'Q', 0, 0, 0xff, 0xff, 0xff, 0xff,
		0xfe, 0xff, 0x00, 0xe0, 0xff, 0xff, 0xff, 0xff,
		0x08, 0x00, 0x50, 0x11, 'U', 'I', 2, 0, '1', 0,
		0xfe, 0xff, 0x0d, 0xe0, 0, 0, 0, 0,
		0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0}
	f.Add(seq, true)
	f.Fuzz(func(t *testing.T, b []byte, explicit bool) {
		keys, vrs, err := decodeIdentifierVRs(b, explicit)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode, and that must decode again.
		out := appendIdentifierFor(nil, FindMatch(keys), explicit, "STUDY", vrs)
		if _, err := decodeIdentifier(out, explicit); err != nil {
			t.Fatalf("re-encoded identifier does not decode: %v\n%x", err, out)
		}
	})
}

// TestSeedSession checks the main fuzz seed is a valid session that reaches
// every service, so fuzzing starts from deep inside the protocol.
func TestSeedSession(t *testing.T) {
	out := runSession(t, seedSession())
	var types []byte
	var statuses []uint16
	for len(out) > 0 {
		n := 6 + int(binary.BigEndian.Uint32(out[2:6]))
		pdu := out[:n]
		out = out[n:]
		types = append(types, pdu[0])
		if pdu[0] == pduPData && pdu[11]&pdvCommand != 0 {
			cmd, err := parseCommand(pdu[12:])
			if err != nil {
				t.Fatal(err)
			}
			statuses = append(statuses, cmd.status)
		}
	}
	// AC; echo rsp; store rsp; find pending (command + identifier) and
	// final; release RP.
	if string(types) != string([]byte{pduAssociateAC, pduPData, pduPData, pduPData, pduPData, pduPData, pduReleaseRP}) {
		t.Errorf("PDU types %v", types)
	}
	if want := []uint16{StatusSuccess, StatusSuccess, StatusPending, StatusSuccess}; len(statuses) != 4 ||
		statuses[0] != want[0] || statuses[1] != want[1] || statuses[2] != want[2] || statuses[3] != want[3] {
		t.Errorf("statuses %x, want %x", statuses, want)
	}
}
