package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emberfhir/ember/internal/dicomsamples"
)

// DICOM scenario: C-STORE (dcmtk's storescu, TCP_NODELAY=1) and STOW-RS
// (curl, no Expect: 100-continue) against a second `ember serve` started
// with --dimse-addr and --auth none, so its RSS is the DICOM work's alone.
//
// Instances are made from pydicom's CT_small.dcm with fresh UIDs (the same
// lengths, rewritten in place): "small" is the sample itself (39 KB), a
// "slice" is the sample with 512×512 16-bit pixels (≈ 530 KB).
// Registered in scenarios() as "dicom".
const (
	dicomSmallN  = 500
	dicomSlicesN = 200
	dicomGigaN   = 2000 // slices in the 1 GB study
)

// dicomTarget is where the DICOM load goes.
type dicomTarget struct {
	dimseHost, dimsePort string
	web                  string // DICOMweb base
	pid                  int    // server process, for RSS
	client               *http.Client
	// With -cpuprofile: the server's pprof address and where each C-STORE
	// and STOW-RS measurement's profile goes.
	debugAddr, profileDir string
}

func dicomBench(ctx context.Context, e *env) ([]figure, error) {
	for _, tool := range []string{"storescu", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("dicom: %s not found (apt-get install dcmtk curl)", tool)
		}
	}
	t, stop, err := startDICOMServer(ctx, e.bin, e.profileDir != "")
	if err != nil {
		return nil, err
	}
	defer stop()
	t.profileDir = e.profileDir
	return runDICOMBench(ctx, t)
}

