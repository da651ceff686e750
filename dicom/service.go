package dicom

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/store"
)

// Config configures a Service.
type Config struct {
	Store  *store.Store
	Parser *fhir.Parser
	// Blobs is the instance file store (see OpenBlobs).
	Blobs *Blobs
	// DICOMwebBase is the public DICOMweb base URL (…/dicomweb), used in
	// RetrieveURLs and the ImagingStudy's Endpoint.
	DICOMwebBase string
	Logger       *slog.Logger
	// SyncDelay is how long after a study's last instance its ImagingStudy
	// is rebuilt (batching); 0 means 300 ms.
	SyncDelay time.Duration
	// PatientIDSystem is the Patient.identifier system for PatientID when
	// the instance has no IssuerOfPatientID; "" means urn:dicom:patient-id.
	PatientIDSystem string
	// Location reads StudyDate/StudyTime when the instance has no
	// TimezoneOffsetFromUTC; nil means UTC.
	Location *time.Location
	// Overwrite decides whether a C-STORE may replace an existing SOP
	// instance with different data; "" means OverwriteSameAE. The same
	// data set sent again is always accepted. DICOMweb (STOW-RS), whose
	// callers hold create and update scopes, always replaces.
	Overwrite Overwrite
}

// Overwrite is a policy for C-STORE replacing an existing SOP instance
// with a different data set.
type Overwrite string

const (
	// OverwriteSameAE lets only the calling AE that stored an instance
	// replace it (the default).
	OverwriteSameAE Overwrite = "same-ae"
	// OverwriteAny lets any admitted calling AE replace any instance.
	OverwriteAny Overwrite = "any"
	// OverwriteNever keeps the first data set received for a SOP instance.
	OverwriteNever Overwrite = "never"
)

// ParseOverwrite reads an Overwrite policy ("" is the default).
func ParseOverwrite(s string) (Overwrite, error) {
	switch o := Overwrite(strings.TrimSpace(s)); o {
	case "":
		return OverwriteSameAE, nil
	case OverwriteSameAE, OverwriteAny, OverwriteNever:
		return o, nil
	}
	return "", fmt.Errorf("dicom: overwrite policy %q: want any, same-ae or never", s)
}

// Service ingests instances and keeps ImagingStudy resources in step. It is
// safe for concurrent use.
type Service struct {
	cfg   Config
	log   *slog.Logger
	store *store.Store

	mu      sync.Mutex
	timers  map[string]*pendingSync // studies awaiting a debounced sync
	closed  bool
	syncWG  sync.WaitGroup
	baseCtx context.Context
	cancel  context.CancelFunc
}

// New returns a Service. Call Close to flush pending ImagingStudy syncs.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Parser == nil || cfg.Blobs == nil {
		return nil, errors.New("dicom: Config needs Store, Parser and Blobs")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.SyncDelay <= 0 {
		cfg.SyncDelay = 300 * time.Millisecond
	}
	if cfg.PatientIDSystem == "" {
		cfg.PatientIDSystem = "urn:dicom:patient-id"
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	var err error
	if cfg.Overwrite, err = ParseOverwrite(string(cfg.Overwrite)); err != nil {
		return nil, err
	}
	cfg.DICOMwebBase = strings.TrimSuffix(cfg.DICOMwebBase, "/")
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{cfg: cfg, log: cfg.Logger, store: cfg.Store, timers: map[string]*pendingSync{}, baseCtx: ctx, cancel: cancel}, nil
}

// Blobs returns the blob store, for retrieval.
func (s *Service) Blobs() *Blobs { return s.cfg.Blobs }

// BaseURL is the public DICOMweb base.
func (s *Service) BaseURL() string { return s.cfg.DICOMwebBase }

// Close stops the debounce timers and syncs every stale study.
func (s *Service) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for uid, p := range s.timers {
		p.timer.Stop()
		delete(s.timers, uid)
	}
	s.mu.Unlock()
	s.syncWG.Wait()
	err := s.Flush(ctx)
	s.cancel()
	return err
}

