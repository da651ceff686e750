package spec

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
)

// Coding is one member of a value set expansion.
type Coding struct{ System, Code string }

// valueSetsGz holds the expansions the generator could compute from the R4
// package alone (see gen/valuesets.go); gzip keeps the binary small and
// loading is deferred to first use since most processes never need it.
//
//go:embed valuesets.json.gz
var valueSetsGz []byte

// valueSetFile is the layout of valuesets.json.gz (gen/valuesets.go writes
// the same shape): canonical URL -> expansion.
type valueSetFile map[string]valueSetExpansion

// valueSetExpansion is one expanded value set: its business version and its
// codes grouped by system, in the order the definition yields them.
type valueSetExpansion struct {
	Version string          `json:"version,omitempty"`
	Systems []valueSetCodes `json:"systems"`
}

// valueSetCodes is the part of an expansion drawn from one code system.
type valueSetCodes struct {
	System string   `json:"system"`
	Codes  []string `json:"codes"`
}

// valueSets is filled once, on first use, and only read afterwards.
var valueSets struct {
	once  sync.Once
	byURL valueSetFile
}

func loadValueSets() valueSetFile {
	valueSets.once.Do(func() {
		zr, err := gzip.NewReader(bytes.NewReader(valueSetsGz))
		if err != nil {
			panic(fmt.Sprintf("spec: embedded valuesets.json.gz: %v", err))
		}
		var f valueSetFile
		if err := json.NewDecoder(zr).Decode(&f); err != nil {
			// The file is generated and covered by tests; a failure here is
			// a broken build, not a runtime condition to recover from.
			panic(fmt.Sprintf("spec: embedded valuesets.json.gz: %v", err))
		}
		valueSets.byURL = f
	})
	return valueSets.byURL
}

// ValueSetCodes returns every (system, code) of the value set with canonical
// url, for the :in and :not-in token modifiers. url may carry a version
// ("url|4.0.1"), which must then match the value set's. ok is false when the
// value set is unknown or could not be fully expanded from the R4 package
// (it includes SNOMED CT, LOINC or another code system the package does not
// carry, or uses a filter); a partial expansion is never returned. The codes
// include inactive and abstract ones; the slice is the caller's.
func ValueSetCodes(url string) (codes []Coding, ok bool) {
	url, version, versioned := strings.Cut(url, "|")
	vs, ok := loadValueSets()[url]
	if !ok || versioned && version != vs.Version {
		return nil, false
	}
	n := 0
	for _, s := range vs.Systems {
		n += len(s.Codes)
	}
	codes = make([]Coding, 0, n)
	for _, s := range vs.Systems {
		for _, c := range s.Codes {
			codes = append(codes, Coding{System: s.System, Code: c})
		}
	}
	return codes, true
}
