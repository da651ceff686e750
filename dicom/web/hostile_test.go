package web_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/emberfhir/ember/dicom"
	"github.com/emberfhir/ember/dicom/web"
)

// Hostile-input regressions of issue 11 for DICOMweb.

const (
	bigStudy  = "1.2.826.0.1.3680043.10.511.1"
	bigSeries = "1.2.826.0.1.3680043.10.511.1.1"
	bigSOP    = "1.2.826.0.1.3680043.10.511.1.1.1"
)

// nativeMultiFrame builds a Part-10 file of frames native 16-bit frames of
// rows×cols, frame i filled with bytes derived from i, and returns it with
// each frame's bytes.
func nativeMultiFrame(rows, cols, frames int) ([]byte, [][]byte) {
	u16 := func(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
	var meta bytes.Buffer
	dicom.AppendElement(&meta, 0x0002, 0x0001, "OB", []byte{0, 1})
	dicom.AppendElement(&meta, 0x0002, 0x0002, "UI", []byte("1.2.840.10008.5.1.4.1.1.7"))
	dicom.AppendElement(&meta, 0x0002, 0x0003, "UI", []byte(bigSOP))
	dicom.AppendElement(&meta, 0x0002, 0x0010, "UI", []byte("1.2.840.10008.1.2.1"))
	var f bytes.Buffer
	f.Write(make([]byte, 128))
	f.WriteString("DICM")
	dicom.AppendElement(&f, 0x0002, 0x0000, "UL", binary.LittleEndian.AppendUint32(nil, uint32(meta.Len())))
	f.Write(meta.Bytes())
	dicom.AppendElement(&f, 0x0008, 0x0016, "UI", []byte("1.2.840.10008.5.1.4.1.1.7"))
	dicom.AppendElement(&f, 0x0008, 0x0018, "UI", []byte(bigSOP))
	dicom.AppendElement(&f, 0x0008, 0x0060, "CS", []byte("OT"))
	dicom.AppendElement(&f, 0x0010, 0x0020, "LO", []byte("BIG-1"))
	dicom.AppendElement(&f, 0x0020, 0x000D, "UI", []byte(bigStudy))
	dicom.AppendElement(&f, 0x0020, 0x000E, "UI", []byte(bigSeries))
	dicom.AppendElement(&f, 0x0028, 0x0002, "US", u16(1))
	dicom.AppendElement(&f, 0x0028, 0x0004, "CS", []byte("MONOCHROME2"))
	dicom.AppendElement(&f, 0x0028, 0x0008, "IS", []byte(strconv.Itoa(frames)))
	dicom.AppendElement(&f, 0x0028, 0x0010, "US", u16(uint16(rows)))
	dicom.AppendElement(&f, 0x0028, 0x0011, "US", u16(uint16(cols)))
	dicom.AppendElement(&f, 0x0028, 0x0100, "US", u16(16))
	dicom.AppendElement(&f, 0x0028, 0x0101, "US", u16(16))
	dicom.AppendElement(&f, 0x0028, 0x0102, "US", u16(15))
	dicom.AppendElement(&f, 0x0028, 0x0103, "US", u16(0))
	size := rows * cols * 2
	var px []byte
	var each [][]byte
	for i := 0; i < frames; i++ {
		fr := bytes.Repeat([]byte{byte(i + 1), byte(0x10 * (i + 1))}, size/2)
		fr[0] = 0xEE // not just a repeated pattern
		each = append(each, fr)
		px = append(px, fr...)
	}
	dicom.AppendElement(&f, 0x7FE0, 0x0010, "OW", px)
	return f.Bytes(), each
}

const bigPath = "/studies/" + bigStudy + "/series/" + bigSeries + "/instances/" + bigSOP

func checkOutcome(t *testing.T, what string, resp *http.Response, body []byte) {
	t.Helper()
	var oo struct {
		ResourceType string
		Issue        []struct{ Diagnostics string }
	}
	if err := json.Unmarshal(body, &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 {
		t.Errorf("%s: %d %q, want an OperationOutcome", what, resp.StatusCode, body)
	}
}

// Finding 3: a frame asked for a thousand times is sent once, streamed,
// and the request costs about one frame of memory, not a thousand; a list
// beyond web.MaxFrames is a 400.
func TestFrameListBounded(t *testing.T) {
	e := newEnv(t)
	file, frames := nativeMultiFrame(512, 1024, 2) // 1 MiB frames
	if status, resp := e.stow("/studies", part{"application/dicom", file}); status != 200 {
		t.Fatalf("STOW: %d %v", status, resp)
	}
	list := strings.TrimSuffix(strings.Repeat("1,", 1000), ",")
	e.get(bigPath+"/frames/1", "") // warm up: pools, connections
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	resp, body := e.get(bigPath+"/frames/"+list, "")
	runtime.ReadMemStats(&after)
	got := parts(t, resp, body)
	if resp.StatusCode != 200 || len(got) != 1 || !bytes.Equal(got[0].body, frames[0]) {
		t.Fatalf("frame 1 ×1000: %d, %d parts (%d bytes), want one part holding frame 1", resp.StatusCode, len(got), len(body))
	}
	// One frame is 1 MiB: the server reading it, the client reading the
	// response. 1,000 copies would be 1 GiB or more.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
		t.Errorf("frame 1 ×1000 allocated %d MiB, want < 64", alloc>>20)
	}

	// Order of first mention, duplicates dropped, bytes exact.
	resp, body = e.get(bigPath+"/frames/2,1,2,1", "")
	got = parts(t, resp, body)
	if len(got) != 2 || !bytes.Equal(got[0].body, frames[1]) || !bytes.Equal(got[1].body, frames[0]) {
		t.Errorf("frames 2,1,2,1: %d, %d parts, want frame 2 then frame 1", resp.StatusCode, len(got))
	}
	// Native bulk data is the whole PixelData value, one part.
	resp, body = e.get(bigPath+"/bulkdata/7FE00010", "")
	if got = parts(t, resp, body); len(got) != 1 || !bytes.Equal(got[0].body, append(bytes.Clone(frames[0]), frames[1]...)) {
		t.Errorf("bulk data: %d, %d parts", resp.StatusCode, len(got))
	}

	tooMany := strings.TrimSuffix(strings.Repeat("1,", web.MaxFrames+1), ",")
	resp, body = e.get(bigPath+"/frames/"+tooMany, "")
	if resp.StatusCode != 400 {
		t.Errorf("%d frame numbers: %d, want 400", web.MaxFrames+1, resp.StatusCode)
	}
	checkOutcome(t, "too many frames", resp, body)
	if resp, _ := e.get(bigPath+"/frames/3", ""); resp.StatusCode != 404 {
		t.Errorf("frame 3 of 2: %d, want 404", resp.StatusCode)
	}
}

// Finding 3, encapsulated: frames located through the offset table come
// back in the order asked, each once, and bulk data is every frame.
func TestEncapsulatedFrameOrder(t *testing.T) {
	e := newEnv(t)
	rle2 := sample(t, "SC_rgb_rle_2frame.dcm")
	if status, resp := e.stow("/studies", part{"application/dicom", rle2}); status != 200 {
		t.Fatalf("STOW: %d %v", status, resp)
	}
	insts := e.qido("/instances?SOPInstanceUID=1.2.826.0.1.3680043.8.498.49043964482360854182530167603505525116")
	if len(insts) != 1 {
		t.Fatalf("instances: %v", insts)
	}
	p := strings.TrimPrefix(str(insts[0], "00081190"), e.base)
	var one [3][]byte
	for _, n := range []int{1, 2} {
		resp, body := e.get(p+"/frames/"+strconv.Itoa(n), "")
		got := parts(t, resp, body)
		if len(got) != 1 || len(got[0].body) == 0 {
			t.Fatalf("frame %d: %d parts", n, len(got))
		}
		one[n] = got[0].body
		if !bytes.Contains(rle2, one[n]) {
			t.Errorf("frame %d is not a fragment of the file", n)
		}
	}
	if bytes.Equal(one[1], one[2]) {
		t.Fatal("frames 1 and 2 are the same bytes: the test cannot tell them apart")
	}
	resp, body := e.get(p+"/frames/2,1,2", "")
	if got := parts(t, resp, body); len(got) != 2 || !bytes.Equal(got[0].body, one[2]) || !bytes.Equal(got[1].body, one[1]) {
		t.Errorf("frames 2,1,2: %d parts, want frame 2 then frame 1", len(got))
	}
	resp, body = e.get(p+"/bulkdata/7FE00010", "")
	if got := parts(t, resp, body); len(got) != 2 || !bytes.Equal(got[0].body, one[1]) || !bytes.Equal(got[1].body, one[2]) {
		t.Errorf("bulk data: %d parts, want frames 1 and 2", len(got))
	}
}

// failingBody yields data, then err.
type failingBody struct {
	data []byte
	err  error
}

func (f *failingBody) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

// Finding 6: a STOW-RS body whose read fails midway (the server's read
// deadline fired on a stalled client, or the client went away) leaves no
// blob and no instance behind and is answered at once as a failed request,
// not as an instance the server could not understand.
func TestStowBodyReadFails(t *testing.T) {
	e := newEnv(t)
	ct := sample(t, "CT_small.dcm")
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	w, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
	w.Write(ct)
	mw.Close()
	half := buf.Bytes()[:buf.Len()/2]
	for _, c := range []struct {
		err  error
		want int
	}{
		{errors.New("connection reset by peer"), http.StatusBadRequest},
		{os.ErrDeadlineExceeded, http.StatusRequestTimeout},
	} {
		req := httptest.NewRequest("POST", "/dicomweb/studies", &failingBody{data: bytes.Clone(half), err: c.err})
		req.Header.Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary())
		rec := httptest.NewRecorder()
		e.srv.Config.Handler.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("body failing with %v: %d %s, want %d", c.err, rec.Code, rec.Body, c.want)
		}
		checkOutcome(t, "failed body", rec.Result(), rec.Body.Bytes())
	}
	if n := e.blobCount(); n != 0 {
		t.Errorf("%d blob files left by failed bodies", n)
	}
	if got := e.qido("/instances"); len(got) != 0 {
		t.Errorf("instances stored from failed bodies: %d", len(got))
	}
}

