package main

import (
	"context"
	"fmt"
	"io"
)

// auditOnOff measures what the audit trail costs: fresh servers with
// --audit on (the default) and --audit off, each seeded and put through
// read_c32 and the Synthea transaction ingest; on, off, on, off, and the
// best of each mode counts, so a burst of noise on a shared machine does
// not decide the ratio. The ratios are on over off (the issue asks for
// both within 10 %).
func auditOnOff(ctx context.Context, e *env) ([]figure, error) {
	type result struct{ read, ingest float64 }
	run := func(mode string) (result, error) {
		srv, err := startEmber(ctx, e.bin, false, func(error) {}, "--audit", mode)
		if srv != nil {
			defer func() { _ = shutdown(srv, false, err != nil, io.Discard) }()
		}
		if err != nil {
			return result{}, fmt.Errorf("audit %s: %w", mode, err)
		}
		ae := *e
		ae.fhirBase, ae.client, ae.debugAddr, ae.profileDir = srv.baseURL+"/fhir", newClient(), "", ""
		if _, err = seed(ctx, &ae); err != nil {
			return result{}, fmt.Errorf("audit %s seed: %w", mode, err)
		}
		var r result
		figs, err := namedRead("audit_"+mode+"_read_c32", 32).run(ctx, &ae)
		if err != nil {
			return r, err
		}
		r.read = figs[0].value
		figs, err = ingestTx(ctx, &ae)
		if err != nil {
			return r, err
		}
		r.ingest = figs[0].value
		return r, nil
	}
	var on, off result
	for range 2 {
		for _, mode := range []string{"on", "off"} {
			r, err := run(mode)
			if err != nil {
				return nil, err
			}
			best := &on
			if mode == "off" {
				best = &off
			}
			best.read, best.ingest = max(best.read, r.read), max(best.ingest, r.ingest)
		}
	}
	return []figure{
		{"audit_on_read_c32", on.read, "req/s"},
		{"audit_off_read_c32", off.read, "req/s"},
		{"audit_read_c32_on_vs_off", 100 * on.read / off.read, "%"},
		{"audit_on_ingest", on.ingest, "resources/s"},
		{"audit_off_ingest", off.ingest, "resources/s"},
		{"audit_ingest_on_vs_off", 100 * on.ingest / off.ingest, "%"},
	}, nil
}
