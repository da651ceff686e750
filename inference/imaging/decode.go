package imaging

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"math"

	"github.com/emberfhir/ember/inference/imaging/jpegdec"
)

// maxSamples bounds the samples of one decoded frame (256 MiB as float32),
// so a header claiming a huge image cannot exhaust memory.
const maxSamples = 1 << 26

// Info describes the image a tensor was computed from: what the findings
// cite (instance, frame) and what a failure or audit wants to say.
type Info struct {
	SOPInstanceUID    string
	StudyInstanceUID  string
	SeriesInstanceUID string
	Modality          string
	BodyPart          string // BodyPartExamined as stored
	TransferSyntax    string // UID
	Photometric       string // as stored (a JPEG's YBR_FULL* is decoded to RGB)
	Frame             int    // 0-based frame used
	Frames            int    // frames in the instance
	Rows, Columns     int
	// Window is the VOI window applied (Center, Width), zero with window "none".
	WindowCenter, WindowWidth float64
}

// Image is one decoded frame: stored pixel values (after BitsStored/HighBit
// masking and sign extension, before any rescale), row-major, samples
// interleaved (R,G,B for colour: YBR and planar data are converted), with
// the attributes the pipeline uses.
type Image struct {
	Info
	Samples int       // 1 (MONOCHROME1/2) or 3 (RGB)
	Pix     []float32 // Rows*Columns*Samples stored values

	// Modality LUT (RescaleSlope/Intercept; 1 and 0 when absent).
	Slope, Intercept float64
	// The data set's first VOI window (WindowCenter/Width), when it has one.
	DatasetCenter, DatasetWidth float64
	HasDatasetWindow            bool
}

// Monochrome1 reports whether the image's minimum value is white.
func (im *Image) Monochrome1() bool { return im.Photometric == "MONOCHROME1" }

// Decode reads the header of the Part-10 file r and decodes the frame that
// rule picks. Only that frame's bytes are read.
func Decode(r io.ReaderAt, size int64, rule Frame) (*Image, error) {
	h, err := readHeader(io.NewSectionReader(r, 0, size))
	if err != nil {
		return nil, err
	}
	if h.frames < 1 {
		return nil, fmt.Errorf("%w: NumberOfFrames is not a positive integer", ErrCorrupt)
	}
	n, ok := rule.index(h.frames)
	if !ok {
		return nil, fmt.Errorf("%w: frame %s of an instance with %d", ErrNoFrame, rule, h.frames)
	}
	im := &Image{
		Info: Info{
			SOPInstanceUID: h.sopUID, StudyInstanceUID: h.studyUID, SeriesInstanceUID: h.seriesUID,
			Modality: h.modality, BodyPart: h.bodyPart, TransferSyntax: h.ts, Photometric: h.photometric,
			Frame: n, Frames: h.frames, Rows: h.rows, Columns: h.cols,
		},
		Samples: h.spp, Slope: 1,
	}
	if h.hasSlope && h.slope != 0 {
		im.Slope = h.slope
	}
	if h.hasIntercept {
		im.Intercept = h.intercept
	}
	if h.winCenterOK && h.winWidthOK && h.winWidth >= 1 {
		im.DatasetCenter, im.DatasetWidth, im.HasDatasetWindow = h.winCenter, h.winWidth, true
	}
	if err := checkLayout(h); err != nil {
		return nil, err
	}
	px := h.rows * h.cols
	switch h.ts {
	case tsImplicitLE, tsExplicitLE, tsExplicitBE:
		if h.pixelLen < 0 {
			return nil, fmt.Errorf("%w: encapsulated pixel data in %s", ErrCorrupt, tsName(h.ts))
		}
		frameBytes := int64(px) * int64(h.spp) * int64(h.bitsAlloc/8)
		raw, err := readNative(r, size, h, n, frameBytes)
		if err != nil {
			return nil, err
		}
		im.Pix = nativeSamples(raw, h)
		if h.spp == 3 && h.planar == 1 {
			im.Pix = interleave(im.Pix, px)
		}
	case tsRLE, tsJPEGBaseline, tsJPEGExtended, tsJPEGLossless, tsJPEGLosslessSV1:
		if h.pixelLen >= 0 {
			return nil, fmt.Errorf("%w: %s pixel data is not encapsulated", ErrCorrupt, tsName(h.ts))
		}
		data, err := readEncapsulated(r, size, h, n)
		if err != nil {
			return nil, err
		}
		if h.ts == tsRLE {
			im.Pix, err = decodeRLE(data, h)
		} else {
			im.Pix, err = decodeJPEG(data, h)
		}
		if err != nil {
			return nil, err
		}
	default:
		return nil, unsupportedTS(h.ts)
	}
	if h.spp == 3 && isYBR(h.photometric) && !isJPEGDCT(h.ts) {
		ybrToRGB(im.Pix)
	}
	return im, nil
}

