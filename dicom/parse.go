package dicom

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// Transfer syntaxes Ember parses itself (every other one is encapsulated
// explicit VR little endian, which parses like ExplicitVRLittleEndian).
const (
	ImplicitVRLittleEndian = "1.2.840.10008.1.2"
	ExplicitVRLittleEndian = "1.2.840.10008.1.2.1"
	DeflatedExplicitVRLE   = "1.2.840.10008.1.2.1.99"
	ExplicitVRBigEndian    = "1.2.840.10008.1.2.2"
)

// Tags Ember reads.
const (
	tagTransferSyntax       = 0x00020010
	tagMediaSOPClass        = 0x00020002
	tagMediaSOPInstance     = 0x00020003
	tagSpecificCharset      = 0x00080005
	tagSOPClassUID          = 0x00080016
	tagSOPInstanceUID       = 0x00080018
	tagStudyDate            = 0x00080020
	tagStudyTime            = 0x00080030
	tagAccessionNumber      = 0x00080050
	tagModality             = 0x00080060
	tagModalitiesInStudy    = 0x00080061
	tagReferringPhysician   = 0x00080090
	tagTimezoneOffset       = 0x00080201
	tagStudyDescription     = 0x00081030
	tagSeriesDescription    = 0x0008103E
	tagPatientName          = 0x00100010
	tagPatientID            = 0x00100020
	tagIssuerOfPatientID    = 0x00100021
	tagPatientBirthDate     = 0x00100030
	tagPatientSex           = 0x00100040
	tagBodyPartExamined     = 0x00180015
	tagStudyInstanceUID     = 0x0020000D
	tagSeriesInstanceUID    = 0x0020000E
	tagStudyID              = 0x00200010
	tagSeriesNumber         = 0x00200011
	tagInstanceNumber       = 0x00200013
	tagLaterality           = 0x00200060
	tagSamplesPerPixel      = 0x00280002
	tagPhotometric          = 0x00280004
	tagPlanarConfiguration  = 0x00280006
	tagNumberOfFrames       = 0x00280008
	tagRows                 = 0x00280010
	tagColumns              = 0x00280011
	tagBitsAllocated        = 0x00280100
	tagBitsStored           = 0x00280101
	tagPixelRepresentation  = 0x00280103
	tagWindowCenter         = 0x00281050
	tagWindowWidth          = 0x00281051
	tagRescaleIntercept     = 0x00281052
	tagRescaleSlope         = 0x00281053
	tagPixelData            = 0x7FE00010
	tagItem                 = 0xFFFEE000
	tagItemDelimitation     = 0xFFFEE00D
	tagSequenceDelimitation = 0xFFFEE0DD
)

// undefinedLength marks a sequence, item or encapsulated pixel data whose
// end is a delimiter rather than a length.
const undefinedLength = 0xFFFFFFFF

// maxKeptValue bounds the bytes of one value the parser keeps in memory;
// longer values (overlays, waveforms, private blobs) are skipped and
// described by offset and length only, so a header never costs more than
// a few MB however large the instance.
const maxKeptValue = 1 << 20

// maxKeptTotal bounds all kept values of one header, and maxDepth the
// nesting of sequences, so a hostile dataset cannot exhaust memory or stack.
const (
	maxKeptTotal = 16 << 20
	maxDepth     = 32
)

// ErrNotDICOM: the input lacks the Part-10 preamble and "DICM" prefix or
// its file meta group is unreadable.
var ErrNotDICOM = errors.New("dicom: not a DICOM Part-10 file")

// Element is one data element. Value holds its raw bytes in the dataset's
// byte order (nil when skipped as bulk data); Items the datasets of a
// sequence.
type Element struct {
	Tag    uint32
	VR     string
	Value  []byte
	Items  []*Dataset
	Offset int64 // of the value, from the start of the file
	Length int64 // of the value; -1 when undefined (encapsulated pixel data)
	Bulk   bool  // value not kept
}