// Failure reasons (PS3.4 / PS3.18 FailureReason) an ingest error carries.
const (
	ReasonProcessingFailure uint16 = 0x0110
	ReasonOutOfResources    uint16 = 0xA700
	ReasonDataSetMismatch   uint16 = 0xA900 // e.g. no SOP Instance UID, wrong study
	ReasonDuplicateSOP      uint16 = 0x0111 // the instance exists with other data (Overwrite)
	ReasonCannotUnderstand  uint16 = 0xC000
)

// IngestError is a rejected instance: Reason is the DICOM failure reason.
type IngestError struct {
	Reason uint16
	Err    error
	// SOPClassUID and SOPInstanceUID, when the header got that far (STOW-RS
	// names them in its FailedSOPSequence).
	SOPClassUID, SOPInstanceUID string
}

func (e *IngestError) Error() string { return e.Err.Error() }
func (e *IngestError) Unwrap() error { return e.Err }

func reject(reason uint16, format string, args ...any) error {
	return &IngestError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// Instance is a stored instance's identity.
type Instance struct {
	StudyUID, SeriesUID, SOPInstanceUID, SOPClassUID string
	TransferSyntax                                   string
	Size                                             int64
	// Replaced: an instance with this SOP Instance UID existed and was
	// replaced (the latest received copy wins, as IngestOptions.Overwrite
	// allows).
	Replaced bool
	// MovedFromStudyUID: the replaced instance belonged to this other
	// study, whose ImagingStudy needs a sync too.
	MovedFromStudyUID string
}

// IngestOptions constrain an ingest.
type IngestOptions struct {
	// StudyUID, when set, rejects instances of other studies (STOW-RS
	// POST /studies/{study}).
	StudyUID string
	// SOPInstanceUID, when set, rejects a dataset with another SOP
	// Instance UID (C-STORE: the command's Affected SOP Instance UID).
	SOPInstanceUID string
	// NoSync leaves the ImagingStudy update to the caller (Sync/Flush)
	// instead of the debounce timer; STOW-RS syncs once per request.
	NoSync bool
	// SourceAE is recorded as the instance's source: the calling AE of a
	// C-STORE, "" for DICOMweb.
	SourceAE string
	// Overwrite, when set, limits replacing an existing instance with a
	// different data set (see Config.Overwrite); "" replaces always.
	Overwrite Overwrite
}

// Ingest stores one Part-10 stream (preamble, "DICM", meta group, dataset).
// The bytes are streamed to the blob store as they are read, while the
// header up to PixelData is parsed; the file is made durable before its
// metadata commits, and a failure leaves neither behind.
func (s *Service) Ingest(ctx context.Context, r io.Reader, opts IngestOptions) (*Instance, error) {
	key := blobKey()
	w, err := s.cfg.Blobs.create(ctx, key)
	if err != nil {
		return nil, &IngestError{Reason: storageReason(err), Err: err}
	}
	committed := false
	defer func() {
		if !committed {
			w.Abort()
		}
	}()
	cw := &countWriter{w: w}
	var tee io.Writer = cw
	var dh *datasetHash
	if opts.Overwrite != "" && opts.Overwrite != OverwriteAny {
		// Only a policy that may refuse needs the digest; STOW-RS (always
		// replacing, and carrying the largest uploads) skips its cost.
		dh = &datasetHash{h: sha256.New(), skip: -1}
		tee = io.MultiWriter(cw, dh)
	}
	br := bufio.NewReaderSize(io.TeeReader(r, tee), 32<<10)
	var afterMeta func(int64)
	if dh != nil {
		afterMeta = dh.start
	}
	h, _, err := readHeader(br, afterMeta)
	if err != nil {
		if cw.err != nil {
			return nil, &IngestError{Reason: storageReason(cw.err), Err: fmt.Errorf("dicom: store: %w", cw.err)}
		}
		return nil, reject(ReasonCannotUnderstand, "%w", err)
	}
	meta := parseAttrs(h)
	if err := meta.check(opts); err != nil {
		var ie *IngestError
		if errors.As(err, &ie) {
			ie.SOPClassUID, ie.SOPInstanceUID = meta.sopClass, meta.sopUID
		}
		return nil, err
	}
	// The rest streams through the same reader (and so to the blob), its
	// structure checked: a truncated instance is not stored.
	n, err := h.ReadTrailer()
	if err != nil {
		if cw.err != nil {
			return nil, &IngestError{Reason: storageReason(cw.err), Err: fmt.Errorf("dicom: store: %w", cw.err)}
		}
		return nil, reject(ReasonCannotUnderstand, "%w", err)
	}
	if n != cw.n {
		return nil, reject(ReasonProcessingFailure, "dicom: read %d bytes, stored %d", n, cw.n)
	}
	if h.Pixels != nil {
		meta.pixelOffset = h.Pixels.Offset
		meta.pixelLength = h.Pixels.Length
	}
	meta.size = cw.n
	meta.blobKey = key
	if dh != nil {
		meta.digest = dh.sum()
	}
	meta.sourceAE = opts.SourceAE
	meta.overwrite = opts.Overwrite
	if meta.overwrite == "" {
		meta.overwrite = OverwriteAny
	}
	if err := w.Commit(); err != nil {
		committed = true // Commit cleans up after itself
		return nil, &IngestError{Reason: storageReason(err), Err: err}
	}
	committed = true
	old, movedFrom, err := s.saveMetadata(ctx, meta)
	if err != nil {
		// Nothing may be half-stored: the file goes with the metadata.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if derr := s.cfg.Blobs.delete(dctx, key); derr != nil {
			s.log.Error("dicom: removing blob after failed metadata write", "key", key, "err", derr)
		}
		ie := &IngestError{Reason: ReasonProcessingFailure, Err: err, SOPClassUID: meta.sopClass, SOPInstanceUID: meta.sopUID}
		if errors.Is(err, errOverwriteRefused) {
			ie.Reason = ReasonDuplicateSOP
		}
		return nil, ie
	}
	if old != "" && old != key {
		if err := s.cfg.Blobs.delete(context.WithoutCancel(ctx), old); err != nil {
			s.log.Warn("dicom: removing replaced blob", "key", old, "err", err)
		}
	}
	if !opts.NoSync {
		s.scheduleSync(meta.studyUID)
		if movedFrom != "" {
			s.scheduleSync(movedFrom)
		}
	}
	return &Instance{
		StudyUID: meta.studyUID, SeriesUID: meta.seriesUID, SOPInstanceUID: meta.sopUID,
		SOPClassUID: meta.sopClass, TransferSyntax: meta.transferSyntax, Size: meta.size, Replaced: old != "",
		MovedFromStudyUID: movedFrom,
	}, nil
}

