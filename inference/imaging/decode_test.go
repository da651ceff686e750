package imaging_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/emberfhir/ember/inference/imaging"
	"github.com/emberfhir/ember/inference/imaging/imagingtest"
	"github.com/emberfhir/ember/internal/dicomsamples"
	"github.com/emberfhir/ember/internal/testenv"
)

// sample is the path of a committed pydicom test file.
func sample(t testing.TB, name string) string {
	t.Helper()
	p, err := dicomsamples.Pydicom(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// dcmtk runs a dcmtk converter (dcmcjpeg, dcmdjpeg, dcmcrle, dcmdrle,
// dcmconv) on in and returns the path of its output.
func dcmtk(t testing.TB, tool, in string, args ...string) string {
	t.Helper()
	bin := testenv.DCMTKTool(t, tool)
	out := filepath.Join(t.TempDir(), filepath.Base(in)+"."+tool+".dcm")
	cmd := exec.Command(bin, append(args, in, out)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v %s: %v\n%s", tool, args, in, err, b)
	}
	return out
}

func decodeFile(t testing.TB, path string, frame imaging.Frame) *imaging.Image {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	im, err := imaging.Decode(bytes.NewReader(b), int64(len(b)), frame)
	if err != nil {
		t.Fatalf("%s: %v", filepath.Base(path), err)
	}
	return im
}

func decodeBytes(b []byte, frame imaging.Frame) (*imaging.Image, error) {
	return imaging.Decode(bytes.NewReader(b), int64(len(b)), frame)
}

// samePixels compares two decodings: exact (tol 0) or within tol per
// sample, with a mean absolute difference under meanTol.
func samePixels(t *testing.T, what string, got, want *imaging.Image, tol, meanTol float64) {
	t.Helper()
	if got.Rows != want.Rows || got.Columns != want.Columns || got.Samples != want.Samples || len(got.Pix) != len(want.Pix) {
		t.Fatalf("%s: %d×%d×%d (%d), want %d×%d×%d (%d)", what, got.Rows, got.Columns, got.Samples, len(got.Pix),
			want.Rows, want.Columns, want.Samples, len(want.Pix))
	}
	worst, sum := 0.0, 0.0
	at := -1
	for i := range got.Pix {
		d := math.Abs(float64(got.Pix[i] - want.Pix[i]))
		sum += d
		if d > worst {
			worst, at = d, i
		}
	}
	mean := sum / float64(len(got.Pix))
	if worst > tol || mean > meanTol {
		t.Errorf("%s: max |Δ| %g at %d (got %g, want %g), mean |Δ| %g; tolerance %g, mean %g",
			what, worst, at, got.Pix[at], want.Pix[at], mean, tol, meanTol)
	} else {
		t.Logf("%s: max |Δ| %g, mean |Δ| %.4f", what, worst, mean)
	}
}

// TestLosslessSyntaxes decodes the same images in every lossless encoding
// the pydicom samples and dcmtk give and requires identical stored values.
func TestLosslessSyntaxes(t *testing.T) {
	first := imaging.Frame{}
	mr := decodeFile(t, sample(t, dicomsamples.MRSmall), first)
	if mr.Rows != 64 || mr.Columns != 64 || mr.Samples != 1 || mr.Modality != "MR" {
		t.Fatalf("MR_small: %+v", mr.Info)
	}
	ct := decodeFile(t, sample(t, dicomsamples.CTSmall), first)
	if ct.Rows != 128 || ct.Intercept != -1024 || ct.Slope != 1 {
		t.Fatalf("CT_small: %+v slope %g intercept %g", ct.Info, ct.Slope, ct.Intercept)
	}
	rgb := decodeFile(t, sample(t, dicomsamples.RGBRLE), first)
	rgbNative := dcmtk(t, "dcmdrle", sample(t, dicomsamples.RGBRLE))
	planar := decodeFile(t, sample(t, "ExplVR_BigEnd.dcm"), first)

	for _, c := range []struct {
		name string
		path string
		want *imaging.Image
	}{
		{"MR implicit VR", sample(t, dicomsamples.MRImplicit), mr},
		{"MR big endian", sample(t, dicomsamples.MRBigEndian), mr},
		{"MR RLE (pydicom)", sample(t, dicomsamples.MRRLE), mr},
		{"MR RLE (dcmcrle)", dcmtk(t, "dcmcrle", sample(t, dicomsamples.MRSmall)), mr},
		{"MR JPEG lossless SV1", dcmtk(t, "dcmcjpeg", sample(t, dicomsamples.MRSmall), "+e1"), mr},
		{"CT RLE", dcmtk(t, "dcmcrle", sample(t, dicomsamples.CTSmall)), ct},
		{"CT JPEG lossless SV1", dcmtk(t, "dcmcjpeg", sample(t, dicomsamples.CTSmall), "+e1"), ct},
		{"CT JPEG lossless SV7, point transform 0", dcmtk(t, "dcmcjpeg", sample(t, dicomsamples.CTSmall), "+el", "+sv", "7"), ct},
		{"RGB JPEG lossless SV1 (GDCM)", sample(t, "SC_rgb_jpeg_gdcm.dcm"), rgb},
		{"RGB JPEG lossless SV1 (dcmtk)", dcmtk(t, "dcmcjpeg", rgbNative, "+e1"), rgb},
		{"RGB native (dcmdrle)", rgbNative, rgb},
		// Planar RGB, big endian, against RLE and little endian encodings of it.
		{"planar RGB big endian → RLE", dcmtk(t, "dcmcrle", sample(t, "ExplVR_BigEnd.dcm")), planar},
		{"planar RGB big endian → little endian", dcmtk(t, "dcmconv", sample(t, "ExplVR_BigEnd.dcm"), "+te"), planar},
		{"planar RGB big endian → JPEG lossless", dcmtk(t, "dcmcjpeg", sample(t, "ExplVR_BigEnd.dcm"), "+e1"), planar},
	} {
		t.Run(c.name, func(t *testing.T) {
			samePixels(t, c.name, decodeFile(t, c.path, first), c.want, 0, 0)
		})
	}
	for sv := 1; sv <= 7; sv++ {
		p := dcmtk(t, "dcmcjpeg", sample(t, dicomsamples.MRSmall), "+el", "+sv", string(rune('0'+sv)))
		samePixels(t, "MR JPEG lossless predictor "+string(rune('0'+sv)), decodeFile(t, p, first), mr, 0, 0)
	}
}

// TestLossySyntaxes compares JPEG baseline and extended decodings with the
// lossless original (or dcmtk's own decoding) within a tolerance.
func TestLossySyntaxes(t *testing.T) {
	first := imaging.Frame{}
	rgb := decodeFile(t, sample(t, dicomsamples.RGBRLE), first)
	// Baseline YBR_FULL from dcmtk: lossy against the original…
	base := decodeFile(t, sample(t, dicomsamples.JPEGBaseline), first)
	samePixels(t, "RGB JPEG baseline vs original", base, rgb, 64, 3)
	// …and close to libjpeg's own decoding (dcmdjpeg).
	samePixels(t, "RGB JPEG baseline vs dcmdjpeg", base, decodeFile(t, dcmtk(t, "dcmdjpeg", sample(t, dicomsamples.JPEGBaseline)), first), 3, 0.5)

	small := decodeFile(t, sample(t, dicomsamples.RGBUncompress), first)
	samePixels(t, "RGB 3×3 JPEG baseline vs original", decodeFile(t, sample(t, "SC_rgb_small_odd_jpeg.dcm"), first), small, 16, 6)

	// 12-bit extended (process 4): jpegdec against dcmdjpeg (libjpeg's
	// integer IDCT) on pydicom's sample…
	ext := decodeFile(t, sample(t, dicomsamples.JPEGExtended), first)
	if ext.Rows != 1024 || ext.Columns != 256 || ext.BodyPart != "WHOLE BODY" {
		t.Fatalf("JPGExtended: %+v", ext.Info)
	}
	samePixels(t, "12-bit JPEG extended vs dcmdjpeg", ext, decodeFile(t, dcmtk(t, "dcmdjpeg", sample(t, dicomsamples.JPEGExtended)), first), 1, 0.05)

	// …and on MR_small encoded by dcmtk at 12 bits, against the original.
	mr := decodeFile(t, sample(t, dicomsamples.MRSmall), first)
	mr12 := dcmtk(t, "dcmcjpeg", sample(t, dicomsamples.MRSmall), "+ee", "+q", "100")
	got := decodeFile(t, mr12, first)
	samePixels(t, "MR 12-bit extended vs dcmdjpeg", got, decodeFile(t, dcmtk(t, "dcmdjpeg", mr12), first), 1, 0.05)
	_ = mr

	// Baseline RGB without colour transform: dcmtk marks it (Adobe, "RGB"
	// component ids) and image/jpeg honours that…
	rgbNative := dcmtk(t, "dcmdrle", sample(t, dicomsamples.RGBRLE))
	samePixels(t, "RGB JPEG baseline, RGB components (dcmtk +cr)", decodeFile(t, dcmtk(t, "dcmcjpeg", rgbNative, "+eb", "+cr"), first), rgb, 64, 3)
	// …while a stream without markers is read as the data set says.
	src := image.NewYCbCr(image.Rect(0, 0, 16, 8), image.YCbCrSubsampleRatio444)
	want := &imaging.Image{Samples: 3}
	for i := range src.Y {
		// Go's encoder subsamples the 2nd and 3rd components 4:2:0, so
		// they are constant here; the first varies smoothly.
		r, g, b := uint8(i%16*8+i/16*4), uint8(100), uint8(200)
		src.Y[i], src.Cb[i], src.Cr[i] = r, g, b
		want.Pix = append(want.Pix, float32(r), float32(g), float32(b))
	}
	var jb bytes.Buffer
	if err := jpeg.Encode(&jb, src, &jpeg.Options{Quality: 100}); err != nil {
		t.Fatal(err)
	}
	unmarked := imagingtest.File{TransferSyntax: "1.2.840.10008.1.2.4.50", Photometric: "RGB", Rows: 8, Columns: 16, Samples: 3,
		BitsAllocated: 8, Fragments: [][]byte{jb.Bytes()}}
	im, err := decodeBytes(unmarked.Bytes(), first)
	if err != nil {
		t.Fatal(err)
	}
	want.Info = im.Info
	samePixels(t, "unmarked RGB JPEG", im, want, 4, 1)
	unmarked.Photometric = "YBR_FULL"
	if im, err = decodeBytes(unmarked.Bytes(), first); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(want.Pix); i += 3 {
		r, g, b := color.YCbCrToRGB(uint8(want.Pix[i]), uint8(want.Pix[i+1]), uint8(want.Pix[i+2]))
		want.Pix[i], want.Pix[i+1], want.Pix[i+2] = float32(r), float32(g), float32(b)
	}
	samePixels(t, "unmarked YBR_FULL JPEG", im, want, 4, 1)

	// 8-bit extended goes to image/jpeg, like baseline.
	ext8 := dcmtk(t, "dcmcjpeg", dcmtk(t, "dcmdrle", sample(t, dicomsamples.RGBRLE)), "+ee", "+q", "95")
	samePixels(t, "RGB 8-bit extended vs original", decodeFile(t, ext8, first), rgb, 64, 3)
}

// TestMultiFrame checks the frame rules and encapsulated frame location
// (offset table, none, several fragments per frame) on a 3-frame image.
func TestMultiFrame(t *testing.T) {
	const rows, cols, frames = 16, 12, 3
	pix := make([]byte, rows*cols*frames*2)
	for f := 0; f < frames; f++ {
		for i := 0; i < rows*cols; i++ {
			binary.LittleEndian.PutUint16(pix[2*(f*rows*cols+i):], uint16(1000*f+i*7%301))
		}
	}
	native := imagingtest.File{Modality: "XA", Rows: rows, Columns: cols, Frames: frames, BitsAllocated: 16, BitsStored: 12,
		Pixels: pix}.Bytes()
	dir := t.TempDir()
	path := filepath.Join(dir, "mf.dcm")
	if err := os.WriteFile(path, native, 0o644); err != nil {
		t.Fatal(err)
	}
	variants := map[string]string{
		"native":                      path,
		"lossless, offset table":      dcmtk(t, "dcmcjpeg", path, "+e1"),
		"lossless, no offset table":   dcmtk(t, "dcmcjpeg", path, "+e1", "-ot"),
		"lossless, 1 KB fragments":    dcmtk(t, "dcmcjpeg", path, "+e1", "+fs", "1"),
		"RLE":                         dcmtk(t, "dcmcrle", path),
		"RLE, 1 KB fragments":         dcmtk(t, "dcmcrle", path, "+fs", "1"),
		"extended 12-bit, q100":       dcmtk(t, "dcmcjpeg", path, "+ee", "+q", "100"),
		"lossless, predictor 6, 1 KB": dcmtk(t, "dcmcjpeg", path, "+el", "+sv", "6", "+fs", "1"),
	}
	rules := []struct {
		rule imaging.Frame
		want int
	}{
		{imaging.Frame{Rule: imaging.FrameFirst}, 0},
		{imaging.Frame{Rule: imaging.FrameMiddle}, 1},
		{imaging.Frame{Rule: imaging.FrameLast}, 2},
		{imaging.Frame{Rule: imaging.FrameIndex, Index: 1}, 1},
	}
	for name, p := range variants {
		t.Run(name, func(t *testing.T) {
			tol, meanTol := 0.0, 0.0
			if name == "extended 12-bit, q100" {
				tol, meanTol = 8, 1
			}
			for _, r := range rules {
				im := decodeFile(t, p, r.rule)
				if im.Frame != r.want || im.Frames != frames {
					t.Fatalf("%s: frame %d of %d, want %d of %d", r.rule, im.Frame, im.Frames, r.want, frames)
				}
				want := &imaging.Image{Info: im.Info, Samples: 1, Pix: make([]float32, rows*cols)}
				for i := range want.Pix {
					want.Pix[i] = float32(binary.LittleEndian.Uint16(pix[2*(r.want*rows*cols+i):]))
				}
				samePixels(t, name+" "+r.rule.String(), im, want, tol, meanTol)
			}
			b, _ := os.ReadFile(p)
			if _, err := decodeBytes(b, imaging.Frame{Rule: imaging.FrameIndex, Index: 3}); !errors.Is(err, imaging.ErrNoFrame) {
				t.Errorf("frame 3: %v, want ErrNoFrame", err)
			}
		})
	}
	// pydicom's 2-frame RLE RGB against dcmtk's decompression of it.
	rle2 := sample(t, "SC_rgb_rle_2frame.dcm")
	nat2 := dcmtk(t, "dcmdrle", rle2)
	for _, r := range rules[:3] {
		got, want := decodeFile(t, rle2, r.rule), decodeFile(t, nat2, r.rule)
		if got.Frame != min(r.want, 1) {
			t.Errorf("2 frames, %s: frame %d", r.rule, got.Frame)
		}
		samePixels(t, "2-frame RLE RGB "+r.rule.String(), got, want, 0, 0)
	}
}

// TestNativeLayouts decodes synthetic native data: bits stored below
// allocated with a high bit not at the top, signed 8 and 16 bits,
// MONOCHROME1, planar and interleaved RGB, YBR_FULL.
func TestNativeLayouts(t *testing.T) {
	check := func(name string, f imagingtest.File, want []float32) {
		t.Helper()
		im, err := decodeBytes(f.Bytes(), imaging.Frame{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(im.Pix) != len(want) {
			t.Fatalf("%s: %d samples, want %d", name, len(im.Pix), len(want))
		}
		for i := range want {
			if im.Pix[i] != want[i] {
				t.Fatalf("%s: %v, want %v", name, im.Pix, want)
			}
		}
	}
	le := func(vs ...uint16) []byte {
		var b []byte
		for _, v := range vs {
			b = binary.LittleEndian.AppendUint16(b, v)
		}
		return b
	}
	// 12 bits stored at bits 13..2 (HighBit 13), garbage in the others.
	check("12 in 16, high bit 13", imagingtest.File{Rows: 1, Columns: 3, BitsAllocated: 16, BitsStored: 12, HighBit: 13,
		Pixels: le(0xC000|4095<<2|3, 1<<2, 2048<<2|1)}, []float32{4095, 1, 2048})
	check("signed 12 in 16", imagingtest.File{Rows: 1, Columns: 3, BitsAllocated: 16, BitsStored: 12, PixelRepresentation: 1,
		Pixels: le(0x0FFF, 0xF800, 0x07FF)}, []float32{-1, -2048, 2047})
	check("signed 16", imagingtest.File{Rows: 1, Columns: 2, BitsAllocated: 16, PixelRepresentation: 1,
		Pixels: le(0x8000, 0x7FFF)}, []float32{-32768, 32767})
	check("signed 8", imagingtest.File{Rows: 1, Columns: 2, BitsAllocated: 8, PixelRepresentation: 1,
		Pixels: []byte{0x80, 0x7F}}, []float32{-128, 127})
	check("unsigned 8", imagingtest.File{Rows: 2, Columns: 1, BitsAllocated: 8, Pixels: []byte{0, 255}}, []float32{0, 255})
	check("7 in 8", imagingtest.File{Rows: 1, Columns: 1, BitsAllocated: 8, BitsStored: 7, Pixels: []byte{0xFF}}, []float32{127})
	rgb := []float32{10, 20, 30, 40, 50, 60}
	check("RGB interleaved", imagingtest.File{Rows: 1, Columns: 2, Samples: 3, Photometric: "RGB", BitsAllocated: 8,
		Pixels: []byte{10, 20, 30, 40, 50, 60}}, rgb)
	check("RGB planar", imagingtest.File{Rows: 1, Columns: 2, Samples: 3, Photometric: "RGB", BitsAllocated: 8, PlanarConfiguration: 1,
		Pixels: []byte{10, 40, 20, 50, 30, 60}}, rgb)
	// YBR_FULL: Y=128, Cb=Cr=128 is mid grey; Y=76,Cb=85,Cr=255 is ~red.
	check("YBR_FULL", imagingtest.File{Rows: 1, Columns: 2, Samples: 3, Photometric: "YBR_FULL", BitsAllocated: 8,
		Pixels: []byte{128, 128, 128, 76, 85, 255}}, []float32{128, 128, 128, 254, 0, 0})
	m1 := imagingtest.File{Rows: 1, Columns: 2, BitsAllocated: 8, Photometric: "MONOCHROME1", Pixels: []byte{0, 200}}
	im, err := decodeBytes(m1.Bytes(), imaging.Frame{})
	if err != nil || !im.Monochrome1() || im.Pix[1] != 200 {
		t.Errorf("MONOCHROME1 decodes as stored: %v %+v", err, im)
	}
}

// TestDecodeErrors: what cannot be decoded is a typed error, never a panic.
func TestDecodeErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		path string
		want error
	}{
		{"JPEG-LS", sample(t, dicomsamples.MRJPEGLS), imaging.ErrUnsupportedTransferSyntax},
		{"JPEG 2000", sample(t, dicomsamples.MRJ2K), imaging.ErrUnsupportedTransferSyntax},
		{"structured report", sample(t, "test-SR.dcm"), imaging.ErrNoPixelData},
		{"waveform", sample(t, "waveform_ecg.dcm"), imaging.ErrNoPixelData},
		{"deflated", sample(t, "image_dfl.dcm"), imaging.ErrUnsupportedTransferSyntax},
	} {
		b, err := os.ReadFile(c.path)
		if err != nil {
			t.Fatal(err)
		}
		_, err = decodeBytes(b, imaging.Frame{})
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
	}
	good := imagingtest.File{Rows: 2, Columns: 2, BitsAllocated: 16, Pixels: make([]byte, 8)}
	for _, c := range []struct {
		name string
		file imagingtest.File
		want error
	}{
		{"palette colour", imagingtest.File{Rows: 1, Columns: 1, BitsAllocated: 8, Photometric: "PALETTE COLOR", Pixels: []byte{1, 0}}, imaging.ErrUnsupportedPixels},
		{"32-bit", imagingtest.File{Rows: 1, Columns: 1, BitsAllocated: 32, Pixels: make([]byte, 4)}, imaging.ErrUnsupportedPixels},
		{"1-bit", imagingtest.File{Rows: 8, Columns: 8, BitsAllocated: 1, Pixels: make([]byte, 8)}, imaging.ErrUnsupportedPixels},
		{"short pixel data", imagingtest.File{Rows: 4, Columns: 4, BitsAllocated: 16, Pixels: make([]byte, 8)}, imaging.ErrCorrupt},
		{"no pixel data", imagingtest.File{Rows: 4, Columns: 4, BitsAllocated: 16, OmitPixelData: true}, imaging.ErrNoPixelData},
		{"no rows", imagingtest.File{Columns: 4, BitsAllocated: 16, Pixels: make([]byte, 8)}, imaging.ErrCorrupt},
		{"bits stored > allocated", imagingtest.File{Rows: 1, Columns: 1, BitsAllocated: 8, BitsStored: 12, Pixels: make([]byte, 2)}, imaging.ErrCorrupt},
		{"huge image, little data", imagingtest.File{Rows: 65535, Columns: 65535, BitsAllocated: 16, Pixels: make([]byte, 8)}, imaging.ErrUnsupportedPixels},
		{"RLE, garbage", imagingtest.File{TransferSyntax: "1.2.840.10008.1.2.5", Rows: 2, Columns: 2, BitsAllocated: 16, Fragments: [][]byte{make([]byte, 64)}}, imaging.ErrCorrupt},
		{"JPEG, garbage", imagingtest.File{TransferSyntax: "1.2.840.10008.1.2.4.70", Rows: 2, Columns: 2, BitsAllocated: 16, Fragments: [][]byte{{0xFF, 0xD8, 0xFF, 0xC3, 0, 2}}}, imaging.ErrCorrupt},
		{"encapsulated, no fragments", imagingtest.File{TransferSyntax: "1.2.840.10008.1.2.4.50", Rows: 2, Columns: 2, BitsAllocated: 8, Fragments: [][]byte{}}, imaging.ErrCorrupt},
		{"native syntax, encapsulated data", imagingtest.File{Rows: 2, Columns: 2, BitsAllocated: 16, Fragments: [][]byte{make([]byte, 8)}}, imaging.ErrCorrupt},
		{"multi-frame, fragments ≠ frames", imagingtest.File{TransferSyntax: "1.2.840.10008.1.2.5", Frames: 3, Rows: 2, Columns: 2, BitsAllocated: 16, Fragments: [][]byte{make([]byte, 64), make([]byte, 64)}}, imaging.ErrUnsupportedPixels},
	} {
		_, err := decodeBytes(c.file.Bytes(), imaging.Frame{})
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
	}
	full := good.Bytes()
	for n := 0; n < len(full); n++ {
		if _, err := decodeBytes(full[:n], imaging.Frame{}); err == nil {
			t.Fatalf("truncated to %d of %d bytes: no error", n, len(full))
		}
	}
	if _, err := decodeBytes([]byte("not dicom at all"), imaging.Frame{}); !errors.Is(err, imaging.ErrNotDICOM) {
		t.Errorf("not DICOM: %v", err)
	}
}
