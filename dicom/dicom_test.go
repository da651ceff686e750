package dicom_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emberfhir/ember/dicom"
	"github.com/emberfhir/ember/dicom/dimse"
	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/search"
	"github.com/emberfhir/ember/internal/dicomsamples"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/internal/testenv"
	"github.com/emberfhir/ember/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

type env struct {
	store  *store.Store
	eng    *engine.Engine
	parser *fhir.Parser
	svc    *dicom.Service
	dir    string
}

func newEnv(t *testing.T, delay time.Duration) *env {
	t.Helper()
	ctx := t.Context()
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	eng, err := engine.New(engine.Config{BaseURL: "http://ember.test/fhir"}, st)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	blobs, err := dicom.OpenBlobs(ctx, "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := dicom.New(dicom.Config{Engine: eng, Blobs: blobs, DICOMwebBase: "http://ember.test/dicomweb", SyncDelay: delay, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close(context.Background()) })
	return &env{store: st, eng: eng, parser: eng.Parser(), svc: svc, dir: dir}
}

type fake struct {
	study, series, sop, patientID, patientName, accession, referring, modality string
	number                                                                     int
}

const ctClass = "1.2.840.10008.5.1.4.1.1.2"

// dataset builds a small CT dataset (explicit VR little endian, 4×4 16-bit).
func (f fake) dataset() []byte {
	var b bytes.Buffer
	u16 := func(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
	dicom.AppendElement(&b, 0x0008, 0x0016, "UI", []byte(ctClass))
	dicom.AppendElement(&b, 0x0008, 0x0018, "UI", []byte(f.sop))
	dicom.AppendElement(&b, 0x0008, 0x0020, "DA", []byte("20240305"))
	dicom.AppendElement(&b, 0x0008, 0x0030, "TM", []byte("101500"))
	dicom.AppendElement(&b, 0x0008, 0x0050, "SH", []byte(f.accession))
	dicom.AppendElement(&b, 0x0008, 0x0060, "CS", []byte(f.modality))
	dicom.AppendElement(&b, 0x0008, 0x0090, "PN", []byte(f.referring))
	dicom.AppendElement(&b, 0x0010, 0x0010, "PN", []byte(f.patientName))
	dicom.AppendElement(&b, 0x0010, 0x0020, "LO", []byte(f.patientID))
	dicom.AppendElement(&b, 0x0010, 0x0030, "DA", []byte("19700102"))
	dicom.AppendElement(&b, 0x0010, 0x0040, "CS", []byte("F"))
	dicom.AppendElement(&b, 0x0018, 0x0015, "CS", []byte("CHEST"))
	dicom.AppendElement(&b, 0x0020, 0x000D, "UI", []byte(f.study))
	dicom.AppendElement(&b, 0x0020, 0x000E, "UI", []byte(f.series))
	dicom.AppendElement(&b, 0x0020, 0x0011, "IS", []byte("2"))
	dicom.AppendElement(&b, 0x0020, 0x0013, "IS", []byte(strconv.Itoa(f.number)))
	dicom.AppendElement(&b, 0x0028, 0x0002, "US", u16(1))
	dicom.AppendElement(&b, 0x0028, 0x0004, "CS", []byte("MONOCHROME2"))
	dicom.AppendElement(&b, 0x0028, 0x0010, "US", u16(4))
	dicom.AppendElement(&b, 0x0028, 0x0011, "US", u16(4))
	dicom.AppendElement(&b, 0x0028, 0x0100, "US", u16(16))
	dicom.AppendElement(&b, 0x0028, 0x0101, "US", u16(12))
	dicom.AppendElement(&b, 0x0028, 0x0102, "US", u16(11))
	dicom.AppendElement(&b, 0x0028, 0x0103, "US", u16(0))
	px := make([]byte, 32)
	for i := range px {
		px[i] = byte(i)
	}
	dicom.AppendElement(&b, 0x7FE0, 0x0010, "OW", px)
	return b.Bytes()
}

func (e *env) store1(t *testing.T, f fake) {
	t.Helper()
	status, err := e.svc.CStore(t.Context(), &dimse.StoreRequest{
		CallingAE: "TEST", CalledAE: "EMBER", SOPClassUID: ctClass, SOPInstanceUID: f.sop,
		TransferSyntaxUID: dicom.ExplicitVRLittleEndian, Dataset: bytes.NewReader(f.dataset()),
	})
	if status != dimse.StatusSuccess || err != nil {
		t.Fatalf("CStore %s: %04X %v", f.sop, status, err)
	}
}

func (e *env) create(t *testing.T, body string) string {
	t.Helper()
	r, err := e.parser.Parse([]byte(body), "")
	if err != nil {
		t.Fatal(err)
	}
	v, err := e.store.Create(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	return v.Type + "/" + v.ID
}

func (e *env) count(t *testing.T, typ string, params string) int {
	t.Helper()
	vals, _ := url.ParseQuery(params)
	q, err := search.Parse(typ, vals, search.Options{Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.store.Search(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	return len(res.Matches)
}

// C-STORE through the Handler: the stored file is the built meta group plus
// the dataset as received; the ImagingStudy links the existing Patient and
// the ServiceRequest named by the accession number; a burst of instances
// makes one ImagingStudy version.
func TestCStoreImagingStudy(t *testing.T) {
	e := newEnv(t, 400*time.Millisecond)
	ctx := t.Context()
	patient := e.create(t, `{"resourceType":"Patient","identifier":[{"system":"urn:dicom:patient-id","value":"P-7"}],"name":[{"family":"Existing"}]}`)
	sr := e.create(t, `{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"`+patient+`"},"identifier":[{"system":"urn:acme:acc","value":"ACC-42"}]}`)

	const study, series = "1.2.826.0.1.3680043.10.1.1", "1.2.826.0.1.3680043.10.1.1.1"
	base := fake{study: study, series: series, patientID: "P-7", patientName: "Doe^Jane", accession: "ACC-42",
		referring: "House^Gregory^^Dr", modality: "CT"}
	const n = 20
	var wg sync.WaitGroup
	for i := 1; i <= n; i++ {
		f := base
		f.sop, f.number = fmt.Sprintf("%s.%d", series, i), i
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Not store1: its t.Fatalf may only run on the test goroutine.
			status, err := e.svc.CStore(ctx, &dimse.StoreRequest{
				CallingAE: "TEST", CalledAE: "EMBER", SOPClassUID: ctClass, SOPInstanceUID: f.sop,
				TransferSyntaxUID: dicom.ExplicitVRLittleEndian, Dataset: bytes.NewReader(f.dataset()),
			})
			if status != dimse.StatusSuccess || err != nil {
				t.Errorf("CStore %s: %04X %v", f.sop, status, err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// Stored file = meta group built from the command + dataset as received.
	f1 := base
	f1.sop, f1.number = series+".1", 1
	list, err := e.svc.Instances(ctx, study, series, f1.sop)
	if err != nil || len(list) != 1 {
		t.Fatalf("instances: %v %v", list, err)
	}
	rc, err := e.svc.Blobs().Open(ctx, list[0].BlobKey, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	want := append(dicom.FileMeta(ctClass, f1.sop, dicom.ExplicitVRLittleEndian, "TEST"), f1.dataset()...)
	if !bytes.Equal(got, want) {
		t.Errorf("stored file differs from meta + dataset (%d vs %d bytes)", len(got), len(want))
	}
	// Frame 1 is the pixel value, read by offset.
	if fr, err := e.svc.Frame(ctx, list[0], 1); err != nil || len(fr) != 32 || fr[31] != 31 {
		t.Errorf("frame: %v %v", fr, err)
	}

	// Debounced: one version for the burst, written after the delay.
	deadline := time.Now().Add(10 * time.Second)
	var v store.Version
	for {
		v, err = e.store.Read(ctx, "ImagingStudy", dicom.ImagingStudyID(study))
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("ImagingStudy not written: %v", err)
	}
	if v.VersionID != 1 {
		t.Errorf("ImagingStudy version %d after one burst, want 1", v.VersionID)
	}
	var is struct {
		Subject           struct{ Reference string }
		BasedOn           []struct{ Reference string }
		Referrer          struct{ Display string }
		Started           string
		NumberOfInstances int
		Identifier        []struct {
			System, Value string
		}
		Series []struct {
			Number   int
			BodySite struct{ Display string }
			Instance []struct{ Number int }
		}
	}
	_ = json.Unmarshal(v.Content, &is)
	if is.Subject.Reference != patient || len(is.BasedOn) != 1 || is.BasedOn[0].Reference != sr ||
		is.Referrer.Display != "Dr Gregory House" || is.Started != "2024-03-05T10:15:00Z" || is.NumberOfInstances != n ||
		len(is.Series) != 1 || is.Series[0].Number != 2 || is.Series[0].BodySite.Display != "CHEST" ||
		len(is.Series[0].Instance) != n || is.Series[0].Instance[0].Number != 1 || is.Series[0].Instance[n-1].Number != n {
		t.Errorf("ImagingStudy: %s", v.Content)
	}
	if c := e.count(t, "Patient", "identifier=P-7"); c != 1 {
		t.Errorf("%d patients with P-7, want the existing one only", c)
	}
	if c := e.count(t, "ImagingStudy", "patient="+patient+"&modality=CT&started=ge2024-03-01&basedon="+sr); c != 1 {
		t.Errorf("ImagingStudy search: %d", c)
	}

	// A second study for a new patient creates the Patient from the module.
	other := fake{study: "1.2.826.0.1.3680043.10.1.2", series: "1.2.826.0.1.3680043.10.1.2.1", sop: "1.2.826.0.1.3680043.10.1.2.1.1",
		patientID: "P-8", patientName: "Roe^Richard", modality: "MR", number: 1}
	e.store1(t, other)
	if err := e.svc.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if c := e.count(t, "Patient", "identifier=urn:dicom:patient-id|P-8&family=Roe&birthdate=1970-01-02&gender=female"); c != 1 {
		t.Errorf("created patient P-8: %d", c)
	}
	if c := e.count(t, "Endpoint", "connection-type=dicom-wado-rs"); c != 1 {
		t.Errorf("%d Endpoints, want one shared", c)
	}
	// Flush with nothing stale writes nothing.
	if err := e.svc.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if v2, _ := e.store.Read(ctx, "ImagingStudy", dicom.ImagingStudyID(study)); v2.VersionID != 1 {
		t.Errorf("version %d after idle flush", v2.VersionID)
	}

	// C-FIND with the QIDO matching.
	for _, c := range []struct {
		level string
		keys  map[uint32]string
		want  int
	}{
		{"STUDY", map[uint32]string{0x00100020: "P-*", 0x0020000D: ""}, 2},
		{"STUDY", map[uint32]string{0x00100010: "Doe^*", 0x00080061: ""}, 1},
		{"STUDY", map[uint32]string{0x00080020: "20240101-20241231"}, 2},
		{"SERIES", map[uint32]string{0x0020000D: study, 0x00080060: "CT"}, 1},
		{"IMAGE", map[uint32]string{0x0020000E: series, 0x00080018: ""}, n},
		{"IMAGE", map[uint32]string{0x0020000E: series, 0x00200013: "3"}, 1},
	} {
		var matches []dimse.FindMatch
		status, err := e.svc.CFind(ctx, &dimse.FindRequest{Level: c.level, Keys: c.keys}, func(m dimse.FindMatch) error {
			matches = append(matches, m)
			return nil
		})
		if status != dimse.StatusSuccess || err != nil || len(matches) != c.want {
			t.Errorf("C-FIND %s %v: %04X %v, %d matches, want %d", c.level, c.keys, status, err, len(matches), c.want)
			continue
		}
		for k := range c.keys {
			if _, ok := matches[0][k]; !ok {
				t.Errorf("C-FIND %s: key %08X not returned", c.level, k)
			}
		}
	}
	if status, _ := e.svc.CFind(ctx, &dimse.FindRequest{Level: "STUDY", Keys: map[uint32]string{0x00080020: "2024"}},
		func(dimse.FindMatch) error { return nil }); status != dimse.StatusIdentifierMismatch {
		t.Errorf("bad date C-FIND: %04X", status)
	}
}

func TestCStoreRejects(t *testing.T) {
	e := newEnv(t, time.Hour)
	ctx := t.Context()
	f := fake{study: "1.2.3", series: "1.2.3.4", sop: "1.2.3.4.5", modality: "CT"}
	for _, c := range []struct {
		name    string
		dataset []byte
		want    uint16
	}{
		{"garbage", []byte("\x08\x00\x16\x00zz\x04\x00abcd"), dimse.StatusCannotUnderstand},
		{"truncated", f.dataset()[:103], dimse.StatusCannotUnderstand},
		{"no study", fake{series: "1.2.3.4", sop: "1.2.3.4.5"}.dataset(), dimse.StatusDataSetMismatch},
		{"other SOP instance", fake{study: "1.2.3", series: "1.2.3.4", sop: "1.2.3.4.6"}.dataset(), dimse.StatusDataSetMismatch},
	} {
		status, err := e.svc.CStore(ctx, &dimse.StoreRequest{SOPClassUID: ctClass, SOPInstanceUID: f.sop,
			TransferSyntaxUID: dicom.ExplicitVRLittleEndian, Dataset: bytes.NewReader(c.dataset)})
		if status != c.want || err == nil {
			t.Errorf("%s: %04X %v, want %04X", c.name, status, err, c.want)
		}
	}
	if list, _ := e.svc.Instances(ctx, "1.2.3", "", ""); len(list) != 0 {
		t.Errorf("rejected instances stored: %v", list)
	}
	entries, _ := os.ReadDir(filepath.Join(e.dir, "instances"))
	for _, d := range entries {
		if files, _ := os.ReadDir(filepath.Join(e.dir, "instances", d.Name())); len(files) > 0 {
			t.Errorf("files left in %s: %d", d.Name(), len(files))
		}
	}
}

// End to end: dcmtk's storescu against the DIMSE server with this service
// as its handler.
func TestStorescu(t *testing.T) {
	testenv.DCMTKTools(t, "storescu")
	e := newEnv(t, 100*time.Millisecond)
	ctx := t.Context()
	port := e.serveDIMSE(t)
	var files []string
	// Uncompressed samples: which compressed transfer syntaxes the DIMSE
	// layer accepts is its own tests' business.
	for _, name := range []string{dicomsamples.CTSmall, dicomsamples.MRSmall} {
		p, err := dicomsamples.Pydicom(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	sdir, err := dicomsamples.SuyashkumarDir(ctx)
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, filepath.Join(sdir, "1.dcm"))
	args := append([]string{"-aec", "EMBER", "-R", "127.0.0.1", port}, files...)
	cmd := exec.CommandContext(ctx, "storescu", args...)
	cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	// Each instance is stored once, readable, with its pixel data intact
	// (dcmtk may re-encode other elements, e.g. drop group lengths).
	for _, p := range files {
		orig, _ := os.ReadFile(p)
		list, err := e.svc.Instances(ctx, studyOf(t, orig), "", "")
		if err != nil || len(list) != 1 {
			t.Fatalf("%s: %d instances, %v", filepath.Base(p), len(list), err)
		}
		fr, err := e.svc.Frame(ctx, list[0], 1)
		if err != nil || len(fr) < 64 || !bytes.Contains(orig, fr) {
			t.Errorf("%s: frame 1 (%d bytes) is not the file's pixel data: %v", filepath.Base(p), len(fr), err)
		}
	}
	if err := e.svc.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if c := e.count(t, "ImagingStudy", "modality=CT,MR,PT"); c != 3 {
		t.Errorf("%d ImagingStudies, want 3", c)
	}
}

// serveDIMSE serves DIMSE on a loopback port with the env's service as its
// handler until the test ends, and returns the port.
func (e *env) serveDIMSE(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	srv, err := dimse.NewServer(dimse.Config{Handler: e.svc, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func studyOf(t *testing.T, file []byte) string {
	t.Helper()
	i := bytes.Index(file, []byte{0x20, 0x00, 0x0D, 0x00, 'U', 'I'})
	if i < 0 {
		t.Fatal("no StudyInstanceUID")
	}
	l := int(binary.LittleEndian.Uint16(file[i+6:]))
	return strings.TrimRight(string(file[i+8:i+8+l]), "\x00 ")
}

// An instance received again under another study moves: both studies'
// ImagingStudy resources follow.
func TestInstanceMovesStudy(t *testing.T) {
	e := newEnv(t, time.Hour)
	ctx := t.Context()
	a := fake{study: "1.2.826.0.1.3680043.10.2.1", series: "1.2.826.0.1.3680043.10.2.1.1", sop: "1.2.826.0.1.3680043.10.2.9",
		patientID: "P-1", modality: "CT", number: 1}
	b := a
	b.study, b.series = "1.2.826.0.1.3680043.10.2.2", "1.2.826.0.1.3680043.10.2.2.1"
	e.store1(t, a)
	if err := e.svc.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	e.store1(t, b)
	if err := e.svc.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for study, want := range map[string]string{a.study: `"numberOfInstances": 0`, b.study: `"numberOfInstances": 1`} {
		v, err := e.store.Read(ctx, "ImagingStudy", dicom.ImagingStudyID(study))
		if err != nil || !bytes.Contains(v.Content, []byte(want)) {
			t.Errorf("ImagingStudy %s: %v %s, want %s", study, err, v.Content, want)
		}
	}
	if list, _ := e.svc.Instances(ctx, a.study, "", ""); len(list) != 0 {
		t.Errorf("study A still lists %d instances", len(list))
	}
}