// storageReason maps a full disk to "out of resources".
func storageReason(err error) uint16 {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return ReasonOutOfResources
	}
	return ReasonProcessingFailure
}

// datasetHash digests the data set of a Part-10 stream: the bytes after
// the file meta group, so the same data set hashes the same whatever meta
// group a sender (or Ember, for C-STORE) wrapped it in. Bytes are held
// back until start learns where the meta group ends.
type datasetHash struct {
	h       hash.Hash
	skip    int64 // bytes of the stream still to leave out; -1: not known yet
	pending []byte
	failed  bool // the meta group was too large to hold back: no digest
}

// maxHeldBack bounds the bytes held before the meta group's end is known
// (the meta group plus one read-ahead buffer).
const maxHeldBack = 1 << 20

func (d *datasetHash) Write(p []byte) (int, error) {
	if d.skip < 0 {
		if len(d.pending)+len(p) > maxHeldBack {
			d.failed, d.pending = true, nil
		} else if !d.failed {
			d.pending = append(d.pending, p...)
		}
		return len(p), nil
	}
	d.feed(p)
	return len(p), nil
}

func (d *datasetHash) feed(p []byte) {
	if d.skip > 0 {
		k := min(d.skip, int64(len(p)))
		p, d.skip = p[k:], d.skip-k
	}
	d.h.Write(p)
}

