package dicom_test

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/emberfhir/ember/dicom"
	"github.com/emberfhir/ember/dicom/dimse"
	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/store"
)

// TestIngestMetrics: stored instances and their bytes, and refused ones,
// counted by source on the registry given in Config.Metrics.
func TestIngestMetrics(t *testing.T) {
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
	blobs, err := dicom.OpenBlobs(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	svc, err := dicom.New(dicom.Config{Engine: eng, Blobs: blobs, DICOMwebBase: "http://ember.test/dicomweb",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close(t.Context()) })

	f := fake{study: "1.2.3.1", series: "1.2.3.1.1", sop: "1.2.3.1.1.1", patientID: "P-M1", patientName: "Doe^Jane", modality: "CT", number: 1}
	data := f.dataset()
	status, err := svc.CStore(ctx, &dimse.StoreRequest{CallingAE: "TEST", CalledAE: "EMBER", SOPClassUID: ctClass,
		SOPInstanceUID: f.sop, TransferSyntaxUID: dicom.ExplicitVRLittleEndian, Dataset: bytes.NewReader(data)})
	if status != dimse.StatusSuccess || err != nil {
		t.Fatalf("CStore: %04X %v", status, err)
	}
	if _, err := svc.Ingest(ctx, strings.NewReader("not DICOM"), dicom.IngestOptions{}); err == nil {
		t.Fatal("garbage ingested")
	}

	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			got[mf.GetName()+"/"+m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	if got["ember_dicom_instances_stored_total/dimse"] != 1 || got["ember_dicom_instances_failed_total/dicomweb"] != 1 {
		t.Errorf("counters %v", got)
	}
	// The stored file is the dataset behind a Part-10 header.
	if b := got["ember_dicom_stored_bytes_total/dimse"]; b <= float64(len(data)) {
		t.Errorf("bytes stored %v, want more than the dataset's %d", b, len(data))
	}
	if len(got) != 3 {
		t.Errorf("counters %v: want stored, bytes and failed only", got)
	}
}
