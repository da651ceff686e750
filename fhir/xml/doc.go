// Package xml converts FHIR R4 resources between the JSON syntax Ember
// stores and the XML syntax (https://hl7.org/fhir/R4/xml.html): Marshal
// writes a resource's JSON as XML, Unmarshal reads XML into the JSON the
// engine takes. Element order, kinds and attributes come from tables
// generated from the R4 definitions, shared with fhir/validate.
package xml

//go:generate go run ../spec/gen -out= -xml-out .

// typeOrder is one type's elements in definition order (see orderTable).
type typeOrder struct {
	name     string
	elements string
}
