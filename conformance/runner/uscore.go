package runner

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// usCore runs the US Core 6.1 checks, one group per resource type.
func (r *run) usCore() {
	r.check("CapabilityStatement", "declares US Core 6.1 (instantiates us-core-server)", func() error {
		resp, err := r.get("metadata")
		if err != nil {
			return err
		}
		if err := expectStatus(resp, http.StatusOK); err != nil {
			return err
		}
		var cs struct{ Instantiates []string }
		if err := resp.json(&cs); err != nil {
			return err
		}
		for _, u := range cs.Instantiates {
			if strings.HasPrefix(u, "http://hl7.org/fhir/us/core/CapabilityStatement/us-core-server") {
				return nil
			}
		}
		return skipf("the CapabilityStatement instantiates no US Core server statement (%v): is the US Core package loaded?", cs.Instantiates)
	})
	for i := range profiles {
		r.profileChecks(&profiles[i])
	}
}

// typeRun is the state of one resource type's checks.
type typeRun struct {
	*run
	pr      *profile
	samples []map[string]any
}

// profileChecks runs one resource type's checks.
func (r *run) profileChecks(pr *profile) {
	t := &typeRun{run: r, pr: pr}
	var found bool
	r.check(pr.typ, "find "+pr.typ+" resources to test", func() error {
		err := t.discover()
		found = len(t.samples) > 0
		if err == nil && !found {
			return skipf("the server holds no %s: every %s check is skipped", pr.typ, pr.typ)
		}
		return err
	})
	if !found {
		return
	}
	first := true
	for _, s := range pr.searches {
		name := "search " + strings.Join(s.params, "+")
		if !s.shall {
			name += " (SHOULD)"
		}
		var q url.Values
		var sample map[string]any
		passed := false
		r.check(pr.typ, name, func() error {
			var err error
			q, sample, err = t.searchValues(s)
			if err != nil {
				return err
			}
			err = t.runSearch(s, http.MethodGet, q, sample)
			passed = err == nil
			return err
		})
		if !passed {
			continue
		}
		t.variants(s, q, sample, first)
		first = false
	}
	if pr.provenance {
		r.check(pr.typ, "_revinclude=Provenance:target", t.revincludeProvenance)
	}
	for _, inc := range pr.includes {
		r.check(pr.typ, "_include="+inc, func() error { return t.include(inc) })
	}
	r.check(pr.typ, "read every resource found", t.readAll)
	r.check(pr.typ, "references resolve", t.resolveReferences)
	r.check(pr.typ, "validate against the US Core profiles claimed", t.validateProfiles)
	r.check(pr.typ, "must-support elements are present", t.mustSupport)
}

// discover finds sample resources: those of the given patients, else the
// oldest and the newest the server holds (a server loaded with bulk data
// and then with the guide's examples has both kinds).
func (t *typeRun) discover() error {
	seen := map[string]bool{}
	add := func(rs []map[string]any) {
		for _, x := range rs {
			if k := key(x); !seen[k] && x["resourceType"] == t.pr.typ && len(t.samples) < 2*t.o.MaxResources {
				seen[k] = true
				t.samples = append(t.samples, x)
			}
		}
	}
	n := fmt.Sprint(t.o.MaxResources)
	if len(t.o.Patients) > 0 && t.pr.patient != "" {
		for _, pid := range t.o.Patients {
			res, err := t.search(t.pr.typ, url.Values{t.pr.patient: {pid}, "_count": {n}}.Encode())
			if err != nil {
				return err
			}
			add(res.matches)
		}
		return nil
	}
	if len(t.o.Patients) > 0 && t.pr.typ == "Patient" {
		res, err := t.search("Patient", url.Values{"_id": {strings.Join(t.o.Patients, ",")}}.Encode())
		if err != nil {
			return err
		}
		add(res.matches)
		return nil
	}
	for _, q := range []string{"_count=" + n, "_count=" + n + "&_sort=-_lastUpdated"} {
		resp, err := t.get(t.pr.typ + "?" + q)
		if err != nil {
			return err
		}
		if err := expectStatus(resp, http.StatusOK); err != nil {
			return err
		}
		var b bundle
		if err := resp.json(&b); err != nil {
			return err
		}
		var rs []map[string]any
		for _, e := range b.Entry {
			var x map[string]any
			if json.Unmarshal(e.Resource, &x) == nil {
				rs = append(rs, x)
			}
		}
		add(rs)
	}
	return nil
}

