// Package shape cuts stored resource JSON down for the _summary and _elements parameters.
// It depends on encoding/json and fhir/spec (element tables) only, and does no I/O.
package shape

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/emberfhir/ember/fhir/spec"
)

// Summary modes (the values of the _summary parameter that act on a resource).
const (
	ModeTrue  = "true"
	ModeText  = "text"
	ModeData  = "data"
	ModeFalse = "false"
)

// subsettedSystem and subsettedCode form the tag R4 asks servers to put on
// resources they return incomplete (search.html#summary, #elements).
const (
	subsettedSystem = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
	subsettedCode   = "SUBSETTED"
)

var subsettedTag = []byte(`{"system":"` + subsettedSystem + `","code":"` + subsettedCode + `"}`)

// ErrMode reports a _summary value Summary does not apply.
var ErrMode = errors.New("shape: unsupported _summary mode")

// Summary applies a _summary mode to a resource of type resourceType:
//
//   - "true": the elements R4 marks isSummary, plus resourceType, id, meta,
//     the mandatory (min >= 1) top-level elements and modifierExtension. The
//     last two follow the rule in R4's definition of
//     ElementDefinition.isSummary (a root element with min 1, or a modifier,
//     must be summary), which the R4 tables themselves break for
//     AuditEvent.agent/source, Appointment.participant, Provenance.agent
//     and DomainResource.modifierExtension; dropping a modifier extension
//     would silently change the resource's meaning. text is never summary.
//   - "text": text, id, meta and the top-level mandatory elements.
//   - "data": everything but text.
//   - "false": the resource unchanged (the same bytes, not even parsed).
//
// Every mode but "false" adds the SUBSETTED tag to meta.tag. "count" is a
// search-level mode with no resource to shape, so it is an error like any
// other value (ErrMode).
//
// Selection is by top-level property only: a kept property is copied byte
// for byte, nested content and all (so a non-summary child of a kept element
// stays), and only the top-level object and meta (for the tag) are
// re-encoded, with resourceType first and the other properties sorted. A
// primitive's "_name" sibling (its id and extensions) goes with "name";
// properties the type does not define are dropped except by "data".
func Summary(resource []byte, resourceType, mode string) ([]byte, error) {
	var keep func(key string, e spec.Element, known bool) bool
	switch mode {
	case ModeFalse:
		return resource, nil
	case ModeTrue:
		keep = func(key string, e spec.Element, known bool) bool {
			return known && (e.Summary || e.Mandatory || e.Name == "modifierExtension" || e.Name == "meta")
		}
	case ModeText:
		keep = func(key string, e spec.Element, known bool) bool {
			return known && (e.Mandatory || e.Name == "id" || e.Name == "meta" || e.Name == "text")
		}
	case ModeData:
		keep = func(key string, e spec.Element, known bool) bool { return key != "text" }
	default:
		return nil, fmt.Errorf("%w %q", ErrMode, mode)
	}
	out, err := subset(resource, resourceType, keep)
	if err != nil {
		return nil, fmt.Errorf("shape: _summary=%s: %w", mode, err)
	}
	return out, nil
}

// Elements applies _elements: it keeps resourceType, id, meta, the
// mandatory top-level elements (R4: servers SHOULD return them whether
// requested or not), modifierExtension (as for Summary) and the listed
// elements, and adds the SUBSETTED tag.
//
// Names are top-level element names as in R4 (_elements=identifier,name);
// a choice is named by its prefix, so "value" keeps valueQuantity or
// valueString. A dotted name ("name.given") keeps its whole top-level
// element ("name"): R4 does not define paths here, and the spec lets a
// server return more than was asked. Names the type does not define match
// only a JSON key spelled the same way.
func Elements(resource []byte, resourceType string, elements []string) ([]byte, error) {
	want := make(map[string]bool, len(elements))
	for _, n := range elements {
		n, _, _ = strings.Cut(strings.TrimSpace(n), ".")
		if n != "" {
			want[n] = true
		}
	}
	keep := func(key string, e spec.Element, known bool) bool {
		if !known {
			return want[strings.TrimPrefix(key, "_")]
		}
		return e.Mandatory || want[e.Name] || e.Name == "id" || e.Name == "meta" || e.Name == "modifierExtension"
	}
	out, err := subset(resource, resourceType, keep)
	if err != nil {
		return nil, fmt.Errorf("shape: _elements: %w", err)
	}
	return out, nil
}

