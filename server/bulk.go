package server

// Bulk Data Access IG v2 $export: kick-off, status, cancel and file
// download. The work itself runs as a River job (bulk_worker.go), so any
// process on the database can run it and a restart resumes it.
//
// URLs (under the FHIR base):
//
//	GET|POST [base]/$export, [base]/Patient/$export, [base]/Group/[id]/$export   kick-off → 202, Content-Location: status URL
//	GET      [base]/$export-status/[job]   202 + X-Progress while running, 200 + manifest when done
//	DELETE   [base]/$export-status/[job]   cancel, delete the files → 202
//	GET      [base]/$export-file/[job]/[file]   one ndjson file (application/fhir+ndjson)
//
// The status and file URLs are not FHIR interactions and are served before
// the FHIR dispatcher: a client downloading ndjson sends an Accept header
// the FHIR content negotiation would refuse.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/search"
	"github.com/emberfhir/ember/fhir/spec"
	"github.com/emberfhir/ember/smart/access"
	"github.com/emberfhir/ember/store"
)

const (
	exportStatusPath  = "/$export-status/"
	exportFilePath    = "/$export-file/"
	contentTypeNDJSON = "application/fhir+ndjson"
)

// exportParams are an export's kick-off parameters as the worker needs
// them; they are stored with the job as JSON.
type exportParams struct {
	Level string `json:"level"` // system, patient or group
	Group string `json:"group,omitempty"`
	// Patients are a Group export's members, resolved at kick-off. For a
	// group it is never nil (an empty group exports nothing).
	Patients    []string   `json:"patients"`
	Types       []string   `json:"types,omitempty"`
	Since       *time.Time `json:"since,omitempty"`
	TypeFilters []string   `json:"typeFilters,omitempty"` // "Type?query", as given
	// Client is the OAuth client that kicked the export off (with
	// authorisation on): only it may see the status, files or cancel.
	Client string `json:"client,omitempty"`
}

// ownedExport reads export id's record, hidden (404, as if absent) from
// every OAuth client but the one that started it.
func (s *Server) ownedExport(ctx context.Context, id string) (store.ExportJob, error) {
	notFound := fhir.Missing("no export " + id + " (unknown, or cancelled)")
	job, err := s.store.ExportJob(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return job, notFound
	}
	if err != nil {
		return job, err
	}
	if g := access.FromContext(ctx); g != nil {
		var p exportParams
		if err := json.Unmarshal(job.Params, &p); err != nil {
			return job, fmt.Errorf("server: export %s params: %w", id, err)
		}
		if p.Client != g.ClientID {
			return job, notFound
		}
	}
	return job, nil
}

// initBulk sets up the export job queue when Config.BulkExport is set.
func (s *Server) initBulk() error {
	if !s.cfg.BulkExport {
		return nil
	}
	workers := s.cfg.ExportWorkers
	switch {
	case workers == 0:
		workers = 1 // an export is I/O- and database-bound; one at a time per process
	case workers < 0:
		workers = 0
	}
	jobs, err := s.store.NewJobs(newExportRunner(s), store.JobsOptions{Workers: workers, Logger: s.log})
	if err != nil {
		return err
	}
	s.jobs = jobs
	return nil
}

// Start starts the server's background work: the export workers and, in
// processes that run them, the sweep of expired exports (until ctx ends).
// Call store.MigrateJobs first.
func (s *Server) Start(ctx context.Context) error {
	if s.jobs == nil {
		return nil
	}
	if err := s.jobs.Start(ctx); err != nil {
		return err
	}
	if s.cfg.ExportWorkers >= 0 {
		go s.sweepExportsEvery(ctx, exportSweepEvery)
	}
	return nil
}

// exportSweepEvery is how often expired exports are looked for.
const exportSweepEvery = 10 * time.Minute

