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
	"sync"
	"testing"
	"time"
)

// pathRecorder answers 200 with the path and remembers every path served.
type pathRecorder struct {
	mu    sync.Mutex
	paths []string
}

func (p *pathRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	p.mu.Lock()
	p.paths = append(p.paths, r.URL.Path)
	p.mu.Unlock()
	fmt.Fprint(w, r.URL.Path)
}

func (p *pathRecorder) served() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.paths, " ")
}

func framingServer(t *testing.T, guarded bool) (string, *pathRecorder) {
	t.Helper()
	rec := &pathRecorder{}
	var h http.Handler = rec
	if guarded {
		h = Framing(rec)
	}
	srv := httptest.NewUnstartedServer(h)
	if guarded {
		srv.Listener = FramingListener{srv.Listener}
		srv.Config.ConnContext = FramingConnContext
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), rec
}

// smuggle is a request framed both ways, with a second request hidden in
// what a Content-Length reader takes for its body.
const smuggle = "POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n" +
	"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

// readResponses reads responses until the server closes or goes quiet.
func readResponses(t *testing.T, c net.Conn) (codes []int, closed bool) {
	t.Helper()
	br := bufio.NewReader(c)
	for {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || (err != nil && strings.Contains(err.Error(), "connection reset")) {
			return codes, true
		}
		if err != nil {
			return codes, false // quiet: still open
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
}

// TestFramingUnguardedAnswersSmuggled documents the net/http behaviour the
// guard exists for: both requests are answered on one open connection.
func TestFramingUnguardedAnswersSmuggled(t *testing.T) {
	addr, rec := framingServer(t, false)
	c := dial(t, addr)
	io.WriteString(c, smuggle)
	codes, _ := readResponses(t, c)
	if fmt.Sprint(codes) != "[200 200]" || rec.served() != "/first /smuggled" {
		// A probe of the Go release, not a missing prerequisite: the skip
		// (which fails `make test` under CI=true) says to revisit the guard.
		t.Skipf("Go-version probe: net/http no longer answers the smuggled request (%v, %q): the guard may be redundant", codes, rec.served())
	}
}

func TestFramingRejectsContentLengthWithTransferEncoding(t *testing.T) {
	addr, rec := framingServer(t, true)
	for _, raw := range []string{
		smuggle,
		// Header order and case do not matter.
		"POST /first HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		c := dial(t, addr)
		io.WriteString(c, raw)
		codes, closed := readResponses(t, c)
		if fmt.Sprint(codes) != "[400]" || !closed {
			t.Fatalf("responses %v, closed %v; want one 400 and a closed connection", codes, closed)
		}
		if s := rec.served(); s != "" {
			t.Fatalf("handler served %q", s)
		}
	}
}

// TestFramingKeepsHonestPipelines: chunked, sized and bodiless requests
// pipelined on one connection are all answered, in order, and it stays open.
func TestFramingKeepsHonestPipelines(t *testing.T) {
	addr, rec := framingServer(t, true)
	c := dial(t, addr)
	// Chunked with an extension and a trailer, split across writes at awkward places.
	parts := []string{
		"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhel",
		"lo\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
		"PUT /b HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nContent-Len",
		"GET /c?Transfer-Encoding=1 HTTP/1.1\r\nHost: x\r\nX-Note: Content-Length: 3\r\n\r\n",
	}
	for _, p := range parts {
		io.WriteString(c, p)
		time.Sleep(20 * time.Millisecond)
	}
	codes, closed := readResponses(t, c)
	if fmt.Sprint(codes) != "[200 200 200]" || closed {
		t.Fatalf("responses %v, closed %v", codes, closed)
	}
	if s := rec.served(); s != "/a /b /c" {
		t.Fatalf("served %q", s)
	}
}

// TestFramingWithoutWatcherCloses: where the connection cannot be watched
// (TLS), a chunked HTTP/1 request closes the connection after its response.
func TestFramingWithoutWatcherCloses(t *testing.T) {
	h := Framing(okHandler)
	r := httptest.NewRequest("POST", "/a", strings.NewReader("x"))
	r.TransferEncoding = []string{"chunked"}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 200 || w.Header().Get("Connection") != "close" {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
	r = httptest.NewRequest("POST", "/a", strings.NewReader("x"))
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Header().Get("Connection") != "" {
		t.Fatalf("sized request closes: %v", w.Header())
	}
}
