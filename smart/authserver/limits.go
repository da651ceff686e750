package authserver

import (
	"container/list"
	"context"
	"math"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/emberfhir/ember/server/guard"
)

// Every password and client-secret check runs argon2id: 19 MiB and tens of
// milliseconds of CPU, asked for by callers who have not authenticated yet.
// credGuard bounds that work: a gate bounds how many checks run at once
// (and how many wait), and two tables limit attempts per client address
// and failures per account. Both tables are bounded LRU maps, so random
// usernames or addresses cannot grow them.
type credGuard struct {
	gate     *hashGate
	addrs    *strikeTable // login attempts (and failed secrets) per address
	accounts *strikeTable // failures per "user:NAME" or "client:ID"
	proxies  int
	now      func() time.Time
}

// limitDefaults fills the Config's login and authorize limits.
func limitDefaults(cfg *Config) {
	if cfg.MaxConcurrentHashes <= 0 {
		cfg.MaxConcurrentHashes = min(max(runtime.GOMAXPROCS(0), 2), 8)
	}
	if cfg.HashQueue == 0 {
		cfg.HashQueue = 4 * cfg.MaxConcurrentHashes
	}
	if cfg.HashWait <= 0 {
		cfg.HashWait = 5 * time.Second
	}
	if cfg.LoginAttemptsPerAddress == 0 {
		cfg.LoginAttemptsPerAddress = 20
	}
	if cfg.LoginFailuresPerAccount == 0 {
		cfg.LoginFailuresPerAccount = 5
	}
	if cfg.LoginWindow <= 0 {
		cfg.LoginWindow = time.Minute
	}
	if cfg.LoginMaxBackoff <= 0 {
		cfg.LoginMaxBackoff = 15 * time.Minute
	}
	if cfg.AuthorizePerAddress == 0 {
		cfg.AuthorizePerAddress = 60
	}
	if cfg.MaxPendingAuthRequests <= 0 {
		cfg.MaxPendingAuthRequests = 10000
	}
	if cfg.LimiterEntries <= 0 {
		cfg.LimiterEntries = 10000
	}
}

func newCredGuard(cfg Config) *credGuard {
	return &credGuard{
		gate:     newHashGate(cfg.MaxConcurrentHashes, max(cfg.HashQueue, 0), cfg.HashWait),
		addrs:    newStrikeTable(cfg.LoginAttemptsPerAddress, cfg.LoginWindow, cfg.LoginWindow, cfg.LimiterEntries),
		accounts: newStrikeTable(cfg.LoginFailuresPerAccount, cfg.LoginWindow, cfg.LoginMaxBackoff, cfg.LimiterEntries),
		proxies:  cfg.TrustedProxies,
		now:      time.Now,
	}
}

// limited is the error of a request refused by a limit: 429 over a rate
// limit, 503 when no hashing slot freed up in time. Pages and OAuth
// endpoints render it with Retry-After.
func limited(status int, wait time.Duration, msg string) *oauthErr {
	return &oauthErr{status: status, code: "temporarily_unavailable", msg: msg, retryAfter: max(wait, time.Second)}
}

// retryAfterValue is wait in whole seconds, rounded up.
func retryAfterValue(wait time.Duration) string {
	return strconv.Itoa(max(int(math.Ceil(wait.Seconds())), 1))
}

// check runs verify, an argon2id check of account's password or secret,
// within the limits. countAll: every attempt counts against the address
// (user logins); otherwise only failures do (client secrets, which a busy
// confidential client presents on every token request). Failures always
// count against the account. A refusal is a *oauthErr from limited, and
// verify does not run.
func (g *credGuard) check(r *http.Request, account string, countAll bool, verify func() (bool, error)) (bool, error) {
	now := g.now()
	addr := guard.ClientIP(r, g.proxies)
	if wait := g.addrs.blocked(addr, now); wait > 0 {
		return false, limited(http.StatusTooManyRequests, wait,
			"too many sign-in attempts from your address; try again in "+retryAfterValue(wait)+" s")
	}
	if wait := g.accounts.blocked(account, now); wait > 0 {
		return false, limited(http.StatusTooManyRequests, wait,
			"too many failed attempts for this account; try again in "+retryAfterValue(wait)+" s")
	}
	release, ok := g.gate.acquire(r.Context())
	if !ok {
		return false, limited(http.StatusServiceUnavailable, time.Second, "the server is busy checking passwords; try again in a moment")
	}
	if countAll {
		g.addrs.hit(addr, now)
	}
	ok, err := verify()
	release()
	if err != nil {
		return false, err
	}
	if !ok {
		if !countAll {
			g.addrs.hit(addr, now)
		}
		g.accounts.hit(account, now)
	}
	return ok, nil
}