func (s *Server) sweepExportsEvery(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := s.sweepExports(ctx, time.Now()); err != nil && ctx.Err() == nil {
			s.log.Warn("sweeping expired exports", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweepExports deletes the records and files of exports that finished more
// than exportRetention before now (the manifest's Expires). Replicas
// sweeping at once are harmless: a record goes once.
func (s *Server) sweepExports(ctx context.Context, now time.Time) error {
	ids, err := s.store.ExportsFinishedBefore(ctx, now.Add(-exportRetention))
	if err != nil {
		return err
	}
	for _, id := range ids {
		// Its stored files go with its record.
		if _, err := s.jobs.CancelExport(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return nil
}

// Shutdown stops the background work. Running exports are interrupted at
// once and resume from their last checkpoint on the next worker to start.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.jobs == nil {
		return nil
	}
	return s.jobs.Stop(ctx)
}

// bulkPaths serves the status and file URLs ahead of the FHIR dispatcher
// and passes every other request on.
func (s *Server) bulkPaths(c *gin.Context) {
	path := strings.TrimPrefix(c.Request.URL.Path, "/fhir")
	var rest string
	var handler func(*gin.Context, string)
	switch {
	case strings.HasPrefix(path, exportStatusPath):
		rest, handler = strings.TrimPrefix(path, exportStatusPath), s.exportStatus
		c.Set(interactionKey, "export-status")
	case strings.HasPrefix(path, exportFilePath):
		rest, handler = strings.TrimPrefix(path, exportFilePath), s.exportFile
		c.Set(interactionKey, "export-file")
	default:
		return
	}
	c.Abort()
	if s.jobs == nil {
		s.fail(c, fhir.Missing("bulk export is not enabled on this server"))
		return
	}
	handler(c, rest)
}

// exportIDPattern is the shape of a job id (store.NewID's UUIDs); checking
// it keeps arbitrary text out of paths and queries.
var exportIDPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// exportKickoff starts an export: GET with query parameters, or POST with
// a Parameters resource.
func (s *Server) exportKickoff(c *gin.Context, typ, id string) {
	ctx := c.Request.Context()
	if (typ == "Patient" && id != "") || (typ == "Group" && id == "") {
		s.fail(c, fhir.Missing("$export is defined on the system, on Patient and on a Group instance"))
		return
	}
	if !preferAsync(c.Request) {
		s.fail(c, fhir.NewError(fhir.BadRequest, "invalid", "$export runs asynchronously: send Prefer: respond-async"))
		return
	}
	params := c.Request.URL.Query()
	if c.Request.Method == http.MethodPost {
		body, ferr := s.readBody(c)
		if ferr != nil {
			s.fail(c, ferr)
			return
		}
		if err := addParameters(params, body); err != nil {
			s.fail(c, err)
			return
		}
	}
	p, err := s.parseExportParams(params, typ, lenient(c.Request))
	if err != nil {
		s.fail(c, err)
		return
	}
	// The export runs later without the request's guard, so the grant
	// must read everything it will write out.
	if err := s.caller(c).RequireUnrestricted(p.Types); err != nil {
		s.fail(c, err)
		return
	}
	if g := access.FromContext(ctx); g != nil {
		p.Client = g.ClientID
	}
	if typ == "Group" {
		p.Level, p.Group = "group", id
		if p.Patients, err = s.groupPatients(ctx, s.caller(c), id); err != nil {
			s.fail(c, err)
			return
		}
	}
	raw, err := json.Marshal(p)
	if err != nil {
		s.fail(c, err)
		return
	}
	request := s.base + strings.TrimPrefix(c.Request.URL.Path, "/fhir")
	if c.Request.URL.RawQuery != "" {
		request += "?" + c.Request.URL.RawQuery
	}
	job := store.ExportJob{ID: store.NewID(), Request: request, Params: raw}
	if err := s.jobs.EnqueueExport(ctx, job); err != nil {
		s.fail(c, err)
		return
	}
	c.Header("Content-Location", s.base+exportStatusPath+job.ID)
	s.writeJSON(c, http.StatusAccepted, fhir.Information("export "+job.ID+" accepted; poll the Content-Location URL for its status"))
}

// preferAsync reports whether a Prefer header asks for respond-async.
func preferAsync(r *http.Request) bool {
	for _, h := range r.Header.Values("Prefer") {
		for _, part := range strings.Split(h, ",") {
			if strings.EqualFold(strings.TrimSpace(part), "respond-async") {
				return true
			}
		}
	}
	return false
}

// lenient reports Prefer: handling=lenient, under which unknown kick-off
// parameters are ignored rather than refused.
func lenient(r *http.Request) bool { return strings.EqualFold(prefer(r, "handling"), "lenient") }

// addParameters merges a POST kick-off's Parameters resource into params.
// Every value is carried as the string the GET form would have had.
func addParameters(params url.Values, body []byte) error {
	if err := fhir.CheckJSON(body); err != nil {
		return err
	}
	var p struct {
		ResourceType string `json:"resourceType"`
		Parameter    []struct {
			Name    string  `json:"name"`
			Str     *string `json:"valueString"`
			Code    *string `json:"valueCode"`
			Instant *string `json:"valueInstant"`
			Ref     *struct {
				Reference string `json:"reference"`
			} `json:"valueReference"`
		} `json:"parameter"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.ResourceType != "Parameters" {
		return fhir.NewError(fhir.BadRequest, "structure", "a POST $export needs a Parameters resource")
	}
	for _, prm := range p.Parameter {
		var v string
		switch {
		case prm.Str != nil:
			v = *prm.Str
		case prm.Code != nil:
			v = *prm.Code
		case prm.Instant != nil:
			v = *prm.Instant
		case prm.Ref != nil:
			v = prm.Ref.Reference
		default:
			return fhir.NewError(fhir.BadRequest, "invalid", "parameter "+quote(prm.Name)+" needs a valueString, valueCode, valueInstant or valueReference")
		}
		params.Add(prm.Name, v)
	}
	return nil
}

// parseExportParams checks the kick-off parameters. Anything Ember cannot
// honour is refused: an export that silently ignored a filter would hand
// out more data than asked for.
func (s *Server) parseExportParams(params url.Values, typ string, lenient bool) (*exportParams, error) {
	p := &exportParams{Level: "system"}
	if typ != "" {
		p.Level = "patient"
	}
	for name, vals := range params {
		switch name {
		case "_outputFormat":
			for _, v := range vals {
				switch strings.ToLower(strings.ReplaceAll(strings.TrimSpace(v), " ", "+")) {
				case "application/fhir+ndjson", "application/ndjson", "ndjson":
				default:
					return nil, fhir.NewError(fhir.BadRequest, "not-supported",
						fmt.Sprintf("_outputFormat %q is not supported: Ember writes application/fhir+ndjson", v))
				}
			}
		case "_type":
			for _, v := range vals {
				for _, t := range strings.Split(v, ",") {
					t = strings.TrimSpace(t)
					if !spec.IsResourceType(t) {
						return nil, fhir.NewError(fhir.BadRequest, "invalid", "unknown resource type "+quote(t)+" in _type")
					}
					if !slices.Contains(p.Types, t) {
						p.Types = append(p.Types, t)
					}
				}
			}
		case "_since":
			if len(vals) != 1 {
				return nil, fhir.NewError(fhir.BadRequest, "invalid", "_since may be given once")
			}
			// An unescaped "+" of a time zone arrives as a space.
			t, err := time.Parse(time.RFC3339Nano, strings.ReplaceAll(strings.TrimSpace(vals[0]), " ", "+"))
			if err != nil {
				return nil, fhir.NewError(fhir.BadRequest, "invalid",
					fmt.Sprintf("_since %q is not a FHIR instant (YYYY-MM-DDThh:mm:ss[.fff]Z or ±hh:mm)", vals[0]))
			}
			t = t.UTC()
			p.Since = &t
		case "_typeFilter":
			for _, v := range vals {
				p.TypeFilters = append(p.TypeFilters, splitTypeFilter(v)...)
			}
		case "_format", "_pretty":
		case "patient", "_elements", "includeAssociatedData", "organizeOutputBy", "allowPartialManifests", "_until":
			return nil, fhir.NewError(fhir.BadRequest, "not-supported", "$export parameter "+name+" is not supported")
		default:
			if !lenient {
				return nil, fhir.NewError(fhir.BadRequest, "not-supported",
					"unknown $export parameter "+quote(name)+" (send Prefer: handling=lenient to ignore unknown parameters)")
			}
		}
	}
	slices.Sort(p.Types)
	if p.Level != "system" {
		for _, t := range p.Types {
			if spec.CompartmentParams("Patient", t) == nil {
				return nil, fhir.NewError(fhir.BadRequest, "invalid",
					"_type "+t+" is not in the Patient compartment, which a Patient or Group export is limited to")
			}
		}
	}
	if _, err := s.typeFilters(p); err != nil {
		return nil, err
	}
	return p, nil
}

// typeFilterStart matches the start of one _typeFilter query: "Type?".
var typeFilterStart = regexp.MustCompile(`^[A-Z][A-Za-z]+\?`)

// splitTypeFilter splits a comma-delimited _typeFilter value. A query may
// itself hold commas (ORed values), so the value is cut only at commas
// followed by the start of another query.
func splitTypeFilter(v string) []string {
	var out []string
	start := 0
	for i := 0; i < len(v); i++ {
		if v[i] == ',' && typeFilterStart.MatchString(v[i+1:]) {
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	return append(out, v[start:])
}

// typeFilterResultParams are search parameters that shape a result page
// rather than select resources; in a _typeFilter they mean nothing.
var typeFilterResultParams = []string{"_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total", "_cursor", "_contained", "_containedType"}

// typeFilters parses p's _typeFilter queries strictly: an unsupported
// parameter is an error, never dropped. Filters on types the export does
// not include are left out, as the IG says.
func (s *Server) typeFilters(p *exportParams) (map[string][]*search.Query, error) {
	out := map[string][]*search.Query{}
	for _, f := range p.TypeFilters {
		typ, query, ok := strings.Cut(strings.TrimSpace(f), "?")
		if !ok || !spec.IsResourceType(typ) {
			return nil, fhir.NewError(fhir.BadRequest, "invalid", "_typeFilter "+quote(f)+" must be [ResourceType]?[search parameters]")
		}
		vals, err := url.ParseQuery(query)
		if err != nil {
			return nil, fhir.NewError(fhir.BadRequest, "invalid", "_typeFilter "+quote(f)+": "+err.Error())
		}
		for name := range vals {
			base, _, _ := strings.Cut(name, ":")
			if slices.Contains(typeFilterResultParams, base) {
				return nil, fhir.NewError(fhir.BadRequest, "not-supported", "_typeFilter "+quote(f)+": "+name+" selects no resources and is not supported")
			}
		}
		q, err := search.Parse(typ, vals, search.Options{Strict: true, Base: s.base})
		if err != nil {
			return nil, err
		}
		if p.Types != nil && !slices.Contains(p.Types, typ) {
			continue
		}
		if p.Level != "system" && spec.CompartmentParams("Patient", typ) == nil {
			continue
		}
		out[typ] = append(out[typ], q)
	}
	return out, nil
}

// selection turns stored parameters into the store's export selection.
func (s *Server) selection(p *exportParams) (store.ExportSelection, error) {
	filters, err := s.typeFilters(p)
	if err != nil {
		return store.ExportSelection{}, err
	}
	sel := store.ExportSelection{Types: p.Types, Filters: filters}
	if p.Since != nil {
		sel.Since = *p.Since
	}
	switch p.Level {
	case "patient":
		sel.PatientCompartment = true
	case "group":
		sel.PatientCompartment = true
		sel.PatientIDs = p.Patients
		if sel.PatientIDs == nil {
			sel.PatientIDs = []string{}
		}
	}
	return sel, nil
}

// groupPatients returns the ids of a Group's active Patient members.
func (s *Server) groupPatients(ctx context.Context, caller *engine.Caller, id string) ([]string, error) {
	v, err := s.eng.Read(ctx, caller, "Group", id)
	if err != nil {
		if fe := (*fhir.Error)(nil); errors.As(err, &fe) && (fe.Kind == fhir.NotFound || fe.Kind == fhir.Gone) {
			return nil, fhir.Missing("Group/" + id + " does not exist")
		}
		return nil, err
	}
	var g struct {
		Member []struct {
			Entity struct {
				Reference string `json:"reference"`
			} `json:"entity"`
			Inactive bool `json:"inactive"`
		} `json:"member"`
	}
	if err := json.Unmarshal(v.Content, &g); err != nil {
		return nil, fmt.Errorf("server: Group/%s: %w", id, err)
	}
	ids := []string{}
	for _, m := range g.Member {
		ref := strings.TrimPrefix(m.Entity.Reference, s.base+"/")
		pid, ok := strings.CutPrefix(ref, "Patient/")
		if m.Inactive || !ok || !fhir.ValidID(pid) || slices.Contains(ids, pid) {
			continue
		}
		ids = append(ids, pid)
	}
	return ids, nil
}

// exportManifest is the completed export's status body (Bulk Data IG v2).
type exportManifest struct {
	TransactionTime string `json:"transactionTime"`
	Request         string `json:"request"`
	// RequiresAccessToken is false until Ember has SMART authorization;
	// then file downloads will need the kick-off's token.
	RequiresAccessToken bool                 `json:"requiresAccessToken"`
	Output              []exportManifestFile `json:"output"`
	Error               []exportManifestFile `json:"error"`
}

type exportManifestFile struct {
	Type  string `json:"type"`
	URL   string `json:"url"`
	Count int64  `json:"count"`
}

// exportStatus serves GET (status) and DELETE (cancel) of a status URL.
func (s *Server) exportStatus(c *gin.Context, id string) {
	ctx := c.Request.Context()
	if !exportIDPattern.MatchString(id) {
		s.fail(c, fhir.Missing("no export "+quote(id)))
		return
	}
	switch c.Request.Method {
	case http.MethodDelete, http.MethodGet, http.MethodHead:
	default:
		c.Header("Allow", "GET, DELETE")
		s.fail(c, httpError(http.StatusMethodNotAllowed, "not-supported", c.Request.Method+" is not allowed on an export status URL"))
		return
	}
	job, err := s.ownedExport(ctx, id)
	if err != nil {
		s.fail(c, err)
		return
	}
	if c.Request.Method == http.MethodDelete {
		if _, err := s.jobs.CancelExport(ctx, id); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				err = fhir.Missing("no export " + id)
			}
			s.fail(c, err)
			return
		}
		// The stored files went with the record; a worker still running
		// stops at its next write.
		s.writeJSON(c, http.StatusAccepted, fhir.Information("export "+id+" cancelled and its files deleted"))
		return
	}
	switch job.Status {
	case store.ExportAccepted, store.ExportRunning:
		progress := "queued"
		if job.Status == store.ExportRunning {
			progress = "in progress: " + strconv.FormatInt(job.Exported, 10) + " resources exported"
		}
		c.Header("X-Progress", progress)
		c.Header("Retry-After", "2")
		c.Status(http.StatusAccepted)
	case store.ExportFailed:
		s.writeOutcome(c, http.StatusInternalServerError, fhir.Outcome(fhir.Issue{Severity: "error", Code: "exception", Diagnostics: "export failed: " + job.Error}))
	case store.ExportCompleted:
		var cp exportCheckpoint
		if err := json.Unmarshal(job.Checkpoint, &cp); err != nil {
			s.fail(c, fmt.Errorf("server: export %s checkpoint: %w", id, err))
			return
		}
		m := exportManifest{
			TransactionTime: job.TransactionTime.UTC().Format(time.RFC3339Nano),
			Request:         job.Request,
			Output:          []exportManifestFile{},
			Error:           []exportManifestFile{},
		}
		for _, f := range cp.Files {
			m.Output = append(m.Output, exportManifestFile{Type: f.Type, URL: s.base + exportFilePath + id + "/" + f.Name, Count: f.Count})
		}
		body, err := json.Marshal(m)
		if err != nil {
			s.fail(c, err)
			return
		}
		c.Header("Expires", job.FinishedAt.Add(exportRetention).UTC().Format(http.TimeFormat))
		c.Data(http.StatusOK, "application/json", body)
	default:
		s.fail(c, fmt.Errorf("server: export %s in unknown state %q", id, job.Status))
	}
}

// exportRetention is advertised as the manifest's Expires; after it the
// sweep deletes the export (see sweepExports).
const exportRetention = 24 * time.Hour

// exportFile streams one output file from its stored parts.
func (s *Server) exportFile(c *gin.Context, rest string) {
	if c.Request.Method != http.MethodGet && c.Request.Method != http.MethodHead {
		c.Header("Allow", "GET")
		s.fail(c, httpError(http.StatusMethodNotAllowed, "not-supported", c.Request.Method+" is not allowed on an export file"))
		return
	}
	id, name, _ := strings.Cut(rest, "/")
	if !exportIDPattern.MatchString(id) {
		s.fail(c, fhir.Missing("no export "+quote(id)))
		return
	}
	job, err := s.ownedExport(c.Request.Context(), id)
	if err != nil {
		s.fail(c, err)
		return
	}
	var cp exportCheckpoint
	if job.Status != store.ExportCompleted || json.Unmarshal(job.Checkpoint, &cp) != nil {
		s.fail(c, fhir.Missing("export "+id+" has no files yet"))
		return
	}
	// Only names the manifest lists are served: no path ever comes from
	// the request.
	i := slices.IndexFunc(cp.Files, func(f exportFile) bool { return f.Name == name })
	if i < 0 {
		s.fail(c, fhir.Missing("export "+id+" has no file "+quote(name)))
		return
	}
	f := cp.Files[i]
	if f.Parts == 0 && f.Size > 0 {
		s.fail(c, fhir.NewError(fhir.Gone, "not-found", "the files of export "+id+" were written by an earlier version of Ember and are gone: start the export again"))
		return
	}
	// One byte range (RFC 9110 §14) lets a client resume a download; other
	// Range forms, or a conditional one, get the whole file.
	offset, length, status := int64(0), f.Size, http.StatusOK
	if rh := c.Request.Header.Get("Range"); rh != "" && c.Request.Header.Get("If-Range") == "" {
		start, end, ok, satisfiable := parseByteRange(rh, f.Size)
		switch {
		case ok && !satisfiable:
			c.Header("Content-Range", "bytes */"+strconv.FormatInt(f.Size, 10))
			s.fail(c, httpError(http.StatusRequestedRangeNotSatisfiable, "invalid", "the range "+quote(rh)+" is outside the file's "+strconv.FormatInt(f.Size, 10)+" bytes"))
			return
		case ok:
			offset, length, status = start, end-start+1, http.StatusPartialContent
			c.Header("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, f.Size))
		}
	}
	c.Header("Accept-Ranges", "bytes")
	c.Header("Content-Type", contentTypeNDJSON)
	c.Header("Content-Length", strconv.FormatInt(length, 10))
	c.Status(status)
	if c.Request.Method == http.MethodHead {
		return
	}
	// The headers are out: a failure now can only cut the body short,
	// which the client sees against Content-Length.
	err = s.store.ExportFileRange(c.Request.Context(), id, i, offset, length, func(b []byte) error {
		_, err := c.Writer.Write(b)
		return err
	})
	if err != nil && c.Request.Context().Err() == nil {
		s.log.Error("serving export file", "export", id, "file", name, "err", err)
	}
}

// parseByteRange reads a Range header of one byte range ("bytes=0-99",
// "bytes=100-", "bytes=-100") against a file of size bytes. ok is false
// for anything else, which is then ignored; satisfiable is false for a
// well-formed range that lies outside the file.
func parseByteRange(h string, size int64) (start, end int64, ok, satisfiable bool) {
	spec, found := strings.CutPrefix(h, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false, false
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false, false
	}
	num := func(s string) (int64, bool) {
		if s == "" || strings.TrimLeft(s, "0123456789") != "" {
			return 0, false
		}
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil
	}
	switch {
	case first == "": // the last n bytes
		n, ok := num(last)
		if !ok {
			return 0, 0, false, false
		}
		if n == 0 || size == 0 {
			return 0, 0, true, false
		}
		return max(size-n, 0), size - 1, true, true
	default:
		a, ok := num(first)
		if !ok {
			return 0, 0, false, false
		}
		b := size - 1
		if last != "" {
			if b, ok = num(last); !ok || b < a {
				return 0, 0, false, false
			}
		}
		if a >= size {
			return 0, 0, true, false
		}
		return a, min(b, size-1), true, true
	}
}
