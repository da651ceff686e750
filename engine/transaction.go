package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/spec"
	"github.com/emberfhir/ember/store"
)

// bundleRequest is the part of a transaction or batch Bundle Ember reads.
// Entry resources stay raw: each is validated on its own, once.
type bundleRequest struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Entry        []struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
		Request  *entryRequestIn `json:"request"`
	} `json:"entry"`
}

// entryRequestIn is Bundle.entry.request as sent.
type entryRequestIn struct {
	Method          string `json:"method"`
	URL             string `json:"url"`
	IfNoneMatch     string `json:"ifNoneMatch"`
	IfModifiedSince string `json:"ifModifiedSince"`
	IfMatch         string `json:"ifMatch"`
	IfNoneExist     string `json:"ifNoneExist"`
}

// txEntry is one entry being processed.
type txEntry struct {
	index       int
	fullURL     string
	method      string
	typ, id     string // the target; id is assigned for creates
	vid         int64  // a GET of a version
	query       string // the condition of a conditional update/delete/patch, or a GET search
	ifNoneExist string
	ifMatch     int64
	raw         []byte
	res         *fhir.Resource
	exists      bool // a conditional create that found its match
	// A PATCH entry's patch (JSON Patch decoded from its Binary, or the
	// Parameters), with references rewritten in a transaction.
	patchKind PatchKind
	patch     []byte
	result    Result
	err       error  // a batch entry's failure
	getBody   []byte // a GET's response resource
	// lenient: unknown elements are dropped (Prefer: handling=lenient),
	// each reported in warnings.
	lenient  bool
	warnings []fhir.Issue
}

// parse validates an entry's resource, leniently when the request asked.
// Profiles are checked here, once per entry, as the write path does.
func (en *Engine) parse(ctx context.Context, e *txEntry, body []byte) (*fhir.Resource, error) {
	var res *fhir.Resource
	var err error
	if e.lenient {
		res, e.warnings, err = en.parser.ParseLenient(body, e.typ)
	} else {
		res, err = en.parser.Parse(body, e.typ)
	}
	if err != nil {
		return nil, err
	}
	return en.admit(ctx, res)
}

// BundleResponse is the outcome of a transaction or batch Bundle: one
// entry per request entry, in request order.
type BundleResponse struct {
	Type    string // transaction-response or batch-response
	Entries []EntryResponse
}

// EntryResponse is the outcome of one entry.
type EntryResponse struct {
	// Method is the entry's request.method in upper case ("" for a batch
	// entry whose request could not be read).
	Method string
	Result Result
	// Body is a GET entry's answer: the resource, or a searchset Bundle.
	Body []byte
	// Err is why a batch entry failed (a transaction fails as a whole).
	Err error
	// Warnings are the elements lenient handling dropped from the entry's
	// resource (Prefer: handling=lenient), for its response.outcome.
	Warnings []fhir.Issue
}

// TransactionOptions are the request's preferences for a Bundle.
type TransactionOptions struct {
	// Lenient drops elements R4 does not define from entry resources
	// instead of refusing them, each reported as a warning in the entry's
	// response.outcome (Prefer: handling=lenient). Opt-in, for migrations.
	Lenient bool
}

// Transaction executes a transaction (all or nothing) or batch (each entry
// on its own) Bundle.
func (en *Engine) Transaction(ctx context.Context, caller *Caller, body []byte) (*BundleResponse, error) {
	return en.TransactionWith(ctx, caller, body, TransactionOptions{})
}

