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
