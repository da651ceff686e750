package jpegdec

import "fmt"

// lookupBits is the code length the fast table resolves in one step.
const lookupBits = 9

// huffman is a decoding table (T.81 F.2.2.3) with a lookup table for
// codes of up to lookupBits bits.
type huffman struct {
	lookup  [1 << lookupBits]uint16 // length<<8 | value; 0: longer code
	maxcode [17]int32               // largest code of each length, -1: none
	valptr  [17]int32
	mincode [17]int32
	vals    []byte
}

func newHuffman(counts [16]int, vals []byte) (*huffman, error) {
	h := &huffman{vals: append([]byte(nil), vals...)}
	code, k := int32(0), int32(0)
	for l := 1; l <= 16; l++ {
		n := int32(counts[l-1])
		h.valptr[l], h.mincode[l] = k, code
		if n == 0 {
			h.maxcode[l] = -1
		} else {
			h.maxcode[l] = code + n - 1
		}
		if code+n > 1<<l {
			return nil, fmt.Errorf("%w: over-subscribed Huffman table", ErrFormat)
		}
		if l <= lookupBits {
			for i := int32(0); i < n; i++ {
				c := code + i
				lo := c << (lookupBits - l)
				for j := int32(0); j < 1<<(lookupBits-l); j++ {
					h.lookup[lo+j] = uint16(l)<<8 | uint16(vals[k+i])
				}
			}
		}
		code += n
		k += n
		code <<= 1
	}
	return h, nil
}

// bitReader reads entropy-coded data: it removes stuffed zero bytes and
// stops at a marker, feeding zero bits past it (as libjpeg does) while
// counting them so a truncated scan is detected.
type bitReader struct {
	data   []byte
	pos    int    // next byte to load
	acc    uint64 // bits, most significant first
	n      uint   // valid bits in acc
	marker bool   // pos is at a marker
	real   int64  // bytes of data loaded
	pad    int64  // zero bytes loaded past a marker
	used   int64  // bits consumed
}

func (b *bitReader) fill() {
	for b.n <= 56 {
		var c byte
		switch {
		case b.marker || b.pos >= len(b.data):
			b.pad++
		case b.data[b.pos] == 0xFF:
			if b.pos+1 < len(b.data) && b.data[b.pos+1] == 0x00 {
				c = 0xFF
				b.pos += 2
				b.real++
			} else {
				b.marker = true
				b.pad++
			}
		default:
			c = b.data[b.pos]
			b.pos++
			b.real++
		}
		b.acc |= uint64(c) << (56 - b.n)
		b.n += 8
	}
}

func (b *bitReader) consume(k uint) {
	b.acc <<= k
	b.n -= k
	b.used += int64(k)
}

// overrun reports whether more bits were consumed than the data held.
func (b *bitReader) overrun() bool { return b.used > 8*b.real }

// decode reads one Huffman-coded value.
func (b *bitReader) decode(h *huffman) (byte, error) {
	if h == nil {
		return 0, fmt.Errorf("%w: undefined Huffman table", ErrFormat)
	}
	if b.n < 16 {
		b.fill()
	}
	if e := h.lookup[b.acc>>(64-lookupBits)]; e != 0 {
		b.consume(uint(e >> 8))
		return byte(e), nil
	}
	for l := lookupBits + 1; l <= 16; l++ {
		c := int32(b.acc >> (64 - uint(l)))
		if c <= h.maxcode[l] {
			b.consume(uint(l))
			return h.vals[h.valptr[l]+c-h.mincode[l]], nil
		}
	}
	return 0, fmt.Errorf("%w: bad Huffman code", ErrFormat)
}

// receiveExtend reads s (1–15) bits and extends them to a signed value
// (T.81 F.2.2.1).
func (b *bitReader) receiveExtend(s int) int32 {
	if b.n < uint(s) {
		b.fill()
	}
	v := int32(b.acc >> (64 - uint(s)))
	b.consume(uint(s))
	if v < 1<<(s-1) {
		v += -1<<s + 1
	}
	return v
}

// restart discards the bits left in the interval and reads RSTn.
func (b *bitReader) restart(n int) error {
	if b.overrun() {
		return fmt.Errorf("%w: entropy-coded data truncated", ErrFormat)
	}
	// Skip to the marker: loading stopped at it, or bytes remain before it.
	for !b.marker {
		if b.pos >= len(b.data) {
			return fmt.Errorf("%w: missing RST%d", ErrFormat, n)
		}
		if b.data[b.pos] == 0xFF && b.pos+1 < len(b.data) && b.data[b.pos+1] != 0x00 {
			b.marker = true
			break
		}
		b.pos++
	}
	for b.pos+1 < len(b.data) && b.data[b.pos+1] == 0xFF { // fill bytes
		b.pos++
	}
	if b.pos+1 >= len(b.data) || b.data[b.pos+1] != byte(mRST0+n) {
		return fmt.Errorf("%w: expected RST%d", ErrFormat, n)
	}
	b.pos += 2
	b.acc, b.n, b.marker = 0, 0, false
	b.real, b.pad, b.used = 0, 0, 0
	return nil
}
