// Package imagingtest holds what tests of inference need besides the
// imaging package itself: Reference, the preprocessing pipeline written
// from the manifest's specification as plain float64 loops (the oracle the
// fast path is held to, and what end-to-end tests compute a model's
// expected output from), and File, a builder of small Part-10 files with
// chosen pixels.
//
// Depends on imaging (its decoded Image and Preprocess) only: decoding is
// tested separately, against dcmtk and across transfer syntaxes.
package imagingtest

import (
	"fmt"
	"math"
	"os"

	"github.com/emberfhir/ember/inference/imaging"
)

// ReferenceFile decodes the frame p picks from the Part-10 file at path and
// runs Reference on it.
func ReferenceFile(path string, p imaging.Preprocess, c, h, w int) ([]float64, imaging.Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, imaging.Info{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, imaging.Info{}, err
	}
	im, err := imaging.Decode(f, fi.Size(), p.Frame)
	if err != nil {
		return nil, imaging.Info{}, err
	}
	out, err := Reference(im, p, c, h, w)
	return out, im.Info, err
}

// Reference computes the model input (c×h×w, NCHW without N) from a decoded
// frame, step by step as the manifest documents them, in float64:
//
//  1. rescale: v = x·RescaleSlope + RescaleIntercept (when p.Rescale);
//  2. window (PS3.3 C.11.2.1.2.1, output [0,1]): explicit, or the data
//     set's, or else the window whose linear function maps the frame's
//     minimum to 0 and maximum to 1 (center (lo+hi+1)/2, width hi−lo+1);
//     "none" keeps v;
//  3. MONOCHROME1 (when p.InvertMonochrome1): 1 − v after a window,
//     max + min − v over the frame without one;
//  4. channels: grey into 3 is replicated, RGB into 1 is BT.601 luma;
//  5. resize: bilinear at half-pixel centres, clamped at the edges, or
//     nearest floor((o+½)·in/out);
//  6. (v − mean[c]) / std[c].
//
// imaging.Tensor agrees with it within 1e-5 of the tensor's largest
// magnitude (imaging's TestReference); an expected model output computed
// from Reference is therefore good to about that tolerance.
func Reference(im *imaging.Image, p imaging.Preprocess, c, h, w int) ([]float64, error) {
	if err := p.Validate(c); err != nil {
		return nil, err
	}
	rows, cols, spp := im.Rows, im.Columns, im.Samples
	if len(im.Pix) != rows*cols*spp || rows < 1 || cols < 1 {
		return nil, fmt.Errorf("imagingtest: image has %d samples for %d×%d×%d", len(im.Pix), rows, cols, spp)
	}
	// planes[s][y*cols+x]
	planes := make([][]float64, spp)
	for s := range planes {
		planes[s] = make([]float64, rows*cols)
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for i := 0; i < rows*cols; i++ {
		for s := 0; s < spp; s++ {
			v := float64(im.Pix[i*spp+s])
			if p.Rescale {
				v = v*im.Slope + im.Intercept
			}
			planes[s][i] = v
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}

	windowed := true
	var center, width float64
	switch p.Window.Mode {
	case imaging.WindowNone:
		windowed = false
	case imaging.WindowExplicit:
		center, width = p.Window.Center, p.Window.Width
	default:
		if im.HasDatasetWindow {
			center, width = im.DatasetCenter, im.DatasetWidth
		} else {
			center, width = (lo+hi+1)/2, hi-lo+1
		}
	}
	invert := p.InvertMonochrome1 && im.Photometric == "MONOCHROME1"
	for _, pl := range planes {
		for i, v := range pl {
			if windowed {
				switch {
				case v <= center-0.5-(width-1)/2:
					v = 0
				case v > center-0.5+(width-1)/2:
					v = 1
				default:
					v = (v-(center-0.5))/(width-1) + 0.5
				}
				if invert {
					v = 1 - v
				}
			} else if invert {
				v = hi + lo - v
			}
			pl[i] = v
		}
	}

	chans := make([][]float64, c)
	switch {
	case spp == c:
		copy(chans, planes)
	case spp == 1:
		for k := range chans {
			chans[k] = planes[0]
		}
	default:
		luma := make([]float64, rows*cols)
		for i := range luma {
			luma[i] = 0.299*planes[0][i] + 0.587*planes[1][i] + 0.114*planes[2][i]
		}
		chans[0] = luma
	}

	out := make([]float64, c*h*w)
	for k, src := range chans {
		mean, std := p.Mean[0], p.Std[0]
		if len(p.Mean) > 1 {
			mean = p.Mean[k]
		}
		if len(p.Std) > 1 {
			std = p.Std[k]
		}
		for oy := 0; oy < h; oy++ {
			for ox := 0; ox < w; ox++ {
				var v float64
				if p.Resize == imaging.ResizeNearest {
					sy := min(int(math.Floor((float64(oy)+0.5)*float64(rows)/float64(h))), rows-1)
					sx := min(int(math.Floor((float64(ox)+0.5)*float64(cols)/float64(w))), cols-1)
					v = src[sy*cols+sx]
				} else {
					y0, y1, fy := linearTap(oy, rows, h)
					x0, x1, fx := linearTap(ox, cols, w)
					a, b := src[y0*cols+x0], src[y0*cols+x1]
					cc, d := src[y1*cols+x0], src[y1*cols+x1]
					v = (1-fy)*((1-fx)*a+fx*b) + fy*((1-fx)*cc+fx*d)
				}
				out[k*h*w+oy*w+ox] = (v - mean) / std
			}
		}
	}
	return out, nil
}

// linearTap: output o of out reads source positions i0 and i1 of in with
// weight f on i1, sampling at (o+½)·in/out − ½ clamped to [0, in−1].
func linearTap(o, in, out int) (i0, i1 int, f float64) {
	s := (float64(o)+0.5)*float64(in)/float64(out) - 0.5
	s = math.Max(0, math.Min(s, float64(in-1)))
	i0 = int(math.Floor(s))
	f = s - float64(i0)
	i1 = min(i0+1, in-1)
	return i0, i1, f
}
