package main

import (
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/emberfhir/ember/internal/fhirpkg"
)

// This file writes fhir/validate/schema_gen.go: for every resource, complex
// datatype and backbone element, the JSON members it allows and what each
// holds, read from the StructureDefinition snapshots; and the codes of the
// value sets that required bindings on code elements name, where they expand
// fully from the package.

// vElement is the part of an ElementDefinition the validator needs.
type vElement struct {
	Path             string   `json:"path"`
	Representation   []string `json:"representation"` // xmlAttr, xhtml: fhir/xml's tables
	ContentReference string   `json:"contentReference"`
	Min              int      `json:"min"`
	Max              string   `json:"max"`
	Type             []struct {
		Code          string   `json:"code"`
		Profile       []string `json:"profile"`
		TargetProfile []string `json:"targetProfile"`
		Extension     []struct {
			URL      string `json:"url"`
			ValueURL string `json:"valueUrl"`
		} `json:"extension"`
	} `json:"type"`
	Binding *struct {
		Strength string `json:"strength"`
		ValueSet string `json:"valueSet"`
	} `json:"binding"`
}

type vSD struct {
	ResourceType string `json:"resourceType"`
	URL          string `json:"url"`
	Type         string `json:"type"`
	Kind         string `json:"kind"`
	Abstract     bool   `json:"abstract"`
	Derivation   string `json:"derivation"`
	Snapshot     struct {
		Element []vElement `json:"element"`
	} `json:"snapshot"`
}

// primitiveKinds names the Go constants of fhir/validate for each primitive.
var primitiveKinds = map[string]string{
	"boolean": "kBoolean", "integer": "kInteger", "positiveInt": "kPositiveInt", "unsignedInt": "kUnsignedInt",
	"decimal": "kDecimal", "string": "kString", "markdown": "kMarkdown", "code": "kCode", "id": "kID",
	"oid": "kOID", "uuid": "kUUID", "uri": "kURI", "url": "kURL", "canonical": "kCanonical",
	"base64Binary": "kBase64Binary", "date": "kDate", "dateTime": "kDateTime", "instant": "kInstant",
	"time": "kTime", "xhtml": "kXHTML",
}

type vField struct {
	name     string
	kind     string // a k* constant
	typ      string // complex or backbone type name, for kComplex
	array    bool
	required bool
	choice   string // choice element's base name ("value"), "" if none
	valueSet string // required binding's expansion key, "" if none
	refs     string // allowed reference targets, space separated; "" = any
}

type vType struct {
	name     string
	resource bool
	fields   []vField
}

func loadSDs(dir string) ([]vSD, error) {
	var out []vSD
	for _, f := range []string{"Bundle-types.json", "Bundle-resources.json"} {
		raw, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return nil, err
		}
		var b bundle
		if err := json.Unmarshal(raw, &b); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for _, e := range b.Entry {
			var sd vSD
			if err := json.Unmarshal(e.Resource, &sd); err != nil || sd.ResourceType != "StructureDefinition" {
				continue
			}
			// Primitives are checked by hand-written code; abstract bases
			// and constraint profiles (SimpleQuantity) add no members.
			// SimpleQuantity is the one profile kept, as a type of its own:
			// elements bound to it forbid Quantity.comparator.
			if sd.Derivation == "constraint" && sd.Type == "Quantity" && strings.HasSuffix(sd.URL, "/SimpleQuantity") {
				sd.Type = "SimpleQuantity"
			} else if sd.Kind == "primitive-type" || sd.Abstract || sd.Derivation == "constraint" || sd.Kind == "logical" {
				continue
			}
			out = append(out, sd)
		}
	}
	return out, nil
}

