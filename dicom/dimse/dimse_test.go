package dimse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emberfhir/ember/internal/testenv"
)

// testHandler writes each received data set to dir and records requests.
type testHandler struct {
	dir string

	mu     sync.Mutex
	stores map[string]storeRecord // by SOP instance UID + "|" + transfer syntax
	finds  []FindRequest

	// failStore makes CStore fail (after reading the data) for these SOP
	// instance UIDs; panicStore makes it panic.
	failStore  map[string]bool
	panicStore map[string]bool
	matches    func(*FindRequest) []FindMatch
}

type storeRecord struct {
	req  StoreRequest
	path string
}

func newTestHandler(t *testing.T) *testHandler {
	return &testHandler{dir: t.TempDir(), stores: map[string]storeRecord{}}
}

func (h *testHandler) CStore(ctx context.Context, req *StoreRequest) (uint16, error) {
	if h.panicStore[req.SOPInstanceUID] {
		panic("test handler panic")
	}
	f, err := os.CreateTemp(h.dir, "*.dcm")
	if err != nil {
		return StatusOutOfResources, err
	}
	defer f.Close()
	if _, err := io.Copy(f, req.Dataset); err != nil {
		return StatusOutOfResources, fmt.Errorf("writing %s: %w", f.Name(), err)
	}
	if h.failStore[req.SOPInstanceUID] {
		return 0, errors.New("test handler refuses this instance")
	}
	rec := *req
	rec.Dataset = nil
	h.mu.Lock()
	h.stores[req.SOPInstanceUID+"|"+req.TransferSyntaxUID] = storeRecord{req: rec, path: f.Name()}
	h.mu.Unlock()
	return StatusSuccess, nil
}

func (h *testHandler) CFind(ctx context.Context, req *FindRequest, emit func(FindMatch) error) (uint16, error) {
	h.mu.Lock()
	h.finds = append(h.finds, *req)
	h.mu.Unlock()
	if h.matches == nil {
		return StatusSuccess, nil
	}
	for _, m := range h.matches(req) {
		if err := emit(m); err != nil {
			return StatusFindUnableToProcess, err
		}
	}
	return StatusSuccess, nil
}

func (h *testHandler) stored(uid, ts string) (storeRecord, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r, ok := h.stores[uid+"|"+ts]
	return r, ok
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// startServer serves cfg on a loopback port until the test ends, and checks
// that Serve returns cleanly on shutdown.
func startServer(t *testing.T, cfg Config) (addr string, h *testHandler, shutdown func()) {
	t.Helper()
	h = newTestHandler(t)
	if cfg.Handler == nil {
		cfg.Handler = h
	}
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	var once sync.Once
	shutdown = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Serve did not return after shutdown")
			}
		})
	}
	t.Cleanup(shutdown)
	return ln.Addr().String(), h, shutdown
}

// dcmtk runs a dcmtk tool with options, the peer address, then files, and
// returns its combined output and whether it exited 0.
func dcmtk(t *testing.T, addr, tool string, opts []string, files ...string) (string, bool) {
	t.Helper()
	path := testenv.DCMTKTool(t, tool)
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append(append(append([]string{}, opts...), host, port), files...)
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s timed out: %s", tool, out)
	}
	return string(out), err == nil
}

func TestEcho(t *testing.T) {
	addr, _, _ := startServer(t, Config{})
	if out, ok := dcmtk(t, addr, "echoscu", []string{"-aet", "TESTSCU", "-aec", "EMBER"}); !ok {
		t.Fatalf("echoscu failed: %s", out)
	}
}

func TestAssociationRejected(t *testing.T) {
	addr, _, _ := startServer(t, Config{AETitle: "EMBER", AllowedCallingAEs: []string{"GOODSCU"}})
	out, ok := dcmtk(t, addr, "echoscu", []string{"-aet", "BADSCU", "-aec", "EMBER"})
	if ok || !strings.Contains(out, "Calling AE Title Not Recognized") {
		t.Errorf("calling AE not on allow-list: ok=%v output %s", ok, out)
	}
	out, ok = dcmtk(t, addr, "echoscu", []string{"-aet", "GOODSCU", "-aec", "OTHER"})
	if ok || !strings.Contains(out, "Called AE Title Not Recognized") {
		t.Errorf("wrong called AE: ok=%v output %s", ok, out)
	}
	if out, ok := dcmtk(t, addr, "echoscu", []string{"-aet", "GOODSCU", "-aec", "EMBER"}); !ok {
		t.Errorf("allowed AE: %s", out)
	}
}

