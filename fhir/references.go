package fhir

import (
	"bytes"
	"strconv"
)

// RewriteReferences returns doc with the value of every "reference" property
// (Reference.reference, at any depth) replaced by fn's result where fn says
// so. Everything else keeps its exact bytes. doc must be valid JSON (a
// parsed resource's body is).
func RewriteReferences(doc []byte, fn func(ref string) (string, bool)) []byte {
	s := &scanner{data: doc, lenient: true}
	var out bytes.Buffer
	last := 0
	var walk func()
	walk = func() {
		s.skipSpace()
		if s.pos >= len(s.data) {
			return
		}
		switch s.data[s.pos] {
		case '{':
			s.pos++
			for {
				s.skipSpace()
				if s.pos >= len(s.data) || s.data[s.pos] == '}' {
					s.pos++
					return
				}
				key, ok := s.str()
				if !ok {
					return
				}
				s.skipSpace()
				s.pos++ // ':'
				s.skipSpace()
				if string(key) == "reference" && s.pos < len(s.data) && s.data[s.pos] == '"' {
					start := s.pos
					val, ok := s.str()
					if !ok {
						return
					}
					if repl, ok := fn(string(val)); ok {
						out.Write(s.data[last:start])
						out.WriteString(strconv.Quote(repl))
						last = s.pos
					}
				} else {
					walk()
				}
				s.skipSpace()
				if s.pos < len(s.data) && s.data[s.pos] == ',' {
					s.pos++
				}
			}
		case '[':
			s.pos++
			for {
				s.skipSpace()
				if s.pos >= len(s.data) || s.data[s.pos] == ']' {
					s.pos++
					return
				}
				walk()
				s.skipSpace()
				if s.pos < len(s.data) && s.data[s.pos] == ',' {
					s.pos++
				}
			}
		default:
			s.skipValue()
		}
	}
	walk()
	if last == 0 {
		return doc
	}
	out.Write(s.data[last:])
	return out.Bytes()
}