// checkLayout refuses pixel layouts the pipeline cannot convert.
func checkLayout(h *header) error {
	if h.rows <= 0 || h.cols <= 0 {
		return fmt.Errorf("%w: no Rows/Columns", ErrCorrupt)
	}
	if h.rows*h.cols*h.spp > maxSamples {
		return fmt.Errorf("%w: %d×%d×%d samples is more than Ember decodes (%d)", ErrUnsupportedPixels, h.rows, h.cols, h.spp, maxSamples)
	}
	switch h.photometric {
	case "MONOCHROME1", "MONOCHROME2":
		if h.spp != 1 {
			return fmt.Errorf("%w: %s with %d samples per pixel", ErrCorrupt, h.photometric, h.spp)
		}
	case "RGB", "YBR_FULL", "YBR_FULL_422":
		if h.spp != 3 {
			return fmt.Errorf("%w: %s with %d samples per pixel", ErrCorrupt, h.photometric, h.spp)
		}
		if h.bitsAlloc != 8 {
			return fmt.Errorf("%w: %s with %d bits allocated", ErrUnsupportedPixels, h.photometric, h.bitsAlloc)
		}
		if h.photometric == "YBR_FULL_422" && !isJPEGDCT(h.ts) {
			return fmt.Errorf("%w: YBR_FULL_422 outside JPEG", ErrUnsupportedPixels)
		}
	case "":
		return fmt.Errorf("%w: no PhotometricInterpretation", ErrCorrupt)
	default:
		return fmt.Errorf("%w: photometric interpretation %s", ErrUnsupportedPixels, h.photometric)
	}
	if h.bitsAlloc != 8 && h.bitsAlloc != 16 {
		return fmt.Errorf("%w: %d bits allocated (8 or 16 are supported)", ErrUnsupportedPixels, h.bitsAlloc)
	}
	if h.bitsStored == 0 {
		h.bitsStored = h.bitsAlloc
	}
	if !h.hasHighBit() {
		h.highBit = h.bitsStored - 1
	}
	if h.bitsStored < 1 || h.bitsStored > h.bitsAlloc || h.highBit < h.bitsStored-1 || h.highBit >= h.bitsAlloc {
		return fmt.Errorf("%w: BitsStored %d, HighBit %d in %d bits", ErrCorrupt, h.bitsStored, h.highBit, h.bitsAlloc)
	}
	if h.pixRep != 0 && h.pixRep != 1 {
		return fmt.Errorf("%w: PixelRepresentation %d", ErrCorrupt, h.pixRep)
	}
	if h.spp == 3 && h.planar != 0 && h.planar != 1 {
		return fmt.Errorf("%w: PlanarConfiguration %d", ErrCorrupt, h.planar)
	}
	return nil
}

// hasHighBit: HighBit is optional in practice; 0 with BitsStored > 1
// means it was absent (or wrong), and bitsStored-1 is the standard layout.
func (h *header) hasHighBit() bool { return h.highBit > 0 || h.bitsStored == 1 }

