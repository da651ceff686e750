package dicom

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"io"
	"math"
	"os"

	"github.com/jackc/pgx/v5"
)

// ErrNoFrame: the instance has no such frame (or no pixel data).
var ErrNoFrame = errors.New("dicom: no such frame")

// ErrUnsupportedPixels: pixel data Ember cannot decode for rendering.
var ErrUnsupportedPixels = errors.New("dicom: cannot render this pixel data")

// Native reports whether the transfer syntax stores pixels uncompressed.
func Native(ts string) bool {
	return ts == ImplicitVRLittleEndian || ts == ExplicitVRLittleEndian || ts == ExplicitVRBigEndian
}

// Frame returns frame n (1-based): the raw bytes for native pixel data, the
// frame's fragments concatenated for encapsulated data. Only that range of
// the file is read.
func (s *Service) Frame(ctx context.Context, st Stored, n int) ([]byte, error) {
	if st.PixelOffset < 0 || n < 1 || n > st.Frames {
		return nil, ErrNoFrame
	}
	if Native(st.TransferSyntax) {
		if st.PixelLength < 0 {
			return nil, ErrNoFrame
		}
		size := st.PixelLength / int64(st.Frames)
		r, err := s.cfg.Blobs.Open(ctx, st.BlobKey, st.PixelOffset+int64(n-1)*size, size)
		if err != nil {
			return nil, err
		}
		defer r.Close()
		return io.ReadAll(r)
	}
	r, err := s.cfg.Blobs.Open(ctx, st.BlobKey, st.PixelOffset, -1)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return encapsulatedFrame(bufio.NewReader(r), n, st.Frames)
}

// encapsulatedFrame reads the Basic Offset Table and fragments (PS3.5 A.4).
func encapsulatedFrame(r *bufio.Reader, n, frames int) ([]byte, error) {
	p := &parser{r: r}
	t, _, l, err := p.header()
	if err != nil || t != tagItem {
		return nil, fmt.Errorf("dicom: encapsulated pixel data has no offset table")
	}
	bot := make([]byte, l)
	if err := p.read(bot); err != nil {
		return nil, err
	}
	var offsets []uint32
	for b := bot; len(b) >= 4; b = b[4:] {
		offsets = append(offsets, binary.LittleEndian.Uint32(b))
	}
	type frag struct {
		pos  int64
		data []byte
	}
	var frags []frag
	start := p.off
	for {
		t, _, l, err := p.header()
		if err != nil {
			return nil, fmt.Errorf("dicom: reading fragments: %w", err)
		}
		if t == tagSequenceDelimitation {
			break
		}
		if t != tagItem || l == undefinedLength || l > 1<<30 {
			return nil, errors.New("dicom: bad pixel data fragment")
		}
		pos := p.off - 8 - start
		d := make([]byte, l)
		if err := p.read(d); err != nil {
			return nil, err
		}
		frags = append(frags, frag{pos, d})
	}
	var out []byte
	switch {
	case frames == 1:
		for _, f := range frags {
			out = append(out, f.data...)
		}
	case len(offsets) == frames:
		lo := int64(offsets[n-1])
		hi := int64(math.MaxInt64)
		if n < frames {
			hi = int64(offsets[n])
		}
		for _, f := range frags {
			if f.pos >= lo && f.pos < hi {
				out = append(out, f.data...)
			}
		}
	case len(frags) == frames:
		out = frags[n-1].data
	default:
		return nil, errors.New("dicom: cannot locate frames: no offset table and fragments ≠ frames")
	}
	if out == nil {
		return nil, ErrNoFrame
	}
	return out, nil
}

// Window is a VOI LUT window; Width 0 means "from the dataset, else the
// data's range".
type Window struct{ Center, Width float64 }

