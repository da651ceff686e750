package jpegdec

import (
	"bytes"
	"errors"
	"image"
	"image/jpeg"
	"math"
	"math/bits"
	"math/rand/v2"
	"testing"
)

// bitWriter writes entropy-coded bits with 0xFF stuffing.
type bitWriter struct {
	out  []byte
	acc  uint32
	nacc uint
}

func (w *bitWriter) bits(v uint32, n uint) {
	for i := int(n) - 1; i >= 0; i-- {
		w.acc = w.acc<<1 | (v>>uint(i))&1
		w.nacc++
		if w.nacc == 8 {
			w.out = append(w.out, byte(w.acc))
			if byte(w.acc) == 0xFF {
				w.out = append(w.out, 0)
			}
			w.acc, w.nacc = 0, 0
		}
	}
}

// flush pads the last byte with ones (T.81 F.1.2.3).
func (w *bitWriter) flush() {
	for w.nacc != 0 {
		w.bits(1, 1)
	}
}

// encodeLossless is a minimal lossless JPEG encoder for the tests: every
// difference category has a 5-bit code; a restart every restartRows rows
// when > 0. It computes predictions from the original samples, as an
// encoder does, independently of the decoder's code.
func encodeLossless(pix []uint16, w, h, nc, prec, sv, restartRows int) []byte {
	seg := func(m byte, p []byte) []byte {
		return append([]byte{0xFF, m, byte((len(p) + 2) >> 8), byte(len(p) + 2)}, p...)
	}
	out := []byte{0xFF, 0xD8}
	sof := []byte{byte(prec), byte(h >> 8), byte(h), byte(w >> 8), byte(w), byte(nc)}
	for c := 0; c < nc; c++ {
		sof = append(sof, byte(c+1), 0x11, 0)
	}
	out = append(out, seg(0xC3, sof)...)
	dht := []byte{0x00, 0, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	for s := 0; s <= 16; s++ {
		dht = append(dht, byte(s))
	}
	out = append(out, seg(0xC4, dht)...)
	if restartRows > 0 {
		ri := restartRows * w
		out = append(out, seg(0xDD, []byte{byte(ri >> 8), byte(ri)})...)
	}
	sos := []byte{byte(nc)}
	for c := 0; c < nc; c++ {
		sos = append(sos, byte(c+1), 0x00)
	}
	out = append(out, seg(0xDA, append(sos, byte(sv), 0, 0))...)
	at := func(x, y, c int) int { return int(pix[(y*w+x)*nc+c]) }
	bw := &bitWriter{}
	rst := 0
	for y := 0; y < h; y++ {
		first := y == 0
		if restartRows > 0 && y > 0 && y%restartRows == 0 {
			bw.flush()
			bw.out = append(bw.out, 0xFF, byte(0xD0+rst))
			rst = (rst + 1) & 7
			first = true
		}
		for x := 0; x < w; x++ {
			for c := 0; c < nc; c++ {
				var p int
				switch {
				case x == 0 && first:
					p = 1 << (prec - 1)
				case x == 0:
					p = at(x, y-1, c)
				case first:
					p = at(x-1, y, c)
				default:
					a, b, cc := at(x-1, y, c), at(x, y-1, c), at(x-1, y-1, c)
					p = [8]int{0, a, b, cc, a + b - cc, a + (b-cc)>>1, b + (a-cc)>>1, (a + b) >> 1}[sv]
				}
				d := (at(x, y, c) - p) & 0xFFFF
				if d >= 32768 {
					d -= 65536
				}
				t := bits.Len(uint(max(d, -d))) // 16 only for −32768
				bw.bits(uint32(t), 5)
				switch {
				case t == 0 || t == 16:
				case d > 0:
					bw.bits(uint32(d), uint(t))
				default:
					bw.bits(uint32(d+(1<<t)-1), uint(t))
				}
			}
		}
	}
	bw.flush()
	out = append(out, bw.out...)
	return append(out, 0xFF, 0xD9)
}

func randomImage(r *rand.Rand, w, h, nc, prec int) []uint16 {
	pix := make([]uint16, w*h*nc)
	max := 1<<prec - 1
	for i := range pix {
		// Smooth with noise, and a few extreme jumps.
		v := (i/nc%w)*max/(2*w) + (i/nc/w)*max/(2*h) + r.IntN(64)
		if r.IntN(50) == 0 {
			v = r.IntN(max + 1)
		}
		pix[i] = uint16(min(v, max))
	}
	return pix
}

func TestLosslessRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct{ w, h, nc, prec, restart int }{
		{17, 9, 1, 16, 0}, {17, 9, 1, 12, 2}, {8, 8, 3, 8, 1}, {33, 5, 1, 2, 0}, {1, 1, 1, 16, 0}, {5, 12, 3, 16, 5},
	} {
		for sv := 1; sv <= 7; sv++ {
			pix := randomImage(r, c.w, c.h, c.nc, c.prec)
			data := encodeLossless(pix, c.w, c.h, c.nc, c.prec, sv, c.restart)
			fh, err := ReadFrameHeader(data)
			if err != nil || fh.Process != Lossless || fh.Width != c.w || fh.Height != c.h || fh.Precision != c.prec || fh.Components != c.nc {
				t.Fatalf("%+v: frame header %+v, %v", c, fh, err)
			}
			img, err := Decode(data)
			if err != nil {
				t.Fatalf("%+v sv %d: %v", c, sv, err)
			}
			for i := range pix {
				if img.Pix[i] != pix[i] {
					t.Fatalf("%+v sv %d: sample %d = %d, want %d", c, sv, i, img.Pix[i], pix[i])
				}
			}
			// Truncating the entropy-coded data is an error, not silent zeros.
			if len(data) > 64 {
				if _, err := Decode(append(data[:len(data)-12:len(data)-12], 0xFF, 0xD9)); err == nil {
					t.Errorf("%+v sv %d: truncated stream decoded", c, sv)
				}
			}
		}
	}
}