// Finding 4: NUL bytes and invalid UTF-8 in paths and query values are a
// 400 with an OperationOutcome, never a database error.
func TestBadTextIs400(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{
		"/studies?PatientID=%00",
		"/studies?PatientName=%FF",
		"/instances?AccessionNumber=%C0%80",
		"/studies?%00=1",
		"/studies/1.2%00/series",
		"/studies/%FF/metadata",
		"/studies/1.2/series/%FE/instances/1.3",
		"/studies/1.2/series/1.3/instances/1.4%00/frames/1",
	} {
		resp, body := e.get(p, "")
		if resp.StatusCode != 400 {
			t.Errorf("GET %s: %d %s, want 400", p, resp.StatusCode, body)
			continue
		}
		checkOutcome(t, p, resp, body)
	}
	if got := e.qido("/studies?PatientID=ok"); len(got) != 0 {
		t.Errorf("plain query: %v", got)
	}
}

// Finding 15: a window that is not finite, or not wider than 0, is a 400.
func TestRenderedWindowMustBeFinite(t *testing.T) {
	e := newEnv(t)
	file, _ := nativeMultiFrame(8, 8, 1)
	if status, resp := e.stow("/studies", part{"application/dicom", file}); status != 200 {
		t.Fatalf("STOW: %d %v", status, resp)
	}
	if resp, body := e.get(bigPath+"/rendered?window=100,200", "image/png"); resp.StatusCode != 200 {
		t.Fatalf("rendered: %d %s", resp.StatusCode, body)
	}
	for _, w := range []string{"NaN,NaN", "NaN,100", "100,NaN", "Inf,100", "100,Inf", "-Inf,100", "100,+Inf", "100,-5", "100,0", "1e400,10"} {
		resp, body := e.get(bigPath+"/rendered?window="+w, "")
		if resp.StatusCode != 400 {
			t.Errorf("window=%s: %d, want 400", w, resp.StatusCode)
			continue
		}
		checkOutcome(t, "window="+w, resp, body)
	}
}
