package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/emberfhir/ember/fhir/spec"
)

// terminologyBundles hold the package's CodeSystems and ValueSets: the FHIR
// core ones, the v2 and v3 tables (terminology.hl7.org) and two externals.
// The CodeSystem-*.json and ValueSet-*.json files are read afterwards and
// only add what the bundles lack (in 4.0.1 they add nothing).
var terminologyBundles = []string{"Bundle-valuesets.json", "Bundle-v2-valuesets.json", "Bundle-v3-valuesets.json", "Bundle-externals.json"}

type concept struct {
	Code    string    `json:"code"`
	Concept []concept `json:"concept"`
}

type codeSystemDef struct {
	URL     string    `json:"url"`
	Version string    `json:"version"`
	Content string    `json:"content"`
	Concept []concept `json:"concept"`
}

// conceptSet is a ValueSet.compose.include or .exclude.
type conceptSet struct {
	System  string `json:"system"`
	Version string `json:"version"`
	Concept []struct {
		Code string `json:"code"`
	} `json:"concept"`
	Filter            []json.RawMessage `json:"filter"`
	ValueSet          []string          `json:"valueSet"`
	ModifierExtension []json.RawMessage `json:"modifierExtension"`
}

type valueSetDef struct {
	URL               string            `json:"url"`
	Version           string            `json:"version"`
	ModifierExtension []json.RawMessage `json:"modifierExtension"`
	Compose           *struct {
		Include           []conceptSet      `json:"include"`
		Exclude           []conceptSet      `json:"exclude"`
		ModifierExtension []json.RawMessage `json:"modifierExtension"`
	} `json:"compose"`
}

// notExpandable says why a value set cannot be expanded from the package
// alone; kind groups the reasons for the generator's summary line.
type notExpandable struct{ kind, detail string }

func (e *notExpandable) Error() string { return e.kind + ": " + e.detail }

func cannot(kind, format string, args ...any) error {
	return &notExpandable{kind, fmt.Sprintf(format, args...)}
}

// expander computes value set expansions over the package's definitions.
type expander struct {
	codeSystems map[string]*codeSystemDef
	valueSets   map[string]*valueSetDef
	memo        map[string]expansion
	active      map[string]bool // value sets being expanded, to catch cycles
	notes       []string
}

type expansion struct {
	codes []spec.Coding
	err   error
}

func loadTerminology(dir string) (*expander, error) {
	x := &expander{codeSystems: map[string]*codeSystemDef{}, valueSets: map[string]*valueSetDef{}, memo: map[string]expansion{}, active: map[string]bool{}}
	add := func(where string, raw json.RawMessage) error {
		var head struct {
			ResourceType string `json:"resourceType"`
			URL          string `json:"url"`
		}
		if err := json.Unmarshal(raw, &head); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		switch head.ResourceType {
		case "CodeSystem":
			if x.codeSystems[head.URL] != nil {
				return nil
			}
			var cs codeSystemDef
			if err := json.Unmarshal(raw, &cs); err != nil {
				return fmt.Errorf("%s: CodeSystem %s: %w", where, head.URL, err)
			}
			x.codeSystems[cs.URL] = &cs
		case "ValueSet":
			if x.valueSets[head.URL] != nil {
				return nil
			}
			var vs valueSetDef
			if err := json.Unmarshal(raw, &vs); err != nil {
				return fmt.Errorf("%s: ValueSet %s: %w", where, head.URL, err)
			}
			x.valueSets[vs.URL] = &vs
		}
		return nil
	}
	for _, f := range terminologyBundles {
		raw, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return nil, fmt.Errorf("value sets: %w", err)
		}
		var b bundle
		if err := json.Unmarshal(raw, &b); err != nil {
			return nil, fmt.Errorf("value sets: %s: %w", f, err)
		}
		for _, e := range b.Entry {
			if err := add(f, e.Resource); err != nil {
				return nil, fmt.Errorf("value sets: %w", err)
			}
		}
	}
	for _, pattern := range []string{"CodeSystem-*.json", "ValueSet-*.json"} {
		files, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			return nil, fmt.Errorf("value sets: %w", err)
		}
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("value sets: %w", err)
			}
			if err := add(filepath.Base(f), raw); err != nil {
				return nil, fmt.Errorf("value sets: %w", err)
			}
		}
	}
	return x, nil
}

// valueSet expands the value set a canonical reference ("url" or
// "url|version") names, or says why it cannot be.
func (x *expander) valueSet(ref string) ([]spec.Coding, error) {
	url, version, versioned := strings.Cut(ref, "|")
	vs := x.valueSets[url]
	if vs == nil {
		return nil, cannot("missing value set", "%s is not in the package", url)
	}
	if versioned && version != vs.Version {
		return nil, cannot("version mismatch", "%s: package has version %q", ref, vs.Version)
	}
	if e, ok := x.memo[url]; ok {
		return e.codes, e.err
	}
	if x.active[url] {
		return nil, cannot("cycle", "%s includes itself", url)
	}
	x.active[url] = true
	codes, err := x.compose(vs)
	delete(x.active, url)
	x.memo[url] = expansion{codes, err}
	return codes, err
}

