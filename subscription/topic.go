package subscription

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gofhir/fhirpath"
	"github.com/gofhir/fhirpath/types"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/index"
	"github.com/emberfhir/ember/fhir/search"
	"github.com/emberfhir/ember/fhir/spec"
	"github.com/emberfhir/ember/store"
)

// TopicBase is the canonical base of the topics Ember ships.
const TopicBase = "https://emberfhir.org/fhir/SubscriptionTopic/"

// Interactions a trigger fires on.
const (
	onCreate uint8 = 1 << iota
	onUpdate
	onDelete
	onAll = onCreate | onUpdate | onDelete
)

// Topic is a SubscriptionTopic: what changes it reports. Ember ships some
// (shippedTopics); users define more as R4 Basic resources carrying the
// R5 SubscriptionTopic's cross-version extensions (userTopic).
type Topic struct {
	URL, Title, Description string
	Triggers                []Trigger
}

// Trigger is one resource trigger of a topic.
type Trigger struct {
	Resource     string
	Interactions uint8
	// Test decides a change that passed Interactions: prev is nil for a
	// create, cur for a delete. nil fires on every such change.
	Test func(prev, cur *snapshot) bool
	// reads are the search parameters (ids on Resource) whose index rows
	// Test looks at: a snapshot extracts only what someone reads.
	reads []int32
}

// snapshot is one version of a changed resource; its index entries are
// extracted once, on first use, and shared by every topic and filter
// that looks at it.
type snapshot struct {
	typ, id string
	content []byte
	at      time.Time      // meta.lastUpdated; zero until read
	only    map[int32]bool // the parameters to extract (nil: all)
	once    sync.Once
	entries *index.Entries
}

func newSnapshot(typ, id string, content []byte, at time.Time, only map[int32]bool) *snapshot {
	if content == nil {
		return nil
	}
	return &snapshot{typ: typ, id: id, content: content, at: at, only: only}
}

// lastUpdated is the version's meta.lastUpdated.
func (s *snapshot) lastUpdated() time.Time {
	if s.at.IsZero() {
		var m struct {
			Meta struct {
				LastUpdated time.Time `json:"lastUpdated"`
			} `json:"meta"`
		}
		_ = json.Unmarshal(s.content, &m) // stored JSON: valid
		s.at = m.Meta.LastUpdated
	}
	return s.at
}

func (s *snapshot) index() *index.Entries {
	s.once.Do(func() {
		var e *index.Entries
		var err error
		if s.only != nil {
			e, err = index.ExtractOnly(s.typ, s.content, s.only)
		} else {
			e, err = index.Extract(s.typ, s.content)
		}
		if err != nil {
			e = &index.Entries{}
		}
		s.entries = e
	})
	return s.entries
}

// hasToken reports whether the snapshot's parameter code holds code (any
// system).
func (s *snapshot) hasToken(param, code string) bool {
	if s == nil {
		return false
	}
	id := spec.ParamID(s.typ, param)
	for _, t := range s.index().Tokens {
		if t.Param == id && t.Code == code {
			return true
		}
	}
	return false
}

// hasCoding reports whether the snapshot's parameter holds system|code.
func (s *snapshot) hasCoding(param, system, code string) bool {
	if s == nil {
		return false
	}
	id := spec.ParamID(s.typ, param)
	for _, t := range s.index().Tokens {
		if t.Param == id && t.System == system && t.Code == code {
			return true
		}
	}
	return false
}

// becomes fires when a resource reaches a state: created in it, or updated
// into it from another.
func becomes(state func(*snapshot) bool) func(prev, cur *snapshot) bool {
	return func(prev, cur *snapshot) bool {
		return cur != nil && state(cur) && (prev == nil || !state(prev))
	}
}

func statusIs(codes ...string) func(*snapshot) bool {
	return func(s *snapshot) bool {
		for _, c := range codes {
			if s.hasToken("status", c) {
				return true
			}
		}
		return false
	}
}

