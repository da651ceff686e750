package dicom

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/inference/imaging"
)

// InferenceStudies is the DICOM side of inference (it implements
// inference.Studies): a study's instances as the metadata tables hold them,
// one instance's stored bytes, and an ImagingStudy's Study Instance UID.
type InferenceStudies struct{ s *Service }

// InferenceStudies returns the Service's studies for inference.
func (s *Service) InferenceStudies() InferenceStudies { return InferenceStudies{s: s} }

// Instances lists the study's stored instances with what a model's
// instance selection reads (series Modality and BodyPartExamined,
// InstanceNumber, Rows and Columns), from the metadata tables: ingest
// already records each of them, so no file is opened.
func (is InferenceStudies) Instances(ctx context.Context, studyUID string) ([]imaging.InstanceMeta, error) {
	rows, err := is.s.db.Selectables(ctx, studyUID)
	if err != nil {
		return nil, fmt.Errorf("dicom: instances of %s: %w", studyUID, err)
	}
	out := make([]imaging.InstanceMeta, len(rows))
	for i, r := range rows {
		out[i] = imaging.InstanceMeta{
			SOPInstanceUID: r.SOPUID, SeriesInstanceUID: r.SeriesUID,
			Modality: r.Modality, BodyPart: r.BodyPart, InstanceNumber: r.Number,
			Rows: r.Rows, Columns: r.Columns,
		}
	}
	return out, nil
}

// Open opens one stored instance's Part-10 bytes for random access: the
// file itself for a file:// store (its reads are the page cache's), else
// ranged reads of the blob, one per ReadAt. Nothing is read up front, so a
// large multi-frame instance costs what the reader reads of it.
func (is InferenceStudies) Open(ctx context.Context, sopInstanceUID string) (io.ReaderAt, int64, func() error, error) {
	st, err := is.s.db.Instance(ctx, sopInstanceUID)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("dicom: open instance %s: %w", sopInstanceUID, err)
	}
	b := is.s.cfg.Blobs
	if b.dir != "" {
		f, err := os.Open(filepath.Join(b.dir, filepath.FromSlash(st.BlobKey)))
		if err != nil {
			return nil, 0, nil, fmt.Errorf("dicom: open instance %s: %w", sopInstanceUID, err)
		}
		return f, st.Size, f.Close, nil
	}
	return &blobReaderAt{ctx: ctx, b: b, key: st.BlobKey, size: st.Size}, st.Size, func() error { return nil }, nil
}

// blobReaderAt reads a blob by ranges.
type blobReaderAt struct {
	ctx  context.Context
	b    *Blobs
	key  string
	size int64
}

func (r *blobReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= r.size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), r.size-off)
	rc, err := r.b.Open(r.ctx, r.key, off, n)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	got, err := io.ReadFull(rc, p[:n])
	if err == nil && got < len(p) {
		err = io.EOF
	}
	return got, err
}

// StudyOf returns the Study Instance UID of ImagingStudy imagingStudyID:
// its urn:dicom:uid identifier (every ImagingStudy sync writes one, and a
// hand-written ImagingStudy may carry one too).
func (is InferenceStudies) StudyOf(ctx context.Context, imagingStudyID string) (string, error) {
	v, err := is.s.eng.Read(ctx, engine.System, "ImagingStudy", imagingStudyID)
	if err != nil {
		return "", err
	}
	uid, ok := StudyUIDOf(v.Content)
	if !ok {
		return "", fmt.Errorf("dicom: ImagingStudy/%s has no %s identifier: %w", imagingStudyID, studyUIDSystem, ErrNoStudyUID)
	}
	return uid, nil
}

// ErrNoStudyUID: an ImagingStudy has no Study Instance UID identifier, so
// no stored instances can belong to it.
var ErrNoStudyUID = errors.New("no Study Instance UID")

// StudyUIDOf reads the Study Instance UID from an ImagingStudy's JSON.
func StudyUIDOf(content []byte) (string, bool) {
	var is struct {
		Identifier []struct{ System, Value string } `json:"identifier"`
	}
	if err := json.Unmarshal(content, &is); err != nil {
		return "", false
	}
	for _, id := range is.Identifier {
		if id.System == studyUIDSystem {
			return strings.TrimPrefix(id.Value, "urn:oid:"), true
		}
	}
	return "", false
}