// Dataset is an ordered list of elements.
type Dataset struct {
	Elements  []*Element
	BigEndian bool
}

// Get returns the element with tag t at this level, or nil.
func (d *Dataset) Get(t uint32) *Element {
	if d == nil {
		return nil
	}
	for _, e := range d.Elements {
		if e.Tag == t {
			return e
		}
	}
	return nil
}

// parser reads elements from r, counting the bytes it consumed so offsets
// refer to the file.
type parser struct {
	r         *bufio.Reader
	off       int64
	bigEndian bool
	implicit  bool
	buf       [12]byte
	kept      int64
	depth     int
}

func (p *parser) read(b []byte) error {
	n, err := io.ReadFull(p.r, b)
	p.off += int64(n)
	if err == io.ErrUnexpectedEOF {
		return fmt.Errorf("dicom: truncated at byte %d: %w", p.off, err)
	}
	return err
}

func (p *parser) skip(n int64) error {
	m, err := p.r.Discard(int(n))
	p.off += int64(m)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("dicom: truncated at byte %d: %w", p.off, err)
	}
	return nil
}

func (p *parser) u16(b []byte) uint16 {
	if p.bigEndian {
		return binary.BigEndian.Uint16(b)
	}
	return binary.LittleEndian.Uint16(b)
}

func (p *parser) u32(b []byte) uint32 {
	if p.bigEndian {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}

// header reads one element header. Item and delimiter tags have no VR.
func (p *parser) header() (t uint32, vr string, length uint32, err error) {
	b := p.buf[:8]
	if err = p.read(b); err != nil {
		return 0, "", 0, err
	}
	t = uint32(p.u16(b[0:2]))<<16 | uint32(p.u16(b[2:4]))
	if t>>16 == 0xFFFE || p.implicit {
		length = p.u32(b[4:8])
		if t>>16 != 0xFFFE {
			vr = dictVR(t)
		}
		return t, vr, length, nil
	}
	vr = string(b[4:6])
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		if err = p.read(p.buf[8:12]); err != nil {
			return 0, "", 0, err
		}
		length = p.u32(p.buf[8:12])
	default:
		if vr[0] < 'A' || vr[0] > 'Z' || vr[1] < 'A' || vr[1] > 'Z' {
			return 0, "", 0, fmt.Errorf("dicom: invalid VR %q for (%04X,%04X) at byte %d", vr, t>>16, t&0xFFFF, p.off-8)
		}
		length = uint32(p.u16(b[6:8]))
	}
	return t, vr, length, nil
}

// dictVR is the data dictionary's VR for implicit VR data.
func dictVR(t uint32) string {
	if t&0xFFFF == 0 {
		return "UL"
	}
	info, err := tag.Find(tag.Tag{Group: uint16(t >> 16), Element: uint16(t)})
	if err != nil || len(info.VRs) == 0 {
		return "UN"
	}
	switch info.VRs[0] {
	case "US or SS", "US or SS or OW":
		return "US"
	case "OB or OW":
		return "OW"
	}
	return info.VRs[0]
}

