package trail_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emberfhir/ember/audit"
	"github.com/emberfhir/ember/audit/trail"
	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/store"
	"github.com/emberfhir/ember/store/auditdb"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

type fixture struct {
	st    *store.Store
	en    *engine.Engine
	trail *trail.Trail
	key   *rsa.PrivateKey
	db    *auditdb.DB
}

var testKey = func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}()

func newFixture(t *testing.T, mod ...func(*trail.Config)) *fixture {
	t.Helper()
	st, err := store.Open(t.Context(), pgtest.NewDatabase(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	en, err := engine.New(engine.Config{BaseURL: "http://ember.test/fhir"}, st)
	if err != nil {
		t.Fatal(err)
	}
	cfg := trail.Config{Store: st, Site: "ember.test", Signer: trail.RSASigner{KeyID: "k1", Key: testKey}, CheckpointEvery: 5}
	for _, m := range mod {
		m(&cfg)
	}
	tr, err := trail.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr.Start(context.Background(), en)
	t.Cleanup(func() { _ = tr.Close(context.Background()) })
	return &fixture{st: st, en: en, trail: tr, key: testKey, db: auditdb.New(st)}
}

func (f *fixture) keys(kid string) (crypto.PublicKey, error) {
	if kid != "k1" {
		return nil, fmt.Errorf("unknown key %s", kid)
	}
	return &f.key.PublicKey, nil
}

func (f *fixture) verify(t *testing.T) trail.Report {
	t.Helper()
	rep, err := trail.Verify(t.Context(), f.db, trail.VerifyOptions{Keys: f.keys})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func (f *fixture) flush(t *testing.T) {
	t.Helper()
	if err := f.trail.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	if _, err := f.st.Pool().Exec(t.Context(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// events returns the stored AuditEvents in chain order.
func (f *fixture) events(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	err := f.db.Walk(t.Context(), 1, func(e auditdb.ChainedEvent) error {
		var m map[string]any
		if err := json.Unmarshal(e.Content, &m); err != nil {
			return err
		}
		out = append(out, m)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func read(user, client, ref string) audit.Event {
	return audit.Event{Kind: audit.REST, Subtype: "read", Action: audit.Read, Status: 200,
		Agent: audit.Agent{User: user, Subject: "u-" + user, Client: client, Address: "10.0.0.1"}, Entities: []string{ref}}
}

// record writes n distinct events (distinct agents keep them apart),
// three per write: with CheckpointEvery 5, checkpoints sign links 3 (the
// first write) and 9.
func (f *fixture) record(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		e := read(fmt.Sprintf("Practitioner/%d", i), "app", fmt.Sprintf("Observation/o%d", i))
		e.Patient = fmt.Sprintf("Patient/p%d", i)
		f.trail.Record(e)
		if i%3 == 2 {
			f.flush(t)
		}
	}
	f.flush(t)
}

func TestVerifyIntactAndSigned(t *testing.T) {
	f := newFixture(t)
	f.record(t, 12)
	rep := f.verify(t)
	if rep.Broken != nil {
		t.Fatalf("untouched chain reported broken: %s", rep.Broken)
	}
	if rep.Events != 12 {
		t.Errorf("verified %d events, want 12", rep.Events)
	}
	if rep.Checkpoints == 0 {
		t.Error("no signed checkpoint verified (CheckpointEvery 5)")
	}
}

// TestVerifyFindsTampering changes, deletes and inserts rows behind the
// engine's back, as someone with database access would, and expects
// Verify to name the first broken link each time.
func TestVerifyFindsTampering(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(t *testing.T, f *fixture, ids []string)
		seq    int64 // expected broken link (0: an event outside the chain)
		reason string
	}{
		{"update content", func(t *testing.T, f *fixture, ids []string) {
			f.exec(t, `UPDATE resources SET content = jsonb_set(content, '{outcome}', '"8"') WHERE type = 'AuditEvent' AND id = $1`, ids[3])
		}, 4, "changed"},
		{"delete event row", func(t *testing.T, f *fixture, ids []string) {
			f.exec(t, `DELETE FROM idx_token WHERE rid IN (SELECT rid FROM resources WHERE id = $1)`, ids[5])
			f.exec(t, `DELETE FROM resources WHERE type = 'AuditEvent' AND id = $1`, ids[5])
		}, 6, "deleted"},
		{"delete link", func(t *testing.T, f *fixture, ids []string) {
			f.exec(t, `DELETE FROM audit_chain WHERE seq = 2`)
		}, 2, "missing"},
		{"insert event", func(t *testing.T, f *fixture, ids []string) {
			f.exec(t, `INSERT INTO resources (type, id, version, last_updated, method, content)
SELECT type, 'forged', 1, last_updated, method, jsonb_set(content, '{id}', '"forged"') FROM resources WHERE type = 'AuditEvent' AND id = $1`, ids[0])
		}, 0, "inserted"},
		{"rewrite chain", func(t *testing.T, f *fixture, ids []string) {
			// Change an event and recompute every later hash, as an attacker
			// who knows the scheme (but not the key) would: the signed
			// checkpoint no longer matches.
			f.exec(t, `UPDATE resources SET content = jsonb_set(content, '{outcome}', '"8"') WHERE type = 'AuditEvent' AND id = $1`, ids[1])
			rehash(t, f)
		}, 3, "checkpoint"},
		{"truncate tail", func(t *testing.T, f *fixture, ids []string) {
			f.exec(t, `DELETE FROM audit_chain WHERE seq >= 9`)
		}, 9, "tail"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.record(t, 12)
			var ids []string
			err := f.db.Walk(t.Context(), 1, func(e auditdb.ChainedEvent) error { ids = append(ids, e.EventID); return nil })
			if err != nil || len(ids) != 12 {
				t.Fatalf("chain: %d links, %v", len(ids), err)
			}
			if rep := f.verify(t); rep.Broken != nil {
				t.Fatalf("broken before tampering: %s", rep.Broken)
			}
			tc.tamper(t, f, ids)
			rep := f.verify(t)
			if rep.Broken == nil {
				t.Fatal("tampering not detected")
			}
			if rep.Broken.Seq != tc.seq || !strings.Contains(rep.Broken.String(), tc.reason) {
				t.Errorf("break = %q (seq %d); want seq %d mentioning %q", rep.Broken, rep.Broken.Seq, tc.seq, tc.reason)
			}
			if tc.seq > 0 && tc.seq <= 12 && tc.name != "delete link" && tc.name != "truncate tail" && !strings.Contains(rep.Broken.String(), ids[tc.seq-1]) && tc.name != "rewrite chain" {
				t.Errorf("break %q does not name AuditEvent/%s", rep.Broken, ids[tc.seq-1])
			}
		})
	}
}

// rehash recomputes every link's hash from the stored events.
func rehash(t *testing.T, f *fixture) {
	t.Helper()
	_, prev, err := f.db.Anchor(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	type link struct {
		seq  int64
		hash []byte
	}
	var links []link
	err = f.db.Walk(t.Context(), 1, func(e auditdb.ChainedEvent) error {
		canon, err := trail.Canonical(e.Content)
		if err != nil {
			return err
		}
		prev = trail.LinkHash(prev, canon)
		links = append(links, link{e.Seq, prev})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		f.exec(t, `UPDATE audit_chain SET hash = $1 WHERE seq = $2`, l.hash, l.seq)
	}
}

// TestGrouping: a burst of reads by one agent is one AuditEvent naming
// every resource and every patient, with the period they span; another
// agent or outcome is another event.
func TestGrouping(t *testing.T) {
	f := newFixture(t)
	for i := range 50 {
		e := read("Practitioner/1", "app", fmt.Sprintf("Observation/o%d", i%20))
		e.Patient = fmt.Sprintf("Patient/p%d", i%2)
		f.trail.Record(e)
	}
	other := read("Practitioner/2", "app", "Observation/x")
	other.Patient = "Patient/p1"
	f.trail.Record(other)
	failed := read("Practitioner/1", "app", "Observation/y")
	failed.Patient, failed.Status, failed.Outcome = "Patient/p1", 404, audit.MinorFailure
	f.trail.Record(failed)
	f.flush(t)
	evs := f.events(t)
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3", len(evs))
	}
	first := evs[0]
	ents := first["entity"].([]any)
	if len(ents) != 22 { // 2 patients + 20 distinct observations
		t.Errorf("grouped event has %d entities, want 22", len(ents))
	}
	if first["period"] == nil {
		t.Error("grouped event has no period")
	}
	if evs[2]["outcome"] != "4" || evs[2]["outcomeDesc"] != "HTTP 404" {
		t.Errorf("failed read: outcome %v %v", evs[2]["outcome"], evs[2]["outcomeDesc"])
	}
}

// TestEventsAreSearchable: the trail writes ordinary, indexed AuditEvents.
func TestEventsAreSearchable(t *testing.T) {
	f := newFixture(t)
	e := read("Practitioner/7", "app", "Observation/o1")
	e.Patient = "Patient/p9"
	f.trail.Record(e)
	f.flush(t)
	for _, q := range []string{"patient=Patient/p9", "agent=Practitioner/7", "entity=Observation/o1", "subtype=read",
		"date=" + time.Now().UTC().Format("2006-01-02"), "address=10.0.0.1", "altid=u-Practitioner/7", "agent-name=app"} {
		params := mustQuery(t, q)
		params.Set("_total", "accurate")
		b, err := f.en.Search(t.Context(), engine.System, engine.SearchRequest{Type: "AuditEvent", Params: params, Strict: true})
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		var bundle struct {
			Total int `json:"total"`
		}
		if err := json.Unmarshal(b, &bundle); err != nil {
			t.Fatal(err)
		}
		if bundle.Total != 1 {
			t.Errorf("AuditEvent?%s matched %d, want 1", q, bundle.Total)
		}
	}
}

func mustQuery(t *testing.T, q string) url.Values {
	v, err := url.ParseQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestAppendOnly: Ember's AuditEvents cannot be updated, patched, deleted or
// forged through the engine, whoever asks; other AuditEvents are ordinary.
func TestAppendOnly(t *testing.T) {
	f := newFixture(t)
	f.record(t, 1)
	id := f.events(t)[0]["id"].(string)
	ctx := t.Context()
	body := fmt.Sprintf(`{"resourceType":"AuditEvent","id":%q,"type":{"code":"rest"},"recorded":"2026-01-01T00:00:00Z","agent":[{"requestor":true}],"source":{"observer":{"display":"x"}}}`, id)
	res, err := f.en.Parser().Parse([]byte(body), "AuditEvent")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.en.Update(ctx, engine.System, engine.UpdateRequest{Resource: res, ID: id}); !isForbidden(err) {
		t.Errorf("update of a chained AuditEvent: %v, want forbidden", err)
	}
	if _, err := f.en.Delete(ctx, engine.System, engine.DeleteRequest{Type: "AuditEvent", ID: id}); !isForbidden(err) {
		t.Errorf("delete of a chained AuditEvent: %v, want forbidden", err)
	}
	forged := strings.Replace(body, `"type"`, `"meta":{"tag":[{"system":"`+trail.TagSystem+`","code":"ember"}]},"type"`, 1)
	forged = strings.Replace(forged, `"id":"`+id+`",`, "", 1)
	res, err = f.en.Parser().Parse([]byte(forged), "AuditEvent")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.en.Create(ctx, engine.System, engine.CreateRequest{Resource: res}); !isForbidden(err) {
		t.Errorf("create of an AuditEvent with Ember's tag: %v, want forbidden", err)
	}
	plain := strings.Replace(body, `"id":"`+id+`",`, "", 1)
	res, _ = f.en.Parser().Parse([]byte(plain), "AuditEvent")
	r, err := f.en.Create(ctx, engine.System, engine.CreateRequest{Resource: res})
	if err != nil {
		t.Fatalf("an ordinary AuditEvent: %v", err)
	}
	if _, err := f.en.Delete(ctx, engine.System, engine.DeleteRequest{Type: "AuditEvent", ID: r.Version.ID}); err != nil {
		t.Errorf("delete of an ordinary AuditEvent: %v", err)
	}
	if rep := f.verify(t); rep.Broken != nil {
		t.Errorf("after refused edits: %s", rep.Broken)
	}
}

func isForbidden(err error) bool {
	fe, ok := engine.AsError(err)
	return ok && err != nil && fe.Kind == fhir.Forbidden
}

// TestRetention prunes what is older than the retention, moves the anchor
// and leaves a chain that verifies.
func TestRetention(t *testing.T) {
	f := newFixture(t)
	f.record(t, 8)
	f.exec(t, `UPDATE audit_chain SET recorded = now() - interval '400 days' WHERE seq <= 5`)
	total := 0
	for {
		n, err := f.db.Prune(t.Context(), f.st, time.Now().Add(-365*24*time.Hour), 2)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		total += n
	}
	if total != 5 {
		t.Fatalf("pruned %d, want 5", total)
	}
	var left int
	if err := f.st.Pool().QueryRow(t.Context(), `SELECT count(*) FROM resources WHERE type = 'AuditEvent'`).Scan(&left); err != nil || left != 3 {
		t.Fatalf("%d AuditEvents left, %v; want 3", left, err)
	}
	rep := f.verify(t)
	if rep.Broken != nil || rep.Events != 3 || rep.From != 6 {
		t.Errorf("after pruning: %+v %v", rep, rep.Broken)
	}
	f.record(t, 2)
	if rep := f.verify(t); rep.Broken != nil || rep.Events != 5 {
		t.Errorf("after more events: %+v", rep)
	}
}

func TestRedactQuery(t *testing.T) {
	for _, c := range []struct{ typ, q, want string }{
		{"Patient", "name=Smith&birthdate=1970&_count=5", "_count=5&birthdate=1970&name=*"},
		{"Patient", "identifier=http://mrn|123&gender=female", "gender=female&identifier=*"},
		{"Observation", "patient=Patient/1&code=http://loinc.org|1234-5&subject:identifier=X", "code=http%3A%2F%2Floinc.org%7C1234-5&patient=Patient%2F1&subject%3Aidentifier=*"},
		{"Observation", "subject.name=Smith&_has:Observation:patient:code=1", "_has%3AObservation%3Apatient%3Acode=*&subject.name=*"},
	} {
		q, _ := url.ParseQuery(c.q)
		if got := audit.RedactQuery(c.typ, q); got != c.want {
			t.Errorf("RedactQuery(%s, %s) = %s, want %s", c.typ, c.q, got, c.want)
		}
	}
}

// TestCloseFlushes: what is recorded before Close is written.
func TestCloseFlushes(t *testing.T) {
	f := newFixture(t)
	f.trail.Record(read("Practitioner/1", "app", "Observation/1"))
	if err := f.trail.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(f.events(t)); n != 1 {
		t.Errorf("%d events after Close, want 1", n)
	}
}

// TestAppendOnlyBulk: the bulk path (ember import) refuses the same.
func TestAppendOnlyBulk(t *testing.T) {
	f := newFixture(t)
	f.record(t, 1)
	id := f.events(t)[0]["id"].(string)
	body := fmt.Sprintf(`{"resourceType":"AuditEvent","id":%q,"type":{"code":"rest"},"recorded":"2026-01-01T00:00:00Z","agent":[{"requestor":true}],"source":{"observer":{"display":"x"}}}`, id)
	forged := strings.Replace(body, `"type"`, `"meta":{"tag":[{"system":"`+trail.TagSystem+`","code":"ember"}]},"type"`, 1)
	forged = strings.Replace(forged, id, "forged-1", 1)
	for name, b := range map[string]string{"overwrite a chained event": body, "forge a tagged event": forged} {
		res, err := f.en.Parser().Parse([]byte(b), "AuditEvent")
		if err != nil {
			t.Fatal(err)
		}
		err = f.en.InBulkTx(t.Context(), engine.System, func(tx *engine.Tx) error { return tx.PutMany([]*fhir.Resource{res}) })
		if !isForbidden(err) {
			t.Errorf("%s through PutMany: %v, want forbidden", name, err)
		}
	}
	if rep := f.verify(t); rep.Broken != nil {
		t.Errorf("after refused bulk writes: %s", rep.Broken)
	}
}

// BenchmarkTrailReads is the trail's whole cost per audited read (grouping,
// building, validating, indexing and writing the AuditEvents, chaining):
// reads of distinct patients by one client, written every 2,000.
func BenchmarkTrailReads(b *testing.B) {
	st, err := store.Open(b.Context(), pgtest.NewDatabase(b), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	en, err := engine.New(engine.Config{BaseURL: "http://ember.test/fhir"}, st)
	if err != nil {
		b.Fatal(err)
	}
	tr, err := trail.New(trail.Config{Store: st, Site: "ember.test", Interval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	tr.Start(context.Background(), en)
	defer tr.Close(context.Background())
	b.ResetTimer()
	for i := range b.N {
		ref := fmt.Sprintf("Patient/bench-%d", i)
		tr.Record(audit.Event{Kind: audit.REST, Subtype: "read", Action: audit.Read, Status: 200,
			Agent: audit.Agent{Client: "bench", Address: "127.0.0.1"}, Entities: []string{ref}, Patient: ref})
		if i%2000 == 1999 {
			if err := tr.Flush(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := tr.Flush(b.Context()); err != nil {
		b.Fatal(err)
	}
}

// TestInvalidEventDoesNotBlock: an access whose event cannot validate is
// dropped and counted; the rest of its batch is written.
func TestInvalidEventDoesNotBlock(t *testing.T) {
	f := newFixture(t)
	bad := read("Practitioner/1", "app", "Observation/ok")
	bad.Agent.Client = "bad\x01client" // a control character: not a FHIR string
	f.trail.Record(bad)
	f.trail.Record(read("Practitioner/2", "app", "Observation/ok"))
	f.flush(t)
	if n := len(f.events(t)); n != 1 {
		t.Fatalf("%d events written, want 1 (the valid one)", n)
	}
	if rep := f.verify(t); rep.Broken != nil {
		t.Errorf("verify: %s", rep.Broken)
	}
}
