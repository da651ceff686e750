package dicom_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	skdicom "github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/emberfhir/ember/dicom"
	"github.com/emberfhir/ember/dicom/dimse"
	"github.com/emberfhir/ember/dicom/web"
	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir/search"
	"github.com/emberfhir/ember/internal/dicomsamples"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/internal/testenv"
	"github.com/emberfhir/ember/store"
)

// e2eFile is one sample pushed with storescu, with its headers as
// suyashkumar/dicom reads them (an independent parser, so the expectations
// do not share Ember's parser's mistakes).
type e2eFile struct {
	name                          string
	path                          string
	ds                            skdicom.Dataset
	class, sop, ts, study, series string
}

// TestDIMSEEndToEnd pushes real files with dcmtk into the real service
// (DIMSE server → ingest → blobs + PostgreSQL → ImagingStudy) and reads them
// back through DICOMweb and FHIR search: echoscu, storescu per file and
// storescu +sd +r over a tree, in every transfer syntax family Ember stores.
func TestDIMSEEndToEnd(t *testing.T) {
	testenv.DCMTKTools(t, "echoscu", "storescu", "storescp")
	ctx := t.Context()
	pyd, err := dicomsamples.PydicomDir(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := dicomsamples.SuyashkumarDir(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// Samples with distinct SOP Instance UIDs (the same UID again would
	// replace the instance): singles go one storescu run each, the tree in
	// one storescu +sd +r run.
	root := t.TempDir()
	singles := []string{
		filepath.Join(pyd, "CT_small.dcm"),                  // explicit VR LE
		filepath.Join(pyd, "MR_small_jpeg_ls_lossless.dcm"), // JPEG-LS lossless
		filepath.Join(pyd, "SC_rgb_jpeg_dcmtk.dcm"),         // JPEG baseline
	}
	tree := filepath.Join(root, "tree")
	link := func(src, rel string) {
		dst := filepath.Join(tree, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(src, dst); err != nil {
			t.Fatal(err)
		}
	}
	for rel, name := range map[string]string{
		"pydicom/native/bigendian.dcm":  "ExplVR_BigEnd.dcm",    // explicit VR BE, ACR-NEMA style dates
		"pydicom/native/implicit.dcm":   "SC_rgb_jpeg_dcmd.dcm", // implicit VR LE
		"pydicom/jpeg/extended.dcm":     "JPGExtended.dcm",      // JPEG extended (process 2/4)
		"pydicom/jpeg/lossless.dcm":     "SC_rgb_jpeg_gdcm.dcm", // JPEG lossless SV1
		"pydicom/j2k/lossy.dcm":         "JPEG2000.dcm",         // JPEG 2000
		"pydicom/j2k/ct.dcm":            "693_J2KI.dcm",         // JPEG 2000, CT
		"pydicom/j2k/lossless-bare.dcm": "GDCMJ2K_TextGBR.dcm",  // JPEG 2000 lossless, no modality/patient
		"pydicom/ecg/waveform.dcm":      "waveform_ecg.dcm",     // non-image object
		"pydicom/rgb/native.dcm":        "SC_rgb_small_odd.dcm", // native RGB, odd size
		"pydicom/rgb/jpeg.dcm":          "SC_rgb_small_odd_jpeg.dcm",
	} {
		link(filepath.Join(pyd, name), rel)
	}
	for _, n := range []string{"1", "2", "3", "4", "5"} { // 6.dcm is deflated: not stored
		link(filepath.Join(mod, n+".dcm"), filepath.Join("suyashkumar", "nested", n+".dcm"))
	}
	// RLE: MR_small_RLE.dcm shares its SOP Instance UID with the JPEG-LS
	// single, so a copy gets a same-length UID (every occurrence, meta
	// included); it joins that instance's series.
	rle, err := os.ReadFile(filepath.Join(pyd, "MR_small_RLE.dcm"))
	if err != nil {
		t.Fatal(err)
	}
	const mrSOP = "1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457"
	rle = bytes.ReplaceAll(rle, []byte(mrSOP), []byte(mrSOP[:len(mrSOP)-1]+"8"))
	rlePath := filepath.Join(tree, "pydicom", "rle", "mr.dcm")
	if err := os.MkdirAll(filepath.Dir(rlePath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rlePath, rle, 0o644); err != nil {
		t.Fatal(err)
	}

	paths := slices.Clone(singles)
	_ = filepath.Walk(tree, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			paths = append(paths, p)
		}
		return nil
	})
	var files []*e2eFile
	for _, p := range paths {
		files = append(files, readE2EFile(t, p))
	}
	args := e2eProfile(t, files)

	// dcmtk's storescp receiving the same storescu runs is the reference
	// for the bytes, as in the dimse tests: storescu re-encodes what it
	// reads (drops group lengths and trailing padding, gives undefined-length
	// sequences explicit lengths), so for most of these samples the data set
	// on the wire is not the file's; storescp in bit-preserving mode (+B)
	// writes exactly what it received.
	refAddr, refDir := startStorescp(t)

	// Ember: store, blob directory, service, DIMSE server, DICOMweb.
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	eng, err := engine.New(engine.Config{BaseURL: "http://ember.test/fhir"}, st)
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := dicom.OpenBlobs(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	mux := http.NewServeMux()
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	base := hs.URL + "/dicomweb"
	svc, err := dicom.New(dicom.Config{Engine: eng, Blobs: blobs, DICOMwebBase: base,
		SyncDelay: 100 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close(context.Background()) })
	mux.Handle("/dicomweb/", web.New(svc, web.Options{Prefix: "/dicomweb", Logger: quiet}))
	srv, err := dimse.NewServer(dimse.Config{AETitle: "EMBER", AllowedCallingAEs: []string{"TESTSCU"}, Handler: svc, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, ln) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	addr := ln.Addr().String()

	if out, ok := runDcmtk(t, addr, "echoscu", []string{"-aet", "TESTSCU", "-aec", "EMBER"}); !ok {
		t.Fatalf("echoscu: %s", out)
	}
	for _, to := range []string{refAddr, addr} {
		for _, f := range files[:len(singles)] {
			if out, ok := runDcmtk(t, to, "storescu", args, f.path); !ok {
				t.Fatalf("storescu %s to %s: %s", f.name, to, out)
			}
		}
		if out, ok := runDcmtk(t, to, "storescu", append(slices.Clone(args), "+sd", "+r"), tree); !ok {
			t.Fatalf("storescu +sd +r to %s: %s", to, out)
		}
	}
	ref := readReference(t, refDir)
	if err := svc.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	// Expected hierarchy from the headers.
	type seriesWant struct{ files []*e2eFile }
	type studyWant struct {
		files  []*e2eFile
		series map[string]*seriesWant
	}
	studies := map[string]*studyWant{}
	for _, f := range files {
		s := studies[f.study]
		if s == nil {
			s = &studyWant{series: map[string]*seriesWant{}}
			studies[f.study] = s
		}
		s.files = append(s.files, f)
		if s.series[f.series] == nil {
			s.series[f.series] = &seriesWant{}
		}
		s.series[f.series].files = append(s.series[f.series].files, f)
	}
	// modalitiesOf is a study's distinct series modalities, sorted; other
	// stands in for a series without one.
	modalitiesOf := func(s *studyWant, other string) []string {
		var mods []string
		for _, se := range s.series {
			m := anyValue(se.files, tag.Modality)
			if m == "" {
				m = other
			}
			if m != "" && !slices.Contains(mods, m) {
				mods = append(mods, m)
			}
		}
		slices.Sort(mods)
		return mods
	}

	get := func(path, accept string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", base+path, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}
	qido := func(path string) map[string]map[string]any {
		t.Helper()
		resp, b := get(path, "")
		var list []map[string]any
		if resp.StatusCode != 200 || json.Unmarshal(b, &list) != nil {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		byUID := map[string]map[string]any{}
		for _, ds := range list {
			k := jsonValue(ds, "0020000D") + "|" + jsonValue(ds, "0020000E") + "|" + jsonValue(ds, "00080018")
			byUID[strings.TrimRight(k, "|")] = ds
		}
		if len(byUID) != len(list) {
			t.Errorf("GET %s: duplicate results", path)
		}
		return byUID
	}
	// check compares a QIDO attribute with the candidates from the headers
	// (a study-level value the instances disagree on may be any of theirs).
	check := func(what string, ds map[string]any, attr string, want ...string) {
		t.Helper()
		if got := jsonValue(ds, attr); !slices.Contains(want, got) {
			t.Errorf("%s: %s = %q, want %q", what, attr, got, want)
		}
	}

	// QIDO-RS, each level unscoped: exactly the pushed entities.
	gotStudies := qido("/studies?includefield=all")
	gotSeries := qido("/series?includefield=all")
	gotInstances := qido("/instances?includefield=all")
	nSeries := 0
	for uid, s := range studies {
		ds := gotStudies[uid]
		if ds == nil {
			t.Errorf("QIDO /studies: study %s (%s) missing", uid, s.files[0].name)
			continue
		}
		what := "study " + s.files[0].name
		check(what, ds, "00100020", values(s.files, tag.PatientID)...)
		check(what, ds, "00100010", values(s.files, tag.PatientName)...)
		check(what, ds, "00080020", values(s.files, tag.StudyDate)...)
		check(what, ds, "00080030", values(s.files, tag.StudyTime)...)
		check(what, ds, "00080050", values(s.files, tag.AccessionNumber)...)
		check(what, ds, "00200010", values(s.files, tag.StudyID)...)
		check(what, ds, "00081030", values(s.files, tag.StudyDescription)...)
		check(what, ds, "00080061", strings.Join(modalitiesOf(s, ""), `\`))
		check(what, ds, "00201206", strconv.Itoa(len(s.series)))
		check(what, ds, "00201208", strconv.Itoa(len(s.files)))
		for seUID, se := range s.series {
			nSeries++
			ds := gotSeries[uid+"|"+seUID]
			what := "series of " + se.files[0].name
			if ds == nil {
				t.Errorf("QIDO /series: %s missing", what)
				continue
			}
			check(what, ds, "00080060", values(se.files, tag.Modality)...)
			check(what, ds, "00200011", intValues(se.files, tag.SeriesNumber)...)
			check(what, ds, "0008103E", values(se.files, tag.SeriesDescription)...)
			check(what, ds, "00180015", values(se.files, tag.BodyPartExamined)...)
			check(what, ds, "00201209", strconv.Itoa(len(se.files)))
		}
		if got := qido("/studies/" + uid + "/series"); len(got) != len(s.series) {
			t.Errorf("QIDO /studies/%s/series: %d, want %d", uid, len(got), len(s.series))
		}
	}
	if len(gotStudies) != len(studies) || len(gotSeries) != nSeries || len(gotInstances) != len(files) {
		t.Errorf("QIDO: %d studies, %d series, %d instances; pushed %d, %d, %d",
			len(gotStudies), len(gotSeries), len(gotInstances), len(studies), nSeries, len(files))
	}

	// Instances: attributes, then WADO-RS bytes.
	for _, f := range files {
		ds := gotInstances[f.study+"|"+f.series+"|"+f.sop]
		if ds == nil {
			t.Errorf("QIDO /instances: %s missing", f.name)
			continue
		}
		check(f.name, ds, "00080016", f.class)
		check(f.name, ds, "00083002", f.ts)
		check(f.name, ds, "00200013", intValues([]*e2eFile{f}, tag.InstanceNumber)...)
		check(f.name, ds, "00280010", intValues([]*e2eFile{f}, tag.Rows)...)
		check(f.name, ds, "00280011", intValues([]*e2eFile{f}, tag.Columns)...)
		check(f.name, ds, "00280008", intValues([]*e2eFile{f}, tag.NumberOfFrames)...)
		path := "/studies/" + f.study + "/series/" + f.series + "/instances/" + f.sop
		check(f.name, ds, "00081190", base+path)

		resp, body := get(path, `multipart/related; type="application/dicom"; transfer-syntax=*`)
		got := multipartBodies(t, resp, body)
		if resp.StatusCode != 200 || len(got) != 1 {
			t.Errorf("WADO %s: %d, %d parts", f.name, resp.StatusCode, len(got))
			continue
		}
		want, ok := ref[f.sop+"|"+f.ts]
		if !ok {
			t.Fatalf("storescp did not receive %s", f.name)
		}
		// The stored file is Ember's meta group plus the data set exactly
		// as storescu sent it.
		want = append(dicom.FileMeta(f.class, f.sop, f.ts, "TESTSCU"), want...)
		if !bytes.Equal(got[0], want) {
			t.Errorf("WADO %s: %d bytes differ from the %d sent (meta + data set)", f.name, len(got[0]), len(want))
		}
		list, err := svc.Instances(ctx, f.study, f.series, f.sop)
		if err != nil || len(list) != 1 {
			t.Fatalf("%s: Instances: %v %v", f.name, list, err)
		}
		rc, err := svc.Blobs().Open(ctx, list[0].BlobKey, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		blob, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(blob, got[0]) {
			t.Errorf("WADO %s: not the stored blob (%v)", f.name, err)
		}
	}

	// ImagingStudy per study, and FHIR search finding it.
	for uid, s := range studies {
		what := "ImagingStudy of " + s.files[0].name
		v, err := st.Read(ctx, "ImagingStudy", dicom.ImagingStudyID(uid))
		if err != nil {
			t.Errorf("%s: %v", what, err)
			continue
		}
		var is e2eImagingStudy
		if err := json.Unmarshal(v.Content, &is); err != nil {
			t.Fatal(err)
		}
		bad := func(format string, args ...any) {
			t.Helper()
			t.Errorf("%s: "+format+"\n%s", append(append([]any{what}, args...), v.Content)...)
		}
		if !slices.Contains(is.Identifier, e2eIdentifier{"urn:dicom:uid", "urn:oid:" + uid}) {
			bad("identifier %v", is.Identifier)
		}
		date, tm, tz := anyValue(s.files, tag.StudyDate), anyValue(s.files, tag.StudyTime), anyValue(s.files, tag.TimezoneOffsetFromUTC)
		wantStarted := started(date, tm, tz)
		// A date other than YYYYMMDD (ACR-NEMA "1997.04.24") is not read.
		if wantStarted != "" && is.Started != wantStarted {
			bad("started %q, want %q", is.Started, wantStarted)
		}
		var mods []string
		for _, m := range is.Modality {
			mods = append(mods, m.Code)
		}
		wantMods := modalitiesOf(s, "OT") // series.modality is required: OT, "other"
		if !slices.Equal(mods, wantMods) {
			bad("modality %v, want %v", mods, wantMods)
		}
		if is.NumberOfSeries != len(s.series) || is.NumberOfInstances != len(s.files) || len(is.Series) != len(s.series) {
			bad("%d series, %d instances; want %d, %d", is.NumberOfSeries, is.NumberOfInstances, len(s.series), len(s.files))
		}
		for _, ise := range is.Series {
			se := s.series[ise.UID]
			if se == nil {
				bad("unknown series %s", ise.UID)
				continue
			}
			wantMod := anyValue(se.files, tag.Modality)
			if wantMod == "" {
				wantMod = "OT"
			}
			if ise.Modality.Code != wantMod || !slices.Contains(intValues(se.files, tag.SeriesNumber), optInt(ise.Number)) ||
				!slices.Contains(values(se.files, tag.SeriesDescription), ise.Description) || len(ise.Instance) != len(se.files) {
				bad("series %s: modality %s number %s description %q, %d instances", ise.UID, ise.Modality.Code,
					optInt(ise.Number), ise.Description, len(ise.Instance))
			}
			for _, in := range ise.Instance {
				i := slices.IndexFunc(se.files, func(f *e2eFile) bool { return f.sop == in.UID })
				if i < 0 {
					bad("unknown instance %s", in.UID)
					continue
				}
				f := se.files[i]
				if in.SopClass.Code != "urn:oid:"+f.class || optInt(in.Number) != intValues([]*e2eFile{f}, tag.InstanceNumber)[0] {
					bad("instance %s: sopClass %s number %s", f.name, in.SopClass.Code, optInt(in.Number))
				}
			}
		}
		// The subject is the Patient with the PatientID (or, without one,
		// the study's own patient).
		pid := strings.TrimPrefix(is.Subject.Reference, "Patient/")
		pv, err := st.Read(ctx, "Patient", pid)
		if err != nil {
			bad("subject %q: %v", is.Subject.Reference, err)
			continue
		}
		var p struct{ Identifier []e2eIdentifier }
		_ = json.Unmarshal(pv.Content, &p)
		wantID := e2eIdentifier{"urn:dicom:patient-id", anyValue(s.files, tag.PatientID)}
		if wantID.Value == "" {
			wantID = e2eIdentifier{"urn:dicom:study-patient", "urn:oid:" + uid}
		}
		if !slices.Contains(p.Identifier, wantID) {
			bad("subject %s has identifiers %v, want %v", pid, p.Identifier, wantID)
		}
		if wantStarted == "" || len(wantMods) == 0 {
			continue
		}
		day := wantStarted[:10]
		later := mustDate(t, day).AddDate(0, 0, 2).Format("2006-01-02")
		for params, want := range map[string]bool{
			"patient=" + pid + "&modality=" + wantMods[0] + "&started=ge" + day:   true,
			"patient=" + pid + "&modality=" + wantMods[0] + "&started=ge" + later: false,
			"patient=" + pid + "&modality=XA&started=ge" + day:                    false,
		} {
			vals, _ := url.ParseQuery(params)
			q, err := search.Parse("ImagingStudy", vals, search.Options{Strict: true})
			if err != nil {
				t.Fatalf("%s: %v", params, err)
			}
			res, err := st.Search(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			found := slices.ContainsFunc(res.Matches, func(m store.Match) bool { return m.ID == dicom.ImagingStudyID(uid) })
			if found != want {
				t.Errorf("%s: ImagingStudy?%s found it: %v, want %v", what, params, found, want)
			}
		}
	}
}

type e2eIdentifier struct{ System, Value string }

type e2eImagingStudy struct {
	Identifier                        []e2eIdentifier
	Subject                           struct{ Reference string }
	Started                           string
	Modality                          []struct{ Code string }
	NumberOfSeries, NumberOfInstances int
	Series                            []struct {
		UID         string
		Number      *int
		Modality    struct{ Code string }
		Description string
		Instance    []struct {
			UID      string
			SopClass struct{ Code string }
			Number   *int
		}
	}
}

func optInt(p *int) string {
	if p == nil {
		return ""
	}
	return strconv.Itoa(*p)
}

func mustDate(t *testing.T, s string) time.Time {
	t.Helper()
	d, err := time.Parse("2006-01-02", s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// started is StudyDate + StudyTime as a FHIR dateTime in
// TimezoneOffsetFromUTC (UTC without one), "" when the date is no DA.
func started(date, tm, tz string) string {
	digits := func(s string) bool { return s != "" && strings.Trim(s, "0123456789") == "" }
	if len(date) != 8 || !digits(date) {
		return ""
	}
	out := date[:4] + "-" + date[4:6] + "-" + date[6:]
	whole, frac, _ := strings.Cut(strings.ReplaceAll(tm, ":", ""), ".")
	if len(whole) < 2 || !digits(whole) {
		return out
	}
	whole = (whole + "0000")[:6]
	out += "T" + whole[:2] + ":" + whole[2:4] + ":" + whole[4:]
	if frac != "" {
		out += "." + frac
	}
	if tz == "" {
		return out + "Z"
	}
	return out + tz[:3] + ":" + tz[3:]
}

func readE2EFile(t *testing.T, path string) *e2eFile {
	t.Helper()
	ds, err := skdicom.ParseFile(path, nil, skdicom.SkipPixelData())
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	f := &e2eFile{name: filepath.Base(path), path: path, ds: ds,
		class: headerString(ds, tag.MediaStorageSOPClassUID), sop: headerString(ds, tag.SOPInstanceUID),
		ts: headerString(ds, tag.TransferSyntaxUID), study: headerString(ds, tag.StudyInstanceUID),
		series: headerString(ds, tag.SeriesInstanceUID)}
	if f.class == "" || f.sop == "" || f.ts == "" || f.study == "" || f.series == "" {
		t.Fatalf("%s: missing UIDs %+v", path, f)
	}
	return f
}

// headerString is a top-level string value, `\`-joined and trimmed of
// padding as DICOM JSON presents it.
func headerString(ds skdicom.Dataset, tg tag.Tag) string {
	e, err := ds.FindElementByTag(tg)
	if err != nil {
		return ""
	}
	switch v := e.Value.GetValue().(type) {
	case []string:
		return strings.Trim(strings.Join(v, `\`), " \x00")
	case []int:
		if len(v) > 0 {
			return strconv.Itoa(v[0])
		}
	}
	return ""
}

// values are the candidates for an attribute that is the latest non-empty
// value among files: their distinct non-empty values, or "".
func values(files []*e2eFile, tg tag.Tag) []string {
	var out []string
	for _, f := range files {
		if v := headerString(f.ds, tg); v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	if out == nil {
		out = []string{""}
	}
	return out
}

// intValues is values for integer attributes (IS "  7" is 7).
func intValues(files []*e2eFile, tg tag.Tag) []string {
	out := values(files, tg)
	for i, v := range out {
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
			out[i] = strconv.Itoa(n)
		}
	}
	return out
}

func anyValue(files []*e2eFile, tg tag.Tag) string { return values(files, tg)[0] }

// jsonValue is a DICOM JSON attribute's values as text, `\`-joined.
func jsonValue(ds map[string]any, attr string) string {
	a, _ := ds[attr].(map[string]any)
	vals, _ := a["Value"].([]any)
	var out []string
	for _, v := range vals {
		switch v := v.(type) {
		case string:
			out = append(out, v)
		case float64:
			out = append(out, strconv.FormatFloat(v, 'f', -1, 64))
		case map[string]any:
			s, _ := v["Alphabetic"].(string)
			out = append(out, s)
		}
	}
	return strings.Join(out, `\`)
}

func multipartBodies(t *testing.T, resp *http.Response, body []byte) [][]byte {
	t.Helper()
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/related" {
		return nil
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var out [][]byte
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
}

// e2eProfile writes a storescu profile with one presentation context per
// SOP class and transfer syntax of the files, each proposing exactly that
// syntax (storescu otherwise proposes uncompressed syntaxes only), so every
// file travels as stored; it returns storescu's options.
func e2eProfile(t *testing.T, files []*e2eFile) []string {
	t.Helper()
	var cfg, pcs strings.Builder
	cfg.WriteString("[[TransferSyntaxes]]\n")
	names := map[string]string{}
	seen := map[string]bool{}
	n := 0
	for _, f := range files {
		if seen[f.class+"|"+f.ts] {
			continue
		}
		seen[f.class+"|"+f.ts] = true
		name, ok := names[f.ts]
		if !ok {
			name = fmt.Sprintf("TS%d", len(names)+1)
			names[f.ts] = name
			fmt.Fprintf(&cfg, "[%s]\nTransferSyntax1 = %s\n", name, f.ts)
		}
		n++
		fmt.Fprintf(&pcs, "PresentationContext%d = %s\\%s\n", n, f.class, name)
	}
	cfg.WriteString("[[PresentationContexts]]\n[Samples]\n" + pcs.String())
	cfg.WriteString("[[Profiles]]\n[Samples]\nPresentationContexts = Samples\n")
	path := filepath.Join(t.TempDir(), "storescu.cfg")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{"-aet", "TESTSCU", "-aec", "EMBER", "-xf", path, "Samples"}
}

// runDcmtk runs a dcmtk tool with options, the peer address and then
// files; it returns the combined output and whether it exited 0.
func runDcmtk(t *testing.T, addr, tool string, opts []string, files ...string) (string, bool) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool, append(append(slices.Clone(opts), host, port), files...)...)
	cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s timed out: %s", tool, out)
	}
	return string(out), err == nil
}

// startStorescp runs dcmtk's storescp (bit-preserving, every syntax,
// unique file names) on a free port until the test ends.
func startStorescp(t *testing.T) (addr, dir string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	ln.Close()
	dir = t.TempDir()
	cmd := exec.Command("storescp", "+B", "+xa", "+uf", "-aet", "EMBER", "-od", dir, port)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr, dir
		}
		if i == 200 {
			t.Fatalf("storescp did not start: %s", log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readReference returns the data sets storescp wrote, by SOP Instance UID
// + "|" + transfer syntax.
func readReference(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		meta, ds, err := splitPart10(b)
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		out[meta[0x00020003]+"|"+meta[0x00020010]] = ds
	}
	return out
}

// splitPart10 splits a Part-10 file into its meta group's string values
// (explicit VR little endian, group 0002) and the data set bytes after it.
func splitPart10(b []byte) (map[uint32]string, []byte, error) {
	if len(b) < 132 || string(b[128:132]) != "DICM" {
		return nil, nil, errors.New("not a Part-10 file")
	}
	b = b[132:]
	meta := map[uint32]string{}
	for len(b) >= 8 && binary.LittleEndian.Uint16(b) == 0x0002 {
		tg := uint32(binary.LittleEndian.Uint16(b))<<16 | uint32(binary.LittleEndian.Uint16(b[2:]))
		n, hdr := int(binary.LittleEndian.Uint16(b[6:])), 8
		switch string(b[4:6]) {
		case "OB", "OW", "UN", "SQ", "UT":
			if len(b) < 12 {
				return nil, nil, errors.New("truncated meta group")
			}
			n, hdr = int(binary.LittleEndian.Uint32(b[8:])), 12
		}
		if hdr+n > len(b) {
			return nil, nil, errors.New("truncated meta group")
		}
		meta[tg] = strings.TrimRight(string(b[hdr:hdr+n]), " \x00")
		b = b[hdr+n:]
	}
	return meta, b, nil
}