// aiAsserted is the security label inference puts on its findings
// (inference/fhir.go): "Artificial Intelligence asserted".
func aiAsserted(s *snapshot) bool {
	return s.hasCoding("_security", "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "AIAST")
}

// shippedTopics are the topics every Ember serves: one per resource type
// (any create, update or delete of it) and the clinical events integrators
// ask for.
func shippedTopics() map[string]*Topic {
	out := map[string]*Topic{}
	add := func(t *Topic) { out[t.URL] = t }
	status := func(typ string, codes ...string) Trigger {
		return Trigger{Resource: typ, Interactions: onCreate | onUpdate, Test: becomes(statusIs(codes...)), reads: []int32{spec.ParamID(typ, "status")}}
	}
	add(&Topic{URL: TopicBase + "diagnostic-report-final", Title: "Diagnostic report final",
		Description: "A DiagnosticReport is created final, or updated to final from another status.",
		Triggers:    []Trigger{status("DiagnosticReport", "final")}})
	add(&Topic{URL: TopicBase + "ai-finding-available", Title: "AI finding available",
		Description: "Ember's inference wrote a DiagnosticReport of an AI model's findings (security label AIAST).",
		Triggers: []Trigger{{Resource: "DiagnosticReport", Interactions: onCreate | onUpdate, Test: becomes(aiAsserted),
			reads: []int32{spec.ParamID("DiagnosticReport", "_security")}}}})
	add(&Topic{URL: TopicBase + "imaging-study-available", Title: "Imaging study available",
		Description: "An ImagingStudy is created available, or becomes available (DICOM ingest writes them).",
		Triggers:    []Trigger{status("ImagingStudy", "available")}})
	add(&Topic{URL: TopicBase + "encounter-start", Title: "Encounter start",
		Description: "An Encounter is created in-progress, or moves to in-progress.",
		Triggers:    []Trigger{status("Encounter", "in-progress")}})
	add(&Topic{URL: TopicBase + "encounter-end", Title: "Encounter end",
		Description: "An Encounter is created finished, or moves to finished.",
		Triggers:    []Trigger{status("Encounter", "finished")}})
	for _, typ := range spec.ResourceTypes() {
		add(&Topic{URL: TopicBase + typ, Title: typ + " changed",
			Description: "A " + typ + " is created, updated or deleted.",
			Triggers:    []Trigger{{Resource: typ, Interactions: onAll}}})
	}
	return out
}

// namedTopics are the shipped topics that are not per type, in the order
// the CapabilityStatement lists them.
var namedTopics = []string{"diagnostic-report-final", "ai-finding-available", "imaging-study-available", "encounter-start", "encounter-end"}

// fires reports whether a change of typ by method (prev, cur as in
// Trigger.Test) fires the topic.
func (t *Topic) fires(typ string, method store.Method, prev, cur *snapshot) bool {
	var on uint8
	switch {
	case method == store.MethodDelete:
		on = onDelete
	case prev == nil:
		on = onCreate
	default:
		on = onUpdate
	}
	for i := range t.Triggers {
		tr := &t.Triggers[i]
		if tr.Resource != typ || tr.Interactions&on == 0 {
			continue
		}
		if tr.Test == nil || tr.Test(prev, cur) {
			return true
		}
	}
	return false
}

// reads adds the parameters typ's triggers read to set.
func (t *Topic) reads(typ string, set map[int32]bool) {
	for _, tr := range t.Triggers {
		if tr.Resource == typ {
			for _, id := range tr.reads {
				set[id] = true
			}
		}
	}
}

// resources are the types the topic's triggers watch.
func (t *Topic) resources() []string {
	var out []string
	for _, tr := range t.Triggers {
		out = append(out, tr.Resource)
	}
	return out
}

// R5 SubscriptionTopic as R4 Basic: the cross-version extensions.
const (
	xver            = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic."
	extTopicURL     = xver + "url"
	extTopicTitle   = xver + "title"
	extTopicTrigger = xver + "resourceTrigger"
	fhirTypesSystem = "http://hl7.org/fhir/fhir-types"
)

// basicJSON is the part of a Basic the topic reader looks at.
type basicJSON struct {
	Code struct {
		Coding []struct {
			System string `json:"system"`
			Code   string `json:"code"`
		} `json:"coding"`
	} `json:"code"`
	Extension []extension `json:"extension"`
}

// extValue is an extension's value as text, whatever its value[x] type
// among those topics use.
type extValueJSON struct {
	URL          string  `json:"url"`
	ValueString  *string `json:"valueString"`
	ValueURI     *string `json:"valueUri"`
	ValueURL     *string `json:"valueUrl"`
	ValueCode    *string `json:"valueCode"`
	ValueBoolean *bool   `json:"valueBoolean"`
	ValueMD      *string `json:"valueMarkdown"`
	Extension    []extValueJSON
}

func (e extValueJSON) text() string {
	for _, p := range []*string{e.ValueString, e.ValueURI, e.ValueURL, e.ValueCode, e.ValueMD} {
		if p != nil {
			return *p
		}
	}
	if e.ValueBoolean != nil {
		return fmt.Sprint(*e.ValueBoolean)
	}
	return ""
}

// isTopic reports whether a Basic resource represents a SubscriptionTopic.
func isTopic(body []byte) bool {
	var b basicJSON
	if json.Unmarshal(body, &b) != nil {
		return false
	}
	for _, c := range b.Code.Coding {
		if c.System == fhirTypesSystem && c.Code == "SubscriptionTopic" {
			return true
		}
	}
	return false
}

// userTopic compiles a topic a user defined as a Basic resource. Errors
// name the extension at fault (they refuse the write of the Basic).
func userTopic(body []byte, base string) (*Topic, error) {
	var b struct {
		Extension []extValueJSON `json:"extension"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, fhir.Invalid("the topic cannot be read: " + err.Error())
	}
	t := &Topic{}
	for i, e := range b.Extension {
		at := fmt.Sprintf("Basic.extension[%d]", i)
		switch e.URL {
		case extTopicURL:
			t.URL = e.text()
		case extTopicTitle:
			t.Title = e.text()
		case extTopicTrigger:
			tr, err := userTrigger(e, at, base)
			if err != nil {
				return nil, err
			}
			t.Triggers = append(t.Triggers, tr)
		}
	}
	if t.URL == "" {
		return nil, unprocessable("Basic.extension", "a SubscriptionTopic needs its canonical url (extension %s)", extTopicURL)
	}
	if strings.HasPrefix(t.URL, TopicBase) {
		return nil, unprocessable("Basic.extension", "topic urls under %s are Ember's own", TopicBase)
	}
	if len(t.Triggers) == 0 {
		return nil, unprocessable("Basic.extension", "a SubscriptionTopic needs at least one resourceTrigger (extension %s)", extTopicTrigger)
	}
	return t, nil
}

// userTrigger compiles one resourceTrigger extension.
func userTrigger(e extValueJSON, at, base string) (Trigger, error) {
	tr := Trigger{}
	var (
		previous, current, forCreate, forDelete, fhirPath string
		requireBoth                                       bool
	)
	for _, p := range e.Extension {
		switch p.URL {
		case "resource":
			tr.Resource = strings.TrimPrefix(p.text(), "http://hl7.org/fhir/StructureDefinition/")
		case "supportedInteraction":
			switch p.text() {
			case "create":
				tr.Interactions |= onCreate
			case "update":
				tr.Interactions |= onUpdate
			case "delete":
				tr.Interactions |= onDelete
			default:
				return tr, unprocessable(at, "supportedInteraction %q: use create, update or delete", p.text())
			}
		case "queryCriteria":
			for _, q := range p.Extension {
				switch q.URL {
				case "previous":
					previous = q.text()
				case "current":
					current = q.text()
				case "resultForCreate":
					forCreate = q.text()
				case "resultForDelete":
					forDelete = q.text()
				case "requireBoth":
					requireBoth = q.text() == "true"
				}
			}
		case "fhirPathCriteria":
			fhirPath = p.text()
		}
	}
	if !spec.IsResourceType(tr.Resource) {
		return tr, unprocessable(at, "resourceTrigger.resource %q is not an R4 resource type", tr.Resource)
	}
	if tr.Interactions == 0 {
		tr.Interactions = onAll
	}
	prev, err := compileCriteria(tr.Resource, previous, at+".queryCriteria.previous", base)
	if err != nil {
		return tr, err
	}
	cur, err := compileCriteria(tr.Resource, current, at+".queryCriteria.current", base)
	if err != nil {
		return tr, err
	}
	var path *fhirpath.Expression
	if fhirPath != "" {
		if path, err = fhirpath.Compile(fhirPath); err != nil {
			return tr, unprocessable(at, "fhirPathCriteria %q does not compile: %v", fhirPath, err)
		}
	}
	for _, r := range []string{forCreate, forDelete} {
		if r != "" && r != "test-passes" && r != "test-fails" {
			return tr, unprocessable(at, "queryCriteria result %q: use test-passes or test-fails", r)
		}
	}
	if prev == nil && cur == nil && path == nil {
		return tr, nil
	}
	reads := map[int32]bool{}
	for _, m := range []*search.Matcher{prev, cur} {
		if m != nil {
			m.Params(tr.Resource, reads)
		}
	}
	for id := range reads {
		tr.reads = append(tr.reads, id)
	}
	tr.Test = func(p, c *snapshot) bool {
		if prev != nil || cur != nil {
			pass := func(m *search.Matcher, s *snapshot, result string) (bool, bool) {
				if m == nil {
					return false, false // not considered
				}
				if s == nil {
					return result != "test-fails", true
				}
				return m.Match(s.typ, s.id, s.lastUpdated(), s.index()), true
			}
			pp, pc := pass(prev, p, forCreate)
			cp, cc := pass(cur, c, forDelete)
			var ok bool
			switch {
			case pc && cc && requireBoth:
				ok = pp && cp
			case pc && cc:
				ok = pp || cp
			case pc:
				ok = pp
			default:
				ok = cp
			}
			if !ok {
				return false
			}
		}
		if path != nil {
			s := c
			if s == nil {
				s = p
			}
			out, err := path.Evaluate(s.content)
			if err != nil || len(out) != 1 {
				return false
			}
			b, isBool := out[0].(types.Boolean)
			return isBool && b.Bool()
		}
		return true
	}
	return tr, nil
}

// compileCriteria compiles a topic's query criteria ("status=final", or
// with its type: "Encounter?status=finished"); nil when empty.
func compileCriteria(typ, q, at, base string) (*search.Matcher, error) {
	if q == "" {
		return nil, nil
	}
	if t, rest, ok := strings.Cut(q, "?"); ok {
		if t != typ {
			return nil, unprocessable(at, "criteria %q are for %s, not the trigger's %s", q, t, typ)
		}
		q = rest
	}
	m, err := compileQuery(typ, q, base)
	if err != nil {
		return nil, unprocessable(at, "criteria %q: %v", q, err)
	}
	return m, nil
}

// compileQuery parses a search query string for typ into a Matcher,
// refusing what the in-memory matcher cannot evaluate.
func compileQuery(typ, query, base string) (*search.Matcher, error) {
	params, err := url.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("not a query string: %w", err)
	}
	for k := range params {
		if name, _, _ := strings.Cut(k, ":"); resultParams[name] {
			return nil, fmt.Errorf("%s shapes search results; it cannot filter notifications", name)
		}
	}
	q, err := search.Parse(typ, params, search.Options{Strict: true, Base: base})
	if err != nil {
		return nil, err
	}
	return search.Compile(q)
}

// resultParams are search result parameters, meaningless in a filter.
var resultParams = map[string]bool{"_sort": true, "_count": true, "_include": true, "_revinclude": true, "_summary": true,
	"_elements": true, "_total": true, "_contained": true, "_containedType": true, "_format": true, "_pretty": true}
