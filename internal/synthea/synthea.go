// Package synthea loads the Synthea test data set (transaction Bundles of
// synthetic patients, plus the hospital and practitioner bundles they refer
// to) through Ember's one write path, the engine, for tests and benchmarks.
//
// Synthea's bundles are transactions whose entries are POSTs identified by
// fullUrl "urn:uuid:<id>" and whose references are those urns (or
// conditional references such as
// "Organization?identifier=https://github.com/synthetichealth/synthea|<id>").
// The loader resolves every reference to a literal "Type/id" and writes each
// resource under its own id (resource.id), so loads are repeatable and tests
// can name resources by the ids in the files.
package synthea

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
)

// Files returns the bundle files of dir in load order: the hospital bundles,
// then the practitioner bundles, then the patient bundles, each group sorted
// by name.
func Files(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("synthea: %w", err)
	}
	var hospital, practitioner, patients []string
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".json") {
			continue
		}
		p := filepath.Join(dir, name)
		switch {
		case strings.HasPrefix(name, "hospitalInformation"):
			hospital = append(hospital, p)
		case strings.HasPrefix(name, "practitionerInformation"):
			practitioner = append(practitioner, p)
		default:
			patients = append(patients, p)
		}
	}
	sort.Strings(hospital)
	sort.Strings(practitioner)
	sort.Strings(patients)
	out := append(append(hospital, practitioner...), patients...)
	if len(out) == 0 {
		return nil, fmt.Errorf("synthea: no bundles in %s", dir)
	}
	return out, nil
}

// IsPatientBundle reports whether path names a patient bundle (not a
// hospital or practitioner bundle).
func IsPatientBundle(path string) bool {
	name := filepath.Base(path)
	return !strings.HasPrefix(name, "hospitalInformation") && !strings.HasPrefix(name, "practitionerInformation")
}

// Resource is one bundle entry's resource with its references resolved.
type Resource struct {
	Type, ID string
	JSON     []byte
}

// Loader resolves references across files: a patient bundle refers to the
// hospital and practitioner bundles loaded before it. Not safe for
// concurrent use.
type Loader struct {
	urls   map[string]string // fullUrl → Type/id
	idents map[string]string // Type|system|value → Type/id ("" when ambiguous)
}

// NewLoader returns a Loader that has seen no bundle yet.
func NewLoader() *Loader {
	return &Loader{urls: map[string]string{}, idents: map[string]string{}}
}

type bundle struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Entry        []struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
	} `json:"entry"`
}

type entry struct {
	typ, id string
	body    map[string]any
}

// Resources decodes the bundle at path and returns its resources in entry
// order, with every urn:uuid reference rewritten to Type/id and every
// conditional reference (Type?identifier=system|value) resolved to Type/id
// through the identifiers of all bundles seen so far, this one included.
// Local references (#contained) and references that are already literal are
// left alone; a reference that cannot be resolved is an error.
func (l *Loader) Resources(path string) ([]Resource, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("synthea: %w", err)
	}
	var b bundle
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("synthea: %s: %w", filepath.Base(path), err)
	}
	if b.ResourceType != "Bundle" {
		return nil, fmt.Errorf("synthea: %s: not a Bundle", filepath.Base(path))
	}
	// Pass 1: decode, register fullUrls and identifiers.
	entries := make([]entry, 0, len(b.Entry))
	for i, e := range b.Entry {
		dec := json.NewDecoder(bytes.NewReader(e.Resource))
		dec.UseNumber() // keep decimals' written form
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("synthea: %s: entry %d: %w", filepath.Base(path), i, err)
		}
		typ, _ := m["resourceType"].(string)
		id, _ := m["id"].(string)
		if typ == "" || id == "" {
			return nil, fmt.Errorf("synthea: %s: entry %d: resource without resourceType or id", filepath.Base(path), i)
		}
		ref := typ + "/" + id
		if e.FullURL != "" {
			l.urls[e.FullURL] = ref
		}
		l.urls["urn:uuid:"+id] = ref
		for _, ident := range identifiers(m) {
			key := typ + "|" + ident
			if prev, seen := l.idents[key]; seen && prev != ref {
				l.idents[key] = "" // ambiguous
			} else {
				l.idents[key] = ref
			}
		}
		entries = append(entries, entry{typ, id, m})
	}
	// Pass 2: rewrite references and re-encode.
	out := make([]Resource, 0, len(entries))
	for _, e := range entries {
		if err := l.rewrite(e.body); err != nil {
			return nil, fmt.Errorf("synthea: %s: %s/%s: %w", filepath.Base(path), e.typ, e.id, err)
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false) // narrative XHTML stays readable
		if err := enc.Encode(e.body); err != nil {
			return nil, fmt.Errorf("synthea: %s: %s/%s: %w", filepath.Base(path), e.typ, e.id, err)
		}
		out = append(out, Resource{Type: e.typ, ID: e.id, JSON: bytes.TrimSpace(buf.Bytes())})
	}
	return out, nil
}

