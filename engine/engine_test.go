package engine_test

import (
	"context"
	"errors"
	"net/url"
	"testing"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func newEngine(t *testing.T) *engine.Engine {
	t.Helper()
	st, err := store.Open(t.Context(), pgtest.NewDatabase(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	eng, err := engine.New(engine.Config{BaseURL: "http://ember.test/fhir"}, st)
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

func parse(t *testing.T, eng *engine.Engine, body string) *fhir.Resource {
	t.Helper()
	r, err := eng.Parser().Parse([]byte(body), "")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestNoCallerIsRefused: a producer that names no caller gets an error,
// never unrestricted access by default.
func TestNoCallerIsRefused(t *testing.T) {
	eng := newEngine(t)
	if _, err := eng.Read(t.Context(), nil, "Patient", "x"); err == nil {
		t.Fatal("Read with a nil Caller succeeded")
	}
	if err := eng.InTx(t.Context(), nil, func(*engine.Tx) error { return nil }); err == nil {
		t.Fatal("InTx with a nil Caller succeeded")
	}
}

// TestProducerTransaction: a producer writes several resources in one
// transaction, conditional creates by typed parameters and by query string
// find the same resource, and a failure rolls everything back.
func TestProducerTransaction(t *testing.T) {
	eng := newEngine(t)
	ctx := context.Background()
	patient := `{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"42"}]}`
	var pid string
	err := eng.InTx(ctx, engine.System, func(tx *engine.Tx) error {
		r, err := tx.Create(engine.CreateRequest{Resource: parse(t, eng, patient), IfNoneExistParams: url.Values{"identifier": {"urn:mrn|42"}}})
		if err != nil {
			return err
		}
		if r.Outcome != engine.Created {
			t.Errorf("first conditional create: outcome %v", r.Outcome)
		}
		pid = r.Version.ID
		// Inside the same transaction the raw form finds it.
		r, err = tx.Create(engine.CreateRequest{Resource: parse(t, eng, patient), IfNoneExist: "identifier=urn:mrn|42"})
		if err != nil {
			return err
		}
		if r.Outcome != engine.Found || r.Version.ID != pid {
			t.Errorf("second conditional create: %v %s, want Found %s", r.Outcome, r.Version.ID, pid)
		}
		_, err = tx.Update(engine.UpdateRequest{ID: "s1", Resource: parse(t, eng,
			`{"resourceType":"ImagingStudy","id":"s1","status":"available","subject":{"reference":"Patient/`+pid+`"}}`)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Read(ctx, engine.System, "ImagingStudy", "s1"); err != nil {
		t.Fatal(err)
	}
	// A failing write undoes the others.
	boom := errors.New("boom")
	err = eng.InTx(ctx, engine.System, func(tx *engine.Tx) error {
		if _, err := tx.Update(engine.UpdateRequest{ID: "s2", Resource: parse(t, eng, `{"resourceType":"ImagingStudy","id":"s2","status":"available","subject":{"reference":"Patient/`+pid+`"}}`)}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx: %v", err)
	}
	var fe *fhir.Error
	if _, err := eng.Read(ctx, engine.System, "ImagingStudy", "s2"); !errors.As(err, &fe) || fe.Kind != fhir.NotFound {
		t.Fatalf("rolled-back write reads as %v", err)
	}
}

// TestPutMany: a re-put updates instead of duplicating, and resources
// without an id are created.
func TestPutMany(t *testing.T) {
	eng := newEngine(t)
	ctx := context.Background()
	put := func(bodies ...string) {
		rs := make([]*fhir.Resource, len(bodies))
		for i, b := range bodies {
			rs[i] = parse(t, eng, b)
		}
		if err := eng.InBulkTx(ctx, engine.System, func(tx *engine.Tx) error { return tx.PutMany(rs) }); err != nil {
			t.Fatal(err)
		}
	}
	put(`{"resourceType":"Patient","id":"a"}`, `{"resourceType":"Patient","id":"a","gender":"male"}`, `{"resourceType":"Patient"}`)
	put(`{"resourceType":"Patient","id":"a","gender":"female"}`)
	v, err := eng.Read(ctx, engine.System, "Patient", "a")
	if err != nil {
		t.Fatal(err)
	}
	if v.VersionID != 3 {
		t.Errorf("Patient/a is at version %d, want 3", v.VersionID)
	}
	if err := eng.WaitDurable(ctx); err != nil {
		t.Fatal(err)
	}
}