// TransactionWith is Transaction with the request's preferences.
func (en *Engine) TransactionWith(ctx context.Context, caller *Caller, body []byte, opts TransactionOptions) (*BundleResponse, error) {
	ctx, err := caller.bind(ctx)
	if err != nil {
		return nil, err
	}
	if err := fhir.CheckJSON(body); err != nil {
		return nil, err
	}
	var b bundleRequest
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, fhir.NewError(fhir.BadRequest, "structure", "malformed Bundle: "+err.Error())
	}
	if b.ResourceType != "Bundle" {
		return nil, fhir.NewError(fhir.BadRequest, "invalid", "POST to the base needs a Bundle, got "+quote(b.ResourceType))
	}
	entries := make([]*txEntry, len(b.Entry))
	for i, e := range b.Entry {
		te, err := en.planEntry(i, e.FullURL, e.Resource, e.Request)
		if err != nil {
			if b.Type == "batch" {
				entries[i] = &txEntry{index: i, err: err}
				continue
			}
			return nil, err
		}
		te.lenient = opts.Lenient
		entries[i] = te
	}
	switch b.Type {
	case "transaction":
		if err := en.runTransaction(ctx, entries); err != nil {
			return nil, err
		}
		return responses("transaction-response", entries), nil
	case "batch":
		en.runBatch(ctx, entries)
		return responses("batch-response", entries), nil
	}
	return nil, fhir.NewError(fhir.BadRequest, "invalid", "Bundle.type must be transaction or batch, got "+quote(b.Type), "Bundle.type")
}

// responses lists the entries' outcomes in request order.
func responses(typ string, entries []*txEntry) *BundleResponse {
	out := &BundleResponse{Type: typ, Entries: make([]EntryResponse, len(entries))}
	for i, e := range entries {
		out.Entries[i] = EntryResponse{Method: e.method, Result: e.result, Body: e.getBody, Err: e.err, Warnings: e.warnings}
	}
	return out
}

// entryError names the failing entry in the OperationOutcome.
func entryError(i int, err error) error {
	fe, ok := AsError(err)
	if !ok {
		return fmt.Errorf("Bundle.entry[%d]: %w", i, err)
	}
	out := &fhir.Error{Kind: fe.Kind}
	prefix := "Bundle.entry[" + strconv.Itoa(i) + "]"
	for _, is := range fe.Issues {
		is.Diagnostics = prefix + ": " + is.Diagnostics
		if len(is.Expression) == 0 {
			is.Expression = []string{prefix}
		} else {
			for k, e := range is.Expression {
				is.Expression[k] = prefix + ".resource." + e
			}
		}
		out.Issues = append(out.Issues, is)
	}
	return out
}

// planEntry checks one entry's request and works out its target.
func (en *Engine) planEntry(i int, fullURL string, raw json.RawMessage, req *entryRequestIn) (*txEntry, error) {
	if req == nil || req.Method == "" || req.URL == "" {
		return nil, entryError(i, fhir.Invalid("an entry needs request.method and request.url"))
	}
	e := &txEntry{index: i, fullURL: fullURL, method: strings.ToUpper(req.Method), raw: raw, ifNoneExist: req.IfNoneExist}
	if strings.TrimSpace(req.IfMatch) == "*" {
		e.ifMatch = IfMatchAny
	} else if req.IfMatch != "" {
		v, ok := ParseETag(req.IfMatch)
		if !ok {
			return nil, entryError(i, fhir.Invalid("malformed request.ifMatch "+quote(req.IfMatch)))
		}
		e.ifMatch = v
	}
	u := strings.TrimPrefix(req.URL, en.base+"/")
	u = strings.TrimPrefix(u, "/")
	path, query, _ := strings.Cut(u, "?")
	seg := strings.Split(path, "/")
	if !spec.IsResourceType(seg[0]) {
		return nil, entryError(i, fhir.Invalid("request.url "+quote(req.URL)+" does not start with a resource type"))
	}
	e.typ, e.query = seg[0], query
	if len(seg) >= 2 {
		if !fhir.ValidID(seg[1]) {
			return nil, entryError(i, fhir.Invalid("invalid id in request.url "+quote(req.URL)))
		}
		e.id = seg[1]
	}
	if len(seg) == 4 && seg[2] == "_history" && e.method == "GET" {
		v, err := strconv.ParseInt(seg[3], 10, 64)
		if err != nil || v <= 0 {
			return nil, entryError(i, fhir.Invalid("invalid version in request.url "+quote(req.URL)))
		}
		e.vid = v
	} else if len(seg) > 2 {
		return nil, entryError(i, fhir.Invalid("unsupported request.url "+quote(req.URL)))
	}
	switch e.method {
	case "POST":
		if e.id != "" || e.query != "" {
			return nil, entryError(i, fhir.Invalid("a POST entry's request.url is the resource type alone"))
		}
	case "PUT":
		if (e.id == "") == (e.query == "") {
			return nil, entryError(i, fhir.Invalid("a PUT entry's request.url is Type/id or Type?condition"))
		}
	case "DELETE":
		if (e.id == "") == (e.query == "") {
			return nil, entryError(i, fhir.Invalid("a DELETE entry's request.url is Type/id or Type?condition"))
		}
	case "GET", "HEAD":
	case "PATCH":
		if (e.id == "") == (e.query == "") {
			return nil, entryError(i, fhir.Invalid("a PATCH entry's request.url is Type/id or Type?condition"))
		}
		kind, body, err := entryPatch(raw)
		if err != nil {
			return nil, entryError(i, err)
		}
		e.patchKind, e.patch = kind, body
	default:
		return nil, entryError(i, fhir.Invalid("unsupported request.method "+quote(req.Method)))
	}
	if e.method == "POST" || e.method == "PUT" {
		if len(raw) == 0 {
			return nil, entryError(i, fhir.Invalid("a "+e.method+" entry needs a resource"))
		}
	}
	return e, nil
}

