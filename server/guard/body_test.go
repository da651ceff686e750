package guard

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// readAllHandler reads the whole body: 408 when it came too slowly, 200
// with its length otherwise.
var readAllHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if errors.Is(err, ErrBodyTimeout) {
		w.Header().Set("Connection", "close")
		http.Error(w, err.Error(), http.StatusRequestTimeout)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "%d", len(b))
})

func bodyServer(t *testing.T, cfg BodyConfig) string {
	t.Helper()
	srv := httptest.NewServer(NewBody(cfg).Wrap(readAllHandler))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// rawResponse reads one response from c, failing after limit.
func rawResponse(t *testing.T, c net.Conn, limit time.Duration) (*http.Response, string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(limit))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no response within %s: %v", limit, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Short limits keep the tests quick; the bounds they check are generous
// multiples so a loaded machine does not fail them.
var shortBody = BodyConfig{MaxBody: 1 << 20, Idle: 300 * time.Millisecond, Grace: 600 * time.Millisecond, MinRate: 1000}

func TestBodyStalled(t *testing.T) {
	addr := bodyServer(t, shortBody)
	c := dial(t, addr)
	began := time.Now()
	fmt.Fprintf(c, "POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
	// Then nothing: without read deadlines this waits forever.
	resp, body := rawResponse(t, c, 20*time.Second)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(body, "too slowly") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	t.Logf("stalled body answered after %s", time.Since(began))
}

func TestBodyTrickle(t *testing.T) {
	addr := bodyServer(t, shortBody)
	c := dial(t, addr)
	fmt.Fprintf(c, "POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
	// One byte every 100 ms never trips the idle limit but stays far below
	// 1000 bytes/s: cut once the grace period is over.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
			}
		}
	}()
	resp, body := rawResponse(t, c, 20*time.Second)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(body, "bytes/s") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

func TestBodyDeclaredTooLarge(t *testing.T) {
	addr := bodyServer(t, shortBody)
	c := dial(t, addr)
	began := time.Now()
	fmt.Fprintf(c, "PUT /fhir/Patient/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000000\r\n\r\n{}")
	resp, body := rawResponse(t, c, 20*time.Second)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close || !strings.Contains(body, "OperationOutcome") {
		t.Fatalf("%d close=%v %s", resp.StatusCode, resp.Close, body)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("413 took %s: it must not wait for the body", d)
	}
}

// TestBodySteadyAndKeepAlive: bodies at a fair rate pass, also in pieces
// slower than Idle in total, and the connection stays usable afterwards.
func TestBodySteadyAndKeepAlive(t *testing.T) {
	addr := bodyServer(t, BodyConfig{MaxBody: 1 << 20, Idle: 2 * time.Second, Grace: time.Second, MinRate: 100})
	c := dial(t, addr)
	fmt.Fprintf(c, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\n\r\n")
	for range 6 { // 3000 bytes over ~1.5 s: well above 100 bytes/s
		c.Write([]byte(strings.Repeat("y", 500)))
		time.Sleep(250 * time.Millisecond)
	}
	resp, body := rawResponse(t, c, 20*time.Second)
	if resp.StatusCode != 200 || body != "3000" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	// The deadline set for the body must not outlive it: wait past Idle,
	// then reuse the connection.
	time.Sleep(2500 * time.Millisecond)
	fmt.Fprintf(c, "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nzz")
	resp, body = rawResponse(t, c, 20*time.Second)
	if resp.StatusCode != 200 || body != "2" {
		t.Fatalf("second request: %d %s", resp.StatusCode, body)
	}
}

func TestBodyLimitPerRequest(t *testing.T) {
	h := NewBody(BodyConfig{MaxBody: 10, MaxBodyFor: func(r *http.Request) int64 {
		if strings.HasPrefix(r.URL.Path, "/dicomweb/") {
			return 100
		}
		return 10
	}}).Wrap(okHandler)
	for path, want := range map[string]int{"/fhir/Patient": 413, "/dicomweb/studies": 200} {
		r := httptest.NewRequest("POST", path, strings.NewReader(strings.Repeat("a", 50)))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("%s: %d, want %d", path, w.Code, want)
		}
	}
}

// TestBodyUnreadByHandler: a handler that answers without reading the body
// (a 401 before the body matters) must not wait for a body that never
// comes: net/http drains unread bodies before it sends the response.
func TestBodyUnreadByHandler(t *testing.T) {
	srv := httptest.NewServer(NewBody(shortBody).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no token", http.StatusUnauthorized)
	})))
	t.Cleanup(srv.Close)
	c := dial(t, srv.Listener.Addr().String())
	fmt.Fprintf(c, "POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{")
	resp, _ := rawResponse(t, c, 20*time.Second)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("%d", resp.StatusCode)
	}
}
