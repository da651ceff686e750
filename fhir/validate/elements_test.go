package validate

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	apb "github.com/google/fhir/go/proto/google/fhir/proto/annotations_go_proto"
	r4pb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// googleTypeName is the R4 type a google/fhir message stands for: the last
// segment of its StructureDefinition URL (a bound code's profile base is
// code), "Resource" for a nested resource, and "" for a backbone element,
// which google/fhir nests without a URL.
func googleTypeName(d protoreflect.MessageDescriptor) string {
	url := proto.GetExtension(d.Options(), apb.E_FhirStructureDefinitionUrl).(string)
	if url == "" {
		if bases := proto.GetExtension(d.Options(), apb.E_FhirProfileBase).([]string); len(bases) > 0 {
			url = bases[0]
		}
	}
	switch {
	case url != "":
		return url[strings.LastIndexByte(url, '/')+1:]
	case d.FullName() == "google.protobuf.Any" || d.Name() == "ContainedResource":
		return "Resource"
	}
	return ""
}

// googleElement is one element as FHIRPath Patch read it from google/fhir's
// descriptors before the generated tables replaced them.
type googleElement struct {
	repeats bool
	typ     protoreflect.MessageDescriptor            // nil for a choice
	choices map[string]protoreflect.MessageDescriptor // type suffix -> type
}

func googleElements(d protoreflect.MessageDescriptor) map[string]googleElement {
	out := map[string]googleElement{}
	fs := d.Fields()
	for i := 0; i < fs.Len(); i++ {
		fd := fs.Get(i)
		if fd.Message() == nil {
			continue // google/fhir's own members (a code's enum value)
		}
		e := googleElement{repeats: fd.IsList(), typ: fd.Message()}
		if proto.HasExtension(fd.Message().Options(), apb.E_IsChoiceType) {
			e.typ, e.choices = nil, map[string]protoreflect.MessageDescriptor{}
			cs := fd.Message().Fields()
			for j := 0; j < cs.Len(); j++ {
				c := cs.Get(j)
				e.choices[strings.ToUpper(c.JSONName()[:1])+c.JSONName()[1:]] = c.Message()
			}
		}
		out[fd.JSONName()] = e
	}
	return out
}

// elementDiffs walks every element reachable from every R4 resource type,
// in the exported lookup and in google/fhir's descriptors side by side.
// Each complex type or backbone element of ours must pair with one message
// only, which checks that contentReference elements (Questionnaire.item.item)
// resolve to the element they name.
func elementDiffs() []string {
	var diffs []string
	paired := map[Type]protoreflect.FullName{}
	var walk func(t Type, d protoreflect.MessageDescriptor)
	sameType := func(where string, ours Type, d protoreflect.MessageDescriptor) {
		switch g := googleTypeName(d); {
		case g == "" && ours.k == kComplex && strings.Contains(ours.Name(), "."):
		case g == ours.Name():
		default:
			diffs = append(diffs, fmt.Sprintf("%s: type google=%s ours=%s", where, d.FullName(), ours.Name()))
			return
		}
		if ours.k == kComplex {
			walk(ours, d)
		}
	}
	walk = func(t Type, d protoreflect.MessageDescriptor) {
		if prev, ok := paired[t]; ok {
			if prev != d.FullName() {
				diffs = append(diffs, fmt.Sprintf("%s: google has %s and %s", t.Name(), prev, d.FullName()))
			}
			return
		}
		paired[t] = d.FullName()
		google := googleElements(d)
		ours := map[string]Element{}
		for _, e := range t.Elements() {
			if _, dup := ours[e.Name]; dup {
				diffs = append(diffs, t.Name()+"."+e.Name+": listed twice")
			}
			ours[e.Name] = e
		}
		for name := range google {
			if _, ok := ours[name]; !ok {
				diffs = append(diffs, t.Name()+"."+name+": only in google")
			}
		}
		for name, e := range ours {
			where := t.Name() + "." + name
			g, ok := google[name]
			switch {
			case !ok:
				diffs = append(diffs, where+": only in ours")
				continue
			case g.repeats != e.Repeats:
				diffs = append(diffs, fmt.Sprintf("%s: repeats google=%v ours=%v", where, g.repeats, e.Repeats))
			case (g.choices != nil) != (e.Choices != nil):
				diffs = append(diffs, fmt.Sprintf("%s: choice google=%v ours=%v", where, g.choices != nil, e.Choices != nil))
				continue
			}
			if e.Choices == nil {
				sameType(where, e.Type, g.typ)
				continue
			}
			seen := map[string]bool{}
			for _, c := range e.Choices {
				seen[c.Suffix] = true
				gt, ok := g.choices[c.Suffix]
				if !ok {
					diffs = append(diffs, where+c.Suffix+": only in ours")
					continue
				}
				sameType(where+c.Suffix, c.Type, gt)
			}
			for s := range g.choices {
				if !seen[s] {
					diffs = append(diffs, where+s+": only in google")
				}
			}
		}
	}
	cr := (&r4pb.ContainedResource{}).ProtoReflect().Descriptor().Fields()
	for i := 0; i < cr.Len(); i++ {
		d := cr.Get(i).Message()
		t, ok := ResourceType(string(d.Name()))
		if !ok {
			diffs = append(diffs, string(d.Name())+": resource only in google")
			continue
		}
		walk(t, d)
	}
	if n := len(index().byName); n != cr.Len() {
		diffs = append(diffs, fmt.Sprintf("%d resource types, google has %d", n, cr.Len()))
	}
	for ti := range typeTable {
		if _, ok := paired[Type{k: kComplex, ti: uint16(ti)}]; !ok {
			diffs = append(diffs, typeTable[ti].name+": not reached")
		}
	}
	sort.Strings(diffs)
	return diffs
}

