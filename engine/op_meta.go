package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/store"
)

// $meta, $meta-add and $meta-delete
// (https://hl7.org/fhir/R4/resource-operations.html#meta).
//
// $meta answers a Parameters whose "return" valueMeta holds the profiles,
// tags and security labels of its scope: one resource, or the distinct ones
// across the current resources of a type or of the whole server (read from
// the search index, see store.DistinctMeta). Only those three elements are
// reported; a scope without any gives an empty valueMeta.
//
// $meta-add and $meta-delete change one resource's labels. R4 says they
// update meta in place without creating a version. Ember keeps every version
// immutable (history, vread and ETags depend on it), so a change is stored
// as a new version through the ordinary write path instead: the answer's
// meta carries the new versionId, and history shows the change. A request
// that changes nothing writes nothing. Labels are sets: profiles match by
// URL, tags and security labels by system+code (version and display are
// ignored, as the spec says).

// metaLabels are the profiles, tags and security labels of a meta, each
// item kept as written.
type metaLabels struct {
	profiles       []profileItem
	tags, security []codingItem
}

// profileItem is one meta.profile with its _profile element (extensions of
// the primitive), if any, so the two arrays stay aligned when items move.
type profileItem struct {
	url      string
	raw, ext json.RawMessage
}

// codingItem is one tag or security label and its identity.
type codingItem struct {
	system, code string
	raw          json.RawMessage
}

// Meta runs $meta on the system (typ ""), a type (id "") or one resource
// and returns its Parameters answer.
func (en *Engine) Meta(ctx context.Context, caller *Caller, typ, id string) ([]byte, error) {
	ctx, err := caller.bind(ctx)
	if err != nil {
		return nil, err
	}
	if id != "" {
		v, err := en.currentVersion(ctx, en.store.Read, typ, id)
		if err != nil {
			return nil, err
		}
		labels, err := resourceLabels(v.Content)
		if err != nil {
			return nil, err
		}
		return returnMeta(labels.encode()), nil
	}
	var types []string
	if typ != "" {
		types = []string{typ}
	}
	// The aggregate reads the index, past the store's guarded paths.
	if err := caller.policy().requireUnrestricted(types); err != nil {
		return nil, err
	}
	profiles, tags, security, err := en.store.DistinctMeta(ctx, typ)
	if err != nil {
		return nil, err
	}
	return returnMeta(distinctMetaJSON(profiles, tags, security)), nil
}

// currentVersion reads typ/id with read (the store's or a transaction's),
// mapping absence to NotFound and deletion to Gone.
func (en *Engine) currentVersion(ctx context.Context, read func(context.Context, string, string) (store.Version, error), typ, id string) (store.Version, error) {
	v, err := read(ctx, typ, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return v, fhir.Missing(typ + "/" + id + " is not known")
	case errors.Is(err, store.ErrDeleted):
		return v, fhir.NewError(fhir.Gone, "deleted", typ+"/"+id+" was deleted (version "+strconv.FormatInt(v.VersionID, 10)+")")
	}
	return v, err
}

// distinctMetaJSON renders the type- or system-level answer.
func distinctMetaJSON(profiles []string, tags, security []store.MetaCoding) []byte {
	type coding struct {
		System  string `json:"system,omitempty"`
		Code    string `json:"code"`
		Display string `json:"display,omitempty"`
	}
	conv := func(cs []store.MetaCoding) []coding {
		var out []coding
		for _, c := range cs {
			out = append(out, coding(c))
		}
		return out
	}
	b, _ := json.Marshal(struct {
		Profile  []string `json:"profile,omitempty"`
		Tag      []coding `json:"tag,omitempty"`
		Security []coding `json:"security,omitempty"`
	}{profiles, conv(tags), conv(security)}) // strings only: cannot fail
	return b
}

