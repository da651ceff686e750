package dicom

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"strings"

	"github.com/emberfhir/ember/dicom/dimse"
)

var _ dimse.Handler = (*Service)(nil)

// CStore stores one instance received over DIMSE through the same ingest
// path as STOW-RS, with a file meta group built from the command and the
// presentation context. It returns success only after the file is synced
// and its metadata committed. The calling AE is recorded as the instance's
// source, and replacing an instance with other data follows
// Config.Overwrite (refused: Duplicate SOP Instance, 0x0111).
func (s *Service) CStore(ctx context.Context, req *dimse.StoreRequest) (uint16, error) {
	if !validUID(req.SOPInstanceUID) || !validUID(req.SOPClassUID) || req.TransferSyntaxUID == "" {
		_, _ = io.Copy(io.Discard, req.Dataset)
		return dimse.StatusDataSetMismatch, errors.New("dicom: C-STORE without valid affected SOP class/instance UIDs")
	}
	meta := FileMeta(req.SOPClassUID, req.SOPInstanceUID, req.TransferSyntaxUID, req.CallingAE)
	_, err := s.Ingest(ctx, io.MultiReader(bytes.NewReader(meta), req.Dataset), IngestOptions{
		SOPInstanceUID: req.SOPInstanceUID, SourceAE: strings.TrimSpace(req.CallingAE), Overwrite: s.cfg.Overwrite,
	})
	if err != nil {
		var ie *IngestError
		if errors.As(err, &ie) {
			switch ie.Reason {
			case ReasonOutOfResources:
				return dimse.StatusOutOfResources, err
			case ReasonDataSetMismatch:
				return dimse.StatusDataSetMismatch, err
			case ReasonCannotUnderstand:
				return dimse.StatusCannotUnderstand, err
			case ReasonDuplicateSOP:
				return dimse.StatusDuplicateSOPInstance, err
			}
		}
		return dimse.StatusProcessingFailure, err
	}
	return dimse.StatusSuccess, nil
}

// CFind answers a C-FIND at STUDY, SERIES or IMAGE level (Study Root; a
// PATIENT level query is answered per study) with QIDO-RS's matching.
func (s *Service) CFind(ctx context.Context, req *dimse.FindRequest, emit func(dimse.FindMatch) error) (uint16, error) {
	q := &Query{Match: map[uint32]string{}, FuzzyPN: false}
	switch strings.ToUpper(strings.TrimSpace(req.Level)) {
	case "STUDY", "PATIENT":
		q.Level = LevelStudy
	case "SERIES":
		q.Level = LevelSeries
	case "IMAGE":
		q.Level = LevelInstance
	default:
		return dimse.StatusIdentifierMismatch, errors.New("dicom: C-FIND: unknown QueryRetrieveLevel " + strconv.Quote(req.Level))
	}
	for t, v := range req.Keys {
		q.Match[t] = v
	}
	err := s.Run(ctx, q, func(r *Result) error {
		m := dimse.FindMatch{0x00080052: strings.ToUpper(strings.TrimSpace(req.Level))}
		for _, v := range r.Values {
			if _, asked := req.Keys[v.Tag]; asked || v.Tag == 0x0020000D || v.Tag == 0x0020000E || v.Tag == 0x00080018 {
				m[v.Tag] = v.Value
			}
		}
		// Keys Ember cannot match come back empty, as PS3.4 C.4.1.1.3 asks.
		for t := range req.Keys {
			if _, ok := m[t]; !ok {
				m[t] = ""
			}
		}
		return emit(m)
	})
	if err != nil {
		if errors.Is(err, ErrBadQuery) {
			return dimse.StatusIdentifierMismatch, err
		}
		if ctx.Err() != nil {
			return dimse.StatusCancel, err
		}
		return dimse.StatusFindUnableToProcess, err
	}
	return dimse.StatusSuccess, nil
}