// hashGate bounds argon2id checks running at once (each holds 19 MiB) and
// those waiting for a slot; a check that finds the queue full, or waits
// longer than wait, is refused instead of piling up.
type hashGate struct {
	admit chan struct{} // running and waiting
	run   chan struct{} // running
	wait  time.Duration
}

func newHashGate(slots, queue int, wait time.Duration) *hashGate {
	return &hashGate{admit: make(chan struct{}, slots+queue), run: make(chan struct{}, slots), wait: wait}
}

// acquire takes a slot, returning its release, or false when none came.
func (g *hashGate) acquire(ctx context.Context) (func(), bool) {
	select {
	case g.admit <- struct{}{}:
	default:
		return nil, false
	}
	t := time.NewTimer(g.wait)
	defer t.Stop()
	select {
	case g.run <- struct{}{}:
		return func() { <-g.run; <-g.admit }, true
	case <-t.C:
	case <-ctx.Done():
	}
	<-g.admit
	return nil, false
}

// strikeTable counts events per key in fixed windows: the limit-th event
// within a window blocks the key for a window, or with backoff
// (maxBlock > window) for a period that doubles with each block in a row,
// up to maxBlock. It keeps at most maxEntries keys, dropping the least
// recently counted. A nil table (limit < 0) limits nothing.
type strikeTable struct {
	limit            int
	window, maxBlock time.Duration
	maxEntries       int

	mu  sync.Mutex
	m   map[string]*list.Element
	lru list.List // of *strike, most recent first
}

type strike struct {
	key     string
	start   time.Time // of the current window
	n       int       // events in it
	strikes int       // blocks in a row
	until   time.Time // blocked until
}

func newStrikeTable(limit int, window, maxBlock time.Duration, maxEntries int) *strikeTable {
	if limit < 0 {
		return nil
	}
	return &strikeTable{limit: max(limit, 1), window: window, maxBlock: max(maxBlock, window), maxEntries: maxEntries,
		m: map[string]*list.Element{}}
}

// blocked returns how long key stays blocked (0: not blocked).
func (t *strikeTable) blocked(key string, now time.Time) time.Duration {
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.m[key]; ok {
		if s := e.Value.(*strike); now.Before(s.until) {
			return s.until.Sub(now)
		}
	}
	return 0
}

// hit counts one event for key.
func (t *strikeTable) hit(key string, now time.Time) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var s *strike
	if e, ok := t.m[key]; ok {
		t.lru.MoveToFront(e)
		s = e.Value.(*strike)
	} else {
		for len(t.m) >= t.maxEntries {
			old := t.lru.Back()
			delete(t.m, old.Value.(*strike).key)
			t.lru.Remove(old)
		}
		s = &strike{key: key, start: now}
		t.m[key] = t.lru.PushFront(s)
	}
	if s.strikes > 0 && now.Sub(s.until) >= t.maxBlock { // quiet for long enough: start over
		s.strikes = 0
	}
	if now.Sub(s.start) >= t.window {
		s.start, s.n = now, 0
	}
	s.n++
	if s.n < t.limit {
		return
	}
	block := t.window
	if t.maxBlock > t.window {
		block = min(t.window<<min(s.strikes, 20), t.maxBlock)
	}
	s.strikes++
	s.until = now.Add(block)
	s.start, s.n = s.until, 0
}

// len is the number of keys held.
func (t *strikeTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}
