package imaging

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Errors Decode and Tensor wrap, so a job runner can give a failed Task a
// coded reason with errors.Is. None of them is ever a panic.
var (
	// ErrNotDICOM: no Part-10 preamble and "DICM", or no readable file meta group.
	ErrNotDICOM = errors.New("imaging: not a DICOM Part-10 file")
	// ErrNoPixelData: the instance has no (7FE0,0010) Pixel Data (a report, a key object…).
	ErrNoPixelData = errors.New("imaging: no pixel data")
	// ErrNoFrame: the manifest's frame rule names a frame the instance does not have.
	ErrNoFrame = errors.New("imaging: no such frame")
	// ErrUnsupportedTransferSyntax: the pixel data's encoding is one Ember cannot decode
	// (JPEG-LS, JPEG 2000, video, deflate…); the message names the syntax.
	ErrUnsupportedTransferSyntax = errors.New("imaging: unsupported transfer syntax")
	// ErrUnsupportedPixels: a pixel layout Ember does not convert (palette colour,
	// 1- or 32-bit samples, float pixel data…); the message says which.
	ErrUnsupportedPixels = errors.New("imaging: unsupported pixel data")
	// ErrCorrupt: the data set or the pixel data is malformed or truncated.
	ErrCorrupt = errors.New("imaging: corrupt DICOM data")
)

// Transfer syntax UIDs.
const (
	tsImplicitLE      = "1.2.840.10008.1.2"
	tsExplicitLE      = "1.2.840.10008.1.2.1"
	tsDeflated        = "1.2.840.10008.1.2.1.99"
	tsExplicitBE      = "1.2.840.10008.1.2.2"
	tsRLE             = "1.2.840.10008.1.2.5"
	tsJPEGBaseline    = "1.2.840.10008.1.2.4.50"
	tsJPEGExtended    = "1.2.840.10008.1.2.4.51"
	tsJPEGLossless    = "1.2.840.10008.1.2.4.57"
	tsJPEGLosslessSV1 = "1.2.840.10008.1.2.4.70"
)

// tsNames names the syntaxes error messages mention.
var tsNames = map[string]string{
	tsImplicitLE:              "Implicit VR Little Endian",
	tsExplicitLE:              "Explicit VR Little Endian",
	tsDeflated:                "Deflated Explicit VR Little Endian",
	tsExplicitBE:              "Explicit VR Big Endian",
	tsRLE:                     "RLE Lossless",
	tsJPEGBaseline:            "JPEG Baseline (Process 1)",
	tsJPEGExtended:            "JPEG Extended (Process 2 & 4)",
	tsJPEGLossless:            "JPEG Lossless (Process 14)",
	tsJPEGLosslessSV1:         "JPEG Lossless SV1 (Process 14, Selection Value 1)",
	"1.2.840.10008.1.2.4.80":  "JPEG-LS Lossless",
	"1.2.840.10008.1.2.4.81":  "JPEG-LS Near-Lossless",
	"1.2.840.10008.1.2.4.90":  "JPEG 2000 Lossless",
	"1.2.840.10008.1.2.4.91":  "JPEG 2000",
	"1.2.840.10008.1.2.4.92":  "JPEG 2000 Part 2 Multi-component Lossless",
	"1.2.840.10008.1.2.4.93":  "JPEG 2000 Part 2 Multi-component",
	"1.2.840.10008.1.2.4.201": "HTJ2K Lossless",
	"1.2.840.10008.1.2.4.202": "HTJ2K Lossless RPCL",
	"1.2.840.10008.1.2.4.203": "HTJ2K",
	"1.2.840.10008.1.2.4.100": "MPEG2 Main Profile",
	"1.2.840.10008.1.2.4.102": "MPEG-4 AVC/H.264",
	"1.2.840.10008.1.2.4.110": "JPEG XL Lossless",
	"1.2.840.10008.1.2.4.112": "JPEG XL",
	"1.2.840.10008.1.2.1.98":  "Encapsulated Uncompressed Explicit VR Little Endian",
	"1.2.840.10008.1.2.4.53":  "JPEG Spectral Selection (retired)",
	"1.2.840.10008.1.2.4.55":  "JPEG Full Progression (retired)",
}

