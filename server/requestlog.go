package server

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/emberfhir/ember/fhir/spec"
)

// RequestIDHeader carries a request's id: taken from the request when the
// client (or a proxy in front) sent a sane one, else made up, and always
// returned on the response, so a user's report, a proxy's log and Ember's
// log lines of one request can be matched.
const RequestIDHeader = "X-Request-Id"

// maxRequestID bounds an accepted incoming id: longer ones are replaced,
// so a client cannot make every log line of its request arbitrarily long.
const maxRequestID = 64

type requestIDKey struct{}

// RequestID is the id of the request ctx belongs to ("" outside one).
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// requestIDs gives every request an id (see RequestIDHeader) in its context
// and on its response, before anything else runs: the guards' refusals and
// the mounts (DICOMweb, the authorization server) carry it too.
func requestIDs(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(RequestIDHeader)
		if !validRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set(RequestIDHeader, id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id)))
	})
}

// validRequestID accepts 1 to 64 characters of [A-Za-z0-9._-]: a token a
// log line can carry as it is (no quotes, spaces or control characters to
// forge another line with).
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestID {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// newRequestID is 128 random bits in hex. An id only has to be unique,
// not secret, so the runtime's per-thread generator (no system call, no
// lock) is enough.
func newRequestID() string {
	const hex = "0123456789abcdef"
	var b [32]byte
	for half := range 2 {
		v := rand.Uint64()
		for i := range 16 {
			b[half*16+i] = hex[v&0xf]
			v >>= 4
		}
	}
	return string(b[:])
}

// LogHandler wraps h so that every record logged with a request's context
// (Logger.InfoContext and the like) carries the request's id as
// request_id. cmd/ember builds its logger with it.
func LogHandler(h slog.Handler) slog.Handler { return requestIDHandler{h} }

type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(attrs)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}

// accessLog writes one debug line per request the router served. It names
// the route, not the URL: ids in the path become {id}, and of the query
// only the parameter names are kept, because search values are what
// identifies patients (name=, identifier=, birthdate=).
func (s *Server) accessLog(c *gin.Context, interaction, typ string, status int, elapsed time.Duration) {
	ctx := c.Request.Context()
	if !s.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", c.Request.Method),
		slog.String("route", routeTemplate(c.Request.URL.Path)),
		slog.String("interaction", interaction),
	}
	if typ != "" {
		attrs = append(attrs, slog.String("resource_type", typ))
	}
	if names := queryNames(c.Request.URL.RawQuery); names != "" {
		attrs = append(attrs, slog.String("params", names))
	}
	attrs = append(attrs, slog.Int("status", status), slog.Int("bytes", max(c.Writer.Size(), 0)),
		slog.Duration("duration", elapsed))
	s.log.LogAttrs(ctx, slog.LevelDebug, "http request", attrs...)
}

// routeTemplate is a request path with what may identify someone taken
// out. Under /fhir a segment is kept when it is a resource type, an
// operation or keyword ($everything, _history, _search, metadata) and
// replaced by {id} otherwise; other paths are kept only when they are the
// server's own fixed ones.
func routeTemplate(path string) string {
	rest, ok := strings.CutPrefix(path, "/fhir")
	if !ok || rest != "" && rest[0] != '/' {
		switch path {
		case "/healthz", "/readyz", "/metrics":
			return path
		}
		return "{other}"
	}
	var b strings.Builder
	b.WriteString("/fhir")
	for seg := range strings.SplitSeq(strings.TrimPrefix(rest, "/"), "/") {
		if seg == "" {
			continue
		}
		b.WriteByte('/')
		switch {
		case spec.IsResourceType(seg), seg == "metadata", keyword(seg):
			b.WriteString(seg)
		default:
			b.WriteString("{id}")
		}
	}
	return b.String()
}

// keyword reports an operation or underscore keyword of plain lower-case
// letters and hyphens ($export-status, _history): the server's own words,
// never a client's data.
func keyword(seg string) bool {
	if len(seg) < 2 || len(seg) > 40 || seg[0] != '$' && seg[0] != '_' {
		return false
	}
	for i := 1; i < len(seg); i++ {
		if c := seg[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
			return false
		}
	}
	return true
}

// queryNames lists the distinct parameter names of a raw query, comma
// separated, without their values. A name with a character no FHIR
// parameter name has (a space, an escape, '@', '|') is written as "?": a
// value pasted into the name position stays out of the log.
func queryNames(raw string) string {
	if raw == "" {
		return ""
	}
	var names []string
	for part := range strings.SplitSeq(raw, "&") {
		name, _, _ := strings.Cut(part, "=")
		if name == "" {
			continue
		}
		if !paramName(name) {
			name = "?"
		}
		dup := false
		for _, n := range names {
			if n == name {
				dup = true
				break
			}
		}
		if !dup && len(names) < 32 {
			names = append(names, name)
		}
	}
	return strings.Join(names, ",")
}

// paramName accepts a search parameter name as FHIR writes them: letters,
// digits, '_', '-', '.', and ':' for modifiers, chains and _has, up to 100
// characters.
func paramName(name string) bool {
	if len(name) > 100 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}