// order is the spec's processing order: DELETE, POST, PUT/PATCH, GET/HEAD.
var order = map[string]int{"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}

// runTransaction processes every entry in one database transaction.
func (en *Engine) runTransaction(ctx context.Context, entries []*txEntry) error {
	// Two entries with the same fullUrl would make references ambiguous.
	seenURL := map[string]int{}
	for _, e := range entries {
		if e.fullURL == "" {
			continue
		}
		if j, dup := seenURL[e.fullURL]; dup {
			return entryError(e.index, fhir.Invalid(fmt.Sprintf("fullUrl %s is also the fullUrl of entry %d", quote(e.fullURL), j)))
		}
		seenURL[e.fullURL] = e.index
	}
	return en.store.InTx(ctx, func(tx *store.Tx) error {
		if err := en.resolveIdentities(ctx, tx, entries); err != nil {
			return err
		}
		refs, err := en.referenceMap(ctx, tx, entries)
		if err != nil {
			return err
		}
		if err := en.validateEntries(ctx, entries, refs); err != nil {
			return err
		}
		sorted := append([]*txEntry(nil), entries...)
		sort.SliceStable(sorted, func(a, b int) bool { return order[sorted[a].method] < order[sorted[b].method] })
		for i := 0; i < len(sorted); i++ {
			// Consecutive plain creates go in one pipelined batch.
			if j := plainCreates(sorted, i); j > i {
				if err := en.createBatch(ctx, tx, sorted[i:j]); err != nil {
					return err
				}
				i = j - 1
				continue
			}
			// So do long runs of plain updates of stored resources.
			if j := plainUpdates(sorted, i); j-i >= batchUpdates {
				if err := en.updateBatch(ctx, tx, sorted[i:j]); err != nil {
					return err
				}
				i = j - 1
				continue
			}
			e := sorted[i]
			if err := en.execute(ctx, tx, e); err != nil {
				return entryError(e.index, err)
			}
		}
		return nil
	})
}

// resolveIdentities gives every creating or updating entry its Type/id:
// new ids for creates, the match for conditional creates and updates.
// Two writes to one resource in a transaction are rejected.
func (en *Engine) resolveIdentities(ctx context.Context, tx *store.Tx, entries []*txEntry) error {
	targets := map[string]int{}
	for _, e := range entries {
		switch e.method {
		case "POST":
			if e.ifNoneExist != "" {
				id, ok, err := en.resolveConditional(ctx, tx, e.typ, e.ifNoneExist)
				if err != nil {
					return entryError(e.index, err)
				}
				if ok {
					e.id, e.exists = id, true
				}
			}
			if e.id == "" {
				e.id = store.NewID()
			}
		case "PUT":
			if e.query != "" {
				id, ok, err := en.resolveConditional(ctx, tx, e.typ, e.query)
				if err != nil {
					return entryError(e.index, err)
				}
				if ok {
					e.id = id
				} else if bodyID := topLevelID(e.raw); bodyID != "" {
					e.id = bodyID
				} else {
					e.id = store.NewID()
				}
			}
		case "PATCH":
			if e.query != "" {
				id, err := en.patchTarget(ctx, tx, e.typ, e.query, e.ifMatch)
				if err != nil {
					return entryError(e.index, err)
				}
				e.id = id
			}
		case "DELETE":
			if e.id == "" {
				continue // a conditional delete may touch many; checked when run
			}
		default:
			continue
		}
		key := e.typ + "/" + e.id
		if j, dup := targets[key]; dup && !e.exists {
			return entryError(e.index, fhir.Invalid(fmt.Sprintf("entries %d and %d both write %s", j, e.index, key)))
		}
		targets[key] = e.index
	}
	return nil
}

func topLevelID(raw []byte) string {
	var head struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(raw, &head) // validated later; a bad body fails there
	return head.ID
}

// referenceMap maps every reference that must be rewritten to its target:
// entries' fullUrls (urn:uuid:, urn:oid:, absolute URLs) and conditional
// references (Type?search), which must match exactly one resource.
func (en *Engine) referenceMap(ctx context.Context, tx *store.Tx, entries []*txEntry) (map[string]string, error) {
	refs := map[string]string{}
	byCondition := map[string]string{}
	for _, e := range entries {
		if e.id == "" || (e.method != "POST" && e.method != "PUT") {
			continue
		}
		if e.fullURL != "" {
			refs[e.fullURL] = e.typ + "/" + e.id
		}
		if c := e.ifNoneExist; c != "" {
			byCondition[e.typ+"?"+c] = e.typ + "/" + e.id
		}
		if e.method == "PUT" && e.query != "" {
			byCondition[e.typ+"?"+e.query] = e.typ + "/" + e.id
		}
	}
	for _, e := range entries {
		doc := e.raw
		if e.patch != nil {
			doc = e.patch // a JSON Patch's references are inside its Binary's data
		}
		if len(doc) == 0 {
			continue
		}
		var err error
		fhir.RewriteReferences(doc, func(ref string) (string, bool) {
			typ, query, ok := strings.Cut(ref, "?")
			if !ok || err != nil || !spec.IsResourceType(typ) {
				return "", false
			}
			if _, done := refs[ref]; done {
				return "", false
			}
			if target, ok := byCondition[ref]; ok {
				refs[ref] = target
				return "", false
			}
			id, found, rerr := en.resolveConditional(ctx, tx, typ, query)
			switch {
			case rerr != nil:
				err = entryError(e.index, rerr)
			case !found:
				err = entryError(e.index, fhir.NewError(fhir.PreconditionFailed, "not-found", "the conditional reference "+quote(ref)+" matches no resource"))
			default:
				refs[ref] = typ + "/" + id
			}
			return "", false
		})
		if err != nil {
			return nil, err
		}
	}
	return refs, nil
}

// validateEntries rewrites references and validates every entry's resource
// (after rewriting: a reference's target type is part of validity), using
// every core.
func (en *Engine) validateEntries(ctx context.Context, entries []*txEntry, refs map[string]string) error {
	work := make(chan *txEntry)
	errs := make([]error, len(entries))
	var wg sync.WaitGroup
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range work {
				body, missing := rewriteInBundle(e.raw, refs)
				if missing != "" {
					errs[e.index] = entryError(e.index, unresolvedPlaceholder(missing))
					continue
				}
				res, err := en.parse(ctx, e, body)
				if err != nil {
					errs[e.index] = entryError(e.index, err)
					continue
				}
				e.res = res
			}
		}()
	}
	for _, e := range entries {
		if len(e.raw) > 0 && (e.method == "POST" || e.method == "PUT") {
			work <- e
		}
		if e.patch != nil {
			// References a patch adds point at the bundle's resources too.
			var missing string
			if e.patch, missing = rewriteInBundle(e.patch, refs); missing != "" {
				errs[e.index] = entryError(e.index, unresolvedPlaceholder(missing))
			}
		}
	}
	close(work)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// rewriteInBundle rewrites doc's references to the bundle's resources
