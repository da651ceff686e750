package fhir

import (
	"strings"
	"unicode/utf8"
)

// StorableText reports whether s can be stored and compared as PostgreSQL
// text: valid UTF-8 without NUL bytes. Input that is not is the client's
// error (a 400), never a database error: every place where text from a
// request meets the database checks it.
func StorableText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}
