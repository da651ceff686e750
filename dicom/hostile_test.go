package dicom_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emberfhir/ember/dicom"
	"github.com/emberfhir/ember/dicom/dimse"
	"github.com/emberfhir/ember/internal/dicomsamples"
	"github.com/emberfhir/ember/internal/testenv"
)

// Hostile-input regressions of issue 11 for the DICOM service.

func (e *env) storeAs(t *testing.T, ae string, f fake) (uint16, error) {
	t.Helper()
	return e.svc.CStore(t.Context(), &dimse.StoreRequest{
		CallingAE: ae, CalledAE: "EMBER", SOPClassUID: ctClass, SOPInstanceUID: f.sop,
		TransferSyntaxUID: dicom.ExplicitVRLittleEndian, Dataset: bytes.NewReader(f.dataset()),
	})
}

func (e *env) patientName(t *testing.T, study string) string {
	t.Helper()
	var name string
	found := false
	q := &dicom.Query{Level: dicom.LevelStudy, Match: map[uint32]string{0x0020000D: study, 0x00100010: ""}}
	if err := e.svc.Run(t.Context(), q, func(r *dicom.Result) error {
		for _, v := range r.Values {
			if v.Tag == 0x00100010 {
				name, found = v.Value, true
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Fatalf("study %s not found", study)
	}
	return name
}

func (e *env) files(t *testing.T) int {
	t.Helper()
	n := 0
	_ = filepath.Walk(e.dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// Finding 8: by default a C-STORE replaces an existing SOP instance with
// other data only when it comes from the calling AE that stored it; the
// same data set is accepted from anyone (and keeps its source); a refusal
// is Duplicate SOP Instance and leaves the instance, its study's values
// and the blob store as they were. Config.Overwrite opens or closes it.
func TestOverwritePolicy(t *testing.T) {
	orig := fake{study: "1.2.826.0.1.3680043.10.3.1", series: "1.2.826.0.1.3680043.10.3.1.1", sop: "1.2.826.0.1.3680043.10.3.1.1.1",
		patientID: "P-1", patientName: "Doe^Jane", modality: "CT", number: 1}
	other := orig
	other.patientName = "Mallory^Eve"

	e := newEnv(t, time.Hour) // default policy: same-ae
	if status, err := e.storeAs(t, "MODALITY", orig); status != dimse.StatusSuccess {
		t.Fatalf("first store: %04X %v", status, err)
	}
	if status, err := e.storeAs(t, "OTHER", orig); status != dimse.StatusSuccess {
		t.Errorf("same data from another AE: %04X %v, want success", status, err)
	}
	status, err := e.storeAs(t, "OTHER", other)
	if status != dimse.StatusDuplicateSOPInstance || err == nil {
		t.Errorf("other data from another AE: %04X %v, want %04X", status, err, dimse.StatusDuplicateSOPInstance)
	}
	if got := e.patientName(t, orig.study); got != "Doe^Jane" {
		t.Errorf("refused store changed the study's patient name to %q", got)
	}
	if n := e.files(t); n != 1 {
		t.Errorf("%d blob files after a refused store, want 1", n)
	}
	// OTHER re-sent identical data: MODALITY stays the source.
	if status, err := e.storeAs(t, "MODALITY", other); status != dimse.StatusSuccess {
		t.Errorf("other data from the storing AE: %04X %v, want success", status, err)
	}
	if got := e.patientName(t, orig.study); got != "Mallory^Eve" {
		t.Errorf("patient name %q after the storing AE replaced the instance", got)
	}

	never := newEnvOverwrite(t, dicom.OverwriteNever)
	never.storeAs(t, "MODALITY", orig)
	if status, _ := never.storeAs(t, "MODALITY", orig); status != dimse.StatusSuccess {
		t.Errorf("never: same data again: %04X", status)
	}
	if status, _ := never.storeAs(t, "MODALITY", other); status != dimse.StatusDuplicateSOPInstance {
		t.Errorf("never: other data from the same AE: %04X", status)
	}
	anyAE := newEnvOverwrite(t, dicom.OverwriteAny)
	anyAE.storeAs(t, "MODALITY", orig)
	if status, _ := anyAE.storeAs(t, "OTHER", other); status != dimse.StatusSuccess {
		t.Errorf("any: other data from another AE: %04X", status)
	}
	if _, err := dicom.ParseOverwrite("sometimes"); err == nil {
		t.Error("ParseOverwrite accepted nonsense")
	}
}

func newEnvOverwrite(t *testing.T, o dicom.Overwrite) *env {
	t.Helper()
	e := newEnv(t, time.Hour)
	blobs, err := dicom.OpenBlobs(t.Context(), "file://"+e.dir)
	if err != nil {
		t.Fatal(err)
	}
	e.svc, err = dicom.New(dicom.Config{Engine: e.eng, Blobs: blobs, DICOMwebBase: "http://ember.test/dicomweb",
		SyncDelay: time.Hour, Overwrite: o, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.svc.Close(context.Background()) })
	return e
}

// Finding 8 end to end: dcmtk's storescu sending a modified copy of an
// instance under another calling AE is refused (0x0111) and the stored
// file is unchanged; the storing AE may replace it.
func TestStorescuOverwrite(t *testing.T) {
	testenv.DCMTKTools(t, "storescu", "dcmodify")
	e := newEnv(t, time.Hour)
	ctx := t.Context()
	port := e.serveDIMSE(t)
	src, err := dicomsamples.Pydicom(ctx, dicomsamples.CTSmall)
	if err != nil {
		t.Fatal(err)
	}
	orig, _ := os.ReadFile(src)
	file := filepath.Join(t.TempDir(), "ct.dcm")
	modified := filepath.Join(t.TempDir(), "ct.dcm")
	os.WriteFile(file, orig, 0o644)
	os.WriteFile(modified, orig, 0o644)
	if out, err := exec.Command("dcmodify", "-nb", "-m", "PatientName=Mallory^Eve", modified).CombinedOutput(); err != nil {
		t.Fatalf("dcmodify: %v %s", err, out)
	}
	store := func(ae, path string) string {
		cmd := exec.CommandContext(ctx, "storescu", "-v", "-aet", ae, "-aec", "EMBER", "127.0.0.1", port, path)
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	pixels := func() []byte {
		list, err := e.svc.Instances(ctx, studyOf(t, orig), "", "")
		if err != nil || len(list) != 1 {
			t.Fatalf("%d instances, %v", len(list), err)
		}
		rc, err := e.svc.Blobs().Open(ctx, list[0].BlobKey, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, _ := io.ReadAll(rc)
		return b
	}
	if out := store("MODALITY", file); !strings.Contains(out, "Success") {
		t.Fatalf("first store: %s", out)
	}
	if out := store("OTHER", file); !strings.Contains(out, "Success") {
		t.Errorf("same file from another AE: %s", out)
	}
	before := pixels()
	if out := store("OTHER", modified); !strings.Contains(out, "0x111") && !strings.Contains(out, "Duplicate") {
		t.Errorf("modified file from another AE: %s, want a Duplicate SOP Instance (0x0111) failure", out)
	}
	if after := pixels(); !bytes.Equal(before, after) || bytes.Contains(after, []byte("Mallory")) {
		t.Error("the refused store changed the stored file")
	}
	if out := store("MODALITY", modified); !strings.Contains(out, "Success") {
		t.Errorf("modified file from the storing AE: %s", out)
	}
	if !bytes.Contains(pixels(), []byte("Mallory")) {
		t.Error("the storing AE's replacement was not stored")
	}
}

// Finding 4: C-FIND identifiers with NUL bytes or invalid UTF-8 are a
// failure status the SCU can read (A900), not a database error.
func TestCFindBadText(t *testing.T) {
	e := newEnv(t, time.Hour)
	e.store1(t, fake{study: "1.2.826.0.1.3680043.10.4.1", series: "1.2.826.0.1.3680043.10.4.1.1", sop: "1.2.826.0.1.3680043.10.4.1.1.1",
		patientID: "P-4", patientName: "Doe^Jane", modality: "CT", number: 1})
	for _, keys := range []map[uint32]string{
		{0x00100020: "P\x00-4"},
		{0x00100010: "Doe\xff*"},
		{0x00080050: "\xc0\x80"},
		{0x0020000D: "1.2\x00"},
	} {
		n := 0
		status, err := e.svc.CFind(t.Context(), &dimse.FindRequest{Level: "STUDY", Keys: keys}, func(dimse.FindMatch) error { n++; return nil })
		if status != dimse.StatusIdentifierMismatch || err == nil || n != 0 {
			t.Errorf("keys %v: %04X %v (%d matches), want %04X", keys, status, err, n, dimse.StatusIdentifierMismatch)
		}
	}
	n := 0
	if status, err := e.svc.CFind(t.Context(), &dimse.FindRequest{Level: "STUDY", Keys: map[uint32]string{0x00100020: "P-4"}},
		func(dimse.FindMatch) error { n++; return nil }); status != dimse.StatusSuccess || n != 1 {
		t.Errorf("plain query: %04X %v, %d matches", status, err, n)
	}
}
