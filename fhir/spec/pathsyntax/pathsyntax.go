// Package pathsyntax holds the lexical helpers of the FHIRPath subset that
// search parameter expressions use: identifiers, parentheses, top-level
// splitting of unions and paths, the type an alternative starts with. The
// generator of fhir/spec's tables and conformance/searchparam (which
// compiles an implementation guide's SearchParameters at run time) share
// them, so the two compilers read expressions alike.
package pathsyntax

import "strings"

// IsIdent reports whether s is a FHIRPath identifier (letters, digits, _).
func IsIdent(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// MatchingParen returns the index of the ")" closing s[0], or -1.
func MatchingParen(s string) int {
	d := 0
	for i, c := range s {
		switch c {
		case '(':
			d++
		case ')':
			d--
			if d == 0 {
				return i
			}
		}
	}
	return -1
}

// Balanced reports whether s's parentheses pair up.
func Balanced(s string) bool {
	d := 0
	for _, c := range s {
		switch c {
		case '(':
			d++
		case ')':
			d--
			if d < 0 {
				return false
			}
		}
	}
	return d == 0
}

// SplitTop splits s on sep outside parentheses and quotes.
func SplitTop(s string, sep byte) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'':
			quoted = !quoted
		case quoted:
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == sep && depth == 0:
			out = append(out, strings.TrimSpace(s[start:i]))
			start = i + 1
		}
	}
	return append(out, strings.TrimSpace(s[start:]))
}

// RootOf is the type name an alternative starts with.
func RootOf(alt string) string {
	s := strings.TrimLeft(strings.TrimSpace(alt), "(")
	end := strings.IndexAny(s, ". )")
	if end < 0 {
		return s
	}
	return s[:end]
}

// Alternative reads one "|"-separated alternative of a search expression
// into its dot-separated segments and its trailing cast ("X as T": T, else
// ""): outer parentheses are dropped and "(A as T).rest" is read as
// "A.as(T).rest", the forms R4's and guides' expressions use.
func Alternative(expr string) (segs []string, cast string) {
	s := strings.TrimSpace(expr)
	for strings.HasPrefix(s, "(") && strings.HasSuffix(s, ")") && Balanced(s[1:len(s)-1]) {
		s = strings.TrimSpace(s[1 : len(s)-1])
	}
	if strings.HasPrefix(s, "(") {
		if j := MatchingParen(s); j > 0 && j < len(s)-1 {
			inner, rest := strings.TrimSpace(s[1:j]), s[j+1:]
			if i := strings.LastIndex(inner, " as "); i > 0 {
				inner = strings.TrimSpace(inner[:i]) + ".as(" + strings.TrimSpace(inner[i+4:]) + ")"
			}
			s = inner + rest
		}
	}
	if i := strings.LastIndex(s, " as "); i > 0 {
		cast = strings.TrimSpace(s[i+4:])
		s = strings.TrimSpace(s[:i])
	}
	return SplitTop(s, '.'), cast
}