// searchValues picks the first sample with a value for every parameter of
// s and returns the query those values make.
func (t *typeRun) searchValues(s search) (url.Values, map[string]any, error) {
	var missing []string
	for _, x := range t.samples {
		q := url.Values{}
		ok := true
		for _, name := range s.params {
			v, has := t.valueFor(x, name)
			if !has {
				ok = false
				if !contains(missing, name) {
					missing = append(missing, name)
				}
				break
			}
			q.Set(name, v)
		}
		if ok {
			return q, x, nil
		}
	}
	return nil, nil, skipf("none of the %d %s resources found has a value for %s", len(t.samples), t.pr.typ, strings.Join(missing, ", "))
}

// valueFor derives a search value for parameter name from resource x.
func (t *typeRun) valueFor(x map[string]any, name string) (string, bool) {
	def, ok := t.pr.paramOf(name)
	if !ok {
		return "", false
	}
	if def.kind == idParam {
		id, _ := x["id"].(string)
		return id, id != ""
	}
	for _, path := range def.paths {
		for _, v := range values(x, path) {
			switch def.kind {
			case refParam:
				if m, ok := v.(map[string]any); ok {
					if ref, _ := m["reference"].(string); ref != "" && !strings.HasPrefix(ref, "#") && !strings.HasPrefix(ref, "urn:") {
						parts := strings.Split(ref, "/")
						if name == t.pr.patient {
							return parts[len(parts)-1], true
						}
						if len(parts) >= 2 {
							return parts[len(parts)-2] + "/" + parts[len(parts)-1], true
						}
					}
				}
			case tokenParam:
				withSystem, code := tokenValue(v)
				if name == "identifier" && withSystem != "" {
					return withSystem, true
				}
				if code != "" {
					return code, true
				}
			case dateParam:
				switch d := v.(type) {
				case string:
					return d, true
				case map[string]any:
					if s, _ := d["start"].(string); s != "" {
						return "ge" + s, true
					}
				}
			case stringParam:
				if s := stringValue(v); s != "" {
					return s, true
				}
			}
		}
	}
	return "", false
}

// matches reports whether resource x satisfies name=value, by the runner's
// own reading; known is false for a parameter it cannot evaluate.
func (t *typeRun) matches(x map[string]any, name, value string) (ok, known bool) {
	def, has := t.pr.paramOf(name)
	if !has {
		return false, false
	}
	if def.kind == idParam {
		id, _ := x["id"].(string)
		for _, v := range strings.Split(value, ",") {
			if v == id {
				return true, true
			}
		}
		return false, true
	}
	for _, alt := range splitOr(value) {
		for _, path := range def.paths {
			for _, v := range values(x, path) {
				var m bool
				switch def.kind {
				case refParam:
					m = matchReference(v, alt)
				case tokenParam:
					m = matchToken(v, alt)
				case dateParam:
					m = matchDate(v, alt)
				case stringParam:
					m = matchString(v, alt)
				}
				if m {
					return true, true
				}
			}
		}
	}
	return false, true
}

// splitOr splits a value on unescaped commas (multiple-or).
func splitOr(v string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(v); i++ {
		switch {
		case v[i] == '\\' && i+1 < len(v):
			cur.WriteByte(v[i+1])
			i++
		case v[i] == ',':
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(v[i])
		}
	}
	return append(out, cur.String())
}

// runSearch runs one search and checks its answer: accepted (a SHOULD
// parameter the server lacks is a skip), every match satisfies every
// criterion, and sample is among the matches.
func (t *typeRun) runSearch(s search, method string, q url.Values, sample map[string]any) error {
	res, err := t.searchWith(method, t.pr.typ, q.Encode())
	if err != nil {
		var f *failure
		if !s.shall && asFailure(err, &f) && strings.Contains(f.msg, "status 400") {
			return skipf("the server does not support this SHOULD search: %s", f.msg)
		}
		return err
	}
	if p := res.ignoredParam(s.params); p != "" {
		if !s.shall {
			return skipf("the server ignored the SHOULD parameter %s: %s", p, strings.Join(res.warnings, "; "))
		}
		return failf(res.request, "the server ignored the SHALL parameter %s: %s", p, strings.Join(res.warnings, "; "))
	}
	return t.checkMatches(res, q, sample)
}

