package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/emberfhir/ember/audit"
	"github.com/emberfhir/ember/dicom"
	"github.com/emberfhir/ember/dicom/dimse"
	"github.com/emberfhir/ember/dicom/web"
	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/server"
	"github.com/emberfhir/ember/server/guard"
	"github.com/emberfhir/ember/store"
)

// dicomFlags are serve's flags for DICOM ingest: the DIMSE listener and the
// instance blob store. DICOMweb is always served at /dicomweb.
type dicomFlags struct {
	dimseAddr string
	aeTitle   string
	aeAllow   string
	overwrite string
	blobURL   string
	// onStudySynced is told of each ImagingStudy sync (inference's
	// trigger); nil for none.
	onStudySynced func(studyUID string)
}

func (d *dicomFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&d.dimseAddr, "dimse-addr", env("EMBER_DIMSE_ADDR", "127.0.0.1:11112"),
		"DICOM DIMSE listener (C-ECHO, C-STORE, C-FIND); off disables it (env EMBER_DIMSE_ADDR)")
	fs.StringVar(&d.aeTitle, "ae-title", env("EMBER_AE_TITLE", "EMBER"), "Ember's DICOM application entity title (env EMBER_AE_TITLE)")
	fs.StringVar(&d.aeAllow, "ae-allow", env("EMBER_AE_ALLOW", ""),
		"calling AE titles allowed to associate, comma-separated, each NAME (echo, store and find) or NAME:store+find, NAME:store, NAME:find, NAME:echo; "+
			"* stands for any AE. Empty allows any AE on a loopback --dimse-addr and is refused on any other (env EMBER_AE_ALLOW)")
	fs.StringVar(&d.overwrite, "dicom-overwrite", env("EMBER_DICOM_OVERWRITE", string(dicom.OverwriteSameAE)),
		"whether a C-STORE may replace an existing SOP instance with different data: same-ae (only the AE that stored it), any, or never (env EMBER_DICOM_OVERWRITE)")
	fs.StringVar(&d.blobURL, "dicom-blob-url", env("EMBER_DICOM_BLOB_URL", ""),
		"where DICOM instance files go: file:///path or an S3-compatible s3://bucket?region=…&endpoint=… (env EMBER_DICOM_BLOB_URL; default file://<data-dir>/dicom)")
}

// policy reads --ae-allow. DIMSE has no authentication of its own: a
// calling AE title is only a name the peer chooses. So without a list the
// listener must stay on loopback, where only local programs reach it; any
// other address needs --ae-allow (--ae-allow '*' to admit every AE).
func (d *dicomFlags) policy() (dimse.AEPolicy, error) {
	policy, err := dimse.ParseAEPolicy(d.aeAllow)
	if err != nil {
		return nil, fmt.Errorf("serve: --ae-allow: %w", err)
	}
	if policy != nil || d.dimseAddr == "" || d.dimseAddr == "off" || loopbackAddr(d.dimseAddr) {
		return policy, nil
	}
	return nil, fmt.Errorf("serve: --dimse-addr %s listens beyond loopback, where any DICOM node could store and query "+
		"patient data: name the calling AEs allowed with --ae-allow (e.g. --ae-allow 'PACS1:store+find,MODALITY:store'), "+
		"or --ae-allow '*' to admit any AE, or listen on 127.0.0.1", d.dimseAddr)
}

// loopbackAddr reports whether host:port names only the loopback interface
// (an empty host listens on every interface).
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// dicomRuntime is the running DICOM side of serve.
type dicomRuntime struct {
	svc   *dicom.Service
	blobs *dicom.Blobs
	dimse *dimse.Server
	ln    net.Listener
}