// readDataset reads elements until end (an absolute offset; -1: none), an
// item delimiter, EOF at the top level, or (when stop is set) the header
// of top-level PixelData, which it returns unread.
func (p *parser) readDataset(end int64, top, stopAtPixels bool, keep func(uint32) bool) (*Dataset, *Element, error) {
	ds := &Dataset{BigEndian: p.bigEndian}
	for end < 0 || p.off < end {
		if top {
			if _, err := p.r.Peek(1); err == io.EOF {
				return ds, nil, nil
			}
		}
		t, vr, length, err := p.header()
		if err != nil {
			if err == io.EOF && top {
				return ds, nil, nil
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, nil, err
		}
		if t == tagItemDelimitation {
			return ds, nil, nil
		}
		if t>>16 == 0xFFFE {
			return nil, nil, fmt.Errorf("dicom: unexpected (FFFE,%04X) at byte %d", t&0xFFFF, p.off)
		}
		el := &Element{Tag: t, VR: vr, Offset: p.off, Length: int64(length)}
		if length == undefinedLength {
			el.Length = -1
		}
		if top && stopAtPixels && t == tagPixelData {
			return ds, el, nil
		}
		switch {
		case vr == "SQ":
			if el.Items, err = p.readSequence(length, keep); err != nil {
				return nil, nil, err
			}
		case length == undefinedLength && vr == "UN":
			// An undefined-length UN is a sequence encoded in implicit VR
			// little endian whatever the transfer syntax (PS3.5 6.2.2).
			implicit, big := p.implicit, p.bigEndian
			p.implicit, p.bigEndian = true, false
			el.Items, err = p.readSequence(length, keep)
			p.implicit, p.bigEndian = implicit, big
			if err != nil {
				return nil, nil, err
			}
			el.VR = "SQ"
		case length == undefinedLength:
			// Encapsulated pixel data inside a dataset: skip its items.
			if err := p.skipFragments(); err != nil {
				return nil, nil, err
			}
			el.Bulk = true
		case length > maxKeptValue || p.kept+int64(length) > maxKeptTotal || (keep != nil && !keep(t)):
			if err := p.skip(int64(length)); err != nil {
				return nil, nil, err
			}
			el.Bulk = true
		default:
			p.kept += int64(length)
			el.Value = make([]byte, length)
			if err := p.read(el.Value); err != nil {
				return nil, nil, err
			}
		}
		ds.Elements = append(ds.Elements, el)
	}
	return ds, nil, nil
}

func (p *parser) readSequence(length uint32, keep func(uint32) bool) ([]*Dataset, error) {
	if p.depth++; p.depth > maxDepth {
		return nil, errors.New("dicom: sequences nested too deeply")
	}
	defer func() { p.depth-- }()
	end := int64(-1)
	if length != undefinedLength {
		end = p.off + int64(length)
	}
	var items []*Dataset
	for end < 0 || p.off < end {
		t, _, l, err := p.header()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		switch t {
		case tagSequenceDelimitation:
			return items, nil
		case tagItem:
		default:
			return nil, fmt.Errorf("dicom: expected an item, got (%04X,%04X) at byte %d", t>>16, t&0xFFFF, p.off)
		}
		itemEnd := int64(-1)
		if l != undefinedLength {
			itemEnd = p.off + int64(l)
		}
		ds, _, err := p.readDataset(itemEnd, false, false, nil)
		if err != nil {
			return nil, err
		}
		items = append(items, ds)
		if len(items) > 100000 {
			return nil, errors.New("dicom: sequence has too many items")
		}
	}
	return items, nil
}

func (p *parser) skipFragments() error {
	for {
		t, _, l, err := p.header()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if t == tagSequenceDelimitation {
			return nil
		}
		if t != tagItem || l == undefinedLength {
			return fmt.Errorf("dicom: bad pixel data fragment at byte %d", p.off)
		}
		if err := p.skip(int64(l)); err != nil {
			return err
		}
	}
}

// readPreamble checks the 128-byte preamble and "DICM" and reads the file
// meta group (always explicit VR little endian).
func (p *parser) readMeta() (*Dataset, error) {
	pre := make([]byte, 132)
	if err := p.read(pre); err != nil || !bytes.Equal(pre[128:], []byte("DICM")) {
		return nil, ErrNotDICOM
	}
	meta := &Dataset{}
	for {
		b, err := p.r.Peek(2)
		if err != nil || binary.LittleEndian.Uint16(b) != 0x0002 {
			break
		}
		t, vr, length, err := p.header()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNotDICOM, err)
		}
		if length > 1<<16 {
			return nil, fmt.Errorf("%w: meta element too long", ErrNotDICOM)
		}
		el := &Element{Tag: t, VR: vr, Offset: p.off, Length: int64(length), Value: make([]byte, length)}
		if err := p.read(el.Value); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNotDICOM, err)
		}
		meta.Elements = append(meta.Elements, el)
	}
	if meta.Get(tagTransferSyntax) == nil {
		return nil, fmt.Errorf("%w: no transfer syntax in the file meta group", ErrNotDICOM)
	}
	return meta, nil
}

