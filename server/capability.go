package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/index"
	"github.com/emberfhir/ember/fhir/spec"
)

// typeInteractions are the type- and instance-level interactions dispatch
// serves for every resource type. The CapabilityStatement is built from this
// list, and a test exercises each entry, so the statement stays true.
var typeInteractions = []string{"read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type"}

// systemInteractions are the system-level interactions dispatch serves.
var systemInteractions = []string{"history-system", "search-system"}

// Guides is what loaded implementation guides add to the
// CapabilityStatement. Every claim stays true: a combination is listed
// only when Ember supports each of its parameters.
type Guides struct {
	// Instantiates are the guides' server CapabilityStatements.
	Instantiates []string
	// Profiles lists each resource type's supported profiles.
	Profiles map[string][]string
	// Combinations lists each type's search parameter combinations (the
	// codes of each).
	Combinations map[string][][]string
	// NotIndexed names the parameters ("Type.code") a guide added while
	// resources of the type were stored: they answer for what was written
	// since, and for the rest only after `ember reindex`.
	NotIndexed map[string]bool
}

type capabilityStatement struct {
	ResourceType   string      `json:"resourceType"`
	Instantiates   []string    `json:"instantiates,omitempty"`
	Status         string      `json:"status"`
	Date           string      `json:"date"`
	Publisher      string      `json:"publisher"`
	Kind           string      `json:"kind"`
	Software       capSoftware `json:"software"`
	Implementation capImpl     `json:"implementation"`
	FHIRVersion    string      `json:"fhirVersion"`
	Format         []string    `json:"format"`
	PatchFormat    []string    `json:"patchFormat"`
	Rest           []capRest   `json:"rest"`
}

type capSoftware struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

type capImpl struct {
	Description string `json:"description"`
	URL         string `json:"url"`
}

type capRest struct {
	Mode        string           `json:"mode"`
	Security    *capSecurity     `json:"security,omitempty"`
	Resource    []capResource    `json:"resource"`
	Interaction []capInteraction `json:"interaction"`
	Operation   []capOperation   `json:"operation,omitempty"`
}

type capResource struct {
	Extension         []capExtension   `json:"extension,omitempty"`
	Type              string           `json:"type"`
	SupportedProfile  []string         `json:"supportedProfile,omitempty"`
	Interaction       []capInteraction `json:"interaction"`
	Versioning        string           `json:"versioning"`
	ReadHistory       bool             `json:"readHistory"`
	UpdateCreate      bool             `json:"updateCreate"`
	ConditionalCreate bool             `json:"conditionalCreate"`
	ConditionalRead   string           `json:"conditionalRead"`
	ConditionalUpdate bool             `json:"conditionalUpdate"`
	ConditionalDelete string           `json:"conditionalDelete"`
	SearchInclude     []string         `json:"searchInclude,omitempty"`
	SearchRevInclude  []string         `json:"searchRevInclude,omitempty"`
	SearchParam       []capSearchParam `json:"searchParam,omitempty"`
	Operation         []capOperation   `json:"operation,omitempty"`
}

type capSearchParam struct {
	Name          string `json:"name"`
	Definition    string `json:"definition,omitempty"`
	Type          string `json:"type"`
	Documentation string `json:"documentation,omitempty"`
}

type capOperation struct {
	Name       string `json:"name"`
	Definition string `json:"definition"`
}

type capInteraction struct {
	Code string `json:"code"`
}

func interactions(codes []string) []capInteraction {
	out := make([]capInteraction, len(codes))
	for i, c := range codes {
		out[i] = capInteraction{Code: c}
	}
	return out
}