// startDICOMServer runs `ember serve` with the DIMSE listener on a fresh
// data dir (and pprof when profiling) and waits for /readyz.
func startDICOMServer(ctx context.Context, bin string, profile bool) (dicomTarget, func(), error) {
	dimseAddr, err := freeAddr()
	if err != nil {
		return dicomTarget{}, nil, err
	}
	srv, err := startEmber(ctx, bin, profile, func(error) {}, "--dimse-addr", dimseAddr)
	stop := func() {
		if srv != nil {
			_ = shutdown(srv, false, false, io.Discard)
		}
	}
	if err != nil {
		log := ""
		if srv != nil {
			log = srv.logTail(20)
		}
		stop()
		return dicomTarget{}, nil, fmt.Errorf("dicom: start ember: %w\n%s", err, log)
	}
	host, port, _ := net.SplitHostPort(dimseAddr)
	return dicomTarget{dimseHost: host, dimsePort: port, web: srv.baseURL + "/dicomweb", pid: srv.cmd.Process.Pid, client: newClient(),
		debugAddr: srv.debugAddr}, stop, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// runDICOMBench runs every DICOM measurement against t.
func runDICOMBench(ctx context.Context, t dicomTarget) ([]figure, error) {
	sample, err := dicomsamples.Pydicom(ctx, dicomsamples.CTSmall)
	if err != nil {
		return nil, err
	}
	tmpl, err := newCTTemplate(sample)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ember-bench-dicomfiles-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	run := rand.Uint64()
	var figs []figure
	var errs []error
	add := func(f []figure, err error) {
		figs = append(figs, f...)
		errs = append(errs, err)
	}

	// C-STORE, 500 small instances, one association.
	study := tmpl.uid(tmpl.study, run, 1, 0)
	files, err := tmpl.write(filepath.Join(dir, "small1"), dicomSmallN, false, run, 1, study, 1)
	if err != nil {
		return nil, err
	}
	add(t.cstore(ctx, "dicom_cstore_small_a1", [][]string{files}, study, dicomSmallN))

	// Four associations, a series each.
	study = tmpl.uid(tmpl.study, run, 2, 0)
	var groups [][]string
	for a := range 4 {
		f, err := tmpl.write(filepath.Join(dir, fmt.Sprintf("small4-%d", a)), dicomSmallN/4, false, run, 2, study, 10+a)
		if err != nil {
			return nil, err
		}
		groups = append(groups, f)
	}
	add(t.cstore(ctx, "dicom_cstore_small_a4", groups, study, dicomSmallN))

	// 200 512×512×16-bit slices, one association.
	study = tmpl.uid(tmpl.study, run, 3, 0)
	files, err = tmpl.write(filepath.Join(dir, "slices"), dicomSlicesN, true, run, 3, study, 1)
	if err != nil {
		return nil, err
	}
	add(t.cstore(ctx, "dicom_cstore_slices_a1", [][]string{files}, study, dicomSlicesN))

	// STOW-RS: the same kinds of instances, one request each, from files.
	study = tmpl.uid(tmpl.study, run, 4, 0)
	files, err = tmpl.write(filepath.Join(dir, "stow-small"), dicomSmallN, false, run, 4, study, 1)
	if err != nil {
		return nil, err
	}
	add(t.stowFiles(ctx, "dicom_stow_small", dir, files, study))
	study = tmpl.uid(tmpl.study, run, 5, 0)
	files, err = tmpl.write(filepath.Join(dir, "stow-slices"), dicomSlicesN, true, run, 5, study, 1)
	if err != nil {
		return nil, err
	}
	add(t.stowFiles(ctx, "dicom_stow_slices", dir, files, study))

	// A 1 GB study in one STOW-RS request, generated while it uploads; the
	// server's peak RSS is the figure.
	add(t.stowGiga(ctx, tmpl, run))
	return figs, errors.Join(errs...)
}

// cstore runs one storescu per group at once and checks the study count.
func (t dicomTarget) cstore(ctx context.Context, name string, groups [][]string, study string, want int) ([]figure, error) {
	var bytesSent int64
	for _, g := range groups {
		for _, f := range g {
			if st, err := os.Stat(f); err == nil {
				bytesSent += st.Size()
			}
		}
	}
	stopRSS := t.sampleRSS()
	waitProfile := t.startProfile(ctx, name)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(groups))
	for i, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := append([]string{"-aet", "BENCH", "-aec", "EMBER", t.dimseHost, t.dimsePort}, g...)
			cmd := exec.CommandContext(ctx, "storescu", args...)
			cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("%s: storescu: %w: %s", name, err, tail(string(out), 5))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	peak := stopRSS()
	errs = append(errs, waitProfile())
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	got, err := t.studyInstances(ctx, study)
	figs := []figure{
		{name + "_rate", rate(want, elapsed), "instances/s"},
		{name + "_mbps", float64(bytesSent) / (1 << 20) / elapsed.Seconds(), "MB/s"},
		{name + "_rss_peak", float64(peak) / 1024, "MB"},
	}
	if err == nil && got != want {
		err = fmt.Errorf("%s: study has %d instances, want %d", name, got, want)
	}
	return figs, err
}

// stowFiles posts files as one multipart/related body with curl.
func (t dicomTarget) stowFiles(ctx context.Context, name, dir string, files []string, study string) ([]figure, error) {
	body := filepath.Join(dir, name+".multipart")
	f, err := os.Create(body)
	if err != nil {
		return nil, err
	}
	mw := multipart.NewWriter(f)
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Close()
			return nil, err
		}
		w, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
		if _, err := w.Write(b); err != nil {
			f.Close()
			return nil, err
		}
	}
	if err := errors.Join(mw.Close(), f.Close()); err != nil {
		return nil, err
	}
	st, _ := os.Stat(body)
	stopRSS := t.sampleRSS()
	waitProfile := t.startProfile(ctx, name)
	start := time.Now()
	err = t.curlSTOW(ctx, mw.Boundary(), "-T", body)
	elapsed := time.Since(start)
	peak := stopRSS()
	err = errors.Join(err, waitProfile())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	figs := []figure{
		{name + "_rate", rate(len(files), elapsed), "instances/s"},
		{name + "_mbps", float64(st.Size()) / (1 << 20) / elapsed.Seconds(), "MB/s"},
		{name + "_rss_peak", float64(peak) / 1024, "MB"},
	}
	got, err := t.studyInstances(ctx, study)
	if err == nil && got != len(files) {
		err = fmt.Errorf("%s: study has %d instances, want %d", name, got, len(files))
	}
	return figs, err
}

