package guard

import (
	"hash/maphash"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limit is a token bucket: Rate requests per second sustained, Burst at
// once. A zero Rate disables the limit.
type Limit struct {
	Rate  float64
	Burst int
}

// LimiterConfig configures a Limiter. The zero value limits nothing.
type LimiterConfig struct {
	// PerIP limits each client address (IPv6 by /64).
	PerIP Limit
	// PerClient limits each OAuth client, as ClientKey names it. Requests
	// without a client (ClientKey nil or returning "") get this limit per
	// address instead, in a bucket apart from PerIP's.
	PerClient Limit
	// ClientKey returns the client a request is made by, e.g. the client
	// id of its verified grant. The limiter must then run after
	// authentication.
	ClientKey func(*http.Request) string
	// TrustedProxies is how many reverse proxies in front of Ember append
	// to X-Forwarded-For; the client address is the entry that many from
	// the right. 0 ignores X-Forwarded-For (it is forgeable).
	TrustedProxies int
	// MaxKeys bounds the buckets kept per kind (default 100000); beyond
	// it, arbitrary buckets are dropped (they start full again).
	MaxKeys int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Limiter rate-limits requests by client and by address. Safe for
// concurrent use; memory is bounded (idle buckets, which are full again,
// are swept as the limiter is used: no goroutine to stop).
type Limiter struct {
	ip, client, anon *buckets
	clientKey        func(*http.Request) string
	proxies          int
	now              func() time.Time
}

// NewLimiter returns a Limiter for cfg.
func NewLimiter(cfg LimiterConfig) *Limiter {
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	maxKeys := cfg.MaxKeys
	if maxKeys <= 0 {
		maxKeys = 100000
	}
	return &Limiter{
		ip:        newBuckets(cfg.PerIP, maxKeys, now()),
		client:    newBuckets(cfg.PerClient, maxKeys, now()),
		anon:      newBuckets(cfg.PerClient, maxKeys, now()),
		clientKey: cfg.ClientKey,
		proxies:   cfg.TrustedProxies,
		now:       now,
	}
}

// Allow takes one token for r from its address's and its client's bucket.
// When either is empty it returns false and how long until a token is due.
func (l *Limiter) Allow(r *http.Request) (bool, time.Duration) {
	if l.ip == nil && l.client == nil {
		return true, 0
	}
	now := l.now()
	ip := ClientIP(r, l.proxies)
	if ok, wait := l.ip.take(ip, now); !ok {
		return false, wait
	}
	var key string
	if l.clientKey != nil {
		key = l.clientKey(r)
	}
	if key == "" {
		return l.anon.take(ip, now)
	}
	return l.client.take(key, now)
}

// Wrap answers 429 Too Many Requests, with Retry-After in whole seconds
// and an OperationOutcome, to requests over a limit.
func (l *Limiter) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ok, wait := l.Allow(r); !ok {
			WriteTooManyRequests(w, wait)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// WriteTooManyRequests answers 429 with Retry-After (whole seconds, at
// least 1) and an OperationOutcome, for callers of Allow that are not
// plain handlers (e.g. a gin middleware running after authentication).
func WriteTooManyRequests(w http.ResponseWriter, wait time.Duration) {
	secs := strconv.Itoa(max(int(math.Ceil(wait.Seconds())), 1))
	w.Header().Set("Retry-After", secs)
	writeOutcome(w, http.StatusTooManyRequests, "throttled", "rate limit exceeded; retry after "+secs+"s")
}

// RemoteAddr is the address r came from, whole (the audit trail's): the
// peer's host, or with trustedProxies > 0 the X-Forwarded-For entry that
// many from the right.
func RemoteAddr(r *http.Request, trustedProxies int) string {
	addr := r.RemoteAddr
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	if trustedProxies > 0 {
		if fwd := forwardedFor(r.Header.Values("X-Forwarded-For"), trustedProxies); fwd != "" {
			addr = fwd
		}
	}
	return addr
}

// ClientIP is the address r came from: the peer address, or with
// trustedProxies > 0 the X-Forwarded-For entry that many from the right.
// IPv6 addresses are reduced to their /64, which one host usually owns whole.
func ClientIP(r *http.Request, trustedProxies int) string {
	addr := RemoteAddr(r, trustedProxies)
	if strings.IndexByte(addr, ':') >= 0 { // IPv6 only: keep IPv4 free of allocations
		if a, err := netip.ParseAddr(addr); err == nil {
			a = a.Unmap()
			if a.Is6() {
				p, _ := a.Prefix(64)
				return p.String()
			}
			return a.String()
		}
	}
	return addr
}

// forwardedFor returns the entry n from the right of the comma-separated
// values (the leftmost one when fewer), or "" when it is not an address.
func forwardedFor(values []string, n int) string {
	var entry string
	for i := len(values) - 1; i >= 0 && n > 0; i-- {
		v := values[i]
		for n > 0 && v != "" {
			j := strings.LastIndexByte(v, ',')
			entry = strings.TrimSpace(v[j+1:])
			v = v[:max(j, 0)]
			n--
			if j < 0 {
				break
			}
		}
	}
	if _, err := netip.ParseAddr(entry); err != nil {
		return ""
	}
	return entry
}

const shards = 64

// buckets is one kind's token buckets, sharded to keep lock hold short.
type buckets struct {
	rate    float64 // tokens per nanosecond
	burst   float64
	full    int64 // ns an empty bucket takes to refill: older ones are dropped
	perMax  int
	seed    maphash.Seed
	epoch   time.Time
	shardsA [shards]shard
}

type shard struct {
	mu        sync.Mutex
	m         map[string]*bucket
	lastSweep int64
}

type bucket struct {
	tokens float64
	last   int64 // ns since epoch
}

// newBuckets returns nil (no limit) for a zero rate.
func newBuckets(l Limit, maxKeys int, epoch time.Time) *buckets {
	if l.Rate <= 0 {
		return nil
	}
	burst := float64(max(l.Burst, 1))
	b := &buckets{
		rate:   l.Rate / 1e9,
		burst:  burst,
		full:   int64(math.Ceil(burst / (l.Rate / 1e9))),
		perMax: max(maxKeys/shards, 1),
		seed:   maphash.MakeSeed(),
		epoch:  epoch,
	}
	for i := range b.shardsA {
		b.shardsA[i].m = make(map[string]*bucket)
	}
	return b
}

// take removes one token from key's bucket, or says how long until one is due.
func (b *buckets) take(key string, now time.Time) (bool, time.Duration) {
	if b == nil {
		return true, 0
	}
	t := now.Sub(b.epoch).Nanoseconds()
	s := &b.shardsA[maphash.String(b.seed, key)%shards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if t-s.lastSweep > max(b.full, int64(time.Second)) {
		s.sweep(t, b.full)
	}
	bk := s.m[key]
	if bk == nil {
		if len(s.m) >= b.perMax {
			s.sweep(t, b.full)
			for k := range s.m { // still full: drop arbitrary buckets
				if len(s.m) < b.perMax {
					break
				}
				delete(s.m, k)
			}
		}
		bk = &bucket{tokens: b.burst, last: t}
		s.m[key] = bk
	} else if t > bk.last {
		bk.tokens = min(b.burst, bk.tokens+float64(t-bk.last)*b.rate)
		bk.last = t
	}
	if bk.tokens >= 1 {
		bk.tokens--
		return true, 0
	}
	return false, time.Duration((1 - bk.tokens) / b.rate)
}

// sweep drops buckets idle long enough to be full: absent means full.
func (s *shard) sweep(t, full int64) {
	s.lastSweep = t
	for k, bk := range s.m {
		if t-bk.last >= full {
			delete(s.m, k)
		}
	}
}

func (b *buckets) len() int {
	if b == nil {
		return 0
	}
	n := 0
	for i := range b.shardsA {
		s := &b.shardsA[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
