// Package bundleoracle reads transaction Bundles (the Synthea data set)
// straight from their JSON and resolves their references, for tests that
// check what internal/synthea's Loader produced, or what a server stored
// from it, against an expectation the Loader had no part in. It shares no
// code with internal/synthea: a bug there cannot cancel out here.
//
// The resolution follows FHIR R4's transaction rules
// (https://hl7.org/fhir/R4/http.html#trules): a reference equal to an
// entry's fullUrl names that entry's resource, and a conditional reference
// Type?identifier=system|value names the one resource of Type carrying that
// identifier. Entries are written under their own resource.id, so a
// resolved reference is "Type/id".
package bundleoracle

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Entry is one bundle entry as the file holds it.
type Entry struct {
	File     string // base name of the bundle file
	FullURL  string
	Type, ID string
	Resource map[string]any // decoded with encoding/json: numbers are float64
}

// Key is the entry's literal reference, "Type/id".
func (e Entry) Key() string { return e.Type + "/" + e.ID }

// Read decodes every entry of files, in file order and entry order.
func Read(files []string) ([]Entry, error) {
	var out []Entry
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("bundleoracle: %w", err)
		}
		var b struct {
			ResourceType string `json:"resourceType"`
			Entry        []struct {
				FullURL  string         `json:"fullUrl"`
				Resource map[string]any `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(raw, &b); err != nil {
			return nil, fmt.Errorf("bundleoracle: %s: %w", filepath.Base(f), err)
		}
		if b.ResourceType != "Bundle" {
			return nil, fmt.Errorf("bundleoracle: %s: resourceType %q, want Bundle", filepath.Base(f), b.ResourceType)
		}
		for i, e := range b.Entry {
			typ, _ := e.Resource["resourceType"].(string)
			id, _ := e.Resource["id"].(string)
			if typ == "" || id == "" {
				return nil, fmt.Errorf("bundleoracle: %s: entry %d has no resourceType or id", filepath.Base(f), i)
			}
			out = append(out, Entry{File: filepath.Base(f), FullURL: e.FullURL, Type: typ, ID: id, Resource: e.Resource})
		}
	}
	return out, nil
}

// Index resolves the references of a set of entries.
type Index struct {
	byURL   map[string]string          // fullUrl → Type/id
	byIdent map[string]map[string]bool // Type|system|value → the Type/ids carrying it
}

// NewIndex indexes entries' fullUrls and identifiers. A conditional
// reference may name a resource of any of the entries, earlier or later.
func NewIndex(entries []Entry) *Index {
	ix := &Index{byURL: map[string]string{}, byIdent: map[string]map[string]bool{}}
	for _, e := range entries {
		if e.FullURL != "" {
			ix.byURL[e.FullURL] = e.Key()
		}
		var ids []any
		switch x := e.Resource["identifier"].(type) {
		case []any:
			ids = x
		case map[string]any: // identifier 0..1 (Bundle, QuestionnaireResponse…)
			ids = []any{x}
		}
		for _, x := range ids {
			id, _ := x.(map[string]any)
			sys, _ := id["system"].(string)
			val, _ := id["value"].(string)
			k := e.Type + "|" + sys + "|" + val
			if ix.byIdent[k] == nil {
				ix.byIdent[k] = map[string]bool{}
			}
			ix.byIdent[k][e.Key()] = true
		}
	}
	return ix
}

// Resolve returns the literal form of one reference as written in a bundle.
// Local (#id) and literal (Type/id) references are returned unchanged; a
// urn or a conditional reference that names no resource, or a conditional
// one that names several, is an error.
func (ix *Index) Resolve(ref string) (string, error) {
	if strings.HasPrefix(ref, "#") {
		return ref, nil
	}
	if k, ok := ix.byURL[ref]; ok {
		return k, nil
	}
	if strings.HasPrefix(ref, "urn:") {
		return "", fmt.Errorf("reference %q is no entry's fullUrl", ref)
	}
	typ, query, conditional := strings.Cut(ref, "?")
	if !conditional {
		return ref, nil
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", fmt.Errorf("conditional reference %q: %w", ref, err)
	}
	ident := q.Get("identifier")
	sys, val, ok := strings.Cut(ident, "|")
	if len(q) != 1 || len(q["identifier"]) != 1 || !ok {
		return "", fmt.Errorf("conditional reference %q: only Type?identifier=system|value is modelled", ref)
	}
	matches := ix.byIdent[typ+"|"+sys+"|"+val]
	if len(matches) != 1 {
		return "", fmt.Errorf("conditional reference %q matches %d resources, want 1", ref, len(matches))
	}
	for k := range matches {
		return k, nil
	}
	panic("unreachable")
}

// Resolved returns a deep copy of res with every "reference" string, at
// any depth, resolved.
func (ix *Index) Resolved(res map[string]any) (map[string]any, error) {
	out, err := ix.resolved(res)
	if err != nil {
		return nil, err
	}
	return out.(map[string]any), nil
}

func (ix *Index) resolved(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, c := range x {
			if s, ok := c.(string); ok && k == "reference" {
				r, err := ix.Resolve(s)
				if err != nil {
					return nil, err
				}
				m[k] = r
				continue
			}
			r, err := ix.resolved(c)
			if err != nil {
				return nil, err
			}
			m[k] = r
		}
		return m, nil
	case []any:
		a := make([]any, len(x))
		for i, c := range x {
			r, err := ix.resolved(c)
			if err != nil {
				return nil, err
			}
			a[i] = r
		}
		return a, nil
	}
	return v, nil
}