// metaOf returns a stored resource's meta ({} when it has none; stored
// versions always have one).
func metaOf(content []byte) (json.RawMessage, error) {
	members, err := jsonMembers(content)
	if err != nil {
		return nil, fmt.Errorf("engine: stored resource: %w", err)
	}
	if meta := memberValue(members, "meta"); meta != nil {
		return meta, nil
	}
	return json.RawMessage("{}"), nil
}

// resourceLabels reads the labels of a stored resource.
func resourceLabels(content []byte) (metaLabels, error) {
	meta, err := metaOf(content)
	if err != nil {
		return metaLabels{}, err
	}
	mm, err := jsonMembers(meta)
	if err != nil {
		return metaLabels{}, fmt.Errorf("engine: stored meta: %w", err)
	}
	return parseLabels(mm)
}

// parseLabels reads profile, _profile, tag and security of a meta's members.
func parseLabels(meta []jsonMember) (metaLabels, error) {
	var l metaLabels
	var profiles, exts, tags, security []json.RawMessage
	for _, f := range []struct {
		key string
		dst *[]json.RawMessage
	}{{"profile", &profiles}, {"_profile", &exts}, {"tag", &tags}, {"security", &security}} {
		if v := memberValue(meta, f.key); v != nil {
			if err := json.Unmarshal(v, f.dst); err != nil {
				return l, fmt.Errorf("meta.%s is not an array: %w", f.key, err)
			}
		}
	}
	for i, raw := range profiles {
		p := profileItem{raw: raw}
		_ = json.Unmarshal(raw, &p.url) // null (only an extension) leaves ""
		if i < len(exts) && string(exts[i]) != "null" {
			p.ext = exts[i]
		}
		l.profiles = append(l.profiles, p)
	}
	var err error
	if l.tags, err = parseCodings(tags); err != nil {
		return l, fmt.Errorf("meta.tag: %w", err)
	}
	if l.security, err = parseCodings(security); err != nil {
		return l, fmt.Errorf("meta.security: %w", err)
	}
	return l, nil
}

func parseCodings(raws []json.RawMessage) ([]codingItem, error) {
	out := make([]codingItem, 0, len(raws))
	for _, raw := range raws {
		var c struct{ System, Code string }
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, err
		}
		out = append(out, codingItem{system: c.System, code: c.Code, raw: raw})
	}
	return out, nil
}

// members renders the labels as meta members (profile, _profile, tag,
// security), leaving out empty ones.
func (l metaLabels) members() []jsonMember {
	var out []jsonMember
	if len(l.profiles) > 0 {
		urls := make([]json.RawMessage, len(l.profiles))
		exts := make([]json.RawMessage, len(l.profiles))
		hasExt := false
		for i, p := range l.profiles {
			urls[i], exts[i] = p.raw, p.ext
			if p.ext == nil {
				exts[i] = json.RawMessage("null")
			} else {
				hasExt = true
			}
		}
		out = append(out, jsonMember{"profile", rawArray(urls)})
		if hasExt {
			out = append(out, jsonMember{"_profile", rawArray(exts)})
		}
	}
	for _, f := range []struct {
		key   string
		items []codingItem
	}{{"tag", l.tags}, {"security", l.security}} {
		if len(f.items) == 0 {
			continue
		}
		raws := make([]json.RawMessage, len(f.items))
		for i, c := range f.items {
			raws[i] = c.raw
		}
		out = append(out, jsonMember{f.key, rawArray(raws)})
	}
	return out
}

// encode renders the labels as a Meta object.
func (l metaLabels) encode() []byte { return encodeMembers(l.members()) }

func rawArray(items []json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, it := range items {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(it)
	}
	b.WriteByte(']')
	return b.Bytes()
}

// metaChange applies a requested change to a resource's labels and reports
// whether anything changed.
type metaChange func(cur *metaLabels, req metaLabels) bool

