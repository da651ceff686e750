package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/emberfhir/ember/internal/npmpkg"
)

// consolePaintRuns is how many cold loads of each screen are timed.
const consolePaintRuns = 5

// playwrightVersion is the Playwright the console's browser tests use.
const playwrightVersion = "1.65.1"

//go:embed console_paint.js
var consolePaintJS []byte

// consolePaint (issue 18: "first paint of any screen ≤ 300 ms on a
// database with the 100 Synthea patients"): a fresh server (--auth none:
// no sign-in) loaded with Synthea, then each console screen opened cold in
// headless Chromium consolePaintRuns times. Two figures per screen: first
// contentful paint, and ready (the screen's data shown), median of the runs.
func consolePaint(ctx context.Context, e *env) ([]figure, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, errors.New("console: node not found (apt-get install nodejs npm)")
	}
	browser := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			browser = p
			break
		}
	}
	if browser == "" {
		return nil, errors.New("console: chromium not found (apt-get install chromium)")
	}
	pw, err := npmpkg.Dir(ctx, "playwright-core", playwrightVersion)
	if err != nil {
		return nil, err
	}
	srv, err := startEmber(ctx, e.bin, false, func(error) {})
	if srv != nil {
		defer func() { _ = shutdown(srv, false, err != nil, io.Discard) }()
	}
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	ce := *e
	ce.fhirBase, ce.client, ce.debugAddr, ce.profileDir = srv.baseURL+"/fhir", newClient(), "", ""
	if _, err = ingestTx(ctx, &ce); err != nil {
		return nil, fmt.Errorf("console: load Synthea: %w", err)
	}
	patient, family, err := firstID(ctx, &ce, "Patient?_count=1&_sort=_id", "family")
	if err != nil {
		return nil, err
	}
	obs, _, err := firstID(ctx, &ce, "Observation?_count=1&patient="+patient, "")
	if err != nil {
		return nil, err
	}
	routes := []struct {
		Name string `json:"name"`
		Hash string `json:"hash"`
	}{
		{"overview", "#/"},
		{"resources", "#/resources"},
		{"patient_search", "#/resources/Patient?name=" + url.QueryEscape(family)},
		{"patient_chart", "#/patient/" + patient},
		{"resource", "#/resource/Observation/" + obs},
		{"editor", "#/resource/Observation/" + obs + "/edit"},
	}
	rj, _ := json.Marshal(routes)
	dir, err := os.MkdirTemp("", "ember-bench-console-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "console_paint.js")
	if err := os.WriteFile(script, consolePaintJS, 0o600); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, node, script, pw, browser, srv.baseURL, string(rj), fmt.Sprint(consolePaintRuns))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("console: browser run: %w", err)
	}
	var got map[string][]struct {
		Ready, FCP float64
		Error      bool
	}
	if err := json.Unmarshal(out, &got); err != nil {
		return nil, fmt.Errorf("console: browser output: %w: %s", err, out)
	}
	var figs []figure
	worst := 0.0
	for _, r := range routes {
		var ready, fcp []time.Duration
		for _, t := range got[r.Name] {
			if t.Error {
				return figs, fmt.Errorf("console: the %s screen showed an error", r.Name)
			}
			ready = append(ready, time.Duration(t.Ready*float64(time.Millisecond)))
			fcp = append(fcp, time.Duration(t.FCP*float64(time.Millisecond)))
		}
		slices.Sort(ready)
		slices.Sort(fcp)
		figs = append(figs, figure{"console_" + r.Name + "_first_paint_p50", ms(percentile(fcp, 50)), "ms"},
			figure{"console_" + r.Name + "_ready_p50", ms(percentile(ready, 50)), "ms"})
		worst = max(worst, ms(percentile(fcp, 50)))
	}
	return append(figs, figure{"console_first_paint_worst_p50", worst, "ms"}), nil
}

// firstID returns the id of the first resource a search finds, and the
// first name.family when field is "family".
func firstID(ctx context.Context, e *env, query, field string) (id, family string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.fhirBase+"/"+query, nil)
	if err != nil {
		return "", "", err
	}
	req.Header.Set("Accept", "application/fhir+json")
	resp, err := e.client.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	var b struct {
		Entry []struct {
			Resource struct {
				ID   string `json:"id"`
				Name []struct {
					Family string `json:"family"`
				} `json:"name"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil || len(b.Entry) == 0 {
		return "", "", fmt.Errorf("console: %s found nothing (%v)", query, err)
	}
	r := b.Entry[0].Resource
	if field == "family" && len(r.Name) > 0 {
		family = r.Name[0].Family
	}
	return r.ID, family, nil
}
