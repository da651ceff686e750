package importer

import (
	"encoding/json"
	"strings"
	"sync"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/spec"
	"github.com/emberfhir/ember/store"
)

// footprint is what writing a chunk touches, for deciding which chunks may
// be written at the same time without changing the outcome of writing
// them one by one in file order.
type footprint struct {
	all    bool                       // unknown or unbounded: runs alone
	ids    map[store.ResourceKey]bool // resources written under known ids
	writes map[string]bool            // types written, under any id
	reads  map[string]bool            // types whose search results it depends on
	wild   map[string]bool            // types written under ids a search finds
}

// conflicts reports whether a and b could end differently written
// concurrently than in order: they write the same resource, one searches a
// type the other writes, or one writes a type at ids it finds by a search.
func conflicts(a, b *footprint) bool {
	if a.all || b.all {
		return true
	}
	for k := range b.ids {
		if a.ids[k] {
			return true
		}
	}
	return overlap(a.writes, b.reads) || overlap(a.reads, b.writes) ||
		overlap(a.wild, b.writes) || overlap(a.writes, b.wild)
}

func overlap(a, b map[string]bool) bool {
	if len(a) > len(b) {
		a, b = b, a
	}
	for k := range a {
		if b[k] {
			return true
		}
	}
	return false
}

func (f *footprint) add(set *map[string]bool, typ string) {
	if *set == nil {
		*set = map[string]bool{}
	}
	(*set)[typ] = true
}

// itemsFootprint covers a chunk of validated resources: each is written
// under its id, or created under a fresh one.
func itemsFootprint(items []item) *footprint {
	f := &footprint{}
	for i := range items {
		r := items[i].res
		if r == nil {
			continue
		}
		f.add(&f.writes, r.Type())
		if r.ID() != "" {
			if f.ids == nil {
				f.ids = map[store.ResourceKey]bool{}
			}
			f.ids[store.ResourceKey{Type: r.Type(), ID: r.ID()}] = true
		}
	}
	return f
}

// bundleEntry is what bundleFootprint reads of a transaction or batch entry.
type bundleEntry struct {
	Resource json.RawMessage `json:"resource"`
	Request  struct {
		Method      string `json:"method"`
		URL         string `json:"url"`
		IfNoneExist string `json:"ifNoneExist"`
	} `json:"request"`
}

// bundleFootprint covers a transaction or batch Bundle from its entries'
// requests and the conditional references ("Type?search") in its
// resources. Anything it cannot place (operations, system-level requests,
// absolute URLs) makes the Bundle run alone.
func bundleFootprint(entries []bundleEntry) *footprint {
	f := &footprint{}
	for _, e := range entries {
		if !f.addRequest(e) {
			return &footprint{all: true}
		}
		if len(e.Resource) > 0 {
			fhir.RewriteReferences(e.Resource, func(ref string) (string, bool) {
				if typ, _, cond := strings.Cut(ref, "?"); cond && spec.IsResourceType(typ) {
					f.add(&f.reads, typ)
				}
				return "", false
			})
		}
	}
	return f
}

// addRequest adds one entry's request, or reports false when it cannot
// bound what the request touches.
func (f *footprint) addRequest(e bundleEntry) bool {
	path, query, conditional := strings.Cut(e.Request.URL, "?")
	seg := strings.Split(path, "/")
	typ := seg[0]
	if !spec.IsResourceType(typ) {
		return false
	}
	for _, s := range seg[1:] {
		if strings.HasPrefix(s, "$") {
			return false // an operation may touch anything
		}
	}
	switch strings.ToUpper(e.Request.Method) {
	case "GET", "HEAD":
		if readsOtherTypes(query) {
			return false
		}
		f.add(&f.reads, typ)
	case "POST":
		switch {
		case len(seg) == 1 && !conditional:
			f.add(&f.writes, typ)
			if e.Request.IfNoneExist != "" {
				f.add(&f.reads, typ)
			}
		default:
			return false
		}
	case "PATCH":
		// A JSON Patch's conditional references hide in its Binary's
		// base64 data: not worth decoding here.
		return false
	case "PUT", "DELETE":
		switch {
		case len(seg) == 1 && conditional && query != "":
			f.add(&f.reads, typ)
			f.add(&f.writes, typ)
			f.add(&f.wild, typ)
		case len(seg) == 2 && !conditional && seg[1] != "":
			f.add(&f.writes, typ)
			if f.ids == nil {
				f.ids = map[store.ResourceKey]bool{}
			}
			f.ids[store.ResourceKey{Type: typ, ID: seg[1]}] = true
		default:
			return false
		}
	default:
		return false
	}
	return true
}

// readsOtherTypes reports whether a search's parameters reach beyond its
// own type: includes, reverse chains and chained parameters.
func readsOtherTypes(query string) bool {
	for _, kv := range strings.Split(query, "&") {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "_include") || strings.HasPrefix(name, "_revinclude") ||
			strings.HasPrefix(name, "_has") || strings.Contains(name, ".") {
			return true
		}
	}
	return false
}

// inflight tracks the chunks being written.
type inflight struct {
	mu      sync.Mutex
	cond    *sync.Cond
	writing []*footprint
	err     error // the first writer error; no chunk is admitted after it
}

func newInflight() *inflight {
	fl := &inflight{}
	fl.cond = sync.NewCond(&fl.mu)
	return fl
}

// admit waits until a chunk with footprint f may start: a writer is free
// and no chunk being written conflicts with it. Chunks are admitted in
// file order, so every chunk being written came before f's.
func (fl *inflight) admit(f *footprint, writers int) error {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	for fl.err == nil && (len(fl.writing) >= writers || fl.blocks(f)) {
		fl.cond.Wait()
	}
	if fl.err != nil {
		return fl.err
	}
	fl.writing = append(fl.writing, f)
	return nil
}

func (fl *inflight) blocks(f *footprint) bool {
	for _, w := range fl.writing {
		if conflicts(w, f) {
			return true
		}
	}
	return false
}

func (fl *inflight) finish(f *footprint, err error) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	for i, w := range fl.writing {
		if w == f {
			fl.writing = append(fl.writing[:i], fl.writing[i+1:]...)
			break
		}
	}
	if err != nil && fl.err == nil {
		fl.err = err
	}
	fl.cond.Broadcast()
}

// wait returns once no chunk is being written, with the first error.
func (fl *inflight) wait() error {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	for len(fl.writing) > 0 {
		fl.cond.Wait()
	}
	return fl.err
}
