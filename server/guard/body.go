package guard

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Body read defaults: a client may pause at most DefaultBodyIdle between
// bytes, and after DefaultBodyGrace must have sent DefaultBodyMinRate bytes
// per second on average. A 16 MiB body at the minimum rate takes 4.5 hours,
// so no honest client is cut off; one byte every few seconds is.
const (
	DefaultBodyIdle    = 10 * time.Second
	DefaultBodyGrace   = 10 * time.Second
	DefaultBodyMinRate = 1024
)

// BodyConfig configures Body.
type BodyConfig struct {
	// MaxBody is the largest body a request may declare in Content-Length:
	// larger ones are answered 413 before a byte of the body is read
	// (0: no check here; handlers still bound what they read).
	MaxBody int64
	// MaxBodyFor, when set, gives the limit for a request instead of MaxBody
	// (e.g. larger for DICOM STOW uploads); 0 means no limit for it.
	MaxBodyFor func(*http.Request) int64
	// Idle is the longest wait for the next bytes of a body (default
	// DefaultBodyIdle; negative disables the read deadlines).
	Idle time.Duration
	// Grace is how long a body may arrive slower than MinRate at first
	// (default DefaultBodyGrace).
	Grace time.Duration
	// MinRate is the least average rate, in bytes per second, a body must
	// keep after Grace (default DefaultBodyMinRate).
	MinRate int64
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// ErrBodyTimeout is returned (wrapped) by a request body that arrived too
// slowly or stalled.
var ErrBodyTimeout = errors.New("request body arrived too slowly")

// Body bounds the time a request body may take: without it a client can
// hold a connection, and whatever the handler allocated for it (a STOW
// blob, a parsed form), by sending a byte a minute, and a Content-Length of
// 2 GB with a few bytes sent is never answered. It sets connection read
// deadlines through http.ResponseController as the body arrives, so it
// needs no global ReadTimeout that would also cut slow but steady uploads,
// and no WriteTimeout that would cut long downloads.
type Body struct {
	cfg BodyConfig
}

// NewBody fills in cfg's defaults.
func NewBody(cfg BodyConfig) *Body {
	if cfg.Idle == 0 {
		cfg.Idle = DefaultBodyIdle
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultBodyGrace
	}
	if cfg.MinRate <= 0 {
		cfg.MinRate = DefaultBodyMinRate
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Body{cfg: cfg}
}

// Wrap answers a too large declared body with 413 and deadlines the rest.
func (b *Body) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := b.cfg.MaxBody
		if b.cfg.MaxBodyFor != nil {
			limit = b.cfg.MaxBodyFor(r)
		}
		if limit > 0 && r.ContentLength > limit {
			// Not reading the body leaves the connection unusable: close it.
			w.Header().Set("Connection", "close")
			writeOutcome(w, http.StatusRequestEntityTooLarge, "too-costly",
				"the request body of "+strconv.FormatInt(r.ContentLength, 10)+" bytes exceeds the limit of "+strconv.FormatInt(limit, 10)+" bytes")
			return
		}
		if b.cfg.Idle > 0 && r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
			rc := http.NewResponseController(w)
			// This first deadline also bounds what net/http itself reads
			// of a body the handler leaves unread: it discards the rest
			// before sending the response, and that read bypasses r.Body.
			// A writer that cannot set deadlines (a test recorder) gets none.
			if err := rc.SetReadDeadline(b.cfg.Now().Add(b.cfg.Idle)); err == nil {
				r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc, cfg: &b.cfg, start: b.cfg.Now()}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// deadlineBody moves the connection's read deadline before every Read: the
// earlier of now+Idle and the time by which MinRate says the next byte is
// due.
type deadlineBody struct {
	io.ReadCloser
	rc    *http.ResponseController
	cfg   *BodyConfig
	start time.Time
	n     int64
	done  bool // EOF or an error: the deadline is no longer ours to set
}

func (d *deadlineBody) Read(p []byte) (int, error) {
	if d.done {
		return d.ReadCloser.Read(p)
	}
	now := d.cfg.Now()
	due := d.start.Add(d.cfg.Grace + time.Duration(float64(d.n+1)/float64(d.cfg.MinRate)*float64(time.Second)))
	deadline, slow := now.Add(d.cfg.Idle), false
	if due.Before(deadline) {
		deadline, slow = due, true
	}
	if !deadline.After(now) {
		d.done = true
		return 0, d.tooSlow(now)
	}
	_ = d.rc.SetReadDeadline(deadline)
	n, err := d.ReadCloser.Read(p)
	d.n += int64(n)
	if err != nil {
		// Once the body is read the server resets the deadline itself to
		// watch the idle connection; setting ours again would cut it.
		d.done = true
		var te interface{ Timeout() bool }
		if errors.As(err, &te) && te.Timeout() {
			if slow {
				return n, d.tooSlow(d.cfg.Now())
			}
			return n, fmt.Errorf("%w: no data for %s after %d bytes", ErrBodyTimeout, d.cfg.Idle, d.n)
		}
	}
	return n, err
}

func (d *deadlineBody) tooSlow(now time.Time) error {
	return fmt.Errorf("%w: %d bytes in %s, below %d bytes/s", ErrBodyTimeout, d.n, now.Sub(d.start).Round(time.Millisecond), d.cfg.MinRate)
}
