package guard

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// CORS headers for browser SMART apps. Requests carry their token in the
// Authorization header, not cookies, so credentials are never allowed.
const (
	corsMethods = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
	corsHeaders = "Authorization, Content-Type, Accept, Prefer, If-Match, If-None-Match, If-None-Exist, If-Modified-Since, X-Requested-With"
	corsExpose  = "Location, ETag, Last-Modified, Content-Location, X-Progress, Retry-After"
)

// CORSConfig configures CORS.
type CORSConfig struct {
	// AllowedOrigins are the browser origins ("https://app.example.org")
	// that may call Ember, or the one entry "*" for any. Empty disables
	// CORS: browsers then refuse cross-origin calls.
	AllowedOrigins []string
	// Match selects the requests CORS applies to (nil: all); see
	// PathPrefixes.
	Match func(*http.Request) bool
	// MaxAge is how long browsers may cache a preflight (default 10m).
	MaxAge time.Duration
}

// CORS answers preflights and marks responses readable by allowed origins.
type CORS struct {
	any     bool
	origins map[string]bool
	match   func(*http.Request) bool
	maxAge  string
}

// NewCORS validates cfg's origins: each is "*" alone, or scheme://host[:port]
// with no path.
func NewCORS(cfg CORSConfig) (*CORS, error) {
	c := &CORS{origins: map[string]bool{}, match: cfg.Match}
	for _, o := range cfg.AllowedOrigins {
		if o == "*" {
			if len(cfg.AllowedOrigins) > 1 {
				return nil, fmt.Errorf("cors: \"*\" cannot be combined with other origins")
			}
			c.any = true
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
			u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return nil, fmt.Errorf("cors: origin %q: want scheme://host[:port]", o)
		}
		// Browsers send the origin lower-case.
		c.origins[strings.ToLower(o)] = true
	}
	maxAge := cfg.MaxAge
	if maxAge <= 0 {
		maxAge = 10 * time.Minute
	}
	c.maxAge = strconv.Itoa(int(maxAge.Seconds()))
	return c, nil
}

// ParseOrigins splits a comma-separated --cors-origins value.
func ParseOrigins(s string) []string {
	var out []string
	for _, o := range strings.Split(s, ",") {
		if o = strings.TrimSpace(o); o != "" {
			out = append(out, o)
		}
	}
	return out
}

// PathPrefixes matches requests whose path is one of prefixes or below one
// ending in "/": PathPrefixes("/fhir/metadata", "/fhir/.well-known/",
// "/auth/token").
func PathPrefixes(prefixes ...string) func(*http.Request) bool {
	return func(r *http.Request) bool {
		for _, p := range prefixes {
			if r.URL.Path == p || (strings.HasSuffix(p, "/") && strings.HasPrefix(r.URL.Path, p)) {
				return true
			}
		}
		return false
	}
}

func (c *CORS) allowed(origin string) bool {
	return c.any || c.origins[origin]
}

// Wrap applies CORS to the requests Match selects. A preflight from an
// allowed origin is answered 204 here; from another origin, 403. Other
// requests go on, with Access-Control-Allow-Origin only for an allowed
// origin.
func (c *CORS) Wrap(next http.Handler) http.Handler {
	if !c.any && len(c.origins) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.match != nil && !c.match(r) {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		if !c.allowed(origin) {
			if preflight {
				writeOutcome(w, http.StatusForbidden, "forbidden", "CORS: origin not allowed")
				return
			}
			// The browser will not let the page read the response.
			next.ServeHTTP(w, r)
			return
		}
		if c.any {
			h.Set("Access-Control-Allow-Origin", "*")
		} else {
			h.Set("Access-Control-Allow-Origin", origin)
		}
		if preflight {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			h.Set("Access-Control-Allow-Methods", corsMethods)
			h.Set("Access-Control-Allow-Headers", corsHeaders)
			h.Set("Access-Control-Max-Age", c.maxAge)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.Set("Access-Control-Expose-Headers", corsExpose)
		next.ServeHTTP(w, r)
	})
}