// identifiers returns "system|value" for each top-level identifier.
func identifiers(m map[string]any) []string {
	var out []string
	add := func(v any) {
		id, _ := v.(map[string]any)
		sys, _ := id["system"].(string)
		val, _ := id["value"].(string)
		if val != "" {
			out = append(out, sys+"|"+val)
		}
	}
	switch v := m["identifier"].(type) {
	case []any:
		for _, x := range v {
			add(x)
		}
	case map[string]any:
		add(v)
	}
	return out
}

// rewrite replaces every "reference" string property, at any depth.
func (l *Loader) rewrite(v any) error {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if s, ok := c.(string); ok && k == "reference" {
				r, err := l.resolve(s)
				if err != nil {
					return err
				}
				x[k] = r
				continue
			}
			if err := l.rewrite(c); err != nil {
				return err
			}
		}
	case []any:
		for _, c := range x {
			if err := l.rewrite(c); err != nil {
				return err
			}
		}
	}
	return nil
}

// resolve maps one reference to its literal form.
func (l *Loader) resolve(ref string) (string, error) {
	switch {
	case strings.HasPrefix(ref, "#"):
		return ref, nil
	case strings.HasPrefix(ref, "urn:uuid:") || strings.HasPrefix(ref, "urn:oid:"):
		if r, ok := l.urls[ref]; ok {
			return r, nil
		}
		return "", fmt.Errorf("unresolved reference %q", ref)
	case strings.Contains(ref, "?"):
		typ, query, _ := strings.Cut(ref, "?")
		vals, err := url.ParseQuery(query)
		if err != nil {
			return "", fmt.Errorf("conditional reference %q: %w", ref, err)
		}
		idents := vals["identifier"]
		if len(idents) != 1 || len(vals) != 1 {
			return "", fmt.Errorf("conditional reference %q: only Type?identifier=system|value is supported", ref)
		}
		r, ok := l.idents[typ+"|"+idents[0]]
		if !ok {
			return "", fmt.Errorf("conditional reference %q matches no resource", ref)
		}
		if r == "" {
			return "", fmt.Errorf("conditional reference %q matches more than one resource", ref)
		}
		return r, nil
	}
	if r, ok := l.urls[ref]; ok { // any other fullUrl form
		return r, nil
	}
	return ref, nil
}

// parsed is one validated resource ready to write.
type parsed struct {
	id  string
	res *fhir.Resource
}

// Load writes the bundles in files, in order, through eng as engine.System:
// one engine transaction per bundle, each resource an update (PUT) under
// its own id after validation by eng's parser. A resource that appears in
// several bundles (Synthea repeats organizations and practitioners) is
// written each time, so the last bundle's copy is current. n counts
// resources written. A bundle with invalid resources is not written; the
// error lists them.
func Load(ctx context.Context, eng *engine.Engine, files []string) (n int, err error) {
	l := NewLoader()
	p := eng.Parser()
	// Decoding and validating (CPU) overlaps with writing the previous
	// bundle (database): a one-bundle pipeline.
	type prepared struct {
		file string
		res  []parsed
		err  error
	}
	ch := make(chan prepared, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(ch)
		for _, f := range files {
			res, err := l.Resources(f)
			var ps []parsed
			if err == nil {
				ps, err = validate(p, filepath.Base(f), res)
			}
			select {
			case ch <- prepared{f, ps, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for b := range ch {
		if b.err != nil {
			return n, b.err
		}
		err := eng.InTx(ctx, engine.System, func(tx *engine.Tx) error {
			for _, r := range b.res {
				if _, err := tx.Update(engine.UpdateRequest{Resource: r.res, ID: r.id}); err != nil {
					return fmt.Errorf("synthea: %s: write %s/%s: %w", filepath.Base(b.file), r.res.Type(), r.id, err)
				}
			}
			return nil
		})
		if err != nil {
			return n, err
		}
		n += len(b.res)
	}
	return n, ctx.Err()
}

// validate parses every resource with p, on all CPUs, and reports all
// failures together.
func validate(p *fhir.Parser, file string, res []Resource) ([]parsed, error) {
	out := make([]parsed, len(res))
	errs := make([]error, len(res))
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				r, err := p.Parse(res[i].JSON, res[i].Type)
				if err != nil {
					errs[i] = fmt.Errorf("%s/%s: %w", res[i].Type, res[i].ID, err)
					continue
				}
				out[i] = parsed{id: res[i].ID, res: r}
			}
		}()
	}
	for i := range res {
		next <- i
	}
	close(next)
	wg.Wait()
	var bad []error
	for _, e := range errs {
		if e != nil {
			bad = append(bad, e)
		}
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("synthea: %s: %d invalid resources: %w", file, len(bad), errors.Join(bad...))
	}
	return out, nil
}
