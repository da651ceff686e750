// Package profile checks resources against profiles: StructureDefinitions
// with derivation "constraint" (US Core's), compiled once from their
// snapshots into element trees keyed by element id. A check decodes the
// resource once and walks it with the tree: cardinality, fixed[x] and
// pattern[x] values, slicing (discriminators value, pattern, type, and
// profile as US Core uses them; closed slicing), types allowed by the
// profile, extensions against their own definitions, required bindings to
// value sets that expand locally (others are reported as not checked),
// must-support elements absent (information, at every level below a
// present element) and the profile's own invariants: compiled to Go closures
// over the decoded resource where their FHIRPath allows (invariant_compile.go),
// which the write path evaluates too; the others through gofhir/fhirpath,
// for $validate only, where it can evaluate them.
//
// The resource is valid R4 already (fhir.Parser checked it): this package
// checks only what the profile adds.
package profile

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/gofhir/fhirpath"
)

// Profile is one compiled StructureDefinition.
type Profile struct {
	URL, Version, Name string
	Type               string // the resource or datatype constrained
	Kind               string // resource, complex-type…
	root               *element
}

// element is one ElementDefinition with its children and slices.
type element struct {
	id, path    string
	name        string // the JSON member's name, without [x]
	extName     string // "_" + name: a primitive's extensions
	choice      bool   // value[x]
	min         int
	max         int // -1 for *
	types       []typeRef
	fixed       any // decoded fixed[x], nil when none
	fixedType   string
	pattern     any
	mustSupport bool
	binding     *binding
	children    []*element
	slicing     *slicing
	slices      []*element // for a sliced element: its slices, in order
	sliceName   string
	invariants  []invariant
	expect      []expectation // a slice's, per discriminator of its element
}

type typeRef struct {
	code     string
	profiles []string
}

type binding struct {
	strength string
	valueSet string
}

type slicing struct {
	discriminators []discriminator
	closed         bool
}

type discriminator struct {
	kind, path string
	steps      []string // path's steps; none for $this
}

// expectation is what a slice's discriminator compares with: its fixed
// (or pattern) value at the discriminator's path.
type expectation struct {
	val     any
	pattern bool
}

type invariant struct {
	key, human, expr string
	severity         string
	compiled         *fhirpath.Expression // gofhir's, for $validate when fn is nil
	fn               *goInvariant         // the Go closure, nil when outside the subset
	why              string               // why fn is nil
}

// rawElement is an ElementDefinition as read.
type rawElement struct {
	ID          string `json:"id"`
	Path        string `json:"path"`
	SliceName   string `json:"sliceName"`
	Min         int    `json:"min"`
	Max         string `json:"max"`
	MustSupport bool   `json:"mustSupport"`
	Type        []struct {
		Code    string   `json:"code"`
		Profile []string `json:"profile"`
	} `json:"type"`
	Binding *struct {
		Strength string `json:"strength"`
		ValueSet string `json:"valueSet"`
	} `json:"binding"`
	Slicing *struct {
		Discriminator []struct {
			Type string `json:"type"`
			Path string `json:"path"`
		} `json:"discriminator"`
		Rules string `json:"rules"`
	} `json:"slicing"`
	Constraint []struct {
		Key        string `json:"key"`
		Severity   string `json:"severity"`
		Human      string `json:"human"`
		Expression string `json:"expression"`
		Source     string `json:"source"`
	} `json:"constraint"`
}

// Compile compiles a StructureDefinition with a snapshot.
func Compile(raw []byte) (*Profile, error) {
	var sd struct {
		ResourceType string `json:"resourceType"`
		URL          string `json:"url"`
		Version      string `json:"version"`
		Name         string `json:"name"`
		Type         string `json:"type"`
		Kind         string `json:"kind"`
		Derivation   string `json:"derivation"`
		Snapshot     struct {
			Element []json.RawMessage `json:"element"`
		} `json:"snapshot"`
	}
	if err := json.Unmarshal(raw, &sd); err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	if sd.ResourceType != "StructureDefinition" || sd.URL == "" {
		return nil, fmt.Errorf("profile: not a StructureDefinition with a url")
	}
	if len(sd.Snapshot.Element) == 0 {
		return nil, fmt.Errorf("profile %s: no snapshot", sd.URL)
	}
	p := &Profile{URL: sd.URL, Version: sd.Version, Name: sd.Name, Type: sd.Type, Kind: sd.Kind}
	byID := map[string]*element{}
	for i, rawEl := range sd.Snapshot.Element {
		var re rawElement
		if err := json.Unmarshal(rawEl, &re); err != nil {
			return nil, fmt.Errorf("profile %s: element %d: %w", sd.URL, i, err)
		}
		el, err := compileElement(re, rawEl)
		if err != nil {
			return nil, fmt.Errorf("profile %s: %s: %w", sd.URL, re.ID, err)
		}
		byID[el.id] = el
		if i == 0 {
			p.root = el
			continue
		}
		parentID, sliced := parentOf(el.id)
		parent := byID[parentID]
		if parent == nil {
			return nil, fmt.Errorf("profile %s: element %s has no parent %s in the snapshot", sd.URL, el.id, parentID)
		}
		if sliced {
			parent.slices = append(parent.slices, el)
		} else {
			parent.children = append(parent.children, el)
		}
	}
	if p.root == nil {
		return nil, fmt.Errorf("profile %s: empty snapshot", sd.URL)
	}
	for _, el := range byID {
		if el.slicing == nil {
			continue
		}
		for _, sl := range el.slices {
			sl.expect = make([]expectation, len(el.slicing.discriminators))
			for i, d := range el.slicing.discriminators {
				v, pat := expected(sl, d.path, d.steps)
				sl.expect[i] = expectation{val: v, pattern: pat}
			}
		}
	}
	return p, nil
}

