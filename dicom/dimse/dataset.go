package dimse

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Transfer syntaxes the provider accepts (data is stored as received).
const (
	tsImplicitLE = "1.2.840.10008.1.2"
	tsExplicitLE = "1.2.840.10008.1.2.1"
	tsExplicitBE = "1.2.840.10008.1.2.2"
	tsDeflated   = "1.2.840.10008.1.2.1.99"
)

const (
	tagQueryRetrieveLevel   uint32 = 0x00080052
	tagSpecificCharacterSet uint32 = 0x00080005
)

func isASCII(m FindMatch) bool {
	for _, v := range m {
		for i := 0; i < len(v); i++ {
			if v[i] >= 0x80 {
				return false
			}
		}
	}
	return true
}

// queryDict gives the VR of the attributes used in C-FIND identifiers
// (PS3.4 Annex C key tables plus common return keys). Read-only.
var queryDict = map[uint32]string{
	0x00080005: "CS", // Specific Character Set
	0x00080016: "UI", // SOP Class UID
	0x00080018: "UI", // SOP Instance UID
	0x00080020: "DA", // Study Date
	0x00080021: "DA", // Series Date
	0x00080022: "DA", // Acquisition Date
	0x00080023: "DA", // Content Date
	0x00080030: "TM", // Study Time
	0x00080031: "TM", // Series Time
	0x00080032: "TM", // Acquisition Time
	0x00080033: "TM", // Content Time
	0x00080050: "SH", // Accession Number
	0x00080052: "CS", // Query/Retrieve Level
	0x00080054: "AE", // Retrieve AE Title
	0x00080056: "CS", // Instance Availability
	0x00080060: "CS", // Modality
	0x00080061: "CS", // Modalities in Study
	0x00080062: "UI", // SOP Classes in Study
	0x00080070: "LO", // Manufacturer
	0x00080080: "LO", // Institution Name
	0x00080090: "PN", // Referring Physician's Name
	0x00080201: "SH", // Timezone Offset From UTC
	0x00081010: "SH", // Station Name
	0x00081030: "LO", // Study Description
	0x0008103E: "LO", // Series Description
	0x00081060: "PN", // Name of Physician(s) Reading Study
	0x00081190: "UR", // Retrieve URL
	0x00083002: "UI", // Available Transfer Syntax UID
	0x00181030: "LO", // Protocol Name
	0x00100010: "PN", // Patient's Name
	0x00100020: "LO", // Patient ID
	0x00100021: "LO", // Issuer of Patient ID
	0x00100030: "DA", // Patient's Birth Date
	0x00100032: "TM", // Patient's Birth Time
	0x00100040: "CS", // Patient's Sex
	0x00101010: "AS", // Patient's Age
	0x00104000: "LT", // Patient Comments
	0x00180015: "CS", // Body Part Examined
	0x0020000D: "UI", // Study Instance UID
	0x0020000E: "UI", // Series Instance UID
	0x00200010: "SH", // Study ID
	0x00200011: "IS", // Series Number
	0x00200013: "IS", // Instance Number
	0x00200052: "UI", // Frame of Reference UID
	0x00200060: "CS", // Laterality
	0x00201200: "IS", // Number of Patient Related Studies
	0x00201202: "IS", // Number of Patient Related Series
	0x00201204: "IS", // Number of Patient Related Instances
	0x00201206: "IS", // Number of Study Related Series
	0x00201208: "IS", // Number of Study Related Instances
	0x00201209: "IS", // Number of Series Related Instances
	0x00204000: "LT", // Image Comments
	0x00280008: "IS", // Number of Frames
	0x00280010: "US", // Rows
	0x00280011: "US", // Columns
	0x00280002: "US", // Samples per Pixel
	0x00280004: "CS", // Photometric Interpretation
	0x00280100: "US", // Bits Allocated
	0x00280101: "US", // Bits Stored
	0x00321060: "LO", // Requested Procedure Description
	0x00400244: "DA", // Performed Procedure Step Start Date
	0x00400245: "TM", // Performed Procedure Step Start Time
}

// longVR reports whether an explicit VR uses the 4-byte length form.
func longVR(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		return true
	}
	return false
}

const undefinedLength = 0xFFFFFFFF

// maxNesting bounds sequence recursion in identifiers.
const maxNesting = 16

// decodeIdentifier decodes a C-FIND identifier in implicit or explicit VR
// little endian into string values by tag. Sequences and binary values are
// kept as keys with an empty value.
func decodeIdentifier(b []byte, explicit bool) (map[uint32]string, error) {
	keys, _, err := decodeIdentifierVRs(b, explicit)
	return keys, err
}

