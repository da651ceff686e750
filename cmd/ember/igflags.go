package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/emberfhir/ember/conformance/ig"
	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/server"
	"github.com/emberfhir/ember/store"
	"github.com/emberfhir/ember/store/igdb"
)

// igFlags are serve's implementation guide flags: packages to install at
// start, and how writes are held to profiles.
type igFlags struct {
	paths       multiFlag
	enforcement string
}

func (f *igFlags) register(fs *flag.FlagSet) {
	if v := os.Getenv("EMBER_IG"); v != "" {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				f.paths = append(f.paths, p)
			}
		}
	}
	fs.Var(&f.paths, "ig", "install the implementation guide package (npm .tgz, e.g. hl7.fhir.us.core-6.1.0.tgz) into the database at start, as `ember ig install` does; repeatable (env EMBER_IG, comma-separated). Packages installed before load whatever this says")
	fs.StringVar(&f.enforcement, "profile-enforcement", env("EMBER_PROFILE_ENFORCEMENT", "claimed"),
		"which writes must conform to the installed guides' profiles: off, claimed (a resource claiming a known profile in meta.profile must conform to it) or required:URL[,URL…] (claimed, and each resource of a listed profile's type must conform to it) (env EMBER_PROFILE_ENFORCEMENT)")
}

// parseEnforcement reads --profile-enforcement; required profiles are
// checked against the loaded ones by apply.
func parseEnforcement(s string) (pe engine.ProfileEnforcement, required []string, err error) {
	switch {
	case s == "off":
		pe.Off = true
	case s == "claimed" || s == "":
	case strings.HasPrefix(s, "required:"):
		for _, u := range strings.Split(strings.TrimPrefix(s, "required:"), ",") {
			if u = strings.TrimSpace(u); u != "" {
				required = append(required, u)
			}
		}
		if len(required) == 0 {
			return pe, nil, fmt.Errorf("--profile-enforcement %q: name at least one profile URL after required:", s)
		}
	default:
		return pe, nil, fmt.Errorf("--profile-enforcement %q: use off, claimed or required:URL[,URL…]", s)
	}
	return pe, required, nil
}

// apply installs the --ig packages, loads every installed package into
// this process (search parameters, profiles) and sets what the server
// needs from them in cfg.
func (f *igFlags) apply(ctx context.Context, cfg *server.Config, st *store.Store, log *slog.Logger) error {
	pe, required, err := parseEnforcement(f.enforcement)
	if err != nil {
		return err
	}
	if len(f.paths) > 0 {
		eng, err := engine.New(engine.Config{BaseURL: cfg.BaseURL, Logger: log}, st)
		if err != nil {
			return err
		}
		for _, p := range f.paths {
			rep, err := installFile(ctx, eng, igdb.New(st), p)
			if err != nil {
				return fmt.Errorf("serve: --ig %s: %w", p, err)
			}
			logInstall(log, rep)
		}
	}
	loaded, err := loadInstalled(ctx, st, log)
	if err != nil {
		return err
	}
	if loaded == nil && len(required) > 0 {
		return fmt.Errorf("--profile-enforcement: no implementation guide is installed to define %s", strings.Join(required, ", "))
	}
	g, pe, err := declarations(loaded, pe, required, log)
	if err != nil {
		return err
	}
	cfg.Profiles, cfg.ProfileEnforcement, cfg.Guides = nil, pe, g
	if loaded != nil {
		cfg.Profiles = loaded.Profiles
	}
	return nil
}

// declarations resolves the enforcement's required profiles against the
// loaded guides and makes what the CapabilityStatement declares of them.
func declarations(loaded *ig.Loaded, pe engine.ProfileEnforcement, required []string, log *slog.Logger) (*server.Guides, engine.ProfileEnforcement, error) {
	if loaded == nil {
		return nil, pe, nil
	}
	pe.Required = nil
	for _, u := range required {
		p := loaded.Profiles.Profile(u)
		if p == nil {
			return nil, pe, fmt.Errorf("--profile-enforcement: no installed guide defines the profile %s", u)
		}
		if pe.Required == nil {
			pe.Required = map[string][]string{}
		}
		pe.Required[p.Type] = append(pe.Required[p.Type], u)
	}
	g := &server.Guides{Instantiates: loaded.Instantiates, Profiles: loaded.SupportedProfiles, Combinations: loaded.Combinations, NotIndexed: map[string]bool{}}
	for _, p := range loaded.Params {
		if p.NotIndexed {
			g.NotIndexed[p.Base+"."+p.Code] = true
			log.Warn("search parameter not yet indexed for stored resources: run `ember reindex`", "param", p.Base+"."+p.Code, "package", p.Package)
		}
	}
	return g, pe, nil
}

