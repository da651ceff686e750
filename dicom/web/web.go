// Package web serves DICOMweb (PS3.18): STOW-RS, WADO-RS and QIDO-RS over
// the dicom ingest Service, as a plain http.Handler.
package web

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image/jpeg"
	"image/png"
	"io"
	"log/slog"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"strconv"
	"strings"

	"github.com/emberfhir/ember/audit"
	"github.com/emberfhir/ember/dicom"
	"github.com/emberfhir/ember/fhir"
)

// Handler serves DICOMweb below Prefix.
type Handler struct {
	svc *dicom.Service
	log *slog.Logger
	mux *http.ServeMux
}

// Options configure New.
type Options struct {
	// Prefix is the path the handler is mounted at ("/dicomweb"); requests
	// arrive with it and it is stripped here.
	Prefix string
	Logger *slog.Logger
}

// New returns the DICOMweb handler. RetrieveURLs use svc.BaseURL().
func New(svc *dicom.Service, opts Options) *Handler {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	h := &Handler{svc: svc, log: opts.Logger, mux: http.NewServeMux()}
	m := http.NewServeMux()
	m.HandleFunc("POST /studies", h.stow)
	m.HandleFunc("POST /studies/{study}", h.stow)
	m.HandleFunc("GET /studies", h.qido(dicom.LevelStudy))
	m.HandleFunc("GET /series", h.qido(dicom.LevelSeries))
	m.HandleFunc("GET /instances", h.qido(dicom.LevelInstance))
	m.HandleFunc("GET /studies/{study}/series", h.qido(dicom.LevelSeries))
	m.HandleFunc("GET /studies/{study}/instances", h.qido(dicom.LevelInstance))
	m.HandleFunc("GET /studies/{study}/series/{series}/instances", h.qido(dicom.LevelInstance))
	m.HandleFunc("GET /studies/{study}", h.retrieve)
	m.HandleFunc("GET /studies/{study}/series/{series}", h.retrieve)
	m.HandleFunc("GET /studies/{study}/series/{series}/instances/{instance}", h.retrieve)
	m.HandleFunc("GET /studies/{study}/metadata", h.metadata)
	m.HandleFunc("GET /studies/{study}/series/{series}/metadata", h.metadata)
	m.HandleFunc("GET /studies/{study}/series/{series}/instances/{instance}/metadata", h.metadata)
	m.HandleFunc("GET /studies/{study}/series/{series}/instances/{instance}/frames/{frames}", h.frames)
	m.HandleFunc("GET /studies/{study}/series/{series}/instances/{instance}/bulkdata/{tag}", h.bulk)
	m.HandleFunc("GET /studies/{study}/series/{series}/instances/{instance}/rendered", h.rendered)
	m.HandleFunc("GET /studies/{study}/series/{series}/instances/{instance}/frames/{frames}/rendered", h.rendered)
	prefix := strings.TrimSuffix(opts.Prefix, "/")
	if prefix != "" {
		h.mux.Handle(prefix+"/", http.StripPrefix(prefix, m))
	} else {
		h.mux = m
	}
	return h
}

// MaxFrames caps the frame numbers one WADO-RS frames request may list
// (before duplicates are dropped), and the frames one bulk data response
// locates per pass: each frame is streamed, but locating costs memory per
// listed frame.
const MaxFrames = 1024

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// PostgreSQL text holds neither NUL nor invalid UTF-8: such UIDs and
	// matching values cannot name anything, and would fail as a 500 in
	// the database (SQLSTATE 22021).
	if !fhir.StorableText(r.URL.Path) {
		h.fail(w, http.StatusBadRequest, "the path holds a NUL byte or invalid UTF-8")
		return
	}
	for k, vs := range r.URL.Query() {
		if !fhir.StorableText(k) {
			h.fail(w, http.StatusBadRequest, "a query parameter name holds a NUL byte or invalid UTF-8")
			return
		}
		for _, v := range vs {
			if !fhir.StorableText(v) {
				h.fail(w, http.StatusBadRequest, "query parameter "+strconv.Quote(k)+" holds a NUL byte or invalid UTF-8")
				return
			}
		}
	}
	h.mux.ServeHTTP(w, r)
}

