package subscription

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/store/subdb"
)

// The websocket channel (Subscriptions R5 Backport, websocket): a client
// gets a token from $get-ws-binding-token, opens WebsocketPath and sends
// "bind-with-token TOKEN". Ember answers with a handshake per subscription
// the token names, then sends each new event-notification Bundle as a
// text message, and heartbeats at the subscription's heartbeat period.
// A client that reconnects sends "events-since N" (optionally followed
// by a subscription id) to have the stored events after N replayed first,
// in order; numbers are the subscription's, so a client can tell what it
// missed, and drop what it sees twice (an event sent between the bind and
// events-since, which asks for it again).

// hub wakes this process's websocket connections when the dispatcher has
// matched events; connections poll too, for other processes' matches.
type hub struct {
	mu    sync.Mutex
	conns map[chan struct{}]struct{}
}

func newHub() *hub { return &hub{conns: map[chan struct{}]struct{}{}} }

func (h *hub) add() chan struct{} {
	c := make(chan struct{}, 1)
	h.mu.Lock()
	h.conns[c] = struct{}{}
	h.mu.Unlock()
	return c
}

func (h *hub) remove(c chan struct{}) {
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
}

func (h *hub) wake() {
	h.mu.Lock()
	for c := range h.conns {
		kick(c)
	}
	h.mu.Unlock()
}

// maxBound bounds the subscriptions one connection binds.
const maxBound = 100

// WebsocketHandler serves the websocket endpoint (mounted at
// WebsocketPath). The binding token is the credential: any origin may
// connect, as with a bearer token.
func (s *Service) WebsocketHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return // Accept has answered
		}
		defer c.CloseNow() //nolint:errcheck // closing a connection that may be gone
		c.SetReadLimit(4096)
		ws := &wsConn{s: s, c: c, cursor: map[string]int64{}, lastSent: map[string]time.Time{}, commands: make(chan string, 8)}
		ws.run(r.Context())
	})
}

// wsConn is one websocket connection.
type wsConn struct {
	s        *Service
	c        *websocket.Conn
	subs     []string
	cursor   map[string]int64 // last event number sent, per subscription
	lastSent map[string]time.Time
	commands chan string
}

func (ws *wsConn) run(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go ws.read(ctx, cancel)
	wake := ws.s.hub.add()
	defer ws.s.hub.remove(wake)
	t := time.NewTicker(ws.s.cfg.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case cmd := <-ws.commands:
			if err := ws.command(ctx, cmd); err != nil {
				ws.c.Close(websocket.StatusPolicyViolation, truncate(err.Error(), 120)) //nolint:errcheck
				return
			}
		case <-wake:
		case <-t.C:
		}
		if err := ws.send(ctx); err != nil {
			if ctx.Err() == nil {
				ws.s.log.Info("websocket closed", "err", err)
			}
			return
		}
	}
}

// read passes the client's text messages to run; it ends the connection
// when the client goes.
func (ws *wsConn) read(ctx context.Context, cancel context.CancelFunc) {
	defer cancel()
	for {
		typ, msg, err := ws.c.Read(ctx)
		if err != nil {
			return
		}
		if typ != websocket.MessageText {
			continue
		}
		select {
		case ws.commands <- strings.TrimSpace(string(msg)):
		case <-ctx.Done():
			return
		}
	}
}

// command runs one client message.
func (ws *wsConn) command(ctx context.Context, cmd string) error {
	f := strings.Fields(cmd)
	switch {
	case len(f) == 2 && f[0] == "bind-with-token":
		return ws.bind(ctx, f[1])
	case (len(f) == 2 || len(f) == 3) && f[0] == "events-since":
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || n < 0 {
			return errors.New("events-since takes an event number")
		}
		for _, id := range ws.subs {
			if len(f) == 2 || f[2] == id {
				ws.cursor[id] = n
			}
		}
		return nil
	}
	return errors.New("unknown command: use bind-with-token TOKEN or events-since N")
}

// bind checks a binding token and shakes hands for each subscription it
// names.
func (ws *wsConn) bind(ctx context.Context, token string) error {
	hash := sha256.Sum256([]byte(token))
	subs, ok, err := ws.s.db.Token(ctx, hash[:])
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("the binding token is unknown or expired: get one with $get-ws-binding-token")
	}
	for _, id := range subs {
		if _, dup := ws.cursor[id]; dup || len(ws.subs) >= maxBound {
			continue
		}
		row, cfg, ok, err := ws.load(ctx, id)
		if err != nil {
			return err
		}
		if !ok {
			// Written moments ago: the dispatcher has not made its row
			// yet. Shake hands from the resource; events start at 0.
			if row, cfg, err = ws.s.readable(ctx, engine.System, id); err != nil {
				return errors.Join(err, errors.New("Subscription/"+id+" is gone"))
			}
		}
		body, err := ws.s.notification(ctx, row, cfg, typeHandshake, nil)
		if err != nil {
			return err
		}
		if err := ws.c.Write(ctx, websocket.MessageText, body); err != nil {
			return err
		}
		ws.subs = append(ws.subs, id)
		ws.cursor[id] = row.Events
		ws.lastSent[id] = time.Now()
	}
	return nil
}

// load reads a bound subscription's row and configuration.
func (ws *wsConn) load(ctx context.Context, id string) (subdb.Sub, *settings, bool, error) {
	row, ok, err := ws.s.db.Get(ctx, id)
	if err != nil || !ok {
		return row, nil, ok, err
	}
	var cfg settings
	if err := json.Unmarshal(row.Config, &cfg); err != nil {
		return row, nil, false, err
	}
	return row, &cfg, true, nil
}

// send writes what each bound subscription has for the client: its events
// after the cursor (a batch of at most max-count at a time), else a
// heartbeat when one is due.
func (ws *wsConn) send(ctx context.Context) error {
	for _, id := range ws.subs {
		row, cfg, ok, err := ws.load(ctx, id)
		if err != nil {
			return err
		}
		if !ok || row.Status == "off" || row.Status == "error" {
			continue
		}
		for ws.cursor[id] < row.Events {
			evs, err := ws.s.db.Events(ctx, id, ws.cursor[id]+1, row.Events, int(cfg.MaxCount))
			if err != nil {
				return err
			}
			if len(evs) == 0 {
				ws.cursor[id] = row.Events // pruned: nothing left to replay
				break
			}
			body, err := ws.s.notification(ctx, row, cfg, typeEvent, evs)
			if err != nil {
				return err
			}
			if err := ws.c.Write(ctx, websocket.MessageText, body); err != nil {
				return err
			}
			last := evs[len(evs)-1].Number
			now := time.Now()
			ws.cursor[id], ws.lastSent[id] = last, now
			ws.s.m.delivered.WithLabelValues("websocket").Add(float64(len(evs)))
			for _, e := range evs {
				ws.s.m.lag.WithLabelValues("websocket").Observe(now.Sub(e.At).Seconds())
			}
			// Recorded even when the client has just gone (ctx ended): it
			// was sent.
			mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			err = ws.s.db.MarkSent(mctx, id, last)
			cancel()
			if err != nil {
				return err
			}
		}
		if cfg.Heart > 0 && time.Since(ws.lastSent[id]) >= time.Duration(cfg.Heart)*time.Second {
			body, err := ws.s.notification(ctx, row, cfg, typeHeartbeat, nil)
			if err != nil {
				return err
			}
			if err := ws.c.Write(ctx, websocket.MessageText, body); err != nil {
				return err
			}
			ws.lastSent[id] = time.Now()
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
