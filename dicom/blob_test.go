package dicom_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"testing"

	_ "gocloud.dev/blob/memblob" // mem:// stands in for S3: the non-file write path

	"github.com/emberfhir/ember/dicom"
	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/internal/dicomsamples"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/store"
)

// Through a gocloud bucket (not fileblob), a stored instance reads back
// byte for byte and a rejected one leaves no object.
func TestBucketStore(t *testing.T) {
	ctx := t.Context()
	p, err := dicomsamples.Pydicom(ctx, dicomsamples.CTSmall)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	eng, err := engine.New(engine.Config{BaseURL: "http://ember.test/fhir"}, st)
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := dicom.OpenBlobs(ctx, "mem://")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := dicom.New(dicom.Config{Engine: eng, Blobs: blobs, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close(context.Background())
	if _, err := svc.Ingest(ctx, bytes.NewReader(ct[:len(ct)-10]), dicom.IngestOptions{NoSync: true}); err == nil {
		t.Fatal("truncated instance accepted")
	}
	if keys, err := blobs.Keys(ctx); err != nil || len(keys) != 0 {
		t.Fatalf("objects after a reject: %v %v", keys, err)
	}
	in, err := svc.Ingest(ctx, bytes.NewReader(ct), dicom.IngestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	list, err := svc.Instances(ctx, in.StudyUID, in.SeriesUID, in.SOPInstanceUID)
	if err != nil || len(list) != 1 || list[0].Size != int64(len(ct)) {
		t.Fatalf("instances: %v %v", list, err)
	}
	rc, err := blobs.Open(ctx, list[0].BlobKey, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, ct) {
		t.Error("bytes differ")
	}
	// A worker streams the pixel data by SOP Instance UID alone.
	pst, prc, err := svc.OpenPixelData(ctx, in.SOPInstanceUID)
	if err != nil {
		t.Fatal(err)
	}
	pixels, _ := io.ReadAll(prc)
	prc.Close()
	if pst.Rows != 128 || len(pixels) != 128*128*2 || !bytes.Equal(pixels, ct[pst.PixelOffset:pst.PixelOffset+pst.PixelLength]) {
		t.Errorf("pixel data: %d bytes, rows %d", len(pixels), pst.Rows)
	}
	if _, _, err := svc.OpenPixelData(ctx, "1.2.3"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unknown instance: %v", err)
	}
	// Flushing makes the ImagingStudy without waiting for the timer.
	if err := svc.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Read(ctx, "ImagingStudy", dicom.ImagingStudyID(in.StudyUID)); err != nil {
		t.Errorf("ImagingStudy after Flush: %v", err)
	}
}
