package dicom

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"io"
	"math"
	"os"
	"slices"

	"github.com/emberfhir/ember/store/dicomdb"
)

// ErrNoFrame: the instance has no such frame (or no pixel data).
var ErrNoFrame = errors.New("dicom: no such frame")

// ErrUnsupportedPixels: pixel data Ember cannot decode for rendering.
var ErrUnsupportedPixels = errors.New("dicom: cannot render this pixel data")

// Native reports whether the transfer syntax stores pixels uncompressed.
func Native(ts string) bool {
	return ts == ImplicitVRLittleEndian || ts == ExplicitVRLittleEndian || ts == ExplicitVRBigEndian
}

// FrameRef locates one frame's bytes in an instance's blob, so a response
// can stream it: native data is one byte range; encapsulated data is a run
// of consecutive fragment items whose values, concatenated, are the frame.
type FrameRef struct {
	N    int   // frame number, 1-based
	Size int64 // bytes of the frame

	off, end int64 // blob byte range [off, end)
	items    bool  // the range holds items: an 8-byte header before each value
}

// maxFragment bounds one pixel data fragment (a larger one is corrupt).
const maxFragment = 1 << 30

// LocateFrames finds frames nums (1-based, in any order, duplicates
// allowed) of a stored instance and returns them in the order asked. It
// reads at most the pixel data's item headers and Basic Offset Table once,
// keeping only what the asked frames need, so its memory is bounded by
// len(nums) whatever the instance holds. ErrNoFrame: a frame the instance
// does not have.
func (s *Service) LocateFrames(ctx context.Context, st Stored, nums []int) ([]FrameRef, error) {
	if st.PixelOffset < 0 {
		return nil, ErrNoFrame
	}
	for _, n := range nums {
		if n < 1 || n > st.Frames {
			return nil, ErrNoFrame
		}
	}
	refs := make([]FrameRef, len(nums))
	if Native(st.TransferSyntax) {
		if st.PixelLength < 0 {
			return nil, ErrNoFrame
		}
		size := st.PixelLength / int64(st.Frames)
		for i, n := range nums {
			off := st.PixelOffset + int64(n-1)*size
			refs[i] = FrameRef{N: n, Size: size, off: off, end: off + size}
		}
		return refs, nil
	}
	found, err := s.locateEncapsulated(ctx, st, nums)
	if err != nil {
		return nil, err
	}
	for i, n := range nums {
		f, ok := found[n]
		if !ok {
			return nil, ErrNoFrame
		}
		refs[i] = *f
	}
	return refs, nil
}