// validateTypes turns the snapshots into member tables.
func validateTypes(sds []vSD, x *expander) ([]*vType, map[string][]string, error) {
	var types []*vType
	valueSets := map[string][]string{}
	for _, sd := range sds {
		// Elements with children (backbone elements) become types of their own.
		hasChildren := map[string]bool{}
		for _, el := range sd.Snapshot.Element {
			if i := strings.LastIndexByte(el.Path, '.'); i > 0 {
				hasChildren[el.Path[:i]] = true
			}
		}
		byPath := map[string]*vType{}
		root := &vType{name: sd.Type, resource: sd.Kind == "resource"}
		byPath[sd.Snapshot.Element[0].Path] = root
		types = append(types, root)
		for _, el := range sd.Snapshot.Element[1:] {
			i := strings.LastIndexByte(el.Path, '.')
			parent := byPath[el.Path[:i]]
			if parent == nil {
				return nil, nil, fmt.Errorf("%s: parent not found", el.Path)
			}
			name := el.Path[i+1:]
			if el.Max == "0" {
				continue // removed by a profile
			}
			array := el.Max != "1"
			required := el.Min >= 1
			if el.ContentReference != "" {
				target := strings.TrimPrefix(el.ContentReference, "#")
				parent.fields = append(parent.fields, vField{name: name, kind: "kComplex", typ: target, array: array, required: required})
				continue
			}
			if hasChildren[el.Path] {
				bt := &vType{name: el.Path}
				byPath[el.Path] = bt
				types = append(types, bt)
				parent.fields = append(parent.fields, vField{name: name, kind: "kComplex", typ: el.Path, array: array, required: required})
				continue
			}
			choice := ""
			if strings.HasSuffix(name, "[x]") {
				choice = strings.TrimSuffix(name, "[x]")
			}
			for _, t := range el.Type {
				f := vField{array: array, required: required, choice: choice, name: name}
				if choice != "" {
					f.name = choice + strings.ToUpper(t.Code[:1]) + t.Code[1:]
				}
				code := t.Code
				if strings.HasPrefix(code, "http://hl7.org/fhirpath/System.") {
					for _, e := range t.Extension {
						if e.URL == "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type" {
							code = e.ValueURL
						}
					}
				}
				if root.resource && el.Path == sd.Type+".id" {
					code = "id" // Resource.id is an id; its snapshot says System.String
				}
				switch {
				case primitiveKinds[code] != "":
					f.kind = primitiveKinds[code]
				case code == "Resource":
					f.kind = "kResource"
				case code == "Quantity" && len(t.Profile) == 1 && strings.HasSuffix(t.Profile[0], "/SimpleQuantity"):
					f.kind, f.typ = "kComplex", "SimpleQuantity"
				case code != "" && code[0] >= 'A' && code[0] <= 'Z':
					f.kind, f.typ = "kComplex", code
				default:
					return nil, nil, fmt.Errorf("%s: unknown type %q", el.Path, t.Code)
				}
				if code == "Reference" {
					var refs []string
					for _, p := range t.TargetProfile {
						refs = append(refs, p[strings.LastIndexByte(p, '/')+1:])
					}
					f.refs = strings.Join(refs, " ")
					if f.refs == "Resource" || strings.Contains(" "+f.refs+" ", " Resource ") {
						f.refs = "" // any resource
					}
				}
				if code == "code" && el.Binding != nil && el.Binding.Strength == "required" {
					url, _, _ := strings.Cut(el.Binding.ValueSet, "|")
					if _, done := valueSets[url]; done {
						f.valueSet = url
					} else if codes, err := x.valueSet(url); err == nil {
						var cs []string
						for _, c := range codes {
							cs = append(cs, c.Code)
						}
						valueSets[url] = cs
						f.valueSet = url
					}
				}
				parent.fields = append(parent.fields, f)
			}
		}
	}
	sort.Slice(types, func(i, j int) bool { return types[i].name < types[j].name })
	return types, valueSets, nil
}

