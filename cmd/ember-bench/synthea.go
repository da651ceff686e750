package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/emberfhir/ember/internal/synthea"
)

// syntheaSet is the Synthea data set as the search scenarios PUT it: every
// resource with its references resolved to Type/id, the byte offsets of the
// resource ids it mentions (so copies can be made without re-parsing), and
// the real values the search mix asks for.
type syntheaSet struct {
	res []syntheaResource

	// Values picked from the data, copy 0 (the original ids).
	patients     []string          // Patient ids that have Observations
	medPatients  []string          // Patient ids with an active or completed MedicationRequest
	families     []string          // Patient family names
	femaleBirths []string          // birthDates of female Patients
	mrn          map[string]string // Patient id → "system|value" of its MR identifier
	vitalsSince  map[string]string // Patient id → median date of its vital-signs Observations
	loincCodes   []string          // distinct LOINC codes of Observation.code
	copies       int               // copies loaded besides the original (search330k)
}

type syntheaResource struct {
	typ, id string
	json    []byte
	idAt    []int // offsets just past each known resource id in json, ascending
}

// uuidRE finds UUIDs; those that are resource ids of the set get a suffix in
// each copy. Synthea's ids are all UUIDs (checked when loading).
var uuidRE = regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)

// loadSynthea reads every bundle of the Synthea directory in load order.
func loadSynthea() (*syntheaSet, error) {
	dir, err := synthea.Dir()
	if err != nil {
		return nil, err
	}
	files, err := synthea.Files(dir)
	if err != nil {
		return nil, err
	}
	l := synthea.NewLoader()
	s := &syntheaSet{}
	for _, f := range files {
		rs, err := l.Resources(f)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			s.res = append(s.res, syntheaResource{typ: r.Type, id: r.ID, json: r.JSON})
		}
	}
	ids := make(map[string]bool, len(s.res))
	for _, r := range s.res {
		if !uuidRE.MatchString(r.id) || len(r.id) != 36 {
			return nil, fmt.Errorf("synthea: %s/%s: id is not a UUID; copies cannot rewrite it", r.typ, r.id)
		}
		ids[strings.ToLower(r.id)] = true
	}
	for i := range s.res {
		r := &s.res[i]
		for _, loc := range uuidRE.FindAllIndex(r.json, -1) {
			if ids[strings.ToLower(string(r.json[loc[0]:loc[1]]))] {
				r.idAt = append(r.idAt, loc[1])
			}
		}
	}
	if err := s.pickValues(); err != nil {
		return nil, err
	}
	return s, nil
}

// suffix is what copy k (1…) appends to every resource id; copy 0 is the
// original data.
func suffix(k int) string {
	if k == 0 {
		return ""
	}
	return "-c" + strconv.Itoa(k)
}

// copyJSON returns r's JSON with every known resource id suffixed for copy k.
func (r *syntheaResource) copyJSON(k int) []byte {
	sfx := suffix(k)
	if sfx == "" {
		return r.json
	}
	out := make([]byte, 0, len(r.json)+len(r.idAt)*len(sfx))
	prev := 0
	for _, at := range r.idAt {
		out = append(out, r.json[prev:at]...)
		out = append(out, sfx...)
		prev = at
	}
	return append(out, r.json[prev:]...)
}

// putCopies PUTs copies first … first+n-1 of every resource from the given
// number of clients, in bundle order within each copy. It returns the
// outcome of all PUTs.
func (s *syntheaSet) putCopies(ctx context.Context, e *env, clients, first, n int) (outcome, error) {
	per := len(s.res)
	return forEach(ctx, clients, n*per, func(ctx context.Context, i int) error {
		k, r := first+i/per, &s.res[i%per]
		url := e.fhirBase + "/" + r.typ + "/" + r.id + suffix(k)
		return e.do(ctx, http.MethodPut, url, r.copyJSON(k), http.StatusOK, http.StatusCreated)
	})
}

// pickFields are the elements the search mix takes its values from.
type pickFields struct {
	Subject *struct {
		Reference string `json:"reference"`
	} `json:"subject"`
	Name []struct {
		Family string `json:"family"`
	} `json:"name"`
	Status     string `json:"status"`
	Gender     string `json:"gender"`
	BirthDate  string `json:"birthDate"`
	Identifier []struct {
		System string           `json:"system"`
		Value  string           `json:"value"`
		Type   *codeableConcept `json:"type"`
	} `json:"identifier"`
	Category          []codeableConcept `json:"category"`
	Code              *codeableConcept  `json:"code"`
	EffectiveDateTime string            `json:"effectiveDateTime"`
}

