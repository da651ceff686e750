package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The subscriptions bench (issue 19): what 100 active subscriptions cost
// the Synthea transaction ingest, and how long a notification takes at
// 500 writes/s.
const (
	benchSubscriptions = 100
	latencyRate        = 500 // writes/s
	latencyWrites      = 5000
	topicObservation   = "https://emberfhir.org/fhir/SubscriptionTopic/Observation"
)

// hookReceiver is the rest-hook endpoint of the bench: it counts events
// and notes when each Observation's notification arrived.
type hookReceiver struct {
	srv     *http.Server
	url     string
	mu      sync.Mutex
	events  int
	arrived map[string]time.Time // Observation id → arrival
}

func newHookReceiver() (*hookReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &hookReceiver{url: "http://" + ln.Addr().String() + "/hook", arrived: map[string]time.Time{}}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *hookReceiver) serve(w http.ResponseWriter, req *http.Request) {
	now := time.Now()
	body, _ := io.ReadAll(req.Body)
	var b struct {
		Entry []struct {
			FullURL string `json:"fullUrl"`
		} `json:"entry"`
	}
	_ = json.Unmarshal(body, &b)
	r.mu.Lock()
	for _, e := range b.Entry[min(1, len(b.Entry)):] {
		r.events++
		if i := strings.LastIndex(e.FullURL, "/Observation/"); i >= 0 {
			if _, seen := r.arrived[e.FullURL[i+13:]]; !seen {
				r.arrived[e.FullURL[i+13:]] = now
			}
		}
	}
	r.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// subscriptionBody is a rest-hook Subscription on Observations with filter.
func subscriptionBody(endpoint, filter string) []byte {
	return []byte(`{"resourceType":"Subscription","status":"requested","reason":"bench","criteria":"` + topicObservation + `",
		"_criteria":{"extension":[{"url":"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria","valueString":` + strconv.Quote(filter) + `}]},
		"channel":{"type":"rest-hook","endpoint":"` + endpoint + `","payload":"application/fhir+json"}}`)
}

// subscriptionsBench: fresh servers with and without 100 subscriptions
// (filters on patient and code; ten on a frequent code alone, so events
// are delivered during the load), each put through the Synthea ingest;
// with, without, with, without, the best of each counts. Then, on a
// server with the subscriptions, Observations written at 500/s for one
// subscribed patient: the time from sending each write to its
// notification's arrival.
func subscriptionsBench(ctx context.Context, e *env) ([]figure, error) {
	recv, err := newHookReceiver()
	if err != nil {
		return nil, err
	}
	defer recv.srv.Close()
	var with, without float64
	var lat []time.Duration
	for round := range 2 {
		for _, subscribed := range []bool{true, false} {
			rate, l, err := subscriptionRun(ctx, e, recv, subscribed, round == 1 && subscribed)
			if err != nil {
				return nil, err
			}
			if subscribed {
				with = max(with, rate)
				if l != nil {
					lat = l
				}
			} else {
				without = max(without, rate)
			}
		}
	}
	slices.Sort(lat)
	return []figure{
		{"subscriptions_100_ingest", with, "resources/s"},
		{"subscriptions_none_ingest", without, "resources/s"},
		{"subscriptions_ingest_with_vs_without", 100 * with / without, "%"},
		{"subscription_latency_500ws_p50", ms(percentile(lat, 50)), "ms"},
		{"subscription_latency_500ws_p99", ms(percentile(lat, 99)), "ms"},
		{"subscription_latency_500ws_delivered", float64(len(lat)), "count"},
	}, nil
}

// subscriptionRun starts a fresh server, subscribes (or not), ingests
// Synthea and, when latency is set, measures notification latency.
func subscriptionRun(ctx context.Context, e *env, recv *hookReceiver, subscribed, latency bool) (rate float64, lat []time.Duration, err error) {
	srv, err := startEmber(ctx, e.bin, false, func(error) {}, "--subscription-allow-hosts", "127.0.0.1")
	if srv != nil {
		defer func() { _ = shutdown(srv, false, err != nil, io.Discard) }()
	}
	if err != nil {
		return 0, nil, fmt.Errorf("subscriptions: %w", err)
	}
	se := *e
	se.fhirBase, se.client, se.debugAddr, se.profileDir = srv.baseURL+"/fhir", newClient(), "", ""
	if subscribed {
		codes := []string{"8302-2", "29463-7", "39156-5", "8867-4", "9279-1", "55284-4", "72514-3", "2093-3", "18262-6", "4548-4"}
		for i := range benchSubscriptions {
			filter := "Observation?patient=Patient/bench-" + strconv.Itoa(i) + "&code=http://loinc.org|" + codes[i%len(codes)]
			if i < len(codes) {
				filter = "Observation?code=http://loinc.org|" + codes[i]
			}
			if err := se.do(ctx, http.MethodPost, se.fhirBase+"/Subscription", subscriptionBody(recv.url, filter), http.StatusCreated); err != nil {
				return 0, nil, err
			}
		}
	}
	figs, err := ingestTx(ctx, &se)
	if err != nil {
		return 0, nil, err
	}
	rate = figs[0].value
	if latency {
		lat, err = notificationLatency(ctx, &se, recv)
	}
	return rate, lat, err
}

// notificationLatency writes latencyWrites Observations of one subscribed
// patient at latencyRate a second and returns, for each notified one, the
// time from sending its write to the notification's arrival.
func notificationLatency(ctx context.Context, e *env, recv *hookReceiver) ([]time.Duration, error) {
	const patient = "bench-latency"
	if err := e.do(ctx, http.MethodPut, e.fhirBase+"/Patient/"+patient, []byte(`{"resourceType":"Patient","id":"`+patient+`"}`), http.StatusOK, http.StatusCreated); err != nil {
		return nil, err
	}
	if err := e.do(ctx, http.MethodPost, e.fhirBase+"/Subscription", subscriptionBody(recv.url, "Observation?patient=Patient/"+patient), http.StatusCreated); err != nil {
		return nil, err
	}
	time.Sleep(time.Second) // the handshake
	body := []byte(`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/` + patient + `"}}`)
	var mu sync.Mutex
	sent := map[string]time.Time{}
	var wg sync.WaitGroup
	var firstErr error
	tick := time.NewTicker(time.Second / latencyRate)
	defer tick.Stop()
	for range latencyWrites {
		<-tick.C
		wg.Go(func() {
			start := time.Now()
			id, err := createID(ctx, e, e.fhirBase+"/Observation", body)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				firstErr = err
				return
			}
			sent[id] = start
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		recv.mu.Lock()
		n := 0
		for id := range sent {
			if _, ok := recv.arrived[id]; ok {
				n++
			}
		}
		recv.mu.Unlock()
		if n == len(sent) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	recv.mu.Lock()
	defer recv.mu.Unlock()
	var lat []time.Duration
	for id, at := range sent {
		if got, ok := recv.arrived[id]; ok {
			lat = append(lat, max(0, got.Sub(at)))
		}
	}
	if len(lat) < len(sent) {
		return lat, fmt.Errorf("subscription latency: %d of %d writes notified within 30 s", len(lat), len(sent))
	}
	return lat, nil
}

// createID POSTs a resource and returns the id of its Location.
func createID(ctx context.Context, e *env, url string, body []byte) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Prefer", "return=minimal")
	resp, err := e.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("POST %s: status %d", url, resp.StatusCode)
	}
	loc := resp.Header.Get("Location")
	rest := loc[strings.Index(loc, "/Observation/")+13:]
	id, _, _ := strings.Cut(rest, "/")
	return id, nil
}
