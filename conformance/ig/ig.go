// Package ig installs implementation guide packages and loads them into a
// process. Installing (ember ig install, serve --ig) stores the package's
// archive in the database (store/igdb), so every replica loads the same
// guides at start, and writes its conformance resources (StructureDefinition,
// SearchParameter, ValueSet, CodeSystem, CapabilityStatement, …) as ordinary
// FHIR resources through the engine, as the System caller, each a
// conditional create on its url and version: installing again writes
// nothing, and the resources are readable, searchable and available to
// terminology like any other.
//
// Loading (Load) registers the packages' search parameters in the search
// registry (fhir/spec: indexed at write time from then on), compiles their
// profiles (conformance/profile) and gathers what the CapabilityStatement
// declares. What cannot be loaded is reported in Loaded.Notes, never
// dropped silently.
package ig

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/emberfhir/ember/conformance/igpkg"
	"github.com/emberfhir/ember/conformance/profile"
	"github.com/emberfhir/ember/conformance/searchparam"
	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir/spec"
	"github.com/emberfhir/ember/store/igdb"
)

// conformanceTypes are the resource types Install writes through the
// engine: the definitions others read (terminology, validation, clients).
var conformanceTypes = map[string]bool{
	"StructureDefinition": true, "SearchParameter": true, "ValueSet": true, "CodeSystem": true,
	"CapabilityStatement": true, "ImplementationGuide": true, "OperationDefinition": true,
	"ConceptMap": true, "NamingSystem": true,
}

// Report is what Install did.
type Report struct {
	Package string // name#version
	// Created and Existing count the conformance resources written and
	// those found already (same url and version).
	Created, Existing int
	// Changed is false when the same archive was installed already.
	Changed bool
	// NewParams are the search parameters the package adds ("Type.code");
	// Pending is set when resources of their types were stored already:
	// they are searchable on them only after `ember reindex`.
	NewParams []string
	Pending   bool
	// Notes are resources not written and why.
	Notes []string
}

// Install stores a package archive and writes its conformance resources
// through eng as the System caller.
func Install(ctx context.Context, eng *engine.Engine, db *igdb.DB, archive []byte) (Report, error) {
	pkg, err := igpkg.Read(archive)
	if err != nil {
		return Report{}, err
	}
	rep := Report{Package: pkg.Key()}
	own := map[string][]searchparam.Compiled{}
	params, _, notes := compileParams([]*igpkg.Package{pkg}, own)
	rep.Notes = append(rep.Notes, notes...)
	for base, ps := range own {
		params[base] = append(params[base], ps...)
	}
	types := map[string]bool{}
	for base, ps := range params {
		for _, p := range ps {
			rep.NewParams = append(rep.NewParams, base+"."+p.Param.Code)
			types[base] = true
		}
	}
	sort.Strings(rep.NewParams)
	if len(types) > 0 {
		list := make([]string, 0, len(types))
		for t := range types {
			list = append(list, t)
		}
		if rep.Pending, err = db.HasResources(ctx, list); err != nil {
			return rep, err
		}
	}
	if rep.Changed, err = db.Save(ctx, pkg.Name, pkg.Version, archive, rep.Pending); err != nil {
		return rep, err
	}
	if !rep.Changed { // installed before: whether a reindex ran since is the database's to say
		if rep.Pending, err = db.ReindexPending(ctx, pkg.Name, pkg.Version); err != nil {
			return rep, err
		}
	}
	for _, r := range pkg.Resources {
		if !conformanceTypes[r.ResourceType] {
			continue
		}
		if r.URL == "" {
			rep.Notes = append(rep.Notes, r.File+": no url, not written")
			continue
		}
		res, err := eng.Parser().Parse(r.JSON, r.ResourceType)
		if err != nil {
			rep.Notes = append(rep.Notes, r.File+": not valid R4, not written: "+err.Error())
			continue
		}
		cond := url.Values{"url": {r.URL}}
		if r.Version != "" {
			cond.Set("version", r.Version)
		}
		out, err := eng.Create(ctx, engine.System, engine.CreateRequest{Resource: res, IfNoneExistParams: cond})
		if err != nil {
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			rep.Notes = append(rep.Notes, r.File+": not written: "+err.Error())
			continue
		}
		if out.Outcome == engine.Found {
			rep.Existing++
		} else {
			rep.Created++
		}
	}
	return rep, nil
}

