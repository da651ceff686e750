package imaging

import (
	"fmt"
	"io"
	"math"
)

// Luma weights (ITU-R BT.601) for RGB into one channel.
const (
	lumaR = 0.299
	lumaG = 0.587
	lumaB = 0.114
)

// Tensor decodes the frame p.Frame picks from the Part-10 file r (size
// bytes) and returns the model input, float32 NCHW with N = 1 flattened
// (length c*h*w), and what the findings need to cite. Steps, in order:
// rescale → window → MONOCHROME1 inversion → channels → resize → mean/std
// (see Preprocess). Only the header and one frame are read.
func Tensor(r io.ReaderAt, size int64, p Preprocess, c, h, w int) ([]float32, Info, error) {
	if err := checkShape(p, c, h, w); err != nil {
		return nil, Info{}, err
	}
	im, err := Decode(r, size, p.Frame)
	if err != nil {
		return nil, Info{}, err
	}
	dst := make([]float32, c*h*w)
	info, err := im.tensor(dst, p, c, h, w, true)
	if err != nil {
		return nil, Info{}, err
	}
	return dst, info, nil
}

func checkShape(p Preprocess, c, h, w int) error {
	if err := p.Validate(c); err != nil {
		return err
	}
	if h < 1 || w < 1 || h*w > maxSamples {
		return fmt.Errorf("imaging: input size %d×%d", h, w)
	}
	return nil
}

// transform is the per-sample part of the pipeline (rescale, window,
// inversion) as one affine map y = a·x + b of the stored value x, clipped
// to [0,1] when clip. A window of width 1 is PS3.3's threshold instead:
// y = 1 when the rescaled value s·x + o is above c − ½.
type transform struct {
	a, b   float64
	clip   bool
	step   bool    // width-1 window
	s, o   float64 // step: rescale
	edge   float64 // step: c − ½
	invert bool    // step: MONOCHROME1
}

// voi resolves the window and the inversion for this image: the affine
// map of stored values and the window (center, width; zero for none) used.
func (im *Image) voi(p Preprocess) (transform, float64, float64) {
	s, b := 1.0, 0.0
	if p.Rescale {
		s, b = im.Slope, im.Intercept
	}
	invert := p.InvertMonochrome1 && im.Monochrome1()
	var lo, hi float64 // rescaled range of the frame, when needed
	if (p.Window.Mode == WindowDataset && !im.HasDatasetWindow) || (p.Window.Mode == WindowNone && invert) {
		mn, mx := float32(math.Inf(1)), float32(math.Inf(-1))
		for _, v := range im.Pix {
			mn, mx = min(mn, v), max(mx, v)
		}
		lo, hi = s*float64(mn)+b, s*float64(mx)+b
		if lo > hi {
			lo, hi = hi, lo
		}
	}
	var center, width float64
	switch p.Window.Mode {
	case WindowNone:
		if invert { // v' = max + min − v over the frame
			return transform{a: -s, b: hi + lo - b}, 0, 0
		}
		return transform{a: s, b: b}, 0, 0
	case WindowExplicit:
		center, width = p.Window.Center, p.Window.Width
	default:
		if im.HasDatasetWindow {
			center, width = im.DatasetCenter, im.DatasetWidth
		} else {
			// The window whose linear function maps lo to 0 and hi to 1.
			center, width = (lo+hi+1)/2, hi-lo+1
		}
	}
	if width <= 1 {
		return transform{step: true, s: s, o: b, edge: center - 0.5, invert: invert}, center, width
	}
	// y = (v − (c − ½)) / (w − 1) + ½ with v = s·x + b.
	a := s / (width - 1)
	bb := (b-(center-0.5))/(width-1) + 0.5
	if invert {
		a, bb = -a, 1-bb
	}
	return transform{a: a, b: bb, clip: true}, center, width
}

// apply maps n samples of src (stride apart) into dst.
func (t transform) apply(dst, src []float32, stride int) {
	n := len(dst)
	if t.step {
		for i := 0; i < n; i++ {
			on := t.s*float64(src[i*stride])+t.o > t.edge
			if on != t.invert {
				dst[i] = 1
			} else {
				dst[i] = 0
			}
		}
		return
	}
	a, b := float32(t.a), float32(t.b)
	if !t.clip {
		for i := 0; i < n; i++ {
			dst[i] = a*src[i*stride] + b
		}
		return
	}
	if stride == 1 {
		src = src[:n]
		for i, x := range src {
			v := a*x + b
			if v < 0 {
				v = 0
			} else if v > 1 {
				v = 1
			}
			dst[i] = v
		}
		return
	}
	for i := 0; i < n; i++ {
		v := a*src[i*stride] + b
		if v < 0 {
			v = 0
		} else if v > 1 {
			v = 1
		}
		dst[i] = v
	}
}

// Tensor runs the pipeline on a decoded frame, writing the c×h×w input
// into dst (len c*h*w). im is not modified.
func (im *Image) Tensor(dst []float32, p Preprocess, c, h, w int) (Info, error) {
	return im.tensor(dst, p, c, h, w, false)
}