// (refs) and returns the first urn:uuid: reference that names none of them.
func rewriteInBundle(doc []byte, refs map[string]string) (out []byte, missing string) {
	out = fhir.RewriteReferences(doc, func(ref string) (string, bool) {
		t, ok := refs[ref]
		if !ok && missing == "" && isPlaceholder(ref) {
			missing = ref
		}
		return t, ok
	})
	return out, missing
}

// isPlaceholder reports whether ref is a urn:uuid: reference. Such an id
// exists only within one Bundle (a fullUrl, replaced by Type/id when
// stored), so one that no entry has can never resolve: storing it would
// leave a reference to nothing. HAPI rejects it too ("unable to satisfy
// placeholder ID"). urn:oid: references may name things outside the
// Bundle, so only urn:uuid: is checked.
func isPlaceholder(ref string) bool {
	return len(ref) > len("urn:uuid:") && strings.EqualFold(ref[:len("urn:uuid:")], "urn:uuid:")
}

// unresolvedPlaceholder is the error for a urn:uuid: reference that no
// entry of the Bundle has as its fullUrl.
func unresolvedPlaceholder(ref string) error {
	return fhir.NewError(fhir.BadRequest, "not-found",
		"the reference "+quote(ref)+" is a urn:uuid: that is not the fullUrl of any entry in the Bundle")
}