// start is told the meta group's end offset.
func (d *datasetHash) start(metaEnd int64) {
	d.skip = metaEnd
	p := d.pending
	d.pending = nil
	d.feed(p)
}

func (d *datasetHash) sum() []byte {
	if d.failed || d.skip < 0 {
		return nil
	}
	return d.h.Sum(nil)
}

type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil {
		c.err = err
	}
	return n, err
}

// blobKey is a fresh key; a two-hex-digit fan-out keeps directories small
// for fileblob.
func blobKey() string {
	id := uuid.Must(uuid.NewV7()).String()
	return "instances/" + id[len(id)-2:] + "/" + id + ".dcm"
}

// attrs are the indexed attributes of one instance.
type attrs struct {
	studyUID, seriesUID, sopUID, sopClass, transferSyntax string

	patientID, issuer, patientName, birthDate, sex string
	studyDate, studyTime, accession, studyID       string
	studyDesc, referring, tzOffset                 string

	modality, seriesDesc, bodyPart, laterality string
	seriesNumber, instanceNumber               *int
	rows, columns, frames                      *int

	blobKey                  string
	size                     int64
	pixelOffset, pixelLength int64

	digest    []byte // SHA-256 of the data set; nil: unknown
	sourceAE  string
	overwrite Overwrite
}

func parseAttrs(h *Header) *attrs {
	d := h.Dataset
	a := &attrs{
		studyUID: d.String(tagStudyInstanceUID), seriesUID: d.String(tagSeriesInstanceUID),
		sopUID: d.String(tagSOPInstanceUID), sopClass: d.String(tagSOPClassUID),
		transferSyntax: h.TransferSyntax,
		patientID:      d.String(tagPatientID), issuer: d.String(tagIssuerOfPatientID),
		patientName: d.String(tagPatientName), birthDate: d.String(tagPatientBirthDate), sex: d.String(tagPatientSex),
		studyDate: d.String(tagStudyDate), studyTime: d.String(tagStudyTime), accession: d.String(tagAccessionNumber),
		studyID: d.String(tagStudyID), studyDesc: d.String(tagStudyDescription), referring: d.String(tagReferringPhysician),
		tzOffset: d.String(tagTimezoneOffset),
		modality: d.String(tagModality), seriesDesc: d.String(tagSeriesDescription),
		bodyPart: d.String(tagBodyPartExamined), laterality: d.String(tagLaterality),
		pixelOffset: -1, pixelLength: -1,
	}
	intp := func(t uint32) *int {
		if v, ok := d.Int(t); ok {
			return &v
		}
		return nil
	}
	a.seriesNumber, a.instanceNumber = intp(tagSeriesNumber), intp(tagInstanceNumber)
	a.rows, a.columns, a.frames = intp(tagRows), intp(tagColumns), intp(tagNumberOfFrames)
	if a.sopUID == "" {
		a.sopUID = h.Meta.String(tagMediaSOPInstance)
	}
	if a.sopClass == "" {
		a.sopClass = h.Meta.String(tagMediaSOPClass)
	}
	return a
}

