package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	_ "image/jpeg"
	_ "image/png"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emberfhir/ember/dicom"
	"github.com/emberfhir/ember/dicom/web"
	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir/search"
	"github.com/emberfhir/ember/internal/dicomsamples"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

type env struct {
	t     *testing.T
	store *store.Store
	svc   *dicom.Service
	srv   *httptest.Server
	base  string
	blobs string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := t.Context()
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	eng, err := engine.New(engine.Config{BaseURL: "http://ember.test/fhir"}, st)
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	blobURL, err := dicom.DefaultBlobURL(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(dataDir, "dicom")
	blobs, err := dicom.OpenBlobs(ctx, blobURL)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, store: st, blobs: dir}
	mux := http.NewServeMux()
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	e.base = e.srv.URL + "/dicomweb"
	e.svc, err = dicom.New(dicom.Config{Engine: eng, Blobs: blobs, DICOMwebBase: e.base, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.svc.Close(context.Background()) })
	mux.Handle("/dicomweb/", web.New(e.svc, web.Options{Prefix: "/dicomweb"}))
	return e
}

type part struct {
	contentType string
	body        []byte
}

func (e *env) stow(path string, parts ...part) (int, map[string]any) {
	e.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		w, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {p.contentType}})
		if err != nil {
			e.t.Fatal(err)
		}
		w.Write(p.body)
	}
	mw.Close()
	req, _ := http.NewRequest("POST", e.base+path, &buf)
	req.Header.Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func (e *env) get(path string, accept string) (*http.Response, []byte) {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.base+path, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, b
}

func (e *env) qido(path string) []map[string]any {
	e.t.Helper()
	resp, b := e.get(path, "")
	if resp.StatusCode != 200 {
		e.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	var out []map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	return out
}

// parts splits a multipart/related response.
func parts(t *testing.T, resp *http.Response, body []byte) []part {
	t.Helper()
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/related" {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var out []part
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		out = append(out, part{p.Header.Get("Content-Type"), b})
	}
}

func str(ds map[string]any, tag string) string {
	a, _ := ds[tag].(map[string]any)
	vals, _ := a["Value"].([]any)
	if len(vals) == 0 {
		return ""
	}
	switch v := vals[0].(type) {
	case string:
		return v
	case float64:
		return fmt.Sprint(v)
	case map[string]any:
		s, _ := v["Alphabetic"].(string)
		return s
	}
	return ""
}

