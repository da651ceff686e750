package export

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/search"
	"github.com/emberfhir/ember/fhir/spec"
	"github.com/emberfhir/ember/store"
)

// Request is an $export kick-off.
type Request struct {
	// Type and ID are where it was invoked: "" (the system), "Patient"
	// (type level) or "Group" with the Group's ID.
	Type, ID string
	// Async says the client asked for asynchronous processing (HTTP's
	// Prefer: respond-async); $export has no synchronous form.
	Async bool
	// Params are the kick-off parameters as a GET's query carries them.
	Params url.Values
	// Parameters is a POST kick-off's Parameters resource, whose values
	// are added to Params; nil for a GET.
	Parameters []byte
	// Lenient ignores unknown parameters instead of refusing them
	// (Prefer: handling=lenient).
	Lenient bool
	// URL is the kick-off request's URL, echoed in the manifest.
	URL string
}

// Check refuses a kick-off at a level $export is not defined on (not
// found) or one not asked for asynchronously. Kickoff checks it first; the
// HTTP layer calls it before reading a POST's body.
func (r Request) Check() error {
	if (r.Type != "" && r.Type != "Patient" && r.Type != "Group") || (r.Type == "Patient" && r.ID != "") || (r.Type == "Group" && r.ID == "") {
		return fhir.Missing("$export is defined on the system, on Patient and on a Group instance")
	}
	if !r.Async {
		return fhir.NewError(fhir.BadRequest, "invalid", "$export runs asynchronously: send Prefer: respond-async")
	}
	return nil
}

// Job is an accepted export.
type Job struct {
	ID string
	// StatusURL is where its status is polled (Content-Location).
	StatusURL string
}

// params are an export's kick-off parameters as the worker needs them;
// they are stored with the job as JSON.
type params struct {
	Level string `json:"level"` // system, patient or group
	Group string `json:"group,omitempty"`
	// Patients are a Group export's members, resolved at kick-off. For a
	// group it is never nil (an empty group exports nothing).
	Patients    []string   `json:"patients"`
	Types       []string   `json:"types,omitempty"`
	Since       *time.Time `json:"since,omitempty"`
	TypeFilters []string   `json:"typeFilters,omitempty"` // "Type?query", as given
	// Client is the OAuth client that kicked the export off (with
	// authorisation on): only it may see the status, files or cancel.
	Client string `json:"client,omitempty"`
}

var errNoCaller = errors.New("export: no caller: pass engine.System or a token's Caller")

// Kickoff checks req and records the export as a job for the workers.
// Anything Ember cannot honour is refused: an export that silently ignored
// a filter would hand out more data than asked for. The export runs later
// without caller's guard, so caller's grant must read, unconfined, every
// type it will write out.
func (x *Exporter) Kickoff(ctx context.Context, caller *engine.Caller, req Request) (Job, error) {
	if caller == nil {
		return Job{}, errNoCaller
	}
	if err := req.Check(); err != nil {
		return Job{}, err
	}
	vals := req.Params
	if req.Parameters != nil {
		vals = maps.Clone(vals)
		if vals == nil {
			vals = url.Values{}
		}
		if err := addParameters(vals, req.Parameters); err != nil {
			return Job{}, err
		}
	}
	p, err := x.parseParams(vals, req.Type, req.Lenient)
	if err != nil {
		return Job{}, err
	}
	if err := caller.RequireUnrestricted(p.Types); err != nil {
		return Job{}, err
	}
	if g := caller.Grant(); g != nil {
		p.Client = g.ClientID
	}
	if req.Type == "Group" {
		p.Level, p.Group = "group", req.ID
		if p.Patients, err = x.groupPatients(ctx, caller, req.ID); err != nil {
			return Job{}, err
		}
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return Job{}, err
	}
	job := store.ExportJob{ID: store.NewID(), Request: req.URL, Params: raw}
	if err := x.jobs.EnqueueExport(ctx, job); err != nil {
		return Job{}, err
	}
	return Job{ID: job.ID, StatusURL: x.en.Base() + StatusPath + job.ID}, nil
}

