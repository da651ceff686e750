package dimse

import (
	"context"
	"io"
)

// DIMSE status codes Ember returns (PS3.7 Annex C).
const (
	StatusSuccess               uint16 = 0x0000
	StatusPending               uint16 = 0xFF00
	StatusCancel                uint16 = 0xFE00
	StatusOutOfResources        uint16 = 0xA700 // C-STORE: refused, out of resources
	StatusDataSetMismatch       uint16 = 0xA900 // C-STORE: data set does not match SOP class
	StatusCannotUnderstand      uint16 = 0xC000 // C-STORE: error, cannot understand
	StatusFindUnableToProcess   uint16 = 0xC001 // C-FIND: unable to process
	StatusIdentifierMismatch    uint16 = 0xA900 // C-FIND: identifier does not match SOP class
	StatusSOPClassNotSupported  uint16 = 0x0122
	StatusProcessingFailure     uint16 = 0x0110
	StatusDuplicateSOPInstance  uint16 = 0x0111
	StatusNotAuthorized         uint16 = 0x0124
	StatusUnrecognizedOperation uint16 = 0x0211
)

// StoreRequest is one C-STORE received on an association.
type StoreRequest struct {
	CallingAE, CalledAE string
	// RemoteAddr is the peer's network address (host:port).
	RemoteAddr string
	// From the command set (Affected SOP Class/Instance UID).
	SOPClassUID, SOPInstanceUID string
	// TransferSyntaxUID is the presentation context's transfer syntax: the
	// encoding of Dataset.
	TransferSyntaxUID string
	// Dataset streams the data set exactly as received (PDV fragments
	// concatenated, no file meta group). It must be read to EOF or the
	// handler must return an error; it is invalid after CStore returns.
	Dataset io.Reader
}

// FindRequest is one C-FIND (Study Root or Patient Root query/retrieve
// information model) received on an association.
type FindRequest struct {
	CallingAE, CalledAE string
	// RemoteAddr is the peer's network address (host:port).
	RemoteAddr  string
	SOPClassUID string
	// Level is the QueryRetrieveLevel (0008,0052): "PATIENT", "STUDY",
	// "SERIES" or "IMAGE".
	Level string
	// Keys holds every attribute of the identifier other than
	// QueryRetrieveLevel, by tag (group<<16 | element), with its value as a
	// string (multi-valued elements joined by `\`). An empty value is a
	// return key with no matching constraint.
	Keys map[uint32]string
}

// FindMatch is one C-FIND response identifier: attribute values by tag,
// strings as above. The provider encodes them with the standard dictionary's
// VR in the presentation context's transfer syntax; tags absent from the
// dictionary are encoded with the VR the request gave them if it carried
// them, otherwise skipped. A UTF-8 match without (0008,0005) gets
// "ISO_IR 192".
type FindMatch map[uint32]string

// Handler is what the service class provider calls for stored and queried
// data. Implementations must be safe for concurrent use across associations.
type Handler interface {
	// CStore stores one instance and returns the DIMSE status to send. It
	// must return only once the instance is durably stored. A non-nil error
	// is logged and answered with StatusProcessingFailure unless status is
	// already a failure code.
	CStore(ctx context.Context, req *StoreRequest) (status uint16, err error)
	// CFind calls emit for each match (the provider sends a Pending response
	// per match) and returns the final status.
	CFind(ctx context.Context, req *FindRequest, emit func(FindMatch) error) (status uint16, err error)
}
