// Package jpegdec decodes the JPEG processes DICOM uses that Go's
// image/jpeg does not: lossless (ITU-T T.81 Annex H, process 14, any
// selection value, 2–16 bits, any number of components) and 12-bit
// sequential DCT with Huffman coding (process 4, one component). 8-bit DCT
// stays with image/jpeg.
//
// No maintained pure-Go decoder for these was found (the candidates were
// unmaintained or experimental), so this is a small one: markers, Huffman
// tables, the lossless predictors and a float IDCT, checked against
// dcmtk/libjpeg output in inference/imaging's tests and fuzzed
// (FuzzDecode). Depends on nothing outside the standard library.
package jpegdec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Process is the coding process a frame header (SOFn) declares.
type Process int

// The processes ReadFrameHeader tells apart.
const (
	Sequential  Process = iota // SOF0, SOF1: sequential DCT, Huffman
	Progressive                // SOF2
	Lossless                   // SOF3
)

// FrameHeader is a JPEG stream's SOF segment.
type FrameHeader struct {
	Process       Process
	Precision     int // bits per sample
	Width, Height int
	Components    int
	// JFIF and Adobe: the stream has an APP0 JFIF or APP14 Adobe marker
	// before the frame header (they settle its colour space).
	JFIF, Adobe bool
	sampling    []component
}

// Image is a decoded frame: samples row-major, components interleaved.
type Image struct {
	Width, Height, Components, Precision int
	Pix                                  []uint16
}

// ErrFormat: the stream is malformed; ErrUnsupported: a valid feature this
// package does not decode (arithmetic coding, hierarchical, DNL, 12-bit
// colour DCT…).
var (
	ErrFormat      = errors.New("jpegdec: invalid JPEG")
	ErrUnsupported = errors.New("jpegdec: unsupported JPEG")
)

// Marker codes.
const (
	mSOF0 = 0xC0
	mSOF1 = 0xC1
	mSOF2 = 0xC2
	mSOF3 = 0xC3
	mDHT  = 0xC4
	mRST0 = 0xD0
	mRST7 = 0xD7
	mSOI  = 0xD8
	mEOI  = 0xD9
	mSOS  = 0xDA
	mDQT  = 0xDB
	mDNL  = 0xDC
	mDRI  = 0xDD
)

// maxSamples bounds a decoded image, whatever its header says.
const maxSamples = 1 << 26

type component struct {
	id, h, v, tq int
}

// segment reads the marker segment at pos (pos at the length field) and
// returns its payload and the position after it.
func segment(data []byte, pos int) ([]byte, int, error) {
	if pos+2 > len(data) {
		return nil, 0, fmt.Errorf("%w: truncated marker segment", ErrFormat)
	}
	l := int(binary.BigEndian.Uint16(data[pos:]))
	if l < 2 || pos+l > len(data) {
		return nil, 0, fmt.Errorf("%w: bad marker segment length %d", ErrFormat, l)
	}
	return data[pos+2 : pos+l], pos + l, nil
}

// nextMarker finds the next marker at or after pos: its code and the
// position after it.
func nextMarker(data []byte, pos int) (byte, int, error) {
	for pos+1 < len(data) {
		if data[pos] != 0xFF {
			pos++
			continue
		}
		m := data[pos+1]
		if m == 0xFF { // fill byte
			pos++
			continue
		}
		if m == 0x00 || (m >= mRST0 && m <= mRST7) { // stuffed byte or stray RST in entropy data
			pos += 2
			continue
		}
		return m, pos + 2, nil
	}
	return 0, 0, fmt.Errorf("%w: no EOI marker", ErrFormat)
}

func parseSOF(m byte, p []byte) (FrameHeader, error) {
	var f FrameHeader
	switch m {
	case mSOF0, mSOF1:
		f.Process = Sequential
	case mSOF2:
		f.Process = Progressive
	case mSOF3:
		f.Process = Lossless
	}
	if len(p) < 6 {
		return f, fmt.Errorf("%w: short SOF", ErrFormat)
	}
	f.Precision = int(p[0])
	f.Height = int(binary.BigEndian.Uint16(p[1:]))
	f.Width = int(binary.BigEndian.Uint16(p[3:]))
	f.Components = int(p[5])
	if f.Components < 1 || f.Components > 4 || len(p) < 6+3*f.Components {
		return f, fmt.Errorf("%w: SOF with %d components", ErrFormat, f.Components)
	}
	for i := 0; i < f.Components; i++ {
		c := p[6+3*i:]
		f.sampling = append(f.sampling, component{id: int(c[0]), h: int(c[1] >> 4), v: int(c[1] & 15), tq: int(c[2])})
	}
	if f.Width == 0 || f.Height == 0 {
		return f, fmt.Errorf("%w: image size from a DNL marker", ErrUnsupported)
	}
	return f, nil
}

