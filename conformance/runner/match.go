package runner

import (
	"strings"
	"time"
	"unicode"

	"github.com/emberfhir/ember/fhir/index"
)

// The runner's own evaluation of search criteria on returned resources
// (decoded JSON), so a server's wrong answer cannot vouch for itself. It
// knows the parameters the US Core searches use (params.go) and the FHIR
// search semantics of their types: reference, token, date, string.

// values returns the elements at a dotted path ("name.family",
// "effective[x]", "extension(URL).value[x]"), arrays flattened.
func values(res map[string]any, path string) []any {
	cur := []any{res}
	for _, step := range pathSteps(path) {
		var next []any
		for _, v := range cur {
			m, ok := v.(map[string]any)
			if !ok {
				continue
			}
			if u, ok := strings.CutPrefix(step, "extension("); ok {
				// extension(URL): the extensions with that url, as the US
				// Core parameters' .extension.where(url = …) select them.
				u = strings.TrimSuffix(u, ")")
				for _, e := range appendFlat(nil, m["extension"]) {
					if em, ok := e.(map[string]any); ok && em["url"] == u {
						next = append(next, em)
					}
				}
				continue
			}
			if base, ok := strings.CutSuffix(step, "[x]"); ok {
				for k, x := range m {
					if strings.HasPrefix(k, base) && len(k) > len(base) && unicode.IsUpper(rune(k[len(base)])) {
						next = appendFlat(next, x)
					}
				}
				continue
			}
			if x, ok := m[step]; ok {
				next = appendFlat(next, x)
			}
		}
		cur = next
	}
	return cur
}

// pathSteps splits a path on the dots outside parentheses.
func pathSteps(path string) []string {
	var out []string
	depth, from := 0, 0
	for i, c := range path {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
		case '.':
			if depth == 0 {
				out = append(out, path[from:i])
				from = i + 1
			}
		}
	}
	return append(out, path[from:])
}

func appendFlat(out []any, v any) []any {
	if a, ok := v.([]any); ok {
		return append(out, a...)
	}
	return append(out, v)
}

// matchReference: value is "id", "Type/id" or an absolute URL.
func matchReference(v any, want string) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	ref, _ := m["reference"].(string)
	if ref == "" {
		return false
	}
	if strings.Contains(want, "/") {
		return ref == want || strings.HasSuffix(ref, "/"+want)
	}
	i := strings.LastIndex(ref, "/")
	return ref[i+1:] == want
}

// matchToken: want is "code", "system|code", "|code" or "system|"; v a
// code, Coding, CodeableConcept or Identifier.
func matchToken(v any, want string) bool {
	system, code, hasSystem := strings.Cut(want, "|")
	if !hasSystem {
		code, system = system, ""
	}
	one := func(s, c string) bool {
		if hasSystem && system != s {
			return false
		}
		return code == "" || c == code
	}
	switch x := v.(type) {
	case string:
		return !hasSystem && x == code
	case bool:
		return !hasSystem && map[bool]string{true: "true", false: "false"}[x] == code
	case map[string]any:
		if cs, ok := x["coding"].([]any); ok {
			for _, c := range cs {
				if cm, ok := c.(map[string]any); ok {
					s, _ := cm["system"].(string)
					cd, _ := cm["code"].(string)
					if one(s, cd) {
						return true
					}
				}
			}
			return false
		}
		s, _ := x["system"].(string)
		if val, ok := x["value"].(string); ok { // an Identifier
			return one(s, val)
		}
		cd, _ := x["code"].(string)
		return one(s, cd)
	}
	return false
}

// tokenValue returns a value to search v with: "system|code" when the
// element has a system, else the code; "" when v carries none.
func tokenValue(v any) (withSystem, codeOnly string) {
	switch x := v.(type) {
	case string:
		return x, x
	case map[string]any:
		if cs, ok := x["coding"].([]any); ok {
			for _, c := range cs {
				if cm, ok := c.(map[string]any); ok {
					if w, c := tokenValue(cm); c != "" {
						return w, c
					}
				}
			}
			return "", ""
		}
		s, _ := x["system"].(string)
		c, _ := x["code"].(string)
		if val, ok := x["value"].(string); ok {
			c = val
		}
		if c == "" {
			return "", ""
		}
		if s == "" {
			return c, c
		}
		return s + "|" + c, c
	}
	return "", ""
}

