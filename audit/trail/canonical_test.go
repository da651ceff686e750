package trail

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emberfhir/ember/audit"
)

// jsonReference is the canonical form by encoding/json: decode to a tree,
// marshal it back (maps sort their keys) without HTML escaping.
func jsonReference(t testing.TB, b []byte) []byte {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	e := json.NewEncoder(&out)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n"))
}

func TestCanonicalMatchesEncodingJSON(t *testing.T) {
	for _, in := range []string{
		`{}`, `[]`, `{"b":1,"a":[1,2,{"d":null,"c":true}],"": "x"}`,
		`{"resourceType": "AuditEvent", "id": "x", "meta": {"versionId": "1"}, "n": 1.50, "e": -0.0, "big": 1e400}`,
		`{"s": "tab\there \"q\" back\\slash \u00e9 é \u2028 \u0001 <&> \/ \ud83d\ude00"}`,
		`{"z": {"y": {"x": [ {"b": 2, "a": 1}, [], {} ]}}, "é": 1, "e": 2, "E": 3}`,
		"{\n  \"a\" :\t[ 1 , 2 ]\r\n}",
	} {
		got, err := Canonical([]byte(in))
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if want := jsonReference(t, []byte(in)); !bytes.Equal(got, want) {
			t.Errorf("Canonical(%s)\n got %s\nwant %s", in, got, want)
		}
	}
}

// TestCanonicalOfBuiltEvent: our own events, and the same value as
// PostgreSQL's JSONB prints it (keys reordered, spaced), canonicalise alike.
func TestCanonicalOfBuiltEvent(t *testing.T) {
	g := &group{}
	for i := range 50 {
		g.add(readEvent(i))
	}
	bs, err := g.build("ember.test", g.first)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Canonical(bs[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := jsonReference(t, bs[0]); !bytes.Equal(got, want) {
		t.Fatalf("differs from encoding/json's form")
	}
	var v any
	_ = json.Unmarshal(bs[0], &v)
	indented, _ := json.MarshalIndent(v, "", "  ")
	again, err := Canonical(indented)
	if err != nil || !bytes.Equal(again, got) {
		t.Fatalf("a re-spaced copy canonicalises differently: %v", err)
	}
}

func TestCanonicalRefusesMalformed(t *testing.T) {
	for _, in := range []string{``, `{`, `{"a"}`, `{"a":}`, `[1,]`, `{"a":1}x`, `"unterminated`, `{"a":tru}`, strings.Repeat("[", 200) + strings.Repeat("]", 200)} {
		if _, err := Canonical([]byte(in)); err == nil {
			t.Errorf("Canonical(%.40q) accepted", in)
		}
	}
}

func BenchmarkCanonical(b *testing.B) {
	g := &group{}
	for i := range 500 {
		g.add(readEvent(i))
	}
	bs, _ := g.build("ember.test", g.first)
	b.SetBytes(int64(len(bs[0])))
	for b.Loop() {
		if _, err := Canonical(bs[0]); err != nil {
			b.Fatal(err)
		}
	}
}

func readEvent(i int) audit.Event {
	ref := "Patient/p" + strings.Repeat("x", i%3) + string(rune('a'+i%26)) + itoa(i)
	return audit.Event{Kind: audit.REST, Subtype: "read", Action: audit.Read, Agent: audit.Agent{Client: "c"}, Entities: []string{ref}, Patient: ref, When: time.Unix(1700000000, 0)}
}

func itoa(i int) string { return strconv.Itoa(i) }

func BenchmarkCanonicalByEncodingJSON(b *testing.B) {
	g := &group{}
	for i := range 500 {
		g.add(readEvent(i))
	}
	bs, _ := g.build("ember.test", g.first)
	b.SetBytes(int64(len(bs[0])))
	for b.Loop() {
		jsonReference(b, bs[0])
	}
}