// parentOf returns the id of an element's parent: Patient.name.given ->
// Patient.name; a slice (Patient.extension:race) -> the sliced element
// (Patient.extension), sliced true. Colons inside a slice name's earlier
// parts stay: Observation.component:systolic.code -> Observation.component:systolic.
func parentOf(id string) (string, bool) {
	dot := strings.LastIndexByte(id, '.')
	colon := strings.LastIndexByte(id, ':')
	if colon > dot {
		return id[:colon], true
	}
	return id[:dot], false
}

func compileElement(re rawElement, raw json.RawMessage) (*element, error) {
	el := &element{id: re.ID, path: re.Path, min: re.Min, max: -1, mustSupport: re.MustSupport, sliceName: re.SliceName}
	if el.id == "" {
		el.id = re.Path
	}
	last := re.Path[strings.LastIndexByte(re.Path, '.')+1:]
	el.name = strings.TrimSuffix(last, "[x]")
	el.extName = "_" + el.name
	el.choice = strings.HasSuffix(last, "[x]")
	if re.Max != "*" && re.Max != "" {
		n, err := strconv.Atoi(re.Max)
		if err != nil {
			return nil, fmt.Errorf("max %q", re.Max)
		}
		el.max = n
	}
	for _, t := range re.Type {
		el.types = append(el.types, typeRef{code: t.Code, profiles: t.Profile})
	}
	if re.Binding != nil && re.Binding.ValueSet != "" {
		el.binding = &binding{strength: re.Binding.Strength, valueSet: re.Binding.ValueSet}
	}
	if re.Slicing != nil {
		s := &slicing{closed: re.Slicing.Rules == "closed"}
		for _, d := range re.Slicing.Discriminator {
			dd := discriminator{kind: d.Type, path: d.Path}
			if d.Path != "$this" {
				dd.steps = strings.Split(d.Path, ".")
			}
			s.discriminators = append(s.discriminators, dd)
		}
		el.slicing = s
	}
	// fixed[x] and pattern[x]: whichever member starts so.
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return nil, err
	}
	for k, v := range members {
		switch {
		case strings.HasPrefix(k, "fixed"):
			el.fixed, el.fixedType = decode(v), k[len("fixed"):]
		case strings.HasPrefix(k, "pattern"):
			el.pattern = decode(v)
		}
	}
	for _, c := range re.Constraint {
		// The base specification's invariants are checked by R4 validation
		// (or, like ele-1 and dom-6, are not errors); a profile's own are
		// evaluated here.
		if c.Expression == "" || strings.HasPrefix(c.Source, "http://hl7.org/fhir/StructureDefinition/") {
			continue
		}
		inv := invariant{key: c.Key, human: c.Human, expr: c.Expression, severity: c.Severity}
		if x, err := fhirpath.Compile(c.Expression); err == nil {
			inv.compiled = x
		}
		// Compiled to Go where the expression allows: the write path
		// evaluates only these (gofhir takes milliseconds).
		g, err := compileInvariant(c.Expression, !strings.Contains(re.Path, "."))
		if err != nil {
			inv.why = err.Error()
		}
		inv.fn = g
		el.invariants = append(el.invariants, inv)
	}
	return el, nil
}

// decode reads a JSON value keeping numbers' text.
func decode(raw []byte) any {
	d := json.NewDecoder(strings.NewReader(string(raw)))
	d.UseNumber()
	var v any
	if d.Decode(&v) != nil {
		return nil
	}
	return v
}