// check enforces what the tables and ImagingStudy need.
func (a *attrs) check(opts IngestOptions) error {
	for _, f := range []struct{ name, v string }{
		{"SOPInstanceUID", a.sopUID}, {"StudyInstanceUID", a.studyUID},
		{"SeriesInstanceUID", a.seriesUID}, {"SOPClassUID", a.sopClass},
	} {
		if f.v == "" {
			return reject(ReasonDataSetMismatch, "dicom: the dataset has no %s", f.name)
		}
		if !validUID(f.v) {
			return reject(ReasonDataSetMismatch, "dicom: %s %q is not a valid UID", f.name, f.v)
		}
	}
	if opts.StudyUID != "" && a.studyUID != opts.StudyUID {
		return reject(ReasonDataSetMismatch, "dicom: instance belongs to study %s, not %s", a.studyUID, opts.StudyUID)
	}
	if opts.SOPInstanceUID != "" && a.sopUID != opts.SOPInstanceUID {
		return reject(ReasonDataSetMismatch, "dicom: the dataset's SOP Instance UID %s differs from %s", a.sopUID, opts.SOPInstanceUID)
	}
	return nil
}

// validUID: digits and dots, at most 64 characters (PS3.5 9.1).
func validUID(s string) bool {
	if len(s) == 0 || len(s) > 64 || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && c != '.' {
			return false
		}
	}
	return true
}

