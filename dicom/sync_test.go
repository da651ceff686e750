package dicom_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emberfhir/ember/dicom"
	"github.com/emberfhir/ember/engine"
)

// imagingStudySubject is the subject reference of a study's ImagingStudy.
func (e *env) imagingStudySubject(t *testing.T, study string) string {
	t.Helper()
	v, err := e.store.Read(t.Context(), "ImagingStudy", dicom.ImagingStudyID(study))
	if err != nil {
		t.Fatalf("ImagingStudy %s: %v", study, err)
	}
	var is struct{ Subject struct{ Reference string } }
	if err := json.Unmarshal(v.Content, &is); err != nil {
		t.Fatal(err)
	}
	return is.Subject.Reference
}

// A DICOM push of a new patient and a REST conditional create of that same
// patient (If-None-Exist: identifier=system|value) make one Patient: the
// sync's Patient is the engine's conditional create, so it waits on the
// lock the REST transaction holds and then finds its Patient. Deterministic:
// the REST side is held open while the sync runs. (Before the sync went
// through the engine it took a lock of its own, did not wait, and made a
// second Patient.)
func TestSyncRacesRESTConditionalCreate(t *testing.T) {
	e := newEnv(t, time.Hour) // no debounced sync: the test runs it
	ctx := t.Context()
	f := fake{study: "1.2.826.0.1.3680043.10.7.1", series: "1.2.826.0.1.3680043.10.7.1.1", sop: "1.2.826.0.1.3680043.10.7.1.1.1",
		patientID: "P-RACE", patientName: "Race^Rita", modality: "CT", number: 1}
	e.store1(t, f)

	// The REST side: its own engine over the same database, as the server
	// builds one beside DICOM's.
	rest, err := engine.New(engine.Config{BaseURL: "http://ember.test/fhir"}, e.store)
	if err != nil {
		t.Fatal(err)
	}
	patient, err := rest.Parser().Parse([]byte(`{"resourceType":"Patient","identifier":[{"system":"urn:dicom:patient-id","value":"P-RACE"}],"name":[{"family":"Rest"}]}`), "Patient")
	if err != nil {
		t.Fatal(err)
	}
	created, commit := make(chan string, 1), make(chan struct{})
	restDone := make(chan error, 1)
	go func() {
		restDone <- rest.InTx(ctx, engine.System, func(tx *engine.Tx) error {
			res, err := tx.Create(engine.CreateRequest{Resource: patient, IfNoneExist: "identifier=urn:dicom:patient-id|P-RACE"})
			if err != nil {
				close(created)
				return err
			}
			created <- "Patient/" + res.Version.ID
			<-commit
			return nil
		})
	}()
	restRef, ok := <-created
	if !ok {
		t.Fatalf("REST conditional create: %v", <-restDone)
	}

	syncDone := make(chan error, 1)
	go func() { syncDone <- e.svc.Sync(ctx, f.study) }()
	select {
	case err := <-syncDone:
		t.Errorf("the sync finished (err %v) while the REST conditional create of its patient was uncommitted: it did not wait on the condition's lock", err)
		syncDone <- err
	case <-time.After(300 * time.Millisecond):
	}
	close(commit)
	if err := <-restDone; err != nil {
		t.Fatalf("REST transaction: %v", err)
	}
	select {
	case err := <-syncDone:
		if err != nil {
			t.Fatalf("sync: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the sync did not finish after the REST transaction committed")
	}
	if c := e.count(t, "Patient", "identifier=urn:dicom:patient-id|P-RACE"); c != 1 {
		t.Errorf("%d Patients with P-RACE, want 1", c)
	}
	if got := e.imagingStudySubject(t, f.study); got != restRef {
		t.Errorf("ImagingStudy.subject %s, want the REST-created %s", got, restRef)
	}
}

// Several Patients with the identifier a study maps to: a REST conditional
// create would fail (multiple matches); the sync links the oldest and logs
// a warning naming the identifier, so the study still gets its
// ImagingStudy.
func TestSyncLinksOldestOfSeveralPatients(t *testing.T) {
	e := newEnv(t, time.Hour)
	ctx := t.Context()
	const dup = `{"resourceType":"Patient","identifier":[{"system":"urn:dicom:patient-id","value":"P-DUP"}]}`
	oldest := e.create(t, dup)
	e.create(t, dup)

	var logged lockedBuffer
	blobs, err := dicom.OpenBlobs(ctx, "file://"+e.dir)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := dicom.New(dicom.Config{Engine: e.eng, Blobs: blobs, DICOMwebBase: "http://ember.test/dicomweb",
		SyncDelay: time.Hour, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close(context.Background()) })
	e.svc = svc
	f := fake{study: "1.2.826.0.1.3680043.10.7.2", series: "1.2.826.0.1.3680043.10.7.2.1", sop: "1.2.826.0.1.3680043.10.7.2.1.1",
		patientID: "P-DUP", modality: "MR", number: 1}
	e.store1(t, f)
	if err := svc.Flush(ctx); err != nil {
		t.Fatalf("sync with two matching Patients: %v", err)
	}
	if got := e.imagingStudySubject(t, f.study); got != oldest {
		t.Errorf("ImagingStudy.subject %s, want the oldest match %s", got, oldest)
	}
	if c := e.count(t, "Patient", "identifier=urn:dicom:patient-id|P-DUP"); c != 2 {
		t.Errorf("%d Patients with P-DUP, want the 2 there were", c)
	}
	if s := logged.String(); !strings.Contains(s, "level=WARN") || !strings.Contains(s, "urn:dicom:patient-id") || !strings.Contains(s, oldest) {
		t.Errorf("no warning naming the identifier's system and the linked Patient; log:\n%s", s)
	} else if strings.Contains(s, "P-DUP") {
		t.Errorf("the warning logs the patient ID (patient data); log:\n%s", s)
	}
	// A plain engine conditional create (what REST does) still refuses.
	r, err := e.parser.Parse([]byte(dup), "Patient")
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.eng.Create(ctx, engine.System, engine.CreateRequest{Resource: r, IfNoneExist: "identifier=urn:dicom:patient-id|P-DUP"})
	if !engine.IsMultipleMatches(err) {
		t.Errorf("REST-style conditional create over two matches: %v, want multiple matches", err)
	}
}

// lockedBuffer is a log sink safe for the sync's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
