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
	"github.com/prometheus/client_golang/prometheus"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/store/dicomdb"
)

// Config configures a Service.
type Config struct {
	// Engine writes the ImagingStudy, Patient and Endpoint resources (as
	// engine.System), and its Store holds the DICOM metadata tables.
	Engine *engine.Engine
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
	// OnStudySynced, when set, is called after each sync that wrote a
	// study's ImagingStudy (inference's trigger: Service.StudyChanged). It
	// runs on the syncing goroutine and must not block.
	OnStudySynced func(studyUID string)
	// Metrics, when set, is where the ingest counters are registered
	// (instances and bytes stored, failures, by source).
	Metrics prometheus.Registerer
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
	cfg     Config
	log     *slog.Logger
	eng     *engine.Engine
	db      *dicomdb.DB // the DICOM metadata tables
	metrics *metrics

	mu      sync.Mutex
	timers  map[string]*pendingSync // studies awaiting a debounced sync
	closed  bool
	syncWG  sync.WaitGroup
	baseCtx context.Context
	cancel  context.CancelFunc
}

// New returns a Service. Call Close to flush pending ImagingStudy syncs.
func New(cfg Config) (*Service, error) {
	if cfg.Engine == nil || cfg.Blobs == nil {
		return nil, errors.New("dicom: Config needs Engine and Blobs")
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
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("dicom: metrics: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{cfg: cfg, log: cfg.Logger, eng: cfg.Engine, db: dicomdb.New(cfg.Engine.Store()), metrics: m, timers: map[string]*pendingSync{}, baseCtx: ctx, cancel: cancel}, nil
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
	in, err := s.ingest(ctx, r, opts)
	s.metrics.ingested(opts, in, err)
	return in, err
}

// ingest is Ingest without its counters.
func (s *Service) ingest(ctx context.Context, r io.Reader, opts IngestOptions) (*Instance, error) {
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
	in := &meta.Instance
	if err := checkAttrs(meta, opts); err != nil {
		var ie *IngestError
		if errors.As(err, &ie) {
			ie.SOPClassUID, ie.SOPInstanceUID = in.SOPClass, in.SOPUID
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
		in.PixelOffset = h.Pixels.Offset
		in.PixelLength = h.Pixels.Length
	}
	in.Size = cw.n
	in.BlobKey = key
	if dh != nil {
		in.Digest = dh.sum()
	}
	in.SourceAE = opts.SourceAE
	if err := w.Commit(); err != nil {
		committed = true // Commit cleans up after itself
		return nil, &IngestError{Reason: storageReason(err), Err: err}
	}
	committed = true
	saved, err := s.db.SaveInstance(ctx, meta, replacePolicy(opts.Overwrite))
	if err != nil {
		// Nothing may be half-stored: the file goes with the metadata.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if derr := s.cfg.Blobs.delete(dctx, key); derr != nil {
			s.log.Error("dicom: removing blob after failed metadata write", "key", key, "err", derr)
		}
		ie := &IngestError{Reason: ReasonProcessingFailure, Err: err, SOPClassUID: in.SOPClass, SOPInstanceUID: in.SOPUID}
		if errors.Is(err, dicomdb.ErrOverwriteRefused) {
			ie.Reason = ReasonDuplicateSOP
		}
		return nil, ie
	}
	if old := saved.ReplacedBlobKey; old != "" && old != key {
		if err := s.cfg.Blobs.delete(context.WithoutCancel(ctx), old); err != nil {
			s.log.Warn("dicom: removing replaced blob", "key", old, "err", err)
		}
	}
	if !opts.NoSync {
		s.scheduleSync(meta.Study.UID)
		if saved.MovedFromStudyUID != "" {
			s.scheduleSync(saved.MovedFromStudyUID)
		}
	}
	return &Instance{
		StudyUID: meta.Study.UID, SeriesUID: meta.Series.UID, SOPInstanceUID: in.SOPUID,
		SOPClassUID: in.SOPClass, TransferSyntax: in.TransferSyntax, Size: in.Size,
		Replaced: saved.ReplacedBlobKey != "", MovedFromStudyUID: saved.MovedFromStudyUID,
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

// parseAttrs reads the indexed attributes of an instance from its header.
func parseAttrs(h *Header) *dicomdb.Record {
	d := h.Dataset
	intp := func(t uint32) *int {
		if v, ok := d.Int(t); ok {
			return &v
		}
		return nil
	}
	r := &dicomdb.Record{
		Study: dicomdb.Study{
			UID:       d.String(tagStudyInstanceUID),
			PatientID: d.String(tagPatientID), Issuer: d.String(tagIssuerOfPatientID),
			PatientName: d.String(tagPatientName), BirthDate: d.String(tagPatientBirthDate), Sex: d.String(tagPatientSex),
			Date: d.String(tagStudyDate), Time: d.String(tagStudyTime), Accession: d.String(tagAccessionNumber),
			StudyID: d.String(tagStudyID), Description: d.String(tagStudyDescription), Referring: d.String(tagReferringPhysician),
			TZOffset: d.String(tagTimezoneOffset),
		},
		Series: dicomdb.Series{
			UID:      d.String(tagSeriesInstanceUID),
			Modality: d.String(tagModality), Description: d.String(tagSeriesDescription),
			BodyPart: d.String(tagBodyPartExamined), Laterality: d.String(tagLaterality),
			Number: intp(tagSeriesNumber),
		},
		Instance: dicomdb.Instance{
			SOPUID: d.String(tagSOPInstanceUID), SOPClass: d.String(tagSOPClassUID),
			TransferSyntax: h.TransferSyntax,
			Number:         intp(tagInstanceNumber),
			Rows:           intp(tagRows), Columns: intp(tagColumns), Frames: intp(tagNumberOfFrames),
			PixelOffset: -1, PixelLength: -1,
		},
	}
	if r.Instance.SOPUID == "" {
		r.Instance.SOPUID = h.Meta.String(tagMediaSOPInstance)
	}
	if r.Instance.SOPClass == "" {
		r.Instance.SOPClass = h.Meta.String(tagMediaSOPClass)
	}
	return r
}

// checkAttrs enforces what the tables and ImagingStudy need.
func checkAttrs(a *dicomdb.Record, opts IngestOptions) error {
	for _, f := range []struct{ name, v string }{
		{"SOPInstanceUID", a.Instance.SOPUID}, {"StudyInstanceUID", a.Study.UID},
		{"SeriesInstanceUID", a.Series.UID}, {"SOPClassUID", a.Instance.SOPClass},
	} {
		if f.v == "" {
			return reject(ReasonDataSetMismatch, "dicom: the dataset has no %s", f.name)
		}
		if !validUID(f.v) {
			return reject(ReasonDataSetMismatch, "dicom: %s %q is not a valid UID", f.name, f.v)
		}
	}
	if opts.StudyUID != "" && a.Study.UID != opts.StudyUID {
		return reject(ReasonDataSetMismatch, "dicom: instance belongs to study %s, not %s", a.Study.UID, opts.StudyUID)
	}
	if opts.SOPInstanceUID != "" && a.Instance.SOPUID != opts.SOPInstanceUID {
		return reject(ReasonDataSetMismatch, "dicom: the dataset's SOP Instance UID %s differs from %s", a.Instance.SOPUID, opts.SOPInstanceUID)
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

// replacePolicy is an IngestOptions.Overwrite as the metadata store
// applies it: "" replaces always, and a policy it does not know refuses.
func replacePolicy(o Overwrite) dicomdb.Replace {
	switch o {
	case "", OverwriteAny:
		return dicomdb.ReplaceAlways
	case OverwriteSameAE:
		return dicomdb.ReplaceSameSource
	}
	return dicomdb.ReplaceNever
}

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