// placeholderIn returns doc's first urn:uuid: reference, "" if none: a
// batch resolves no references between entries, so any such reference is
// one to nothing.
func placeholderIn(doc []byte) string {
	var found string
	fhir.RewriteReferences(doc, func(ref string) (string, bool) {
		if found == "" && isPlaceholder(ref) {
			found = ref
		}
		return "", false
	})
	return found
}

// plainCreates returns the end of the run of POST entries starting at i
// that create unconditionally (or i when there is none).
func plainCreates(entries []*txEntry, i int) int {
	j := i
	for j < len(entries) && entries[j].method == "POST" && !entries[j].exists {
		j++
	}
	return j
}

// plainUpdates returns the end of the run of PUT entries starting at i
// that update by id with no If-Match (or i when there is none).
func plainUpdates(entries []*txEntry, i int) int {
	j := i
	for j < len(entries) && entries[j].method == "PUT" && entries[j].query == "" && entries[j].ifMatch == 0 {
		j++
	}
	return j
}

// batchUpdates is the run length from which plain updates are written
// together (Tx.UpdateMany) rather than one by one.
const batchUpdates = 16

// updateBatch runs a run of plain PUT entries: those whose resource is
// stored are updated together, the others created together with COPY. If
// another writer creates one of those ids meanwhile, the COPY is undone
// (a savepoint) and they are written one by one, as Update copes with
// that race. A transaction names a resource once, so the entries are
// independent.
func (en *Engine) updateBatch(ctx context.Context, tx *store.Tx, run []*txEntry) error {
	keys := make([]store.ResourceKey, len(run))
	for k, e := range run {
		if e.res.ID() != "" && e.res.ID() != e.id {
			return entryError(e.index, fhir.Invalid("the resource's id "+quote(e.res.ID())+" does not match "+quote(e.id), e.typ+".id"))
		}
		keys[k] = store.ResourceKey{Type: e.typ, ID: e.id}
	}
	exists, err := tx.Existing(ctx, keys)
	if err != nil {
		return err
	}
	var stored, fresh []*txEntry
	var items, newItems []store.NewResource
	for k, e := range run {
		it := store.NewResource{Res: e.res, ID: e.id, Method: store.MethodUpdate}
		if exists[keys[k]] {
			stored, items = append(stored, e), append(items, it)
		} else {
			fresh, newItems = append(fresh, e), append(newItems, it)
		}
	}
	if err := en.createFresh(ctx, tx, fresh, newItems); err != nil {
		return err
	}
	versions, created, err := tx.UpdateMany(ctx, items)
	if err != nil {
		return batchError(stored, err)
	}
	for k, e := range stored {
		e.result, _ = updated(versions[k], created[k], nil)
	}
	return nil
}