// fail answers status with an OperationOutcome, as the FHIR side does.
func (h *Handler) fail(w http.ResponseWriter, status int, msg string) {
	code := "invalid"
	switch {
	case status == http.StatusNotFound:
		code = "not-found"
	case status == http.StatusNotAcceptable || status == http.StatusUnsupportedMediaType:
		code = "not-supported"
	case status == http.StatusRequestTimeout:
		code = "timeout"
	case status >= 500:
		code = "exception"
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(status)
	_, _ = w.Write(fhir.Outcome(fhir.Issue{Severity: "error", Code: code, Diagnostics: msg}))
}

func (h *Handler) serverError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client went away
	}
	h.log.ErrorContext(r.Context(), "dicomweb", "path", r.URL.Path, "err", err)
	h.fail(w, http.StatusInternalServerError, "internal error")
}

// --- STOW-RS ---------------------------------------------------------------

type jsonDS = map[string]any

func attr(vr string, vals ...any) map[string]any {
	m := map[string]any{"vr": vr}
	if len(vals) > 0 {
		m["Value"] = vals
	}
	return m
}

func (h *Handler) stow(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	study := r.PathValue("study")
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || !strings.HasPrefix(mt, "multipart/") {
		h.fail(w, http.StatusBadRequest, "STOW-RS needs a multipart/related body")
		return
	}
	if mt != "multipart/related" {
		h.fail(w, http.StatusUnsupportedMediaType, "STOW-RS accepts multipart/related only")
		return
	}
	if t := params["type"]; t != "" && !strings.EqualFold(t, "application/dicom") {
		h.fail(w, http.StatusUnsupportedMediaType, "only type=\"application/dicom\" parts are accepted (no metadata+bulkdata STOW)")
		return
	}
	if params["boundary"] == "" {
		h.fail(w, http.StatusBadRequest, "multipart/related without boundary")
		return
	}
	// A body that fails to read (the client stalled past the server's read
	// deadline, or went away) ends the request: the part being stored is
	// discarded (Ingest removes its blob) and later parts are not waited for.
	body := &bodyReader{r: r.Body}
	mr := multipart.NewReader(body, params["boundary"])
	var refs, fails []any
	studies := map[string]bool{}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if body.err != nil {
			break
		}
		if err != nil {
			if len(refs)+len(fails) == 0 {
				h.fail(w, http.StatusBadRequest, "malformed multipart body: "+err.Error())
				return
			}
			fails = append(fails, jsonDS{"00081197": attr("US", 0xC000)})
			break
		}
		pt := "application/dicom" // a part without a type has the body's type
		if ct := part.Header.Get("Content-Type"); ct != "" {
			pt, _, _ = mime.ParseMediaType(ct)
		}
		if pt != "application/dicom" {
			_, _ = io.Copy(io.Discard, part)
			fails = append(fails, jsonDS{"00081197": attr("US", 0xC000)}) // not a DICOM part
			continue
		}
		in, err := h.svc.Ingest(ctx, part, dicom.IngestOptions{StudyUID: study, NoSync: true})
		if err == nil {
			if e := audit.Note(ctx); e != nil && !studies[in.StudyUID] {
				e.Entities = append(e.Entities, "urn:oid:"+in.StudyUID)
			}
			studies[in.StudyUID] = true
			if in.MovedFromStudyUID != "" {
				studies[in.MovedFromStudyUID] = true
			}
			refs = append(refs, h.stowRef(in))
		}
		if body.err == nil {
			_, _ = io.Copy(io.Discard, part)
		}
		if body.err != nil {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			reason := dicom.ReasonProcessingFailure
			var ie *dicom.IngestError
			if errors.As(err, &ie) {
				reason = ie.Reason
			}
			h.log.InfoContext(ctx, "dicomweb: STOW-RS part rejected", "err", err)
			item := jsonDS{"00081197": attr("US", int(reason))}
			if ie != nil && validUID(ie.SOPInstanceUID) && validUID(ie.SOPClassUID) {
				item["00081150"] = attr("UI", ie.SOPClassUID)
				item["00081155"] = attr("UI", ie.SOPInstanceUID)
			}
			fails = append(fails, item)
		}
	}
	// One ImagingStudy version per study per request.
	for uid := range studies {
		if err := h.svc.Sync(context.WithoutCancel(ctx), uid); err != nil {
			h.log.ErrorContext(ctx, "dicomweb: ImagingStudy sync", "study", uid, "err", err)
		}
	}
	if body.err != nil {
		h.log.InfoContext(ctx, "dicomweb: STOW-RS body read failed", "err", body.err, "stored", len(refs))
		if len(refs) == 0 {
			status := http.StatusBadRequest
			if errors.Is(body.err, os.ErrDeadlineExceeded) {
				status = http.StatusRequestTimeout
			}
			h.fail(w, status, "reading the request body failed; nothing was stored")
			return
		}
		fails = append(fails, jsonDS{"00081197": attr("US", int(dicom.ReasonProcessingFailure))})
	}
	resp := jsonDS{}
	if study != "" {
		resp["00081190"] = attr("UR", h.svc.BaseURL()+"/studies/"+study)
	}
	if len(refs) > 0 {
		resp["00081199"] = map[string]any{"vr": "SQ", "Value": refs}
	}
	if len(fails) > 0 {
		resp["00081198"] = map[string]any{"vr": "SQ", "Value": fails}
	}
	status := http.StatusOK
	switch {
	case len(refs) == 0 && len(fails) == 0:
		h.fail(w, http.StatusBadRequest, "the multipart body has no parts")
		return
	case len(refs) == 0:
		status = http.StatusConflict
	case len(fails) > 0:
		status = http.StatusAccepted
	}
	writeJSON(w, status, resp)
}

