package trail

import (
	"time"

	"github.com/emberfhir/ember/audit"
)

// groupKey is what accesses must share to be one AuditEvent: the same kind
// of access by the same agent from the same address, with the same outcome.
// The patients are not part of it: one event names every patient whose
// data the agent touched in the interval (each an entity with role
// Patient), or a server reading a thousand patients a second would write a
// thousand events a second.
type groupKey struct {
	kind      audit.Kind
	subtype   string
	operation string
	action    audit.Action
	outcome   audit.Outcome
	status    int
	agent     audit.Agent
}

func keyOf(e audit.Event) groupKey {
	return groupKey{kind: e.Kind, subtype: e.Subtype, operation: e.Operation, action: e.Action,
		outcome: e.Outcome, status: e.Status, agent: e.Agent}
}

// group is the accesses one AuditEvent will stand for.
type group struct {
	key         groupKey
	first, last time.Time
	n           int // accesses
	patients    []string
	entities    []string
	queries     []string
	seen        map[string]struct{}
}

// size is how many entities the group's event will have.
func (g *group) size() int { return len(g.patients) + len(g.entities) + len(g.queries) }

func (g *group) add(e audit.Event) {
	g.n++
	if e.When.Before(g.first) {
		g.first = e.When
	}
	if e.When.After(g.last) {
		g.last = e.When
	}
	if g.seen == nil {
		g.seen = map[string]struct{}{}
	}
	if e.Patient != "" {
		if _, ok := g.seen[e.Patient]; !ok {
			g.seen[e.Patient] = struct{}{}
			g.patients = append(g.patients, e.Patient)
		}
	}
	for _, ref := range e.Entities {
		if ref == e.Patient {
			continue
		}
		if _, ok := g.seen[ref]; !ok {
			g.seen[ref] = struct{}{}
			g.entities = append(g.entities, ref)
		}
	}
	if e.Query != "" {
		k := "?" + e.Query
		if _, ok := g.seen[k]; !ok {
			g.seen[k] = struct{}{}
			g.queries = append(g.queries, e.Query)
		}
	}
}