// ReadFrameHeader reads the stream up to its SOF segment.
func ReadFrameHeader(data []byte) (FrameHeader, error) {
	if len(data) < 4 || data[0] != 0xFF || data[1] != mSOI {
		return FrameHeader{}, fmt.Errorf("%w: no SOI marker", ErrFormat)
	}
	pos := 2
	var jfif, adobe bool
	for {
		m, next, err := nextMarker(data, pos)
		if err != nil {
			return FrameHeader{}, err
		}
		switch {
		case m == mSOF0 || m == mSOF1 || m == mSOF2 || m == mSOF3:
			p, _, err := segment(data, next)
			if err != nil {
				return FrameHeader{}, err
			}
			f, err := parseSOF(m, p)
			f.JFIF, f.Adobe = jfif, adobe
			return f, err
		case m >= 0xC5 && m <= 0xCF && m != 0xC8 && m != 0xCC:
			return FrameHeader{}, fmt.Errorf("%w: SOF%d (hierarchical or arithmetic coding)", ErrUnsupported, m-0xC0)
		case m == mSOS || m == mEOI:
			return FrameHeader{}, fmt.Errorf("%w: no frame header", ErrFormat)
		case m == 0x01 || m == mSOI || (m >= mRST0 && m <= mRST7):
			pos = next
		default:
			var p []byte
			if p, pos, err = segment(data, next); err != nil {
				return FrameHeader{}, err
			}
			jfif = jfif || m == 0xE0 && bytes.HasPrefix(p, []byte("JFIF\x00"))
			adobe = adobe || m == 0xEE && bytes.HasPrefix(p, []byte("Adobe"))
		}
	}
}

// decoder holds the tables in force while a stream is read.
type decoder struct {
	data    []byte
	frame   FrameHeader
	haveSOF bool
	dc, ac  [4]*huffman
	quant   [4]*[64]int32
	restart int
	img     *Image
	scanned []bool // per component: decoded by some scan
}

// Decode decodes a lossless or 12-bit sequential JPEG stream.
func Decode(data []byte) (*Image, error) {
	if len(data) < 4 || data[0] != 0xFF || data[1] != mSOI {
		return nil, fmt.Errorf("%w: no SOI marker", ErrFormat)
	}
	d := &decoder{data: data}
	pos := 2
	for {
		m, next, err := nextMarker(data, pos)
		if err != nil {
			return nil, err
		}
		switch {
		case m == mEOI:
			return d.finish()
		case m == 0x01 || m == mSOI:
			pos = next
			continue
		case m >= 0xC5 && m <= 0xCF && m != 0xC8 && m != 0xCC, m == mDNL:
			return nil, fmt.Errorf("%w: marker %02X (hierarchical, arithmetic coding or DNL)", ErrUnsupported, m)
		}
		p, after, err := segment(data, next)
		if err != nil {
			return nil, err
		}
		pos = after
		switch m {
		case mSOF0, mSOF1, mSOF2, mSOF3:
			if d.haveSOF {
				return nil, fmt.Errorf("%w: two frame headers", ErrFormat)
			}
			if err := d.startFrame(m, p); err != nil {
				return nil, err
			}
		case mDHT:
			if err := d.parseDHT(p); err != nil {
				return nil, err
			}
		case mDQT:
			if err := d.parseDQT(p); err != nil {
				return nil, err
			}
		case mDRI:
			if len(p) != 2 {
				return nil, fmt.Errorf("%w: bad DRI", ErrFormat)
			}
			d.restart = int(binary.BigEndian.Uint16(p))
		case mSOS:
			if !d.haveSOF {
				return nil, fmt.Errorf("%w: scan before the frame header", ErrFormat)
			}
			if pos, err = d.scan(p, pos); err != nil {
				return nil, err
			}
		}
	}
}