// addMeta adds what is not there yet.
func addMeta(cur *metaLabels, req metaLabels) bool {
	changed := false
	for _, p := range req.profiles {
		if !hasProfile(cur.profiles, p.url) {
			cur.profiles = append(cur.profiles, p)
			changed = true
		}
	}
	for _, set := range []struct{ cur, req *[]codingItem }{{&cur.tags, &req.tags}, {&cur.security, &req.security}} {
		for _, c := range *set.req {
			if !hasCoding(*set.cur, c) {
				*set.cur = append(*set.cur, c)
				changed = true
			}
		}
	}
	return changed
}

// deleteMeta removes what matches.
func deleteMeta(cur *metaLabels, req metaLabels) bool {
	n := len(cur.profiles) + len(cur.tags) + len(cur.security)
	var profiles []profileItem
	for _, p := range cur.profiles {
		if !hasProfile(req.profiles, p.url) {
			profiles = append(profiles, p)
		}
	}
	cur.profiles = profiles
	keep := func(items, drop []codingItem) []codingItem {
		var out []codingItem
		for _, c := range items {
			if !hasCoding(drop, c) {
				out = append(out, c)
			}
		}
		return out
	}
	cur.tags = keep(cur.tags, req.tags)
	cur.security = keep(cur.security, req.security)
	return len(cur.profiles)+len(cur.tags)+len(cur.security) != n
}

func hasProfile(items []profileItem, url string) bool {
	for _, p := range items {
		if p.url == url {
			return true
		}
	}
	return false
}

func hasCoding(items []codingItem, c codingItem) bool {
	for _, x := range items {
		if x.system == c.system && x.code == c.code {
			return true
		}
	}
	return false
}

// MetaAdd runs $meta-add on typ/id with its Parameters body: the labels
// not there yet are added, as a new version when anything changes. It
// returns the version now current and the Parameters answer (the whole
// resulting meta, so the client learns the new versionId).
func (en *Engine) MetaAdd(ctx context.Context, caller *Caller, typ, id string, body []byte) (store.Version, []byte, error) {
	return en.metaChange(ctx, caller, typ, id, body, addMeta)
}

// MetaDelete runs $meta-delete on typ/id: as MetaAdd, removing labels.
func (en *Engine) MetaDelete(ctx context.Context, caller *Caller, typ, id string, body []byte) (store.Version, []byte, error) {
	return en.metaChange(ctx, caller, typ, id, body, deleteMeta)
}

func (en *Engine) metaChange(ctx context.Context, caller *Caller, typ, id string, body []byte, change metaChange) (store.Version, []byte, error) {
	ctx, err := caller.bind(ctx)
	if err != nil {
		return store.Version{}, nil, err
	}
	req, ferr := readMetaParameter(body)
	if ferr != nil {
		return store.Version{}, nil, ferr
	}
	var v store.Version
	err = en.store.InTx(ctx, func(tx *store.Tx) (err error) {
		v, err = en.changeMeta(ctx, tx, typ, id, req, change)
		return err
	})
	if err != nil {
		return v, nil, err
	}
	meta, err := metaOf(v.Content)
	if err != nil {
		return v, nil, err
	}
	return v, returnMeta(meta), nil
}

// readMetaParameter reads the Parameters body of $meta-add/$meta-delete: one
// "meta" parameter whose valueMeta's codings all have a code.
func readMetaParameter(body []byte) (metaLabels, *fhir.Error) {
	p, ferr := decodeParameters(body)
	if ferr != nil {
		return metaLabels{}, ferr
	}
	var meta json.RawMessage
	for i, prm := range p.Parameter {
		at := "Parameters.parameter[" + strconv.Itoa(i) + "]"
		if prm.Name != "meta" {
			return metaLabels{}, fhir.Invalid("unknown parameter "+quote(prm.Name)+": expected \"meta\"", at)
		}
		if len(prm.ValueMeta) == 0 || meta != nil {
			return metaLabels{}, fhir.Invalid("\"meta\" must appear once, with a valueMeta", at)
		}
		meta = prm.ValueMeta
	}
	if meta == nil {
		return metaLabels{}, fhir.Invalid("the Parameters has no \"meta\" parameter")
	}
	return parseMetaParameter(meta)
}