// tsName is "name (uid)" for error messages.
func tsName(uid string) string {
	if n := tsNames[uid]; n != "" {
		return n + " (" + uid + ")"
	}
	return uid
}

func unsupportedTS(uid string) error {
	return fmt.Errorf("%w: %s", ErrUnsupportedTransferSyntax, tsName(uid))
}

// Tags read.
const (
	tagTransferSyntax      = 0x00020010
	tagSOPInstanceUID      = 0x00080018
	tagModality            = 0x00080060
	tagBodyPartExamined    = 0x00180015
	tagStudyInstanceUID    = 0x0020000D
	tagSeriesInstanceUID   = 0x0020000E
	tagSamplesPerPixel     = 0x00280002
	tagPhotometric         = 0x00280004
	tagPlanarConfiguration = 0x00280006
	tagNumberOfFrames      = 0x00280008
	tagRows                = 0x00280010
	tagColumns             = 0x00280011
	tagBitsAllocated       = 0x00280100
	tagBitsStored          = 0x00280101
	tagHighBit             = 0x00280102
	tagPixelRepresentation = 0x00280103
	tagWindowCenter        = 0x00281050
	tagWindowWidth         = 0x00281051
	tagRescaleIntercept    = 0x00281052
	tagRescaleSlope        = 0x00281053
	tagFloatPixelData      = 0x7FE00008
	tagDoublePixelData     = 0x7FE00009
	tagPixelData           = 0x7FE00010
	tagItem                = 0xFFFEE000
	tagItemDelim           = 0xFFFEE00D
	tagSeqDelim            = 0xFFFEE0DD
)

const (
	undefinedLength = 0xFFFFFFFF
	maxDepth        = 32      // nesting of skipped sequences
	maxKept         = 4 << 10 // bytes kept of one wanted value
)

// header is what Decode needs from a Part-10 file: the attributes of the
// image pixel module and the findings, and where the pixel value starts.
type header struct {
	ts                          string
	bigEndian                   bool
	sopUID, studyUID, seriesUID string
	modality, bodyPart          string
	photometric                 string
	rows, cols, spp             int
	bitsAlloc, bitsStored       int
	highBit, pixRep, planar     int
	frames                      int
	slope, intercept            float64
	hasSlope, hasIntercept      bool
	winCenter, winWidth         float64
	winCenterOK, winWidthOK     bool
	pixelOff                    int64 // of the Pixel Data value
	pixelLen                    int64 // -1: undefined (encapsulated)
}

// headerReader reads elements through a buffer, counting bytes so offsets
// refer to the file.
type headerReader struct {
	r         *bufio.Reader
	off       int64
	bigEndian bool
	implicit  bool
	depth     int
	b         [12]byte
}

func (p *headerReader) read(b []byte) error {
	n, err := io.ReadFull(p.r, b)
	p.off += int64(n)
	if err != nil {
		return fmt.Errorf("%w: truncated at byte %d", ErrCorrupt, p.off)
	}
	return nil
}

func (p *headerReader) skip(n int64) error {
	for n > 0 {
		step := min(n, 1<<30)
		m, err := p.r.Discard(int(step))
		p.off += int64(m)
		n -= int64(m)
		if err != nil {
			return fmt.Errorf("%w: truncated at byte %d", ErrCorrupt, p.off)
		}
	}
	return nil
}

func (p *headerReader) u16(b []byte) uint16 {
	if p.bigEndian {
		return binary.BigEndian.Uint16(b)
	}
	return binary.LittleEndian.Uint16(b)
}