// storeSamples are pydicom files covering each transfer syntax family.
var storeSamples = []string{
	"CT_small.dcm",                  // explicit VR LE
	"MR_small_implicit.dcm",         // implicit VR LE
	"MR_small_bigendian.dcm",        // explicit VR BE
	"JPEG-lossy.dcm",                // JPEG extended
	"SC_rgb_jpeg_dcmtk.dcm",         // JPEG baseline
	"SC_rgb_jpeg_gdcm.dcm",          // JPEG lossless SV1
	"MR_small_jpeg_ls_lossless.dcm", // JPEG-LS lossless
	"MR_small_jp2klossless.dcm",     // JPEG 2000 lossless
	"JPEG2000.dcm",                  // JPEG 2000
	"MR_small_RLE.dcm",              // RLE
	"waveform_ecg.dcm",              // larger non-image object
}

// storescuConfig writes a storescu profile proposing, for each file's SOP
// class and transfer syntax, a context with exactly that syntax (storescu
// proposes only uncompressed syntaxes by default and one -x option at a
// time), so every file is sent as stored and byte comparison is exact.
func storescuConfig(t *testing.T, files []string) []string {
	t.Helper()
	type pair struct{ class, ts string }
	seen := map[pair]bool{}
	var cfg strings.Builder
	cfg.WriteString("[[TransferSyntaxes]]\n")
	tsNames := map[string]string{}
	var contexts []string
	for _, f := range files {
		p, err := readPart10(f)
		if err != nil {
			t.Fatal(err)
		}
		k := pair{p.sopClass, p.transferSyntax}
		if seen[k] {
			continue
		}
		seen[k] = true
		name, ok := tsNames[k.ts]
		if !ok {
			name = fmt.Sprintf("TS%d", len(tsNames)+1)
			tsNames[k.ts] = name
			fmt.Fprintf(&cfg, "[%s]\nTransferSyntax1 = %s\n", name, k.ts)
		}
		contexts = append(contexts, k.class+"\\"+name)
	}
	cfg.WriteString("[[PresentationContexts]]\n[Samples]\n")
	for i, c := range contexts {
		fmt.Fprintf(&cfg, "PresentationContext%d = %s\n", i+1, c)
	}
	cfg.WriteString("[[Profiles]]\n[Samples]\nPresentationContexts = Samples\n")
	path := filepath.Join(t.TempDir(), "storescu.cfg")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{"-aet", "TESTSCU", "-aec", "EMBER", "-xf", path, "Samples"}
}

