// Package engine is Ember's FHIR interactions as plain Go calls: read,
// vread, create, update, patch, delete (each with its conditional forms),
// history, search, transaction and batch, and the operations. It sits
// between the HTTP layer (server) and the database (store); every producer
// of resources — REST, ember import, DICOM, inference — calls it, so
// validation, conditional-write locking and authorisation cannot diverge.
// It knows no HTTP: requests are typed structs, results carry an Outcome,
// the stored version and fhir.Error kinds that the caller maps to its
// protocol. Every call names its Caller (a token's grant, or System).
//
// Where each interaction lives:
//
//	engine.go         Engine, Config, the one-call forms and InTx
//	caller.go         Caller: the grant's policy (SMART scopes), the store.Guard
//	read.go           read, vread
//	write.go          create, update, delete and their conditional forms
//	conditional.go    a condition's query and its lock key (the single place)
//	patch.go          patch (JSON Patch, FHIRPath Patch)
//	history.go        history (instance, type, system)
//	search.go         search (parse, execute, searchset Bundle, paging links)
//	bundle.go         Bundle assembly around stored bytes
//	transaction.go    transaction and batch Bundles
//	putmany.go        PutMany: many resources under their own ids (import)
//	operations.go     the operations registry
//	op_validate.go    $validate
//	op_meta.go        $meta, $meta-add, $meta-delete
//	op_everything.go  Patient/$everything
//	errors.go         store errors as fhir.Error kinds
//	export/           Bulk Data $export: kick-off, status and manifest, files, the worker
package engine

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/store"
)

// Config configures an Engine.
type Config struct {
	// BaseURL is the public FHIR base (fullUrls and paging links are under
	// it; references to it in transactions are local).
	BaseURL string
	// DefaultPageSize and MaxPageSize bound search and history pages
	// (_count); 0 means 20 and 1000.
	DefaultPageSize, MaxPageSize int
	Logger                       *slog.Logger
	// Profiles checks writes and $validate against the loaded guides'
	// profiles (engine/profiles.go); nil checks none.
	Profiles           Profiles
	ProfileEnforcement ProfileEnforcement
}

// Default page sizes when Config leaves them 0.
const (
	defaultPageSize = 20
	maxPageSize     = 1000
)

// Engine runs FHIR interactions on a Store. It is safe for concurrent use.
type Engine struct {
	cfg      Config
	base     string // BaseURL without a trailing slash
	store    *store.Store
	parser   *fhir.Parser
	log      *slog.Logger
	ops      map[string]Operation
	policies policyCache
	// admitters have their say on writes of their type (admit.go).
	admitters map[string]Admitter
	// profiles is the profile policy in force (profiles.go).
	profiles atomic.Pointer[profilePolicy]
}

// New returns an Engine over st.
func New(cfg Config, st *store.Store) (*Engine, error) {
	if cfg.BaseURL == "" {
		return nil, errors.New("engine: BaseURL is required")
	}
	if cfg.DefaultPageSize <= 0 {
		cfg.DefaultPageSize = defaultPageSize
	}
	if cfg.MaxPageSize <= 0 {
		cfg.MaxPageSize = maxPageSize
	}
	cfg.DefaultPageSize = min(cfg.DefaultPageSize, cfg.MaxPageSize)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	parser, err := fhir.NewParser()
	if err != nil {
		return nil, err
	}
	en := &Engine{cfg: cfg, base: strings.TrimRight(cfg.BaseURL, "/"), store: st, parser: parser, log: cfg.Logger}
	en.ops = en.coreOperations()
	en.SetProfiles(cfg.Profiles, cfg.ProfileEnforcement)
	return en, nil
}

// Base is the FHIR base URL, without a trailing slash.
func (en *Engine) Base() string { return en.base }

// Parser is the validating parser every write goes through.
func (en *Engine) Parser() *fhir.Parser { return en.parser }

// Store is the store the engine writes to (for the HTTP layer's probes and
// bulk export files, which are not FHIR interactions).
func (en *Engine) Store() *store.Store { return en.store }

// Outcome is what a successful interaction did.
type Outcome uint8

// The outcomes of an interaction.
const (
	// Created: a new resource (a create, or an update that created).
	Created Outcome = iota + 1
	// Updated: a new version of a stored resource.
	Updated
	// Found: nothing written; the version is the one that was found (a
	// read, or a conditional create whose condition matched).
	Found
	// Unchanged: nothing written; the request changed nothing (a patch
	// without operations, a meta change already in place).
	Unchanged
	// Deleted: a delete (also of what was absent or already deleted:
	// delete is idempotent; Message says which).
	Deleted
)

// Result is the outcome of one interaction.
type Result struct {
	Outcome Outcome
	// Version is the version written, or found; zero when a delete found
	// nothing.
	Version store.Version
	// Message says what happened, for an informational OperationOutcome.
	Message string
}

// IfMatchAny as a request's IfMatch is "If-Match: *": the write goes on only
// if the resource exists (RFC 9110 §13.1.1), whatever its version.
const IfMatchAny int64 = -1

// Tx runs interactions inside one database transaction, for producers that
// write several resources atomically (DICOM's Patient, Endpoint and
// ImagingStudy; inference's report, observations and provenance). Its
// methods behave exactly like the Engine's one-call forms.
type Tx struct {
	en  *Engine
	ctx context.Context // carries the caller's guard
	tx  *store.Tx
}

// InTx runs fn in one database transaction on behalf of caller: all of its
// writes commit together, or none does.
func (en *Engine) InTx(ctx context.Context, caller *Caller, fn func(*Tx) error) error {
	ctx, err := caller.bind(ctx)
	if err != nil {
		return err
	}
	return en.store.InTx(ctx, func(tx *store.Tx) error {
		return fn(&Tx{en: en, ctx: ctx, tx: tx})
	})
}

// inTx runs one interaction in its own transaction.
func (en *Engine) inTx(ctx context.Context, caller *Caller, do func(*Tx) (Result, error)) (Result, error) {
	var res Result
	err := en.InTx(ctx, caller, func(tx *Tx) (err error) {
		res, err = do(tx)
		return err
	})
	return res, err
}

// Create creates a resource (see Tx.Create).
func (en *Engine) Create(ctx context.Context, caller *Caller, req CreateRequest) (Result, error) {
	return en.inTx(ctx, caller, func(tx *Tx) (Result, error) { return tx.Create(req) })
}

// Update updates or creates a resource (see Tx.Update).
func (en *Engine) Update(ctx context.Context, caller *Caller, req UpdateRequest) (Result, error) {
	return en.inTx(ctx, caller, func(tx *Tx) (Result, error) { return tx.Update(req) })
}

// Delete deletes resources (see Tx.Delete).
func (en *Engine) Delete(ctx context.Context, caller *Caller, req DeleteRequest) (Result, error) {
	return en.inTx(ctx, caller, func(tx *Tx) (Result, error) { return tx.Delete(req) })
}

// Patch patches a resource (see Tx.Patch).
func (en *Engine) Patch(ctx context.Context, caller *Caller, req PatchRequest) (Result, error) {
	return en.inTx(ctx, caller, func(tx *Tx) (Result, error) { return tx.Patch(req) })
}
