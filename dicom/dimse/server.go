// Package dimse is Ember's DICOM network service class provider: the PS3.8
// upper layer (associations, PDUs) and the DIMSE C-ECHO, C-STORE and C-FIND
// services, handing data to a Handler. It depends only on the standard library
// and, for its association counters, the Prometheus client.
package dimse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Server. Zero durations and sizes take the defaults
// noted on each field.
type Config struct {
	// AETitle is the called AE title the server answers to (default
	// "EMBER"); associations addressed to another title are rejected.
	AETitle string
	// AllowedCallingAEs lists the calling AE titles allowed to associate,
	// each with every permission; empty allows any (unless Policy is set).
	AllowedCallingAEs []string
	// Policy, when set, says which calling AEs may associate and what each
	// may do (see ParseAEPolicy); it replaces AllowedCallingAEs. A C-STORE
	// or C-FIND an AE may not ask for is answered with status 0x0124
	// (Refused: Not Authorized).
	Policy AEPolicy
	// Handler receives stored instances and queries. Required.
	Handler Handler
	// Logger receives association events (default slog.Default()).
	Logger *slog.Logger
	// AssociationTimeout (ARTIM) bounds the wait for the A-ASSOCIATE-RQ
	// after connecting (default 30s).
	AssociationTimeout time.Duration
	// ReadTimeout bounds every read from the peer once associated: the idle
	// time between messages and any stall inside one (default 2m).
	ReadTimeout time.Duration
	// WriteTimeout bounds every write to the peer (default 1m).
	WriteTimeout time.Duration
	// MaxPDULength is the maximum PDU length the server tells peers it
	// receives (default 1 MiB, so peers send large PDVs). Larger PDUs are
	// still accepted up to 64 MiB: data PDVs are streamed, not buffered.
	MaxPDULength uint32
	// MaxAssociations caps concurrent associations; further requests are
	// rejected transiently (default 64).
	MaxAssociations int
	// OnAssociation, if set, is called when an association ends with its
	// counters (a small metrics hook).
	OnAssociation func(AssociationStats)
	// Metrics, when set, is where the association counters are registered
	// (ember_dicom_associations_total by result).
	Metrics prometheus.Registerer
}

// AssociationStats summarises one association for OnAssociation.
type AssociationStats struct {
	CallingAE, CalledAE string
	RemoteAddr          string // the peer's host:port
	Stores, Finds       int
	Failures            int // responses with a failure status
	BytesReceived       int64
	Duration            time.Duration
	Err                 error // nil on a normal release
}

const (
	defaultAETitle            = "EMBER"
	defaultAssociationTimeout = 30 * time.Second
	defaultReadTimeout        = 2 * time.Minute
	defaultWriteTimeout       = time.Minute
	defaultMaxPDU             = 1 << 20
	defaultMaxAssociations    = 64

	// maxAssociateRQ bounds the buffered A-ASSOCIATE-RQ (128 presentation
	// contexts with many transfer syntaxes fit easily).
	maxAssociateRQ = 1 << 18
	// maxIncomingPDU bounds P-DATA-TF PDUs: their PDVs are streamed, so
	// this only rejects nonsense lengths.
	maxIncomingPDU = 1 << 26
	// maxCommandSet bounds a buffered command set.
	maxCommandSet = 1 << 16
	// maxIdentifier bounds a buffered C-FIND identifier.
	maxIdentifier = 1 << 20
)

// Server is a DICOM service class provider.
type Server struct {
	cfg     Config
	log     *slog.Logger
	policy  AEPolicy // nil: any AE, every permission
	slots   chan struct{}
	metrics *metrics
	onPanic func(any) // tests: observe recovered panics
}

// NewServer validates cfg and applies defaults.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Handler == nil {
		return nil, errors.New("dimse: Config.Handler is required")
	}
	if cfg.AETitle == "" {
		cfg.AETitle = defaultAETitle
	}
	if len(cfg.AETitle) > 16 {
		return nil, fmt.Errorf("dimse: AE title %q longer than 16 characters", cfg.AETitle)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.AssociationTimeout <= 0 {
		cfg.AssociationTimeout = defaultAssociationTimeout
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = defaultReadTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = defaultWriteTimeout
	}
	if cfg.MaxPDULength == 0 {
		cfg.MaxPDULength = defaultMaxPDU
	}
	if cfg.MaxPDULength < 4096 || cfg.MaxPDULength > maxIncomingPDU {
		return nil, fmt.Errorf("dimse: MaxPDULength %d outside [4096, %d]", cfg.MaxPDULength, maxIncomingPDU)
	}
	if cfg.MaxAssociations <= 0 {
		cfg.MaxAssociations = defaultMaxAssociations
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("dimse: metrics: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, slots: make(chan struct{}, cfg.MaxAssociations), metrics: m}
	switch {
	case cfg.Policy != nil && len(cfg.AllowedCallingAEs) > 0:
		return nil, errors.New("dimse: set Config.Policy or AllowedCallingAEs, not both")
	case cfg.Policy != nil:
		s.policy = maps.Clone(cfg.Policy)
	case len(cfg.AllowedCallingAEs) > 0:
		s.policy = make(AEPolicy, len(cfg.AllowedCallingAEs))
		for _, ae := range cfg.AllowedCallingAEs {
			s.policy[ae] = PermAll
		}
	}
	s.cfg.AllowedCallingAEs = slices.Clone(cfg.AllowedCallingAEs)
	return s, nil
}

// ListenAndServe listens on addr (host:port) and serves until ctx is done.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("dimse: listen %s: %w", addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve accepts associations on ln until ctx is done, then closes ln, aborts
// the associations still open and returns nil once they have ended. It
// returns an error if accepting fails for another reason.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	s.log.Info("dicom: listening", "addr", ln.Addr().String(), "ae_title", s.cfg.AETitle)
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("dicom: accept", "err", err, "retry_in", backoff)
				select {
				case <-time.After(backoff):
					continue
				case <-ctx.Done():
					return nil
				}
			}
			cancel()
			return fmt.Errorf("dimse: accept: %w", err)
		}
		backoff = 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, c)
		}()
	}
}
