package trail

import (
	"encoding/json"
	"strings"
	"sync"

	"github.com/emberfhir/ember/fhir/index"
	"github.com/emberfhir/ember/fhir/spec"
)

// patientCache remembers the patient of resources read recently: a server
// answering the same reads over and over extracts each one once.
type patientCache struct {
	mu sync.Mutex
	m  map[string]string
}

const maxPatientCache = 10000

// of returns the patient ("Patient/x") whose compartment the resource is in
// through its compartment parameters, or "" for none or several.
func (c *patientCache) of(typ, key string, content []byte) string {
	if typ == "" {
		return ""
	}
	if typ == "Patient" { // its own patient: the id is in the key, no parse
		if id, _, ok := strings.Cut(strings.TrimPrefix(key, "Patient/"), "/"); ok && id != "" {
			return "Patient/" + id
		}
	}
	codes := spec.CompartmentParams("Patient", typ)
	if typ != "Patient" && len(codes) == 0 {
		return ""
	}
	c.mu.Lock()
	p, ok := c.m[key]
	c.mu.Unlock()
	if ok && key != "" {
		return p
	}
	p = patientOf(typ, content, codes)
	if key != "" {
		c.mu.Lock()
		if c.m == nil || len(c.m) >= maxPatientCache {
			c.m = map[string]string{}
		}
		c.m[key] = p
		c.mu.Unlock()
	}
	return p
}

func patientOf(typ string, content []byte, codes []string) string {
	if typ == "Patient" {
		var r struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(content, &r) == nil && r.ID != "" {
			return "Patient/" + r.ID
		}
		return ""
	}
	entries, err := index.Extract(typ, content)
	if err != nil {
		return ""
	}
	ids := make(map[int32]bool, len(codes))
	for _, code := range codes {
		if code != "_id" {
			ids[spec.ParamID(typ, code)] = true
		}
	}
	found := ""
	for _, r := range entries.References {
		if ids[r.Param] && r.Type == "Patient" && r.ID != "" {
			if found != "" && found != "Patient/"+r.ID {
				return "" // several patients: none is the patient
			}
			found = "Patient/" + r.ID
		}
	}
	return found
}

// bundleEntities reads a transaction or batch response: each entry's
// location (without its version) is an entity; a Patient among them is
// the patient when it is the only one.
func bundleEntities(b []byte) (refs []string, patient string) {
	var resp struct {
		Entry []struct {
			Response struct {
				Location string `json:"location"`
			} `json:"response"`
		} `json:"entry"`
	}
	if json.Unmarshal(b, &resp) != nil {
		return nil, ""
	}
	patients := 0
	for _, e := range resp.Entry {
		ref := localRef(e.Response.Location)
		if ref == "" {
			continue
		}
		refs = append(refs, ref)
		if strings.HasPrefix(ref, "Patient/") {
			patients++
			patient = ref
		}
	}
	if patients != 1 {
		patient = ""
	}
	return refs, patient
}

// localRef turns a location ("Patient/1/_history/2", or absolute) into
// "Type/id", or "" when it is not one.
func localRef(loc string) string {
	if i := strings.Index(loc, "/_history/"); i >= 0 {
		loc = loc[:i]
	}
	parts := strings.Split(strings.TrimRight(loc, "/"), "/")
	if len(parts) < 2 {
		return ""
	}
	typ, id := parts[len(parts)-2], parts[len(parts)-1]
	if !spec.IsResourceType(typ) || id == "" {
		return ""
	}
	return typ + "/" + id
}
