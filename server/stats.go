package server

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
)

// $stats: what the console's Overview shows of the server's work — its
// version, database size, queue depths and the last hour of requests a
// minute at a time — as an ordinary FHIR operation for an admin's (or a
// monitoring system's) token. Prometheus keeps the long history; this is
// the hour a person opening the console wants without one.

// statsDefinition is $stats's OperationDefinition canonical.
const statsDefinition = "https://emberfhir.org/fhir/OperationDefinition/stats"

// activityMinutes is how much request history $stats returns.
const activityMinutes = 60

// latencyBounds are the upper bounds (seconds) of the per-minute latency
// counts, from which $stats estimates a minute's p95.
var latencyBounds = [...]float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// minuteAcc counts one minute's requests; note adds to it without locks.
type minuteAcc struct {
	minute   int64 // Unix minutes
	requests atomic.Int64
	errors   atomic.Int64 // 5xx
	micros   atomic.Int64 // latency sum
	buckets  [len(latencyBounds) + 1]atomic.Int64
}

// activity is the last hour of requests, a minute each.
type activity struct {
	cur  atomic.Pointer[minuteAcc]
	mu   sync.Mutex // rotation and reading
	past []*minuteAcc
}

// note counts one request that started at start and took elapsed.
func (a *activity) note(start time.Time, elapsed time.Duration, status int) {
	m := start.Unix() / 60
	acc := a.cur.Load()
	if acc == nil || acc.minute != m {
		acc = a.rotate(m)
	}
	acc.requests.Add(1)
	if status >= 500 {
		acc.errors.Add(1)
	}
	acc.micros.Add(elapsed.Microseconds())
	i := 0
	for i < len(latencyBounds) && elapsed.Seconds() > latencyBounds[i] {
		i++
	}
	acc.buckets[i].Add(1)
}

// rotate makes minute m current (a request that started just before a
// rotation counts in the minute it started in, or the next one).
func (a *activity) rotate(m int64) *minuteAcc {
	a.mu.Lock()
	defer a.mu.Unlock()
	if acc := a.cur.Load(); acc != nil && acc.minute >= m {
		return acc
	}
	if old := a.cur.Load(); old != nil {
		a.past = append(a.past, old)
		if len(a.past) > activityMinutes {
			a.past = a.past[len(a.past)-activityMinutes:]
		}
	}
	acc := &minuteAcc{minute: m}
	a.cur.Store(acc)
	return acc
}

// minutes returns the record of the last hour, oldest first, with the
// current (partial) minute last; minutes without requests are left out.
func (a *activity) minutes(now time.Time) []*minuteAcc {
	a.mu.Lock()
	defer a.mu.Unlock()
	from := now.Unix()/60 - activityMinutes
	var out []*minuteAcc
	for _, m := range append(append([]*minuteAcc(nil), a.past...), a.cur.Load()) {
		if m != nil && m.minute > from {
			out = append(out, m)
		}
	}
	return out
}

// p95 estimates the minute's 95th percentile latency in milliseconds: the
// upper bound of the bucket it falls in.
func (m *minuteAcc) p95() float64 {
	n := m.requests.Load()
	if n == 0 {
		return 0
	}
	want := (n*95 + 99) / 100
	var seen int64
	for i := range m.buckets {
		seen += m.buckets[i].Load()
		if seen >= want {
			if i < len(latencyBounds) {
				return latencyBounds[i] * 1000
			}
			break
		}
	}
	return latencyBounds[len(latencyBounds)-1] * 1000
}

// statsOperation is $stats at system level.
func (s *Server) statsOperation() engine.Operation {
	return engine.Operation{Name: "stats", Levels: engine.SystemLevel, Methods: []string{"GET"},
		Definition: statsDefinition, Invoke: s.stats}
}

// stats answers $stats for System (--auth none), an admin user, or a
// token with a system read scope on every type, as /metrics does.
func (s *Server) stats(ctx context.Context, caller *engine.Caller, _ engine.OpRequest) (engine.OpResponse, error) {
	if g := caller.Grant(); g != nil && g.Role != "admin" && !systemRead(g.Scopes) {
		return engine.OpResponse{}, fhir.NewError(fhir.Forbidden, "forbidden", "$stats is for admin users and system/*.read tokens")
	}
	type obj = map[string]any
	version := s.cfg.Version
	if version == "" {
		version = "dev"
	}
	params := []any{
		obj{"name": "version", "valueString": version},
		obj{"name": "fhirVersion", "valueCode": "4.0.1"},
	}
	if size, err := s.store.DatabaseSize(ctx); err == nil {
		params = append(params, obj{"name": "databaseSize", "valueDecimal": size})
	}
	gauges := s.gauges()
	for _, q := range []struct{ name, metric, label string }{
		{"exportsAccepted", "ember_export_jobs", "accepted"},
		{"exportsRunning", "ember_export_jobs", "running"},
		{"inferenceQueue", "ember_inference_queue_depth", ""},
		{"subscriptionBacklog", "ember_subscription_change_backlog", ""},
		{"auditBacklog", "ember_audit_backlog", ""},
	} {
		if v, ok := gauges[q.metric+"/"+q.label]; ok && v >= 0 {
			params = append(params, obj{"name": "queue", "part": []any{
				obj{"name": "name", "valueCode": q.name}, obj{"name": "depth", "valueDecimal": v}}})
		}
	}
	for _, m := range s.activity.minutes(time.Now()) {
		n := m.requests.Load()
		mean := 0.0
		if n > 0 {
			mean = float64(m.micros.Load()) / float64(n) / 1000
		}
		params = append(params, obj{"name": "minute", "part": []any{
			obj{"name": "start", "valueInstant": fhir.FormatInstant(time.Unix(m.minute*60, 0))},
			obj{"name": "requests", "valueInteger": n},
			obj{"name": "errors", "valueInteger": m.errors.Load()},
			obj{"name": "meanMs", "valueDecimal": json.Number(strconv.FormatFloat(mean, 'f', 2, 64))},
			obj{"name": "p95Ms", "valueDecimal": json.Number(strconv.FormatFloat(m.p95(), 'f', 0, 64))},
		}})
	}
	body, err := json.Marshal(obj{"resourceType": "Parameters", "parameter": params})
	return engine.OpResponse{Body: body}, err
}

// gauges reads the registry's gauges, by "name/state" (the label state,
// for ember_export_jobs; "" for the others).
func (s *Server) gauges() map[string]float64 {
	out := map[string]float64{}
	mfs, err := s.registry.Gather()
	if err != nil && len(mfs) == 0 {
		return out
	}
	for _, mf := range mfs {
		if mf.GetType() != dto.MetricType_GAUGE {
			continue
		}
		for _, m := range mf.GetMetric() {
			label := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "state" {
					label = l.GetValue()
				}
			}
			out[mf.GetName()+"/"+label] = m.GetGauge().GetValue()
		}
	}
	return out
}
