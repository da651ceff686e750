package main_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emberfhir/ember/internal/pgtest"
)

// rawExchange sends raw bytes on a fresh connection and reads the
// responses until the server closes it or stays quiet for quiet.
func rawExchange(t *testing.T, addr, raw string, quiet time.Duration) (resps []*http.Response, bodies []string, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for {
		c.SetReadDeadline(time.Now().Add(quiet))
		resp, err := http.ReadResponse(br, nil)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || (err != nil && strings.Contains(err.Error(), "reset")) {
			return resps, bodies, true
		}
		if err != nil {
			return resps, bodies, false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resps, bodies = append(resps, resp), append(bodies, string(b))
	}
}

func isOutcome(body string) bool {
	var oo struct{ ResourceType string }
	return json.Unmarshal([]byte(body), &oo) == nil && oo.ResourceType == "OperationOutcome"
}

// TestServeHostileInput runs one `ember serve --auth smart` with short body
// deadlines and sends it what issue 11 found: unstorable text (500s from
// PostgreSQL), bodies that never finish, and ambiguous request framing.
func TestServeHostileInput(t *testing.T) {
	addr := freeAddr(t)
	startServe(t, []string{"EMBER_AUTH=smart"}, addr, "--addr", addr, "--database-url", pgtest.NewDatabase(t),
		"--body-read-timeout", "1s", "--body-min-rate", "1000")
	form := "Content-Type: application/x-www-form-urlencoded\r\n"

	t.Run("unstorable text", func(t *testing.T) {
		for _, c := range []struct{ name, head, body string }{
			{"FHIR search NUL", "GET /fhir/Patient?name=%00 HTTP/1.1\r\n", ""},
			{"FHIR search invalid UTF-8", "GET /fhir/Patient?_id=%FF HTTP/1.1\r\n", ""},
			{"FHIR search overlong", "GET /fhir/Patient?identifier=%C0%80 HTTP/1.1\r\n", ""},
			{"If-None-Exist", "POST /fhir/Patient HTTP/1.1\r\nContent-Type: application/fhir+json\r\nIf-None-Exist: identifier=\xff\xfe\r\n", `{"resourceType":"Patient"}`},
			{"WADO path", "GET /dicomweb/studies/1.2%00/series HTTP/1.1\r\n", ""},
			{"QIDO", "GET /dicomweb/studies?PatientID=%00 HTTP/1.1\r\n", ""},
			{"login form", "POST /auth/login HTTP/1.1\r\n" + form, "req=x&username=admin%00&password=x"},
			{"login query", "GET /auth/login?req=%00 HTTP/1.1\r\n", ""},
			{"token form", "POST /auth/token HTTP/1.1\r\n" + form, "grant_type=client_credentials&client_id=%FF"},
			{"authorize", "GET /auth/authorize?response_type=code&client_id=app%00 HTTP/1.1\r\n", ""},
		} {
			raw := c.head + "Host: x\r\nContent-Length: " + strconv.Itoa(len(c.body)) + "\r\nConnection: close\r\n\r\n" + c.body
			resps, bodies, _ := rawExchange(t, addr, raw, 10*time.Second)
			if len(resps) != 1 || resps[0].StatusCode != http.StatusBadRequest || !isOutcome(bodies[0]) {
				codes := []int{}
				for _, r := range resps {
					codes = append(codes, r.StatusCode)
				}
				t.Errorf("%s: %v %q, want one 400 OperationOutcome", c.name, codes, bodies)
			}
		}
	})

	t.Run("ambiguous framing", func(t *testing.T) {
		raw := "POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\nContent-Length: 60\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"0\r\n\r\nGET /fhir/metadata HTTP/1.1\r\nHost: x\r\n\r\n"
		resps, _, closed := rawExchange(t, addr, raw, 5*time.Second)
		if len(resps) != 1 || resps[0].StatusCode != http.StatusBadRequest || !closed {
			t.Fatalf("%d responses (first %v), closed %v: want one 400 and the connection closed", len(resps), status(resps), closed)
		}
	})

	t.Run("stalled body", func(t *testing.T) {
		began := time.Now()
		resps, _, _ := rawExchange(t, addr, "POST /auth/token HTTP/1.1\r\nHost: x\r\n"+form+"Content-Length: 100\r\n\r\ngrant_type=", 60*time.Second)
		if len(resps) == 0 && time.Since(began) > 50*time.Second {
			t.Fatal("a stalled body was held for a minute")
		}
		if len(resps) > 0 && resps[0].StatusCode < 400 {
			t.Fatalf("stalled body: %d", resps[0].StatusCode)
		}
		t.Logf("stalled body dropped after %s (%v)", time.Since(began).Round(time.Millisecond), status(resps))
	})

	t.Run("trickled body", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// A form body: read as it arrives (the text check reads it), so
		// it is the minimum rate, not the idle limit, that cuts it.
		io.WriteString(c, "POST /auth/token HTTP/1.1\r\nHost: x\r\n"+form+"Content-Length: 5000\r\n\r\n")
		done := make(chan struct{})
		go func() { // one byte every 200 ms: never idle for 1 s, far below 1000 bytes/s
			for {
				select {
				case <-done:
					return
				case <-time.After(200 * time.Millisecond):
					if _, err := c.Write([]byte("a")); err != nil {
						return
					}
				}
			}
		}()
		defer close(done)
		c.SetReadDeadline(time.Now().Add(45 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil && resp.StatusCode < 400 {
			t.Fatalf("trickled body: %d", resp.StatusCode)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("a body trickling at 5 bytes/s was still being read after 45 s")
		}
	})

	t.Run("declared too large", func(t *testing.T) {
		began := time.Now()
		resps, bodies, _ := rawExchange(t, addr, "POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\nContent-Length: 2000000000\r\n\r\n{}", 20*time.Second)
		if len(resps) != 1 || resps[0].StatusCode != http.StatusRequestEntityTooLarge || !isOutcome(bodies[0]) {
			t.Fatalf("%v %q", status(resps), bodies)
		}
		if d := time.Since(began); d > 10*time.Second {
			t.Errorf("413 took %s", d)
		}
	})

	t.Run("metrics private", func(t *testing.T) {
		for path, want := range map[string]int{"/metrics": http.StatusUnauthorized, "/healthz": 200, "/readyz": 200} {
			resp, err := http.Get("http://" + addr + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
			}
		}
	})
}

func status(resps []*http.Response) []int {
	var out []int
	for _, r := range resps {
		out = append(out, r.StatusCode)
	}
	return out
}

// TestServeMetricsAddr: --metrics-addr moves /metrics off the main listener.
func TestServeMetricsAddr(t *testing.T) {
	addr, maddr := freeAddr(t), freeAddr(t)
	startServe(t, []string{"EMBER_AUTH=smart"}, addr, "--addr", addr, "--database-url", pgtest.NewDatabase(t), "--metrics-addr", maddr)
	for url, want := range map[string]int{"http://" + addr + "/metrics": http.StatusNotFound, "http://" + maddr + "/metrics": http.StatusOK} {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", url, resp.StatusCode, want)
		}
		if want == 200 && !strings.Contains(string(b), "go_goroutines") {
			t.Errorf("%s: not metrics: %.200s", url, b)
		}
	}
}

// TestServeTakesOverClusterAfterKill: kill -9 of `ember serve` leaves its
// embedded PostgreSQL running. The next serve must own it (owned=true) so
// that its clean stop stops PostgreSQL too.
func TestServeTakesOverClusterAfterKill(t *testing.T) {
	dataDir := filepath.Join(traversableTempDir(t), "data")
	addr := freeAddr(t)
	// Text logs: the takeover is checked by its owned=true attribute.
	env := []string{"EMBER_DATA_DIR=" + dataDir, "EMBER_DATABASE_URL=", "EMBER_LOG_FORMAT=text"}
	s := startServe(t, env, addr, "--addr", addr)
	pidFile := filepath.Join(dataDir, "postgres", "postmaster.pid")
	pgPid := func() int {
		t.Helper()
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return 0
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
		return pid
	}
	pid := pgPid()
	if pid == 0 {
		t.Fatalf("no postmaster.pid under the data dir:\n%s", s.out.String())
	}
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-s.done
	t.Cleanup(func() { // whatever happens, leave no server behind
		if p := pgPid(); p != 0 {
			syscall.Kill(p, syscall.SIGINT)
		}
	})
	if syscall.Kill(pid, 0) != nil {
		t.Fatal("PostgreSQL died with ember: the test proves nothing")
	}

	s2 := startServe(t, env, addr, "--addr", addr)
	if !strings.Contains(s2.out.String(), "owned=true") {
		t.Fatalf("restarted serve did not take the cluster over:\n%s", s2.out.String())
	}
	s2.stop(t)
	deadline := time.Now().Add(30 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("PostgreSQL (pid %d) still running after a clean stop:\n%s", pid, s2.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Fatalf("postmaster.pid left behind: %v", err)
	}
}