// compose evaluates ValueSet.compose: the union of the includes minus the
// union of the excludes. An exclude that cannot be expanded would leave a
// superset, so it makes the whole value set unexpandable too.
func (x *expander) compose(vs *valueSetDef) ([]spec.Coding, error) {
	if vs.Compose == nil {
		return nil, cannot("no compose", "%s", vs.URL)
	}
	if len(vs.ModifierExtension) > 0 || len(vs.Compose.ModifierExtension) > 0 {
		return nil, cannot("modifier extension", "%s", vs.URL)
	}
	var out []spec.Coding
	seen := map[spec.Coding]bool{}
	for _, inc := range vs.Compose.Include {
		codes, err := x.conceptSet(vs.URL, inc)
		if err != nil {
			return nil, err
		}
		for _, c := range codes {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
			}
		}
	}
	if len(vs.Compose.Exclude) > 0 {
		drop := map[spec.Coding]bool{}
		for _, exc := range vs.Compose.Exclude {
			codes, err := x.conceptSet(vs.URL, exc)
			if err != nil {
				return nil, err
			}
			for _, c := range codes {
				drop[c] = true
			}
		}
		kept := out[:0:0]
		for _, c := range out {
			if !drop[c] {
				kept = append(kept, c)
			}
		}
		out = kept
	}
	return out, nil
}

// conceptSet evaluates one include or exclude: the codes the system part
// selects (explicit concepts, else the whole code system), intersected with
// each listed value set, as ValueSet.compose.include defines.
func (x *expander) conceptSet(owner string, cs conceptSet) ([]spec.Coding, error) {
	if len(cs.ModifierExtension) > 0 {
		return nil, cannot("modifier extension", "%s", owner)
	}
	if len(cs.Filter) > 0 {
		return nil, cannot("filter", "%s filters %s", owner, cs.System)
	}
	var out []spec.Coding
	have := false
	if cs.System != "" {
		have = true
		def := x.codeSystems[cs.System]
		if len(cs.Concept) > 0 {
			known := map[string]bool{}
			if def != nil && def.Content == "complete" {
				flatten(def.Concept, func(code string) { known[code] = true })
			}
			for _, c := range cs.Concept {
				if len(known) > 0 && !known[c.Code] {
					x.notes = append(x.notes, fmt.Sprintf("%s lists %s#%s, which the code system does not define", owner, cs.System, c.Code))
				}
				out = append(out, spec.Coding{System: cs.System, Code: c.Code})
			}
		} else {
			codes, err := x.wholeCodeSystem(owner, cs.System, cs.Version)
			if err != nil {
				return nil, err
			}
			out = codes
		}
	}
	for _, ref := range cs.ValueSet {
		codes, err := x.valueSet(ref)
		if err != nil {
			var ne *notExpandable
			if errors.As(err, &ne) {
				return nil, &notExpandable{ne.kind, owner + " -> " + ne.detail}
			}
			return nil, err
		}
		if !have {
			out, have = codes, true
			continue
		}
		in := map[spec.Coding]bool{}
		for _, c := range codes {
			in[c] = true
		}
		kept := out[:0:0]
		for _, c := range out {
			if in[c] {
				kept = append(kept, c)
			}
		}
		out = kept
	}
	if !have {
		return nil, cannot("empty include", "%s has an include with neither system nor valueSet", owner)
	}
	return out, nil
}

// wholeCodeSystem lists every code of a code system, nested concepts
// included, when the package holds all of it.
func (x *expander) wholeCodeSystem(owner, system, version string) ([]spec.Coding, error) {
	def := x.codeSystems[system]
	switch {
	case def == nil:
		return nil, cannot("external code system", "%s includes all of %s", owner, system)
	case def.Content != "complete":
		return nil, cannot("incomplete code system", "%s includes all of %s, whose content is %q", owner, system, def.Content)
	case version != "" && version != def.Version:
		return nil, cannot("version mismatch", "%s includes %s version %s; the package has %q", owner, system, version, def.Version)
	case len(def.Concept) == 0:
		// content=complete with no concepts (message-events is generated from
		// the spec's MessageDefinitions, v3-policyHolderRole was never filled
		// in): an empty expansion would be wrong, not empty.
		return nil, cannot("empty code system", "%s includes all of %s, which lists no concepts", owner, system)
	}
	var out []spec.Coding
	seen := map[string]bool{}
	flatten(def.Concept, func(code string) {
		if !seen[code] {
			seen[code] = true
			out = append(out, spec.Coding{System: system, Code: code})
		}
	})
	return out, nil
}

func flatten(cs []concept, f func(code string)) {
	for _, c := range cs {
		f(c.Code)
		flatten(c.Concept, f)
	}
}

// The layout of valuesets.json.gz; spec/valuesets.go reads the same shape.
type vsFileEntry struct {
	Version string        `json:"version,omitempty"`
	Systems []vsFileCodes `json:"systems"`
}

type vsFileCodes struct {
	System string   `json:"system"`
	Codes  []string `json:"codes"`
}

