package dimse

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// PDU types (PS3.8 §9.3).
const (
	pduAssociateRQ byte = 0x01
	pduAssociateAC byte = 0x02
	pduAssociateRJ byte = 0x03
	pduPData       byte = 0x04
	pduReleaseRQ   byte = 0x05
	pduReleaseRP   byte = 0x06
	pduAbort       byte = 0x07
)

// Item types inside A-ASSOCIATE-RQ/AC.
const (
	itemAppContext    byte = 0x10
	itemPresContextRQ byte = 0x20
	itemPresContextAC byte = 0x21
	itemAbstractSyn   byte = 0x30
	itemTransferSyn   byte = 0x40
	itemUserInfo      byte = 0x50
	itemMaxLength     byte = 0x51
	itemImplClassUID  byte = 0x52
	itemImplVersion   byte = 0x55
)

// A-ABORT reasons when the source is the service provider (PS3.8 §9.3.8).
const (
	abortNotSpecified     byte = 0
	abortUnrecognizedPDU  byte = 1
	abortUnexpectedPDU    byte = 2
	abortUnrecognizedParm byte = 4
	abortUnexpectedParm   byte = 5
	abortInvalidParm      byte = 6
)

// A-ASSOCIATE-RJ result/source/reason values (PS3.8 §9.3.4).
const (
	rjPermanent byte = 1
	rjTransient byte = 2

	rjSourceUser     byte = 1 // service-user
	rjSourceACSE     byte = 2 // service-provider (ACSE)
	rjSourceProvider byte = 3 // service-provider (presentation)

	rjUserNoReason         byte = 1
	rjUserAppContext       byte = 2
	rjUserCallingAE        byte = 3
	rjUserCalledAE         byte = 7
	rjACSEProtocolVersion  byte = 2
	rjProviderLimitReached byte = 2
)

// Presentation context results in A-ASSOCIATE-AC (PS3.8 §9.3.3.2).
const (
	pcAccept              byte = 0
	pcProviderReject      byte = 2
	pcAbstractUnsupported byte = 3
	pcTransferUnsupported byte = 4
)

const (
	appContextDICOM = "1.2.840.10008.3.1.1.1"
	// implClassUID identifies Ember's DICOM implementation (a UUID-derived
	// 2.25 UID, so no registered root is needed).
	implClassUID = "2.25.196826301438245631207918376352471630287"
	implVersion  = "EMBER"
)

// protoError is a PS3.8 violation by the peer; the association is aborted
// with reason.
type protoError struct {
	reason byte
	msg    string
}

func (e *protoError) Error() string { return "dicom upper layer: " + e.msg }

func protoErrf(reason byte, format string, args ...any) error {
	return &protoError{reason: reason, msg: fmt.Sprintf(format, args...)}
}

// pcProposal is one presentation context of an A-ASSOCIATE-RQ.
type pcProposal struct {
	id       byte
	abstract string
	ts       []string
}

// assocRQ is a parsed A-ASSOCIATE-RQ.
type assocRQ struct {
	protocolVersion     uint16
	calledAE, callingAE string
	appContext          string
	contexts            []pcProposal
	maxPDU              uint32 // peer's maximum receive PDU length, 0 = unlimited
	implClassUID        string
	implVersion         string
}