// Installed reads the packages installed in the database, with whether
// each still waits for a reindex.
func Installed(ctx context.Context, db *igdb.DB) ([]*igpkg.Package, map[string]bool, error) {
	rows, err := db.List(ctx)
	if err != nil {
		return nil, nil, err
	}
	var pkgs []*igpkg.Package
	pending := map[string]bool{}
	for _, r := range rows {
		p, err := igpkg.Read(r.Archive)
		if err != nil {
			return nil, nil, fmt.Errorf("ig: installed package %s#%s: %w", r.Name, r.Version, err)
		}
		pkgs = append(pkgs, p)
		pending[p.Key()] = r.ReindexPending
	}
	return pkgs, pending, nil
}

// Loaded is what the packages loaded into this process add.
type Loaded struct {
	Packages []*igpkg.Package
	// Profiles are the packages' profiles and extension definitions.
	Profiles *profile.Set
	// Params are the search parameters added to the registry.
	Params []Param
	// Instantiates lists the canonical URLs of the packages' server
	// CapabilityStatements.
	Instantiates []string
	// SupportedProfiles lists each resource type's profiles.
	SupportedProfiles map[string][]string
	// Combinations are each type's search parameter combinations the
	// guides' server statements name (each a list of codes).
	Combinations map[string][][]string
	// Notes say what was not loaded and why.
	Notes []string
}

// Param is one search parameter a package added.
type Param struct {
	Base, Code, URL, Package string
	// NotIndexed: the package was installed while resources of Base were
	// stored, and no reindex has run since.
	NotIndexed bool
}

// Load loads packages into this process: their search parameters into the
// registry (process-wide, so once per process: loading the same packages
// again adds nothing), their profiles and capability declarations.
// pending names the packages (name#version) whose parameters wait for a
// reindex.
func Load(pkgs []*igpkg.Package, pending map[string]bool) (*Loaded, error) {
	l := &Loaded{Packages: pkgs, SupportedProfiles: map[string][]string{}, Combinations: map[string][][]string{}}
	var sds, vss, css [][]byte
	for _, p := range pkgs {
		for _, r := range p.Resources {
			switch r.ResourceType {
			case "StructureDefinition":
				sds = append(sds, r.JSON)
			case "ValueSet":
				vss = append(vss, r.JSON)
			case "CodeSystem":
				css = append(css, r.JSON)
			}
		}
	}
	set, errs := profile.NewSet(sds, profile.NewValueSets(vss, css))
	for _, err := range errs {
		l.Notes = append(l.Notes, "profile not loaded: "+err.Error())
	}
	l.Profiles = set
	for _, u := range set.URLs() {
		if p := set.Profile(u); p.Kind == "resource" {
			l.SupportedProfiles[p.Type] = append(l.SupportedProfiles[p.Type], u)
		}
	}

	params, owner, notes := compileParams(pkgs, nil)
	l.Notes = append(l.Notes, notes...)
	add := map[string][]spec.SearchParam{}
	for base, ps := range params {
		for _, c := range ps {
			add[base] = append(add[base], c.Param)
			l.Params = append(l.Params, Param{Base: base, Code: c.Param.Code, URL: c.Param.URL, Package: owner[c.Param.URL], NotIndexed: pending[owner[c.Param.URL]]})
		}
	}
	if err := spec.AddSearchParams(add); err != nil {
		return nil, fmt.Errorf("ig: %w", err)
	}
	// Parameters an earlier Load of this process added (same URL) are
	// reported again, so a second Load describes the same state.
	for _, p := range pkgs {
		for _, r := range p.ByType("SearchParameter") {
			d, err := searchparam.Parse(r.JSON)
			if err != nil {
				continue
			}
			for _, base := range d.Base {
				if sp := spec.SearchParams(base)[d.Code]; sp != nil && sp.URL == d.URL && !hasParam(l.Params, base, d.Code) {
					l.Params = append(l.Params, Param{Base: base, Code: d.Code, URL: d.URL, Package: p.Key(), NotIndexed: pending[p.Key()]})
				}
			}
		}
	}
	sort.Slice(l.Params, func(i, j int) bool {
		return l.Params[i].Base+"."+l.Params[i].Code < l.Params[j].Base+"."+l.Params[j].Code
	})
	for _, p := range pkgs {
		for _, r := range p.ByType("CapabilityStatement") {
			if err := l.capability(r.JSON); err != nil {
				l.Notes = append(l.Notes, r.File+": "+err.Error())
			}
		}
	}
	sort.Strings(l.Notes)
	return l, nil
}

