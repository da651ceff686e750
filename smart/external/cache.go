package external

import (
	"sync"
	"time"

	"github.com/emberfhir/ember/smart/access"
)

// cache holds verified grants by token until they expire, so a client
// reusing its token costs a map lookup, not a signature check. Keyed by the token itself:
// hashing it would cost more than the lookup, and the size bound caps the memory.
type cache struct {
	mu  sync.RWMutex
	m   map[string]*access.Grant
	max int
	now func() time.Time
}

func newCache(max int, now func() time.Time) *cache {
	return &cache{m: make(map[string]*access.Grant), max: max, now: now}
}

func (c *cache) get(k string) *access.Grant {
	c.mu.RLock()
	g := c.m[k]
	c.mu.RUnlock()
	if g == nil {
		return nil
	}
	if !c.now().Before(g.Expiry) {
		c.mu.Lock()
		delete(c.m, k)
		c.mu.Unlock()
		return nil
	}
	return g
}

func (c *cache) put(k string, g *access.Grant) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		now := c.now()
		for k, g := range c.m {
			if !now.Before(g.Expiry) {
				delete(c.m, k)
			}
		}
		// Still full of live tokens: drop arbitrary ones (they are
		// re-verified on next use) rather than grow without bound.
		for k := range c.m {
			if len(c.m) < c.max*7/8 {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[k] = g
}

func (c *cache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