// saveMetadata upserts study, series and instance in one implicit
// transaction (one round trip) and returns the replaced blob key and, when
// the replaced instance belonged to another study, that study.
func (s *Service) saveMetadata(ctx context.Context, a *attrs) (oldKey, movedFrom string, err error) {
	b := &pgx.Batch{}
	// Study and series rows are inserted once and updated only when a value
	// changes (latest non-empty value wins), so parallel ingests of one
	// study do not queue on its row; FOR SHARE then holds off a concurrent
	// ImagingStudy sync (FOR UPDATE) until this instance commits.
	b.Queue(`INSERT INTO dicom_studies (study_uid, patient_id, issuer, patient_name, birth_date, sex,
		study_date, study_time, accession, study_id, description, referring, tz_offset)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13) ON CONFLICT (study_uid) DO NOTHING`,
		a.studyUID, a.patientID, a.issuer, a.patientName, a.birthDate, a.sex,
		a.studyDate, a.studyTime, a.accession, a.studyID, a.studyDesc, a.referring, a.tzOffset)
	b.Queue(`UPDATE dicom_studies st SET
		  patient_id = COALESCE(NULLIF($2,''), st.patient_id), issuer = COALESCE(NULLIF($3,''), st.issuer),
		  patient_name = COALESCE(NULLIF($4,''), st.patient_name), birth_date = COALESCE(NULLIF($5,''), st.birth_date),
		  sex = COALESCE(NULLIF($6,''), st.sex), study_date = COALESCE(NULLIF($7,''), st.study_date),
		  study_time = COALESCE(NULLIF($8,''), st.study_time), accession = COALESCE(NULLIF($9,''), st.accession),
		  study_id = COALESCE(NULLIF($10,''), st.study_id), description = COALESCE(NULLIF($11,''), st.description),
		  referring = COALESCE(NULLIF($12,''), st.referring), tz_offset = COALESCE(NULLIF($13,''), st.tz_offset),
		  updated_at = now()
		WHERE st.study_uid = $1 AND ROW(st.patient_id, st.issuer, st.patient_name, st.birth_date, st.sex, st.study_date,
		  st.study_time, st.accession, st.study_id, st.description, st.referring, st.tz_offset) IS DISTINCT FROM
		  ROW(COALESCE(NULLIF($2,''), st.patient_id), COALESCE(NULLIF($3,''), st.issuer), COALESCE(NULLIF($4,''), st.patient_name),
		  COALESCE(NULLIF($5,''), st.birth_date), COALESCE(NULLIF($6,''), st.sex), COALESCE(NULLIF($7,''), st.study_date),
		  COALESCE(NULLIF($8,''), st.study_time), COALESCE(NULLIF($9,''), st.accession), COALESCE(NULLIF($10,''), st.study_id),
		  COALESCE(NULLIF($11,''), st.description), COALESCE(NULLIF($12,''), st.referring), COALESCE(NULLIF($13,''), st.tz_offset))`,
		a.studyUID, a.patientID, a.issuer, a.patientName, a.birthDate, a.sex,
		a.studyDate, a.studyTime, a.accession, a.studyID, a.studyDesc, a.referring, a.tzOffset)
	b.Queue(`SELECT 1 FROM dicom_studies WHERE study_uid = $1 FOR SHARE`, a.studyUID)
	b.Queue(`INSERT INTO dicom_series (series_uid, study_uid, modality, series_number, description, body_part, laterality)
		VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (series_uid) DO NOTHING`,
		a.seriesUID, a.studyUID, a.modality, a.seriesNumber, a.seriesDesc, a.bodyPart, a.laterality)
	b.Queue(`UPDATE dicom_series se SET study_uid = $2,
		  modality = COALESCE(NULLIF($3,''), se.modality), series_number = COALESCE($4, se.series_number),
		  description = COALESCE(NULLIF($5,''), se.description), body_part = COALESCE(NULLIF($6,''), se.body_part),
		  laterality = COALESCE(NULLIF($7,''), se.laterality)
		WHERE se.series_uid = $1 AND ROW(se.study_uid, se.modality, se.series_number, se.description, se.body_part, se.laterality)
		  IS DISTINCT FROM ROW($2::text, COALESCE(NULLIF($3,''), se.modality), COALESCE($4, se.series_number),
		  COALESCE(NULLIF($5,''), se.description), COALESCE(NULLIF($6,''), se.body_part), COALESCE(NULLIF($7,''), se.laterality))`,
		a.seriesUID, a.studyUID, a.modality, a.seriesNumber, a.seriesDesc, a.bodyPart, a.laterality)
	var px, pl *int64
	if a.pixelOffset >= 0 {
		px, pl = &a.pixelOffset, &a.pixelLength
	}
	// A replaced instance that moves to another study bumps its old study
	// too, so that study's ImagingStudy is rebuilt without it.
	//
	// The overwrite policy is decided on the conflicting row itself, under
	// its lock, so concurrent stores cannot slip past it: the same data set
	// always replaces (and keeps its first source); other data only as
	// $16 allows. A refused replace raises (dicom_refuse_overwrite), which
	// rolls the whole batch back, study and series updates included.
	b.Queue(`WITH old AS (SELECT blob_key, study_uid FROM dicom_instances WHERE sop_uid = $1),
		ins AS (INSERT INTO dicom_instances AS cur (sop_uid, series_uid, study_uid, sop_class, instance_number, transfer_syntax,
		  rows, columns, frames, blob_key, size, pixel_offset, pixel_length, source_ae, digest)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)
		ON CONFLICT (sop_uid) DO UPDATE SET series_uid = EXCLUDED.series_uid, study_uid = EXCLUDED.study_uid,
		  sop_class = EXCLUDED.sop_class, instance_number = EXCLUDED.instance_number,
		  transfer_syntax = EXCLUDED.transfer_syntax, rows = EXCLUDED.rows, columns = EXCLUDED.columns,
		  frames = EXCLUDED.frames, blob_key = EXCLUDED.blob_key, size = EXCLUDED.size,
		  pixel_offset = EXCLUDED.pixel_offset, pixel_length = EXCLUDED.pixel_length,
		  source_ae = CASE WHEN cur.digest = EXCLUDED.digest THEN cur.source_ae ELSE EXCLUDED.source_ae END,
		  digest = EXCLUDED.digest, seq = EXCLUDED.seq, created_at = now()
		  WHERE $16 = 'any' OR cur.digest = EXCLUDED.digest OR ($16 = 'same-ae' AND cur.source_ae = EXCLUDED.source_ae)
		RETURNING 1),
		moved AS (UPDATE dicom_studies SET force_sync = true, updated_at = now()
		  WHERE study_uid = (SELECT study_uid FROM old) AND study_uid <> $3 RETURNING study_uid)
		SELECT COALESCE((SELECT blob_key FROM old), ''), COALESCE((SELECT study_uid FROM moved), ''),
		  CASE WHEN (SELECT count(*) FROM ins) = 0 THEN dicom_refuse_overwrite($1) ELSE 1 END`,
		a.sopUID, a.seriesUID, a.studyUID, a.sopClass, a.instanceNumber, a.transferSyntax,
		a.rows, a.columns, a.frames, a.blobKey, a.size, px, pl, a.sourceAE, a.digest, string(a.overwrite))
	// A batch ends in one Sync, so PostgreSQL runs it as one implicit
	// transaction: all rows or none, in a single round trip.
	br := s.store.Pool().SendBatch(ctx, b)
	defer br.Close()
	for i := 0; i < 5; i++ {
		if _, err := br.Exec(); err != nil {
			return "", "", fmt.Errorf("dicom: save metadata: %w", err)
		}
	}
	var inserted int
	if err := br.QueryRow().Scan(&oldKey, &movedFrom, &inserted); err != nil {
		if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.ConstraintName == "dicom_instances_overwrite" {
			err = fmt.Errorf("%w: %s", errOverwriteRefused, pe.Message)
		}
		return "", "", fmt.Errorf("dicom: save instance: %w", err)
	}
	if err := br.Close(); err != nil {
		return "", "", fmt.Errorf("dicom: save metadata: %w", err)
	}
	return oldKey, movedFrom, nil
}