// decodeIdentifierVRs also returns the VR each attribute had in the request
// ("" for implicit VR), so return keys outside the dictionary can be
// answered in kind.
func decodeIdentifierVRs(b []byte, explicit bool) (keys, vrs map[uint32]string, err error) {
	keys = make(map[uint32]string)
	vrs = make(map[uint32]string)
	for len(b) > 0 {
		tag, vr, n, hdr, err := elemHeader(b, explicit)
		if err != nil {
			return nil, nil, err
		}
		b = b[hdr:]
		if tag>>16 == 0xFFFE {
			return nil, nil, fmt.Errorf("identifier: unexpected item tag (%04x,%04x)", tag>>16, tag&0xffff)
		}
		if n == undefinedLength {
			// A sequence (or UN of undefined length, encoded implicitly).
			if b, err = skipUndefined(b, explicit && vr != "UN", 0); err != nil {
				return nil, nil, err
			}
			keys[tag], vrs[tag] = "", vr
			continue
		}
		if uint64(n) > uint64(len(b)) {
			return nil, nil, fmt.Errorf("identifier: element (%04x,%04x) length %d exceeds data", tag>>16, tag&0xffff, n)
		}
		v := b[:n]
		b = b[n:]
		if tag&0xffff == 0 { // group lengths carry no query semantics
			continue
		}
		vrs[tag] = vr
		if vr == "" {
			vr = queryDict[tag]
		}
		keys[tag] = valueString(vr, v)
	}
	return keys, vrs, nil
}

// elemHeader decodes an element header: tag, VR (explicit only, or for
// item tags none), value length and the header size.
func elemHeader(b []byte, explicit bool) (tag uint32, vr string, n uint32, hdr int, err error) {
	if len(b) < 8 {
		return 0, "", 0, 0, fmt.Errorf("identifier: truncated element header")
	}
	tag = uint32(binary.LittleEndian.Uint16(b[0:2]))<<16 | uint32(binary.LittleEndian.Uint16(b[2:4]))
	if !explicit || tag>>16 == 0xFFFE {
		return tag, "", binary.LittleEndian.Uint32(b[4:8]), 8, nil
	}
	vr = string(b[4:6])
	if longVR(vr) {
		if len(b) < 12 {
			return 0, "", 0, 0, fmt.Errorf("identifier: truncated element header")
		}
		return tag, vr, binary.LittleEndian.Uint32(b[8:12]), 12, nil
	}
	return tag, vr, uint32(binary.LittleEndian.Uint16(b[6:8])), 8, nil
}

// skipUndefined skips the items of an undefined-length sequence up to and
// including its sequence delimitation item.
func skipUndefined(b []byte, explicit bool, depth int) ([]byte, error) {
	if depth > maxNesting {
		return nil, fmt.Errorf("identifier: sequences nested too deeply")
	}
	for {
		tag, _, n, hdr, err := elemHeader(b, false)
		if err != nil {
			return nil, err
		}
		b = b[hdr:]
		switch tag {
		case 0xFFFEE0DD: // sequence delimitation
			return b, nil
		case 0xFFFEE000: // item
			if n != undefinedLength {
				if uint64(n) > uint64(len(b)) {
					return nil, fmt.Errorf("identifier: item length %d exceeds data", n)
				}
				b = b[n:]
				continue
			}
			if b, err = skipItem(b, explicit, depth+1); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("identifier: unexpected tag (%04x,%04x) in sequence", tag>>16, tag&0xffff)
		}
	}
}

// skipItem skips the elements of an undefined-length item through its item
// delimitation.
func skipItem(b []byte, explicit bool, depth int) ([]byte, error) {
	for {
		tag, vr, n, hdr, err := elemHeader(b, explicit)
		if err != nil {
			return nil, err
		}
		b = b[hdr:]
		if tag == 0xFFFEE00D {
			return b, nil
		}
		if n == undefinedLength {
			if b, err = skipUndefined(b, explicit && vr != "UN", depth+1); err != nil {
				return nil, err
			}
			continue
		}
		if uint64(n) > uint64(len(b)) {
			return nil, fmt.Errorf("identifier: element length %d exceeds data", n)
		}
		b = b[n:]
	}
}

// valueString renders a value as the string form FindRequest.Keys uses.
func valueString(vr string, v []byte) string {
	switch vr {
	case "US", "SS", "UL", "SL", "FL", "FD":
		return binaryNumbers(vr, v)
	case "OB", "OW", "OD", "OF", "OL", "OV", "UN", "SQ", "AT", "SV", "UV":
		return ""
	case "LT", "ST", "UT":
		return strings.TrimRight(string(v), " \x00")
	}
	return strings.Trim(string(v), " \x00")
}

