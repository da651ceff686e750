package dicom_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/emberfhir/ember/dicom"
	"github.com/emberfhir/ember/dicom/dimse"
)

// TestInferenceStudies: the inference side's view of a stored study (the
// metadata a model's selection reads, the instance's bytes, the study UID
// of its ImagingStudy) and the sync hook that triggers inference.
func TestInferenceStudies(t *testing.T) {
	base := newEnv(t, time.Hour)
	blobs, err := dicom.OpenBlobs(t.Context(), "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var synced []string
	svc, err := dicom.New(dicom.Config{
		Engine: base.eng, Blobs: blobs, DICOMwebBase: "http://ember.test/dicomweb", SyncDelay: time.Hour,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnStudySynced: func(uid string) { mu.Lock(); synced = append(synced, uid); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close(context.Background()) })
	f := fake{study: "1.2.9.1", series: "1.2.9.1.1", sop: "1.2.9.1.1.1", patientID: "P9", patientName: "Doe^Jane", modality: "CT", number: 7}
	ds := f.dataset()
	status, err := svc.CStore(t.Context(), &dimse.StoreRequest{
		CallingAE: "TEST", CalledAE: "EMBER", SOPClassUID: ctClass, SOPInstanceUID: f.sop,
		TransferSyntaxUID: dicom.ExplicitVRLittleEndian, Dataset: bytes.NewReader(ds),
	})
	if status != dimse.StatusSuccess || err != nil {
		t.Fatalf("CStore: %04X %v", status, err)
	}
	if err := svc.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := svc.Flush(t.Context()); err != nil { // nothing stale: no second call
		t.Fatal(err)
	}
	t.Run("OnStudySynced", func(t *testing.T) {
		mu.Lock()
		defer mu.Unlock()
		if len(synced) != 1 || synced[0] != f.study {
			t.Errorf("OnStudySynced calls: %v, want one for %s", synced, f.study)
		}
	})

	is := svc.InferenceStudies()
	metas, err := is.Instances(t.Context(), f.study)
	if err != nil {
		t.Fatal(err)
	}
	if len(metas) != 1 {
		t.Fatalf("Instances: %+v", metas)
	}
	m := metas[0]
	if m.SOPInstanceUID != f.sop || m.SeriesInstanceUID != f.series || m.Modality != "CT" || m.BodyPart != "CHEST" ||
		m.InstanceNumber != 7 || m.Rows != 4 || m.Columns != 4 {
		t.Errorf("Instances: %+v", m)
	}
	r, size, closeFn, err := is.Open(t.Context(), f.sop)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn() //nolint:errcheck
	buf := make([]byte, size)
	if _, err := r.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if string(buf[128:132]) != "DICM" || !bytes.HasSuffix(buf, ds[len(ds)-32:]) {
		t.Errorf("Open: %d bytes, not the stored Part-10 file", size)
	}
	uid, err := is.StudyOf(t.Context(), dicom.ImagingStudyID(f.study))
	if err != nil || uid != f.study {
		t.Errorf("StudyOf: %q %v", uid, err)
	}
	if _, err := is.StudyOf(t.Context(), "no-such-study"); err == nil {
		t.Error("StudyOf of an absent ImagingStudy: no error")
	}
}
