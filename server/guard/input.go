package guard

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// DefaultMaxFormBody bounds the application/x-www-form-urlencoded bodies
// Input reads when InputConfig.MaxFormBody is 0.
const DefaultMaxFormBody = 1 << 20

// Input rejects requests whose text cannot be stored: a NUL byte or invalid
// UTF-8 (overlong forms such as %C0%80 included) in the path, a query
// parameter, a header value or a urlencoded form field. PostgreSQL refuses
// both in text (SQLSTATE 22021), so without this check they surface as 500s
// deep inside the handlers; here they are one 400 at the boundary.
type Input struct {
	// MaxFormBody bounds the form bodies read for checking (413 beyond it);
	// 0 means DefaultMaxFormBody.
	MaxFormBody int64
}

// inputChecked marks a request Input has already passed, so that stacking
// it twice (around the whole process and inside server.Handler) checks once.
type inputChecked struct{}

// Wrap checks every request before next sees it. A urlencoded body is read
// (bounded by MaxFormBody), checked and handed on unchanged.
func (in Input) Wrap(next http.Handler) http.Handler {
	maxForm := in.MaxFormBody
	if maxForm <= 0 {
		maxForm = DefaultMaxFormBody
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Context().Value(inputChecked{}) != nil {
			next.ServeHTTP(w, r)
			return
		}
		if msg := checkRequest(r); msg != "" {
			writeOutcome(w, http.StatusBadRequest, "invalid", msg)
			return
		}
		if isForm(r) {
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxForm))
			if err != nil {
				var tooBig *http.MaxBytesError
				if errors.As(err, &tooBig) {
					writeOutcome(w, http.StatusRequestEntityTooLarge, "too-costly",
						"form body exceeds the limit of "+strconv.FormatInt(maxForm, 10)+" bytes")
					return
				}
				writeOutcome(w, http.StatusBadRequest, "structure", "cannot read request body: "+err.Error())
				return
			}
			if msg := checkPairs(string(body), "form field"); msg != "" {
				writeOutcome(w, http.StatusBadRequest, "invalid", msg)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), inputChecked{}, true)))
	})
}

func isForm(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	if ct == "" || r.Body == nil || r.Body == http.NoBody {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/x-www-form-urlencoded"
}

// checkRequest says what is wrong with r's path, query or headers, "" when
// nothing is.
func checkRequest(r *http.Request) string {
	if bad(r.URL.Path, true) {
		return "the URL path contains a NUL byte, a control character or invalid UTF-8"
	}
	if msg := checkPairs(r.URL.RawQuery, "query parameter"); msg != "" {
		return msg
	}
	for name, values := range r.Header {
		for _, v := range values {
			if badHeader(v) {
				return "the " + printable(name) + " header contains a NUL byte, a control character or invalid UTF-8"
			}
		}
	}
	return ""
}

// checkPairs checks the decoded names and values of a query string or
// urlencoded form. Pairs that do not decode are left to the handler, which
// reports malformed escapes as it always has.
func checkPairs(raw, what string) string {
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if !strings.ContainsAny(pair, "%\x00") && utf8.ValidString(pair) {
			continue // the common case: nothing escaped, nothing to decode
		}
		k, v, _ := strings.Cut(pair, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			continue
		}
		if bad(name, false) {
			return "a " + what + " name contains a NUL byte or invalid UTF-8"
		}
		value, err := url.QueryUnescape(v)
		if err != nil {
			continue
		}
		if bad(value, false) {
			return "the " + what + " " + printable(name) + " contains a NUL byte or invalid UTF-8"
		}
	}
	return ""
}

// bad reports a NUL byte or invalid UTF-8, and with controls any other C0
// control character or DEL too.
func bad(s string, controls bool) bool {
	if !utf8.ValidString(s) {
		return true
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == 0 || (controls && (c < 0x20 || c == 0x7f)) {
			return true
		}
	}
	return false
}

// badHeader allows tab, the one control RFC 9110 permits in field values.
func badHeader(s string) bool {
	if !utf8.ValidString(s) {
		return true
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return true
		}
	}
	return false
}

// printable quotes a name for an error message, whatever bytes it holds.
func printable(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strconv.Quote(strings.ToValidUTF8(s, "\uFFFD"))
}