// start opens the blob store and the ingest service, mounts DICOMweb on cfg
// (behind the same bearer tokens as FHIR when authorisation is on) and
// binds the DIMSE listener; serveDIMSE then accepts associations.
func (d *dicomFlags) start(ctx context.Context, cfg *server.Config, st *store.Store, dataDir string, log *slog.Logger) (*dicomRuntime, error) {
	blobURL := d.blobURL
	if blobURL == "" {
		var err error
		if blobURL, err = dicom.DefaultBlobURL(dataDir); err != nil {
			return nil, fmt.Errorf("serve: DICOM blob store: %w", err)
		}
	}
	blobs, err := dicom.OpenBlobs(ctx, blobURL)
	if err != nil {
		return nil, fmt.Errorf("serve: DICOM blob store: %w", err)
	}
	overwrite, err := dicom.ParseOverwrite(d.overwrite)
	if err != nil {
		blobs.Close()
		return nil, fmt.Errorf("serve: --dicom-overwrite: %w", err)
	}
	policy, err := d.policy()
	if err != nil {
		blobs.Close()
		return nil, err
	}
	// DICOM writes its ImagingStudy, Patient and Endpoint through an
	// engine over the same store and base as the REST API's, so its
	// conditional creates take the same locks.
	eng, err := engine.New(engine.Config{BaseURL: cfg.BaseURL, Logger: log}, st)
	if err != nil {
		blobs.Close()
		return nil, err
	}
	root := strings.TrimSuffix(strings.TrimSuffix(cfg.BaseURL, "/"), "/fhir")
	svc, err := dicom.New(dicom.Config{Engine: eng, Blobs: blobs, DICOMwebBase: root + "/dicomweb", Logger: log,
		Overwrite: overwrite, OnStudySynced: d.onStudySynced, Metrics: cfg.Registry})
	if err != nil {
		blobs.Close()
		return nil, err
	}
	rt := &dicomRuntime{svc: svc, blobs: blobs}
	h := web.New(svc, web.Options{Prefix: "/dicomweb", Logger: log})
	cfg.Mounts = append(cfg.Mounts, server.Mount{Prefix: "/dicomweb",
		Handler: audit.HTTP(cfg.Audit, audit.DICOMweb, web.Classify,
			func(r *http.Request) string { return guard.RemoteAddr(r, cfg.TrustedProxies) }, server.RequireScopes(cfg.Verifier, cfg.BaseURL, "ImagingStudy", h))})
	if d.dimseAddr != "" && d.dimseAddr != "off" {
		rec := cfg.Audit
		rt.dimse, err = dimse.NewServer(dimse.Config{AETitle: d.aeTitle, Policy: policy, Handler: dicom.AuditedHandler(svc, rec), Logger: log, Metrics: cfg.Registry,
			OnAssociation: func(st dimse.AssociationStats) {
				dicom.AuditAssociation(rec, st)
				_ = svc.SyncPending(ctx)
			}})
		if err == nil {
			rt.ln, err = net.Listen("tcp", d.dimseAddr)
		}
		if err != nil {
			rt.close(context.Background(), log)
			return nil, fmt.Errorf("serve: DIMSE listener %s: %w (--dimse-addr off disables it)", d.dimseAddr, err)
		}
	}
	// Studies left stale by a crash get their ImagingStudy rebuilt, and
	// blobs left without an instance row are removed, now and hourly.
	go func() {
		if err := svc.Flush(ctx); err != nil && ctx.Err() == nil {
			log.Warn("DICOM: rebuilding stale ImagingStudy resources", "err", err)
		}
	}()
	go svc.SweepOrphansEvery(ctx, time.Hour)
	return rt, nil
}

// serveDIMSE accepts associations until ctx ends.
func (rt *dicomRuntime) serveDIMSE(ctx context.Context, log *slog.Logger) {
	if rt.dimse == nil {
		return
	}
	log.Info("DICOM DIMSE listening", "addr", rt.ln.Addr().String())
	if err := rt.dimse.Serve(ctx, rt.ln); err != nil {
		log.Error("DIMSE server stopped", "err", err)
	}
}

// close flushes pending ImagingStudy rebuilds and closes the blob store.
func (rt *dicomRuntime) close(ctx context.Context, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := rt.svc.Close(ctx); err != nil {
		log.Error("DICOM shutdown", "err", err)
	}
	if err := rt.blobs.Close(); err != nil {
		log.Error("DICOM blob store close", "err", err)
	}
}