// subset keeps the top-level properties keep accepts (resourceType always),
// tags the result SUBSETTED and encodes it. keep gets the property name,
// the element it encodes (spec.ElementForKey: "_birthDate" and "valueString"
// map to birthDate and value[x]) and whether there is one.
func subset(resource []byte, resourceType string, keep func(key string, e spec.Element, known bool) bool) ([]byte, error) {
	if !spec.IsResourceType(resourceType) {
		return nil, fmt.Errorf("unknown resource type %q", resourceType)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(resource, &fields); err != nil {
		return nil, fmt.Errorf("decode %s: %w", resourceType, err)
	}
	if fields == nil { // the JSON literal null
		return nil, fmt.Errorf("decode %s: not a JSON object", resourceType)
	}
	rt, ok := fields["resourceType"]
	if !ok {
		return nil, fmt.Errorf("decode %s: no resourceType", resourceType)
	}
	var got string
	if err := json.Unmarshal(rt, &got); err != nil || got != resourceType {
		return nil, fmt.Errorf("decode %s: resourceType is not %q", resourceType, resourceType)
	}
	kept := make(map[string]json.RawMessage, len(fields))
	for k, v := range fields {
		if k == "resourceType" {
			continue
		}
		e, known := spec.ElementForKey(resourceType, k)
		if keep(k, e, known) {
			kept[k] = v
		}
	}
	meta, err := addSubsetted(kept["meta"])
	if err != nil {
		return nil, err
	}
	kept["meta"] = meta
	return encode(rt, kept), nil
}

// addSubsetted returns meta with the SUBSETTED coding appended to meta.tag,
// creating meta and tag when absent and leaving a tag already there alone.
// The other meta properties and the existing tags keep their bytes.
func addSubsetted(meta json.RawMessage) (json.RawMessage, error) {
	var fields map[string]json.RawMessage
	if len(meta) > 0 {
		if err := json.Unmarshal(meta, &fields); err != nil {
			return nil, fmt.Errorf("decode meta: %w", err)
		}
	}
	if fields == nil {
		fields = map[string]json.RawMessage{}
	}
	var tags []json.RawMessage
	if raw := fields["tag"]; len(raw) > 0 {
		if err := json.Unmarshal(raw, &tags); err != nil {
			return nil, fmt.Errorf("decode meta.tag: %w", err)
		}
	}
	for _, t := range tags {
		// A map, not a struct: encoding/json matches struct fields without
		// regard to case, and "sYstem" is not a Coding's system.
		var c map[string]json.RawMessage
		if err := json.Unmarshal(t, &c); err != nil {
			return nil, fmt.Errorf("decode meta.tag: %w", err)
		}
		if isString(c["system"], subsettedSystem) && isString(c["code"], subsettedCode) {
			return encode(nil, fields), nil
		}
	}
	var b bytes.Buffer
	b.WriteByte('[')
	for _, t := range tags {
		b.Write(t)
		b.WriteByte(',')
	}
	b.Write(subsettedTag)
	b.WriteByte(']')
	fields["tag"] = b.Bytes()
	return encode(nil, fields), nil
}

// isString reports whether raw is a JSON string equal to s.
func isString(raw json.RawMessage, s string) bool {
	var v string
	return len(raw) > 0 && json.Unmarshal(raw, &v) == nil && v == s
}

// encode writes an object: "resourceType" first when rt is set, then the
// fields sorted by name, each value copied verbatim. Writing it by hand
// rather than with json.Marshal is what keeps nested bytes untouched
// (Marshal would compact and re-validate every RawMessage).
func encode(rt json.RawMessage, fields map[string]json.RawMessage) []byte {
	keys := make([]string, 0, len(fields))
	n := len(rt) + 16
	for k, v := range fields {
		keys = append(keys, k)
		n += len(k) + len(v) + 4
	}
	sort.Strings(keys)
	b := bytes.NewBuffer(make([]byte, 0, n))
	b.WriteByte('{')
	if rt != nil {
		b.WriteString(`"resourceType":`)
		b.Write(rt)
	}
	for i, k := range keys {
		if i > 0 || rt != nil {
			b.WriteByte(',')
		}
		name, _ := json.Marshal(k) // a string always marshals
		b.Write(name)
		b.WriteByte(':')
		b.Write(fields[k])
	}
	b.WriteByte('}')
	return b.Bytes()
}
