package hostile_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/emberfhir/ember/dicom"
	"github.com/emberfhir/ember/dicom/web"
	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/server"
	"github.com/emberfhir/ember/smart/authserver"
	"github.com/emberfhir/ember/store"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.TestMode)
	pgtest.Main(m)
}

// Bounds a response must keep. They are loose on purpose: CI machines are
// small and shared, and what they catch (a hang, a leak) is far beyond them.
const (
	maxResponseTime = 15 * time.Second
	maxRSSGrowth    = 512 << 20
)

// target is a running server with every HTTP surface.
type target struct {
	url    string
	client *http.Client
	rss0   int64
}

func newTarget(tb testing.TB) *target {
	tb.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, pgtest.NewDatabase(tb), store.Options{MaxConns: 8, StatementTimeout: 10 * time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(st.Close)
	var h http.Handler
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	tb.Cleanup(ts.Close)
	cfg := server.Config{BaseURL: ts.URL + "/fhir", MaxBody: 1 << 20, Logger: quietLogger()}

	as, err := authserver.New(ctx, authserver.Config{Issuer: ts.URL + "/auth", FHIRBaseURL: cfg.BaseURL, Logger: quietLogger()}, st)
	if err != nil {
		tb.Fatal(err)
	}
	if err := authserver.AddUser(ctx, st, authserver.User{Username: "alice", Password: "correct horse", Role: "doctor", FHIRUser: "Practitioner/pr1"}); err != nil {
		tb.Fatal(err)
	}
	if err := authserver.AddClient(ctx, st, authserver.Client{ID: "app", Type: authserver.Public, RedirectURIs: []string{"http://app.test/cb"}, Scopes: []string{"openid", "fhirUser", "launch/patient", "patient/*.rs"}}); err != nil {
		tb.Fatal(err)
	}
	blobs, err := dicom.OpenBlobs(ctx, "file://"+tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { blobs.Close() })
	eng, err := engine.New(engine.Config{BaseURL: cfg.BaseURL}, st)
	if err != nil {
		tb.Fatal(err)
	}
	svc, err := dicom.New(dicom.Config{Engine: eng, Blobs: blobs, DICOMwebBase: ts.URL + "/dicomweb", Logger: quietLogger()})
	if err != nil {
		tb.Fatal(err)
	}
	// FHIR runs without authorisation (so the fuzzer reaches the
	// interactions, not only the 401), the authorization server beside it.
	cfg.Mounts = []server.Mount{
		{Prefix: "/auth", Handler: as.Handler()},
		{Prefix: "/fhir/.well-known/smart-configuration", Handler: as.SMARTConfigurationHandler()},
		{Prefix: "/dicomweb", Handler: web.New(svc, web.Options{Prefix: "/dicomweb", Logger: quietLogger()})},
	}
	srv, err := server.New(cfg, st)
	if err != nil {
		tb.Fatal(err)
	}
	h = srv.Handler()
	tg := &target{url: ts.URL, client: &http.Client{Timeout: 2 * maxResponseTime,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	// Something to read, search, patch and include.
	for _, r := range []request{
		{"PUT", "/fhir/Patient/p1", ctJSON, `{"resourceType":"Patient","id":"p1","identifier":[{"system":"urn:mrn","value":"1"}],"name":[{"family":"Chalmers","given":["Peter"]}],"gender":"male","birthDate":"1974-12-25","generalPractitioner":[{"reference":"Practitioner/pr1"}]}`},
		{"PUT", "/fhir/Practitioner/pr1", ctJSON, `{"resourceType":"Practitioner","id":"pr1","name":[{"family":"Careful"}]}`},
		{"PUT", "/fhir/Observation/o1", ctJSON, `{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8302-2"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2020-01-02","valueQuantity":{"value":180.5,"unit":"cm","system":"http://unitsofmeasure.org","code":"cm"}}`},
	} {
		if status, _, err := tg.send(r); err != nil || status >= 300 {
			tb.Fatalf("setting up %s %s: %d %v", r.method, r.target, status, err)
		}
	}
	tg.rss0 = rss()
	return tg
}

const (
	ctJSON  = "application/fhir+json"
	ctForm  = "application/x-www-form-urlencoded"
	ctPatch = "application/json-patch+json"
)

// request is one HTTP request of the corpus.
type request struct {
	method, target, contentType, body string
}

// seeds are valid requests over every surface: the mutator starts from them.
var seeds = []request{
	{"GET", "/fhir/metadata", "", ""},
	{"GET", "/fhir/Patient/p1", "", ""},
	{"GET", "/fhir/Patient/p1/_history/1", "", ""},
	{"GET", "/fhir/Patient?name=chalmers&birthdate=ge1970-01-01&_count=5&_sort=-birthdate", "", ""},
	{"GET", "/fhir/Patient?identifier=urn:mrn|1&_revinclude=Observation:subject&_include=Patient:general-practitioner", "", ""},
	{"GET", "/fhir/Observation?subject.name=peter&code=http://loinc.org|8302-2&value-quantity=gt100|http://unitsofmeasure.org|cm&_total=accurate", "", ""},
	{"GET", "/fhir/Patient?_has:Observation:patient:code=8302-2&_elements=name,gender", "", ""},
	{"GET", "/fhir/Patient/p1/$everything?_count=10", "", ""},
	{"GET", "/fhir/Patient/p1/Observation?date=2020", "", ""},
	{"GET", "/fhir/_history?_since=2020-01-01T00:00:00Z", "", ""},
	{"GET", "/fhir?_type=Patient,Observation&_lastUpdated=gt2020-01-01", "", ""},
	{"POST", "/fhir/Patient/_search", ctForm, "name=peter&gender=male"},
	{"POST", "/fhir/Patient", ctJSON, `{"resourceType":"Patient","name":[{"family":"New","given":["Person"]}],"birthDate":"2001-02-03"}`},
	{"PUT", "/fhir/Patient/p2", ctJSON, `{"resourceType":"Patient","id":"p2","active":true,"name":[{"text":"Two"}],"contained":[{"resourceType":"Organization","id":"o","name":"Org"}],"managingOrganization":{"reference":"#o"}}`},
	{"PUT", "/fhir/Patient?identifier=urn:mrn|2", ctJSON, `{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"2"}]}`},
	{"PATCH", "/fhir/Patient/p1", ctPatch, `[{"op":"replace","path":"/gender","value":"female"}]`},
	{"DELETE", "/fhir/Observation?code=nothing-matches", "", ""},
	{"POST", "/fhir", ctJSON, `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a","resource":{"resourceType":"Patient","name":[{"family":"Tx"}]},"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=urn:mrn|9"}},{"resource":{"resourceType":"Observation","status":"final","code":{"text":"t"},"subject":{"reference":"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"},"valueQuantity":{"value":1.5}},"request":{"method":"POST","url":"Observation"}}]}`},
	{"POST", "/fhir", ctJSON, `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/p1"}},{"request":{"method":"DELETE","url":"Patient/p9"}}]}`},
	{"POST", "/fhir/Patient/$validate", ctJSON, `{"resourceType":"Patient","birthDate":"2000-01-01"}`},
	{"GET", "/auth/.well-known/openid-configuration", "", ""},
	{"GET", "/fhir/.well-known/smart-configuration", "", ""},
	{"GET", "/auth/authorize?response_type=code&client_id=app&redirect_uri=http://app.test/cb&scope=openid+patient/*.rs&state=abc&aud=BASE&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256", "", ""},
	{"POST", "/auth/login", ctForm, "req=abc&username=alice&password=wrong+horse"},
	{"POST", "/auth/token", ctForm, "grant_type=authorization_code&code=nope&client_id=app&redirect_uri=http://app.test/cb&code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"},
	{"POST", "/auth/introspect", ctForm, "token=abc&client_id=app"},
	{"POST", "/auth/revoke", ctForm, "token=abc&client_id=app"},
	{"GET", "/dicomweb/studies?PatientID=1&limit=10", "", ""},
	{"GET", "/dicomweb/studies/1.2.3/series/4.5/instances/6.7/frames/1,2", "", ""},
	{"GET", "/dicomweb/studies/1.2.3/series/4.5/instances/6.7/rendered?window=40,400", "", ""},
	{"GET", "/healthz", "", ""},
}

// send performs r; the status is 0 when the client refused to send it.
func (tg *target) send(r request) (int, []byte, error) {
	body := strings.ReplaceAll(r.body, "BASE", tg.url+"/fhir")
	req, err := http.NewRequest(r.method, tg.url+strings.ReplaceAll(r.target, "BASE", tg.url+"/fhir"), strings.NewReader(body))
	if err != nil {
		return 0, nil, nil // not a request a client can send
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	resp, err := tg.client.Do(req)
	if err != nil {
		if strings.Contains(err.Error(), "invalid") || strings.Contains(err.Error(), "malformed") {
			return 0, nil, nil // refused by the client's own checks
		}
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return resp.StatusCode, b, err
}

// check sends r and fails t on a server fault: a transport error, a 5xx,
// a slow answer, or memory that grew past the bound. It returns the status.
func (tg *target) check(t testing.TB, r request) int {
	t.Helper()
	start := time.Now()
	status, body, err := tg.send(r)
	took := time.Since(start)
	desc := fmt.Sprintf("%s %.300q (%s, %d-byte body %.200q)", r.method, r.target, r.contentType, len(r.body), r.body)
	switch {
	case err != nil:
		t.Fatalf("%s: %v", desc, err)
	case status >= 500:
		t.Fatalf("%s: status %d: %.500s", desc, status, body)
	case took > maxResponseTime:
		t.Fatalf("%s: took %s", desc, took)
	}
	if grown := rss() - tg.rss0; grown > maxRSSGrowth {
		t.Fatalf("after %s: resident memory grew by %d MiB", desc, grown>>20)
	}
	return status
}

// rss is this process's resident memory in bytes (0 where /proc is absent).
func rss() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// TestHostileBurst sends a fixed, seeded series of mutated requests: the
// same series every run, so a failure reproduces.
func TestHostileBurst(t *testing.T) {
	tg := newTarget(t)
	n := 4000
	if testing.Short() {
		n = 500
	}
	if v, err := strconv.Atoi(os.Getenv("EMBER_HOSTILE_N")); err == nil && v > 0 {
		n = v
	}
	rng := rand.New(rand.NewPCG(11, 2026))
	// The seeds are valid: they must succeed, or the burst would only
	// exercise error paths.
	for _, s := range seeds {
		if status := tg.check(t, s); status >= 400 && !strings.HasPrefix(s.target, "/auth/") && !strings.HasPrefix(s.target, "/dicomweb/studies/") {
			t.Errorf("seed %s %s: status %d", s.method, s.target, status)
		}
	}
	statuses := map[int]int{}
	for i := 0; i < n; i++ {
		statuses[tg.check(t, mutate(rng, seeds[rng.IntN(len(seeds))]))]++
	}
	t.Logf("%d mutated requests, by status: %v; resident memory grew by %d MiB", n, statuses, (rss()-tg.rss0)>>20)
}

// FuzzHTTP lets Go's fuzzer mutate the seed requests (make fuzz).
func FuzzHTTP(f *testing.F) {
	for _, s := range seeds {
		f.Add(s.method, s.target, s.contentType, []byte(s.body))
	}
	tg := newTarget(f)
	f.Fuzz(func(t *testing.T, method, target, contentType string, body []byte) {
		if !strings.HasPrefix(target, "/") {
			target = "/" + target
		}
		tg.check(t, request{method, target, contentType, string(body)})
	})
}

// poison are fragments known to have broken servers: NUL and invalid UTF-8,
// out-of-range numbers, result parameters in conditions, deep nesting,
// modifiers and prefixes that do not exist.
var poison = []string{
	"%00", "%FF", "%C0%80", "%ED%A0%80", "\x00", "\xff", "\\u0000", "\\ud800",
	"1e131072", "1e-16384", "-1e999999", "0x10", "1_000", "NaN", "Infinity", "99999999999999999999999",
	"_count=1", "_count=0", "_count=-1", "_count=99999999999", "_sort=-_id,_lastUpdated", "_summary=count", "_total=accurate",
	"_include=*", "_revinclude:iterate=Observation:subject", "_elements=", "_cursor=AAAA", "_format=xml", "_pretty=true",
	"name:bogus=x", "code:below=x", "subject._has:Observation:patient:code=x", "_has:Observation:patient:_has:Observation:patient:code=x",
	"subject:Patient.general-practitioner:Practitioner.name=x", "date=ap2020", "date=sa", "value-quantity=ap",
	",,,,", "\\,\\|\\$", "|", "$", "..", "../../etc/passwd", "%2e%2e%2f", "//", "?", "#", "&&&&",
	`{"resourceType":"Patient","contained":[{"resourceType":"Patient","contained":[]}]}`, `[[[[[[[[[[[[[[[[[[[[`, `{"a":` + strings.Repeat("[", 5000),
	`"birthDate":"0000-01-01"`, `"value":1e131072`, `"reference":"urn:uuid:00000000-0000-0000-0000-000000000000"`,
	"W/\"1\"", "*", "frames/1,1,1,1,1,1,1,1,1,1", "window=NaN,NaN", "window=-1,-1",
}

// mutate applies one to four random mutations to a seed.
func mutate(rng *rand.Rand, r request) request {
	for k := 1 + rng.IntN(4); k > 0; k-- {
		switch rng.IntN(12) {
		case 0: // splice a poison fragment into the target
			r.target = splice(rng, r.target, poison[rng.IntN(len(poison))])
		case 1: // append a poison parameter
			sep := "?"
			if strings.Contains(r.target, "?") {
				sep = "&"
			}
			r.target += sep + poison[rng.IntN(len(poison))]
		case 2: // repeat the query many times
			if _, q, ok := strings.Cut(r.target, "?"); ok && q != "" {
				r.target += strings.Repeat("&"+q, 5+rng.IntN(150))
			}
		case 3: // splice poison into the body
			r.body = splice(rng, r.body, poison[rng.IntN(len(poison))])
		case 4: // truncate the body
			if len(r.body) > 0 {
				r.body = r.body[:rng.IntN(len(r.body))]
			}
		case 5: // flip bytes
			b := []byte(r.body + r.target)
			if len(b) == 0 {
				continue
			}
			for j := 0; j < 1+rng.IntN(4); j++ {
				b[rng.IntN(len(b))] ^= byte(1 << rng.IntN(8))
			}
			if len(r.body) > 0 {
				r.body = string(b[:len(r.body)])
			}
			if t := string(b[len(r.body):]); strings.HasPrefix(t, "/") {
				r.target = t
			}
		case 6: // another method
			r.method = []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}[rng.IntN(7)]
		case 7: // another content type
			r.contentType = []string{"", ctJSON, ctForm, ctPatch, "application/fhir+xml", "text/plain", "multipart/related; type=\"application/dicom\"; boundary=x", "application/json; charset=latin1"}[rng.IntN(8)]
		case 8: // a huge value
			r.target = splice(rng, r.target, strings.Repeat("a", 1<<uint(10+rng.IntN(8))))
		case 9: // duplicate the body's members
			if i := strings.Index(r.body, ","); i > 0 {
				r.body = r.body[:i] + strings.Repeat(r.body[strings.LastIndex(r.body[:i], "{")+1:i]+",", 1+rng.IntN(50)) + r.body[i+1:]
			}
		case 10: // nest the body deeply
			d := 10 + rng.IntN(3000)
			r.body = strings.Repeat(`{"a":[`, d) + r.body + strings.Repeat(`]}`, d)
		case 11: // numbers at the edges
			r.body = strings.NewReplacer("180.5", "1e131072", "1.5", "-1e-16384", "1974", "0000", "\"1\"", "\"\\u0000\"").Replace(r.body)
		}
	}
	// Past the server's limits (1 MiB of header, the body limit) a longer
	// request only tests the client: an 18 MB URL once cost this process
	// (client and server in one) half a GiB, all of it the client's.
	if len(r.target) > maxTarget {
		r.target = r.target[:maxTarget]
	}
	if len(r.body) > maxBody {
		r.body = r.body[:maxBody]
	}
	return r
}

const (
	maxTarget = 2 << 20
	maxBody   = 4 << 20
)

func splice(rng *rand.Rand, s, frag string) string {
	i := 0
	if len(s) > 0 {
		i = rng.IntN(len(s) + 1)
	}
	return s[:i] + frag + s[i:]
}

// quietLogger discards logs unless EMBER_TEST_LOG is set.
func quietLogger() *slog.Logger {
	if os.Getenv("EMBER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