// checkMatches: every match satisfies q, and sample is found (when every
// page was read).
func (t *typeRun) checkMatches(res *searchResult, q url.Values, sample map[string]any) error {
	for _, x := range res.matches {
		if x["resourceType"] != t.pr.typ {
			return failf(res.request, "a match is a %v, not a %s", x["resourceType"], t.pr.typ)
		}
		for name, vs := range q {
			if strings.HasPrefix(name, "_") && name != "_id" {
				continue
			}
			name, _, _ = strings.Cut(name, ":")
			for _, v := range vs {
				if ok, known := t.matches(x, name, v); known && !ok {
					return failf(res.request, "%s does not match %s=%s, yet the search returned it", key(x), name, v)
				}
			}
		}
	}
	if sample != nil && res.complete && !containsKey(res.matches, key(sample)) {
		return failf(res.request, "%s matches the search but was not returned (%d returned)", key(sample), len(res.matches))
	}
	return nil
}

func containsKey(rs []map[string]any, k string) bool {
	for _, x := range rs {
		if key(x) == k {
			return true
		}
	}
	return false
}

func asFailure(err error, f **failure) bool {
	x, ok := err.(*failure)
	if ok {
		*f = x
	}
	return ok
}

// variants are the searches Inferno derives from a passing one: token
// system|code, date comparators, and on the first search POST _search,
// patient=Patient/id and multiple-or.
func (t *typeRun) variants(s search, q url.Values, sample map[string]any, first bool) {
	base := strings.Join(s.params, "+")
	for _, name := range s.params {
		def, _ := t.pr.paramOf(name)
		switch def.kind {
		case tokenParam:
			withSystem := ""
			for _, path := range def.paths {
				for _, v := range values(sample, path) {
					if w, c := tokenValue(v); c == q.Get(name) && w != c {
						withSystem = w
					}
				}
			}
			if withSystem == "" || withSystem == q.Get(name) {
				continue
			}
			t.check(t.pr.typ, "search "+base+" with "+name+"=system|code", func() error {
				v := cloneValues(q)
				v.Set(name, withSystem)
				return t.runSearch(s, http.MethodGet, v, sample)
			})
		case dateParam:
			for _, c := range dateComparators(sample, def) {
				t.check(t.pr.typ, "search "+base+" with "+name+"="+c[:2]+"…", func() error {
					v := cloneValues(q)
					v.Set(name, c)
					return t.runSearch(s, http.MethodGet, v, sample)
				})
			}
		}
	}
	if !first {
		return
	}
	t.check(t.pr.typ, "POST "+t.pr.typ+"/_search equals GET ("+base+")", func() error {
		get, err := t.searchWith(http.MethodGet, t.pr.typ, q.Encode())
		if err != nil {
			return err
		}
		post, err := t.searchWith(http.MethodPost, t.pr.typ, q.Encode())
		if err != nil {
			return err
		}
		if a, b := sortedIDs(get.matches), sortedIDs(post.matches); a != b {
			return failf(post.request, "POST _search returned %d resources, GET %d: [%s] vs [%s]", len(post.matches), len(get.matches), abbreviate(b, 200), abbreviate(a, 200))
		}
		return t.checkMatches(post, q, sample)
	})
	if pid := q.Get(t.pr.patient); t.pr.patient != "" && pid != "" {
		t.check(t.pr.typ, t.pr.patient+"=Patient/id equals "+t.pr.patient+"=id ("+base+")", func() error {
			v := cloneValues(q)
			v.Set(t.pr.patient, "Patient/"+pid)
			a, err := t.search(t.pr.typ, q.Encode())
			if err != nil {
				return err
			}
			b, err := t.search(t.pr.typ, v.Encode())
			if err != nil {
				return err
			}
			if x, y := sortedIDs(a.matches), sortedIDs(b.matches); x != y {
				return failf(b.request, "returned %d resources, with the bare id %d", len(b.matches), len(a.matches))
			}
			return nil
		})
	}
	for _, name := range s.params {
		if def, _ := t.pr.paramOf(name); def.kind != tokenParam || name == "identifier" {
			continue
		}
		t.check(t.pr.typ, "search "+base+" with multiple-or "+name, func() error {
			other := t.otherValue(name, q.Get(name))
			v := cloneValues(q)
			v.Set(name, q.Get(name)+","+other)
			res, err := t.search(t.pr.typ, v.Encode())
			if err != nil {
				return err
			}
			if err := t.checkMatches(res, v, sample); err != nil {
				return err
			}
			// The or must widen: what either value finds alone is found.
			v.Set(name, other)
			alone, err := t.search(t.pr.typ, v.Encode())
			if err != nil {
				return err
			}
			for _, x := range alone.matches {
				if res.complete && !containsKey(res.matches, key(x)) {
					return failf(res.request, "%s matches %s=%s but the multiple-or search did not return it", key(x), name, other)
				}
			}
			return nil
		})
		break
	}
}

