package patch

import "testing"

// Each case needs the element types (repeats, type, choice suffixes) the
// generated tables give: run with the JSON shape alone, every one would
// come out differently.
func TestFHIRPathPatchElementTypes(t *testing.T) {
	for _, tc := range []struct {
		name, doc, params, want string
	}{
		{name: "add to an absent repeating element of a backbone element makes a list",
			doc:    `{"resourceType":"Observation","component":[{"code":{"text":"c"}}]}`,
			params: params(op("add", "Observation.component[0]", name("interpretation"), value(`"valueCodeableConcept":{"text":"H"}`))),
			want:   `{"resourceType":"Observation","component":[{"code":{"text":"c"},"interpretation":[{"text":"H"}]}]}`},
		{name: "add value on Observation writes valueQuantity",
			doc:    `{"resourceType":"Observation"}`,
			params: params(op("add", "Observation", name("value"), value(`"valueQuantity":{"value":1,"unit":"kg"}`))),
			want:   `{"resourceType":"Observation","valueQuantity":{"value":1,"unit":"kg"}}`},
		{name: "add value on a backbone element writes its valueX",
			doc:    `{"resourceType":"Observation","component":[{"code":{"text":"c"}}]}`,
			params: params(op("add", "Observation.component[0]", name("value"), value(`"valueString":"s"`))),
			want:   `{"resourceType":"Observation","component":[{"code":{"text":"c"},"valueString":"s"}]}`},
		{name: "a contentReference element is typed like the element it names",
			doc: `{"resourceType":"Questionnaire","item":[{"linkId":"1","type":"group","item":[{"linkId":"1.1","type":"group"}]}]}`,
			params: params(op("add", "Questionnaire.item[0].item[0]", name("item"), value(`"part":[
				{"name":"linkId","valueString":"1.1.1"},
				{"name":"type","valueCode":"choice"},
				{"name":"code","part":[{"name":"code","valueCode":"x"}]},
				{"name":"answerOption","part":[{"name":"value","valueString":"yes"}]}]`))),
			want: `{"resourceType":"Questionnaire","item":[{"linkId":"1","type":"group","item":[{"linkId":"1.1","type":"group",
				"item":[{"linkId":"1.1.1","type":"choice","code":[{"code":"x"}],"answerOption":[{"valueString":"yes"}]}]}]}]}`},
		{name: "a nested resource is typed by its resourceType",
			doc:    `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient"}}]}`,
			params: params(op("add", "Bundle.entry[0].resource", name("identifier"), value(`"valueIdentifier":{"value":"x"}`))),
			want:   `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","identifier":[{"value":"x"}]}}]}`},
		{name: "a choice element whose name has capitals changes type",
			doc:    `{"resourceType":"Patient","multipleBirthBoolean":true}`,
			params: params(op("replace", "Patient.multipleBirth", value(`"valueInteger":2`))),
			want:   `{"resourceType":"Patient","multipleBirthInteger":2}`},
		{name: "ofType on a choice element whose name has capitals",
			doc:    `{"resourceType":"Patient","multipleBirthInteger":2}`,
			params: params(op("delete", "Patient.multipleBirth.ofType(integer)")),
			want:   `{"resourceType":"Patient"}`},
		{name: "ofType on a primitive element",
			doc:    `{"resourceType":"Patient","active":true,"birthDate":"2000"}`,
			params: params(op("delete", "Patient.active.ofType(boolean)"), op("delete", "Patient.birthDate.ofType(string)")),
			want:   `{"resourceType":"Patient","birthDate":"2000"}`},
		{name: "ofType on a primitive element, in the case of a JSON suffix",
			doc:    `{"resourceType":"Patient","birthDate":"2000"}`,
			params: params(op("delete", "Patient.birthDate.ofType(Date)")),
			want:   `{"resourceType":"Patient"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FHIRPath([]byte(tc.doc), []byte(tc.params))
			if err != nil {
				t.Fatal(err)
			}
			sameJSON(t, got, tc.want)
		})
	}
}
