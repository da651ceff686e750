package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"
)

// writeTerminology writes terminology.json.gz: the package's CodeSystems and
// ValueSets as FHIR JSON, trimmed to what the terminology operations read
// (engine/op_terminology*.go: $expand, $validate-code, $lookup,
// $subsumes). Narrative, contacts, mappings and concept definitions are
// dropped; the concept tree (codes, displays, properties, nesting) and
// ValueSet.compose are kept as published. The same bundles as
// valuesets.json.gz are read, first definition of a URL wins.
func writeTerminology(outDir, dir string) {
	type entry struct {
		url string
		raw json.RawMessage
	}
	var codeSystems, valueSets []entry
	seen := map[string]bool{}
	add := func(where string, raw json.RawMessage) {
		var r map[string]json.RawMessage
		if err := json.Unmarshal(raw, &r); err != nil {
			log.Fatalf("terminology: %s: %v", where, err)
		}
		var typ, url string
		_ = json.Unmarshal(r["resourceType"], &typ)
		_ = json.Unmarshal(r["url"], &url)
		if (typ != "CodeSystem" && typ != "ValueSet") || url == "" || seen[typ+" "+url] {
			return
		}
		seen[typ+" "+url] = true
		keep := terminologyKeep[typ]
		out := map[string]json.RawMessage{}
		for k, v := range r {
			if keep[k] {
				out[k] = v
			}
		}
		if typ == "CodeSystem" && out["concept"] != nil {
			var cs []map[string]json.RawMessage
			if err := json.Unmarshal(out["concept"], &cs); err != nil {
				log.Fatalf("terminology: %s: CodeSystem %s: %v", where, url, err)
			}
			out["concept"] = mustJSON(trimConcepts(cs))
		}
		e := entry{url, mustJSON(out)}
		if typ == "CodeSystem" {
			codeSystems = append(codeSystems, e)
		} else {
			valueSets = append(valueSets, e)
		}
	}
	for _, f := range terminologyBundles {
		raw, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			log.Fatalf("terminology: %v", err)
		}
		var b bundle
		if err := json.Unmarshal(raw, &b); err != nil {
			log.Fatalf("terminology: %s: %v", f, err)
		}
		for _, e := range b.Entry {
			add(f, e.Resource)
		}
	}
	for _, pattern := range []string{"CodeSystem-*.json", "ValueSet-*.json"} {
		files, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			log.Fatalf("terminology: %v", err)
		}
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil {
				log.Fatalf("terminology: %v", err)
			}
			add(filepath.Base(f), raw)
		}
	}
	byURL := func(es []entry) map[string]json.RawMessage {
		sort.Slice(es, func(i, j int) bool { return es[i].url < es[j].url })
		m := make(map[string]json.RawMessage, len(es))
		for _, e := range es {
			m[e.url] = e.raw
		}
		return m
	}
	raw := mustJSON(map[string]map[string]json.RawMessage{"codeSystems": byURL(codeSystems), "valueSets": byURL(valueSets)})
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
	if err := os.WriteFile(filepath.Join(outDir, "terminology.json.gz"), gz.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "terminology: %d code systems, %d value sets (%d bytes JSON, %d gzipped)\n",
		len(codeSystems), len(valueSets), len(raw), gz.Len())
}

// terminologyKeep are the members kept per resource type.
var terminologyKeep = map[string]map[string]bool{
	"CodeSystem": set("resourceType", "id", "url", "version", "name", "title", "status", "caseSensitive",
		"valueSet", "hierarchyMeaning", "compositional", "content", "count", "property", "concept"),
	"ValueSet": set("resourceType", "id", "url", "version", "name", "title", "status", "immutable", "compose"),
}

// conceptKeep are the members of CodeSystem.concept kept.
var conceptKeep = set("code", "display", "property", "concept")

func trimConcepts(cs []map[string]json.RawMessage) []map[string]json.RawMessage {
	out := make([]map[string]json.RawMessage, len(cs))
	for i, c := range cs {
		o := map[string]json.RawMessage{}
		for k, v := range c {
			if !conceptKeep[k] {
				continue
			}
			if k == "concept" {
				var sub []map[string]json.RawMessage
				if err := json.Unmarshal(v, &sub); err != nil {
					log.Fatalf("terminology: concept: %v", err)
				}
				v = mustJSON(trimConcepts(sub))
			}
			o[k] = v
		}
		out[i] = o
	}
	return out
}

func set(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		log.Fatal(err)
	}
	return b
}
