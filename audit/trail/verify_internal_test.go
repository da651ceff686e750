package trail

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"testing"

	"github.com/emberfhir/ember/audit"
	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/store"
	"github.com/emberfhir/ember/store/auditdb"
)

// TestVerifyPagesCheckpoints: checkpoints are read a page at a time beside
// the walk; every one is checked, and one past the last link still breaks.
func TestVerifyPagesCheckpoints(t *testing.T) {
	defer func(n int) { checkpointPage = n }(checkpointPage)
	checkpointPage = 2
	st, err := store.Open(t.Context(), pgtest.NewDatabase(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	en, err := engine.New(engine.Config{BaseURL: "http://ember.test/fhir"}, st)
	if err != nil {
		t.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(Config{Store: st, Signer: RSASigner{KeyID: "k", Key: key}, CheckpointEvery: 1})
	if err != nil {
		t.Fatal(err)
	}
	tr.Start(context.Background(), en)
	defer tr.Close(context.Background())
	for i := range 7 {
		tr.Record(audit.Event{Kind: audit.REST, Subtype: "read", Action: audit.Read, Agent: audit.Agent{Client: fmt.Sprint(i)}})
		if err := tr.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	keys := func(string) (crypto.PublicKey, error) { return &key.PublicKey, nil }
	db := auditdb.New(st)
	rep, err := Verify(t.Context(), db, VerifyOptions{Keys: keys})
	if err != nil || rep.Broken != nil || rep.Checkpoints != 7 || rep.Events != 7 {
		t.Fatalf("verify: %+v %v %v", rep, rep.Broken, err)
	}
	if _, err := st.Pool().Exec(t.Context(), `DELETE FROM audit_chain WHERE seq >= 6`); err != nil {
		t.Fatal(err)
	}
	rep, err = Verify(t.Context(), db, VerifyOptions{Keys: keys})
	if err != nil || rep.Broken == nil || rep.Broken.Seq != 6 {
		t.Fatalf("verify after deleting the tail: %+v %v %v", rep, rep.Broken, err)
	}
}