func isYBR(photometric string) bool {
	return photometric == "YBR_FULL" || photometric == "YBR_FULL_422"
}

func isJPEGDCT(ts string) bool { return ts == tsJPEGBaseline || ts == tsJPEGExtended }

// sampleFunc returns the function that turns a raw (unshifted, unmasked)
// sample into its stored value: shift by HighBit, mask to BitsStored, and
// sign-extend when PixelRepresentation is 1.
func sampleFunc(h *header, shift int) func(uint32) float32 {
	bits := uint(h.bitsStored)
	mask := uint32(1)<<bits - 1
	sh := uint(shift)
	if h.pixRep == 1 {
		sign := uint32(1) << (bits - 1)
		return func(v uint32) float32 {
			v = (v >> sh) & mask
			return float32(int32(v^sign) - int32(sign))
		}
	}
	return func(v uint32) float32 { return float32((v >> sh) & mask) }
}

// nativeSamples converts native frame bytes to stored values.
func nativeSamples(raw []byte, h *header) []float32 {
	n := len(raw) / (h.bitsAlloc / 8)
	out := make([]float32, n)
	shift := h.highBit + 1 - h.bitsStored
	full := shift == 0 && h.bitsStored == h.bitsAlloc
	switch {
	case h.bitsAlloc == 8 && full && h.pixRep == 0:
		for i, b := range raw {
			out[i] = float32(b)
		}
	case h.bitsAlloc == 8 && full:
		for i, b := range raw {
			out[i] = float32(int8(b))
		}
	case full && !h.bigEndian && h.pixRep == 1:
		raw = raw[:2*n]
		for i := range out {
			out[i] = float32(int16(uint16(raw[2*i]) | uint16(raw[2*i+1])<<8))
		}
	case full && !h.bigEndian:
		raw = raw[:2*n]
		for i := range out {
			out[i] = float32(uint16(raw[2*i]) | uint16(raw[2*i+1])<<8)
		}
	default:
		f := sampleFunc(h, shift)
		if h.bitsAlloc == 8 {
			for i, b := range raw {
				out[i] = f(uint32(b))
			}
			break
		}
		var bo binary.ByteOrder = binary.LittleEndian
		if h.bigEndian {
			bo = binary.BigEndian
		}
		for i := range out {
			out[i] = f(uint32(bo.Uint16(raw[2*i:])))
		}
	}
	return out
}

// interleave turns planar R…G…B… samples into R,G,B triples.
func interleave(planar []float32, px int) []float32 {
	out := make([]float32, len(planar))
	for i := 0; i < px; i++ {
		out[3*i], out[3*i+1], out[3*i+2] = planar[i], planar[px+i], planar[2*px+i]
	}
	return out
}

// ybrToRGB converts YBR_FULL triples in place (PS3.3 C.7.6.3.1.2), 8-bit.
func ybrToRGB(pix []float32) {
	clamp := func(v float64) float32 { return float32(math.Round(math.Max(0, math.Min(255, v)))) }
	for i := 0; i+2 < len(pix); i += 3 {
		y, cb, cr := float64(pix[i]), float64(pix[i+1])-128, float64(pix[i+2])-128
		pix[i] = clamp(y + 1.402*cr)
		pix[i+1] = clamp(y - 0.344136*cb - 0.714136*cr)
		pix[i+2] = clamp(y + 1.772*cb)
	}
}

