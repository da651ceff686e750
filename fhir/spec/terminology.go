package spec

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/json"
	"fmt"
	"sync"
)

// terminologyGz holds the R4 package's CodeSystems and ValueSets as FHIR
// JSON, trimmed to what the terminology operations read (see
// gen/terminology.go). Loaded on first use: only terminology operations
// need it.
//
//go:embed terminology.json.gz
var terminologyGz []byte

// terminology is filled once, on first use, and only read afterwards.
var terminology struct {
	once sync.Once
	file struct {
		CodeSystems map[string]json.RawMessage `json:"codeSystems"`
		ValueSets   map[string]json.RawMessage `json:"valueSets"`
	}
}

func loadTerminology() {
	terminology.once.Do(func() {
		zr, err := gzip.NewReader(bytes.NewReader(terminologyGz))
		if err != nil {
			panic(fmt.Sprintf("spec: embedded terminology.json.gz: %v", err))
		}
		// Generated and covered by tests: a failure is a broken build.
		if err := json.NewDecoder(zr).Decode(&terminology.file); err != nil {
			panic(fmt.Sprintf("spec: embedded terminology.json.gz: %v", err))
		}
	})
}

// CodeSystem returns the R4 core CodeSystem (FHIR core, v2 and v3 tables)
// with canonical url as JSON, without narrative and concept definitions;
// ok is false when the package has none. The bytes are shared: read only.
func CodeSystem(url string) (resource []byte, ok bool) {
	loadTerminology()
	r, ok := terminology.file.CodeSystems[url]
	return r, ok
}

// ValueSet returns the R4 core ValueSet with canonical url as JSON, its
// compose as published and without narrative; ok is false when the package
// has none. The bytes are shared: read only.
func ValueSet(url string) (resource []byte, ok bool) {
	loadTerminology()
	r, ok := terminology.file.ValueSets[url]
	return r, ok
}
