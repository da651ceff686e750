package imaging_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/emberfhir/ember/inference/imaging"
	"github.com/emberfhir/ember/inference/imaging/imagingtest"
	"github.com/emberfhir/ember/internal/dicomsamples"
)

func pre(t testing.TB, raw string) imaging.Preprocess {
	t.Helper()
	p, err := imaging.ParsePreprocess([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func tensorOf(t testing.TB, b []byte, p imaging.Preprocess, c, h, w int) []float32 {
	t.Helper()
	out, _, err := imaging.Tensor(bytes.NewReader(b), int64(len(b)), p, c, h, w)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func near(t *testing.T, what string, got []float32, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		if math.Abs(float64(got[i])-want[i]) > 1e-6*math.Max(1, math.Abs(want[i])) {
			t.Fatalf("%s: %v, want %v", what, got, want)
		}
	}
}

func le16(vs ...int) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint16(b, uint16(int16(v)))
	}
	return b
}

// TestPipelineByHand checks each step on tiny images against values
// computed by hand from the manifest's definitions.
func TestPipelineByHand(t *testing.T) {
	// Stored 0,100,200,300; slope 2, intercept −100: rescaled −100,100,300,500.
	f := imagingtest.File{Modality: "CT", Rows: 2, Columns: 2, BitsAllocated: 16, RescaleSlope: "2", RescaleIntercept: "-100",
		Pixels: le16(0, 100, 200, 300)}
	ct := f.Bytes()
	// Window c=200, w=401: y = (v − 199.5)/400 + ½, clipped.
	near(t, "explicit window", tensorOf(t, ct, pre(t, `{"window": {"center": 200, "width": 401}}`), 1, 2, 2),
		[]float64{0, 0.25125, 0.75125, 1})
	near(t, "explicit window, no rescale", tensorOf(t, ct, pre(t, `{"rescale": false, "window": {"center": 200, "width": 401}}`), 1, 2, 2),
		[]float64{0.00125, 0.25125, 0.50125, 0.75125})
	// No window in the data set: min–max, c = 200.5, w = 601.
	near(t, "dataset window absent: min–max", tensorOf(t, ct, pre(t, `{}`), 1, 2, 2), []float64{0, 1.0 / 3, 2.0 / 3, 1})
	near(t, "window none", tensorOf(t, ct, pre(t, `{"window": "none"}`), 1, 2, 2), []float64{-100, 100, 300, 500})
	// Width 1: a threshold at c − ½.
	near(t, "width 1", tensorOf(t, ct, pre(t, `{"window": {"center": 100.5, "width": 1}}`), 1, 2, 2), []float64{0, 0, 1, 1})
	neg := f
	neg.RescaleSlope, neg.RescaleIntercept = "-1", "0"
	near(t, "width 1, negative slope", tensorOf(t, neg.Bytes(), pre(t, `{"window": {"center": -99.5, "width": 1}}`), 1, 2, 2),
		[]float64{1, 0, 0, 0})

	withWin := f
	withWin.WindowCenter, withWin.WindowWidth = `100\50`, `201\20` // first values count
	near(t, "dataset window", tensorOf(t, withWin.Bytes(), pre(t, `{"window": "dataset"}`), 1, 2, 2),
		[]float64{0, 0.5025, 1, 1})

	m1 := f
	m1.Photometric = "MONOCHROME1"
	near(t, "MONOCHROME1 windowed", tensorOf(t, m1.Bytes(), pre(t, `{}`), 1, 2, 2), []float64{1, 2.0 / 3, 1.0 / 3, 0})
	near(t, "MONOCHROME1 none", tensorOf(t, m1.Bytes(), pre(t, `{"window": "none"}`), 1, 2, 2), []float64{500, 300, 100, -100})
	near(t, "MONOCHROME1 kept", tensorOf(t, m1.Bytes(), pre(t, `{"invertMonochrome1": false}`), 1, 2, 2), []float64{0, 1.0 / 3, 2.0 / 3, 1})
	m1.WindowCenter, m1.WindowWidth = "100", "201"
	near(t, "MONOCHROME1 dataset window, width 1", tensorOf(t, m1.Bytes(), pre(t, `{"window": {"center": 100.5, "width": 1}}`), 1, 2, 2),
		[]float64{1, 1, 0, 0})

	// Resize: 4×4 → 2×2 bilinear is the mean of each 2×2 block; nearest
	// takes the pixel holding each output centre: (1,1), (1,3), (3,1), (3,3).
	var v16 []int
	for i := 0; i < 16; i++ {
		v16 = append(v16, i*i)
	}
	sq := imagingtest.File{Rows: 4, Columns: 4, BitsAllocated: 16, Pixels: le16(v16...)}.Bytes()
	none := `"window": "none"`
	blk := func(i0 int) float64 {
		return float64(v16[i0]+v16[i0+1]+v16[i0+4]+v16[i0+5]) / 4
	}
	near(t, "bilinear down", tensorOf(t, sq, pre(t, `{`+none+`}`), 1, 2, 2), []float64{blk(0), blk(2), blk(8), blk(10)})
	near(t, "nearest down", tensorOf(t, sq, pre(t, `{`+none+`, "resize": "nearest"}`), 1, 2, 2),
		[]float64{float64(v16[5]), float64(v16[7]), float64(v16[13]), float64(v16[15])})
	row := imagingtest.File{Rows: 1, Columns: 2, BitsAllocated: 16, Pixels: le16(10, 30)}.Bytes()
	near(t, "bilinear up, clamped edges", tensorOf(t, row, pre(t, `{`+none+`}`), 1, 1, 4), []float64{10, 15, 25, 30})
	near(t, "nearest up", tensorOf(t, row, pre(t, `{`+none+`, "resize": "nearest"}`), 1, 2, 4), []float64{10, 10, 30, 30, 10, 10, 30, 30})

	// Channels and mean/std.
	rgb := imagingtest.File{Rows: 1, Columns: 1, Samples: 3, Photometric: "RGB", BitsAllocated: 8, Pixels: []byte{10, 20, 30, 0}}.Bytes()
	near(t, "RGB → luma", tensorOf(t, rgb, pre(t, `{`+none+`}`), 1, 1, 1), []float64{0.299*10 + 0.587*20 + 0.114*30})
	near(t, "RGB → RGB, mean/std", tensorOf(t, rgb, pre(t, `{`+none+`, "mean": [1, 2, 3], "std": [1, 2, 4]}`), 3, 1, 1), []float64{9, 9, 6.75})
	near(t, "RGB /255 window", tensorOf(t, rgb, pre(t, `{"window": {"center": 128, "width": 256}}`), 3, 1, 1),
		[]float64{10.0 / 255, 20.0 / 255, 30.0 / 255})
	grey := imagingtest.File{Rows: 1, Columns: 1, BitsAllocated: 8, Pixels: []byte{10, 0}}.Bytes()
	near(t, "grey → 3, mean/std", tensorOf(t, grey, pre(t, `{`+none+`, "mean": [1, 2, 3], "std": [1, 2, 4]}`), 3, 1, 1), []float64{9, 4, 1.75})
	near(t, "grey → 3, one mean", tensorOf(t, grey, pre(t, `{`+none+`, "mean": [4], "std": [2]}`), 3, 1, 1), []float64{3, 3, 3})

	_, info, err := imaging.Tensor(bytes.NewReader(withWin.Bytes()), int64(len(withWin.Bytes())), pre(t, `{}`), 1, 2, 2)
	if err != nil || info.WindowCenter != 100 || info.WindowWidth != 201 || info.Modality != "CT" || info.SOPInstanceUID != "1.2.3.4.5" {
		t.Errorf("info: %+v %v", info, err)
	}
	if _, _, err := imaging.Tensor(bytes.NewReader(ct), int64(len(ct)), pre(t, `{"mean": [1, 2]}`), 3, 2, 2); err == nil {
		t.Error("mean of 2 for 3 channels: no error")
	}
	huge := f
	huge.RescaleSlope = "1e300"
	if _, _, err := imaging.Tensor(bytes.NewReader(huge.Bytes()), int64(len(huge.Bytes())), pre(t, `{"window": "none"}`), 1, 2, 2); !errors.Is(err, imaging.ErrUnsupportedPixels) {
		t.Errorf("non-finite result: %v", err)
	}
}

// referenceCases are the files and manifests the fast path is held to the
// reference on.
func referenceCases(t *testing.T) (files map[string][]byte, pres map[string]string) {
	files = map[string][]byte{}
	for _, name := range []string{dicomsamples.CTSmall, dicomsamples.MRSmall, dicomsamples.MRRLE, dicomsamples.JPEGExtended,
		dicomsamples.JPEGBaseline, dicomsamples.RGBRLE, dicomsamples.RGBUncompress, "SC_rgb_rle_2frame.dcm", "ExplVR_BigEnd.dcm",
		"SC_rgb_jpeg_gdcm.dcm"} {
		b, err := os.ReadFile(sample(t, name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = b
	}
	var px []int
	for i := 0; i < 40*30; i++ {
		px = append(px, (i*37)%4096)
	}
	files["synthetic MONOCHROME1"] = imagingtest.File{Modality: "CR", Photometric: "MONOCHROME1", Rows: 40, Columns: 30,
		BitsAllocated: 16, BitsStored: 12, Frames: 1, RescaleSlope: "0.5", RescaleIntercept: "10", Pixels: le16(px...)}.Bytes()
	files["synthetic MONOCHROME1 with window"] = imagingtest.File{Modality: "CR", Photometric: "MONOCHROME1", Rows: 30, Columns: 40,
		BitsAllocated: 16, BitsStored: 12, WindowCenter: "800", WindowWidth: "1000", Pixels: le16(px...)}.Bytes()
	pres = map[string]string{
		"defaults":            `{}`,
		"CT lung":             `{"window": {"center": -600, "width": 1500}, "resize": "bilinear"}`,
		"none, ImageNet-ish":  `{"window": "none", "mean": [100, 50, 0], "std": [200, 100, 50]}`,
		"nearest, no rescale": `{"rescale": false, "resize": "nearest", "frame": "last"}`,
		"kept MONOCHROME1":    `{"invertMonochrome1": false, "window": "none", "frame": "middle"}`,
		"width 1":             `{"window": {"center": 300, "width": 1}}`,
	}
	return files, pres
}

// TestReference holds the fast path to imagingtest.Reference (float64,
// plain loops) within 1e-5 of the tensor's largest magnitude.
func TestReference(t *testing.T) {
	files, pres := referenceCases(t)
	shapes := [][3]int{{1, 224, 224}, {3, 64, 64}, {1, 37, 53}, {3, 5, 300}, {1, 1, 1}}
	for fname, b := range files {
		for pname, raw := range pres {
			p := pre(t, raw)
			for _, s := range shapes {
				if len(p.Mean) == 3 && s[0] != 3 {
					continue
				}
				got, info, err := imaging.Tensor(bytes.NewReader(b), int64(len(b)), p, s[0], s[1], s[2])
				if err != nil {
					t.Fatalf("%s, %s, %v: %v", fname, pname, s, err)
				}
				im, err := imaging.Decode(bytes.NewReader(b), int64(len(b)), p.Frame)
				if err != nil {
					t.Fatal(err)
				}
				want, err := imagingtest.Reference(im, p, s[0], s[1], s[2])
				if err != nil {
					t.Fatal(err)
				}
				scale := 1.0
				for _, v := range want {
					scale = math.Max(scale, math.Abs(v))
				}
				for i := range want {
					if d := math.Abs(float64(got[i]) - want[i]); d > 1e-5*scale {
						t.Fatalf("%s, %s, %v (frame %d): [%d] = %g, reference %g (scale %g)", fname, pname, s, info.Frame, i, got[i], want[i], scale)
					}
				}
			}
		}
	}
	// ReferenceFile is the same from a path.
	path := sample(t, dicomsamples.CTSmall)
	want, info, err := imagingtest.ReferenceFile(path, pre(t, `{}`), 1, 8, 8)
	if err != nil || len(want) != 64 || info.Modality != "CT" {
		t.Fatalf("ReferenceFile: %v %d %+v", err, len(want), info)
	}
}

// FuzzTensor: any bytes give a tensor or an error, never a panic, and a
// tensor has the asked length and finite values.
func FuzzTensor(f *testing.F) {
	for _, name := range []string{dicomsamples.MRSmall, dicomsamples.MRRLE, dicomsamples.JPEGBaseline, dicomsamples.RGBRLE,
		dicomsamples.RGBUncompress, "SC_rgb_jpeg_gdcm.dcm", "SC_rgb_small_odd_jpeg.dcm", "SC_rgb_rle_2frame.dcm", dicomsamples.MRBigEndian,
		dicomsamples.MRImplicit} {
		b, err := os.ReadFile(sample(f, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(0))
	}
	f.Add(imagingtest.File{Rows: 3, Columns: 2, Frames: 2, BitsAllocated: 16, Photometric: "MONOCHROME1", Pixels: le16(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)}.Bytes(), uint8(1))
	f.Add(imagingtest.File{TransferSyntax: "1.2.840.10008.1.2.4.70", Rows: 2, Columns: 2, BitsAllocated: 16,
		Fragments: [][]byte{{0xFF, 0xD8, 0xFF, 0xC3, 0, 11, 8, 0, 2, 0, 2, 1, 1, 0x11, 0, 0xFF, 0xD9}}}.Bytes(), uint8(2))
	pres := []imaging.Preprocess{
		pre(f, `{}`),
		pre(f, `{"window": "none", "frame": "last", "resize": "nearest"}`),
		pre(f, `{"window": {"center": 10, "width": 1}, "frame": "middle"}`),
	}
	f.Fuzz(func(t *testing.T, b []byte, sel uint8) {
		p := pres[int(sel)%len(pres)]
		c := 1 + 2*int(sel>>7)
		out, _, err := imaging.Tensor(bytes.NewReader(b), int64(len(b)), p, c, 7, 9)
		if err != nil {
			return
		}
		if len(out) != c*7*9 {
			t.Fatalf("%d values", len(out))
		}
		for _, v := range out {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("non-finite value %g", v)
			}
		}
	})
}

// ct512 is a 512×512 signed 16-bit CT slice (CT_small scaled up, with
// rescale and a window in the data set), in memory and on disk.
func ct512(tb testing.TB) ([]byte, string) {
	tb.Helper()
	small := decodeFile(tb, sample(tb, dicomsamples.CTSmall), imaging.Frame{})
	var px []int
	for y := 0; y < 512; y++ {
		for x := 0; x < 512; x++ {
			px = append(px, int(small.Pix[(y/4)*128+x/4]))
		}
	}
	b := imagingtest.File{Modality: "CT", BodyPart: "CHEST", Rows: 512, Columns: 512, BitsAllocated: 16, PixelRepresentation: 1,
		RescaleSlope: "1", RescaleIntercept: "-1024", WindowCenter: "40", WindowWidth: "400", Pixels: le16(px...)}.Bytes()
	path := filepath.Join(tb.TempDir(), "ct512.dcm")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	return b, path
}

// BenchmarkTensor: a 512×512 CT slice to a 1×1×224×224 tensor, from a file
// (os.File as the io.ReaderAt, as the runner reads blobs) and from memory,
// and the RGB and JPEG-lossless paths.
func BenchmarkTensor(b *testing.B) {
	data, path := ct512(b)
	p := pre(b, `{"window": "dataset", "mean": [0.5], "std": [0.25]}`)
	b.Run("CT512-file", func(b *testing.B) {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		for b.Loop() {
			if _, _, err := imaging.Tensor(f, int64(len(data)), p, 1, 224, 224); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("CT512-memory", func(b *testing.B) {
		r := bytes.NewReader(data)
		for b.Loop() {
			if _, _, err := imaging.Tensor(r, int64(len(data)), p, 1, 224, 224); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("CT512-jpeg-lossless", func(b *testing.B) {
		ll, err := os.ReadFile(dcmtk(b, "dcmcjpeg", path, "+e1"))
		if err != nil {
			b.Fatal(err)
		}
		r := bytes.NewReader(ll)
		for b.Loop() {
			if _, _, err := imaging.Tensor(r, int64(len(ll)), p, 1, 224, 224); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("CT512-3x224x224", func(b *testing.B) {
		r := bytes.NewReader(data)
		p3 := pre(b, `{"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}`)
		for b.Loop() {
			if _, _, err := imaging.Tensor(r, int64(len(data)), p3, 3, 224, 224); err != nil {
				b.Fatal(err)
			}
		}
	})
}