// decodeRLE decodes an RLE Lossless frame (PS3.5 Annex G): a 64-byte
// header of segment offsets, then one PackBits segment per byte plane,
// most significant byte first, sample by sample.
func decodeRLE(data []byte, h *header) ([]float32, error) {
	px := h.rows * h.cols
	bps := h.bitsAlloc / 8
	nseg := h.spp * bps
	if len(data) < 64 {
		return nil, fmt.Errorf("%w: RLE header truncated", ErrCorrupt)
	}
	if got := int(binary.LittleEndian.Uint32(data)); got != nseg {
		return nil, fmt.Errorf("%w: RLE frame has %d segments, %d expected", ErrCorrupt, got, nseg)
	}
	// PackBits expands at most 64 times (2 bytes → 128), so the frame must
	// be large enough for what the header claims before anything is allocated.
	if int64(len(data))*64 < int64(px)*int64(nseg) {
		return nil, fmt.Errorf("%w: RLE frame too short for %d×%d", ErrCorrupt, h.rows, h.cols)
	}
	planes := make([]byte, px*nseg)
	for s := 0; s < nseg; s++ {
		start := int64(binary.LittleEndian.Uint32(data[4+4*s:]))
		end := int64(len(data))
		if s+1 < nseg {
			end = int64(binary.LittleEndian.Uint32(data[8+4*s:]))
		}
		if start < 64 || end < start || end > int64(len(data)) {
			return nil, fmt.Errorf("%w: RLE segment %d offsets", ErrCorrupt, s)
		}
		if err := unpackBits(planes[s*px:(s+1)*px], data[start:end]); err != nil {
			return nil, fmt.Errorf("%w: RLE segment %d: %v", ErrCorrupt, s, err)
		}
	}
	out := make([]float32, px*h.spp)
	f := sampleFunc(h, h.highBit+1-h.bitsStored)
	for s := 0; s < h.spp; s++ {
		for i := 0; i < px; i++ {
			var v uint32
			for b := 0; b < bps; b++ {
				v = v<<8 | uint32(planes[(s*bps+b)*px+i])
			}
			out[i*h.spp+s] = f(v)
		}
	}
	return out, nil
}

// unpackBits fills dst from a PackBits segment; a segment may carry a pad
// byte past what dst needs.
func unpackBits(dst, src []byte) error {
	n := 0
	for i := 0; n < len(dst) && i < len(src); {
		c := int(int8(src[i]))
		i++
		switch {
		case c >= 0:
			if i+c+1 > len(src) || n+c+1 > len(dst) {
				return fmt.Errorf("literal run overflows")
			}
			n += copy(dst[n:], src[i:i+c+1])
			i += c + 1
		case c > -128:
			if i >= len(src) || n+1-c > len(dst) {
				return fmt.Errorf("replicate run overflows")
			}
			b := src[i]
			i++
			for k := 0; k < 1-c; k++ {
				dst[n+k] = b
			}
			n += 1 - c
		}
	}
	if n != len(dst) {
		return fmt.Errorf("decoded %d of %d bytes", n, len(dst))
	}
	return nil
}

// decodeJPEG decodes a JPEG frame: 8-bit DCT (baseline, or extended with
// 8-bit samples) with the standard library's image/jpeg, whose YCbCr
// output is converted to RGB as PS3.5 8.2.1 expects for YBR_FULL(_422);
// 12-bit DCT and lossless with jpegdec.
func decodeJPEG(data []byte, h *header) ([]float32, error) {
	fr, err := jpegdec.ReadFrameHeader(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, tsName(h.ts), err)
	}
	if fr.Width != h.cols || fr.Height != h.rows || fr.Components != h.spp {
		return nil, fmt.Errorf("%w: JPEG is %d×%d×%d, the data set says %d×%d×%d", ErrCorrupt,
			fr.Width, fr.Height, fr.Components, h.cols, h.rows, h.spp)
	}
	if fr.Precision > h.bitsAlloc {
		return nil, fmt.Errorf("%w: %d-bit JPEG in %d bits allocated", ErrCorrupt, fr.Precision, h.bitsAlloc)
	}
	px := h.rows * h.cols
	// JPEG samples are stored values already (no HighBit shift); mask and
	// sign-extend to BitsStored as for native data.
	f := sampleFunc(h, 0)
	out := make([]float32, px*h.spp)
	// The stream's own frame header decides the decoder, whatever the
	// transfer syntax claims.
	if fr.Process != jpegdec.Lossless && fr.Precision == 8 {
		// image/jpeg allocates by the frame header: refuse a stream too
		// short to code that many samples (a DCT block needs ≥ 2 bits).
		if int64(len(data))*256 < int64(px*h.spp) {
			return nil, fmt.Errorf("%w: %s frame too short for %d×%d", ErrCorrupt, tsName(h.ts), h.cols, h.rows)
		}
		img, err := jpeg.Decode(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, tsName(h.ts), err)
		}
		return imageSamples(img, out, h, f, fr.JFIF || fr.Adobe)
	}
	img, err := jpegdec.Decode(data)
	if errors.Is(err, jpegdec.ErrUnsupported) {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnsupportedTransferSyntax, tsName(h.ts), err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, tsName(h.ts), err)
	}
	for i, v := range img.Pix {
		out[i] = f(uint32(v))
	}
	return out, nil
}