// writeValidate writes outDir/schema_gen.go.
func writeValidate(outDir, dir string) {
	sds, err := loadSDs(dir)
	if err != nil {
		log.Fatal(err)
	}
	x, err := loadTerminology(dir)
	if err != nil {
		log.Fatal(err)
	}
	types, valueSets, err := validateTypes(sds, x)
	if err != nil {
		log.Fatal(err)
	}
	typeIndex := map[string]int{}
	for i, t := range types {
		typeIndex[t.name] = i
	}
	var vsURLs []string
	for u := range valueSets {
		vsURLs = append(vsURLs, u)
	}
	sort.Strings(vsURLs)
	vsIndex := map[string]int{}
	for i, u := range vsURLs {
		vsIndex[u] = i + 1
	}
	refIndex := map[string]int{}
	var refSets []string

	var b strings.Builder
	fmt.Fprintf(&b, "// Code generated by fhir/spec/gen from %s@%s; DO NOT EDIT.\n\npackage validate\n\n", fhirpkg.Name, fhirpkg.Version)
	b.WriteString("// typeTable lists every resource, complex datatype and backbone element\n// (named by its path), sorted by name; its members are fieldTable[first:first+n].\n")
	b.WriteString("var typeTable = [...]typeDef{\n")
	first := 0
	for _, t := range types {
		sort.SliceStable(t.fields, func(i, j int) bool { return t.fields[i].name < t.fields[j].name })
		fmt.Fprintf(&b, "{%q, %d, %d, %v},\n", t.name, first, len(t.fields), t.resource)
		first += len(t.fields)
	}
	b.WriteString("}\n\n")
	b.WriteString("// fieldTable holds the members: name, kind, type index (kComplex), flags,\n// choice group and required slot (1-based, per type), value set and\n// reference targets (1-based indexes into valueSetTable and refTable).\n")
	b.WriteString("var fieldTable = [...]fieldDef{\n")
	for _, t := range types {
		choices := map[string]int{}
		slots := map[string]int{}
		for _, f := range t.fields {
			ti := 0
			if f.kind == "kComplex" {
				i, ok := typeIndex[f.typ]
				if !ok {
					log.Fatalf("validate: %s.%s: unknown type %s", t.name, f.name, f.typ)
				}
				ti = i
			}
			flags := "0"
			if f.array {
				flags = "fArray"
			}
			choice := 0
			if f.choice != "" {
				if choices[f.choice] == 0 {
					choices[f.choice] = len(choices) + 1
				}
				choice = choices[f.choice]
			}
			slot := 0
			if f.required {
				key := f.name
				if f.choice != "" {
					key = f.choice + "[x]"
				}
				if slots[key] == 0 {
					slots[key] = len(slots) + 1
				}
				slot = slots[key]
			}
			ref := 0
			if f.refs != "" {
				if refIndex[f.refs] == 0 {
					refSets = append(refSets, f.refs)
					refIndex[f.refs] = len(refSets)
				}
				ref = refIndex[f.refs]
			}
			fmt.Fprintf(&b, "{%q, %s, %d, %s, %d, %d, %d, %d},\n", f.name, f.kind, ti, flags, choice, slot, vsIndex[f.valueSet], ref)
		}
		if len(choices) > maxChoices || len(slots) > 64 {
			log.Fatalf("validate: %s has %d choice groups and %d required members", t.name, len(choices), len(slots))
		}
	}
	b.WriteString("}\n\n")
	b.WriteString("// valueSetTable holds, for each required binding that expands fully, its\n// URL and its codes separated by newlines.\n")
	b.WriteString("var valueSetTable = [...]valueSetDef{\n")
	for _, u := range vsURLs {
		fmt.Fprintf(&b, "{%q, %q},\n", u, strings.Join(valueSets[u], "\n"))
	}
	b.WriteString("}\n\n")
	b.WriteString("// refTable holds the resource types a Reference may target, space separated.\n")
	b.WriteString("var refTable = [...]string{\n")
	for _, r := range refSets {
		fmt.Fprintf(&b, "%q,\n", r)
	}
	b.WriteString("}\n")
	writeGo(filepath.Join(outDir, "schema_gen.go"), b.String())
}

// maxChoices bounds the choice groups of one type; fhir/validate tracks them
// in a fixed-size array.
const maxChoices = 8