// otherValue is another value of the token parameter name seen among the
// samples, or one no resource has.
func (t *typeRun) otherValue(name, not string) string {
	for _, x := range t.samples {
		if v, ok := t.valueFor(x, name); ok && v != not && !strings.Contains(v, ",") {
			return v
		}
	}
	return "ember-conformance-none"
}

// dateComparators are gt, ge, lt and le searches the sample's date
// satisfies by a day's margin.
func dateComparators(sample map[string]any, def param) []string {
	for _, path := range def.paths {
		for _, v := range values(sample, path) {
			sp, ok := dateSpan(v)
			if !ok {
				continue
			}
			const day = 24 * time.Hour
			f := func(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }
			before := f(sp.start.Add(-day - slack))
			out := []string{"gt" + before, "ge" + before}
			if !sp.end.IsZero() {
				after := f(sp.end.Add(day + slack))
				out = append(out, "lt"+after, "le"+after)
			}
			return out
		}
	}
	return nil
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, x := range v {
		out[k] = append([]string(nil), x...)
	}
	return out
}

func sortedIDs(rs []map[string]any) string {
	s := ids(rs)
	sort.Strings(s)
	return strings.Join(s, " ")
}

// patientOf returns the id of the patient a sample belongs to.
func (t *typeRun) patientOf(x map[string]any) string {
	if t.pr.typ == "Patient" {
		id, _ := x["id"].(string)
		return id
	}
	if t.pr.patient == "" {
		return ""
	}
	v, _ := t.valueFor(x, t.pr.patient)
	return v
}

// scopeQuery is a search finding the sample's patient's resources (or the
// sample itself for types without a patient).
func (t *typeRun) scopeQuery(x map[string]any) url.Values {
	switch {
	case t.pr.typ == "Patient" || t.pr.patient == "":
		id, _ := x["id"].(string)
		return url.Values{"_id": {id}}
	}
	return url.Values{t.pr.patient: {t.patientOf(x)}}
}

// revincludeProvenance: _revinclude=Provenance:target brings the
// Provenances that target the matches, and only those.
func (t *typeRun) revincludeProvenance() error {
	// Prefer a resource some Provenance targets (the server's first
	// Provenances, read once per run), else the first sample.
	var sample map[string]any
	var targeted string
	for k, prov := range t.provenanceTargets() {
		typ, id, _ := strings.Cut(k, "/")
		if typ != t.pr.typ {
			continue
		}
		resp, err := t.get(k)
		if err != nil {
			return err
		}
		var x map[string]any
		if resp.status != http.StatusOK || json.Unmarshal(resp.body, &x) != nil || x["id"] != id || t.patientOf(x) == "" {
			continue
		}
		sample, targeted = x, prov
		break
	}
	for _, x := range t.samples {
		if sample == nil && t.patientOf(x) != "" {
			sample = x
		}
	}
	if sample == nil {
		return skipf("no %s with a patient to search by", t.pr.typ)
	}
	q := t.scopeQuery(sample)
	q.Set("_revinclude", "Provenance:target")
	res, err := t.search(t.pr.typ, q.Encode())
	if err != nil {
		return err
	}
	got := map[string]bool{}
	for _, x := range res.matches {
		got[key(x)] = true
	}
	for _, inc := range res.included {
		if inc["resourceType"] != "Provenance" {
			return failf(res.request, "included %s, not a Provenance", key(inc))
		}
		hit := false
		for _, v := range values(inc, "target") {
			for k := range got {
				if matchReference(v, k) {
					hit = true
				}
			}
		}
		if !hit {
			return failf(res.request, "included %s, which targets none of the matches", key(inc))
		}
	}
	if targeted != "" && res.complete && !containsKey(res.included, targeted) {
		return failf(res.request, "%s targets %s but was not included", targeted, key(sample))
	}
	if targeted == "" {
		return skipf("no Provenance targets the %s resources probed (the search was accepted)", t.pr.typ)
	}
	return nil
}

