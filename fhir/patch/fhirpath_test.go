package patch

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/emberfhir/ember/fhir"
)

// params builds a FHIRPath Patch Parameters from operations.
func params(ops ...string) string {
	return `{"resourceType":"Parameters","parameter":[` + strings.Join(ops, ",") + `]}`
}

// op builds one operation parameter; parts are JSON part objects.
func op(typ, path string, parts ...string) string {
	all := append([]string{`{"name":"type","valueCode":"` + typ + `"}`, `{"name":"path","valueString":"` + path + `"}`}, parts...)
	return `{"name":"operation","part":[` + strings.Join(all, ",") + `]}`
}

func name(n string) string { return `{"name":"name","valueString":"` + n + `"}` }

// value is a value part: typeAndValue is `"valueX":...` or `"part":[...]`.
func value(typeAndValue string) string { return `{"name":"value",` + typeAndValue + `}` }

func index(name string, i string) string { return `{"name":"` + name + `","valueInteger":` + i + `}` }

const ids = `{"resourceType":"Patient","identifier":[{"system":"http://a","value":"1"},{"system":"http://b","value":"2"},{"system":"http://c","value":"3"}]}`

// The cases follow the test cases of the FHIRPath Patch page (add, insert,
// delete, replace and move on primitives and lists), plus complex values
// built from parts, choice elements and primitive extensions.
func TestFHIRPathPatch(t *testing.T) {
	for _, tc := range []struct {
		name, doc, params, want string
		status                  int
		fragments               []string
	}{
		// add
		{name: "add a primitive", doc: `{"resourceType":"Patient"}`,
			params: params(op("add", "Patient", name("birthDate"), value(`"valueDate":"1920-01-01"`))),
			want:   `{"resourceType":"Patient","birthDate":"1920-01-01"}`},
		{name: "add a complex value", doc: `{"resourceType":"Patient"}`,
			params: params(op("add", "Patient", name("maritalStatus"), value(`"valueCodeableConcept":{"text":"married"}`))),
			want:   `{"resourceType":"Patient","maritalStatus":{"text":"married"}}`},
		{name: "add to an absent list makes a list", doc: `{"resourceType":"Patient"}`,
			params: params(op("add", "Patient", name("identifier"), value(`"valueIdentifier":{"value":"x"}`))),
			want:   `{"resourceType":"Patient","identifier":[{"value":"x"}]}`},
		{name: "add appends to a list", doc: ids,
			params: params(op("add", "Patient", name("identifier"), value(`"valueIdentifier":{"system":"http://d","value":"4"}`))),
			want:   `{"resourceType":"Patient","identifier":[{"system":"http://a","value":"1"},{"system":"http://b","value":"2"},{"system":"http://c","value":"3"},{"system":"http://d","value":"4"}]}`},
		{name: "add a primitive to a nested list", doc: `{"resourceType":"Patient","name":[{"family":"F","given":["A"]}]}`,
			params: params(op("add", "Patient.name[0]", name("given"), value(`"valueString":"B"`))),
			want:   `{"resourceType":"Patient","name":[{"family":"F","given":["A","B"]}]}`},
		{name: "add a value built from parts", doc: `{"resourceType":"Patient"}`,
			params: params(op("add", "Patient", name("contact"), value(`"part":[
				{"name":"name","part":[{"name":"family","valueString":"Smith"},{"name":"given","valueString":"Jo"},{"name":"given","valueString":"Ann"}]},
				{"name":"gender","valueCode":"female"},
				{"name":"telecom","part":[{"name":"system","valueCode":"phone"},{"name":"value","valueString":"555"}]}]`))),
			want: `{"resourceType":"Patient","contact":[{"name":{"family":"Smith","given":["Jo","Ann"]},"gender":"female","telecom":[{"system":"phone","value":"555"}]}]}`},
		{name: "add an extension from parts (choice by value[x])", doc: `{"resourceType":"Patient"}`,
			params: params(op("add", "Patient", name("extension"), value(`"part":[{"name":"url","valueUri":"http://x"},{"name":"value","valueString":"y"}]`))),
			want:   `{"resourceType":"Patient","extension":[{"url":"http://x","valueString":"y"}]}`},
		{name: "add a choice element", doc: `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`,
			params: params(op("add", "Observation", name("value"), value(`"valueQuantity":{"value":1.50,"unit":"mg"}`))),
			want:   `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.50,"unit":"mg"}}`},
		{name: "add to a present single element", doc: `{"resourceType":"Patient","birthDate":"1920"}`,
			params: params(op("add", "Patient", name("birthDate"), value(`"valueDate":"1921"`))),
			status: 422, fragments: []string{"operation 0 (add \"Patient\")", "use replace"}},
		{name: "add to a present choice", doc: `{"resourceType":"Observation","valueString":"a"}`,
			params: params(op("add", "Observation", name("value"), value(`"valueQuantity":{"value":1}`))),
			status: 422, fragments: []string{"use replace"}},
		{name: "add a choice without a type", doc: `{"resourceType":"Observation"}`,
			params: params(op("add", "Observation", name("value"), value(`"part":[{"name":"value","valueDecimal":1}]`))),
			status: 422, fragments: []string{"choice element"}},
		{name: "add where the path matches nothing", doc: `{"resourceType":"Patient"}`,
			params: params(op("add", "Patient.name", name("given"), value(`"valueString":"A"`))),
			status: 422, fragments: []string{"matches no element"}},

		// insert
		{name: "insert at 0", doc: ids,
			params: params(op("insert", "Patient.identifier", index("index", "0"), value(`"valueIdentifier":{"value":"0"}`))),
			want:   `{"resourceType":"Patient","identifier":[{"value":"0"},{"system":"http://a","value":"1"},{"system":"http://b","value":"2"},{"system":"http://c","value":"3"}]}`},
		{name: "insert at 1", doc: ids,
			params: params(op("insert", "Patient.identifier", index("index", "1"), value(`"valueIdentifier":{"value":"0"}`))),
			want:   `{"resourceType":"Patient","identifier":[{"system":"http://a","value":"1"},{"value":"0"},{"system":"http://b","value":"2"},{"system":"http://c","value":"3"}]}`},
		{name: "insert at the end", doc: ids,
			params: params(op("insert", "Patient.identifier", index("index", "3"), value(`"valueIdentifier":{"value":"0"}`))),
			want:   `{"resourceType":"Patient","identifier":[{"system":"http://a","value":"1"},{"system":"http://b","value":"2"},{"system":"http://c","value":"3"},{"value":"0"}]}`},
		{name: "insert into an absent list", doc: `{"resourceType":"Patient"}`,
			params: params(op("insert", "Patient.identifier", index("index", "0"), value(`"valueIdentifier":{"value":"0"}`))),
			want:   `{"resourceType":"Patient","identifier":[{"value":"0"}]}`},
		{name: "insert past the end", doc: ids,
			params: params(op("insert", "Patient.identifier", index("index", "4"), value(`"valueIdentifier":{"value":"0"}`))),
			status: 422, fragments: []string{"out of bounds"}},
		{name: "insert into a single element", doc: `{"resourceType":"Patient","birthDate":"1920"}`,
			params: params(op("insert", "Patient.birthDate", index("index", "0"), value(`"valueDate":"1921"`))),
			status: 422, fragments: []string{"not a list"}},
		{name: "insert keeps a primitive list's extensions aligned", doc: `{"resourceType":"Patient","name":[{"given":["A","B"],"_given":[null,{"extension":[{"url":"http://x","valueString":"b"}]}]}]}`,
			params: params(op("insert", "Patient.name[0].given", index("index", "0"), value(`"valueString":"Z"`))),
			want:   `{"resourceType":"Patient","name":[{"given":["Z","A","B"],"_given":[null,null,{"extension":[{"url":"http://x","valueString":"b"}]}]}]}`},

		// delete
		{name: "delete a primitive", doc: `{"resourceType":"Patient","birthDate":"1920","_birthDate":{"id":"x"}}`,
			params: params(op("delete", "Patient.birthDate")), want: `{"resourceType":"Patient"}`},
		{name: "delete nothing", doc: `{"resourceType":"Patient"}`,
			params: params(op("delete", "Patient.birthDate")), want: `{"resourceType":"Patient"}`},
		{name: "delete a list item by index", doc: ids, params: params(op("delete", "Patient.identifier[0]")),
			want: `{"resourceType":"Patient","identifier":[{"system":"http://b","value":"2"},{"system":"http://c","value":"3"}]}`},
		{name: "delete a list item by where", doc: ids, params: params(op("delete", "Patient.identifier.where(system='http://b')")),
			want: `{"resourceType":"Patient","identifier":[{"system":"http://a","value":"1"},{"system":"http://c","value":"3"}]}`},
		{name: "delete the last item removes the list", doc: `{"resourceType":"Patient","identifier":[{"value":"1"}]}`,
			params: params(op("delete", "Patient.identifier")), want: `{"resourceType":"Patient"}`},
		{name: "delete the only member of an element prunes it", doc: `{"resourceType":"Patient","name":[{"family":"F"}],"active":true}`,
			params: params(op("delete", "Patient.name.family")), want: `{"resourceType":"Patient","active":true}`},
		{name: "delete a primitive list item keeps extensions aligned", doc: `{"resourceType":"Patient","name":[{"given":["A","B"],"_given":[{"id":"a"},null]}]}`,
			params: params(op("delete", "Patient.name.given.where($this = 'A')")),
			want:   `{"resourceType":"Patient","name":[{"given":["B"]}]}`},
		{name: "delete several", doc: ids, params: params(op("delete", "Patient.identifier")),
			status: 422, fragments: []string{"matches 3 elements"}},
		{name: "delete with two conditions", doc: `{"resourceType":"Patient","telecom":[{"system":"phone","use":"work","value":"1"},{"system":"phone","use":"home","value":"2"},{"system":"email","use":"home","value":"3"}]}`,
			params: params(op("delete", "Patient.telecom.where(system='phone' and use='home')")),
			want:   `{"resourceType":"Patient","telecom":[{"system":"phone","use":"work","value":"1"},{"system":"email","use":"home","value":"3"}]}`},
		{name: "delete a choice element", doc: `{"resourceType":"Observation","valueString":"a","status":"final"}`,
			params: params(op("delete", "Observation.value")), want: `{"resourceType":"Observation","status":"final"}`},

		// replace
		{name: "replace a primitive", doc: `{"resourceType":"Patient","birthDate":"1920","_birthDate":{"id":"x"}}`,
			params: params(op("replace", "Patient.birthDate", value(`"valueDate":"1930-01-01"`))),
			want:   `{"resourceType":"Patient","birthDate":"1930-01-01"}`},
		{name: "replace a complex element", doc: `{"resourceType":"Patient","maritalStatus":{"text":"single"}}`,
			params: params(op("replace", "Patient.maritalStatus", value(`"valueCodeableConcept":{"text":"married"}`))),
			want:   `{"resourceType":"Patient","maritalStatus":{"text":"married"}}`},
		{name: "replace a list item", doc: ids,
			params: params(op("replace", "Patient.identifier[1]", value(`"valueIdentifier":{"value":"x"}`))),
			want:   `{"resourceType":"Patient","identifier":[{"system":"http://a","value":"1"},{"value":"x"},{"system":"http://c","value":"3"}]}`},
		{name: "replace inside a where", doc: ids,
			params: params(op("replace", "Patient.identifier.where(system = 'http://c').value", value(`"valueString":"33"`))),
			want:   `{"resourceType":"Patient","identifier":[{"system":"http://a","value":"1"},{"system":"http://b","value":"2"},{"system":"http://c","value":"33"}]}`},
		{name: "replace with parts", doc: `{"resourceType":"Patient","name":[{"family":"F"}]}`,
			params: params(op("replace", "Patient.name[0]", value(`"part":[{"name":"family","valueString":"G"},{"name":"given","valueString":"H"}]`))),
			want:   `{"resourceType":"Patient","name":[{"family":"G","given":["H"]}]}`},
		{name: "replace a choice with another type", doc: `{"resourceType":"Patient","deceasedBoolean":true,"active":true}`,
			params: params(op("replace", "Patient.deceased", value(`"valueDateTime":"2020-01-01"`))),
			want:   `{"resourceType":"Patient","deceasedDateTime":"2020-01-01","active":true}`},
		{name: "replace ofType", doc: `{"resourceType":"Observation","valueQuantity":{"value":1}}`,
			params: params(op("replace", "Observation.value.ofType(Quantity).value", value(`"valueDecimal":2.0`))),
			want:   `{"resourceType":"Observation","valueQuantity":{"value":2.0}}`},
		{name: "replace something missing", doc: `{"resourceType":"Patient"}`,
			params: params(op("replace", "Patient.birthDate", value(`"valueDate":"1930"`))),
			status: 422, fragments: []string{"matches no element"}},

		// move
		{name: "move 0 to 1", doc: ids, params: params(op("move", "Patient.identifier", index("source", "0"), index("destination", "1"))),
			want: `{"resourceType":"Patient","identifier":[{"system":"http://b","value":"2"},{"system":"http://a","value":"1"},{"system":"http://c","value":"3"}]}`},
		{name: "move 0 to 2", doc: ids, params: params(op("move", "Patient.identifier", index("source", "0"), index("destination", "2"))),
			want: `{"resourceType":"Patient","identifier":[{"system":"http://b","value":"2"},{"system":"http://c","value":"3"},{"system":"http://a","value":"1"}]}`},
		{name: "move 2 to 0", doc: ids, params: params(op("move", "Patient.identifier", index("source", "2"), index("destination", "0"))),
			want: `{"resourceType":"Patient","identifier":[{"system":"http://c","value":"3"},{"system":"http://a","value":"1"},{"system":"http://b","value":"2"}]}`},
		{name: "move out of bounds", doc: ids, params: params(op("move", "Patient.identifier", index("source", "3"), index("destination", "0"))),
			status: 422, fragments: []string{"out of bounds"}},

		// several operations, in order
		{name: "operations apply in order", doc: `{"resourceType":"Patient"}`,
			params: params(
				op("add", "Patient", name("name"), value(`"valueHumanName":{"family":"F"}`)),
				op("add", "Patient.name", name("given"), value(`"valueString":"A"`)),
				op("replace", "Patient.name.family", value(`"valueString":"G"`))),
			want: `{"resourceType":"Patient","name":[{"family":"G","given":["A"]}]}`},

		// paths
		{name: "relative path", doc: `{"resourceType":"Patient","active":true}`, params: params(op("delete", "active")),
			want: `{"resourceType":"Patient"}`},
		{name: "first() and or", doc: ids, params: params(op("delete", "Patient.identifier.where(system='http://b' or system='http://c').first()")),
			want: `{"resourceType":"Patient","identifier":[{"system":"http://a","value":"1"},{"system":"http://c","value":"3"}]}`},
		{name: "not() and exists()", doc: `{"resourceType":"Patient","identifier":[{"value":"1","period":{"end":"2000"}},{"value":"2"}]}`,
			params: params(op("delete", "Patient.identifier.where(period.end.exists().not())")),
			want:   `{"resourceType":"Patient","identifier":[{"value":"1","period":{"end":"2000"}}]}`},
		{name: "number and boolean literals", doc: `{"resourceType":"Patient","contact":[{"gender":"male"}],"multipleBirthInteger":2}`,
			params: params(op("delete", "Patient.multipleBirth.where($this = 2.0)")),
			want:   `{"resourceType":"Patient","contact":[{"gender":"male"}]}`},
		{name: "unsupported function", doc: ids, params: params(op("delete", "Patient.identifier.select(value)")),
			status: 422, fragments: []string{"select() is not supported"}},
		{name: "another resource type", doc: ids, params: params(op("delete", "Observation.status")),
			status: 422, fragments: []string{"but the resource is a Patient"}},
		{name: "unterminated string", doc: ids, params: params(op("delete", "Patient.identifier.where(system='x)")),
			status: 422, fragments: []string{"unterminated"}},

		// malformed Parameters
		{name: "not Parameters", doc: ids, params: `{"resourceType":"Patient"}`, status: 400, fragments: []string{"Parameters"}},
		{name: "unknown type", doc: ids, params: params(op("upsert", "Patient")), status: 400, fragments: []string{"unknown type"}},
		{name: "missing name", doc: ids, params: params(op("add", "Patient", value(`"valueDate":"1920"`))), status: 400,
			fragments: []string{`needs the part "name"`}},
		{name: "missing path", doc: ids, params: params(`{"name":"operation","part":[{"name":"type","valueCode":"delete"}]}`), status: 400},
		{name: "wrong parameter", doc: ids, params: params(`{"name":"op","part":[]}`), status: 400},
		{name: "negative index", doc: ids, params: params(op("insert", "Patient.identifier", index("index", "-1"), value(`"valueIdentifier":{}`))), status: 400},
		{name: "value without content", doc: ids, params: params(op("replace", "Patient.identifier[0]", `{"name":"value"}`)), status: 422,
			fragments: []string{"no value[x]"}},
		{name: "no operations", doc: ids, params: `{"resourceType":"Parameters"}`, want: ids},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FHIRPath([]byte(tc.doc), []byte(tc.params))
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

// A contained resource is typed by its own resourceType.
func TestFHIRPathPatchContained(t *testing.T) {
	doc := `{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o","name":"Old"}]}`
	got, err := FHIRPath([]byte(doc), []byte(params(
		op("add", "Patient.contained.where(id='o')", name("alias"), value(`"valueString":"A"`)),
		op("replace", "Patient.contained.ofType(Organization).name", value(`"valueString":"New"`)))))
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, got, `{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o","name":"New","alias":["A"]}]}`)
}

// Member order survives, new members go last.
func TestFHIRPathPatchKeepsOrder(t *testing.T) {
	doc := `{"resourceType":"Patient","id":"p","active":true,"gender":"male"}`
	got, err := FHIRPath([]byte(doc), []byte(params(op("replace", "Patient.active", value(`"valueBoolean":false`)),
		op("add", "Patient", name("birthDate"), value(`"valueDate":"2000"`)))))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"resourceType":"Patient","id":"p","active":false,"gender":"male","birthDate":"2000"}`; string(got) != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

// FuzzFHIRPathPatch drives arbitrary paths (and documents) through every
// operation type: nothing panics, client errors are 400 or 422, and a
// result is JSON.
func FuzzFHIRPathPatch(f *testing.F) {
	for _, seed := range []string{
		"Patient.name[0].given", "Patient.identifier.where(system='http://b')", "Patient.telecom.where(system='phone' and use='home')",
		"Patient.name.given.where($this = 'A').first()", "Patient.identifier.where(period.end.exists().not() or value != 1.5)",
		"Patient.contained.ofType(Organization).name", "Observation.value.ofType(Quantity)", "Patient.`name`[1]", "Patient.where(",
	} {
		f.Add([]byte(ids), seed, uint8(0))
	}
	f.Add([]byte(`{"resourceType":"Patient","name":[{"given":["A","B"],"_given":[null,{"id":"b"}]}]}`), "Patient.name.given", uint8(3))
	kinds := []string{
		op("add", "%s", name("given"), value(`"valueString":"x"`)),
		op("insert", "%s", index("index", "1"), value(`"part":[{"name":"value","valueString":"v"}]`)),
		op("delete", "%s"),
		op("replace", "%s", value(`"valueString":"y"`)),
		op("move", "%s", index("source", "1"), index("destination", "0")),
	}
	f.Fuzz(func(t *testing.T, doc []byte, path string, kind uint8) {
		quoted, _ := json.Marshal(path)
		p := strings.Replace(kinds[int(kind)%len(kinds)], `"%s"`, string(quoted), 1)
		out, err := FHIRPath(doc, []byte(params(p)))
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
