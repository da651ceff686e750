package index

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/emberfhir/ember/fhir"
)

// These tests hold each hand-written fast path to the code it replaced: the
// tree parser to encoding/json, the date matcher to the regexp, validID to
// fhir.ValidID and normalizeASCII to the NFD path.

var jsonSeeds = []string{
	`{"resourceType":"Patient","id":"a","name":[{"family":"Müller","given":["Jürgen",null]}]}`,
	`{"a":1,"a":null}`, `{"a":null,"a":"x"}`, `{"a":{"b":[1,2,[3,{"c":true}]]},"d":false}`,
	`  {"k" : "v" }  trailing`, `"str"x`, `123abc`, `01`, `-0.5e+10`, `1.`, `-`, `1e`, `.5`,
	`tru`, `truex`, `nullx`, `[nullx]`, `[01]`, `{"a":1,}`, `[1,]`, `{"a" 1}`, `{1:2}`, ``, ` `,
	`"\u00e9\ud83d\ude00\ud800\udc00x\ud800"`, `"\uDC00\uD800"`, `"\/\b\f\n\r\t\\\""`, `"\x"`, `"\u12"`,
	"\"\xff\xfe ok\"", "\"\xed\xa0\x80\"", "\"a\x01b\"", "{\"k\xff\":1}", "\xef\xbb\xbf{}",
	`{"a":"\u0041\u0000"}`, `[` + strings.Repeat(`[`, 50) + strings.Repeat(`]`, 51),
}

// TestDecodeDepth checks the nesting limit at encoding/json's boundary.
func TestDecodeDepth(t *testing.T) {
	for _, n := range []int{maxDepth - 1, maxDepth, maxDepth + 1} {
		checkDecode(t, []byte(strings.Repeat("[", n)+strings.Repeat("]", n)))
		checkDecode(t, []byte(strings.Repeat(`{"a":`, n)+"1"+strings.Repeat("}", n)))
	}
}

func TestDecodeSeeds(t *testing.T) {
	for _, s := range jsonSeeds {
		checkDecode(t, []byte(s))
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) { checkDecode(t, doc) })
}

// checkDecode compares the parser (without decode's encoding/json fallback)
// and decode with encoding/json's Decoder.
func checkDecode(t *testing.T, doc []byte) {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	var want any
	werr := d.Decode(&want)

	p := newParser(doc)
	p.space()
	ok := p.value("")
	if ok != (werr == nil) {
		t.Fatalf("%q: parser ok %v, encoding/json error %v", doc, ok, werr)
	}
	if ok {
		if got := (&tree{nodes: p.nodes}).toAny(0); !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\n got %#v\nwant %#v", doc, got, want)
		}
	}
	var tr tree
	if err := tr.decode(doc); fmt.Sprint(err) != fmt.Sprint(werr) {
		t.Fatalf("%q: decode error %v, encoding/json %v", doc, err, werr)
	}
}

// toAny converts a subtree to what encoding/json would have decoded.
func (t *tree) toAny(n int) any {
	nd := t.nodes[n]
	switch nd.kind {
	case kFalse:
		return false
	case kTrue:
		return true
	case kNumber:
		return json.Number(nd.val)
	case kString:
		return nd.val
	case kArray:
		out := []any{}
		for c := n + 1; c < nd.end; c = t.nodes[c].end {
			out = append(out, t.toAny(c))
		}
		return out
	case kObject:
		out := map[string]any{}
		for c := n + 1; c < nd.end; c = t.nodes[c].end {
			out[t.nodes[c].key] = t.toAny(c)
		}
		return out
	}
	return nil
}

var dateSeeds = []string{
	"2024", "2024-02", "2024-02-29", "2023-02-29", "2024-13", "2024-00", "2024-01-32", "2024-04-31",
	"2024-01-01T10:00", "2024-01-01T10:00Z", "2024-01-01T10:00:00", "2024-01-01T10:00:60Z",
	"2024-01-01T24:00:00Z", "2024-01-01T10:60:00Z", "2019-02-17T05:07:38-05:00", "2019-02-17T05:07:38+14:00",
	"2019-02-17T05:07:38.1Z", "2019-02-17T05:07:38.123456789+01:00", "2019-02-17T05:07:38.1234567890Z",
	"2019-02-17T05:07:38.Z", "2019-02-17T05:07:38+25:00", "2019-02-17T05:07:38+05:99", "2019-02-17T05:07:38+00:00",
	"2019-02-17T05:07:38-00:00", "2019-02-17T05:07:38+0500", "2019-02-17T05:07+05:00", "2019-02-17T05",
	"2019-02-17T", "2019-02-17 05:07:38", "2019-02-", "2019-", "201", "20190", "", "0000", "9999-12-31T23:59:59.999999999Z",
	"2024-01-01T10:00:00Zx", "２０２４", "2024-1-01", "2024-01-01T10:00:00+05:00\n", "-2024",
}

func TestParseDateRangeSeeds(t *testing.T) {
	for _, s := range dateSeeds {
		checkDate(t, s)
	}
}

func FuzzParseDateRange(f *testing.F) {
	for _, s := range dateSeeds {
		f.Add(s)
	}
	f.Fuzz(checkDate)
}

// checkDate compares fhir.ParseDateRange with the regexp version.
func checkDate(t *testing.T, s string) {
	lo, hi, err := fhir.ParseDateRange(s)
	wlo, whi, werr := oldParseDateRange(s)
	if fmt.Sprint(err) != fmt.Sprint(werr) || !reflect.DeepEqual(lo, wlo) || !reflect.DeepEqual(hi, whi) {
		t.Fatalf("%q: got %v %v %v, want %v %v %v", s, lo, hi, err, wlo, whi, werr)
	}
}

var idSeeds = []string{"a", "A-1.b", "", strings.Repeat("x", 64), strings.Repeat("x", 65), "a b", "a/b", "é", "a_b", "a\n"}

func TestValidID(t *testing.T) {
	for _, s := range idSeeds {
		if validID(s) != fhir.ValidID(s) {
			t.Errorf("validID(%q) = %v, fhir.ValidID %v", s, validID(s), fhir.ValidID(s))
		}
	}
}

func FuzzValidID(f *testing.F) {
	for _, s := range idSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if validID(s) != fhir.ValidID(s) {
			t.Fatalf("validID(%q) = %v, fhir.ValidID %v", s, validID(s), fhir.ValidID(s))
		}
	})
}

var normSeeds = []string{"", "abc", "Body Height", "MÜLLER", "Zoë", "ǅ", "İstanbul", "ﬃ", strings.Repeat("A", 300), strings.Repeat("é", 200), "a\x00B", "\xff"}

func TestNormalize(t *testing.T) {
	for _, s := range normSeeds {
		if got, want := Normalize(s), oldNormalize(s); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", s, got, want)
		}
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range normSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := Normalize(s), oldNormalize(s); got != want {
			t.Fatalf("Normalize(%q) = %q, want %q", s, got, want)
		}
	})
}
