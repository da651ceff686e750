package imaging

import (
	"encoding/binary"
	"fmt"
	"io"
)

// maxFragment bounds one fragment, and maxFragments the fragments walked
// when frames are found without an offset table.
const (
	maxFragment  = 1 << 30
	maxFragments = 1 << 20
)

// readNative reads frame n (0-based) of native pixel data: one ReadAt of
// exactly its bytes.
func readNative(r io.ReaderAt, size int64, h *header, n int, frameBytes int64) ([]byte, error) {
	off := h.pixelOff + int64(n)*frameBytes
	if h.pixelLen >= 0 && int64(n+1)*frameBytes > h.pixelLen || off+frameBytes > size {
		return nil, fmt.Errorf("%w: pixel data holds less than %d frames of %d bytes", ErrCorrupt, n+1, frameBytes)
	}
	buf := make([]byte, frameBytes)
	if _, err := r.ReadAt(buf, off); err != nil {
		return nil, fmt.Errorf("%w: reading frame %d: %v", ErrCorrupt, n, err)
	}
	return buf, nil
}

// item reads the item header at off: its tag and length.
func item(r io.ReaderAt, size, off int64) (uint32, uint32, error) {
	var b [8]byte
	if off+8 > size {
		return 0, 0, fmt.Errorf("%w: pixel data ends without a sequence delimiter", ErrCorrupt)
	}
	if _, err := r.ReadAt(b[:], off); err != nil {
		return 0, 0, fmt.Errorf("%w: reading pixel data items: %v", ErrCorrupt, err)
	}
	// Encapsulated pixel data is always little endian.
	tag := uint32(binary.LittleEndian.Uint16(b[0:]))<<16 | uint32(binary.LittleEndian.Uint16(b[2:]))
	return tag, binary.LittleEndian.Uint32(b[4:]), nil
}

// readEncapsulated returns frame n (0-based) of encapsulated pixel data:
// its fragments' values concatenated. Frames are found as PS3.5 A.4 and
// ingest have them: one frame is every fragment; several are delimited by
// the Basic Offset Table when it has one entry per frame, else must be one
// fragment each. Only the item headers on the way and the frame's own
// fragments are read.
func readEncapsulated(r io.ReaderAt, size int64, h *header, n int) ([]byte, error) {
	off := h.pixelOff
	tag, l, err := item(r, size, off)
	if err != nil {
		return nil, err
	}
	if tag != tagItem || l == undefinedLength || int64(l) > size-off-8 {
		return nil, fmt.Errorf("%w: encapsulated pixel data has no offset table", ErrCorrupt)
	}
	first := off + 8 + int64(l) // first fragment's item
	start, end := first, int64(-1)
	switch {
	case h.frames == 1:
	case int64(l) == 4*int64(h.frames):
		var b [8]byte
		m := 8
		if n == h.frames-1 {
			m = 4
		}
		if _, err := r.ReadAt(b[:m], off+8+4*int64(n)); err != nil {
			return nil, fmt.Errorf("%w: reading the offset table: %v", ErrCorrupt, err)
		}
		start = first + int64(binary.LittleEndian.Uint32(b[:]))
		if m == 8 {
			end = first + int64(binary.LittleEndian.Uint32(b[4:]))
			if end <= start {
				return nil, fmt.Errorf("%w: offset table is not increasing", ErrCorrupt)
			}
		}
	default:
		// One fragment per frame: walk the item headers to the n-th,
		// counting them all so a mismatch is an error, not wrong pixels.
		count := 0
		for pos := first; ; {
			tag, l, err := item(r, size, pos)
			if err != nil {
				return nil, err
			}
			if tag == tagSeqDelim {
				break
			}
			if tag != tagItem || l > maxFragment || count >= maxFragments {
				return nil, fmt.Errorf("%w: bad pixel data fragment at byte %d", ErrCorrupt, pos)
			}
			if count == n {
				start, end = pos, pos+8+int64(l)
			}
			count++
			pos += 8 + int64(l)
		}
		if count != h.frames {
			return nil, fmt.Errorf("%w: %d fragments for %d frames and no offset table", ErrUnsupportedPixels, count, h.frames)
		}
	}
	var out []byte
	for pos := start; end < 0 || pos < end; {
		tag, l, err := item(r, size, pos)
		if err != nil {
			return nil, err
		}
		if tag == tagSeqDelim {
			if end >= 0 {
				return nil, fmt.Errorf("%w: offset table points past the fragments", ErrCorrupt)
			}
			break
		}
		if tag != tagItem || l > maxFragment || int64(l) > size-pos-8 {
			return nil, fmt.Errorf("%w: bad pixel data fragment at byte %d", ErrCorrupt, pos)
		}
		if int64(len(out))+int64(l) > size {
			return nil, fmt.Errorf("%w: frame larger than the file", ErrCorrupt)
		}
		out = append(out, make([]byte, l)...)
		if _, err := r.ReadAt(out[len(out)-int(l):], pos+8); err != nil {
			return nil, fmt.Errorf("%w: reading fragment: %v", ErrCorrupt, err)
		}
		pos += 8 + int64(l)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: frame %d has no fragments", ErrCorrupt, n)
	}
	return out, nil
}
