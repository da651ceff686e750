// Package fhir is Ember's model of FHIR R4: parsing and validating resources,
// stamping server-owned fields and building OperationOutcomes. It does no I/O.
package fhir

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/emberfhir/ember/fhir/spec"
	"github.com/emberfhir/ember/fhir/validate"
)

// idPattern is the R4 id datatype's regex.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9\-\.]{1,64}$`)

// ValidID reports whether id is a valid FHIR logical id.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// Resource is a resource that passed validation. Its only constructor is
// Parser.Parse, so the store can never be handed an unvalidated resource.
type Resource struct {
	typ            string
	id             string // id in the body, "" if none
	body           []byte
	inexactNumbers bool
}

// NeedsVerbatim reports whether the resource holds numbers whose written form
// (exponent notation, negative zero) JSONB's numeric storage would rewrite.
// FHIR decimals carry their precision in that form, so the store keeps such
// resources' exact text alongside the JSONB.
func (r *Resource) NeedsVerbatim() bool { return r.inexactNumbers }

// Body is the resource's JSON as parsed (before Stamp). It must not be
// modified.
func (r *Resource) Body() []byte { return r.body }

// Type is the resourceType.
func (r *Resource) Type() string { return r.typ }

// ID is the id the client put in the body ("" if none).
func (r *Resource) ID() string { return r.id }

// Parser validates resources. It is safe for concurrent use.
type Parser struct{}

// NewParser returns a Parser. The error is kept for callers written when
// building one could fail (it wrapped google/fhir's unmarshaller).
func NewParser() (*Parser, error) {
	return &Parser{}, nil
}

// Parse validates body as an R4 resource. Malformed JSON gives a BadRequest
// Error; JSON that is not a valid resource gives Unprocessable (BadRequest
// for a resourceType Ember does not know). wantType, when not empty, must equal resourceType.
func (p *Parser) Parse(body []byte, wantType string) (*Resource, error) {
	scan, serr := scanResource(body)
	rt := scan.resourceType
	if serr != nil {
		kind := Unprocessable
		code := "invalid"
		if serr.syntax {
			kind, code = BadRequest, "structure"
		}
		var expr []string
		if serr.path != "" {
			expr = []string{serr.path}
		}
		return nil, NewError(kind, code, "invalid JSON: "+serr.msg, expr...)
	}
	if rt == "" {
		return nil, NewError(BadRequest, "structure", `missing or invalid "resourceType": the body must be a FHIR resource`)
	}
	if !spec.IsResourceType(rt) {
		return nil, NewError(BadRequest, "not-supported", "unknown resourceType "+strconv.Quote(rt), "resourceType")
	}
	if wantType != "" && rt != wantType {
		return nil, NewError(BadRequest, "invalid",
			fmt.Sprintf("resourceType %q does not match the URL's type %q", rt, wantType), "resourceType")
	}
	var id string
	if scan.id != nil {
		var err error
		if id, err = strconv.Unquote(string(scan.id)); err != nil {
			return nil, NewError(Unprocessable, "value", "id must be a string", rt+".id")
		}
	}
	if id != "" && !ValidID(id) {
		return nil, NewError(Unprocessable, "value",
			fmt.Sprintf("id %q does not match [A-Za-z0-9-.]{1,64}", id), rt+".id")
	}
	if vis := validate.Resource(body); len(vis) > 0 {
		issues := make([]Issue, len(vis))
		for i, vi := range vis {
			issues[i] = Issue{Severity: "error", Code: vi.Code, Diagnostics: vi.Diagnostics, Expression: expression(vi.Expression)}
		}
		return nil, &Error{Kind: Unprocessable, Issues: issues}
	}
	return &Resource{typ: rt, id: id, body: body, inexactNumbers: scan.inexactNumbers}, nil
}

// topLevelString returns the string value of a root member ("" if absent).
func topLevelString(body []byte, key string) (string, error) {
	members, err := objectMembers(body)
	if err != nil {
		return "", err
	}
	for _, m := range members {
		if m.key == key {
			return strconv.Unquote(string(body[m.start:m.end]))
		}
	}
	return "", nil
}

func expression(path string) []string {
	if path == "" {
		return nil
	}
	return []string{path}
}

// Stamp returns the resource's JSON with the server-owned fields set: id,
// meta.versionId and meta.lastUpdated. resourceType comes first; every other
// member keeps its bytes and order.
func (r *Resource) Stamp(id string, versionID int64, lastUpdated time.Time) []byte {
	members, _ := objectMembers(r.body) // validated in Parse
	var b bytes.Buffer
	b.Grow(len(r.body) + 128)
	b.WriteString(`{"resourceType":`)
	b.WriteString(strconv.Quote(r.typ))
	b.WriteString(`,"id":`)
	b.WriteString(strconv.Quote(id))
	b.WriteString(`,"meta":{"versionId":"`)
	b.WriteString(strconv.FormatInt(versionID, 10))
	b.WriteString(`","lastUpdated":"`)
	b.WriteString(FormatInstant(lastUpdated))
	b.WriteByte('"')
	for _, m := range members {
		if m.key == "meta" {
			metaMembers, _ := objectMembers(r.body[m.start:m.end])
			for _, mm := range metaMembers {
				if mm.key == "versionId" || mm.key == "lastUpdated" {
					continue
				}
				b.WriteByte(',')
				b.WriteString(strconv.Quote(mm.key))
				b.WriteByte(':')
				b.Write(r.body[m.start+mm.start : m.start+mm.end])
			}
		}
	}
	b.WriteByte('}')
	for _, m := range members {
		switch m.key {
		case "resourceType", "id", "meta":
			continue
		}
		b.WriteByte(',')
		b.WriteString(strconv.Quote(m.key))
		b.WriteByte(':')
		b.Write(r.body[m.start:m.end])
	}
	b.WriteByte('}')
	return b.Bytes()
}

// FormatInstant formats t as a FHIR instant in UTC with microseconds, the
// precision PostgreSQL keeps, so meta.lastUpdated equals the stored timestamp.
func FormatInstant(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000000Z")
}

// TrimmedType returns s if it names an R4 resource type, else "".
func TrimmedType(s string) string {
	s = strings.TrimSpace(s)
	if spec.IsResourceType(s) {
		return s
	}
	return ""
}

// CheckJSON applies the strict JSON checks of Parse (syntax, UTF-8, empty
// values, duplicate keys, depth) without validating a resource, for
// envelopes such as a transaction Bundle whose entries are parsed one by one.
func CheckJSON(body []byte) error {
	if _, serr := scanResource(body); serr != nil {
		kind, code := Unprocessable, "invalid"
		if serr.syntax {
			kind, code = BadRequest, "structure"
		}
		return NewError(kind, code, "invalid JSON: "+serr.msg, expression(serr.path)...)
	}
	return nil
}