// buildCapability renders the CapabilityStatement once at start-up.
func (s *Server) buildCapability(now time.Time) ([]byte, error) {
	version := s.cfg.Version
	if version == "" {
		version = "dev"
	}
	cs := capabilityStatement{
		ResourceType:   "CapabilityStatement",
		Status:         "active",
		Date:           fhir.FormatInstant(now),
		Publisher:      "Ember",
		Kind:           "instance",
		Software:       capSoftware{Name: "Ember", Version: version},
		Implementation: capImpl{Description: "Ember FHIR R4 server", URL: s.base},
		FHIRVersion:    "4.0.1",
		Format:         []string{"json", "xml"},
		PatchFormat:    []string{engine.JSONPatchType, "application/fhir+json", "application/fhir+xml"},
	}
	g := s.guides.Load()
	if g == nil {
		g = &Guides{}
	}
	cs.Instantiates = g.Instantiates
	if len(s.topics) > 0 {
		cs.Instantiates = append(append([]string(nil), cs.Instantiates...), backportServer)
	}
	rest := capRest{Mode: "server", Interaction: interactions(systemInteractions), Operation: s.capOperations(engine.SystemLevel, ""), Security: s.capSecurity()}
	revIncludes := map[string][]string{}
	for _, t := range spec.ResourceTypes() {
		for _, sp := range spec.SearchParams(t) {
			if sp.Type == spec.Reference && index.Supported(sp) {
				for _, target := range sp.Targets {
					revIncludes[target] = append(revIncludes[target], t+":"+sp.Code)
				}
			}
		}
	}
	for _, t := range spec.ResourceTypes() {
		res := capResource{
			Type:              t,
			Interaction:       interactions(typeInteractions),
			Versioning:        "versioned-update",
			ReadHistory:       true,
			UpdateCreate:      true,
			ConditionalCreate: true,
			ConditionalRead:   "full-support",
			ConditionalUpdate: true,
			ConditionalDelete: "multiple",
			SearchRevInclude:  revIncludes[t],
			Operation:         s.capOperations(engine.TypeLevel|engine.InstanceLevel, t),
		}
		sort.Strings(res.SearchRevInclude)
		params := spec.SearchParams(t)
		codes := make([]string, 0, len(params))
		for code := range params {
			codes = append(codes, code)
		}
		sort.Strings(codes)
		for _, code := range codes {
			sp := params[code]
			// Only what Ember answers correctly is advertised.
			if !index.Supported(sp) {
				continue
			}
			p := capSearchParam{Name: code, Definition: sp.URL, Type: sp.Type.String()}
			if g.NotIndexed[t+"."+code] {
				p.Documentation = "Added by an implementation guide after resources of this type were stored: it finds those written since; run `ember reindex` to index the others."
			}
			res.SearchParam = append(res.SearchParam, p)
			if sp.Type == spec.Reference {
				res.SearchInclude = append(res.SearchInclude, t+":"+code)
			}
		}
		if len(res.SearchInclude) > 0 {
			res.SearchInclude = append([]string{"*"}, res.SearchInclude...)
		}
		res.SupportedProfile = g.Profiles[t]
		res.Extension = combinations(g.Combinations[t], params)
		if t == "Subscription" {
			for _, topic := range s.topics {
				res.Extension = append(res.Extension, capExtension{URL: topicCanonicalExt, ValueCanonical: topic})
			}
		}
		rest.Resource = append(rest.Resource, res)
	}
	cs.Rest = []capRest{rest}
	return json.Marshal(cs)
}

// combinations renders a type's search parameter combinations as the R4
// extension, leaving out any with a parameter Ember does not support.
func combinations(combos [][]string, params map[string]*spec.SearchParam) []capExtension {
	var out []capExtension
next:
	for _, codes := range combos {
		x := capExtension{URL: "http://hl7.org/fhir/StructureDefinition/capabilitystatement-search-parameter-combination"}
		for _, c := range codes {
			if sp := params[c]; sp == nil || !index.Supported(sp) {
				continue next
			}
			x.Extension = append(x.Extension, capExtension{URL: "required", ValueString: c})
		}
		out = append(out, x)
	}
	return out
}