func sample(t *testing.T, name string) []byte {
	t.Helper()
	p, err := dicomsamples.Pydicom(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func suyash(t *testing.T, name string) []byte {
	t.Helper()
	dir, err := dicomsamples.SuyashkumarDir(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const (
	ctStudy  = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
	ctSeries = "1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322"
	ctSOP    = "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"
)

func TestStowQidoWado(t *testing.T) {
	e := newEnv(t)
	files := map[string][]byte{
		"CT_small (native)":        sample(t, dicomsamples.CTSmall),
		"JPEG-LS":                  sample(t, dicomsamples.MRJPEGLS),
		"JPEG extended":            sample(t, dicomsamples.JPEGExtended),
		"JPEG 2000":                sample(t, "JPEG2000.dcm"),
		"RLE RGB":                  sample(t, dicomsamples.RGBRLE),
		"suyashkumar 1 (PT)":       suyash(t, "1.dcm"),
		"suyashkumar 3 (MR)":       suyash(t, "3.dcm"),
		"suyashkumar 4 (implicit)": suyash(t, "4.dcm"),
	}
	var ps []part
	for _, b := range files {
		ps = append(ps, part{"application/dicom", b})
	}
	status, resp := e.stow("/studies", ps...)
	if status != 200 {
		t.Fatalf("STOW: %d %v", status, resp)
	}
	refs := resp["00081199"].(map[string]any)["Value"].([]any)
	if len(refs) != len(files) {
		t.Fatalf("ReferencedSOPSequence has %d items, want %d", len(refs), len(files))
	}
	// Every instance comes back byte-identical through its RetrieveURL.
	for _, r := range refs {
		u := str(r.(map[string]any), "00081190")
		resp, body := e.get(strings.TrimPrefix(u, e.base), `multipart/related; type="application/dicom"`)
		if resp.StatusCode != 200 {
			t.Fatalf("WADO %s: %d", u, resp.StatusCode)
		}
		got := parts(t, resp, body)
		if len(got) != 1 {
			t.Fatalf("WADO %s: %d parts", u, len(got))
		}
		found := false
		for _, b := range files {
			found = found || bytes.Equal(b, got[0].body)
		}
		if !found {
			t.Errorf("WADO %s: bytes differ from every stored file", u)
		}
	}

	// QIDO: study level with the CT's attributes.
	studies := e.qido("/studies?PatientID=1CT1")
	if len(studies) != 1 {
		t.Fatalf("PatientID=1CT1: %d studies", len(studies))
	}
	ct := studies[0]
	if str(ct, "0020000D") != ctStudy || str(ct, "00080061") != "CT" || str(ct, "00201208") != "1" ||
		str(ct, "00201206") != "1" || str(ct, "00100010") != "CompressedSamples^CT1" || str(ct, "00080020") != "20040119" {
		t.Errorf("CT study: %v", ct)
	}
	if got := len(e.qido("/studies")); got != 7 { // 8 files, JPEG extended and JPEG 2000 share a study
		t.Errorf("all studies: %d, want 7", got)
	}
	for q, want := range map[string]int{
		"PatientName=Compressed*":                    3,
		"PatientName=compressed*":                    0,
		"PatientName=compressed*&fuzzymatching=true": 3,
		"PatientName=CompressedSamples%5ECT?":        1,
		"PatientName=CompressedSamples^CT1":          1,
		"PatientName=Lestrade*":                      1,
		"StudyDate=20040119":                         1,
		"StudyDate=20040101-20041231":                3,
		"StudyDate=-20031231":                        1,
		"StudyDate=20050101-":                        3,
		"ModalitiesInStudy=NM":                       1,
		"ModalitiesInStudy=CT,MR":                    3,
		"00100020=1CT1":                              1,
		"StudyInstanceUID=" + ctStudy:                1,
		"AccessionNumber=nothing":                    0,
		"limit=2":                                    2,
		"limit=2&offset=6":                           1,
	} {
		if got := len(e.qido("/studies?" + q)); got != want {
			t.Errorf("QIDO /studies?%s: %d results, want %d", q, got, want)
		}
	}
	series := e.qido("/studies/" + ctStudy + "/series")
	if len(series) != 1 || str(series[0], "0020000E") != ctSeries || str(series[0], "00080060") != "CT" {
		t.Errorf("series: %v", series)
	}
	insts := e.qido("/studies/" + ctStudy + "/series/" + ctSeries + "/instances?includefield=PatientID")
	if len(insts) != 1 || str(insts[0], "00080018") != ctSOP || str(insts[0], "00280010") != "128" ||
		str(insts[0], "00100020") != "1CT1" {
		t.Errorf("instances: %v", insts)
	}
	if resp, _ := e.get("/studies?StudyDate=2004", ""); resp.StatusCode != 400 {
		t.Errorf("bad date: %d, want 400", resp.StatusCode)
	}

	// Metadata: DICOM JSON with PixelData as a BulkDataURI.
	instPath := "/studies/" + ctStudy + "/series/" + ctSeries + "/instances/" + ctSOP
	resp2, body := e.get(instPath+"/metadata", "")
	var md []map[string]any
	if err := json.Unmarshal(body, &md); err != nil || resp2.StatusCode != 200 || len(md) != 1 {
		t.Fatalf("metadata: %d %v %s", resp2.StatusCode, err, body[:min(len(body), 300)])
	}
	if str(md[0], "00100020") != "1CT1" || str(md[0], "00280010") != "128" || str(md[0], "00100010") != "CompressedSamples^CT1" {
		t.Errorf("metadata values: %v %v", md[0]["00100020"], md[0]["00280010"])
	}
	px, _ := md[0]["7FE00010"].(map[string]any)
	if px == nil || px["BulkDataURI"] == nil {
		t.Fatalf("PixelData: %v", md[0]["7FE00010"])
	}
	// The BulkDataURI serves the pixel value.
	respB, body := e.get(strings.TrimPrefix(px["BulkDataURI"].(string), e.base), "")
	if bp := parts(t, respB, body); len(bp) != 1 || len(bp[0].body) != 128*128*2 {
		t.Errorf("bulk data: %d", respB.StatusCode)
	}

	// Frames: native frame is rows×cols×2 bytes.
	resp3, body := e.get(instPath+"/frames/1", "")
	if resp3.StatusCode != 200 {
		t.Fatalf("frames: %d %s", resp3.StatusCode, body)
	}
	fr := parts(t, resp3, body)
	if len(fr) != 1 || len(fr[0].body) != 128*128*2 {
		t.Errorf("frame: %d parts", len(fr))
	}
	if resp, _ := e.get(instPath+"/frames/2", ""); resp.StatusCode != 404 {
		t.Errorf("frame 2: %d, want 404", resp.StatusCode)
	}

	// Rendered: JPEG by default, PNG on request, both 128×128.
	for _, acc := range []string{"", "image/png"} {
		resp, body := e.get(instPath+"/rendered?window=40,400", acc)
		if resp.StatusCode != 200 {
			t.Fatalf("rendered %q: %d %s", acc, resp.StatusCode, body)
		}
		img, format, err := image.Decode(bytes.NewReader(body))
		if err != nil || img.Bounds().Dx() != 128 || img.Bounds().Dy() != 128 {
			t.Errorf("rendered %q: %v %v", acc, err, img)
		}
		if want := map[string]string{"": "jpeg", "image/png": "png"}[acc]; format != want {
			t.Errorf("rendered format %s, want %s", format, want)
		}
	}
	// Compressed pixel data cannot be rendered: 406.
	jls := e.qido("/instances?SOPInstanceUID=1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457")
	if len(jls) != 1 {
		t.Fatalf("JPEG-LS instance: %v", jls)
	}
	jlsPath := strings.TrimPrefix(str(jls[0], "00081190"), e.base)
	if resp, _ := e.get(jlsPath+"/rendered", ""); resp.StatusCode != 406 {
		t.Errorf("rendered JPEG-LS: %d, want 406", resp.StatusCode)
	}
	// ...but its frame comes back as the encapsulated fragment(s).
	resp4, body := e.get(jlsPath+"/frames/1", "")
	if fr := parts(t, resp4, body); len(fr) != 1 || !strings.HasPrefix(fr[0].contentType, "image/jls") ||
		!bytes.HasPrefix(fr[0].body, []byte{0xFF, 0xD8}) {
		t.Errorf("JPEG-LS frame: %d %v", resp4.StatusCode, fr)
	}

	// Study retrieve: every instance of the study.
	resp5, body := e.get("/studies/1.3.6.1.4.1.5962.1.2.8.20040826185059.5457", "")
	if got := parts(t, resp5, body); len(got) != 2 {
		t.Errorf("study retrieve: %d parts, want 2", len(got))
	}
	// No transcoding: a transfer syntax other than the stored one is 406.
	ctPath := "/studies/" + ctStudy + "/series/" + ctSeries + "/instances/" + ctSOP
	for accept, want := range map[string]int{
		`multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1`:    200,
		`multipart/related; type="application/dicom"; transfer-syntax=*`:                      200,
		`multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50`: 406,
		`multipart/related; type="application/dicom+json"`:                                    406,
		`application/dicom+json`: 406,
	} {
		if resp, _ := e.get(ctPath, accept); resp.StatusCode != want {
			t.Errorf("Accept %s: %d, want %d", accept, resp.StatusCode, want)
		}
	}
	if resp, _ := e.get("/studies/1.2.3", ""); resp.StatusCode != 404 {
		t.Errorf("unknown study: %d", resp.StatusCode)
	}

	e.checkImagingStudy(t)

	// Every study's ImagingStudy agrees with what its headers say.
	for _, st := range e.qido("/studies?includefield=all") {
		uid := str(st, "0020000D")
		v, err := e.store.Read(t.Context(), "ImagingStudy", dicom.ImagingStudyID(uid))
		if err != nil {
			t.Errorf("ImagingStudy %s: %v", uid, err)
			continue
		}
		var is struct {
			Started                           string
			NumberOfSeries, NumberOfInstances int
			Modality                          []struct{ Code string }
			Subject                           struct{ Reference string }
		}
		_ = json.Unmarshal(v.Content, &is)
		var mods []string
		for _, m := range is.Modality {
			mods = append(mods, m.Code)
		}
		date := str(st, "00080020")
		if fmt.Sprint(is.NumberOfInstances) != str(st, "00201208") || fmt.Sprint(is.NumberOfSeries) != str(st, "00201206") ||
			strings.Join(mods, `\`) != modalities(st) || (len(date) == 8 && !strings.HasPrefix(is.Started, date[:4]+"-"+date[4:6]+"-"+date[6:])) {
			t.Errorf("ImagingStudy %s disagrees with the headers %v: %s", uid, st, v.Content)
		}
		pv, err := e.store.Read(t.Context(), "Patient", strings.TrimPrefix(is.Subject.Reference, "Patient/"))
		if pid := str(st, "00100020"); err != nil || (pid != "" && !bytes.Contains(pv.Content, []byte(`"value": "`+pid+`"`))) {
			t.Errorf("ImagingStudy %s: subject %s is not PatientID %s: %v", uid, is.Subject.Reference, pid, err)
		}
	}
}

func modalities(ds map[string]any) string {
	a, _ := ds["00080061"].(map[string]any)
	vals, _ := a["Value"].([]any)
	var out []string
	for _, v := range vals {
		out = append(out, v.(string))
	}
	return strings.Join(out, `\`)
}

func (e *env) checkImagingStudy(t *testing.T) {
	ctx := t.Context()
	v, err := e.store.Read(ctx, "ImagingStudy", dicom.ImagingStudyID(ctStudy))
	if err != nil {
		t.Fatalf("ImagingStudy: %v", err)
	}
	var is struct {
		Status                            string
		Identifier                        []struct{ System, Value string }
		Subject                           struct{ Reference string }
		Started                           string
		Modality                          []struct{ System, Code string }
		NumberOfSeries, NumberOfInstances int
		Endpoint                          []struct{ Reference string }
		Series                            []struct {
			UID      string
			Modality struct{ Code string }
			Instance []struct {
				UID      string
				SopClass struct{ Code string }
				Number   int
			}
		}
	}
	if err := json.Unmarshal(v.Content, &is); err != nil {
		t.Fatal(err)
	}
	if is.Status != "available" || is.Identifier[0].System != "urn:dicom:uid" || is.Identifier[0].Value != "urn:oid:"+ctStudy ||
		is.NumberOfSeries != 1 || is.NumberOfInstances != 1 || len(is.Modality) != 1 || is.Modality[0].Code != "CT" ||
		!strings.HasPrefix(is.Started, "2004-01-19T07:27:") || len(is.Series) != 1 || is.Series[0].UID != ctSeries ||
		is.Series[0].Instance[0].UID != ctSOP || is.Series[0].Instance[0].SopClass.Code != "urn:oid:1.2.840.10008.5.1.4.1.1.2" ||
		len(is.Endpoint) != 1 {
		t.Errorf("ImagingStudy: %s", v.Content)
	}
	// The subject is the Patient with PatientID 1CT1, made from the patient module.
	pid := strings.TrimPrefix(is.Subject.Reference, "Patient/")
	pv, err := e.store.Read(ctx, "Patient", pid)
	if err != nil {
		t.Fatalf("subject %s: %v", is.Subject.Reference, err)
	}
	var p struct {
		Identifier []struct{ System, Value string }
		Name       []struct{ Family string }
	}
	_ = json.Unmarshal(pv.Content, &p)
	if len(p.Identifier) != 1 || p.Identifier[0].Value != "1CT1" || p.Identifier[0].System != "urn:dicom:patient-id" ||
		len(p.Name) != 1 || p.Name[0].Family != "CompressedSamples" {
		t.Errorf("Patient: %s", pv.Content)
	}
	ep, err := e.store.Read(ctx, "Endpoint", strings.TrimPrefix(is.Endpoint[0].Reference, "Endpoint/"))
	if err != nil || !bytes.Contains(ep.Content, []byte(`"dicom-wado-rs"`)) || !bytes.Contains(ep.Content, []byte(e.base)) {
		t.Errorf("Endpoint: %v %s", err, ep.Content)
	}
	// FHIR search finds it by patient, modality and start.
	for params, want := range map[string]int{
		"patient=" + pid + "&modality=CT&started=ge2004-01-01":     1,
		"patient=" + pid + "&modality=MR":                          0,
		"patient=" + pid + "&started=ge2005-01-01":                 0,
		"modality=http://dicom.nema.org/resources/ontology/DCM|CT": 1,
		"identifier=urn:dicom:uid|urn:oid:" + ctStudy:              1,
		"patient.identifier=urn:dicom:patient-id|1CT1":             1,
	} {
		vals, _ := url.ParseQuery(params)
		q, err := search.Parse("ImagingStudy", vals, search.Options{Strict: true})
		if err != nil {
			t.Fatalf("%s: %v", params, err)
		}
		res, err := e.store.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Matches) != want {
			t.Errorf("ImagingStudy?%s: %d, want %d", params, len(res.Matches), want)
		}
	}
}

// Receiving the same SOP Instance UID again replaces it: one row, one file,
// the latest bytes, and the ImagingStudy still counts one instance.
func TestDuplicateReplaces(t *testing.T) {
	e := newEnv(t)
	first, second := sample(t, dicomsamples.MRSmall), sample(t, dicomsamples.MRRLE)
	for _, b := range [][]byte{first, second, second} {
		if status, resp := e.stow("/studies", part{"application/dicom", b}); status != 200 {
			t.Fatalf("STOW: %d %v", status, resp)
		}
	}
	insts := e.qido("/instances?includefield=all")
	if len(insts) != 1 || str(insts[0], "00083002") != "1.2.840.10008.1.2.5" {
		t.Fatalf("instances: %v", insts)
	}
	resp, body := e.get(strings.TrimPrefix(str(insts[0], "00081190"), e.base), "")
	if got := parts(t, resp, body); len(got) != 1 || !bytes.Equal(got[0].body, second) {
		t.Errorf("retrieve after replace: not the latest bytes")
	}
	if n := e.blobCount(); n != 1 {
		t.Errorf("%d blob files, want 1", n)
	}
	v, err := e.store.Read(t.Context(), "ImagingStudy", dicom.ImagingStudyID("1.3.6.1.4.1.5962.1.2.4.20040826185059.5457"))
	if err != nil || !bytes.Contains(v.Content, []byte(`"numberOfInstances": 1`)) {
		t.Errorf("ImagingStudy: %v %s", err, v.Content)
	}
}

func (e *env) blobCount() int {
	n := 0
	_ = filepath.Walk(e.blobs, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			n++
		}
		return nil
	})
	return n
}

func TestStowBadInput(t *testing.T) {
	e := newEnv(t)
	ct := sample(t, dicomsamples.CTSmall)
	// A dataset without SOPInstanceUID: blank the value in place (same length).
	noSOP := bytes.Clone(ct)
	uid := []byte(ctSOP)
	i := bytes.Index(noSOP[300:], uid) + 300 // past the meta group's copy
	noSOP[i-8], noSOP[i-7] = 0x08, 0x00      // keep the tag, and
	copy(noSOP[i-4:i-2], []byte{0x10, 0x00}) // rename (0008,0018) to (0008,0010) RecognitionCode
	_ = noSOP

	cases := []struct {
		name   string
		parts  []part
		status int
	}{
		{"not DICOM", []part{{"application/dicom", []byte("hello, this is not DICOM at all")}}, 409},
		{"wrong part type", []part{{"application/json", []byte(`{}`)}}, 409},
		{"truncated", []part{{"application/dicom", ct[:len(ct)/2]}}, 409},
		{"no SOPInstanceUID", []part{{"application/dicom", noSOP}}, 409},
	}
	for _, c := range cases {
		status, resp := e.stow("/studies", c.parts...)
		if status != c.status {
			t.Errorf("%s: %d, want %d (%v)", c.name, status, c.status, resp)
		}
		if _, ok := resp["00081198"]; !ok {
			t.Errorf("%s: no FailedSOPSequence: %v", c.name, resp)
		}
	}
	// Nothing half-stored: no rows, no files.
	if got := e.qido("/instances"); len(got) != 0 {
		t.Errorf("instances after rejects: %v", got)
	}
	if n := e.blobCount(); n != 0 {
		t.Errorf("%d blob files after rejects", n)
	}
	// Partial success: 202 with both sequences.
	status, resp := e.stow("/studies", part{"application/dicom", ct}, part{"application/dicom", []byte("junk")})
	if status != 202 || resp["00081199"] == nil || resp["00081198"] == nil {
		t.Errorf("partial: %d %v", status, resp)
	}
	// POST /studies/{study} rejects instances of another study.
	status, resp = e.stow("/studies/1.2.3.4", part{"application/dicom", ct})
	failed, _ := resp["00081198"].(map[string]any)
	if items, _ := failed["Value"].([]any); status != 409 || len(items) != 1 ||
		str(items[0].(map[string]any), "00081155") != ctSOP || str(items[0].(map[string]any), "00081197") != "43264" {
		t.Errorf("study mismatch: %d %v, want 409 naming the instance with reason A900", status, resp)
	}
	// Not multipart: 400; multipart of another kind: 415.
	for ctype, want := range map[string]int{"application/dicom": 400, "multipart/form-data; boundary=x": 415,
		`multipart/related; type="application/dicom+json"; boundary=x`: 415, "multipart/related": 400} {
		resp, err := http.Post(e.base+"/studies", ctype, bytes.NewReader(ct))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Content-Type %s: %d, want %d", ctype, resp.StatusCode, want)
		}
	}
	// The server is unharmed.
	if got := e.qido("/studies"); len(got) != 1 {
		t.Errorf("studies: %d", len(got))
	}
}

// Native RGB renders in colour; a two-frame RLE instance serves each frame's
// fragment by the Basic Offset Table.
func TestRGBAndMultiFrame(t *testing.T) {
	e := newEnv(t)
	rgb, rle2 := sample(t, dicomsamples.RGBUncompress), sample(t, "SC_rgb_rle_2frame.dcm")
	if status, resp := e.stow("/studies", part{"application/dicom", rgb}, part{"application/dicom", rle2}); status != 200 {
		t.Fatalf("STOW: %d %v", status, resp)
	}
	path := func(sop string) string {
		insts := e.qido("/instances?SOPInstanceUID=" + sop)
		if len(insts) != 1 {
			t.Fatalf("%s: %v", sop, insts)
		}
		return strings.TrimPrefix(str(insts[0], "00081190"), e.base)
	}
	resp, body := e.get(path("1.2.276.0.7230010.3.1.4.8323329.1099.1521494048.423534")+"/rendered", "image/png")
	img, _, err := image.Decode(bytes.NewReader(body))
	if resp.StatusCode != 200 || err != nil || img.Bounds().Dx() != 3 || img.Bounds().Dy() != 3 {
		t.Fatalf("rendered RGB: %d %v", resp.StatusCode, err)
	}
	if _, ok := img.(*image.Gray); ok {
		t.Error("RGB rendered as grayscale")
	}
	p := path("1.2.826.0.1.3680043.8.498.49043964482360854182530167603505525116")
	for _, n := range []string{"1", "2"} {
		resp, body := e.get(p+"/frames/"+n, "")
		fr := parts(t, resp, body)
		if len(fr) != 1 || len(fr[0].body) != 664 || !strings.HasPrefix(fr[0].contentType, "image/dicom-rle") {
			t.Errorf("frame %s: %d %d parts", n, resp.StatusCode, len(fr))
		}
	}
	resp, body = e.get(p+"/frames/1,2", "")
	if fr := parts(t, resp, body); len(fr) != 2 {
		t.Errorf("frames 1,2: %d parts", len(fr))
	}
	if resp, _ := e.get(p+"/frames/3", ""); resp.StatusCode != 404 {
		t.Errorf("frame 3: %d", resp.StatusCode)
	}
}