// provenanceTargets maps "Type/id" to a Provenance targeting it, from the
// server's first 100 Provenances (read once per run).
func (t *typeRun) provenanceTargets() map[string]string {
	if t.run.provenance != nil {
		return t.run.provenance
	}
	t.run.provenance = map[string]string{}
	res, err := t.search("Provenance", "_count=100")
	if err != nil {
		return t.run.provenance
	}
	for _, p := range res.matches {
		collectRefs(p["target"], func(ref string) {
			if _, ok := t.run.provenance[ref]; !ok {
				t.run.provenance[ref] = key(p)
			}
		})
	}
	return t.run.provenance
}

// include: _include brings the resources the matches reference.
func (t *typeRun) include(inc string) error {
	path := t.pr.includePath[inc]
	for _, x := range t.samples {
		var refs []string
		for _, v := range values(x, path) {
			if m, ok := v.(map[string]any); ok {
				if ref, _ := m["reference"].(string); ref != "" && !strings.HasPrefix(ref, "#") {
					refs = append(refs, ref)
				}
			}
		}
		if len(refs) == 0 {
			continue
		}
		q := url.Values{"_id": {x["id"].(string)}, "_include": {inc}}
		res, err := t.search(t.pr.typ, q.Encode())
		if err != nil {
			return err
		}
		for _, ref := range refs {
			found := false
			for _, y := range res.included {
				if matchReference(map[string]any{"reference": ref}, key(y)) {
					found = true
				}
			}
			if !found {
				return failf(res.request, "%s references %s, which was not included", key(x), ref)
			}
		}
		return nil
	}
	return skipf("no %s found references anything through %s", t.pr.typ, path)
}

// readAll reads every sample by id.
func (t *typeRun) readAll() error {
	for _, x := range t.samples {
		resp, err := t.get(key(x))
		if err != nil {
			return err
		}
		if err := expectStatus(resp, http.StatusOK); err != nil {
			return err
		}
		var got map[string]any
		if err := resp.json(&got); err != nil {
			return err
		}
		if key(got) != key(x) {
			return failf(resp.request, "read answered %s", key(got))
		}
	}
	return nil
}

// resolveReferences: for each element of the samples holding references,
// at least one of its relative references resolves (as Inferno asks of
// must-support references; data loaded from elsewhere may hold dangling
// ones, a server cannot be blamed for those alone).
func (t *typeRun) resolveReferences() error {
	byElement := map[string][]string{}
	for _, x := range t.samples {
		for k, v := range x {
			if k == "contained" || k == "text" {
				continue
			}
			collectRefs(v, func(ref string) {
				if len(byElement[k]) < 3 && !contains(byElement[k], ref) {
					byElement[k] = append(byElement[k], ref)
				}
			})
		}
	}
	if len(byElement) == 0 {
		return skipf("the %s resources found reference nothing", t.pr.typ)
	}
	var broken []string
	for _, el := range sortedKeys(byElement) {
		ok := false
		var last *response
		for _, ref := range byElement[el] {
			resp, err := t.get(ref)
			if err != nil {
				return err
			}
			last = resp
			if resp.status == http.StatusOK {
				ok = true
				break
			}
		}
		if !ok {
			broken = append(broken, fmt.Sprintf("%s.%s (%s: %d)", t.pr.typ, el, last.request, last.status))
		}
	}
	if len(broken) > 0 {
		return failf("", "no reference of these elements resolves: %s", strings.Join(broken, "; "))
	}
	return nil
}

