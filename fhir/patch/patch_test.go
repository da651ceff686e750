package patch

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/emberfhir/ember/fhir"
)

// sameJSON compares two JSON texts by value (object member order aside).
func sameJSON(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("result is not JSON: %v: %s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want: %v", err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// httpStatus is the status the HTTP layer answers for the kinds these
// functions return.
func httpStatus(k fhir.Kind) int {
	return map[fhir.Kind]int{fhir.BadRequest: 400, fhir.Unprocessable: 422}[k]
}

// failsWith checks err is a *fhir.Error with the status whose diagnostics
// contain every fragment.
func failsWith(t *testing.T, err error, status int, fragments ...string) {
	t.Helper()
	var fe *fhir.Error
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T), want a *fhir.Error %d", err, err, status)
	}
	if httpStatus(fe.Kind) != status {
		t.Fatalf("status %d, want %d: %v", httpStatus(fe.Kind), status, err)
	}
	for _, f := range fragments {
		if !strings.Contains(fe.Error(), f) {
			t.Fatalf("diagnostics %q lack %q", fe.Error(), f)
		}
	}
}

// The examples of RFC 6902 appendix A, and more. status 0 means success.
func TestJSONPatch(t *testing.T) {
	for _, tc := range []struct {
		name, doc, patch, want string
		status                 int
		fragments              []string
	}{
		{name: "A.1 add object member", doc: `{"foo":"bar"}`, patch: `[{"op":"add","path":"/baz","value":"qux"}]`,
			want: `{"baz":"qux","foo":"bar"}`},
		{name: "A.2 add array element", doc: `{"foo":["bar","baz"]}`, patch: `[{"op":"add","path":"/foo/1","value":"qux"}]`,
			want: `{"foo":["bar","qux","baz"]}`},
		{name: "A.3 remove object member", doc: `{"baz":"qux","foo":"bar"}`, patch: `[{"op":"remove","path":"/baz"}]`,
			want: `{"foo":"bar"}`},
		{name: "A.4 remove array element", doc: `{"foo":["bar","qux","baz"]}`, patch: `[{"op":"remove","path":"/foo/1"}]`,
			want: `{"foo":["bar","baz"]}`},
		{name: "A.5 replace", doc: `{"baz":"qux","foo":"bar"}`, patch: `[{"op":"replace","path":"/baz","value":"boo"}]`,
			want: `{"baz":"boo","foo":"bar"}`},
		{name: "A.6 move value", doc: `{"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}}`,
			patch: `[{"op":"move","from":"/foo/waldo","path":"/qux/thud"}]`,
			want:  `{"foo":{"bar":"baz"},"qux":{"corge":"grault","thud":"fred"}}`},
		{name: "A.7 move array element", doc: `{"foo":["all","grass","cows","eat"]}`,
			patch: `[{"op":"move","from":"/foo/1","path":"/foo/3"}]`, want: `{"foo":["all","cows","eat","grass"]}`},
		{name: "A.8 test success", doc: `{"baz":"qux","foo":["a",2,"c"]}`,
			patch: `[{"op":"test","path":"/baz","value":"qux"},{"op":"test","path":"/foo/1","value":2}]`,
			want:  `{"baz":"qux","foo":["a",2,"c"]}`},
		{name: "A.9 test failure", doc: `{"baz":"qux"}`, patch: `[{"op":"test","path":"/baz","value":"bar"}]`,
			status: 422, fragments: []string{"operation 0", "test failed"}},
		{name: "A.10 add nested object", doc: `{"foo":"bar"}`, patch: `[{"op":"add","path":"/child","value":{"grandchild":{}}}]`,
			want: `{"foo":"bar","child":{"grandchild":{}}}`},
		{name: "A.11 unrecognised members ignored", doc: `{"foo":"bar"}`,
			patch: `[{"op":"add","path":"/baz","value":"qux","xyz":123}]`, want: `{"foo":"bar","baz":"qux"}`},
		{name: "A.12 add to a nonexistent target", doc: `{"foo":"bar"}`, patch: `[{"op":"add","path":"/baz/bat","value":"qux"}]`,
			status: 422, fragments: []string{"operation 0 (add \"/baz/bat\")", `"/baz": no such member`}},
		{name: "A.13 duplicate op member", doc: `{"foo":"bar"}`, patch: `[{"op":"add","path":"/baz","value":"qux","op":"remove"}]`,
			status: 400, fragments: []string{"duplicate key"}},
		{name: "A.14 ~ escape ordering", doc: `{"/":9,"~1":10}`, patch: `[{"op":"test","path":"/~01","value":10}]`,
			want: `{"/":9,"~1":10}`},
		{name: "A.15 strings are not numbers", doc: `{"/":9,"~1":10}`, patch: `[{"op":"test","path":"/~01","value":"10"}]`,
			status: 422, fragments: []string{"test failed"}},
		{name: "A.16 add array value", doc: `{"foo":["bar"]}`, patch: `[{"op":"add","path":"/foo/-","value":["abc","def"]}]`,
			want: `{"foo":["bar",["abc","def"]]}`},

		{name: "~1 addresses a slash", doc: `{"a/b":1}`, patch: `[{"op":"replace","path":"/a~1b","value":2}]`, want: `{"a/b":2}`},
		{name: "replace the root", doc: `{"a":1}`, patch: `[{"op":"replace","path":"","value":{"b":2}}]`, want: `{"b":2}`},
		{name: "numbers compare by value", doc: `{"n":1.0}`, patch: `[{"op":"test","path":"/n","value":1e0}]`, want: `{"n":1.0}`},
		{name: "objects compare regardless of order", doc: `{"o":{"a":1,"b":[1,{"c":null}]}}`,
			patch: `[{"op":"test","path":"/o","value":{"b":[1,{"c":null}],"a":1}}]`, want: `{"o":{"a":1,"b":[1,{"c":null}]}}`},
		{name: "copy is deep", doc: `{"a":{"x":1}}`,
			patch: `[{"op":"copy","from":"/a","path":"/b"},{"op":"replace","path":"/b/x","value":2}]`, want: `{"a":{"x":1},"b":{"x":2}}`},
		{name: "move to itself", doc: `{"a":[1,2]}`, patch: `[{"op":"move","from":"/a/0","path":"/a/0"}]`, want: `{"a":[1,2]}`},
		{name: "append with -", doc: `{"a":[]}`, patch: `[{"op":"add","path":"/a/-","value":1},{"op":"add","path":"/a/-","value":2}]`,
			want: `{"a":[1,2]}`},
		{name: "add at the end index", doc: `{"a":[1]}`, patch: `[{"op":"add","path":"/a/1","value":2}]`, want: `{"a":[1,2]}`},
		{name: "add replaces a member", doc: `{"a":1}`, patch: `[{"op":"add","path":"/a","value":2}]`, want: `{"a":2}`},
		{name: "operations apply in order, all or nothing", doc: `{"a":1}`,
			patch:  `[{"op":"remove","path":"/a"},{"op":"remove","path":"/a"}]`,
			status: 422, fragments: []string{"operation 1 (remove"}},

		{name: "index out of bounds", doc: `{"a":[1]}`, patch: `[{"op":"add","path":"/a/2","value":2}]`,
			status: 422, fragments: []string{"out of bounds"}},
		{name: "leading zero index", doc: `{"a":[1,2]}`, patch: `[{"op":"remove","path":"/a/01"}]`,
			status: 422, fragments: []string{"not an array index"}},
		{name: "- outside add", doc: `{"a":[1]}`, patch: `[{"op":"remove","path":"/a/-"}]`, status: 422},
		{name: "replace a missing member", doc: `{"a":1}`, patch: `[{"op":"replace","path":"/b","value":2}]`,
			status: 422, fragments: []string{`"/b": no such member`}},
		{name: "child of a primitive", doc: `{"a":1}`, patch: `[{"op":"add","path":"/a/b","value":2}]`, status: 422},
		{name: "remove the root", doc: `{"a":1}`, patch: `[{"op":"remove","path":""}]`, status: 422,
			fragments: []string{"whole document"}},
		{name: "move into a child", doc: `{"a":{"b":1}}`, patch: `[{"op":"move","from":"/a","path":"/a/b/c"}]`, status: 400,
			fragments: []string{"operation 0", "children"}},
		{name: "pointer without slash", doc: `{"a":1}`, patch: `[{"op":"remove","path":"a"}]`, status: 400},
		{name: "bad escape", doc: `{"a":1}`, patch: `[{"op":"remove","path":"/~2"}]`, status: 400},
		{name: "missing value", doc: `{"a":1}`, patch: `[{"op":"add","path":"/b"}]`, status: 400, fragments: []string{`needs a "value"`}},
		{name: "null is a value", doc: `{"a":1}`, patch: `[{"op":"add","path":"/b","value":null}]`, want: `{"a":1,"b":null}`},
		{name: "missing from", doc: `{"a":1}`, patch: `[{"op":"copy","path":"/b"}]`, status: 400},
		{name: "unknown op", doc: `{"a":1}`, patch: `[{"op":"frobnicate","path":"/a"}]`, status: 400, fragments: []string{"unknown op"}},
		{name: "op not a string", doc: `{"a":1}`, patch: `[{"op":1,"path":"/a"}]`, status: 400},
		{name: "not an array", doc: `{"a":1}`, patch: `{"op":"remove","path":"/a"}`, status: 400},
		{name: "malformed", doc: `{"a":1}`, patch: `[{"op":`, status: 400},
		{name: "trailing data", doc: `{"a":1}`, patch: `[] []`, status: 400},
		{name: "empty patch", doc: `{"a":1}`, patch: `[]`, want: `{"a":1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := JSON([]byte(tc.doc), []byte(tc.patch))
			if tc.status != 0 {
				failsWith(t, err, tc.status, tc.fragments...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			sameJSON(t, got, tc.want)
		})
	}
}

// The output keeps member order and number text, and does not escape HTML.
func TestJSONPatchKeepsText(t *testing.T) {
	doc := `{"resourceType":"Observation","valueQuantity":{"value":1.50,"unit":"mg"},"text":{"div":"<div>&</div>"},"b":1E+2}`
	got, err := JSON([]byte(doc), []byte(`[{"op":"add","path":"/a","value":0.10},{"op":"replace","path":"/resourceType","value":"Observation"}]`))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"resourceType":"Observation","valueQuantity":{"value":1.50,"unit":"mg"},"text":{"div":"<div>&</div>"},"b":1E+2,"a":0.10}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestJSONPatchBadDocument(t *testing.T) {
	_, err := JSON([]byte(`{`), []byte(`[]`))
	var fe *fhir.Error
	if err == nil || errors.As(err, &fe) {
		t.Fatalf("a broken document is the caller's fault, not a client error: %v", err)
	}
}

func TestDeepNestingIsRejected(t *testing.T) {
	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	_, err := JSON([]byte(`{}`), []byte(deep))
	failsWith(t, err, 400, "too deep")
}

// FuzzJSONPatch: any document and patch either apply, giving JSON, or
// fail; nothing panics, and client errors are 400 or 422.
func FuzzJSONPatch(f *testing.F) {
	for _, seed := range [][2]string{
		{`{"foo":"bar"}`, `[{"op":"add","path":"/baz","value":"qux"}]`},
		{`{"foo":["bar","baz"]}`, `[{"op":"add","path":"/foo/1","value":"qux"},{"op":"remove","path":"/foo/0"}]`},
		{`{"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}}`, `[{"op":"move","from":"/foo/waldo","path":"/qux/thud"}]`},
		{`{"foo":["all","grass","cows","eat"]}`, `[{"op":"move","from":"/foo/1","path":"/foo/3"}]`},
		{`{"/":9,"~1":10}`, `[{"op":"test","path":"/~01","value":10}]`},
		{`{"a":{"x":1}}`, `[{"op":"copy","from":"/a","path":"/b"},{"op":"replace","path":"","value":[1e400]}]`},
		{`[1,2,3]`, `[{"op":"remove","path":"/-"},{"op":"test","path":"/0","value":1.0}]`},
		{`{}`, `[{"op":"remove","path":""}]`},
	} {
		f.Add([]byte(seed[0]), []byte(seed[1]))
	}
	f.Fuzz(func(t *testing.T, doc, patch []byte) {
		out, err := JSON(doc, patch)
		if err != nil {
			var fe *fhir.Error
			if errors.As(err, &fe) && fe.Kind != fhir.BadRequest && fe.Kind != fhir.Unprocessable {
				t.Fatalf("kind %v: %v", fe.Kind, err)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("output is not JSON: %q", out)
		}
	})
}

// Each copy of the root doubles the document: the copies are bounded.
func TestJSONPatchCopyIsBounded(t *testing.T) {
	ops := []string{`{"op":"add","path":"/a","value":[1,2,3,4,5,6,7,8]}`}
	for range 40 {
		ops = append(ops, `{"op":"copy","from":"","path":"/a/-"}`)
	}
	_, err := JSON([]byte(`{}`), []byte("["+strings.Join(ops, ",")+"]"))
	failsWith(t, err, 422, "copy", "more than")
}