// igReloadEvery is how often a server looks for guides installed (or
// reindexed) through another process.
const igReloadEvery = 5 * time.Second

// watch reloads the installed guides into the running server when the
// database's set of packages changes — `ember ig install` or `--ig` of
// another replica, or `ember reindex` clearing what waited for it — so
// they take effect without a restart: search parameters, profiles and
// the CapabilityStatement. A reload that fails (a required profile gone)
// keeps what was loaded, and says why.
func (f *igFlags) watch(ctx context.Context, srv *server.Server, st *store.Store, log *slog.Logger) {
	pe, required, err := parseEnforcement(f.enforcement)
	if err != nil {
		return // apply refused it before the server started
	}
	db := igdb.New(st)
	last, err := db.Stamp(ctx)
	if err != nil {
		log.Warn("implementation guides: not watching for installs", "err", err)
	}
	t := time.NewTicker(igReloadEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		stamp, err := db.Stamp(ctx)
		if err != nil || stamp == last {
			continue
		}
		loaded, err := loadInstalled(ctx, st, log)
		if err == nil {
			var g *server.Guides
			var npe engine.ProfileEnforcement
			if g, npe, err = declarations(loaded, pe, required, log); err == nil {
				var p engine.Profiles
				if loaded != nil {
					p = loaded.Profiles
				}
				srv.Engine().SetProfiles(p, npe)
				err = srv.SetGuides(g)
			}
		}
		if err != nil {
			log.Error("implementation guides not reloaded: the ones loaded before stay in force", "err", err)
			continue
		}
		last = stamp
		log.Info("implementation guides reloaded")
	}
}

// loadInstalled loads the database's installed packages into this
// process; nil when there are none.
func loadInstalled(ctx context.Context, st *store.Store, log *slog.Logger) (*ig.Loaded, error) {
	pkgs, pending, err := ig.Installed(ctx, igdb.New(st))
	if err != nil || len(pkgs) == 0 {
		return nil, err
	}
	loaded, err := ig.Load(pkgs, pending)
	if err != nil {
		return nil, err
	}
	for _, p := range pkgs {
		log.Info("implementation guide loaded", "package", p.Key())
	}
	for _, n := range loaded.Notes {
		log.Warn("implementation guide: " + n)
	}
	return loaded, nil
}

// installFile installs one package file.
func installFile(ctx context.Context, eng *engine.Engine, db *igdb.DB, path string) (ig.Report, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return ig.Report{}, err
	}
	return ig.Install(ctx, eng, db, raw)
}

func logInstall(log *slog.Logger, rep ig.Report) {
	log.Info("implementation guide installed", "package", rep.Package, "changed", rep.Changed,
		"resources_created", rep.Created, "resources_existing", rep.Existing, "new_search_params", len(rep.NewParams))
	for _, n := range rep.Notes {
		log.Warn("implementation guide install: " + n)
	}
	if rep.Pending {
		log.Warn("stored resources predate the guide's search parameters: run `ember reindex` to index them", "package", rep.Package)
	}
}

// reindexGuides prepares `ember reindex`: the installed guides' search
// parameters are registered first, so they are indexed too; the returned
// done marks the guides indexed once the reindex has finished.
func reindexGuides(ctx context.Context, st *store.Store, log *slog.Logger) (done func(context.Context) error, err error) {
	db := igdb.New(st)
	start, err := db.Now(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := loadInstalled(ctx, st, log); err != nil {
		return nil, err
	}
	return func(ctx context.Context) error { return db.MarkIndexed(ctx, start) }, nil
}