func (t dicomTarget) stowGiga(ctx context.Context, tmpl *ctTemplate, run uint64) ([]figure, error) {
	const name = "dicom_stow_1gb"
	study := tmpl.uid(tmpl.study, run, 6, 0)
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	var size int64
	go func() {
		var err error
		for i := range dicomGigaN {
			b := tmpl.instance(true, run, 6, study, 1, i)
			size += int64(len(b))
			var w io.Writer
			if w, err = mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}}); err != nil {
				break
			}
			if _, err = w.Write(b); err != nil {
				break
			}
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	stopRSS := t.sampleRSS()
	start := time.Now()
	err := t.curlSTOWFrom(ctx, mw.Boundary(), pr)
	elapsed := time.Since(start)
	peak := stopRSS()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	figs := []figure{
		{name + "_size", float64(size) / (1 << 20), "MB"},
		{name + "_mbps", float64(size) / (1 << 20) / elapsed.Seconds(), "MB/s"},
		{name + "_rss_peak", float64(peak) / 1024, "MB"},
	}
	got, err := t.studyInstances(ctx, study)
	if err == nil && got != dicomGigaN {
		err = fmt.Errorf("%s: study has %d instances, want %d", name, got, dicomGigaN)
	}
	return figs, err
}

func (t dicomTarget) curlSTOW(ctx context.Context, boundary string, args ...string) error {
	return t.curlSTOWFrom(ctx, boundary, nil, args...)
}

// curlSTOWFrom posts to /studies; with stdin set it uploads "-" (chunked).
func (t dicomTarget) curlSTOWFrom(ctx context.Context, boundary string, stdin io.Reader, args ...string) error {
	base := []string{"-sS", "-X", "POST", "-H", "Expect:",
		"-H", `Content-Type: multipart/related; type="application/dicom"; boundary=` + boundary,
		"-o", "/dev/null", "-w", "%{http_code}"}
	if stdin != nil {
		args = []string{"-T", "-"}
	}
	cmd := exec.CommandContext(ctx, "curl", append(append(base, args...), t.web+"/studies")...)
	cmd.Stdin = stdin
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("curl: %w: %s", err, stderr.String())
	}
	if code := strings.TrimSpace(out.String()); code != "200" {
		return fmt.Errorf("STOW-RS answered %s", code)
	}
	return nil
}