// setSyntax configures the parser for the dataset's transfer syntax.
func (p *parser) setSyntax(ts string) {
	p.implicit = ts == ImplicitVRLittleEndian
	p.bigEndian = ts == ExplicitVRBigEndian
}

// Header is what ingest reads from a Part-10 stream: the meta group, the
// dataset up to PixelData, and where PixelData starts.
type Header struct {
	Meta           *Dataset
	Dataset        *Dataset
	TransferSyntax string
	Pixels         *Element // PixelData header (value unread), or nil

	p *parser // positioned after Pixels' header, for ReadTrailer
}

// ReadHeader reads a Part-10 stream up to the header of top-level PixelData
// (or to EOF). r is left positioned at the pixel value.
func ReadHeader(r *bufio.Reader) (*Header, int64, error) { return readHeader(r, nil) }

// readHeader is ReadHeader telling afterMeta, when set, the offset where
// the file meta group ends (Ingest digests the data set after it).
func readHeader(r *bufio.Reader, afterMeta func(off int64)) (*Header, int64, error) {
	p := &parser{r: r}
	meta, err := p.readMeta()
	if err != nil {
		return nil, p.off, err
	}
	if afterMeta != nil {
		afterMeta(p.off)
	}
	h := &Header{Meta: meta, TransferSyntax: trimUID(meta.Get(tagTransferSyntax).Value)}
	if h.TransferSyntax == DeflatedExplicitVRLE {
		return nil, p.off, errors.New("dicom: deflated transfer syntax is not supported")
	}
	p.setSyntax(h.TransferSyntax)
	ds, px, err := p.readDataset(-1, true, true, nil)
	if err != nil {
		return nil, p.off, err
	}
	h.Dataset, h.Pixels = ds, px
	h.p = p
	return h, p.off, nil
}

// ReadTrailer reads the rest of the stream after ReadHeader stopped at
// PixelData: it skips the pixel value (or fragments) and reads any
// elements after it (e.g. trailing padding), so a truncated or malformed
// end is detected. It returns the total bytes read.
func (h *Header) ReadTrailer() (int64, error) {
	p := h.p
	if h.Pixels == nil {
		return p.off, nil
	}
	if h.Pixels.Length < 0 {
		if err := p.skipFragments(); err != nil {
			return p.off, err
		}
	} else if err := p.skip(h.Pixels.Length); err != nil {
		return p.off, err
	}
	ds, _, err := p.readDataset(-1, true, false, func(uint32) bool { return false })
	if err != nil {
		return p.off, err
	}
	h.Dataset.Elements = append(h.Dataset.Elements, h.Pixels)
	h.Dataset.Elements = append(h.Dataset.Elements, ds.Elements...)
	return p.off, nil
}

// ReadFull reads a whole Part-10 stream, skipping bulk values (pixel data
// included), for metadata responses.
func ReadFull(r io.Reader) (*Header, error) {
	p := &parser{r: bufio.NewReaderSize(r, 64<<10)}
	meta, err := p.readMeta()
	if err != nil {
		return nil, err
	}
	h := &Header{Meta: meta, TransferSyntax: trimUID(meta.Get(tagTransferSyntax).Value)}
	if h.TransferSyntax == DeflatedExplicitVRLE {
		return nil, errors.New("dicom: deflated transfer syntax is not supported")
	}
	p.setSyntax(h.TransferSyntax)
	notBulk := func(t uint32) bool { return t != tagPixelData }
	ds, _, err := p.readDataset(-1, true, false, notBulk)
	if err != nil {
		return nil, err
	}
	h.Dataset = ds
	if px := ds.Get(tagPixelData); px != nil {
		h.Pixels = px
	}
	return h, nil
}

func trimUID(b []byte) string {
	return string(bytes.TrimRight(b, "\x00 "))
}
