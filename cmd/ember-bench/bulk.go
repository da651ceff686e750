package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"time"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/internal/importer"
	"github.com/emberfhir/ember/store"
)

// Bulk scenarios: `ember import` of the Synthea set as ndjson, then
// $export of everything the server holds.
//
// The import runs the importer package in this process against the
// server's database, as `ember import --data-dir` would from beside the
// server: same code, minus process start-up. Its copy of the Synthea set
// gets fresh ids (copy bulkCopy), so it creates resources whatever ran
// before.
const bulkCopy = 100

func bulkScenarios() []scenario {
	return []scenario{
		{name: "import33k", run: import33k},
		{name: "export", requires: []string{"import33k"}, run: exportAll},
	}
}

func import33k(ctx context.Context, e *env) ([]figure, error) {
	s := e.synthea
	if s == nil {
		var err error
		if s, err = loadSynthea(); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "ember-bench-import-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := writeNDJSON(dir, s); err != nil {
		return nil, err
	}
	url, err := e.databaseURL()
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, url, store.Options{})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	eng, err := engine.New(engine.Config{BaseURL: "http://localhost/fhir"}, st)
	if err != nil {
		return nil, err
	}
	// As `ember import` runs it (see cmd/ember/import.go).
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	// The import runs in this process, so -cpuprofile profiles it here.
	if e.profileDir != "" {
		f, err := os.Create(filepath.Join(e.profileDir, "import33k.pprof"))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	pgBefore, selfBefore := postgresCPU(), processCPU()
	res, err := importer.Import(ctx, eng, []string{dir}, importer.Options{})
	pgAfter, selfAfter := postgresCPU(), processCPU()
	figs := []figure{
		{"import_rate", res.Rate(), "resources/s"},
		{"import_resources", float64(res.Resources), "resources"},
		{"import_errors", float64(res.Failed), "count"},
	}
	if res.Resources > 0 {
		// Where the CPU goes, so a change can be judged on a busy machine
		// too: the importer's (this process's) and PostgreSQL's.
		per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(res.Resources) }
		figs = append(figs,
			figure{"import_ember_cpu", per(selfAfter - selfBefore), "µs/resource"},
			figure{"import_postgres_cpu", per(pgAfter - pgBefore), "µs/resource"})
	}
	if err == nil && res.Failed > 0 {
		err = fmt.Errorf("import33k: %d resources not imported, first: %v", res.Failed, res.Errors[0])
	}
	return figs, err
}

// writeNDJSON writes copy bulkCopy of the set as one ndjson file per type,
// the shape $export produces.
func writeNDJSON(dir string, s *syntheaSet) error {
	files := map[string]*bufio.Writer{}
	var closers []*os.File
	defer func() {
		for _, f := range closers {
			f.Close()
		}
	}()
	for i := range s.res {
		r := &s.res[i]
		w := files[r.typ]
		if w == nil {
			f, err := os.Create(filepath.Join(dir, r.typ+".ndjson"))
			if err != nil {
				return err
			}
			closers = append(closers, f)
			w = bufio.NewWriterSize(f, 1<<20)
			files[r.typ] = w
		}
		if _, err := w.Write(r.copyJSON(bulkCopy)); err != nil {
			return err
		}
		if err := w.WriteByte('\n'); err != nil {
			return err
		}
	}
	for _, w := range files {
		if err := w.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// exportAll times a system-level $export from kick-off to the complete
// manifest, then the download of every file.
func exportAll(ctx context.Context, e *env) ([]figure, error) {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.fhirBase+"/$export", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Prefer", "respond-async")
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	status := resp.Header.Get("Content-Location")
	if resp.StatusCode != http.StatusAccepted || status == "" {
		return nil, fmt.Errorf("export: kick-off answered %d", resp.StatusCode)
	}
	var m struct {
		Output []struct {
			URL   string `json:"url"`
			Count int    `json:"count"`
		} `json:"output"`
	}
	for {
		body, code, err := get(ctx, e, status)
		if err != nil {
			return nil, err
		}
		if code == http.StatusOK {
			if err := json.Unmarshal(body, &m); err != nil {
				return nil, fmt.Errorf("export: manifest: %w", err)
			}
			break
		}
		if code != http.StatusAccepted {
			return nil, fmt.Errorf("export: status answered %d: %s", code, body)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	n := 0
	for _, o := range m.Output {
		n += o.Count
	}
	figs := []figure{
		{"export_rate", rate(n, elapsed), "resources/s"},
		{"export_resources", float64(n), "resources"},
	}
	start = time.Now()
	var bytes int64
	sort.Slice(m.Output, func(i, j int) bool { return m.Output[i].URL < m.Output[j].URL })
	for _, o := range m.Output {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.URL, nil)
		if err != nil {
			return figs, err
		}
		resp, err := e.client.Do(req)
		if err != nil {
			return figs, err
		}
		k, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("export: file %s answered %d", o.URL, resp.StatusCode)
		}
		if err != nil {
			return figs, err
		}
		bytes += k
	}
	d := time.Since(start)
	figs = append(figs, figure{"export_download_rate", float64(bytes) / 1e6 / d.Seconds(), "MB/s"})
	return figs, nil
}

func get(ctx context.Context, e *env, url string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, 0, errors.Join(fmt.Errorf("GET %s", url), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return body, resp.StatusCode, err
}