// Render decodes frame n of a native instance to an image: grayscale
// (8/16-bit, signed or not, rescaled and windowed to 8 bits) or RGB.
func (s *Service) Render(ctx context.Context, st Stored, n int, win Window) (image.Image, error) {
	if !Native(st.TransferSyntax) {
		return nil, fmt.Errorf("%w: transfer syntax %s is compressed", ErrUnsupportedPixels, st.TransferSyntax)
	}
	rc, err := s.cfg.Blobs.Open(ctx, st.BlobKey, 0, st.PixelOffset)
	if err != nil {
		return nil, err
	}
	h, _, err := ReadHeader(bufio.NewReader(rc))
	rc.Close()
	if err != nil {
		return nil, err
	}
	raw, err := s.Frame(ctx, st, n)
	if err != nil {
		return nil, err
	}
	d := h.Dataset
	rows, _ := d.Int(tagRows)
	cols, _ := d.Int(tagColumns)
	spp, ok := d.Int(tagSamplesPerPixel)
	if !ok {
		spp = 1
	}
	bits, _ := d.Int(tagBitsAllocated)
	signed, _ := d.Int(tagPixelRepresentation)
	planar, _ := d.Int(tagPlanarConfiguration)
	photo := d.String(tagPhotometric)
	if rows <= 0 || cols <= 0 {
		return nil, fmt.Errorf("%w: no Rows/Columns", ErrUnsupportedPixels)
	}
	var bo binary.ByteOrder = binary.LittleEndian
	if h.TransferSyntax == ExplicitVRBigEndian {
		bo = binary.BigEndian
	}
	px := rows * cols
	switch {
	case spp == 3 && bits == 8 && photo == "RGB":
		if len(raw) < px*3 {
			return nil, fmt.Errorf("%w: short frame", ErrUnsupportedPixels)
		}
		img := image.NewRGBA(image.Rect(0, 0, cols, rows))
		for i := 0; i < px; i++ {
			var r, g, b byte
			if planar == 1 {
				r, g, b = raw[i], raw[px+i], raw[2*px+i]
			} else {
				r, g, b = raw[3*i], raw[3*i+1], raw[3*i+2]
			}
			img.Pix[4*i], img.Pix[4*i+1], img.Pix[4*i+2], img.Pix[4*i+3] = r, g, b, 255
		}
		return img, nil
	case spp == 1 && (bits == 8 || bits == 16) && (photo == "MONOCHROME1" || photo == "MONOCHROME2"):
	default:
		return nil, fmt.Errorf("%w: %s with %d samples of %d bits", ErrUnsupportedPixels, photo, spp, bits)
	}
	bpp := bits / 8
	if len(raw) < px*bpp {
		return nil, fmt.Errorf("%w: short frame", ErrUnsupportedPixels)
	}
	slope, ok := d.Float(tagRescaleSlope)
	if !ok || slope == 0 {
		slope = 1
	}
	intercept, _ := d.Float(tagRescaleIntercept)
	vals := make([]float64, px)
	lo, hi := math.Inf(1), math.Inf(-1)
	for i := range vals {
		var v float64
		switch {
		case bpp == 1 && signed == 1:
			v = float64(int8(raw[i]))
		case bpp == 1:
			v = float64(raw[i])
		case signed == 1:
			v = float64(int16(bo.Uint16(raw[2*i:])))
		default:
			v = float64(bo.Uint16(raw[2*i:]))
		}
		v = v*slope + intercept
		vals[i] = v
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	if win.Width <= 0 {
		c, okc := d.Float(tagWindowCenter)
		w, okw := d.Float(tagWindowWidth)
		if okc && okw && w > 0 {
			win = Window{c, w}
		} else {
			win = Window{(lo + hi) / 2, math.Max(hi-lo, 1)}
		}
	}
	img := image.NewGray(image.Rect(0, 0, cols, rows))
	// Linear VOI LUT, PS3.3 C.11.2.1.2.1.
	c, w := win.Center-0.5, win.Width-1
	for i, v := range vals {
		var y float64
		switch {
		case w <= 0 || v <= c-w/2:
			y = 0
		case v > c+w/2:
			y = 255
		default:
			y = ((v-c)/w + 0.5) * 255
		}
		if photo == "MONOCHROME1" {
			y = 255 - y
		}
		img.Pix[i] = uint8(math.Round(math.Max(0, math.Min(255, y))))
	}
	return img, nil
}

// OpenPixelData streams a stored instance's PixelData value with one ranged
// read, for workers that process pixels: native data is exactly the value
// (Stored.Rows × Columns × frames × samples × bits/8 bytes); encapsulated
// data is the item sequence (offset table, fragments, delimiter). It
// returns os.ErrNotExist (wrapped) for an unknown instance, ErrNoFrame for
// one without pixel data.
func (s *Service) OpenPixelData(ctx context.Context, sopUID string) (Stored, io.ReadCloser, error) {
	var st Stored
	err := s.store.Pool().QueryRow(ctx, `SELECT study_uid, series_uid, sop_uid, sop_class, transfer_syntax, blob_key, size,
		COALESCE(pixel_offset, -1), COALESCE(pixel_length, -1), COALESCE(rows, 0), COALESCE(columns, 0), COALESCE(frames, 1)
		FROM dicom_instances WHERE sop_uid = $1`, sopUID).
		Scan(&st.StudyUID, &st.SeriesUID, &st.SOPUID, &st.SOPClass, &st.TransferSyntax, &st.BlobKey, &st.Size,
			&st.PixelOffset, &st.PixelLength, &st.Rows, &st.Columns, &st.Frames)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, nil, fmt.Errorf("dicom: instance %s: %w", sopUID, os.ErrNotExist)
	}
	if err != nil {
		return st, nil, fmt.Errorf("dicom: instance %s: %w", sopUID, err)
	}
	if st.Frames < 1 {
		st.Frames = 1
	}
	if st.PixelOffset < 0 {
		return st, nil, ErrNoFrame
	}
	rc, err := s.cfg.Blobs.Open(ctx, st.BlobKey, st.PixelOffset, st.PixelLength)
	return st, rc, err
}