func (h *Handler) stowRef(in *dicom.Instance) jsonDS {
	return jsonDS{
		"00081150": attr("UI", in.SOPClassUID),
		"00081155": attr("UI", in.SOPInstanceUID),
		"00081190": attr("UR", h.svc.BaseURL()+"/studies/"+in.StudyUID+"/series/"+in.SeriesUID+"/instances/"+in.SOPInstanceUID),
	}
}

// bodyReader remembers the first error reading the request body, other
// than its end, so a failed read is told apart from bad content.
type bodyReader struct {
	r   io.Reader
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}

// validUID: a UID fit to echo in a response (digits and dots, ≤ 64).
func validUID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && c != '.' {
			return false
		}
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/dicom+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// --- QIDO-RS ---------------------------------------------------------------

func (h *Handler) qido(level dicom.Level) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := &dicom.Query{Level: level, Match: map[uint32]string{}, Limit: 1000}
		if s := r.PathValue("study"); s != "" {
			q.Match[0x0020000D] = s
		}
		if s := r.PathValue("series"); s != "" {
			q.Match[0x0020000E] = s
		}
		for key, vals := range r.URL.Query() {
			v := vals[len(vals)-1]
			switch key {
			case "limit", "offset":
				n, err := strconv.Atoi(v)
				if err != nil || n < 0 {
					h.fail(w, http.StatusBadRequest, key+" must be a non-negative integer")
					return
				}
				if key == "limit" {
					q.Limit = min(max(n, 1), 10000)
				} else {
					q.Offset = n
				}
			case "fuzzymatching":
				q.FuzzyPN = v == "true"
			case "includefield":
				for _, val := range vals {
					for _, f := range strings.Split(val, ",") {
						if f == "all" {
							q.IncludeAll = true
							continue
						}
						t, err := dicom.ParseTag(f)
						if err != nil {
							h.fail(w, http.StatusBadRequest, err.Error())
							return
						}
						q.Include = append(q.Include, t)
					}
				}
			default:
				t, err := dicom.ParseTag(key)
				if err != nil {
					h.fail(w, http.StatusBadRequest, "unknown query attribute "+strconv.Quote(key))
					return
				}
				if dicom.AttrByTag(t) == nil {
					h.fail(w, http.StatusBadRequest, "attribute "+key+" cannot be matched")
					return
				}
				q.Match[t] = v
			}
		}
		// Matches are written as they are read, not collected: up to 10,000
		// of them need not sit in memory. The status line waits for the
		// first match so a bad query is still a clean 400.
		base := h.svc.BaseURL()
		var enc *json.Encoder
		err := h.svc.Run(r.Context(), q, func(res *dicom.Result) error {
			ds := jsonDS{}
			for _, v := range res.Values {
				ds[fmt.Sprintf("%08X", v.Tag)] = qidoValue(v)
			}
			url := base + "/studies/" + res.StudyUID
			if res.SeriesUID != "" {
				url += "/series/" + res.SeriesUID
			}
			if res.SOPUID != "" {
				url += "/instances/" + res.SOPUID
			}
			ds["00081190"] = attr("UR", url)
			sep := ","
			if enc == nil {
				w.Header().Set("Content-Type", "application/dicom+json")
				w.WriteHeader(http.StatusOK)
				enc, sep = json.NewEncoder(w), "["
			}
			if _, err := io.WriteString(w, sep); err != nil {
				return err
			}
			return enc.Encode(ds)
		})
		if enc != nil {
			if err != nil {
				// Headers are sent: a truncated array tells the client.
				if r.Context().Err() == nil {
					h.log.ErrorContext(r.Context(), "dicomweb: QIDO-RS", "path", r.URL.Path, "err", err)
				}
				return
			}
			_, _ = io.WriteString(w, "]\n")
			return
		}
		if errors.Is(err, dicom.ErrBadQuery) {
			h.fail(w, http.StatusBadRequest, err.Error())
			return
		}
		if err != nil {
			h.serverError(w, r, err)
			return
		}
		// An empty result is 200 with [] (PS3.18 allows 204 too): clients
		// then parse every answer the same way.
		writeJSON(w, http.StatusOK, []any{})
	}
}

