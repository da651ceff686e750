package guard

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// echoForm answers the form body it received, to prove Input restores it.
var echoForm = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.Write(b)
})

func TestInputRejectsUnstorableText(t *testing.T) {
	h := Input{MaxFormBody: 1 << 10}.Wrap(echoForm)
	form := "application/x-www-form-urlencoded"
	cases := []struct {
		name, method, target, ctype, body string
		hdr                               []string
		want                              int
		part                              string // what the diagnostics must name
	}{
		{"NUL in search value", "GET", "/fhir/Patient?name=%00", "", "", nil, 400, `"name"`},
		{"invalid UTF-8 in _id", "GET", "/fhir/Patient?_id=%FF", "", "", nil, 400, `"_id"`},
		{"overlong NUL", "GET", "/fhir/Patient?identifier=%C0%80", "", "", nil, 400, `"identifier"`},
		{"NUL in parameter name", "GET", "/fhir/Patient?na%00me=x", "", "", nil, 400, "name contains"},
		{"plus-encoded ok", "GET", "/fhir/Patient?name=a+b&given=%C3%A9", "", "", nil, 200, ""},
		{"NUL in path", "GET", "/fhir/Patient/a%00b", "", "", nil, 400, "URL path"},
		{"invalid UTF-8 in path", "GET", "/dicomweb/studies/%FF", "", "", nil, 400, "URL path"},
		{"newline in path", "GET", "/fhir/Patient/a%0Ab", "", "", nil, 400, "URL path"},
		{"NUL in header", "POST", "/fhir/Patient", "", "", []string{"If-None-Exist", "name=\x00"}, 400, `"If-None-Exist"`},
		{"invalid UTF-8 in header", "GET", "/fhir/Patient", "", "", []string{"X-Thing", "\xc0\x80"}, 400, `"X-Thing"`},
		{"tab in header ok", "GET", "/fhir/Patient", "", "", []string{"X-Thing", "a\tb"}, 200, ""},
		{"escaped NUL in header passes", "GET", "/fhir/Patient", "", "", []string{"If-None-Exist", "name=%00"}, 200, ""},
		{"NUL in form field", "POST", "/auth/login", form, "username=a%00&password=x", nil, 400, `"username"`},
		{"invalid UTF-8 in form field", "POST", "/auth/token", form + "; charset=utf-8", "grant_type=x&client_id=%FF", nil, 400, `"client_id"`},
		{"raw NUL in form body", "POST", "/auth/token", form, "client_id=a\x00b", nil, 400, `"client_id"`},
		{"form too large", "POST", "/auth/token", form, "a=" + strings.Repeat("b", 2<<10), nil, 413, "limit"},
		{"good form passes whole", "POST", "/auth/login", form, "username=alice&password=p%C3%A9", nil, 200, ""},
		{"JSON body not read", "POST", "/fhir/Patient", "application/fhir+json", "{\"x\":\"\\u0000\"}", nil, 200, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(c.method, c.target, strings.NewReader(c.body))
			if c.ctype != "" {
				r.Header.Set("Content-Type", c.ctype)
			}
			for i := 0; i+1 < len(c.hdr); i += 2 {
				r.Header.Set(c.hdr[i], c.hdr[i+1])
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != c.want {
				t.Fatalf("status %d, want %d: %s", w.Code, c.want, w.Body)
			}
			if c.want == 200 {
				if w.Body.String() != c.body {
					t.Fatalf("body reached the handler as %q, want %q", w.Body, c.body)
				}
				return
			}
			var oo struct {
				ResourceType string
				Issue        []struct{ Code, Diagnostics string }
			}
			if err := json.Unmarshal(w.Body.Bytes(), &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) != 1 {
				t.Fatalf("not an OperationOutcome: %v %s", err, w.Body)
			}
			if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
				t.Errorf("Content-Type %q", ct)
			}
			if !strings.Contains(oo.Issue[0].Diagnostics, c.part) {
				t.Errorf("diagnostics %q do not name %s", oo.Issue[0].Diagnostics, c.part)
			}
		})
	}
}

// TestInputChecksOnce: stacked twice (process and server.Handler), the form
// body is read once and reaches the handler intact.
func TestInputChecksOnce(t *testing.T) {
	inner := 0
	h := Input{}.Wrap(Input{}.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner++
		echoForm(w, r)
	})))
	r := httptest.NewRequest("POST", "/auth/token", strings.NewReader("a=b"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 200 || w.Body.String() != "a=b" || inner != 1 {
		t.Fatalf("%d %q %d", w.Code, w.Body, inner)
	}
}

func BenchmarkInput(b *testing.B) {
	h := Input{}.Wrap(okHandler)
	r := httptest.NewRequest("GET", "/fhir/Patient?name=smith&birthdate=ge1970-01-01&_count=50", nil)
	r.Header.Set("Authorization", "Bearer abc.def.ghi")
	r.Header.Set("Accept", "application/fhir+json")
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}
