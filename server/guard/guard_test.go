package guard

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// discardWriter is a minimal ResponseWriter so the benchmark measures the
// middleware, not the recorder.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkStack compares a FHIR read handler bare and behind all three
// middlewares as the server would stack them.
func BenchmarkStack(b *testing.B) {
	c, err := NewCORS(CORSConfig{AllowedOrigins: []string{"https://app.example.org"}, Match: PathPrefixes("/fhir/metadata")})
	if err != nil {
		b.Fatal(err)
	}
	l := NewLimiter(LimiterConfig{
		PerIP: Limit{Rate: 1e9, Burst: 1e9}, PerClient: Limit{Rate: 1e9, Burst: 1e9}, ClientKey: clientHeader,
	})
	for name, h := range map[string]http.Handler{
		"bare":    okHandler,
		"guarded": Headers{}.Wrap(c.Wrap(l.Wrap(okHandler))),
	} {
		b.Run(name, func(b *testing.B) {
			reqs := make([]*http.Request, 64)
			for i := range reqs {
				reqs[i] = httptest.NewRequest(http.MethodGet, "/fhir/Patient/1", nil)
				reqs[i].RemoteAddr = fmt.Sprintf("10.0.0.%d:1234", i)
				reqs[i].Header.Set("X-Test-Client", fmt.Sprint("client-", i%4))
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				w := &discardWriter{h: http.Header{}}
				i := 0
				for pb.Next() {
					clear(w.h)
					h.ServeHTTP(w, reqs[i&63])
					i++
				}
			})
		})
	}
}