func (p *headerReader) u32(b []byte) uint32 {
	if p.bigEndian {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}

// element reads one element header. Items and delimiters have no VR; in
// implicit VR the VR is "" (the wanted tags' types are known by tag).
func (p *headerReader) element() (tag uint32, vr string, length uint32, err error) {
	b := p.b[:8]
	if err = p.read(b); err != nil {
		return 0, "", 0, err
	}
	tag = uint32(p.u16(b[0:2]))<<16 | uint32(p.u16(b[2:4]))
	if tag>>16 == 0xFFFE || p.implicit {
		return tag, "", p.u32(b[4:8]), nil
	}
	vr = string(b[4:6])
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		if err = p.read(p.b[8:12]); err != nil {
			return 0, "", 0, err
		}
		length = p.u32(p.b[8:12])
	default:
		if vr[0] < 'A' || vr[0] > 'Z' || vr[1] < 'A' || vr[1] > 'Z' {
			return 0, "", 0, fmt.Errorf("%w: invalid VR %q at byte %d", ErrCorrupt, vr, p.off-8)
		}
		length = uint32(p.u16(b[6:8]))
	}
	return tag, vr, length, nil
}

// skipUndefined skips the items of an undefined-length value (a sequence
// or encapsulated pixel data) up to its sequence delimiter.
func (p *headerReader) skipUndefined() error {
	if p.depth++; p.depth > maxDepth {
		return fmt.Errorf("%w: sequences nested too deeply", ErrCorrupt)
	}
	defer func() { p.depth-- }()
	for {
		tag, _, l, err := p.element()
		if err != nil {
			return err
		}
		switch {
		case tag == tagSeqDelim:
			return nil
		case tag != tagItem:
			return fmt.Errorf("%w: expected an item, got (%04X,%04X) at byte %d", ErrCorrupt, tag>>16, tag&0xFFFF, p.off-8)
		case l != undefinedLength:
			if err := p.skip(int64(l)); err != nil {
				return err
			}
		default:
			if err := p.skipItem(); err != nil {
				return err
			}
		}
	}
}

// skipItem skips the elements of an undefined-length item up to its delimiter.
func (p *headerReader) skipItem() error {
	for {
		tag, vr, l, err := p.element()
		if err != nil {
			return err
		}
		if tag == tagItemDelim {
			return nil
		}
		if err := p.skipValue(vr, l); err != nil {
			return err
		}
	}
}

// skipValue skips one element's value.
func (p *headerReader) skipValue(vr string, l uint32) error {
	if l != undefinedLength {
		return p.skip(int64(l))
	}
	if vr == "UN" {
		// An undefined-length UN is a sequence in implicit VR little
		// endian whatever the transfer syntax (PS3.5 6.2.2).
		implicit, big := p.implicit, p.bigEndian
		p.implicit, p.bigEndian = true, false
		err := p.skipUndefined()
		p.implicit, p.bigEndian = implicit, big
		return err
	}
	return p.skipUndefined()
}

// readHeader reads the file meta group and the data set up to the header
// of top-level Pixel Data.
func readHeader(r io.Reader) (*header, error) {
	p := &headerReader{r: bufio.NewReaderSize(r, 16<<10)}
	pre := make([]byte, 132)
	if err := p.read(pre); err != nil || string(pre[128:]) != "DICM" {
		return nil, ErrNotDICOM
	}
	h := &header{frames: 1, spp: 1, slope: 1, pixelLen: -1}
	for {
		b, err := p.r.Peek(2)
		if err != nil || binary.LittleEndian.Uint16(b) != 0x0002 {
			break
		}
		tag, _, l, err := p.element()
		if err != nil || l > 1<<16 {
			return nil, fmt.Errorf("%w: bad file meta group", ErrNotDICOM)
		}
		v := make([]byte, l)
		if err := p.read(v); err != nil {
			return nil, fmt.Errorf("%w: bad file meta group", ErrNotDICOM)
		}
		if tag == tagTransferSyntax {
			h.ts = trimValue(v)
		}
	}
	if h.ts == "" {
		return nil, fmt.Errorf("%w: no transfer syntax in the file meta group", ErrNotDICOM)
	}
	if h.ts == tsDeflated {
		return nil, unsupportedTS(h.ts)
	}
	p.implicit = h.ts == tsImplicitLE
	p.bigEndian = h.ts == tsExplicitBE
	h.bigEndian = p.bigEndian
	for {
		if _, err := p.r.Peek(1); err == io.EOF {
			return h, ErrNoPixelData
		}
		tag, vr, l, err := p.element()
		if err != nil {
			return h, err
		}
		switch {
		case tag == tagPixelData:
			h.pixelOff = p.off
			if l != undefinedLength {
				h.pixelLen = int64(l)
			}
			return h, nil
		case tag == tagFloatPixelData || tag == tagDoublePixelData:
			return h, fmt.Errorf("%w: float pixel data", ErrUnsupportedPixels)
		case tag > tagPixelData:
			return h, ErrNoPixelData
		case tag>>16 == 0xFFFE:
			return h, fmt.Errorf("%w: unexpected (FFFE,%04X) at byte %d", ErrCorrupt, tag&0xFFFF, p.off-8)
		case wanted(tag) && l <= maxKept:
			v := make([]byte, l)
			if err := p.read(v); err != nil {
				return h, err
			}
			h.set(tag, v, p)
		default:
			if err := p.skipValue(vr, l); err != nil {
				return h, err
			}
		}
	}
}

