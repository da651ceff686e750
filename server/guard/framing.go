package guard

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// Request smuggling: a request with both Content-Length and
// Transfer-Encoding is framed differently by a proxy that believes the
// length and a server that believes the chunking. net/http follows RFC 9112
// (the chunking wins) but removes Content-Length before any handler runs
// and keeps the connection open, so a pipelined request hidden in the body
// is answered. RFC 9112 §6.1 requires closing the connection after such a
// request; Ember rejects it outright. Since the handler cannot see the
// removed header, FramingListener watches the bytes as net/http reads them
// and Framing acts on what it saw.

// FramingListener wraps a plain-text listener so Framing can see each
// request's raw framing headers. Do not wrap a TLS listener's raw
// connections: they carry ciphertext.
type FramingListener struct{ net.Listener }

// Accept wraps each connection in a framing watcher.
func (l FramingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &framingConn{Conn: c}, nil
}

// FramingConnContext is http.Server.ConnContext for a FramingListener: it
// lets Framing find the connection's watcher.
func FramingConnContext(ctx context.Context, c net.Conn) context.Context {
	if fc, ok := c.(*framingConn); ok {
		return context.WithValue(ctx, framingKey{}, fc)
	}
	return ctx
}

type framingKey struct{}

// Framing answers 400 with Connection: close to a request that carried both
// Content-Length and Transfer-Encoding. Requests on a connection that was
// not accepted by a FramingListener (TLS, tests) cannot be told apart from
// plain chunked ones, so for them every chunked HTTP/1 request closes the
// connection after its response, which is what RFC 9112 requires of the
// ambiguous ones.
func Framing(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 1 {
			next.ServeHTTP(w, r)
			return
		}
		fc, _ := r.Context().Value(framingKey{}).(*framingConn)
		if fc == nil {
			if len(r.TransferEncoding) > 0 {
				w.Header().Set("Connection", "close")
			}
			next.ServeHTTP(w, r)
			return
		}
		if fc.ambiguous(r) {
			w.Header().Set("Connection", "close")
			writeOutcome(w, http.StatusBadRequest, "structure",
				"the request has both Content-Length and Transfer-Encoding: its length is ambiguous (RFC 9112 §6.1)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// framingConn parses the HTTP/1 framing of the bytes read from it: request
// heads, and bodies by Content-Length or chunks, just enough to know where
// each head starts. It keeps at most lineKeep bytes of any line.
type framingConn struct {
	net.Conn

	mu      sync.Mutex
	heads   []headVerdict // parsed heads not yet claimed by a handler
	state   int
	line    []byte // the first lineKeep bytes of the current line
	lineLen int
	reqLine string // the current head's request line
	cl, te  bool   // the current head has Content-Length, Transfer-Encoding
	clValue string
	skip    int64 // body or chunk bytes still to pass over
}

type headVerdict struct {
	requestLine string
	ambiguous   bool
}

const (
	stHead = iota
	stBody
	stChunkSize
	stChunkData
	stChunkEnd
	stTrailer
	stLost // unparseable: net/http closes such connections, we stop judging

	lineKeep = 128
	maxHeads = 64 // pipelined heads kept unclaimed; more means we are out of step
)

func (c *framingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		c.scan(p[:n])
		c.mu.Unlock()
	}
	return n, err
}

// ambiguous claims the verdict of r's head: heads are parsed in the order
// net/http serves them, so it is the first whose request line matches.
func (c *framingConn) ambiguous(r *http.Request) bool {
	want := r.Method + " " + r.RequestURI + " " + r.Proto
	if len(want) > lineKeep {
		want = want[:lineKeep]
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, h := range c.heads {
		if h.requestLine == want {
			c.heads = c.heads[i+1:]
			return h.ambiguous
		}
	}
	// Out of step: fail closed if any head seen was ambiguous.
	for _, h := range c.heads {
		if h.ambiguous {
			return true
		}
	}
	return false
}

func (c *framingConn) scan(b []byte) {
	for len(b) > 0 {
		switch c.state {
		case stLost:
			return
		case stBody, stChunkData:
			n := min(int64(len(b)), c.skip)
			b = b[n:]
			c.skip -= n
			if c.skip == 0 {
				if c.state == stBody {
					c.state = stHead
				} else {
					c.state = stChunkEnd
				}
			}
		default:
			i := 0
			for i < len(b) && b[i] != '\n' {
				i++
			}
			if keep := min(i, lineKeep-len(c.line)); keep > 0 {
				c.line = append(c.line, b[:keep]...)
			}
			c.lineLen += i
			if i == len(b) {
				return // the line goes on in the next read
			}
			b = b[i+1:]
			line := strings.TrimSuffix(string(c.line), "\r")
			empty := c.lineLen == 0 || (c.lineLen == 1 && line == "")
			c.line, c.lineLen = c.line[:0], 0
			c.endLine(line, empty)
		}
	}
}

// endLine advances the parser by one complete line.
func (c *framingConn) endLine(line string, empty bool) {
	switch c.state {
	case stHead:
		if c.reqLine == "" {
			if !empty { // empty lines before a request line are ignored
				c.reqLine = line
			}
			return
		}
		if !empty {
			name, value, _ := strings.Cut(line, ":")
			switch {
			case strings.EqualFold(name, "Content-Length"):
				c.cl, c.clValue = true, strings.TrimSpace(value)
			case strings.EqualFold(name, "Transfer-Encoding"):
				c.te = true
			}
			return
		}
		if len(c.heads) < maxHeads {
			c.heads = append(c.heads, headVerdict{requestLine: c.reqLine, ambiguous: c.cl && c.te})
		}
		switch {
		case c.te:
			c.state = stChunkSize
		case c.cl:
			n, err := strconv.ParseInt(c.clValue, 10, 64)
			switch {
			case err != nil || n < 0:
				c.state = stLost
			case n == 0:
				c.state = stHead
			default:
				c.state, c.skip = stBody, n
			}
		}
		c.reqLine, c.cl, c.te, c.clValue = "", false, false, ""
	case stChunkSize:
		size, _, _ := strings.Cut(line, ";")
		n, err := strconv.ParseInt(strings.TrimSpace(size), 16, 64)
		switch {
		case err != nil || n < 0:
			c.state = stLost
		case n == 0:
			c.state = stTrailer
		default:
			c.state, c.skip = stChunkData, n
		}
	case stChunkEnd:
		c.state = stChunkSize
	case stTrailer:
		if empty {
			c.state = stHead
		}
	}
}