// createFresh creates the PUT entries of a run whose ids are not stored.
func (en *Engine) createFresh(ctx context.Context, tx *store.Tx, fresh []*txEntry, items []store.NewResource) error {
	if len(fresh) == 0 {
		return nil
	}
	var versions []store.Version
	err := tx.Savepoint(ctx, func(sp *store.Tx) (err error) {
		versions, err = sp.CopyCreate(ctx, items)
		return err
	})
	switch {
	case errors.Is(err, store.ErrExists):
		for _, e := range fresh {
			if err := en.execute(ctx, tx, e); err != nil {
				return entryError(e.index, err)
			}
		}
		return nil
	case err != nil:
		return batchError(fresh, err)
	}
	for k, e := range fresh {
		e.result = Result{Outcome: Created, Version: versions[k], Message: "created"}
	}
	return nil
}

// batchError attributes a batch write's failure to its entry: the one a
// store.ItemError names, else the first.
func batchError(run []*txEntry, err error) error {
	failed := run[0]
	var ie *store.ItemError
	if errors.As(err, &ie) {
		failed = run[ie.Index]
	}
	return entryError(failed.index, err)
}

// copyCreates is the run length from which plain creates are loaded with
// COPY (a round trip per index table) rather than pipelined statements (a
// plan per resource). Their ids are fresh UUIDv7s, so COPY's lack of
// ON CONFLICT does not matter.
const copyCreates = 16

// createBatch creates a run of POST entries in a few round trips.
func (en *Engine) createBatch(ctx context.Context, tx *store.Tx, run []*txEntry) error {
	items := make([]store.NewResource, len(run))
	for k, e := range run {
		items[k] = store.NewResource{Res: e.res, ID: e.id}
	}
	create := tx.CreateMany
	if len(items) >= copyCreates {
		create = tx.CopyCreate
	}
	versions, err := create(ctx, items)
	if err != nil {
		return batchError(run, err)
	}
	for k, e := range run {
		e.result = Result{Outcome: Created, Version: versions[k], Message: "created"}
	}
	return nil
}

// execute runs one planned entry.
func (en *Engine) execute(ctx context.Context, tx *store.Tx, e *txEntry) error {
	var err error
	switch e.method {
	case "DELETE":
		if e.query != "" {
			e.result, err = en.doConditionalDelete(ctx, tx, e.typ, e.query)
		} else {
			e.result, err = en.doDelete(ctx, tx, e.typ, e.id, e.ifMatch)
		}
	case "POST":
		if e.exists {
			v, rerr := tx.Read(ctx, e.typ, e.id)
			if rerr != nil {
				return rerr
			}
			e.result = Result{Outcome: Found, Version: v, Message: "exists"}
			return nil
		}
		e.result, err = en.doCreate(ctx, tx, e.res, e.id, nil)
	case "PUT":
		if e.res.ID() != "" && e.res.ID() != e.id {
			return fhir.Invalid("the resource's id "+quote(e.res.ID())+" does not match "+quote(e.id), e.typ+".id")
		}
		if e.ifMatch == IfMatchAny {
			e.result, err = withCurrent(ctx, tx, e.typ, e.id, func(v int64) (Result, error) { return updated(tx.Update(ctx, e.res, e.id, v)) })
		} else {
			e.result, err = updated(tx.Update(ctx, e.res, e.id, e.ifMatch))
		}
	case "PATCH":
		e.result, err = en.executePatch(ctx, tx, e)
	case "GET", "HEAD":
		return en.executeGet(ctx, tx, e)
	}
	return err
}