// studyInstances asks QIDO-RS for the study's instance count.
func (t dicomTarget) studyInstances(ctx context.Context, study string) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, t.web+"/studies?StudyInstanceUID="+study, nil)
	resp, err := t.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out []struct {
		Instances struct{ Value []json.Number } `json:"00201208"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, fmt.Errorf("QIDO-RS: %w", err)
	}
	if len(out) != 1 || len(out[0].Instances.Value) != 1 {
		return 0, fmt.Errorf("QIDO-RS: study %s not found", study)
	}
	n, err := out[0].Instances.Value[0].Int64()
	return int(n), err
}

// startProfile fetches a one-second server CPU profile (the measurements
// take about that long) to DIR/<name>.pprof when -cpuprofile is set; wait
// returns the fetch's error.
func (t dicomTarget) startProfile(ctx context.Context, name string) (wait func() error) {
	if t.debugAddr == "" {
		return func() error { return nil }
	}
	errc := make(chan error, 1)
	go func() { errc <- fetchProfile(ctx, t.debugAddr, 1, filepath.Join(t.profileDir, name+".pprof")) }()
	return func() error { return <-errc }
}

func (t dicomTarget) sampleRSS() func() int64 {
	var peak int64
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if kb, err := readRSS(t.pid); err == nil {
				peak = max(peak, kb)
			}
			select {
			case <-quit:
				return
			case <-tick.C:
			}
		}
	}()
	return func() int64 {
		close(quit)
		<-done
		return peak
	}
}

// ctTemplate is CT_small.dcm with the positions needed to make new
// instances from it.
type ctTemplate struct {
	file               []byte
	sop, series, study string
	pixelAt            int // offset of PixelData's element header
	slice              []byte
}

func newCTTemplate(path string) (*ctTemplate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t := &ctTemplate{file: b}
	get := func(group, elem uint16) (string, error) {
		tag := []byte{byte(group), byte(group >> 8), byte(elem), byte(elem >> 8), 'U', 'I'}
		i := bytes.LastIndex(b, tag)
		if i < 0 {
			return "", fmt.Errorf("CT_small: (%04X,%04X) not found", group, elem)
		}
		n := int(binary.LittleEndian.Uint16(b[i+6:]))
		return strings.TrimRight(string(b[i+8:i+8+n]), "\x00"), nil
	}
	if t.sop, err = get(0x0008, 0x0018); err != nil {
		return nil, err
	}
	if t.series, err = get(0x0020, 0x000E); err != nil {
		return nil, err
	}
	if t.study, err = get(0x0020, 0x000D); err != nil {
		return nil, err
	}
	t.pixelAt = bytes.LastIndex(b, []byte{0xE0, 0x7F, 0x10, 0x00, 'O', 'W', 0, 0})
	if t.pixelAt < 0 {
		return nil, errors.New("CT_small: no PixelData")
	}
	// The slice: 512×512 pixels in place of 128×128.
	s := bytes.Clone(b[:t.pixelAt])
	for _, el := range []byte{0x10, 0x11} { // Rows, Columns
		i := bytes.Index(s, []byte{0x28, 0x00, el, 0x00, 'U', 'S', 2, 0})
		if i < 0 {
			return nil, errors.New("CT_small: no Rows/Columns")
		}
		binary.LittleEndian.PutUint16(s[i+8:], 512)
	}
	s = append(s, 0xE0, 0x7F, 0x10, 0x00, 'O', 'W', 0, 0)
	s = binary.LittleEndian.AppendUint32(s, 512*512*2)
	px := make([]byte, 512*512*2)
	for i := 0; i < len(px); i += 2 {
		binary.LittleEndian.PutUint16(px[i:], uint16((i/2)%4096))
	}
	t.slice = append(s, px...)
	return t, nil
}

// uid is a fresh UID as long as like, unique per (run, scenario, i).
func (t *ctTemplate) uid(like string, run uint64, scenario, i int) string {
	core := fmt.Sprintf("2.25.9%010d%d", run%10_000_000_000, scenario)
	tailDigits := fmt.Sprintf("%07d", i)
	return core + strings.Repeat("0", max(0, len(like)-len(core)-len(tailDigits))) + tailDigits
}

// instance returns a copy of the sample (or the slice) with new UIDs.
func (t *ctTemplate) instance(slice bool, run uint64, scenario int, study string, series, i int) []byte {
	src := t.file
	if slice {
		src = t.slice
	}
	b := bytes.ReplaceAll(src, []byte(t.sop), []byte(t.uid(t.sop, run, scenario, 1_000_000+series*100_000+i)))
	b = bytes.ReplaceAll(b, []byte(t.series), []byte(t.uid(t.series, run, scenario, series)))
	return bytes.ReplaceAll(b, []byte(t.study), []byte(study))
}

func (t *ctTemplate) write(dir string, n int, slice bool, run uint64, scenario int, study string, series int) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	files := make([]string, n)
	for i := range n {
		files[i] = filepath.Join(dir, strconv.Itoa(i)+".dcm")
		if err := os.WriteFile(files[i], t.instance(slice, run, scenario, study, series, i), 0o644); err != nil {
			return nil, err
		}
	}
	return files, nil
}