// imageSamples copies an image/jpeg result into out.
// colourMarked: the stream has a JFIF or Adobe marker, which settles its
// colour space; without one, the data set's PhotometricInterpretation does.
func imageSamples(img image.Image, out []float32, h *header, f func(uint32) float32, colourMarked bool) ([]float32, error) {
	b := img.Bounds()
	if b.Dx() != h.cols || b.Dy() != h.rows {
		return nil, fmt.Errorf("%w: JPEG decoded to %d×%d", ErrCorrupt, b.Dx(), b.Dy())
	}
	switch m := img.(type) {
	case *image.Gray:
		if h.spp != 1 {
			return nil, fmt.Errorf("%w: grayscale JPEG for %d samples", ErrCorrupt, h.spp)
		}
		for y := 0; y < h.rows; y++ {
			row := m.Pix[y*m.Stride : y*m.Stride+h.cols]
			for x, v := range row {
				out[y*h.cols+x] = f(uint32(v))
			}
		}
	case *image.YCbCr:
		if h.spp != 3 {
			return nil, fmt.Errorf("%w: colour JPEG for %d samples", ErrCorrupt, h.spp)
		}
		if h.photometric == "RGB" && !colourMarked {
			// No JFIF or Adobe marker says YCbCr, and the data set says
			// RGB: the components are R, G, B (image/jpeg guessed YCbCr).
			for y := 0; y < h.rows; y++ {
				for x := 0; x < h.cols; x++ {
					yi, ci := m.YOffset(x+b.Min.X, y+b.Min.Y), m.COffset(x+b.Min.X, y+b.Min.Y)
					o := 3 * (y*h.cols + x)
					out[o], out[o+1], out[o+2] = f(uint32(m.Y[yi])), f(uint32(m.Cb[ci])), f(uint32(m.Cr[ci]))
				}
			}
			break
		}
		for y := 0; y < h.rows; y++ {
			for x := 0; x < h.cols; x++ {
				yi, ci := m.YOffset(x+b.Min.X, y+b.Min.Y), m.COffset(x+b.Min.X, y+b.Min.Y)
				r, g, bl := color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
				o := 3 * (y*h.cols + x)
				out[o], out[o+1], out[o+2] = f(uint32(r)), f(uint32(g)), f(uint32(bl))
			}
		}
	case *image.RGBA:
		if h.spp != 3 {
			return nil, fmt.Errorf("%w: colour JPEG for %d samples", ErrCorrupt, h.spp)
		}
		for y := 0; y < h.rows; y++ {
			for x := 0; x < h.cols; x++ {
				p := m.Pix[y*m.Stride+4*x:]
				o := 3 * (y*h.cols + x)
				out[o], out[o+1], out[o+2] = f(uint32(p[0])), f(uint32(p[1])), f(uint32(p[2]))
			}
		}
	default:
		return nil, fmt.Errorf("%w: JPEG decoded to %T", ErrUnsupportedPixels, img)
	}
	return out, nil
}