// dcmtkReference sends files with storescu (args) to dcmtk's own storescp
// in bit-preserving mode and returns the data sets it received by SOP
// instance UID + "|" + transfer syntax. storescu re-encodes what it reads
// (it drops trailing padding, gives sequences explicit lengths), so this,
// not the file, is what any receiver must get byte for byte.
func dcmtkReference(t *testing.T, args []string, files ...string) map[string][]byte {
	t.Helper()
	path := testenv.DCMTKTool(t, "storescp")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	ln.Close()
	out := t.TempDir()
	scp := exec.Command(path, "+B", "+xa", "+uf", "-aet", "EMBER", "-od", out, port)
	var log bytes.Buffer
	scp.Stdout, scp.Stderr = &log, &log
	if err := scp.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = scp.Process.Kill()
		_ = scp.Wait()
	}()
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if i == 100 {
			t.Fatalf("storescp did not start: %s", log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if o, ok := dcmtk(t, addr, "storescu", args, files...); !ok {
		t.Fatalf("storescu to storescp: %s", o)
	}
	got := map[string][]byte{}
	entries, _ := os.ReadDir(out)
	for _, e := range entries {
		p, err := readPart10(filepath.Join(out, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		got[p.sopInstance+"|"+p.transferSyntax] = p.dataset
	}
	return got
}

// checkStored compares what the handler received for the Part-10 file at
// path with want (the data set bytes the sender transmitted).
func checkStored(t *testing.T, h *testHandler, path string, want []byte) {
	t.Helper()
	p, err := readPart10(path)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(path)
	rec, ok := h.stored(p.sopInstance, p.transferSyntax)
	if !ok {
		t.Errorf("%s: instance %s in %s not received", name, p.sopInstance, p.transferSyntax)
		return
	}
	got, err := os.ReadFile(rec.path)
	if err != nil {
		t.Fatal(err)
	}
	if rec.req.SOPClassUID != p.sopClass || rec.req.CallingAE != "TESTSCU" || rec.req.CalledAE != "EMBER" {
		t.Errorf("%s: request %+v", name, rec.req)
	}
	if want == nil {
		t.Errorf("%s: no reference data set", name)
	} else if !bytes.Equal(got, want) {
		t.Errorf("%s: received %d bytes, sender sent %d different ones", name, len(got), len(want))
	}
}

func TestStoreSingleFiles(t *testing.T) {
	dir := pydicomSamples(t)
	addr, h, _ := startServer(t, Config{})
	for _, name := range storeSamples {
		path := filepath.Join(dir, name)
		args := storescuConfig(t, []string{path})
		ref := dcmtkReference(t, args, path)
		if out, ok := dcmtk(t, addr, "storescu", args, path); !ok {
			t.Errorf("storescu %s: %s", name, out)
			continue
		}
		p, _ := readPart10(path)
		checkStored(t, h, path, ref[p.sopInstance+"|"+p.transferSyntax])
	}
}

func TestStoreDirectory(t *testing.T) {
	pyd := pydicomSamples(t)
	mod := moduleSamples(t)
	// A two-level tree so +r matters.
	root := t.TempDir()
	var files []string
	link := func(src, dst string) {
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(src, dst); err != nil {
			t.Fatal(err)
		}
		files = append(files, src)
	}
	for _, name := range storeSamples {
		link(filepath.Join(pyd, name), filepath.Join(root, "pydicom", name))
	}
	for _, name := range []string{"1.dcm", "2.dcm", "3.dcm", "4.dcm", "5.dcm"} {
		link(filepath.Join(mod, name), filepath.Join(root, "module", "nested", name))
	}
	args := append(storescuConfig(t, files), "+sd", "+r")
	ref := dcmtkReference(t, args, root)
	addr, h, _ := startServer(t, Config{})
	if out, ok := dcmtk(t, addr, "storescu", args, root); !ok {
		t.Fatalf("storescu +sd +r: %s", out)
	}
	for _, f := range files {
		p, _ := readPart10(f)
		checkStored(t, h, f, ref[p.sopInstance+"|"+p.transferSyntax])
	}
}

// TestStoreExact sends each sample's data set exactly as in the file (no
// re-encoding) through small PDUs, so PDVs fragment the data set many times,
// and checks the handler got the same bytes.
func TestStoreExact(t *testing.T) {
	pyd := pydicomSamples(t)
	mod := moduleSamples(t)
	files := []string{filepath.Join(mod, "4.dcm"), filepath.Join(mod, "6.dcm"), filepath.Join(pyd, "image_dfl.dcm")}
	for _, name := range storeSamples {
		files = append(files, filepath.Join(pyd, name))
	}
	var proposals []pcProposal
	samples := map[string]*part10{}
	ctxOf := map[string]byte{}
	for _, f := range files {
		p, err := readPart10(f)
		if err != nil {
			t.Fatal(err)
		}
		samples[f] = p
		k := p.sopClass + "|" + p.transferSyntax
		if _, ok := ctxOf[k]; !ok {
			id := byte(2*len(proposals) + 1)
			ctxOf[k] = id
			proposals = append(proposals, pcProposal{id: id, abstract: p.sopClass, ts: []string{p.transferSyntax}})
		}
	}
	addr, h, _ := startServer(t, Config{MaxPDULength: 4096})
	s, res := dialSCU(t, addr, "TESTSCU", proposals)
	for _, f := range files {
		p := samples[f]
		id := ctxOf[p.sopClass+"|"+p.transferSyntax]
		if res[id] != pcAccept {
			t.Fatalf("%s: context for %s rejected (%d)", filepath.Base(f), p.transferSyntax, res[id])
		}
		if st := s.store(id, p.sopClass, p.sopInstance, p.dataset); st != StatusSuccess {
			t.Fatalf("%s: status 0x%04x", filepath.Base(f), st)
		}
		checkStored(t, h, f, p.dataset)
	}
	s.release()
}

func TestStoreHandlerFailure(t *testing.T) {
	dir := pydicomSamples(t)
	path := filepath.Join(dir, "CT_small.dcm")
	p, err := readPart10(path)
	if err != nil {
		t.Fatal(err)
	}
	h := newTestHandler(t)
	h.failStore = map[string]bool{p.sopInstance: true}
	addr, _, _ := startServer(t, Config{Handler: h})
	out, ok := dcmtk(t, addr, "storescu", append(storescuConfig(t, []string{path}), "-v"), path)
	if ok || !strings.Contains(out, "Received Store Response (Unknown Status: 0x110)") {
		t.Errorf("storescu did not report the failure status: %s", out)
	}
	// The association survives a failed store: the next one on it works.
	s, res := dialSCU(t, addr, "TESTSCU", pcs(uidCTImage))
	if res[1] != pcAccept {
		t.Fatalf("context result %d", res[1])
	}
	if st := s.store(1, uidCTImage, p.sopInstance, p.dataset); st != StatusProcessingFailure {
		t.Errorf("failing store: status 0x%04x", st)
	}
	if st := s.store(1, uidCTImage, "1.2.3.4", p.dataset); st != StatusSuccess {
		t.Errorf("store after failure: status 0x%04x", st)
	}
	s.release()
}

func TestStoreHandlerPanic(t *testing.T) {
	h := newTestHandler(t)
	h.panicStore = map[string]bool{"1.2.3.666": true}
	addr, _, _ := startServer(t, Config{Handler: h})
	s, _ := dialSCU(t, addr, "TESTSCU", pcs(uidCTImage))
	s.writePDVs(1, pdvCommand, buildCommand(cmdCStoreRQ, 1, uidCTImage, "1.2.3.666", true))
	s.writePDVs(1, 0, make([]byte, 1000))
	s.w.Flush()
	expectAbort(t, s.c)
	if out, ok := dcmtk(t, addr, "echoscu", []string{"-aec", "EMBER"}); !ok {
		t.Fatalf("echoscu after a handler panic: %s", out)
	}
}

func TestFind(t *testing.T) {
	h := newTestHandler(t)
	h.matches = func(req *FindRequest) []FindMatch {
		switch req.Level {
		case "STUDY":
			return []FindMatch{
				{0x0020000D: "1.2.3.1", 0x00100010: "Doe^Jane", 0x00080020: "20240102", 0x00201208: "12"},
				{0x0020000D: "1.2.3.2", 0x00100010: "Roe^Richard", 0x00080020: "20240305", 0x99990010: "dropped"},
			}
		case "SERIES":
			return []FindMatch{{0x0020000D: req.Keys[0x0020000D], 0x0020000E: "1.2.3.1.7", 0x00080060: "CT", 0x00200011: "3"}}
		}
		return nil
	}
	addr, _, _ := startServer(t, Config{Handler: h})
	for _, tc := range []struct {
		level string
		model string // findscu information model option
		ts    string // findscu transfer syntax option
		keys  []string
		want  []map[uint32]string
	}{
		{"STUDY", "-S", "-xe", []string{"StudyInstanceUID", "PatientName=D*", "StudyDate", "NumberOfStudyRelatedInstances"},
			[]map[uint32]string{
				{0x0020000D: "1.2.3.1", 0x00100010: "Doe^Jane", 0x00080020: "20240102", 0x00201208: "12"},
				{0x0020000D: "1.2.3.2", 0x00100010: "Roe^Richard", 0x00080020: "20240305"},
			}},
		{"SERIES", "-S", "-xi", []string{"StudyInstanceUID=1.2.3.1", "SeriesInstanceUID", "Modality", "SeriesNumber"},
			[]map[uint32]string{{0x0020000D: "1.2.3.1", 0x0020000E: "1.2.3.1.7", 0x00080060: "CT", 0x00200011: "3"}}},
		// Patient Root, PATIENT level: passed to the handler, which has no matches.
		{"PATIENT", "-P", "-xe", []string{"PatientID", "PatientName"}, nil},
	} {
		t.Run(tc.level, func(t *testing.T) {
			out := t.TempDir()
			args := []string{"-aet", "TESTSCU", "-aec", "EMBER", tc.model, tc.ts, "-X", "-od", out, "-k", "QueryRetrieveLevel=" + tc.level}
			for _, k := range tc.keys {
				args = append(args, "-k", k)
			}
			if o, ok := dcmtk(t, addr, "findscu", args); !ok {
				t.Fatalf("findscu: %s", o)
			}
			h.mu.Lock()
			req := h.finds[len(h.finds)-1]
			h.mu.Unlock()
			model := uidStudyRootFind
			if tc.model == "-P" {
				model = uidPatientRootFind
			}
			if req.Level != tc.level || req.SOPClassUID != model || req.CallingAE != "TESTSCU" {
				t.Errorf("request %+v", req)
			}
			if _, ok := req.Keys[tagQueryRetrieveLevel]; ok || len(req.Keys) != len(tc.keys) {
				t.Errorf("keys %v for %v", req.Keys, tc.keys)
			}
			if tc.level == "STUDY" && (req.Keys[0x00100010] != "D*" || req.Keys[0x0020000D] != "") {
				t.Errorf("keys %v", req.Keys)
			}
			for i, want := range tc.want {
				p, err := readPart10(filepath.Join(out, fmt.Sprintf("rsp%04d.dcm", i+1)))
				if err != nil {
					t.Fatal(err)
				}
				got, err := decodeIdentifier(p.dataset, p.transferSyntax != tsImplicitLE)
				if err != nil {
					t.Fatal(err)
				}
				if got[tagQueryRetrieveLevel] != tc.level {
					t.Errorf("match %d: level %q", i, got[tagQueryRetrieveLevel])
				}
				delete(got, tagQueryRetrieveLevel)
				delete(got, 0x00080005)
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("match %d: got %v, want %v", i, got, want)
				}
			}
			if _, err := os.Stat(filepath.Join(out, fmt.Sprintf("rsp%04d.dcm", len(tc.want)+1))); err == nil {
				t.Errorf("more than %d matches", len(tc.want))
			}
		})
	}
}

// TestStoreDefaultProposal runs storescu with its default proposal (every
// storage SOP class, uncompressed syntaxes: a large A-ASSOCIATE-RQ).
func TestStoreDefaultProposal(t *testing.T) {
	dir := pydicomSamples(t)
	files := []string{filepath.Join(dir, "CT_small.dcm"), filepath.Join(dir, "MR_small_implicit.dcm"),
		filepath.Join(dir, "reportsi.dcm"), filepath.Join(dir, "test-SR.dcm")}
	addr, h, _ := startServer(t, Config{})
	if out, ok := dcmtk(t, addr, "storescu", []string{"-aet", "TESTSCU", "-aec", "EMBER"}, files...); !ok {
		t.Fatalf("storescu: %s", out)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	got := map[string]bool{}
	for _, r := range h.stores {
		got[r.req.SOPInstanceUID] = true
	}
	for _, f := range files {
		p, err := readPart10(f)
		if err != nil {
			t.Fatal(err)
		}
		if !got[p.sopInstance] {
			t.Errorf("%s not received", filepath.Base(f))
		}
	}
}