func (s *syntheaSet) pickValues() error {
	s.mrn = map[string]string{}
	s.vitalsSince = map[string]string{}
	vitals := map[string][]string{}
	withObs, withMed := map[string]bool{}, map[string]bool{}
	families := map[string]bool{}
	codes := map[string]bool{}
	var patients []string
	for _, r := range s.res {
		if r.typ != "Patient" && r.typ != "Observation" && r.typ != "MedicationRequest" {
			continue
		}
		var f pickFields
		if err := json.Unmarshal(r.json, &f); err != nil {
			return fmt.Errorf("synthea: %s/%s: %w", r.typ, r.id, err)
		}
		switch r.typ {
		case "Patient":
			patients = append(patients, r.id)
			for _, n := range f.Name {
				if n.Family != "" {
					families[n.Family] = true
				}
			}
			if f.Gender == "female" && f.BirthDate != "" {
				s.femaleBirths = append(s.femaleBirths, f.BirthDate)
			}
			for _, id := range f.Identifier {
				if id.Type != nil && slices.ContainsFunc(id.Type.Coding, func(c coding) bool { return c.Code == "MR" }) {
					s.mrn[r.id] = id.System + "|" + id.Value
				}
			}
		case "MedicationRequest":
			if pid, ok := strings.CutPrefix(subject(f), "Patient/"); ok && (f.Status == "active" || f.Status == "completed") {
				withMed[pid] = true
			}
		case "Observation":
			if f.Subject == nil {
				continue
			}
			pid, ok := strings.CutPrefix(f.Subject.Reference, "Patient/")
			if !ok {
				continue
			}
			withObs[pid] = true
			if f.Code != nil {
				for _, c := range f.Code.Coding {
					if c.System == "http://loinc.org" {
						codes[c.Code] = true
					}
				}
			}
			vital := slices.ContainsFunc(f.Category, func(cc codeableConcept) bool {
				return slices.ContainsFunc(cc.Coding, func(c coding) bool { return c.Code == "vital-signs" })
			})
			if vital && len(f.EffectiveDateTime) >= 10 {
				vitals[pid] = append(vitals[pid], f.EffectiveDateTime[:10])
			}
		}
	}
	for _, p := range patients {
		if withObs[p] {
			s.patients = append(s.patients, p)
		}
		if withMed[p] {
			s.medPatients = append(s.medPatients, p)
		}
	}
	for p, ds := range vitals {
		slices.Sort(ds)
		s.vitalsSince[p] = ds[len(ds)/2]
	}
	for f := range families {
		s.families = append(s.families, f)
	}
	for c := range codes {
		s.loincCodes = append(s.loincCodes, c)
	}
	slices.Sort(s.families)
	slices.Sort(s.loincCodes)
	switch {
	case len(s.patients) == 0:
		return fmt.Errorf("synthea: no Patient has Observations")
	case len(s.medPatients) == 0:
		return fmt.Errorf("synthea: no Patient has an active or completed MedicationRequest")
	case len(s.families) == 0 || len(s.femaleBirths) == 0 || len(s.mrn) == 0:
		return fmt.Errorf("synthea: Patients lack names, female birth dates or MR identifiers")
	case !slices.Contains(s.loincCodes, "8302-2"):
		return fmt.Errorf("synthea: no Observation has LOINC 8302-2 (body height)")
	}
	return nil
}

func subject(f pickFields) string {
	if f.Subject == nil {
		return ""
	}
	return f.Subject.Reference
}

// size is the total JSON size of the set, for the log.
func (s *syntheaSet) size() int {
	n := 0
	for _, r := range s.res {
		n += len(r.json)
	}
	return n
}

// isSearchset reports whether body is a searchset Bundle. Ember writes
// resourceType and type first; anything else is decoded to be sure.
func isSearchset(body []byte) bool {
	if bytes.HasPrefix(body, []byte(`{"resourceType":"Bundle","type":"searchset"`)) {
		return true
	}
	var b struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
	}
	return json.Unmarshal(body, &b) == nil && b.ResourceType == "Bundle" && b.Type == "searchset"
}
