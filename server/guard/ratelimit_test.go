package guard

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

type fakeClock struct{ ns atomic.Int64 }

func newClock() *fakeClock                   { c := &fakeClock{}; c.ns.Store(time.Now().UnixNano()); return c }
func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/fhir+json")
	w.Write([]byte(`{"resourceType":"Patient"}`))
})

// clientHeader stands in for the verified grant's client id.
func clientHeader(r *http.Request) string { return r.Header.Get("X-Test-Client") }

func do(h http.Handler, ip, client string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/fhir/Patient/1", nil)
	r.RemoteAddr = ip + ":40000"
	if client != "" {
		r.Header.Set("X-Test-Client", client)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func want429(t *testing.T, w *httptest.ResponseRecorder, retryAfter string) {
	t.Helper()
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429", w.Code)
	}
	if got := w.Header().Get("Retry-After"); got != retryAfter {
		t.Errorf("Retry-After %q, want %q", got, retryAfter)
	}
	var oo struct {
		ResourceType string
		Issue        []struct{ Severity, Code, Diagnostics string }
	}
	if err := json.Unmarshal(w.Body.Bytes(), &oo); err != nil || oo.ResourceType != "OperationOutcome" ||
		len(oo.Issue) != 1 || oo.Issue[0].Code != "throttled" || oo.Issue[0].Severity != "error" {
		t.Errorf("body %s (%v)", w.Body, err)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/fhir+json; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
}

func TestPerIPLimit(t *testing.T) {
	clk := newClock()
	h := NewLimiter(LimiterConfig{PerIP: Limit{Rate: 1, Burst: 3}, Now: clk.now}).Wrap(okHandler)
	for i := range 3 {
		if w := do(h, "192.0.2.1", ""); w.Code != 200 {
			t.Fatalf("request %d: %d", i, w.Code)
		}
	}
	want429(t, do(h, "192.0.2.1", ""), "1")
	if w := do(h, "192.0.2.2", ""); w.Code != 200 {
		t.Fatalf("other address limited: %d", w.Code)
	}
	clk.advance(999 * time.Millisecond)
	want429(t, do(h, "192.0.2.1", ""), "1")
	clk.advance(time.Millisecond)
	if w := do(h, "192.0.2.1", ""); w.Code != 200 {
		t.Fatalf("after refill: %d", w.Code)
	}

	slow := NewLimiter(LimiterConfig{PerIP: Limit{Rate: 0.1, Burst: 1}, Now: clk.now}).Wrap(okHandler)
	do(slow, "192.0.2.1", "")
	want429(t, do(slow, "192.0.2.1", ""), "10")
}

func TestPerClientLimit(t *testing.T) {
	clk := newClock()
	h := NewLimiter(LimiterConfig{
		PerIP:     Limit{Rate: 1, Burst: 100},
		PerClient: Limit{Rate: 1, Burst: 2},
		ClientKey: clientHeader,
		Now:       clk.now,
	}).Wrap(okHandler)
	for range 2 {
		if w := do(h, "192.0.2.1", "app-a"); w.Code != 200 {
			t.Fatal(w.Code)
		}
	}
	want429(t, do(h, "192.0.2.1", "app-a"), "1")
	// The same client from another address shares its bucket.
	want429(t, do(h, "192.0.2.9", "app-a"), "1")
	// Another client, and unauthenticated requests, from the same address do not.
	for range 2 {
		if w := do(h, "192.0.2.1", "app-b"); w.Code != 200 {
			t.Fatal("app-b limited", w.Code)
		}
	}
	for range 2 {
		if w := do(h, "192.0.2.1", ""); w.Code != 200 {
			t.Fatal("anonymous limited", w.Code)
		}
	}
	// Unauthenticated requests fall back to a per-address bucket.
	want429(t, do(h, "192.0.2.1", ""), "1")
	if w := do(h, "192.0.2.2", ""); w.Code != 200 {
		t.Fatal("anonymous from another address limited", w.Code)
	}
}

func TestPerIPLimitAppliesAcrossClients(t *testing.T) {
	h := NewLimiter(LimiterConfig{
		PerIP:     Limit{Rate: 1, Burst: 3},
		PerClient: Limit{Rate: 100, Burst: 100},
		ClientKey: clientHeader,
	}).Wrap(okHandler)
	for i := range 3 {
		if w := do(h, "192.0.2.1", fmt.Sprint("app-", i)); w.Code != 200 {
			t.Fatal(w.Code)
		}
	}
	want429(t, do(h, "192.0.2.1", "app-new"), "1")
}

func TestDisabledLimiter(t *testing.T) {
	h := NewLimiter(LimiterConfig{ClientKey: clientHeader}).Wrap(okHandler)
	for range 1000 {
		if w := do(h, "192.0.2.1", "a"); w.Code != 200 {
			t.Fatal(w.Code)
		}
	}
}

func TestForwardedFor(t *testing.T) {
	// Not trusted: X-Forwarded-For is ignored, so forging it gains nothing.
	h := NewLimiter(LimiterConfig{PerIP: Limit{Rate: 1, Burst: 1}}).Wrap(okHandler)
	do(h, "10.0.0.1", "", "X-Forwarded-For", "203.0.113.1")
	want429(t, do(h, "10.0.0.1", "", "X-Forwarded-For", "203.0.113.2"), "1")

	// One trusted proxy: its appended entry (the rightmost) is the client.
	h = NewLimiter(LimiterConfig{PerIP: Limit{Rate: 1, Burst: 1}, TrustedProxies: 1}).Wrap(okHandler)
	if w := do(h, "10.0.0.1", "", "X-Forwarded-For", "203.0.113.1"); w.Code != 200 {
		t.Fatal(w.Code)
	}
	if w := do(h, "10.0.0.1", "", "X-Forwarded-For", "203.0.113.2"); w.Code != 200 {
		t.Fatal("second client behind the proxy limited", w.Code)
	}
	want429(t, do(h, "10.0.0.1", "", "X-Forwarded-For", "198.51.100.7, 203.0.113.1"), "1")

	cases := []struct {
		remote  string
		xff     []string
		proxies int
		want    string
	}{
		{"192.0.2.1:1", nil, 0, "192.0.2.1"},
		{"192.0.2.1:1", []string{"203.0.113.5"}, 0, "192.0.2.1"},
		{"192.0.2.1:1", []string{"203.0.113.5"}, 1, "203.0.113.5"},
		{"192.0.2.1:1", []string{"1.1.1.1, 2.2.2.2", "3.3.3.3"}, 2, "2.2.2.2"},
		{"192.0.2.1:1", []string{"1.1.1.1, 2.2.2.2", "3.3.3.3"}, 5, "1.1.1.1"},
		{"192.0.2.1:1", []string{"not-an-ip"}, 1, "192.0.2.1"},
		{"[2001:db8:1:2:3:4:5:6]:443", nil, 0, "2001:db8:1:2::/64"},
		{"[::ffff:192.0.2.3]:443", nil, 0, "192.0.2.3"},
	}
	for _, c := range cases {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = c.remote
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := ClientIP(r, c.proxies); got != c.want {
			t.Errorf("ClientIP(%s, %q, %d) = %q, want %q", c.remote, c.xff, c.proxies, got, c.want)
		}
	}
}

func TestLimiterMemoryBounded(t *testing.T) {
	clk := newClock()
	l := NewLimiter(LimiterConfig{PerIP: Limit{Rate: 10, Burst: 5}, MaxKeys: 640, Now: clk.now})
	for i := range 20000 {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = fmt.Sprintf("10.%d.%d.%d:1", i>>16, (i>>8)&255, i&255)
		l.Allow(r)
	}
	if n := l.ip.len(); n > 640 {
		t.Fatalf("%d buckets kept, bound 640", n)
	}
	// Idle buckets are full again and get swept as the limiter is used,
	// long before the size bound is reached.
	l = NewLimiter(LimiterConfig{PerIP: Limit{Rate: 10, Burst: 5}, Now: clk.now})
	for i := range 2000 {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = fmt.Sprintf("10.0.%d.%d:1", i>>8, i&255)
		l.Allow(r)
	}
	clk.advance(2 * time.Second)
	for i := range 200 {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = fmt.Sprintf("172.16.%d.%d:1", i>>8, i&255)
		l.Allow(r)
	}
	swept := 0
	for i := range l.ip.shardsA {
		old, used := 0, false
		for k := range l.ip.shardsA[i].m {
			if k[:3] == "10." {
				old++
			} else {
				used = true
			}
		}
		if used && old != 0 {
			t.Fatalf("shard %d: %d idle buckets survived the sweep", i, old)
		}
		if used {
			swept++
		}
	}
	if swept < shards/2 {
		t.Fatalf("only %d shards used", swept)
	}
}

func TestLimiterOverHTTP(t *testing.T) {
	srv := httptest.NewServer(NewLimiter(LimiterConfig{PerIP: Limit{Rate: 0.5, Burst: 2}}).Wrap(okHandler))
	defer srv.Close()
	codes := []int{}
	var retry string
	for range 3 {
		resp, err := http.Get(srv.URL + "/fhir/Patient/1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
		retry = resp.Header.Get("Retry-After")
	}
	if fmt.Sprint(codes) != "[200 200 429]" || retry != "2" {
		t.Fatalf("codes %v, Retry-After %q", codes, retry)
	}
}

func BenchmarkLimiter(b *testing.B) {
	l := NewLimiter(LimiterConfig{
		PerIP:     Limit{Rate: 1e9, Burst: 1e9},
		PerClient: Limit{Rate: 1e9, Burst: 1e9},
		ClientKey: clientHeader,
	})
	reqs := make([]*http.Request, 256)
	for i := range reqs {
		reqs[i] = httptest.NewRequest(http.MethodGet, "/fhir/Patient/1", nil)
		reqs[i].RemoteAddr = fmt.Sprintf("10.0.%d.%d:1234", i/16, i)
		reqs[i].Header.Set("X-Test-Client", fmt.Sprint("client-", i%8))
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if ok, _ := l.Allow(reqs[i&255]); !ok {
				b.Fatal("limited")
			}
			i++
		}
	})
}

func TestWriteTooManyRequests(t *testing.T) {
	for wait, want := range map[time.Duration]string{0: "1", 300 * time.Millisecond: "1", 2500 * time.Millisecond: "3", 4 * time.Second: "4"} {
		w := httptest.NewRecorder()
		WriteTooManyRequests(w, wait)
		want429(t, w, want)
	}
}
