// Package store persists FHIR resources in PostgreSQL: current versions and full
// history as JSONB, written through one path (Tx) that every producer shares.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Sentinel errors the HTTP layer maps to FHIR responses.
var (
	// ErrNotFound: no such resource, or no such version.
	ErrNotFound = errors.New("store: not found")
	// ErrDeleted: the resource's current version is a delete tombstone.
	ErrDeleted = errors.New("store: deleted")
	// ErrVersionConflict: an If-Match precondition names a version that is not current.
	ErrVersionConflict = errors.New("store: version conflict")
	// ErrExists: a create with a chosen id found the id taken.
	ErrExists = errors.New("store: resource exists")
)

// Method records which interaction produced a version.
type Method byte

// The interactions that produce versions.
const (
	MethodCreate Method = 'C'
	MethodUpdate Method = 'U'
	MethodDelete Method = 'D'
)

// Version is one stored version of a resource.
type Version struct {
	Type        string
	ID          string
	VersionID   int64
	LastUpdated time.Time
	Method      Method
	Deleted     bool
	Content     []byte // the stored JSON; nil for a delete tombstone
}

// Store is a handle on the database. It is safe for concurrent use.
type Store struct {
	pool    *pgxpool.Pool
	replica *replica // nil without Options.ReadURL
	url     string
	now     func() time.Time
	// committed is signalled (never blocking) after every committed
	// transaction, so the subscriptions dispatcher of this process reads
	// the change log at once rather than at its next poll.
	committed chan struct{}
}

// Options tune Open.
type Options struct {
	MaxConns int32 // pool size; 0 = pgxpool default (max(4, NumCPU))
	// StatementTimeout bounds every statement the pool runs (PostgreSQL's
	// statement_timeout); 0 leaves the server's setting. A statement that
	// runs past it fails with an error IsCanceled reports.
	StatementTimeout time.Duration
	// ReadURL names a streaming replica of the database: searches, reads,
	// vreads and history run there once it has replayed this process's
	// writes, else on the primary (see replica.go). Empty: all on the primary.
	ReadURL string
}

// IsCanceled reports an error of a statement PostgreSQL cancelled (SQLSTATE
// 57014): it ran past the statement timeout, or its request went away.
func IsCanceled(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "57014"
}

// IsUnavailable reports an error that says the database is out of reach,
// not that the request was wrong: no connection could be made, the server
// is shutting down, starting or recovering (SQLSTATE 57P01-57P03), the
// connection failed (class 08) or was lost mid-statement. The same
// request may succeed once the database is back.
func IsUnavailable(err error) bool {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	var ne net.Error
	return errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne)
}

// Open connects to databaseURL. It does not migrate: call Migrate first.
func Open(ctx context.Context, databaseURL string, opts Options) (*Store, error) {
	cfg, err := poolConfig(databaseURL, opts)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: connect: %w", err)
	}
	s := &Store{pool: pool, url: databaseURL, now: time.Now, committed: make(chan struct{}, 1)}
	if opts.ReadURL != "" {
		if s.replica, err = openReplica(ctx, opts.ReadURL, opts); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return s, nil
}

// Committed is signalled after transactions of this Store commit (several
// commits may coalesce into one signal). Its one reader is the process's
// subscriptions dispatcher; writes of other processes reach it by polling.
func (s *Store) Committed() <-chan struct{} { return s.committed }

func poolConfig(databaseURL string, opts Options) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("store: parse database url: %w", err)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if opts.StatementTimeout > 0 {
		cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(max(1, opts.StatementTimeout.Milliseconds()), 10)
	}
	// A cancelled context (a client that went away) sends PostgreSQL a
	// cancel request, so the backend stops working on the statement too;
	// pgx's default only closes the socket, which a backend busy planning or
	// executing notices late.
	cfg.ConnConfig.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: 2 * time.Second}
	}
	return cfg, nil
}

// Close releases every connection.
func (s *Store) Close() {
	s.pool.Close()
	if s.replica != nil {
		s.replica.pool.Close()
	}
}

// Ready reports nil when the database answers and the schema is current.
func (s *Store) Ready(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	ok, err := schemaCurrent(ctx, s.url)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("store: schema migrations pending")
	}
	return nil
}

// Read returns the current version of type/id. A deleted resource returns its
// tombstone version together with ErrDeleted.
func (s *Store) Read(ctx context.Context, typ, id string) (Version, error) {
	if s.replica != nil {
		v, err := viaReplica(ctx, s, func(db querier) (Version, error) { return read(ctx, db, typ, id) })
		return visible(ctx, v, err)
	}
	v, err := read(ctx, s.pool, typ, id)
	return visible(ctx, v, err)
}

func read(ctx context.Context, db querier, typ, id string) (Version, error) {
	v := Version{Type: typ, ID: id}
	err := db.QueryRow(ctx,
		`SELECT version, last_updated, method, deleted, COALESCE(raw, content::text) FROM resources WHERE type = $1 AND id = $2`,
		typ, id).Scan(&v.VersionID, &v.LastUpdated, &v.Method, &v.Deleted, &v.Content)
	if errors.Is(err, pgx.ErrNoRows) {
		return v, ErrNotFound
	}
	if err != nil {
		return v, fmt.Errorf("store: read %s/%s: %w", typ, id, err)
	}
	if v.Deleted {
		return v, ErrDeleted
	}
	return v, nil
}

// Read returns the current version of type/id inside the transaction, so a
// transaction's GET entries see its own writes.
func (t *Tx) Read(ctx context.Context, typ, id string) (Version, error) {
	v, err := read(ctx, t.tx, typ, id)
	return visible(ctx, v, err)
}

// VRead returns one version of type/id. A tombstone version returns ErrDeleted.
func (s *Store) VRead(ctx context.Context, typ, id string, version int64) (Version, error) {
	if s.replica != nil {
		return viaReplica(ctx, s, func(db querier) (Version, error) { return vread(ctx, db, typ, id, version) })
	}
	return vread(ctx, s.pool, typ, id, version)
}

func vread(ctx context.Context, db querier, typ, id string, version int64) (Version, error) {
	v := Version{Type: typ, ID: id, VersionID: version}
	err := db.QueryRow(ctx, `
		SELECT last_updated, method, deleted, COALESCE(raw, content::text) FROM resources
		 WHERE type = $1 AND id = $2 AND version = $3
		UNION ALL
		SELECT h.last_updated, h.method, h.deleted, COALESCE(h.raw, h.content::text)
		  FROM resource_history h JOIN resources r ON r.rid = h.rid
		 WHERE r.type = $1 AND r.id = $2 AND h.version = $3`,
		typ, id, version).Scan(&v.LastUpdated, &v.Method, &v.Deleted, &v.Content)
	if errors.Is(err, pgx.ErrNoRows) {
		return v, ErrNotFound
	}
	if err != nil {
		return v, fmt.Errorf("store: vread %s/%s/_history/%d: %w", typ, id, version, err)
	}
	if v.Deleted {
		return visible(ctx, v, ErrDeleted)
	}
	return visible(ctx, v, nil)
}

// Pool is the connection pool, for packages that keep their own tables beside
// the resources (DICOM metadata, the authorization server's clients and
// tokens). FHIR resources are written only through Tx.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// DB is the database transaction under t, for writing a package's own tables
// atomically with the resources t writes.
func (t *Tx) DB() pgx.Tx { return t.tx }