func wanted(tag uint32) bool {
	switch tag {
	case tagSOPInstanceUID, tagModality, tagBodyPartExamined, tagStudyInstanceUID, tagSeriesInstanceUID,
		tagSamplesPerPixel, tagPhotometric, tagPlanarConfiguration, tagNumberOfFrames, tagRows, tagColumns,
		tagBitsAllocated, tagBitsStored, tagHighBit, tagPixelRepresentation,
		tagWindowCenter, tagWindowWidth, tagRescaleIntercept, tagRescaleSlope:
		return true
	}
	return false
}

// set records a wanted element's value.
func (h *header) set(tag uint32, v []byte, p *headerReader) {
	us := func() int {
		if len(v) < 2 {
			return -1
		}
		return int(p.u16(v))
	}
	switch tag {
	case tagSOPInstanceUID:
		h.sopUID = trimValue(v)
	case tagStudyInstanceUID:
		h.studyUID = trimValue(v)
	case tagSeriesInstanceUID:
		h.seriesUID = trimValue(v)
	case tagModality:
		h.modality = trimValue(v)
	case tagBodyPartExamined:
		h.bodyPart = trimValue(v)
	case tagPhotometric:
		h.photometric = trimValue(v)
	case tagSamplesPerPixel:
		h.spp = us()
	case tagPlanarConfiguration:
		h.planar = us()
	case tagRows:
		h.rows = us()
	case tagColumns:
		h.cols = us()
	case tagBitsAllocated:
		h.bitsAlloc = us()
	case tagBitsStored:
		h.bitsStored = us()
	case tagHighBit:
		h.highBit = us()
	case tagPixelRepresentation:
		h.pixRep = us()
	case tagNumberOfFrames:
		if n, err := strconv.Atoi(firstValue(v)); err == nil {
			h.frames = n
		} else {
			h.frames = -1
		}
	case tagRescaleSlope:
		h.slope, h.hasSlope = parseDS(v)
	case tagRescaleIntercept:
		h.intercept, h.hasIntercept = parseDS(v)
	case tagWindowCenter:
		h.winCenter, h.winCenterOK = parseDS(v)
	case tagWindowWidth:
		h.winWidth, h.winWidthOK = parseDS(v)
	}
}

// trimValue is a string value without its padding.
func trimValue(v []byte) string {
	return string(bytes.Trim(v, "\x00 "))
}

// firstValue is the first of a multi-valued string.
func firstValue(v []byte) string {
	s := string(v)
	if i := strings.IndexByte(s, '\\'); i >= 0 {
		s = s[:i]
	}
	return strings.Trim(s, "\x00 ")
}

// parseDS reads the first value of a decimal string; false when empty or
// not a finite number.
func parseDS(v []byte) (float64, bool) {
	f, err := strconv.ParseFloat(firstValue(v), 64)
	if err != nil || f != f || f > 1e300 || f < -1e300 {
		return 0, false
	}
	return f, true
}
