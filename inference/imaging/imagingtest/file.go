package imagingtest

import (
	"encoding/binary"
	"strconv"
)

// Explicit VR Little Endian, the syntax File writes unless told otherwise.
const ExplicitVRLittleEndian = "1.2.840.10008.1.2.1"

// File describes a small Part-10 file (explicit VR little endian data set)
// with chosen pixels, for tests that need exact expectations. Zero fields
// are left out (Samples and Frames default to 1, BitsStored to
// BitsAllocated, HighBit to BitsStored−1).
type File struct {
	TransferSyntax                           string // default ExplicitVRLittleEndian
	SOPInstanceUID, StudyUID, SeriesUID      string
	Modality, BodyPart                       string
	Photometric                              string // default MONOCHROME2
	Rows, Columns, Samples, Frames           int
	BitsAllocated, BitsStored, HighBit       int
	PixelRepresentation, PlanarConfiguration int
	RescaleSlope, RescaleIntercept           string // decimal strings; "" = absent
	WindowCenter, WindowWidth                string
	Pixels                                   []byte   // native pixel data, all frames
	Fragments                                [][]byte // encapsulated pixel data instead, one fragment each
	OffsetTable                              []uint32 // Basic Offset Table for Fragments
	ExtraBeforePixels                        [][]byte // raw elements appended before Pixel Data
	OmitPixelData                            bool
}

// Element encodes one explicit VR little endian element, padding odd values.
func Element(tag uint32, vr string, value []byte) []byte {
	if len(value)%2 == 1 {
		pad := byte(' ')
		if vr == "UI" || vr == "OB" || vr == "UN" {
			pad = 0
		}
		value = append(append([]byte(nil), value...), pad)
	}
	b := binary.LittleEndian.AppendUint16(nil, uint16(tag>>16))
	b = binary.LittleEndian.AppendUint16(b, uint16(tag))
	b = append(b, vr...)
	switch vr {
	case "OB", "OW", "SQ", "UN", "UT", "OF", "OD", "OL", "UC", "UR", "OV", "SV", "UV":
		b = append(b, 0, 0)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(value)))
	default:
		b = binary.LittleEndian.AppendUint16(b, uint16(len(value)))
	}
	return append(b, value...)
}

func us(v int) []byte { return binary.LittleEndian.AppendUint16(nil, uint16(v)) }

// Bytes encodes the file.
func (f File) Bytes() []byte {
	ts := f.TransferSyntax
	if ts == "" {
		ts = ExplicitVRLittleEndian
	}
	samples, frames := f.Samples, f.Frames
	if samples == 0 {
		samples = 1
	}
	bitsStored := f.BitsStored
	if bitsStored == 0 {
		bitsStored = f.BitsAllocated
	}
	highBit := f.HighBit
	if highBit == 0 {
		highBit = bitsStored - 1
	}
	photometric := f.Photometric
	if photometric == "" {
		photometric = "MONOCHROME2"
	}
	sop := f.SOPInstanceUID
	if sop == "" {
		sop = "1.2.3.4.5"
	}

	out := make([]byte, 128, 1024+len(f.Pixels))
	out = append(out, "DICM"...)
	meta := Element(0x00020001, "OB", []byte{0, 1})
	meta = append(meta, Element(0x00020002, "UI", []byte("1.2.840.10008.5.1.4.1.1.7"))...)
	meta = append(meta, Element(0x00020003, "UI", []byte(sop))...)
	meta = append(meta, Element(0x00020010, "UI", []byte(ts))...)
	out = append(out, Element(0x00020000, "UL", binary.LittleEndian.AppendUint32(nil, uint32(len(meta))))...)
	out = append(out, meta...)
	str := func(tag uint32, vr, v string) {
		if v != "" {
			out = append(out, Element(tag, vr, []byte(v))...)
		}
	}
	str(0x00080016, "UI", "1.2.840.10008.5.1.4.1.1.7")
	str(0x00080018, "UI", sop)
	str(0x00080060, "CS", f.Modality)
	str(0x00180015, "CS", f.BodyPart)
	str(0x0020000D, "UI", f.StudyUID)
	str(0x0020000E, "UI", f.SeriesUID)
	out = append(out, Element(0x00280002, "US", us(samples))...)
	str(0x00280004, "CS", photometric)
	if samples > 1 {
		out = append(out, Element(0x00280006, "US", us(f.PlanarConfiguration))...)
	}
	if frames > 0 {
		str(0x00280008, "IS", strconv.Itoa(frames))
	}
	out = append(out, Element(0x00280010, "US", us(f.Rows))...)
	out = append(out, Element(0x00280011, "US", us(f.Columns))...)
	out = append(out, Element(0x00280100, "US", us(f.BitsAllocated))...)
	out = append(out, Element(0x00280101, "US", us(bitsStored))...)
	out = append(out, Element(0x00280102, "US", us(highBit))...)
	out = append(out, Element(0x00280103, "US", us(f.PixelRepresentation))...)
	str(0x00281050, "DS", f.WindowCenter)
	str(0x00281051, "DS", f.WindowWidth)
	str(0x00281052, "DS", f.RescaleIntercept)
	str(0x00281053, "DS", f.RescaleSlope)
	for _, e := range f.ExtraBeforePixels {
		out = append(out, e...)
	}
	if f.OmitPixelData {
		return out
	}
	if f.Fragments == nil {
		vr := "OW"
		if f.BitsAllocated == 8 {
			vr = "OB"
		}
		return append(out, Element(0x7FE00010, vr, f.Pixels)...)
	}
	out = append(out, 0xE0, 0x7F, 0x10, 0x00, 'O', 'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF)
	item := func(v []byte) {
		out = binary.LittleEndian.AppendUint32(append(out, 0xFE, 0xFF, 0x00, 0xE0), uint32(len(v)))
		out = append(out, v...)
	}
	var bot []byte
	for _, o := range f.OffsetTable {
		bot = binary.LittleEndian.AppendUint32(bot, o)
	}
	item(bot)
	for _, fr := range f.Fragments {
		item(fr)
	}
	return append(out, 0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0)
}
