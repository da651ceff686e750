package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"

	"github.com/emberfhir/ember/internal/synthea"
)

// ingestClients is the figure: Synthea transactions from 4 clients.
const ingestClients = 4

// ingestTx posts every Synthea bundle as the transaction it is: the hospital
// and practitioner bundles first (patients refer to them), then the 100
// patient bundles from 4 concurrent clients. The figure counts resources
// written per second over the patient phase.
func ingestTx(ctx context.Context, e *env) ([]figure, error) {
	dir, err := synthea.Dir()
	if err != nil {
		return nil, err
	}
	files, err := synthea.Files(dir)
	if err != nil {
		return nil, err
	}
	var shared, patients [][]byte
	resources := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if synthea.IsPatientBundle(f) {
			patients = append(patients, raw)
			var b struct{ Entry []json.RawMessage }
			if err := json.Unmarshal(raw, &b); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			resources += len(b.Entry)
		} else {
			shared = append(shared, raw)
		}
	}
	for _, raw := range shared {
		if err := e.do(ctx, http.MethodPost, e.fhirBase, raw, http.StatusOK); err != nil {
			return nil, err
		}
	}
	out, err := forEach(ctx, ingestClients, len(patients), func(ctx context.Context, i int) error {
		return e.do(ctx, http.MethodPost, e.fhirBase, patients[i], http.StatusOK)
	})
	lat := slices.Clone(out.lat)
	slices.Sort(lat)
	figs := []figure{
		{"synthea_tx_ingest_c4_rate", float64(resources) / out.elapsed.Seconds(), "resources/s"},
		{"synthea_tx_ingest_c4_bundle_p50", ms(percentile(lat, 50)), "ms"},
		{"synthea_tx_ingest_c4_bundle_p99", ms(percentile(lat, 99)), "ms"},
		{"synthea_tx_ingest_errors", float64(out.errors), "count"},
	}
	if err != nil {
		return figs, err
	}
	return figs, out.err("ingest_tx")
}