// tensor is Tensor; with inPlace, a grey image's samples are transformed
// where they are (Tensor owns the Image it decoded), saving a frame-sized
// buffer.
func (im *Image) tensor(dst []float32, p Preprocess, c, h, w int, inPlace bool) (Info, error) {
	if err := checkShape(p, c, h, w); err != nil {
		return Info{}, err
	}
	if len(dst) != c*h*w {
		return Info{}, fmt.Errorf("imaging: dst has %d values for %d×%d×%d", len(dst), c, h, w)
	}
	rows, cols := im.Rows, im.Columns
	px := rows * cols
	if im.Samples != 1 && im.Samples != 3 || len(im.Pix) != px*im.Samples {
		return Info{}, fmt.Errorf("%w: %d samples for %d×%d×%d", ErrCorrupt, len(im.Pix), rows, cols, im.Samples)
	}
	t, center, width := im.voi(p)
	info := im.Info
	info.WindowCenter, info.WindowWidth = center, width

	hw := h * w
	rz := newResizer(p.Resize, rows, cols, h, w)
	var plane []float32
	if im.Samples == 1 && inPlace {
		plane = im.Pix
	} else {
		plane = make([]float32, px)
	}
	switch {
	case im.Samples == 1:
		t.apply(plane, im.Pix, 1)
		// Channels 1… are filled from channel 0 by the normalisation
		// below (no copy first).
		rz.resize(dst[:hw], plane)
	case c == 3:
		for k := 0; k < 3; k++ {
			t.apply(plane, im.Pix[k:], 3)
			rz.resize(dst[k*hw:(k+1)*hw], plane)
		}
	default: // RGB into one channel: BT.601 luma of the transformed samples
		g := make([]float32, px)
		bl := make([]float32, px)
		t.apply(plane, im.Pix[0:], 3)
		t.apply(g, im.Pix[1:], 3)
		t.apply(bl, im.Pix[2:], 3)
		for i := range plane {
			plane[i] = lumaR*plane[i] + lumaG*g[i] + lumaB*bl[i]
		}
		rz.resize(dst[:hw], plane)
	}
	// A grayscale image was resized into channel 0 only: every channel
	// reads it, channel 0 last since it is overwritten.
	shared := im.Samples == 1
	var sum float64 // NaN or ±Inf when any value is: one check at the end
	for k := c - 1; k >= 0; k-- {
		mean, std := p.Mean[0], p.Std[0]
		if len(p.Mean) > 1 {
			mean = p.Mean[k]
		}
		if len(p.Std) > 1 {
			std = p.Std[k]
		}
		m, inv := float32(mean), float32(1/std)
		ch := dst[k*hw : (k+1)*hw]
		src := ch
		if shared {
			src = dst[:hw]
		}
		var s float32
		for i, v := range src[:len(ch)] {
			v = (v - m) * inv
			ch[i] = v
			s += v - v // 0, or NaN for NaN and ±Inf
		}
		sum += float64(s)
	}
	if sum != 0 {
		// Only absurd RescaleSlope/Intercept, window or mean/std values get here.
		return Info{}, fmt.Errorf("%w: preprocessing overflows float32 (rescale %g/%g, window %g/%g)",
			ErrUnsupportedPixels, im.Slope, im.Intercept, center, width)
	}
	return info, nil
}

// resizer holds the source taps of each output column and row.
type resizer struct {
	nearest        bool
	inW, outW      int
	x0, x1, y0, y1 []int
	fx, fy         []float32
}

func newResizer(mode Resize, inH, inW, outH, outW int) *resizer {
	r := &resizer{nearest: mode == ResizeNearest, inW: inW, outW: outW}
	r.x0, r.x1, r.fx = taps(mode, inW, outW)
	r.y0, r.y1, r.fy = taps(mode, inH, outH)
	return r
}

// taps computes, for each of out positions, the source indices and the
// weight of the second: bilinear samples at (o+½)·in/out − ½, clamped to
// the edges; nearest takes floor((o+½)·in/out).
func taps(mode Resize, in, out int) (i0, i1 []int, f []float32) {
	i0, i1, f = make([]int, out), make([]int, out), make([]float32, out)
	for o := 0; o < out; o++ {
		i, frac := tap(mode, in, out, o)
		i0[o], i1[o], f[o] = i, min(i+1, in-1), float32(frac)
	}
	return i0, i1, f
}

// tap is the resize rule for one axis: output position o of out samples
// reads source index i (and i+1, clamped, with weight frac, for bilinear)
// of in.
func tap(mode Resize, in, out, o int) (i int, frac float64) {
	scale := float64(in) / float64(out)
	if mode == ResizeNearest {
		return min(int(math.Floor((float64(o)+0.5)*scale)), in-1), 0
	}
	s := (float64(o)+0.5)*scale - 0.5
	if s < 0 {
		s = 0
	}
	i = int(math.Floor(s))
	frac = s - float64(i)
	if i >= in-1 {
		i, frac = in-1, 0
	}
	return i, frac
}

// resize writes the resized plane (inH×inW) into dst (outH×outW).
func (r *resizer) resize(dst, src []float32) {
	w := r.outW
	if r.nearest {
		for y, sy := range r.y0 {
			row := src[sy*r.inW:]
			out := dst[y*w : (y+1)*w]
			for x, sx := range r.x0 {
				out[x] = row[sx]
			}
		}
		return
	}
	for y := range r.y0 {
		top, bot, fy := src[r.y0[y]*r.inW:], src[r.y1[y]*r.inW:], r.fy[y]
		out := dst[y*w : (y+1)*w]
		for x := range out {
			x0, x1, fx := r.x0[x], r.x1[x], r.fx[x]
			t := top[x0] + fx*(top[x1]-top[x0])
			b := bot[x0] + fx*(bot[x1]-bot[x0])
			out[x] = t + fy*(b-t)
		}
	}
}