// locateEncapsulated walks the item sequence of encapsulated pixel data
// (PS3.5 A.4) once, skipping fragment values, and returns the extents of
// the wanted frames. Frames are found as Ember always has: a single frame
// is every fragment; else by the Basic Offset Table when it has one entry
// per frame; else one fragment per frame.
func (s *Service) locateEncapsulated(ctx context.Context, st Stored, nums []int) (map[int]*FrameRef, error) {
	rc, err := s.cfg.Blobs.Open(ctx, st.BlobKey, st.PixelOffset, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	p := &parser{r: bufio.NewReaderSize(rc, 32<<10)}
	wanted := make(map[int]*FrameRef, len(nums))
	for _, n := range nums {
		wanted[n] = &FrameRef{N: n, items: true, off: -1}
	}
	t, _, l, err := p.header()
	if err != nil || t != tagItem || l == undefinedLength {
		return nil, errors.New("dicom: encapsulated pixel data has no offset table")
	}
	// With a usable offset table, keep only the entries that bound the
	// wanted frames: frame n spans [offsets[n-1], offsets[n]).
	type span struct {
		lo, hi int64
		ref    *FrameRef
	}
	var spans []span // sorted by lo
	useBOT := st.Frames > 1 && int64(l)/4 == int64(st.Frames)
	if useBOT {
		keep := make(map[int]int64, 2*len(wanted))
		for n := range wanted {
			keep[n-1], keep[n] = -1, -1
		}
		var b [4]byte
		for i := 0; i < st.Frames; i++ {
			if err := p.read(b[:]); err != nil {
				return nil, err
			}
			if _, ok := keep[i]; ok {
				keep[i] = int64(binary.LittleEndian.Uint32(b[:]))
			}
		}
		if err := p.skip(int64(l) - 4*int64(st.Frames)); err != nil {
			return nil, err
		}
		for n, ref := range wanted {
			hi := int64(math.MaxInt64)
			if n < st.Frames {
				hi = keep[n]
			}
			spans = append(spans, span{keep[n-1], hi, ref})
		}
		slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.lo, b.lo) })
	} else if err := p.skip(int64(l)); err != nil {
		return nil, err
	}
	add := func(ref *FrameRef, itemOff int64, l uint32) {
		if ref.off < 0 {
			ref.off = itemOff
		}
		ref.end = itemOff + 8 + int64(l)
		ref.Size += int64(l)
	}
	start := p.off
	frags := 0
	var active []span // BOT spans that began at or before the current fragment
	next := 0
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t, _, l, err := p.header()
		if err != nil {
			return nil, fmt.Errorf("dicom: reading fragments: %w", err)
		}
		if t == tagSequenceDelimitation {
			break
		}
		if t != tagItem || l == undefinedLength || l > maxFragment {
			return nil, errors.New("dicom: bad pixel data fragment")
		}
		itemOff := st.PixelOffset + p.off - 8
		pos := p.off - 8 - start
		frags++
		switch {
		case st.Frames == 1:
			if ref := wanted[1]; ref != nil {
				add(ref, itemOff, l)
			}
		case useBOT:
			for next < len(spans) && spans[next].lo <= pos {
				active = append(active, spans[next])
				next++
			}
			// Offsets only grow, so a span once passed is done.
			active = slices.DeleteFunc(active, func(sp span) bool { return pos >= sp.hi })
			for _, sp := range active {
				add(sp.ref, itemOff, l)
			}
		default:
			if ref := wanted[frags]; ref != nil {
				add(ref, itemOff, l)
			}
		}
		if err := p.skip(int64(l)); err != nil {
			return nil, err
		}
	}
	if st.Frames > 1 && !useBOT && frags != st.Frames {
		return nil, errors.New("dicom: cannot locate frames: no offset table and fragments ≠ frames")
	}
	for n, ref := range wanted {
		if ref.off < 0 {
			delete(wanted, n) // no fragment: no such frame
		}
	}
	return wanted, nil
}

// CopyFrame streams a located frame of st to w with one ranged read.
func (s *Service) CopyFrame(ctx context.Context, st Stored, f FrameRef, w io.Writer) error {
	rc, err := s.cfg.Blobs.Open(ctx, st.BlobKey, f.off, f.end-f.off)
	if err != nil {
		return err
	}
	defer rc.Close()
	if !f.items {
		n, err := io.Copy(w, rc)
		if err == nil && n != f.Size {
			err = fmt.Errorf("dicom: frame %d: read %d of %d bytes", f.N, n, f.Size)
		}
		return err
	}
	p := &parser{r: bufio.NewReaderSize(rc, 32<<10)}
	var copied int64
	for copied < f.Size || p.off < f.end-f.off {
		t, _, l, err := p.header()
		if err != nil {
			return fmt.Errorf("dicom: frame %d: %w", f.N, err)
		}
		if t != tagItem || l == undefinedLength || l > maxFragment {
			return fmt.Errorf("dicom: frame %d: bad pixel data fragment", f.N)
		}
		n, err := io.CopyN(w, p.r, int64(l))
		p.off += n
		copied += n
		if err != nil {
			return fmt.Errorf("dicom: frame %d: %w", f.N, err)
		}
	}
	if copied != f.Size {
		return fmt.Errorf("dicom: frame %d: read %d of %d bytes", f.N, copied, f.Size)
	}
	return nil
}

// Frame returns frame n (1-based): the raw bytes for native pixel data, the
// frame's fragments concatenated for encapsulated data. Only that frame is
// held in memory; responses stream with LocateFrames and CopyFrame instead.
func (s *Service) Frame(ctx context.Context, st Stored, n int) ([]byte, error) {
	refs, err := s.LocateFrames(ctx, st, []int{n})
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Grow(int(refs[0].Size))
	if err := s.CopyFrame(ctx, st, refs[0], &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
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
	st, err := s.db.Instance(ctx, sopUID)
	if errors.Is(err, dicomdb.ErrNotFound) {
		return st, nil, fmt.Errorf("dicom: instance %s: %w", sopUID, os.ErrNotExist)
	}
	if err != nil {
		return st, nil, fmt.Errorf("dicom: open pixel data: %w", err)
	}
	if st.PixelOffset < 0 {
		return st, nil, ErrNoFrame
	}
	rc, err := s.cfg.Blobs.Open(ctx, st.BlobKey, st.PixelOffset, st.PixelLength)
	return st, rc, err
}
