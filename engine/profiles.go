package engine

import (
	"bytes"
	"encoding/json"

	"github.com/emberfhir/ember/fhir"
)

// Profiles checks resources against the profiles (StructureDefinitions) of
// the implementation guides loaded (conformance/profile implements it).
type Profiles interface {
	// Known reports whether url (optionally |version) names a profile it
	// can check.
	Known(url string) bool
	// Check validates a resource's JSON (of type typ, already valid R4)
	// against the profile url, for $validate. Error issues mean it does
	// not conform; warnings and information (must-support, bindings not
	// checked) are reported beside.
	Check(typ string, body []byte, url string) []fhir.Issue
	// CheckStructure is Check for the write path, which must stay fast: it
	// evaluates the invariants compiled to Go and reports those it cannot
	// as information (not evaluated) rather than run a general FHIRPath
	// engine on every write.
	CheckStructure(typ string, body []byte, url string) []fhir.Issue
}

// ProfileEnforcement decides which writes are checked against profiles
// (--profile-enforcement). The zero value is Claimed.
type ProfileEnforcement struct {
	// Off checks nothing at write ($validate?profile= still checks).
	Off bool
	// Required lists, per resource type, profiles every write of that type
	// must conform to, whether it claims them or not ("required:URL").
	Required map[string][]string
}

// checkProfiles enforces the profile policy on a resource about to be
// written: with Claimed (the default), a resource whose meta.profile names
// a known profile must conform to it; profiles Ember does not hold are
// not checked (a claim is the client's statement, not a request). Only the
// error issues make the write fail.
func (en *Engine) checkProfiles(res *fhir.Resource) error {
	pol := en.profiles.Load()
	p := pol.profiles
	if p == nil || pol.enforcement.Off {
		return nil
	}
	body := res.Body()
	urls := pol.enforcement.Required[res.Type()]
	// Most resources claim nothing: skip the decoding when "profile" is
	// nowhere in the body.
	if bytes.Contains(body, []byte(`"profile"`)) {
		urls = append(append([]string(nil), urls...), claimedProfiles(body)...)
	}
	if len(urls) == 0 {
		return nil
	}
	var errs []fhir.Issue
	seen := map[string]bool{}
	for _, u := range urls {
		if seen[u] || !p.Known(u) {
			continue
		}
		seen[u] = true
		for _, is := range p.CheckStructure(res.Type(), body, u) {
			if is.Severity == "error" || is.Severity == "fatal" {
				errs = append(errs, is)
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return &fhir.Error{Kind: fhir.Unprocessable, Issues: errs}
}

// profilePolicy is the profiles in force and how writes are held to them:
// replaced whole when a guide is installed while serving (SetProfiles).
type profilePolicy struct {
	profiles    Profiles
	enforcement ProfileEnforcement
}

// SetProfiles replaces the profiles writes and $validate are checked
// against, and the enforcement policy: a guide installed into the database
// while the server runs takes effect without a restart. Safe for
// concurrent use; requests under way finish with the policy they began with.
func (en *Engine) SetProfiles(p Profiles, pe ProfileEnforcement) {
	en.profiles.Store(&profilePolicy{profiles: p, enforcement: pe})
}

// claimedProfiles returns the resource's meta.profile values.
func claimedProfiles(body []byte) []string {
	var head struct {
		Meta struct {
			Profile []string `json:"profile"`
		} `json:"meta"`
	}
	_ = json.Unmarshal(body, &head) // valid JSON: Parse checked it
	return head.Meta.Profile
}

// validateProfiles is $validate's profile check: the profiles asked for
// (?profile=), else those the policy requires and the resource claims.
// A profile no loaded guide defines is reported as not checked (a
// warning), never as an error.
func (en *Engine) validateProfiles(typ string, body []byte, asked []string) []fhir.Issue {
	pol := en.profiles.Load()
	p := pol.profiles
	urls := asked
	if len(urls) == 0 && p == nil {
		return nil // no guide loaded: claims are not this server's business
	}
	if len(urls) == 0 {
		urls = append(append([]string(nil), pol.enforcement.Required[typ]...), claimedProfiles(body)...)
	}
	var out []fhir.Issue
	seen := map[string]bool{}
	for _, u := range urls {
		if seen[u] {
			continue
		}
		seen[u] = true
		if p == nil || !p.Known(u) {
			out = append(out, fhir.Issue{Severity: "warning", Code: "not-supported",
				Diagnostics: "profile " + quote(u) + " was not checked: no implementation guide loaded here defines it (ember ig install)"})
			continue
		}
		out = append(out, p.Check(typ, body, u)...)
	}
	return out
}