func (d *decoder) startFrame(m byte, p []byte) error {
	f, err := parseSOF(m, p)
	if err != nil {
		return err
	}
	switch f.Process {
	case Progressive:
		return fmt.Errorf("%w: progressive DCT", ErrUnsupported)
	case Lossless:
		if f.Precision < 2 || f.Precision > 16 {
			return fmt.Errorf("%w: lossless precision %d", ErrFormat, f.Precision)
		}
		for _, c := range f.sampling {
			if c.h != 1 || c.v != 1 {
				return fmt.Errorf("%w: lossless with sampling factors %d×%d", ErrUnsupported, c.h, c.v)
			}
		}
	case Sequential:
		if f.Precision != 8 && f.Precision != 12 {
			return fmt.Errorf("%w: DCT precision %d", ErrFormat, f.Precision)
		}
		if f.Components != 1 {
			return fmt.Errorf("%w: DCT with %d components (only image/jpeg's 8-bit colour is supported)", ErrUnsupported, f.Components)
		}
		if f.sampling[0].tq > 3 {
			return fmt.Errorf("%w: quantisation table %d", ErrFormat, f.sampling[0].tq)
		}
	}
	n := int64(f.Width) * int64(f.Height) * int64(f.Components)
	if n > maxSamples {
		return fmt.Errorf("%w: %d×%d×%d samples", ErrUnsupported, f.Width, f.Height, f.Components)
	}
	// Every sample costs at least one bit of entropy-coded data (a DCT
	// block at least two for 64 samples), so a short stream cannot claim
	// a huge image before anything is allocated.
	perByte := int64(8)
	if f.Process == Sequential {
		perByte = 256
	}
	if n > int64(len(d.data))*perByte {
		return fmt.Errorf("%w: %d×%d×%d samples in %d bytes", ErrFormat, f.Width, f.Height, f.Components, len(d.data))
	}
	d.frame, d.haveSOF = f, true
	d.img = &Image{Width: f.Width, Height: f.Height, Components: f.Components, Precision: f.Precision,
		Pix: make([]uint16, n)}
	d.scanned = make([]bool, f.Components)
	return nil
}

func (d *decoder) finish() (*Image, error) {
	if !d.haveSOF {
		return nil, fmt.Errorf("%w: no frame header", ErrFormat)
	}
	for i, ok := range d.scanned {
		if !ok {
			return nil, fmt.Errorf("%w: component %d has no scan", ErrFormat, i)
		}
	}
	return d.img, nil
}

func (d *decoder) parseDHT(p []byte) error {
	for len(p) > 0 {
		if len(p) < 17 {
			return fmt.Errorf("%w: short DHT", ErrFormat)
		}
		class, id := p[0]>>4, int(p[0]&15)
		if class > 1 || id > 3 {
			return fmt.Errorf("%w: DHT class %d id %d", ErrFormat, class, id)
		}
		var counts [16]int
		total := 0
		for i := range counts {
			counts[i] = int(p[1+i])
			total += counts[i]
		}
		if total > 256 || len(p) < 17+total {
			return fmt.Errorf("%w: DHT with %d codes", ErrFormat, total)
		}
		h, err := newHuffman(counts, p[17:17+total])
		if err != nil {
			return err
		}
		if class == 0 {
			d.dc[id] = h
		} else {
			d.ac[id] = h
		}
		p = p[17+total:]
	}
	return nil
}

func (d *decoder) parseDQT(p []byte) error {
	for len(p) > 0 {
		pq, id := p[0]>>4, int(p[0]&15)
		if pq > 1 || id > 3 {
			return fmt.Errorf("%w: DQT precision %d id %d", ErrFormat, pq, id)
		}
		n := 64 * (1 + int(pq))
		if len(p) < 1+n {
			return fmt.Errorf("%w: short DQT", ErrFormat)
		}
		var q [64]int32
		for k := 0; k < 64; k++ {
			if pq == 0 {
				q[zigzag[k]] = int32(p[1+k])
			} else {
				q[zigzag[k]] = int32(binary.BigEndian.Uint16(p[1+2*k:]))
			}
		}
		d.quant[id] = &q
		p = p[1+n:]
	}
	return nil
}

// scanComp is one component of a scan.
type scanComp struct {
	index  int // in the frame
	dc, ac *huffman
}