// googleDepartures are the differences from R4 that google/fhir's
// descriptors have, so the lookup rightly differs there.
func googleDeparture(d string) bool {
	switch {
	case d == "Extension.valueMeta: only in ours": // Extension.value[x] allows Meta in R4
	case d == "Reference.fragment: only in google": // a normalised "#id" reference
	case strings.HasPrefix(d, "Reference.") && strings.HasSuffix(d, "Id: only in google"): // normalised "Patient/123"
	default:
		return false
	}
	return true
}

// TestElementsMatchGoogle checks the element lookup that FHIRPath Patch
// uses against google/fhir's R4 descriptors, which it used before.
func TestElementsMatchGoogle(t *testing.T) {
	for _, d := range elementDiffs() {
		if !googleDeparture(d) {
			t.Error(d)
		}
	}
}

// TestElements pins what FHIRPath Patch relies on, on a few elements.
func TestElements(t *testing.T) {
	find := func(typ, path string) Element {
		t.Helper()
		cur, ok := ResourceType(typ)
		if !ok {
			t.Fatalf("no resource type %s", typ)
		}
		var el Element
		for _, name := range strings.Split(path, ".") {
			found := false
			for _, e := range cur.Elements() {
				if e.Name == name {
					el, cur, found = e, e.Type, true
					break
				}
			}
			if !found {
				t.Fatalf("%s.%s: no element %s", typ, path, name)
			}
		}
		return el
	}
	choices := func(e Element) string {
		var s []string
		for _, c := range e.Choices {
			s = append(s, c.Suffix+":"+c.Type.Name())
		}
		return strings.Join(s, " ")
	}
	for _, tc := range []struct {
		typ, path string
		repeats   bool
		want      string // the type's name, or a choice's suffix:type list
	}{
		{"Patient", "name", true, "HumanName"},
		{"Patient", "name.given", true, "string"},
		{"Patient", "id", false, "id"},
		{"Patient", "contained", true, "Resource"},
		{"Patient", "deceased", false, "Boolean:boolean DateTime:dateTime"},
		{"Patient", "multipleBirth", false, "Boolean:boolean Integer:integer"},
		{"Patient", "contact", true, "Patient.contact"},
		{"Patient", "contact.telecom", true, "ContactPoint"},
		{"Observation", "component.value", false, "Boolean:boolean CodeableConcept:CodeableConcept DateTime:dateTime " +
			"Integer:integer Period:Period Quantity:Quantity Range:Range Ratio:Ratio SampledData:SampledData String:string Time:time"},
		{"Questionnaire", "item.item", true, "Questionnaire.item"}, // contentReference
		{"Questionnaire", "item.item.item.linkId", false, "string"},
		{"Bundle", "entry.resource", false, "Resource"},
	} {
		e := find(tc.typ, tc.path)
		got := e.Type.Name()
		if e.Choices != nil {
			got = choices(e)
		}
		if got != tc.want || e.Repeats != tc.repeats {
			t.Errorf("%s.%s: %s repeats=%v, want %s repeats=%v", tc.typ, tc.path, got, e.Repeats, tc.want, tc.repeats)
		}
	}
	if el, _ := ResourceType("Patient"); el.Primitive() || !el.IsResource() || el.Name() != "Patient" {
		t.Errorf("Patient: %+v", el)
	}
	if _, ok := ResourceType("HumanName"); ok {
		t.Error("HumanName is a datatype, not a resource type")
	}
	if (Type{}).Name() != "" || (Type{}).Elements() != nil || !(Type{}).IsZero() {
		t.Error("the zero Type is not empty")
	}
}