// errOverwriteRefused: the Overwrite policy kept an existing instance.
var errOverwriteRefused = errors.New("dicom: overwrite refused")

// implementationUID identifies Ember as the writer of meta groups it builds.
const implementationUID = "2.25.302791637452391468014512283396557912361"

// AppendElement appends one explicit VR little endian element to b, padding
// an odd-length value (UI and OB with NUL, the rest with a space).
func AppendElement(b *bytes.Buffer, group, elem uint16, vr string, v []byte) {
	if len(v)%2 == 1 {
		pad := byte(' ')
		if vr == "UI" || vr == "OB" {
			pad = 0
		}
		v = append(v, pad)
	}
	var h [12]byte
	binary.LittleEndian.PutUint16(h[0:], group)
	binary.LittleEndian.PutUint16(h[2:], elem)
	copy(h[4:6], vr)
	switch vr {
	case "OB", "OW", "OF", "OD", "OL", "OV", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		binary.LittleEndian.PutUint32(h[8:], uint32(len(v)))
		b.Write(h[:12])
	default:
		binary.LittleEndian.PutUint16(h[6:], uint16(len(v)))
		b.Write(h[:8])
	}
	b.Write(v)
}

// FileMeta builds a Part-10 preamble and file meta group for a dataset
// received without one (C-STORE): the transfer syntax from the presentation
// context, SOP class and instance from the command.
func FileMeta(sopClass, sopInstance, transferSyntax, sourceAE string) []byte {
	var body bytes.Buffer
	el := func(group, elem uint16, vr string, v []byte) { AppendElement(&body, group, elem, vr, v) }
	el(0x0002, 0x0001, "OB", []byte{0, 1})
	el(0x0002, 0x0002, "UI", []byte(sopClass))
	el(0x0002, 0x0003, "UI", []byte(sopInstance))
	el(0x0002, 0x0010, "UI", []byte(transferSyntax))
	el(0x0002, 0x0012, "UI", []byte(implementationUID))
	el(0x0002, 0x0013, "SH", []byte("EMBER"))
	if sourceAE = strings.TrimSpace(sourceAE); sourceAE != "" {
		el(0x0002, 0x0016, "AE", []byte(sourceAE))
	}
	out := make([]byte, 128, 128+4+12+body.Len())
	out = append(out, "DICM"...)
	var gl [12]byte
	binary.LittleEndian.PutUint16(gl[0:], 0x0002)
	copy(gl[4:6], "UL")
	binary.LittleEndian.PutUint16(gl[6:], 4)
	binary.LittleEndian.PutUint32(gl[8:], uint32(body.Len()))
	out = append(out, gl[:]...)
	return append(out, body.Bytes()...)
}