// scan decodes the entropy-coded segment after an SOS header and returns
// the position of the marker that ends it.
func (d *decoder) scan(p []byte, pos int) (int, error) {
	if len(p) < 1 {
		return 0, fmt.Errorf("%w: short SOS", ErrFormat)
	}
	ns := int(p[0])
	if ns < 1 || ns > 4 || len(p) != 4+2*ns {
		return 0, fmt.Errorf("%w: SOS with %d components", ErrFormat, ns)
	}
	comps := make([]scanComp, ns)
	for i := range comps {
		id, tables := int(p[1+2*i]), p[2+2*i]
		idx := -1
		for j, c := range d.frame.sampling {
			if c.id == id {
				idx = j
			}
		}
		if idx < 0 {
			return 0, fmt.Errorf("%w: scan names component %d the frame lacks", ErrFormat, id)
		}
		td, ta := int(tables>>4), int(tables&15)
		if td > 3 || ta > 3 {
			return 0, fmt.Errorf("%w: Huffman table selector", ErrFormat)
		}
		comps[i] = scanComp{index: idx, dc: d.dc[td], ac: d.ac[ta]}
		if comps[i].dc == nil {
			return 0, fmt.Errorf("%w: scan uses undefined Huffman table %d", ErrFormat, td)
		}
		d.scanned[idx] = true
	}
	ss, se, al := int(p[1+2*ns]), int(p[2+2*ns]), int(p[3+2*ns]&15)
	br := &bitReader{data: d.data, pos: pos}
	var err error
	if d.frame.Process == Lossless {
		err = d.lossless(br, comps, ss, al)
	} else {
		if ns != 1 || ss != 0 || se != 63 || comps[0].ac == nil {
			return 0, fmt.Errorf("%w: sequential scan parameters", ErrFormat)
		}
		err = d.sequential(br, comps[0])
	}
	if err != nil {
		return 0, err
	}
	if br.overrun() {
		return 0, fmt.Errorf("%w: entropy-coded data truncated", ErrFormat)
	}
	return br.pos, nil
}

// lossless decodes a lossless scan (T.81 H.1.2): each sample is its
// predictor plus a Huffman-coded difference, modulo 2^16. The first line
// of the scan and of each restart interval predicts from the left only,
// and its first sample from 2^(P-Pt-1).
func (d *decoder) lossless(br *bitReader, comps []scanComp, sv, pt int) error {
	f := d.frame
	if sv < 1 || sv > 7 {
		return fmt.Errorf("%w: lossless predictor %d", ErrFormat, sv)
	}
	if pt >= f.Precision {
		return fmt.Errorf("%w: point transform %d", ErrFormat, pt)
	}
	w, h, nc := f.Width, f.Height, f.Components
	if d.restart > 0 && d.restart%w != 0 {
		return fmt.Errorf("%w: restart interval %d is not whole lines of %d", ErrUnsupported, d.restart, w)
	}
	initial := int32(1) << (f.Precision - pt - 1)
	pix := d.img.Pix
	stride := w * nc
	mcus, expectRST := 0, 0
	first := true // first line of the scan or of a restart interval
	for y := 0; y < h; y++ {
		if d.restart > 0 && mcus > 0 && mcus%d.restart == 0 {
			if err := br.restart(expectRST); err != nil {
				return err
			}
			expectRST = (expectRST + 1) & 7
			first = true
		}
		row := y * stride
		for x := 0; x < w; x++ {
			for _, c := range comps {
				i := row + x*nc + c.index
				var pred int32
				switch {
				case x == 0 && first:
					pred = initial
				case x == 0:
					pred = int32(pix[i-stride])
				case first:
					pred = int32(pix[i-nc])
				default:
					ra, rb, rc := int32(pix[i-nc]), int32(pix[i-stride]), int32(pix[i-stride-nc])
					switch sv {
					case 1:
						pred = ra
					case 2:
						pred = rb
					case 3:
						pred = rc
					case 4:
						pred = ra + rb - rc
					case 5:
						pred = ra + ((rb - rc) >> 1)
					case 6:
						pred = rb + ((ra - rc) >> 1)
					case 7:
						pred = (ra + rb) >> 1
					}
				}
				t, err := br.decode(c.dc)
				if err != nil {
					return err
				}
				var diff int32
				switch {
				case t == 0:
				case t == 16:
					diff = 32768
				case t > 16:
					return fmt.Errorf("%w: difference category %d", ErrFormat, t)
				default:
					diff = br.receiveExtend(int(t))
				}
				pix[i] = uint16(pred + diff)
			}
			mcus++
		}
		first = false
	}
	if pt > 0 {
		for _, c := range comps {
			for i := c.index; i < len(pix); i += nc {
				pix[i] <<= pt
			}
		}
	}
	if f.Precision < 16 {
		mask := uint16(1)<<f.Precision - 1
		for _, c := range comps {
			for i := c.index; i < len(pix); i += nc {
				pix[i] &= mask
			}
		}
	}
	return nil
}