// writeValueSets expands every value set it can and writes them to
// valuesets.json.gz, then compares the result with the publisher's own
// expansions (Bundle-valueset-expansions.json) as a check.
func writeValueSets(outDir, dir string) {
	x, err := loadTerminology(dir)
	if err != nil {
		log.Fatal(err)
	}
	urls := sortedKeys(x.valueSets)
	file := map[string]vsFileEntry{}
	reasons := map[string]int{}
	for _, url := range urls {
		codes, err := x.valueSet(url)
		if err != nil {
			var ne *notExpandable
			if !errors.As(err, &ne) {
				log.Fatal(err)
			}
			reasons[ne.kind]++
			continue
		}
		e := vsFileEntry{Version: x.valueSets[url].Version}
		idx := map[string]int{}
		for _, c := range codes {
			i, ok := idx[c.System]
			if !ok {
				i = len(e.Systems)
				idx[c.System] = i
				e.Systems = append(e.Systems, vsFileCodes{System: c.System})
			}
			e.Systems[i].Codes = append(e.Systems[i].Codes, c.Code)
		}
		for i := range e.Systems {
			if e.Systems[i].Codes == nil {
				e.Systems[i].Codes = []string{}
			}
		}
		if e.Systems == nil {
			e.Systems = []vsFileCodes{}
		}
		file[url] = e
	}
	raw, err := json.Marshal(file)
	if err != nil {
		log.Fatal(err)
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := zw.Write(raw); err != nil {
		log.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outDir, "valuesets.json.gz"), gz.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}

	var why []string
	for _, k := range sortedKeys(reasons) {
		why = append(why, fmt.Sprintf("%s %d", k, reasons[k]))
	}
	fmt.Fprintf(os.Stderr, "value sets: %d of %d expanded (%d bytes JSON, %d gzipped); left out: %s\n",
		len(file), len(urls), len(raw), gz.Len(), strings.Join(why, ", "))
	for _, n := range x.notes {
		fmt.Fprintln(os.Stderr, "note:", n)
	}
	for _, n := range crossCheck(dir, file) {
		fmt.Fprintln(os.Stderr, "note:", n)
	}
}

// crossCheck compares the computed expansions with the publisher's and
// returns a line per disagreement plus a summary line. Disagreements are
// reported, not fatal: the publisher leaves out abstract (notSelectable) and
// deprecated codes, which stay in ours because they are still members.
func crossCheck(dir string, file map[string]vsFileEntry) []string {
	raw, err := os.ReadFile(filepath.Join(dir, "Bundle-valueset-expansions.json"))
	if err != nil {
		return []string{fmt.Sprintf("value set cross-check skipped: %v", err)}
	}
	var b bundle
	if err := json.Unmarshal(raw, &b); err != nil {
		return []string{fmt.Sprintf("value set cross-check skipped: %v", err)}
	}
	type contains struct {
		System   string     `json:"system"`
		Code     string     `json:"code"`
		Contains []contains `json:"contains"`
	}
	var notes []string
	same, compared := 0, 0
	for _, e := range b.Entry {
		var vs struct {
			URL       string `json:"url"`
			Expansion struct {
				Extension []struct {
					URL string `json:"url"`
				} `json:"extension"`
				Contains []contains `json:"contains"`
			} `json:"expansion"`
		}
		if err := json.Unmarshal(e.Resource, &vs); err != nil {
			return append(notes, fmt.Sprintf("value set cross-check: %v", err))
		}
		ours, ok := file[vs.URL]
		if !ok || truncated(vs.Expansion.Extension) {
			continue
		}
		compared++
		theirs := map[spec.Coding]bool{}
		var walk func([]contains)
		walk = func(cs []contains) {
			for _, c := range cs {
				if c.Code != "" {
					theirs[spec.Coding{System: c.System, Code: c.Code}] = true
				}
				walk(c.Contains)
			}
		}
		walk(vs.Expansion.Contains)
		mine := map[spec.Coding]bool{}
		for _, s := range ours.Systems {
			for _, c := range s.Codes {
				mine[spec.Coding{System: s.System, Code: c}] = true
			}
		}
		var onlyOurs, onlyTheirs int
		for c := range mine {
			if !theirs[c] {
				onlyOurs++
			}
		}
		for c := range theirs {
			if !mine[c] {
				onlyTheirs++
			}
		}
		if onlyOurs == 0 && onlyTheirs == 0 {
			same++
			continue
		}
		notes = append(notes, fmt.Sprintf("value set %s: %d codes only in ours, %d only in the published expansion", vs.URL, onlyOurs, onlyTheirs))
	}
	sort.Strings(notes)
	return append(notes, fmt.Sprintf("value set cross-check: %d of %d published expansions identical", same, compared))
}

// truncated reports the publisher's marker for an expansion it cut short.
func truncated(ext []struct {
	URL string `json:"url"`
}) bool {
	for _, e := range ext {
		if e.URL == "http://hl7.org/fhir/StructureDefinition/valueset-toocostly" {
			return true
		}
	}
	return false
}