func parseMetaParameter(meta json.RawMessage) (metaLabels, *fhir.Error) {
	mm, err := jsonMembers(meta)
	if err != nil {
		return metaLabels{}, fhir.Invalid("valueMeta is not a JSON object")
	}
	labels, err := parseLabels(mm)
	if err != nil {
		return metaLabels{}, fhir.Invalid("invalid valueMeta: " + err.Error())
	}
	for _, p := range labels.profiles {
		if p.url == "" {
			return metaLabels{}, fhir.Invalid("valueMeta.profile: every profile needs a URL")
		}
	}
	for _, c := range append(append([]codingItem(nil), labels.tags...), labels.security...) {
		if c.code == "" {
			return metaLabels{}, fhir.Invalid("valueMeta: every tag and security label needs a code (labels are identified by system and code)")
		}
	}
	return labels, nil
}

// changeMeta applies change to typ/id's current version and, when that
// changes anything, stores the result as a new version.
func (en *Engine) changeMeta(ctx context.Context, tx *store.Tx, typ, id string, req metaLabels, change metaChange) (store.Version, error) {
	// Tx.Update row-locks the resource, and with If-Match on the version
	// read here a concurrent writer makes it fail instead of being
	// overwritten. The lock is then held, so a second read sees the
	// latest version and the retry cannot conflict again.
	for attempt := 0; ; attempt++ {
		v, err := en.currentVersion(ctx, tx.Read, typ, id)
		if err != nil {
			return v, err
		}
		body, changed, err := applyMetaChange(v.Content, req, change)
		if err != nil || !changed {
			return v, err
		}
		res, err := en.parser.Parse(body, typ)
		if err != nil {
			return v, err
		}
		nv, _, err := tx.Update(ctx, res, id, v.VersionID)
		if errors.Is(err, store.ErrVersionConflict) && attempt < 2 {
			continue
		}
		return nv, err
	}
}

// applyMetaChange returns content with its labels changed.
func applyMetaChange(content []byte, req metaLabels, change metaChange) ([]byte, bool, error) {
	members, err := jsonMembers(content)
	if err != nil {
		return nil, false, fmt.Errorf("engine: stored resource: %w", err)
	}
	var meta []jsonMember
	if raw := memberValue(members, "meta"); raw != nil {
		if meta, err = jsonMembers(raw); err != nil {
			return nil, false, fmt.Errorf("engine: stored meta: %w", err)
		}
	}
	labels, err := parseLabels(meta)
	if err != nil {
		return nil, false, fmt.Errorf("engine: stored meta: %w", err)
	}
	if !change(&labels, req) {
		return content, false, nil
	}
	meta = replaceMembers(meta, labels.members(), "profile", "_profile", "tag", "security")
	members = replaceMembers(members, []jsonMember{{"meta", encodeMembers(meta)}}, "meta")
	return encodeMembers(members), true, nil
}

// replaceMembers drops the members named keys and adds repl: each where its
// key was, new ones at the end, so the object keeps its order.
func replaceMembers(ms, repl []jsonMember, keys ...string) []jsonMember {
	byKey := map[string]json.RawMessage{}
	for _, m := range repl {
		byKey[m.key] = m.value
	}
	var out []jsonMember
	done := map[string]bool{}
	for _, m := range ms {
		if !contains(keys, m.key) {
			out = append(out, m)
			continue
		}
		if v, ok := byKey[m.key]; ok {
			out = append(out, jsonMember{m.key, v})
			done[m.key] = true
		}
	}
	for _, m := range repl {
		if !done[m.key] {
			out = append(out, m)
		}
	}
	return out
}