func qidoValue(v dicom.Value) map[string]any {
	if v.Value == "" {
		return attr(v.VR)
	}
	var vals []any
	for _, s := range strings.Split(v.Value, `\`) {
		switch v.VR {
		case "PN":
			vals = append(vals, map[string]any{"Alphabetic": s})
		case "IS", "US":
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				continue
			}
			vals = append(vals, n)
		default:
			vals = append(vals, s)
		}
	}
	return attr(v.VR, vals...)
}

// --- WADO-RS ---------------------------------------------------------------

func (h *Handler) find(w http.ResponseWriter, r *http.Request) ([]dicom.Stored, bool) {
	list, err := h.svc.Instances(r.Context(), r.PathValue("study"), r.PathValue("series"), r.PathValue("instance"))
	if err != nil {
		h.serverError(w, r, err)
		return nil, false
	}
	if len(list) == 0 {
		h.fail(w, http.StatusNotFound, "no such study, series or instance")
		return nil, false
	}
	return list, true
}

func boundary() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// acceptedSyntaxes reads Accept for a retrieve: ok is false when no
// multipart/related; type="application/dicom" (or a wildcard) is
// acceptable; all is true when every transfer syntax is (no
// transfer-syntax parameter, "*", or a wildcard type); else syntaxes lists
// the ones asked for. Ember does not transcode: instances are sent as
// stored.
func acceptedSyntaxes(r *http.Request) (syntaxes map[string]bool, all, ok bool) {
	acc := r.Header.Get("Accept")
	if acc == "" {
		return nil, true, true
	}
	syntaxes = map[string]bool{}
	for _, a := range strings.Split(acc, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(a))
		if err != nil {
			continue
		}
		switch {
		case mt == "*/*" || mt == "multipart/*":
			all, ok = true, true
		case mt == "multipart/related" && (params["type"] == "" || params["type"] == "application/dicom"):
			ok = true
			if ts := params["transfer-syntax"]; ts == "" || ts == "*" {
				all = true
			} else {
				syntaxes[ts] = true
			}
		}
	}
	return syntaxes, all, ok
}

func (h *Handler) retrieve(w http.ResponseWriter, r *http.Request) {
	syntaxes, anySyntax, accepted := acceptedSyntaxes(r)
	if !accepted {
		h.fail(w, http.StatusNotAcceptable, `retrieve answers multipart/related; type="application/dicom"`)
		return
	}
	list, ok := h.find(w, r)
	if !ok {
		return
	}
	if !anySyntax {
		for _, st := range list {
			if !syntaxes[st.TransferSyntax] {
				h.fail(w, http.StatusNotAcceptable, fmt.Sprintf(
					"instance %s is stored in transfer syntax %s and Ember does not transcode: ask for transfer-syntax=* or that syntax",
					st.SOPUID, st.TransferSyntax))
				return
			}
		}
	}
	b := boundary()
	w.Header().Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+b)
	mw := multipart.NewWriter(w)
	_ = mw.SetBoundary(b)
	for _, st := range list {
		rc, err := h.svc.Blobs().Open(r.Context(), st.BlobKey, 0, -1)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				h.log.ErrorContext(r.Context(), "dicomweb: instance file missing", "sop", st.SOPUID, "key", st.BlobKey)
				continue
			}
			h.log.ErrorContext(r.Context(), "dicomweb: open instance", "err", err)
			return // headers are sent; a truncated body tells the client
		}
		pw, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":   {`application/dicom; transfer-syntax=` + st.TransferSyntax},
			"Content-Length": {strconv.FormatInt(st.Size, 10)},
		})
		if err == nil {
			_, err = io.Copy(pw, rc)
		}
		rc.Close()
		if err != nil {
			return
		}
	}
	_ = mw.Close()
}

func (h *Handler) metadata(w http.ResponseWriter, r *http.Request) {
	list, ok := h.find(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/dicom+json")
	enc := json.NewEncoder(w)
	_, _ = io.WriteString(w, "[")
	for i, st := range list {
		ds, err := h.instanceJSON(r.Context(), st)
		if err != nil {
			h.log.ErrorContext(r.Context(), "dicomweb: metadata", "sop", st.SOPUID, "err", err)
			continue
		}
		if i > 0 {
			_, _ = io.WriteString(w, ",")
		}
		_ = enc.Encode(ds)
	}
	_, _ = io.WriteString(w, "]")
}

func (h *Handler) instanceJSON(ctx context.Context, st dicom.Stored) (map[string]any, error) {
	// The header ends where the pixels start: read only that much.
	length := int64(-1)
	if st.PixelOffset > 0 {
		length = st.PixelOffset
	}
	rc, err := h.svc.Blobs().Open(ctx, st.BlobKey, 0, length)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	// ReadHeader stops at PixelData's header, which ends this range.
	hd, _, err := dicom.ReadHeader(bufio.NewReader(rc))
	if err != nil {
		return nil, err
	}
	inst := h.svc.BaseURL() + "/studies/" + st.StudyUID + "/series/" + st.SeriesUID + "/instances/" + st.SOPUID
	// Values over 1 MB other than PixelData are left without a URI: only
	// PixelData is served as bulk data.
	ds := hd.Dataset.JSON(nil)
	if st.PixelOffset > 0 {
		ds["7FE00010"] = map[string]any{"vr": pixelVR(st), "BulkDataURI": inst + "/bulkdata/7FE00010"}
	}
	return ds, nil
}

func pixelVR(st dicom.Stored) string {
	if dicom.Native(st.TransferSyntax) {
		return "OW"
	}
	return "OB"
}

// bulk serves PixelData's value: native data as one part (the value as
// stored), encapsulated data as one part per frame. Both stream from the
// blob store.
func (h *Handler) bulk(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.PathValue("tag"), "7FE00010") {
		h.fail(w, http.StatusNotFound, "only PixelData is served as bulk data")
		return
	}
	list, ok := h.find(w, r)
	if !ok {
		return
	}
	st := list[0]
	if st.PixelOffset < 0 || (dicom.Native(st.TransferSyntax) && st.PixelLength < 0) {
		h.fail(w, http.StatusNotFound, "the instance has no pixel data")
		return
	}
	if !dicom.Native(st.TransferSyntax) {
		// Frames are located MaxFrames at a time, so memory stays bounded
		// however many frames the instance has.
		chunk := func(first int) []int {
			nums := make([]int, 0, MaxFrames)
			for n := first; n <= st.Frames && len(nums) < MaxFrames; n++ {
				nums = append(nums, n)
			}
			return nums
		}
		h.writeFrames(w, r, st, chunk(1), func(last int) []int { return chunk(last + 1) })
		return
	}
	rc, err := h.svc.Blobs().Open(r.Context(), st.BlobKey, st.PixelOffset, st.PixelLength)
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	defer rc.Close()
	b := boundary()
	w.Header().Set("Content-Type", `multipart/related; type="application/octet-stream"; boundary=`+b)
	mw := multipart.NewWriter(w)
	_ = mw.SetBoundary(b)
	pw, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/octet-stream"},
		"Content-Length": {strconv.FormatInt(st.PixelLength, 10)}})
	if err == nil {
		_, err = io.Copy(pw, rc)
	}
	if err != nil {
		return // headers are sent; a truncated body tells the client
	}
	_ = mw.Close()
}

func (h *Handler) frames(w http.ResponseWriter, r *http.Request) {
	list, ok := h.find(w, r)
	if !ok {
		return
	}
	raw := strings.Split(r.PathValue("frames"), ",")
	if len(raw) > MaxFrames {
		h.fail(w, http.StatusBadRequest, fmt.Sprintf("at most %d frame numbers per request", MaxFrames))
		return
	}
	// Each frame is sent once, in the order first asked for.
	seen := make(map[int]bool, len(raw))
	nums := make([]int, 0, len(raw))
	for _, f := range raw {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			h.fail(w, http.StatusBadRequest, "frame numbers are positive integers")
			return
		}
		if n > list[0].Frames {
			h.fail(w, http.StatusNotFound, fmt.Sprintf("the instance has %d frame(s)", list[0].Frames))
			return
		}
		if !seen[n] {
			seen[n] = true
			nums = append(nums, n)
		}
	}
	h.writeFrames(w, r, list[0], nums, nil)
}

// writeFrames streams frames nums of st as a multipart response, one frame
// in flight at a time. The frames are located before the status is sent,
// so a missing frame is still a clean 404; more, when set, gives the next
// batch of frames after the last one sent (empty: done).
func (h *Handler) writeFrames(w http.ResponseWriter, r *http.Request, st dicom.Stored, nums []int, more func(last int) []int) {
	ctx := r.Context()
	refs, err := h.svc.LocateFrames(ctx, st, nums)
	if errors.Is(err, dicom.ErrNoFrame) {
		h.fail(w, http.StatusNotFound, "no such frame")
		return
	}
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	partType := "application/octet-stream"
	ct := partType
	if !dicom.Native(st.TransferSyntax) {
		partType = compressedType(st.TransferSyntax)
		if partType != "application/octet-stream" {
			ct = partType + "; transfer-syntax=" + st.TransferSyntax
		}
	}
	b := boundary()
	w.Header().Set("Content-Type", `multipart/related; type="`+partType+`"; boundary=`+b)
	mw := multipart.NewWriter(w)
	_ = mw.SetBoundary(b)
	for len(refs) > 0 {
		for _, f := range refs {
			pw, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {ct}, "Content-Length": {strconv.FormatInt(f.Size, 10)}})
			if err == nil {
				err = h.svc.CopyFrame(ctx, st, f, pw)
			}
			if err != nil {
				if ctx.Err() == nil {
					h.log.ErrorContext(ctx, "dicomweb: sending frame", "sop", st.SOPUID, "frame", f.N, "err", err)
				}
				return // headers are sent; a truncated body tells the client
			}
		}
		if more == nil {
			break
		}
		next := more(refs[len(refs)-1].N)
		if len(next) == 0 {
			break
		}
		if refs, err = h.svc.LocateFrames(ctx, st, next); err != nil {
			if ctx.Err() == nil {
				h.log.ErrorContext(ctx, "dicomweb: locating frames", "sop", st.SOPUID, "err", err)
			}
			return
		}
	}
	_ = mw.Close()
}

func compressedType(ts string) string {
	switch {
	case ts == "1.2.840.10008.1.2.5":
		return "image/dicom-rle"
	case ts == "1.2.840.10008.1.2.4.80" || ts == "1.2.840.10008.1.2.4.81":
		return "image/jls"
	case ts == "1.2.840.10008.1.2.4.90" || ts == "1.2.840.10008.1.2.4.91":
		return "image/jp2"
	case strings.HasPrefix(ts, "1.2.840.10008.1.2.4."):
		return "image/jpeg"
	}
	return "application/octet-stream"
}

func (h *Handler) rendered(w http.ResponseWriter, r *http.Request) {
	usePNG := false
	if acc := r.Header.Get("Accept"); acc != "" {
		ok := false
		for _, a := range strings.Split(acc, ",") {
			mt, _, _ := mime.ParseMediaType(strings.TrimSpace(a))
			switch mt {
			case "image/png":
				usePNG, ok = true, true
			case "image/jpeg", "image/*", "*/*":
				ok = true
			}
			if ok {
				break
			}
		}
		if !ok {
			h.fail(w, http.StatusNotAcceptable, "rendered answers image/jpeg or image/png")
			return
		}
	}
	var win dicom.Window
	if v := r.URL.Query().Get("window"); v != "" {
		parts := strings.Split(v, ",")
		if len(parts) < 2 || len(parts) > 3 || (len(parts) == 3 && parts[2] != "linear") {
			h.fail(w, http.StatusBadRequest, "window is center,width[,linear]")
			return
		}
		c, err1 := strconv.ParseFloat(parts[0], 64)
		wd, err2 := strconv.ParseFloat(parts[1], 64)
		// ParseFloat takes NaN and Inf, which no window can be.
		if err1 != nil || err2 != nil || !(wd > 0) || math.IsInf(wd, 0) || math.IsNaN(c) || math.IsInf(c, 0) {
			h.fail(w, http.StatusBadRequest, "window is center,width[,linear] with width > 0")
			return
		}
		win = dicom.Window{Center: c, Width: wd}
	}
	list, ok := h.find(w, r)
	if !ok {
		return
	}
	n := 1
	if f := r.PathValue("frames"); f != "" {
		var err error
		if n, err = strconv.Atoi(f); err != nil || n < 1 {
			h.fail(w, http.StatusBadRequest, "render one frame number")
			return
		}
	}
	img, err := h.svc.Render(r.Context(), list[0], n, win)
	switch {
	case errors.Is(err, dicom.ErrUnsupportedPixels):
		h.fail(w, http.StatusNotAcceptable, err.Error())
		return
	case errors.Is(err, dicom.ErrNoFrame):
		h.fail(w, http.StatusNotFound, "no such frame")
		return
	case err != nil:
		h.serverError(w, r, err)
		return
	}
	if usePNG {
		w.Header().Set("Content-Type", "image/png")
		_ = png.Encode(w, img)
		return
	}
	w.Header().Set("Content-Type", "image/jpeg")
	_ = jpeg.Encode(w, img, &jpeg.Options{Quality: 90})
}
