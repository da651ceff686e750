package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emberfhir/ember/internal/pgtest"
)

// TestKillDuringTransactionsLeavesNoPartialTransaction posts transactions
// from 4 clients, kills the server with SIGKILL mid-stream, restarts it, and
// checks every transaction is either wholly stored or wholly absent.
func TestKillDuringTransactionsLeavesNoPartialTransaction(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: kills and restarts the server under load")
	}
	db := pgtest.NewDatabase(t)
	addr := freeAddr(t)
	s := startServe(t, nil, addr, "--database-url", db, "--addr", addr)
	const perBundle = 40
	bundle := func(k int) []byte {
		var entries []string
		for i := 0; i < perBundle; i++ {
			entries = append(entries, fmt.Sprintf(`{"fullUrl":"urn:uuid:%08d-0000-4000-8000-%012d","resource":{"resourceType":"Observation","meta":{"tag":[{"system":"urn:crash","code":"b%d"}]},"status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:%08d-0000-4000-8000-%012d"}},"request":{"method":"POST","url":"Observation"}}`, k, i+1, k, k, 0))
		}
		entries = append(entries, fmt.Sprintf(`{"fullUrl":"urn:uuid:%08d-0000-4000-8000-%012d","resource":{"resourceType":"Patient","meta":{"tag":[{"system":"urn:crash","code":"b%d"}]}},"request":{"method":"POST","url":"Patient"}}`, k, 0, k))
		return []byte(`{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`)
	}
	var next, committed atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				k := next.Add(1)
				resp, err := http.Post("http://"+addr+"/fhir", "application/fhir+json", bytes.NewReader(bundle(int(k))))
				if err != nil {
					return // the server is gone
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					committed.Add(1)
				}
			}
		}()
	}
	// Kill once some transactions are acknowledged, while the clients keep
	// sending: a state to wait for, not a duration.
	for deadline := time.Now().Add(2 * time.Minute); committed.Load() < 5; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			close(stop)
			t.Fatalf("only %d transactions acknowledged in 2 minutes", committed.Load())
		}
	}
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-s.done
	close(stop)
	wg.Wait()
	if committed.Load() == 0 {
		t.Fatal("no transaction committed before the kill: the test proves nothing")
	}

	s2 := startServe(t, nil, addr, "--database-url", db, "--addr", addr)
	complete, absent := 0, 0
	for k := 1; k <= int(next.Load()); k++ {
		n := 0
		for _, typ := range []string{"Observation", "Patient"} {
			n += countTagged(t, fmt.Sprintf("%s/%s?_tag=urn:crash|b%d&_summary=count", s2.base, typ, k))
		}
		switch n {
		case perBundle + 1:
			complete++
		case 0:
			absent++
		default:
			t.Fatalf("transaction %d is partial: %d of %d resources stored", k, n, perBundle+1)
		}
	}
	if int64(complete) < committed.Load() {
		t.Fatalf("%d transactions acknowledged but only %d stored", committed.Load(), complete)
	}
	t.Logf("%d transactions sent, %d acknowledged, %d stored whole, %d absent, none partial", next.Load(), committed.Load(), complete, absent)
}

// countTagged reads Bundle.total of a _summary=count search, which must
// answer 200 with a total.
func countTagged(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: status %d: %s", url, resp.StatusCode, body)
	}
	var b struct {
		ResourceType string
		Total        *int
	}
	if err := json.Unmarshal(body, &b); err != nil || b.ResourceType != "Bundle" || b.Total == nil {
		t.Fatalf("%s: want a Bundle with a total (%v): %s", url, err, body)
	}
	return *b.Total
}