// TestSequential8 holds the DCT path (written for 12 bits) to image/jpeg
// on 8-bit grey images: the same stream decodes to within one unit.
func TestSequential8(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, size := range [][2]int{{64, 48}, {13, 29}, {8, 8}, {1, 1}} {
		g := image.NewGray(image.Rect(0, 0, size[0], size[1]))
		for i := range g.Pix {
			g.Pix[i] = uint8(i%size[0]*3 + r.IntN(40))
		}
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, g, &jpeg.Options{Quality: 85}); err != nil {
			t.Fatal(err)
		}
		ref, err := jpeg.Decode(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		img, err := Decode(buf.Bytes())
		if err != nil {
			t.Fatalf("%v: %v", size, err)
		}
		rg := ref.(*image.Gray)
		worst := 0.0
		for y := 0; y < size[1]; y++ {
			for x := 0; x < size[0]; x++ {
				worst = math.Max(worst, math.Abs(float64(img.Pix[y*size[0]+x])-float64(rg.Pix[y*rg.Stride+x])))
			}
		}
		if worst > 1 {
			t.Errorf("%v: max |Δ| %g against image/jpeg", size, worst)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	ok := encodeLossless([]uint16{1, 2, 3, 4}, 2, 2, 1, 8, 1, 0)
	for name, data := range map[string][]byte{
		"empty":       nil,
		"no SOI":      {0, 1, 2, 3},
		"SOI only":    {0xFF, 0xD8},
		"no scan":     append(ok[:2:2], 0xFF, 0xD9),
		"arithmetic":  {0xFF, 0xD8, 0xFF, 0xC9, 0, 11, 8, 0, 1, 0, 1, 1, 1, 0x11, 0, 0xFF, 0xD9},
		"progressive": {0xFF, 0xD8, 0xFF, 0xC2, 0, 11, 8, 0, 1, 0, 1, 1, 1, 0x11, 0, 0xFF, 0xD9},
		"huge":        {0xFF, 0xD8, 0xFF, 0xC3, 0, 11, 16, 0xFF, 0xFF, 0xFF, 0xFF, 1, 1, 0x11, 0, 0xFF, 0xD9},
		"truncated":   ok[:len(ok)-6],
	} {
		if _, err := Decode(data); err == nil || !errors.Is(err, ErrFormat) && !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	r := rand.New(rand.NewPCG(5, 6))
	f.Add(encodeLossless(randomImage(r, 9, 7, 1, 16), 9, 7, 1, 16, 1, 0))
	f.Add(encodeLossless(randomImage(r, 4, 6, 3, 8), 4, 6, 3, 8, 5, 2))
	f.Add(encodeLossless(randomImage(r, 5, 5, 1, 12), 5, 5, 1, 12, 7, 1))
	g := image.NewGray(image.Rect(0, 0, 16, 9))
	for i := range g.Pix {
		g.Pix[i] = uint8(i * 7)
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, g, nil); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := Decode(data)
		if err != nil {
			return
		}
		if len(img.Pix) != img.Width*img.Height*img.Components {
			t.Fatalf("%d samples for %d×%d×%d", len(img.Pix), img.Width, img.Height, img.Components)
		}
	})
}