// collectRefs calls f with every relative "Type/id" reference under v.
func collectRefs(v any, f func(string)) {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			collectRefs(e, f)
		}
	case map[string]any:
		for k, e := range x {
			if ref, ok := e.(string); ok && k == "reference" {
				if parts := strings.Split(ref, "/"); len(parts) == 2 && !strings.Contains(ref, "?") && !strings.HasPrefix(ref, "#") {
					f(ref)
				}
				continue
			}
			collectRefs(e, f)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// validateProfiles validates each sample that claims a US Core profile
// against it with the server's $validate?profile=. A server that cannot
// check a profile makes it a skip, with its words.
func (t *typeRun) validateProfiles() error {
	validated := 0
	for _, x := range t.samples {
		for _, pv := range values(x, "meta.profile") {
			prof, _ := pv.(string)
			if !strings.HasPrefix(prof, "http://hl7.org/fhir/us/core/") {
				continue
			}
			body, err := json.Marshal(x)
			if err != nil {
				return err
			}
			resp, err := t.do(http.MethodPost, t.pr.typ+"/$validate?profile="+url.QueryEscape(prof), "application/fhir+json", body, "")
			if err != nil {
				return err
			}
			text := outcomeText(resp.body)
			if why := profileUnknown(resp, prof, text); why != "" {
				return skipf("the server cannot validate against %s: %s", prof, abbreviate(why, 300))
			}
			if resp.status != http.StatusOK {
				return failf(resp.request, "status %d: %s", resp.status, abbreviate(text, 300))
			}
			if errs := errorIssues(resp.body); errs != "" {
				return failf(resp.request, "%s does not conform to %s: %s", key(x), prof, abbreviate(errs, 500))
			}
			validated++
		}
	}
	if validated == 0 {
		return skipf("none of the %d %s resources found claims a US Core profile", len(t.samples), t.pr.typ)
	}
	return nil
}

// profileUnknown returns the server's words when its answer says it did
// not check profile: a warning or error naming the profile as unknown or
// not checked (Ember: `profile "…" was not checked: …`; HAPI: "Profile
// reference '…' has not been checked because it is unknown"), or a 4xx
// other than 422. Information issues (a binding left unchecked) do not
// count: the profile itself was checked.
func profileUnknown(resp *response, profile, text string) string {
	if resp.status >= 400 && resp.status < 500 && resp.status != http.StatusUnprocessableEntity {
		return text
	}
	var oo struct {
		Issue []struct{ Severity, Diagnostics string }
	}
	if json.Unmarshal(resp.body, &oo) != nil {
		return ""
	}
	for _, i := range oo.Issue {
		if i.Severity == "information" || !strings.Contains(i.Diagnostics, profile) {
			continue
		}
		lower := strings.ToLower(i.Diagnostics)
		for _, w := range []string{"not checked", "not been checked", "unknown", "not known", "unable to locate", "cannot be resolved", "not supported", "not found"} {
			if strings.Contains(lower, w) {
				return i.Diagnostics
			}
		}
	}
	return ""
}

// errorIssues lists an OperationOutcome's error and fatal issues.
func errorIssues(body []byte) string {
	var oo struct {
		Issue []struct {
			Severity, Code, Diagnostics string
			Expression                  []string
		}
	}
	if json.Unmarshal(body, &oo) != nil {
		return ""
	}
	var out []string
	for _, i := range oo.Issue {
		if i.Severity == "error" || i.Severity == "fatal" {
			s := i.Diagnostics
			if len(i.Expression) > 0 {
				s += " at " + strings.Join(i.Expression, ", ")
			}
			out = append(out, s)
		}
	}
	return strings.Join(out, "; ")
}

// mustSupport reads the type's US Core profile from the server
// (StructureDefinition?url=) and checks each must-support element (slices
// aside) is present in at least one sample. Missing ones are a skip: the
// data lacks them, which says nothing against the server.
func (t *typeRun) mustSupport() error {
	res, err := t.search("StructureDefinition", url.Values{"url": {t.pr.url}}.Encode())
	if err != nil {
		return err
	}
	if len(res.matches) == 0 {
		return skipf("the server holds no StructureDefinition %s (load the US Core package)", t.pr.url)
	}
	var sd struct {
		Snapshot struct {
			Element []struct {
				ID, Path    string
				MustSupport bool
			}
		}
	}
	raw, _ := json.Marshal(res.matches[0])
	if err := json.Unmarshal(raw, &sd); err != nil {
		return err
	}
	var missing []string
	checked := 0
	for _, e := range sd.Snapshot.Element {
		if !e.MustSupport || strings.Contains(e.ID, ":") {
			continue
		}
		path, ok := strings.CutPrefix(e.Path, t.pr.typ+".")
		if !ok {
			continue
		}
		checked++
		found := false
		for _, x := range t.samples {
			if len(values(x, path)) > 0 {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, path)
		}
	}
	if len(missing) > 0 {
		return skipf("%d of %d must-support elements are in no %s found: %s", len(missing), checked, t.pr.typ, strings.Join(missing, ", "))
	}
	return nil
}
