package authdb_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/store"
	"github.com/emberfhir/ember/store/authdb"
	"github.com/emberfhir/ember/store/authdb/authdbtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// open returns the authorization tables of a fresh database with one public
// client "app" and one user "doc".
func open(t *testing.T) (*authdb.DB, *store.Store) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{MaxConns: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	db := authdb.New(st)
	if err := db.AddClient(ctx, authdb.Client{ID: "app", Type: "public", RedirectURIs: []string{"http://app.example/cb"}}); err != nil {
		t.Fatal(err)
	}
	if err := db.AddUser(ctx, authdb.User{Username: "doc", Role: "doctor", FHIRUser: "Practitioner/d1"}, "hash"); err != nil {
		t.Fatal(err)
	}
	return db, st
}

// race runs f n times at once and returns how many returned true.
func race(t *testing.T, n int, f func() (bool, error)) int {
	t.Helper()
	var wins atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ok, err := f()
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	return int(wins.Load())
}

func TestClientsAndUsers(t *testing.T) {
	db, _ := open(t)
	ctx := context.Background()
	err := db.AddClient(ctx, authdb.Client{ID: "app", Type: "public"})
	if !errors.Is(err, authdb.ErrExists) {
		t.Errorf("second client app: %v", err)
	}
	if err := db.AddClient(ctx, authdb.Client{ID: "conf", Type: "symmetric", SecretHash: "h", Scopes: []string{"user/*.rs"},
		JWKS: []byte(`{"keys":[]}`), JWKSURI: "https://k.example", LaunchURI: "https://l.example"}); err != nil {
		t.Fatal(err)
	}
	c, err := db.Client(ctx, "conf")
	if err != nil || c.SecretHash != "h" || len(c.Scopes) != 1 || c.RedirectURIs == nil || string(c.JWKS) != `{"keys": []}` ||
		c.JWKSURI != "https://k.example" || c.LaunchURI != "https://l.example" {
		t.Errorf("client conf: %+v %v", c, err)
	}
	if c, err := db.Client(ctx, "app"); err != nil || c.SecretHash != "" || c.JWKS != nil || c.JWKSURI != "" {
		t.Errorf("client app: %+v %v", c, err)
	}
	if _, err := db.Client(ctx, "ghost"); !errors.Is(err, authdb.ErrNotFound) {
		t.Errorf("unknown client: %v", err)
	}
	if cs, err := db.Clients(ctx); err != nil || len(cs) != 2 || cs[0].ID != "app" || cs[1].ID != "conf" {
		t.Errorf("clients: %+v %v", cs, err)
	}
	if err := db.RemoveClient(ctx, "conf"); err != nil {
		t.Fatal(err)
	}
	if err := db.RemoveClient(ctx, "conf"); !errors.Is(err, authdb.ErrNotFound) {
		t.Errorf("removing twice: %v", err)
	}

	if err := db.AddUser(ctx, authdb.User{Username: "doc", Role: "nurse", FHIRUser: "Practitioner/x"}, "h2"); !errors.Is(err, authdb.ErrExists) {
		t.Errorf("second user doc: %v", err)
	}
	if u, err := db.User(ctx, "doc"); err != nil || u != (authdb.User{Username: "doc", Role: "doctor", FHIRUser: "Practitioner/d1"}) {
		t.Errorf("user doc: %+v %v", u, err)
	}
	if c, err := db.Credentials(ctx, "doc"); err != nil || c.PasswordHash != "hash" || c.LockedUntil != nil || c.Role != "doctor" {
		t.Errorf("credentials of doc: %+v %v", c, err)
	}
	if _, err := db.Credentials(ctx, "nobody"); !errors.Is(err, authdb.ErrNotFound) {
		t.Errorf("credentials of nobody: %v", err)
	}
	if err := db.RemoveUser(ctx, "doc"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.User(ctx, "doc"); !errors.Is(err, authdb.ErrNotFound) {
		t.Errorf("removed user: %v", err)
	}
}

// Failures counted concurrently all count; the fifth in a row locks the user
// for the lockout by the database's clock; a success clears both.
func TestLoginLockout(t *testing.T) {
	db, st := open(t)
	ctx := context.Background()
	fail := func() (bool, error) { return true, db.RecordLoginFailure(ctx, "doc", 5, 15*time.Minute) }
	for range 4 {
		if _, err := fail(); err != nil {
			t.Fatal(err)
		}
	}
	if c, err := db.Credentials(ctx, "doc"); err != nil || c.LockedUntil != nil {
		t.Fatalf("locked after 4 failures: %+v %v", c, err)
	}
	before := time.Now()
	if _, err := fail(); err != nil {
		t.Fatal(err)
	}
	c, err := db.Credentials(ctx, "doc")
	if err != nil || c.LockedUntil == nil || c.LockedUntil.Before(before.Add(14*time.Minute)) || c.LockedUntil.After(time.Now().Add(16*time.Minute)) {
		t.Fatalf("after 5 failures: %+v %v", c, err)
	}
	if err := db.ResetLoginFailures(ctx, "doc"); err != nil {
		t.Fatal(err)
	}
	if c, err := db.Credentials(ctx, "doc"); err != nil || c.LockedUntil != nil {
		t.Errorf("after reset: %+v %v", c, err)
	}
	if n, err := authdbtest.FailedLogins(ctx, st, "doc"); err != nil || n != 0 {
		t.Errorf("failures after reset: %d %v", n, err)
	}
	race(t, 12, fail)
	if n, err := authdbtest.FailedLogins(ctx, st, "doc"); err != nil || n != 12 {
		t.Errorf("12 concurrent failures counted %d (%v)", n, err)
	}
	if c, err := db.Credentials(ctx, "doc"); err != nil || c.LockedUntil == nil {
		t.Errorf("not locked after 12 concurrent failures: %+v %v", c, err)
	}
	// Failures of an unknown user change nothing and are no error.
	if err := db.RecordLoginFailure(ctx, "nobody", 5, time.Minute); err != nil {
		t.Error(err)
	}
}

// A code is issued once and used once, whatever runs concurrently; a
// replay finds the request marked used, and revoking its grant revokes its
// refresh tokens and the access token it bought.
func TestCodeSingleUse(t *testing.T) {
	db, _ := open(t)
	ctx := context.Background()
	req := authdb.AuthRequest{ID: "r1", CSRF: "c", ClientID: "app", RedirectURI: "http://app.example/cb",
		Scopes: []string{"openid", "offline_access"}, State: "st", CodeChallenge: "ch", ExpiresAt: time.Now().Add(10 * time.Minute)}
	if err := db.AddAuthRequest(ctx, req); err != nil {
		t.Fatal(err)
	}
	if n, err := db.CountPendingAuthRequests(ctx, 10); err != nil || n != 1 {
		t.Errorf("pending: %d %v", n, err)
	}
	if err := db.SetLogin(ctx, "r1", "doc", ""); err != nil {
		t.Fatal(err)
	}
	if err := db.SetPatient(ctx, "r1", "p1"); err != nil {
		t.Fatal(err)
	}
	q, err := db.PendingAuthRequest(ctx, "r1")
	if err != nil || q.Username != "doc" || q.LoginAt == nil || q.Patient != "p1" || q.State != "st" || q.CodeChallenge != "ch" ||
		len(q.Scopes) != 2 || q.Granted != nil || q.CodeUsed {
		t.Fatalf("pending request: %+v %v", q, err)
	}

	code := []byte("hash of the code")
	issued := race(t, 8, func() (bool, error) {
		return db.IssueCode(ctx, "r1", nil, code, time.Now().Add(10*time.Minute))
	})
	if issued != 1 {
		t.Fatalf("%d concurrent consents issued a code, want 1", issued)
	}
	if _, err := db.PendingAuthRequest(ctx, "r1"); !errors.Is(err, authdb.ErrNotFound) {
		t.Errorf("a request with a code is still pending: %v", err)
	}
	if n, err := db.CountPendingAuthRequests(ctx, 10); err != nil || n != 0 {
		t.Errorf("pending after the code: %d %v", n, err)
	}
	q, err = db.AuthRequestByCode(ctx, code)
	if err != nil || q.ID != "r1" || q.Granted == nil || len(q.Granted) != 0 || q.CodeUsed {
		t.Fatalf("by code: %+v %v", q, err)
	}
	if used := race(t, 8, func() (bool, error) { return db.UseCode(ctx, "r1") }); used != 1 {
		t.Fatalf("%d concurrent exchanges used the code, want 1", used)
	}
	if q, err := db.AuthRequestByCode(ctx, code); err != nil || !q.CodeUsed {
		t.Errorf("after use: %+v %v", q, err)
	}

	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	if err := db.SetCodeAccessToken(ctx, "r1", "jti-1", exp); err != nil {
		t.Fatal(err)
	}
	rt := authdb.RefreshToken{Hash: []byte("rt"), ClientID: "app", Username: "doc", Role: "doctor", FHIRUser: "Practitioner/d1",
		Scopes: []string{"offline_access"}, ExpiresAt: time.Now().Add(time.Hour), AuthRequest: "r1"}
	if err := db.AddRefreshToken(ctx, rt); err != nil {
		t.Fatal(err)
	}
	jti, gotExp, err := db.RevokeCodeGrant(ctx, "r1")
	if err != nil || jti != "jti-1" || !gotExp.Equal(exp) {
		t.Fatalf("revoke code grant: %q %v %v", jti, gotExp, err)
	}
	if _, err := db.RefreshToken(ctx, rt.Hash); !errors.Is(err, authdb.ErrNotFound) {
		t.Errorf("refresh token of a revoked grant: %v", err)
	}
	if ok, err := db.IsRevoked(ctx, "jti-1"); err != nil || !ok {
		t.Errorf("access token of a revoked grant: %v %v", ok, err)
	}
	if _, _, err := db.RevokeCodeGrant(ctx, "gone"); !errors.Is(err, authdb.ErrNotFound) {
		t.Errorf("revoking the grant of no request: %v", err)
	}
	if err := db.DeleteAuthRequest(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.AuthRequestByCode(ctx, code); !errors.Is(err, authdb.ErrNotFound) {
		t.Errorf("deleted request: %v", err)
	}
}

// Refresh tokens: found while active; revoked only by their own client;
// expired ones are not found.
func TestRefreshTokens(t *testing.T) {
	db, _ := open(t)
	ctx := context.Background()
	rt := authdb.RefreshToken{Hash: []byte("a"), ClientID: "app", Username: "doc", Role: "doctor", FHIRUser: "Practitioner/d1",
		Scopes: []string{"openid", "online_access"}, Patient: "p1", Encounter: "e1", ExpiresAt: time.Now().Add(time.Hour).Truncate(time.Second)}
	if err := db.AddRefreshToken(ctx, rt); err != nil {
		t.Fatal(err)
	}
	got, err := db.RefreshToken(ctx, rt.Hash)
	if err != nil || got.ClientID != "app" || got.Role != "doctor" || got.Patient != "p1" || got.Encounter != "e1" ||
		len(got.Scopes) != 2 || !got.ExpiresAt.Equal(rt.ExpiresAt) || got.AuthRequest != "" {
		t.Fatalf("refresh token: %+v %v", got, err)
	}
	if err := db.RevokeRefreshToken(ctx, rt.Hash, "other"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.RefreshToken(ctx, rt.Hash); err != nil {
		t.Errorf("revoked by another client: %v", err)
	}
	if err := db.RevokeRefreshToken(ctx, rt.Hash, "app"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.RefreshToken(ctx, rt.Hash); !errors.Is(err, authdb.ErrNotFound) {
		t.Errorf("revoked token: %v", err)
	}
	old := rt
	old.Hash, old.ExpiresAt = []byte("b"), time.Now().Add(-time.Second)
	if err := db.AddRefreshToken(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := db.RefreshToken(ctx, old.Hash); !errors.Is(err, authdb.ErrNotFound) {
		t.Errorf("expired token: %v", err)
	}
}

// Revoked access token ids: recorded once, listed by when they were
// revoked while the token lives.
func TestRevokedAccessTokens(t *testing.T) {
	db, _ := open(t)
	ctx := context.Background()
	start := time.Now().Add(-time.Minute)
	exp := time.Now().Add(time.Hour)
	for range 2 {
		if err := db.RevokeAccessToken(ctx, "j1", exp); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.RevokeAccessToken(ctx, "dead", time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if ok, err := db.IsRevoked(ctx, "j2"); err != nil || ok {
		t.Errorf("j2 revoked: %v %v", ok, err)
	}
	got, err := db.RevokedSince(ctx, start)
	if err != nil || len(got) != 1 || got[0].JTI != "j1" || got[0].RevokedAt.Before(start) {
		t.Fatalf("revoked since: %+v %v", got, err)
	}
	if later, err := db.RevokedSince(ctx, got[0].RevokedAt); err != nil || len(later) != 0 {
		t.Errorf("revoked after the newest: %+v %v", later, err)
	}
}

// A client assertion's jti is accepted once per client, even concurrently.
func TestAssertionReplay(t *testing.T) {
	db, _ := open(t)
	ctx := context.Background()
	exp := time.Now().Add(5 * time.Minute)
	wins := race(t, 8, func() (bool, error) {
		err := db.UseAssertionID(ctx, "backend", "jti-1", exp)
		if errors.Is(err, authdb.ErrExists) {
			return false, nil
		}
		return err == nil, err
	})
	if wins != 1 {
		t.Errorf("%d concurrent uses of one jti accepted, want 1", wins)
	}
	if err := db.UseAssertionID(ctx, "other", "jti-1", exp); err != nil {
		t.Errorf("the same jti from another client: %v", err)
	}
}

// Replicas starting together agree on one signing key, generated once.
func TestSigningKeyGeneratedOnce(t *testing.T) {
	db, _ := open(t)
	ctx := context.Background()
	var generated atomic.Int32
	var mu sync.Mutex
	kids := map[string]bool{}
	race(t, 6, func() (bool, error) {
		kid, der, err := db.SigningKey(ctx, func() (string, []byte, error) {
			n := generated.Add(1)
			return "k" + string(rune('0'+n)), []byte("der"), nil
		})
		if err == nil && string(der) != "der" {
			t.Errorf("key %s: der %q", kid, der)
		}
		mu.Lock()
		kids[kid] = true
		mu.Unlock()
		return false, err
	})
	if generated.Load() != 1 || len(kids) != 1 {
		t.Errorf("generated %d keys, handed out %v", generated.Load(), kids)
	}
	// A failing generator stores nothing.
	db2, _ := open(t)
	boom := errors.New("boom")
	if _, _, err := db2.SigningKey(ctx, func() (string, []byte, error) { return "", nil, boom }); !errors.Is(err, boom) {
		t.Errorf("generator error: %v", err)
	}
	kid, _, err := db2.SigningKey(ctx, func() (string, []byte, error) { return "k2", []byte("x"), nil })
	if err != nil || kid != "k2" {
		t.Errorf("after a failed generation: %q %v", kid, err)
	}
}

// Launches expire; Purge deletes what has expired and keeps the rest.
func TestLaunchesAndPurge(t *testing.T) {
	db, st := open(t)
	ctx := context.Background()
	for _, l := range []authdb.Launch{
		{ID: "live", ClientID: "app", Patient: "p1", Encounter: "e1", Username: "doc", ExpiresAt: time.Now().Add(time.Hour)},
		{ID: "dead", ClientID: "app", Patient: "p1", ExpiresAt: time.Now().Add(-time.Second)},
	} {
		if err := db.AddLaunch(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	if l, err := db.Launch(ctx, "live"); err != nil || l.ClientID != "app" || l.Patient != "p1" || l.Encounter != "e1" || l.Username != "doc" {
		t.Errorf("live launch: %+v %v", l, err)
	}
	if _, err := db.Launch(ctx, "dead"); !errors.Is(err, authdb.ErrNotFound) {
		t.Errorf("expired launch: %v", err)
	}
	for _, q := range []authdb.AuthRequest{
		{ID: "new", ClientID: "app", Scopes: []string{"openid"}, ExpiresAt: time.Now().Add(time.Minute)},
		{ID: "stale", ClientID: "app", Scopes: []string{"openid"}, ExpiresAt: time.Now().Add(-2 * time.Hour)},
		{ID: "recent", ClientID: "app", Scopes: []string{"openid"}, ExpiresAt: time.Now().Add(-time.Minute)},
	} {
		if err := db.AddAuthRequest(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := authdbtest.AuthRequests(ctx, st); err != nil || n != 2 {
		t.Errorf("%d requests after purge (%v), want new and recent", n, err)
	}
	if _, err := db.Launch(ctx, "live"); err != nil {
		t.Errorf("purge removed a live launch: %v", err)
	}
	// Removing the client takes its launches and requests with it.
	if err := db.RemoveClient(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Launch(ctx, "live"); !errors.Is(err, authdb.ErrNotFound) {
		t.Errorf("launch of a removed client: %v", err)
	}
}