func hasParam(ps []Param, base, code string) bool {
	for _, p := range ps {
		if p.Base == base && p.Code == code {
			return true
		}
	}
	return false
}

// compileParams compiles the packages' SearchParameters that the registry
// lacks, per base type. A code R4 (or an earlier package) already defines
// for the type keeps that definition: index rows are keyed by type and
// code, and US Core's parameters of R4's codes restate R4's. A different
// expression is noted.
//
// own, when not nil, receives the packages' parameters the registry holds
// already (registered by an earlier Load of this process).
func compileParams(pkgs []*igpkg.Package, own map[string][]searchparam.Compiled) (map[string][]searchparam.Compiled, map[string]string, []string) {
	out := map[string][]searchparam.Compiled{}
	owner := map[string]string{} // parameter url -> package key
	var notes []string
	seen := map[string]bool{}
	for _, p := range pkgs {
		for _, r := range p.ByType("SearchParameter") {
			d, err := searchparam.Parse(r.JSON)
			if err != nil {
				notes = append(notes, p.Key()+" "+r.File+": "+err.Error())
				continue
			}
			cs, errs := searchparam.Compile(d)
			for _, err := range errs {
				notes = append(notes, p.Key()+": search parameter not loaded: "+err.Error())
			}
			for _, c := range cs {
				key := c.Base + "." + c.Param.Code
				if seen[key] {
					notes = append(notes, fmt.Sprintf("%s: %s %s: defined twice; the first is kept", p.Key(), key, d.URL))
					continue
				}
				if have := spec.SearchParams(c.Base)[c.Param.Code]; have != nil {
					if have.URL == c.Param.URL && own != nil {
						own[c.Base] = append(own[c.Base], c) // this package's, loaded earlier in the process
					}
					if have.URL != c.Param.URL && normExpr(have.Expression) != normExpr(c.Param.Expression) {
						notes = append(notes, fmt.Sprintf("%s: %s keeps its existing definition %s (%s); %s (%s) is not used",
							p.Key(), key, have.URL, have.Expression, d.URL, c.Param.Expression))
					}
					continue
				}
				seen[key] = true
				owner[c.Param.URL] = p.Key()
				out[c.Base] = append(out[c.Base], c)
			}
		}
	}
	return out, owner, notes
}

func normExpr(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "|", " | ")), " ")
}

// capability reads a CapabilityStatement of a package: a server statement
// is instantiated, and its search parameter combinations kept.
func (l *Loaded) capability(raw []byte) error {
	var cs struct {
		URL  string `json:"url"`
		Rest []struct {
			Mode     string `json:"mode"`
			Resource []struct {
				Type      string `json:"type"`
				Extension []struct {
					URL       string `json:"url"`
					Extension []struct {
						URL         string `json:"url"`
						ValueString string `json:"valueString"`
					} `json:"extension"`
				} `json:"extension"`
			} `json:"resource"`
		} `json:"rest"`
	}
	if err := json.Unmarshal(raw, &cs); err != nil {
		return err
	}
	server := false
	for _, r := range cs.Rest {
		if r.Mode != "server" {
			continue
		}
		server = true
		for _, res := range r.Resource {
			for _, x := range res.Extension {
				if x.URL != "http://hl7.org/fhir/StructureDefinition/capabilitystatement-search-parameter-combination" {
					continue
				}
				var codes []string
				for _, y := range x.Extension {
					if y.URL == "required" {
						codes = append(codes, y.ValueString)
					}
				}
				if len(codes) > 0 {
					l.Combinations[res.Type] = append(l.Combinations[res.Type], codes)
				}
			}
		}
	}
	if server {
		if cs.URL == "" {
			return errors.New("a server CapabilityStatement without a url")
		}
		l.Instantiates = append(l.Instantiates, cs.URL)
	}
	return nil
}