func binaryNumbers(vr string, v []byte) string {
	size := map[string]int{"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8}[vr]
	var sb strings.Builder
	for i := 0; i+size <= len(v); i += size {
		if i > 0 {
			sb.WriteByte('\\')
		}
		x := v[i : i+size]
		switch vr {
		case "US":
			sb.WriteString(strconv.FormatUint(uint64(binary.LittleEndian.Uint16(x)), 10))
		case "SS":
			sb.WriteString(strconv.FormatInt(int64(int16(binary.LittleEndian.Uint16(x))), 10))
		case "UL":
			sb.WriteString(strconv.FormatUint(uint64(binary.LittleEndian.Uint32(x)), 10))
		case "SL":
			sb.WriteString(strconv.FormatInt(int64(int32(binary.LittleEndian.Uint32(x))), 10))
		case "FL":
			sb.WriteString(strconv.FormatFloat(float64(math.Float32frombits(binary.LittleEndian.Uint32(x))), 'g', -1, 32))
		case "FD":
			sb.WriteString(strconv.FormatFloat(math.Float64frombits(binary.LittleEndian.Uint64(x)), 'g', -1, 64))
		}
	}
	return sb.String()
}

// appendIdentifier encodes a C-FIND response identifier. Tags absent from
// the dictionary, and values that cannot be encoded in their VR, are skipped.
// level fills in the Query/Retrieve Level when m lacks it.
func appendIdentifier(b []byte, m FindMatch, explicit bool, level string) []byte {
	return appendIdentifierFor(b, m, explicit, level, nil)
}

// appendIdentifierFor is appendIdentifier answering a request whose
// attribute VRs are reqVRs: tags outside the dictionary that the request
// carried are encoded with the request's VR (or, in implicit VR, as text).
func appendIdentifierFor(b []byte, m FindMatch, explicit bool, level string, reqVRs map[uint32]string) []byte {
	vrOf := func(t uint32) (string, bool) {
		if vr, ok := queryDict[t]; ok {
			return vr, true
		}
		vr, ok := reqVRs[t]
		if !ok || t>>16 == 0xFFFE || t&0xffff == 0 || (explicit && len(vr) != 2) {
			return "", false
		}
		return vr, true
	}
	tags := make([]uint32, 0, len(m)+1)
	for t := range m {
		if _, ok := vrOf(t); ok {
			tags = append(tags, t)
		}
	}
	_, hasLevel := m[tagQueryRetrieveLevel]
	if !hasLevel && level != "" {
		tags = append(tags, tagQueryRetrieveLevel)
	}
	// Non-ASCII values need a character set; Ember's strings are UTF-8.
	charset := ""
	if _, ok := m[tagSpecificCharacterSet]; !ok && !isASCII(m) {
		charset = "ISO_IR 192"
		tags = append(tags, tagSpecificCharacterSet)
	}
	slices.Sort(tags)
	var scratch []byte
	for _, t := range tags {
		vr, _ := vrOf(t)
		var ok bool
		v, inMatch := m[t]
		switch {
		case inMatch:
		case t == tagSpecificCharacterSet:
			v = charset
		default:
			v = level
		}
		scratch, ok = encodeValue(scratch[:0], vr, v)
		if !ok {
			continue
		}
		if !longVR(vr) && len(scratch) > 0xFFFF {
			continue
		}
		b = appendTag(b, t)
		switch {
		case !explicit:
			b = binary.LittleEndian.AppendUint32(b, uint32(len(scratch)))
		case longVR(vr):
			b = append(b, vr[0], vr[1], 0, 0)
			b = binary.LittleEndian.AppendUint32(b, uint32(len(scratch)))
		default:
			b = append(b, vr[0], vr[1])
			b = binary.LittleEndian.AppendUint16(b, uint16(len(scratch)))
		}
		b = append(b, scratch...)
	}
	return b
}

func encodeValue(b []byte, vr, s string) ([]byte, bool) {
	switch vr {
	case "SQ", "OB", "OW", "OD", "OF", "OL", "OV", "UN", "AT", "SV", "UV":
		// Only an empty (return key) value can be given for these.
		return b, s == ""
	case "US", "SS", "UL", "SL", "FL", "FD":
		if s == "" {
			return b, true
		}
		for p := range strings.SplitSeq(s, `\`) {
			p = strings.TrimSpace(p)
			switch vr {
			case "US":
				x, err := strconv.ParseUint(p, 10, 16)
				if err != nil {
					return b, false
				}
				b = binary.LittleEndian.AppendUint16(b, uint16(x))
			case "SS":
				x, err := strconv.ParseInt(p, 10, 16)
				if err != nil {
					return b, false
				}
				b = binary.LittleEndian.AppendUint16(b, uint16(x))
			case "UL":
				x, err := strconv.ParseUint(p, 10, 32)
				if err != nil {
					return b, false
				}
				b = binary.LittleEndian.AppendUint32(b, uint32(x))
			case "SL":
				x, err := strconv.ParseInt(p, 10, 32)
				if err != nil {
					return b, false
				}
				b = binary.LittleEndian.AppendUint32(b, uint32(x))
			case "FL":
				x, err := strconv.ParseFloat(p, 32)
				if err != nil {
					return b, false
				}
				b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(x)))
			case "FD":
				x, err := strconv.ParseFloat(p, 64)
				if err != nil {
					return b, false
				}
				b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
			}
		}
		return b, true
	case "UI":
		b = append(b, s...)
		if len(s)&1 == 1 {
			b = append(b, 0)
		}
		return b, true
	}
	b = append(b, s...)
	if len(s)&1 == 1 {
		b = append(b, ' ')
	}
	return b, true
}