// capOperations lists the registered operations invocable at any of levels
// (on resource type typ, "" for the system level), sorted by name: the
// statement is derived from the registry, so it cannot claim more.
func (s *Server) capOperations(levels engine.Level, typ string) []capOperation {
	var out []capOperation
	for name, op := range s.eng.Operations() {
		if (s.ops[name] == nil && op.Invoke == nil) || op.Unlisted || op.Levels&levels == 0 || (typ != "" && op.Types != nil && !contains(op.Types, typ)) {
			continue
		}
		def := op.Definition
		if def == "" {
			def = operationDefinition(name, typ)
		}
		out = append(out, capOperation{Name: name, Definition: def})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// operationDefinition is the canonical OperationDefinition of an operation
// on typ ("" at system level). The core ones are defined on Resource, except
// $everything (Patient), the terminology operations (ValueSet-expand,
// CodeSystem-validate-code …) and Bulk Data's $export.
func operationDefinition(name, typ string) string {
	switch {
	case (typ == "ValueSet" || typ == "CodeSystem") && (name == "expand" || name == "validate-code" || name == "lookup" || name == "subsumes"):
		return "http://hl7.org/fhir/OperationDefinition/" + typ + "-" + name
	case name == "everything":
		return "http://hl7.org/fhir/OperationDefinition/" + typ + "-everything"
	case name == "export" && typ == "":
		return "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"
	case name == "export":
		return "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/" + strings.ToLower(typ) + "-export"
	}
	return "http://hl7.org/fhir/OperationDefinition/Resource-" + name
}

// capabilities serves GET /fhir/metadata.
func (s *Server) capabilities(c *gin.Context, _ []string) {
	s.writeJSON(c, http.StatusOK, *s.capability.Load())
}

type capSecurity struct {
	Extension   []capExtension `json:"extension"`
	CORS        bool           `json:"cors"`
	Service     []capConcept   `json:"service"`
	Description string         `json:"description"`
}

type capExtension struct {
	URL            string         `json:"url"`
	ValueURI       string         `json:"valueUri,omitempty"`
	ValueCanonical string         `json:"valueCanonical,omitempty"`
	ValueString    string         `json:"valueString,omitempty"`
	Extension      []capExtension `json:"extension,omitempty"`
}

type capConcept struct {
	Coding []capCoding `json:"coding"`
	Text   string      `json:"text,omitempty"`
}

type capCoding struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

// capSecurity advertises the SMART authorization server (the oauth-uris
// extension and the SMART-on-FHIR service code), when auth is on.
func (s *Server) capSecurity() *capSecurity {
	e := s.cfg.OAuth
	if s.cfg.Verifier == nil || e == nil {
		return nil
	}
	var uris []capExtension
	for _, u := range []struct{ name, uri string }{
		{"authorize", e.Authorize}, {"token", e.Token}, {"introspect", e.Introspect},
		{"revoke", e.Revoke}, {"register", e.Register}, {"manage", e.Manage},
	} {
		if u.uri != "" {
			uris = append(uris, capExtension{URL: u.name, ValueURI: u.uri})
		}
	}
	return &capSecurity{
		Extension: []capExtension{{URL: "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris", Extension: uris}},
		CORS:      true,
		Service: []capConcept{{
			Coding: []capCoding{{System: "http://terminology.hl7.org/CodeSystem/restful-security-service", Code: "SMART-on-FHIR"}},
			Text:   "OAuth2 using SMART-on-FHIR profile (see /.well-known/smart-configuration)",
		}},
		Description: "SMART App Launch 2.0 and Backend Services; bearer tokens required on every interaction except this statement",
	}
}

// The Subscriptions R5 Backport IG's server CapabilityStatement and the
// extension that lists a server's topics on Subscription.
const (
	backportServer    = "http://hl7.org/fhir/uv/subscriptions-backport/CapabilityStatement/backport-subscription-server-r4"
	topicCanonicalExt = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical"
)

// AdvertiseTopics lists the subscription topics the server serves on
// Subscription in the CapabilityStatement, which then instantiates the
// backport IG's server statement. Call it before serving, after the
// subscription operations are registered (RegisterOperation).
func (s *Server) AdvertiseTopics(topics []string) error {
	s.capMu.Lock()
	s.topics = topics
	s.capMu.Unlock()
	return s.rebuildCapability()
}

// SetGuides replaces what the loaded implementation guides declare in the
// CapabilityStatement (instantiates, supported profiles, combinations,
// parameters not yet indexed): a guide installed while the server runs
// shows without a restart. Safe for concurrent use.
func (s *Server) SetGuides(g *Guides) error {
	s.guides.Store(g)
	return s.rebuildCapability()
}

// rebuildCapability builds the CapabilityStatement afresh from what is
// registered now; readers see the old or the new one whole.
func (s *Server) rebuildCapability() error {
	s.capMu.Lock()
	defer s.capMu.Unlock()
	capability, err := s.buildCapability(time.Now())
	if err != nil {
		return fmt.Errorf("server: capability statement: %w", err)
	}
	s.capability.Store(&capability)
	return nil
}