// matchString: a case- and accent-insensitive prefix of a string, of any
// part of a HumanName, or of an Address.
func matchString(v any, want string) bool {
	w := index.Normalize(want)
	for _, s := range stringParts(v) {
		if strings.HasPrefix(index.Normalize(s), w) {
			return true
		}
	}
	return false
}

func stringParts(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, stringParts(e)...)
		}
		return out
	case map[string]any:
		var out []string
		for _, k := range []string{"family", "given", "text", "prefix", "suffix", "line", "city", "district", "state", "postalCode", "country"} {
			if e, ok := x[k]; ok {
				out = append(out, stringParts(e)...)
			}
		}
		return out
	}
	return nil
}

// stringValue returns a value to search v with (a family name, a city,
// the string itself).
func stringValue(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case map[string]any:
		for _, k := range []string{"family", "city", "text", "state", "postalCode"} {
			if s, ok := x[k].(string); ok && s != "" {
				return s
			}
		}
		if g, ok := x["given"].([]any); ok && len(g) > 0 {
			s, _ := g[0].(string)
			return s
		}
	}
	return ""
}

// span is the range [start, end) a date value covers; end is zero for an
// open Period.
type span struct{ start, end time.Time }

// dateLayouts are FHIR's date, dateTime and instant forms, longest first.
var dateLayouts = []struct {
	layout string
	step   func(time.Time) time.Time
}{
	{time.RFC3339Nano, nil},
	{"2006-01-02T15:04:05", func(t time.Time) time.Time { return t.Add(time.Second) }},
	{"2006-01-02", func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }},
	{"2006-01", func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }},
	{"2006", func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }},
}

// parseSpan reads a date, dateTime or instant as the range its precision
// covers; a value without a zone is read as UTC (matching allows for
// zones, see slack).
func parseSpan(s string) (span, bool) {
	for _, l := range dateLayouts {
		t, err := time.Parse(l.layout, s)
		if err != nil {
			continue
		}
		if l.step != nil {
			return span{t, l.step(t)}, true
		}
		// Instants and zoned dateTimes: the precision written.
		prec := time.Second
		if i := strings.IndexByte(s, '.'); i > 0 {
			digits := 0
			for _, c := range s[i+1:] {
				if c < '0' || c > '9' {
					break
				}
				digits++
			}
			prec = time.Duration(1)
			for range max(0, 9-digits) {
				prec *= 10
			}
		}
		return span{t, t.Add(prec)}, true
	}
	return span{}, false
}

// dateSpan returns the range of a date element (a primitive or a Period).
func dateSpan(v any) (span, bool) {
	switch x := v.(type) {
	case string:
		return parseSpan(x)
	case map[string]any:
		var sp span
		s, _ := x["start"].(string)
		e, _ := x["end"].(string)
		if s == "" && e == "" {
			return span{}, false
		}
		if s != "" {
			st, ok := parseSpan(s)
			if !ok {
				return span{}, false
			}
			sp.start = st.start
		}
		if e != "" {
			en, ok := parseSpan(e)
			if !ok {
				return span{}, false
			}
			sp.end = en.end
		}
		if sp.start.IsZero() {
			sp.start = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		return sp, true
	}
	return span{}, false
}

// slack allows for values written without a zone, which a server may read
// in any zone from -14:00 to +14:00.
const slack = 14 * time.Hour

// matchDate reports whether a resource range could satisfy prefix and the
// search value (R4 search date semantics), with slack both ways.
func matchDate(v any, want string) bool {
	r, ok := dateSpan(v)
	if !ok {
		return false
	}
	prefix, value := splitPrefix(want)
	s, ok := parseSpan(value)
	if !ok {
		return false
	}
	end := r.end
	if end.IsZero() {
		end = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	eq := !r.start.Add(slack).Before(s.start) && !end.Add(-slack).After(s.end)
	gt := end.Add(slack).After(s.end)
	lt := r.start.Add(-slack).Before(s.start)
	switch prefix {
	case "eq":
		return eq
	case "gt", "sa":
		return gt
	case "lt", "eb":
		return lt
	case "ge":
		return gt || eq
	case "le":
		return lt || eq
	case "ne", "ap":
		return true
	}
	return false
}

// splitPrefix splits a date search value's comparator off ("eq" default).
func splitPrefix(v string) (prefix, value string) {
	if len(v) > 2 && v[0] >= 'a' && v[0] <= 'z' && v[1] >= 'a' && v[1] <= 'z' {
		return v[:2], v[2:]
	}
	return "eq", v
}
