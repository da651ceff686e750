package dicom

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
)

// charset turns a dataset's text bytes into UTF-8: nil means the default
// repertoire (ASCII; other bytes become U+FFFD) or UTF-8 itself.
type charset = *charmap.Charmap

// singleByte are the single-byte repertoires of PS3.3 C.12.1.1.2 (without
// code extensions). ISO 2022 escape-based sets (Japanese, Korean, Chinese
// with extensions) and GB18030 keep their ASCII and lose the rest.
var singleByte = map[string]*charmap.Charmap{
	"ISO_IR 100": charmap.ISO8859_1, "ISO_IR 101": charmap.ISO8859_2, "ISO_IR 109": charmap.ISO8859_3,
	"ISO_IR 110": charmap.ISO8859_4, "ISO_IR 144": charmap.ISO8859_5, "ISO_IR 127": charmap.ISO8859_6,
	"ISO_IR 126": charmap.ISO8859_7, "ISO_IR 138": charmap.ISO8859_8, "ISO_IR 148": charmap.ISO8859_9,
	"ISO_IR 203": charmap.ISO8859_15, "ISO_IR 166": charmap.Windows874,
}

// datasetCharset reads SpecificCharacterSet's first value.
func datasetCharset(ds *Dataset) charset {
	e := ds.Get(tagSpecificCharset)
	if e == nil {
		return nil
	}
	first, _, _ := strings.Cut(string(e.Value), `\`)
	return singleByte[strings.TrimSpace(first)]
}

func decodeText(b []byte, cs charset) string {
	if cs != nil {
		out, err := cs.NewDecoder().Bytes(b)
		if err == nil {
			return string(out)
		}
	}
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// String returns an element's string value, trimmed of padding (UIDs are
// padded with NUL, other strings with spaces); "" if absent.
func (d *Dataset) String(t uint32) string {
	e := d.Get(t)
	if e == nil || e.Value == nil {
		return ""
	}
	return e.text(datasetCharset(d))
}

func (e *Element) text(cs charset) string {
	s := decodeText(e.Value, cs)
	s = strings.TrimRight(s, " \x00")
	switch e.VR {
	case "UT", "ST", "LT", "UR":
		return s
	}
	return strings.TrimLeft(s, " ")
}

// Int returns the first value of an integer element (US, SS, UL, SL, IS).
func (d *Dataset) Int(t uint32) (int, bool) {
	e := d.Get(t)
	if e == nil {
		return 0, false
	}
	vals := e.numbers(d.BigEndian)
	if len(vals) == 0 {
		return 0, false
	}
	if f, ok := vals[0].(float64); ok {
		return int(f), true
	}
	if i, ok := vals[0].(int64); ok {
		return int(i), true
	}
	return 0, false
}

// Float returns the first value of a numeric element (DS, FL, FD, …).
func (d *Dataset) Float(t uint32) (float64, bool) {
	e := d.Get(t)
	if e == nil {
		return 0, false
	}
	vals := e.numbers(d.BigEndian)
	if len(vals) == 0 {
		return 0, false
	}
	switch v := vals[0].(type) {
	case float64:
		return v, true
	case int64:
		return float64(v), true
	}
	return 0, false
}

// numbers decodes numeric VRs to int64 or float64 values.
func (e *Element) numbers(bigEndian bool) []any {
	var bo binary.ByteOrder = binary.LittleEndian
	if bigEndian {
		bo = binary.BigEndian
	}
	b := e.Value
	var out []any
	switch e.VR {
	case "US":
		for ; len(b) >= 2; b = b[2:] {
			out = append(out, int64(bo.Uint16(b)))
		}
	case "SS":
		for ; len(b) >= 2; b = b[2:] {
			out = append(out, int64(int16(bo.Uint16(b))))
		}
	case "UL":
		for ; len(b) >= 4; b = b[4:] {
			out = append(out, int64(bo.Uint32(b)))
		}
	case "SL":
		for ; len(b) >= 4; b = b[4:] {
			out = append(out, int64(int32(bo.Uint32(b))))
		}
	case "UV":
		for ; len(b) >= 8; b = b[8:] {
			out = append(out, int64(bo.Uint64(b)))
		}
	case "SV":
		for ; len(b) >= 8; b = b[8:] {
			out = append(out, int64(bo.Uint64(b)))
		}
	case "FL":
		for ; len(b) >= 4; b = b[4:] {
			out = append(out, float64(math.Float32frombits(bo.Uint32(b))))
		}
	case "FD":
		for ; len(b) >= 8; b = b[8:] {
			out = append(out, math.Float64frombits(bo.Uint64(b)))
		}
	case "IS":
		for _, s := range splitValues(string(b)) {
			if i, err := strconv.ParseInt(s, 10, 64); err == nil {
				out = append(out, i)
			}
		}
	case "DS":
		for _, s := range splitValues(string(b)) {
			if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
				out = append(out, f)
			}
		}
	}
	return out
}

func splitValues(s string) []string {
	parts := strings.Split(strings.TrimRight(s, " \x00"), `\`)
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// JSON converts a dataset to the DICOM JSON model (PS3.18 F.2) as a map
// keyed by 8-hex-digit tags. bulkURI, when not nil, names the BulkDataURI of
// values not kept (PixelData).
func (d *Dataset) JSON(bulkURI func(t uint32) string) map[string]any {
	cs := datasetCharset(d)
	out := make(map[string]any, len(d.Elements))
	for _, e := range d.Elements {
		if e.Tag>>16 == 0x0002 || e.Tag&0xFFFF == 0 {
			continue // meta group and group lengths are not part of the model
		}
		out[fmt.Sprintf("%08X", e.Tag)] = e.json(d, cs, bulkURI)
	}
	return out
}

func (e *Element) json(d *Dataset, cs charset, bulkURI func(uint32) string) map[string]any {
	vr := e.VR
	if vr == "" {
		vr = "UN"
	}
	m := map[string]any{"vr": vr}
	if e.Bulk || (e.Value == nil && e.Items == nil && e.Length != 0 && vr != "SQ") {
		if bulkURI != nil {
			if u := bulkURI(e.Tag); u != "" {
				m["BulkDataURI"] = u
			}
		}
		return m
	}
	switch vr {
	case "SQ":
		items := make([]any, 0, len(e.Items))
		for _, it := range e.Items {
			items = append(items, it.JSON(nil))
		}
		if len(items) > 0 {
			m["Value"] = items
		}
	case "PN":
		var vals []any
		for _, s := range strings.Split(e.text(cs), `\`) {
			groups := strings.Split(s, "=")
			pn := map[string]any{}
			for i, name := range []string{"Alphabetic", "Ideographic", "Phonetic"} {
				if i < len(groups) && groups[i] != "" {
					pn[name] = groups[i]
				}
			}
			vals = append(vals, pn)
		}
		if len(e.Value) > 0 {
			m["Value"] = vals
		}
	case "OB", "OD", "OF", "OL", "OV", "OW", "UN":
		if len(e.Value) > 0 {
			m["InlineBinary"] = base64.StdEncoding.EncodeToString(e.Value)
		}
	case "US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "IS", "DS":
		if nums := e.numbers(d.BigEndian); len(nums) > 0 {
			m["Value"] = nums
		}
	case "AT":
		var vals []any
		for b := e.Value; len(b) >= 4; b = b[4:] {
			var g, el uint16
			if d.BigEndian {
				g, el = binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:])
			} else {
				g, el = binary.LittleEndian.Uint16(b), binary.LittleEndian.Uint16(b[2:])
			}
			vals = append(vals, fmt.Sprintf("%04X%04X", g, el))
		}
		if len(vals) > 0 {
			m["Value"] = vals
		}
	default:
		s := e.text(cs)
		if s == "" {
			break
		}
		var vals []any
		if vr == "UT" || vr == "ST" || vr == "LT" {
			vals = []any{s}
		} else {
			for _, v := range strings.Split(s, `\`) {
				if vr != "UR" {
					v = strings.TrimSpace(v)
				}
				if v == "" {
					vals = append(vals, nil)
				} else {
					vals = append(vals, v)
				}
			}
		}
		m["Value"] = vals
	}
	return m
}