// executeGet reads, vreads or searches for a GET entry.
func (en *Engine) executeGet(ctx context.Context, tx *store.Tx, e *txEntry) error {
	switch {
	case e.vid > 0:
		v, err := en.store.VRead(ctx, e.typ, e.id, e.vid)
		if err != nil {
			return readError(v, err)
		}
		e.result, e.getBody = Result{Outcome: Found, Version: v}, v.Content
	case e.id != "":
		v, err := tx.Read(ctx, e.typ, e.id)
		if err != nil {
			return readError(v, err)
		}
		e.result, e.getBody = Result{Outcome: Found, Version: v}, v.Content
	default:
		params, err := url.ParseQuery(e.query)
		if err != nil {
			return fhir.Invalid("malformed search " + quote(e.query))
		}
		q, err := en.parseSearch(false, e.typ, params)
		if err != nil {
			return err
		}
		res, err := tx.Search(ctx, q)
		if err != nil {
			return err
		}
		body, err := en.searchBundle(q, params, e.typ, res)
		if err != nil {
			return err
		}
		e.result, e.getBody = Result{Outcome: Found}, body
	}
	return nil
}

// runBatch processes each entry on its own: one failure spoils nothing else.
func (en *Engine) runBatch(ctx context.Context, entries []*txEntry) {
	for _, e := range entries {
		if e.err != nil {
			continue // failed planning; its outcome is recorded
		}
		err := en.store.InTx(ctx, func(tx *store.Tx) error {
			if len(e.raw) > 0 && (e.method == "POST" || e.method == "PUT") {
				res, err := en.parse(ctx, e, e.raw)
				if err != nil {
					return err
				}
				e.res = res
			}
			if e.method == "POST" || e.method == "PUT" || e.method == "PATCH" {
				doc := e.raw
				if e.patch != nil {
					doc = e.patch
				}
				if ref := placeholderIn(doc); ref != "" {
					return fhir.NewError(fhir.BadRequest, "not-found",
						"the reference "+quote(ref)+" is a urn:uuid: that names no stored resource: a batch resolves no references between its entries")
				}
			}
			if e.method == "POST" {
				var cond url.Values
				if e.ifNoneExist != "" {
					var err error
					if cond, err = parseCondition(e.ifNoneExist); err != nil {
						return err
					}
				}
				r, err := en.doCreate(ctx, tx, e.res, "", cond)
				e.result = r
				return err
			}
			if e.method == "PUT" && e.query != "" {
				r, err := en.doConditionalUpdate(ctx, tx, e.res, e.query, e.ifMatch)
				e.result = r
				return err
			}
			return en.execute(ctx, tx, e)
		})
		if err != nil {
			e.result, e.err, e.getBody = Result{}, err, nil
		}
	}
}

// bundleEntryResponse is one entry of a transaction-response/batch-response.
type bundleEntryResponse struct {
	Status       string          `json:"status"`
	Location     string          `json:"location,omitempty"`
	Etag         string          `json:"etag,omitempty"`
	LastModified string          `json:"lastModified,omitempty"`
	Outcome      json.RawMessage `json:"outcome,omitempty"`
}

// Bundle renders the transaction-response or batch-response, entries in
// request order. status is the protocol's word for an entry's outcome (its
// response.status, e.g. "201 Created") and, for a failed entry, the
// OperationOutcome; representation adds each written resource.
func (r *BundleResponse) Bundle(status func(EntryResponse) (string, []byte), representation bool) []byte {
	b := newBundle(r.Type, -1, nil)
	for _, e := range r.Entries {
		st, outcome := status(e)
		resp := bundleEntryResponse{Status: st}
		if e.Err != nil {
			resp.Outcome = json.RawMessage(outcome)
			b.addResponse(nil, resp)
			continue
		}
		if len(e.Warnings) > 0 {
			resp.Outcome = fhir.Outcome(e.Warnings...)
		}
		v := e.Result.Version
		if v.VersionID > 0 {
			resp.Etag = ETag(v.VersionID)
			resp.LastModified = fhir.FormatInstant(v.LastUpdated)
			if e.Method == "POST" || e.Method == "PUT" {
				resp.Location = v.Type + "/" + v.ID + "/_history/" + strconv.FormatInt(v.VersionID, 10)
			}
		}
		var res []byte
		switch {
		case e.Body != nil:
			res = e.Body
		case representation && e.Method != "DELETE":
			res = v.Content
		}
		b.addResponse(res, resp)
	}
	return b.bytes()
}