// sequential decodes a one-component sequential DCT scan (8 or 12 bits).
func (d *decoder) sequential(br *bitReader, c scanComp) error {
	f := d.frame
	q := d.quant[f.sampling[0].tq]
	if q == nil {
		return fmt.Errorf("%w: undefined quantisation table", ErrFormat)
	}
	bw, bh := (f.Width+7)/8, (f.Height+7)/8
	maxv := float64(int(1)<<f.Precision - 1)
	shift := float64(int(1) << (f.Precision - 1))
	var dcPred int32
	var coef [64]int32
	var block [64]float64
	expectRST := 0
	for b := 0; b < bw*bh; b++ {
		if d.restart > 0 && b > 0 && b%d.restart == 0 {
			if err := br.restart(expectRST); err != nil {
				return err
			}
			expectRST = (expectRST + 1) & 7
			dcPred = 0
		}
		coef = [64]int32{}
		t, err := br.decode(c.dc)
		if err != nil {
			return err
		}
		if t > 15 {
			return fmt.Errorf("%w: DC category %d", ErrFormat, t)
		}
		if t > 0 {
			dcPred += br.receiveExtend(int(t))
		}
		coef[0] = dcPred * q[0]
		for k := 1; k < 64; k++ {
			rs, err := br.decode(c.ac)
			if err != nil {
				return err
			}
			r, s := int(rs>>4), int(rs&15)
			if s == 0 {
				if r != 15 {
					break
				}
				k += 15
				continue
			}
			k += r
			if k > 63 {
				return fmt.Errorf("%w: AC run past the block", ErrFormat)
			}
			coef[zigzag[k]] = br.receiveExtend(s) * q[zigzag[k]]
		}
		idct(&coef, &block)
		bx, by := b%bw*8, b/bw*8
		for y := 0; y < 8 && by+y < f.Height; y++ {
			for x := 0; x < 8 && bx+x < f.Width; x++ {
				v := math.Round(block[y*8+x] + shift)
				d.img.Pix[(by+y)*f.Width+bx+x] = uint16(math.Max(0, math.Min(maxv, v)))
			}
		}
	}
	return nil
}

// zigzag maps the zig-zag index k to the natural (row-major) index.
var zigzag = [64]int{
	0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
	12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
	35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
	58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
}

// idctCos[x][u] = C(u)/2 · cos((2x+1)uπ/16), C(0) = 1/√2.
var idctCos = func() (t [8][8]float64) {
	for x := 0; x < 8; x++ {
		for u := 0; u < 8; u++ {
			c := 1.0
			if u == 0 {
				c = 1 / math.Sqrt2
			}
			t[x][u] = c / 2 * math.Cos(float64(2*x+1)*float64(u)*math.Pi/16)
		}
	}
	return t
}()

// idct is the separable 8×8 inverse DCT (T.81 A.3.3), in float64: at most
// one unit from libjpeg's integer IDCT after rounding.
func idct(in *[64]int32, out *[64]float64) {
	var tmp [64]float64
	for v := 0; v < 8; v++ { // rows of coefficients → tmp[v][x]
		for x := 0; x < 8; x++ {
			s := 0.0
			for u := 0; u < 8; u++ {
				s += idctCos[x][u] * float64(in[v*8+u])
			}
			tmp[v*8+x] = s
		}
	}
	for x := 0; x < 8; x++ {
		for y := 0; y < 8; y++ {
			s := 0.0
			for v := 0; v < 8; v++ {
				s += idctCos[y][v] * tmp[v*8+x]
			}
			out[y*8+x] = s
		}
	}
}