// parseAssociateRQ parses the variable part of an A-ASSOCIATE-RQ PDU (the
// bytes after the 6-byte PDU header).
func parseAssociateRQ(b []byte) (*assocRQ, error) {
	if len(b) < 68 {
		return nil, protoErrf(abortInvalidParm, "A-ASSOCIATE-RQ too short (%d bytes)", len(b))
	}
	rq := &assocRQ{
		protocolVersion: binary.BigEndian.Uint16(b[0:2]),
		calledAE:        aeString(b[4:20]),
		callingAE:       aeString(b[20:36]),
	}
	var seen [256]bool // presentation context ids
	err := forEachItem(b[68:], func(typ byte, v []byte) error {
		switch typ {
		case itemAppContext:
			rq.appContext = uidString(v)
		case itemPresContextRQ:
			pc, err := parsePresContext(v)
			if err != nil {
				return err
			}
			// Context ids must be unique (PS3.8 9.3.2.2): a second one
			// could not be told apart in P-DATA.
			if seen[pc.id] {
				return protoErrf(abortInvalidParm, "presentation context id %d proposed twice", pc.id)
			}
			seen[pc.id] = true
			rq.contexts = append(rq.contexts, pc)
		case itemUserInfo:
			return forEachItem(v, func(typ byte, v []byte) error {
				switch typ {
				case itemMaxLength:
					if len(v) != 4 {
						return protoErrf(abortInvalidParm, "maximum length item of %d bytes", len(v))
					}
					rq.maxPDU = binary.BigEndian.Uint32(v)
				case itemImplClassUID:
					rq.implClassUID = uidString(v)
				case itemImplVersion:
					rq.implVersion = strings.TrimSpace(string(v))
				}
				// Other user-information sub-items (async window, role
				// selection, extended negotiation, identity) are optional;
				// leaving them out of the AC means "not supported" or default.
				return nil
			})
		default:
			return protoErrf(abortUnrecognizedParm, "unknown item type 0x%02x in A-ASSOCIATE-RQ", typ)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rq, nil
}

func parsePresContext(b []byte) (pcProposal, error) {
	if len(b) < 4 {
		return pcProposal{}, protoErrf(abortInvalidParm, "presentation context item too short")
	}
	pc := pcProposal{id: b[0]}
	err := forEachItem(b[4:], func(typ byte, v []byte) error {
		switch typ {
		case itemAbstractSyn:
			pc.abstract = uidString(v)
		case itemTransferSyn:
			pc.ts = append(pc.ts, uidString(v))
		default:
			return protoErrf(abortUnrecognizedParm, "unknown sub-item 0x%02x in presentation context", typ)
		}
		return nil
	})
	return pc, err
}

// forEachItem walks items with a 1-byte type, 1 reserved byte and a 2-byte
// big-endian length.
func forEachItem(b []byte, fn func(typ byte, v []byte) error) error {
	for len(b) > 0 {
		if len(b) < 4 {
			return protoErrf(abortInvalidParm, "truncated item header")
		}
		n := int(binary.BigEndian.Uint16(b[2:4]))
		if 4+n > len(b) {
			return protoErrf(abortInvalidParm, "item 0x%02x length %d exceeds PDU", b[0], n)
		}
		if err := fn(b[0], b[4:4+n]); err != nil {
			return err
		}
		b = b[4+n:]
	}
	return nil
}

func aeString(b []byte) string { return strings.TrimSpace(strings.TrimRight(string(b), "\x00")) }

func uidString(b []byte) string { return strings.TrimRight(string(b), "\x00 ") }

// pcResult is the SCP's answer for one proposed presentation context.
type pcResult struct {
	id     byte
	result byte
	ts     string
}

// appendPDUHeader appends a PDU header; the length is patched by finishPDU.
func appendPDUHeader(b []byte, typ byte) []byte {
	return append(b, typ, 0, 0, 0, 0, 0)
}

// finishPDU writes the length of the PDU that starts at off.
func finishPDU(b []byte, off int) []byte {
	binary.BigEndian.PutUint32(b[off+2:off+6], uint32(len(b)-off-6))
	return b
}

func appendItem(b []byte, typ byte, v string) []byte {
	b = append(b, typ, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

func appendAE(b []byte, ae string) []byte {
	var f [16]byte
	for i := range f {
		f[i] = ' '
	}
	copy(f[:], ae)
	return append(b, f[:]...)
}

// appendAssociateAC encodes an A-ASSOCIATE-AC PDU.
func appendAssociateAC(b []byte, rq *assocRQ, results []pcResult, maxPDU uint32) []byte {
	off := len(b)
	b = appendPDUHeader(b, pduAssociateAC)
	b = append(b, 0, 1, 0, 0)
	// Called/calling AE fields are reserved in the AC but peers expect the
	// RQ values echoed.
	b = appendAE(b, rq.calledAE)
	b = appendAE(b, rq.callingAE)
	b = append(b, make([]byte, 32)...)
	b = appendItem(b, itemAppContext, appContextDICOM)
	for _, r := range results {
		b = append(b, itemPresContextAC, 0)
		b = binary.BigEndian.AppendUint16(b, uint16(4+4+len(r.ts)))
		b = append(b, r.id, 0, r.result, 0)
		b = appendItem(b, itemTransferSyn, r.ts)
	}
	ui := 8 + 4 + len(implClassUID) + 4 + len(implVersion)
	b = append(b, itemUserInfo, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(ui))
	b = append(b, itemMaxLength, 0, 0, 4)
	b = binary.BigEndian.AppendUint32(b, maxPDU)
	b = appendItem(b, itemImplClassUID, implClassUID)
	b = appendItem(b, itemImplVersion, implVersion)
	return finishPDU(b, off)
}

func appendAssociateRJ(b []byte, result, source, reason byte) []byte {
	return append(b, pduAssociateRJ, 0, 0, 0, 0, 4, 0, result, source, reason)
}

func appendAbort(b []byte, source, reason byte) []byte {
	return append(b, pduAbort, 0, 0, 0, 0, 4, 0, 0, source, reason)
}

func appendReleaseRP(b []byte) []byte {
	return append(b, pduReleaseRP, 0, 0, 0, 0, 4, 0, 0, 0, 0)
}
