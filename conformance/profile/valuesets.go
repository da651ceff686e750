package profile

import (
	"encoding/json"
	"strings"
	"sync"

	"github.com/emberfhir/ember/fhir/spec"
)

// Codes is an expanded value set: its (system, code) pairs.
type Codes struct {
	pairs map[[2]string]bool
	codes map[string]bool // the codes whatever their system, for code elements
}

// Has reports whether the value set holds code in system; an empty system
// (a code element, whose system the binding implies) matches any.
func (c *Codes) Has(system, code string) bool {
	if system == "" {
		return c.codes[code]
	}
	return c.pairs[[2]string{system, code}]
}

// Len is the number of codes.
func (c *Codes) Len() int { return len(c.pairs) }

func (c *Codes) add(system, code string) {
	c.pairs[[2]string{system, code}] = true
	c.codes[code] = true
}

// ValueSets expands the value sets bindings name: those of the loaded
// packages (enumerated concepts, whole code systems the packages define
// completely, other value sets) and R4's (fhir/spec's expansions). What
// needs an external terminology (filters, SNOMED CT, LOINC) does not
// expand: the binding is then reported as not checked. Expansions are
// computed once and cached; safe for concurrent use.
type ValueSets struct {
	defs    map[string]json.RawMessage // ValueSet by canonical url
	systems map[string]json.RawMessage // complete CodeSystems by url
	mu      sync.RWMutex               // the write path reads the cache from every core
	cache   map[string]*Codes          // nil value: not expandable
}

// NewValueSets indexes ValueSet and CodeSystem resources (JSON).
func NewValueSets(valueSets, codeSystems [][]byte) *ValueSets {
	v := &ValueSets{defs: map[string]json.RawMessage{}, systems: map[string]json.RawMessage{}, cache: map[string]*Codes{}}
	for _, raw := range valueSets {
		var head struct {
			URL string `json:"url"`
		}
		if json.Unmarshal(raw, &head) == nil && head.URL != "" {
			v.defs[head.URL] = raw
		}
	}
	for _, raw := range codeSystems {
		var head struct {
			URL     string `json:"url"`
			Content string `json:"content"`
		}
		if json.Unmarshal(raw, &head) == nil && head.URL != "" && head.Content == "complete" {
			v.systems[head.URL] = raw
		}
	}
	return v
}

// Expand returns the value set's codes; ok is false when it does not
// expand here.
func (v *ValueSets) Expand(url string) (*Codes, bool) {
	if i := strings.IndexByte(url, '|'); i >= 0 {
		url = url[:i]
	}
	v.mu.RLock()
	c, ok := v.cache[url]
	v.mu.RUnlock()
	if ok {
		return c, c != nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	c = v.expand(url, map[string]bool{})
	return c, c != nil
}

func (v *ValueSets) expand(url string, seen map[string]bool) *Codes {
	if c, ok := v.cache[url]; ok {
		return c
	}
	if seen[url] {
		return nil
	}
	seen[url] = true
	c := v.compute(url, seen)
	v.cache[url] = c
	return c
}

func (v *ValueSets) compute(url string, seen map[string]bool) *Codes {
	raw, ok := v.defs[url]
	if !ok {
		codes, ok := spec.ValueSetCodes(url)
		if !ok {
			return nil
		}
		c := &Codes{pairs: map[[2]string]bool{}, codes: map[string]bool{}}
		for _, cd := range codes {
			c.add(cd.System, cd.Code)
		}
		return c
	}
	type conceptSet struct {
		System  string `json:"system"`
		Concept []struct {
			Code string `json:"code"`
		} `json:"concept"`
		Filter   []json.RawMessage `json:"filter"`
		ValueSet []string          `json:"valueSet"`
	}
	var vs struct {
		Compose struct {
			Include []conceptSet `json:"include"`
			Exclude []conceptSet `json:"exclude"`
		} `json:"compose"`
	}
	if json.Unmarshal(raw, &vs) != nil || len(vs.Compose.Include) == 0 {
		return nil
	}
	c := &Codes{pairs: map[[2]string]bool{}, codes: map[string]bool{}}
	for _, inc := range vs.Compose.Include {
		switch {
		case len(inc.Filter) > 0 || len(inc.ValueSet) > 0 && inc.System != "":
			return nil
		case len(inc.ValueSet) > 0:
			for _, u := range inc.ValueSet {
				sub := v.expand(strings.SplitN(u, "|", 2)[0], seen)
				if sub == nil {
					return nil
				}
				for p := range sub.pairs {
					c.add(p[0], p[1])
				}
			}
		case len(inc.Concept) > 0:
			for _, cd := range inc.Concept {
				c.add(inc.System, cd.Code)
			}
		default:
			if !v.wholeSystem(inc.System, c) {
				return nil
			}
		}
	}
	for _, exc := range vs.Compose.Exclude {
		if len(exc.Concept) == 0 || len(exc.Filter) > 0 || len(exc.ValueSet) > 0 {
			return nil
		}
		for _, cd := range exc.Concept {
			delete(c.pairs, [2]string{exc.System, cd.Code})
		}
	}
	// Rebuild the code-only index after excludes.
	c.codes = map[string]bool{}
	for p := range c.pairs {
		c.codes[p[1]] = true
	}
	return c
}

// wholeSystem adds every code of a complete CodeSystem of the packages.
func (v *ValueSets) wholeSystem(system string, c *Codes) bool {
	raw, ok := v.systems[system]
	if !ok {
		return false
	}
	type concept struct {
		Code    string    `json:"code"`
		Concept []concept `json:"concept"`
	}
	var cs struct {
		Concept []concept `json:"concept"`
	}
	if json.Unmarshal(raw, &cs) != nil {
		return false
	}
	var walk func([]concept)
	walk = func(list []concept) {
		for _, cd := range list {
			c.add(system, cd.Code)
			walk(cd.Concept)
		}
	}
	walk(cs.Concept)
	return true
}