// addParameters merges a POST kick-off's Parameters resource into vals.
// Every value is carried as the string the GET form would have had.
func addParameters(vals url.Values, body []byte) error {
	if err := fhir.CheckJSON(body); err != nil {
		return err
	}
	var p struct {
		ResourceType string `json:"resourceType"`
		Parameter    []struct {
			Name    string  `json:"name"`
			Str     *string `json:"valueString"`
			Code    *string `json:"valueCode"`
			Instant *string `json:"valueInstant"`
			Ref     *struct {
				Reference string `json:"reference"`
			} `json:"valueReference"`
		} `json:"parameter"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.ResourceType != "Parameters" {
		return fhir.NewError(fhir.BadRequest, "structure", "a POST $export needs a Parameters resource")
	}
	for _, prm := range p.Parameter {
		var v string
		switch {
		case prm.Str != nil:
			v = *prm.Str
		case prm.Code != nil:
			v = *prm.Code
		case prm.Instant != nil:
			v = *prm.Instant
		case prm.Ref != nil:
			v = prm.Ref.Reference
		default:
			return fhir.NewError(fhir.BadRequest, "invalid", "parameter "+quote(prm.Name)+" needs a valueString, valueCode, valueInstant or valueReference")
		}
		vals.Add(prm.Name, v)
	}
	return nil
}

// parseParams checks the kick-off parameters of an export invoked on typ
// ("" for the system).
func (x *Exporter) parseParams(vals url.Values, typ string, lenient bool) (*params, error) {
	p := &params{Level: "system"}
	if typ != "" {
		p.Level = "patient"
	}
	for name, vs := range vals {
		switch name {
		case "_outputFormat":
			for _, v := range vs {
				switch strings.ToLower(strings.ReplaceAll(strings.TrimSpace(v), " ", "+")) {
				case "application/fhir+ndjson", "application/ndjson", "ndjson":
				default:
					return nil, fhir.NewError(fhir.BadRequest, "not-supported",
						fmt.Sprintf("_outputFormat %q is not supported: Ember writes application/fhir+ndjson", v))
				}
			}
		case "_type":
			for _, v := range vs {
				for _, t := range strings.Split(v, ",") {
					t = strings.TrimSpace(t)
					if !spec.IsResourceType(t) {
						return nil, fhir.NewError(fhir.BadRequest, "invalid", "unknown resource type "+quote(t)+" in _type")
					}
					if !slices.Contains(p.Types, t) {
						p.Types = append(p.Types, t)
					}
				}
			}
		case "_since":
			if len(vs) != 1 {
				return nil, fhir.NewError(fhir.BadRequest, "invalid", "_since may be given once")
			}
			// An unescaped "+" of a time zone arrives as a space.
			t, err := time.Parse(time.RFC3339Nano, strings.ReplaceAll(strings.TrimSpace(vs[0]), " ", "+"))
			if err != nil {
				return nil, fhir.NewError(fhir.BadRequest, "invalid",
					fmt.Sprintf("_since %q is not a FHIR instant (YYYY-MM-DDThh:mm:ss[.fff]Z or ±hh:mm)", vs[0]))
			}
			t = t.UTC()
			p.Since = &t
		case "_typeFilter":
			for _, v := range vs {
				p.TypeFilters = append(p.TypeFilters, splitTypeFilter(v)...)
			}
		case "_format", "_pretty":
		case "patient", "_elements", "includeAssociatedData", "organizeOutputBy", "allowPartialManifests", "_until":
			return nil, fhir.NewError(fhir.BadRequest, "not-supported", "$export parameter "+name+" is not supported")
		default:
			if !lenient {
				return nil, fhir.NewError(fhir.BadRequest, "not-supported",
					"unknown $export parameter "+quote(name)+" (send Prefer: handling=lenient to ignore unknown parameters)")
			}
		}
	}
	slices.Sort(p.Types)
	if p.Level != "system" {
		for _, t := range p.Types {
			if spec.CompartmentParams("Patient", t) == nil {
				return nil, fhir.NewError(fhir.BadRequest, "invalid",
					"_type "+t+" is not in the Patient compartment, which a Patient or Group export is limited to")
			}
		}
	}
	if _, err := x.typeFilters(p); err != nil {
		return nil, err
	}
	return p, nil
}

// typeFilterStart matches the start of one _typeFilter query: "Type?".
var typeFilterStart = regexp.MustCompile(`^[A-Z][A-Za-z]+\?`)

// splitTypeFilter splits a comma-delimited _typeFilter value. A query may
// itself hold commas (ORed values), so the value is cut only at commas
// followed by the start of another query.
func splitTypeFilter(v string) []string {
	var out []string
	start := 0
	for i := 0; i < len(v); i++ {
		if v[i] == ',' && typeFilterStart.MatchString(v[i+1:]) {
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	return append(out, v[start:])
}

// typeFilterResultParams are search parameters that shape a result page
// rather than select resources; in a _typeFilter they mean nothing.
var typeFilterResultParams = []string{"_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total", "_cursor", "_contained", "_containedType"}

// typeFilters parses p's _typeFilter queries strictly: an unsupported
// parameter is an error, never dropped. Filters on types the export does
// not include are left out, as the IG says.
func (x *Exporter) typeFilters(p *params) (map[string][]*search.Query, error) {
	out := map[string][]*search.Query{}
	for _, f := range p.TypeFilters {
		typ, query, ok := strings.Cut(strings.TrimSpace(f), "?")
		if !ok || !spec.IsResourceType(typ) {
			return nil, fhir.NewError(fhir.BadRequest, "invalid", "_typeFilter "+quote(f)+" must be [ResourceType]?[search parameters]")
		}
		vals, err := url.ParseQuery(query)
		if err != nil {
			return nil, fhir.NewError(fhir.BadRequest, "invalid", "_typeFilter "+quote(f)+": "+err.Error())
		}
		for name := range vals {
			base, _, _ := strings.Cut(name, ":")
			if slices.Contains(typeFilterResultParams, base) {
				return nil, fhir.NewError(fhir.BadRequest, "not-supported", "_typeFilter "+quote(f)+": "+name+" selects no resources and is not supported")
			}
		}
		q, err := search.Parse(typ, vals, search.Options{Strict: true, Base: x.en.Base()})
		if err != nil {
			return nil, err
		}
		if p.Types != nil && !slices.Contains(p.Types, typ) {
			continue
		}
		if p.Level != "system" && spec.CompartmentParams("Patient", typ) == nil {
			continue
		}
		out[typ] = append(out[typ], q)
	}
	return out, nil
}

// selection turns stored parameters into the store's export selection.
func (x *Exporter) selection(p *params) (store.ExportSelection, error) {
	filters, err := x.typeFilters(p)
	if err != nil {
		return store.ExportSelection{}, err
	}
	sel := store.ExportSelection{Types: p.Types, Filters: filters}
	if p.Since != nil {
		sel.Since = *p.Since
	}
	switch p.Level {
	case "patient":
		sel.PatientCompartment = true
	case "group":
		sel.PatientCompartment = true
		sel.PatientIDs = p.Patients
		if sel.PatientIDs == nil {
			sel.PatientIDs = []string{}
		}
	}
	return sel, nil
}

// groupPatients returns the ids of a Group's active Patient members, read
// on behalf of caller.
func (x *Exporter) groupPatients(ctx context.Context, caller *engine.Caller, id string) ([]string, error) {
	v, err := x.en.Read(ctx, caller, "Group", id)
	if err != nil {
		if fe := (*fhir.Error)(nil); errors.As(err, &fe) && (fe.Kind == fhir.NotFound || fe.Kind == fhir.Gone) {
			return nil, fhir.Missing("Group/" + id + " does not exist")
		}
		return nil, err
	}
	var g struct {
		Member []struct {
			Entity struct {
				Reference string `json:"reference"`
			} `json:"entity"`
			Inactive bool `json:"inactive"`
		} `json:"member"`
	}
	if err := json.Unmarshal(v.Content, &g); err != nil {
		return nil, fmt.Errorf("export: Group/%s: %w", id, err)
	}
	ids := []string{}
	for _, m := range g.Member {
		ref := strings.TrimPrefix(m.Entity.Reference, x.en.Base()+"/")
		pid, ok := strings.CutPrefix(ref, "Patient/")
		if m.Inactive || !ok || !fhir.ValidID(pid) || slices.Contains(ids, pid) {
			continue
		}
		ids = append(ids, pid)
	}
	return ids, nil
}

func quote(s string) string {
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return `"` + strings.ToValidUTF8(s, "\uFFFD") + `"`
}
