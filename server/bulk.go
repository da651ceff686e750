package server

// Bulk Data Access IG v2 $export over HTTP: kick-off, status, cancel and
// file download. The export itself (parameters, ownership, the job, its
// manifest and the worker that writes the files) is engine/export's; this
// file maps HTTP onto it.
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
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/emberfhir/ember/engine/export"
	"github.com/emberfhir/ember/fhir"
)

const contentTypeNDJSON = "application/fhir+ndjson"

// initBulk sets up bulk export when Config.BulkExport is set.
func (s *Server) initBulk() error {
	if !s.cfg.BulkExport {
		return nil
	}
	exp, err := export.New(s.eng, export.Config{Workers: s.cfg.ExportWorkers, Logger: s.log})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	s.export = exp
	return nil
}

// Start starts the server's background work: the export workers and, in
// processes that run them, the sweep of expired exports (until ctx ends).
// Call store.MigrateJobs first.
func (s *Server) Start(ctx context.Context) error {
	if s.export == nil {
		return nil
	}
	return s.export.Start(ctx)
}

// Shutdown stops the background work. Running exports are interrupted at
// once and resume from their last checkpoint on the next worker to start.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.export == nil {
		return nil
	}
	return s.export.Stop(ctx)
}

// bulkPaths serves the status and file URLs ahead of the FHIR dispatcher
// and passes every other request on.
func (s *Server) bulkPaths(c *gin.Context) {
	path := strings.TrimPrefix(c.Request.URL.Path, "/fhir")
	var rest string
	var handler func(*gin.Context, string)
	switch {
	case strings.HasPrefix(path, export.StatusPath):
		rest, handler = strings.TrimPrefix(path, export.StatusPath), s.exportStatus
		c.Set(interactionKey, "export-status")
	case strings.HasPrefix(path, export.FilePath):
		rest, handler = strings.TrimPrefix(path, export.FilePath), s.exportFile
		c.Set(interactionKey, "export-file")
	default:
		return
	}
	c.Abort()
	if s.export == nil {
		s.fail(c, fhir.Missing("bulk export is not enabled on this server"))
		return
	}
	handler(c, rest)
}

// exportKickoff starts an export: GET with query parameters, or POST with
// a Parameters resource.
func (s *Server) exportKickoff(c *gin.Context, typ, id string) {
	r := c.Request
	request := s.base + strings.TrimPrefix(r.URL.Path, "/fhir")
	if r.URL.RawQuery != "" {
		request += "?" + r.URL.RawQuery
	}
	req := export.Request{Type: typ, ID: id, Async: preferAsync(r), Params: r.URL.Query(),
		Lenient: strings.EqualFold(prefer(r, "handling"), "lenient"), URL: request}
	// The level and Prefer are refused before the body is read.
	if err := req.Check(); err != nil {
		s.fail(c, err)
		return
	}
	if r.Method == http.MethodPost {
		body, err := s.readBody(c)
		if err != nil {
			s.fail(c, err)
			return
		}
		req.Parameters = body
	}
	job, err := s.export.Kickoff(r.Context(), s.caller(c), req)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Header("Content-Location", job.StatusURL)
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

// exportStatus serves GET (status) and DELETE (cancel) of a status URL.
func (s *Server) exportStatus(c *gin.Context, id string) {
	ctx := c.Request.Context()
	if !export.ValidID(id) {
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
	if c.Request.Method == http.MethodDelete {
		if err := s.export.Cancel(ctx, s.caller(c), id); err != nil {
			s.fail(c, err)
			return
		}
		// The stored files went with the record; a worker still running
		// stops at its next write.
		s.writeJSON(c, http.StatusAccepted, fhir.Information("export "+id+" cancelled and its files deleted"))
		return
	}
	st, err := s.export.Status(ctx, s.caller(c), id)
	if err != nil {
		s.fail(c, err)
		return
	}
	switch st.State {
	case export.Queued, export.Running:
		progress := "queued"
		if st.State == export.Running {
			progress = "in progress: " + strconv.FormatInt(st.Exported, 10) + " resources exported"
		}
		c.Header("X-Progress", progress)
		c.Header("Retry-After", "2")
		c.Status(http.StatusAccepted)
	case export.Failed:
		s.writeOutcome(c, http.StatusInternalServerError, fhir.Outcome(fhir.Issue{Severity: "error", Code: "exception", Diagnostics: "export failed: " + st.Error}))
	case export.Completed:
		body, err := json.Marshal(st.Manifest)
		if err != nil {
			s.fail(c, err)
			return
		}
		c.Header("Expires", st.Expires.UTC().Format(http.TimeFormat))
		c.Data(http.StatusOK, "application/json", body)
	default:
		s.fail(c, fmt.Errorf("server: export %s in unknown state %d", id, st.State))
	}
}

// exportFile streams one output file from its stored parts.
func (s *Server) exportFile(c *gin.Context, rest string) {
	if c.Request.Method != http.MethodGet && c.Request.Method != http.MethodHead {
		c.Header("Allow", "GET")
		s.fail(c, httpError(http.StatusMethodNotAllowed, "not-supported", c.Request.Method+" is not allowed on an export file"))
		return
	}
	id, name, _ := strings.Cut(rest, "/")
	f, err := s.export.File(c.Request.Context(), s.caller(c), id, name)
	if err != nil {
		s.fail(c, err)
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
	err = s.export.ReadFile(c.Request.Context(), f, offset, length, func(b []byte) error {
		_, err := c.Writer.Write(b)
		return err
	})
	if err != nil && c.Request.Context().Err() == nil {
		s.log.ErrorContext(c.Request.Context(), "serving export file", "export", id, "file", name, "err", err)
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
