package engine

import (
	"bytes"
	"context"
	"errors"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/store"
)

// AuditTrail is the caller of Ember's audit trail writer: unrestricted like
// System, and the only caller that may write AuditEvents carrying Ember's
// audit tag. Those events are append-only for everyone: an update, patch
// or delete of one is refused, so the hash chain beside them only breaks
// when someone goes behind the engine's back (which `ember audit verify`
// reports). AuditEvents without the tag (another system's, or an example)
// are ordinary resources.
var AuditTrail = &Caller{trail: true}

// auditTag is the tag's system, as it appears in the JSON (package audit
// defines it; the engine only recognises it).
var auditTag = []byte(`"https://emberfhir.org/fhir/CodeSystem/audit"`)

type trailKey struct{}

// refuseAuditForgery refuses an AuditEvent carrying Ember's audit tag unless
// the audit trail itself writes it.
func refuseAuditForgery(ctx context.Context, res *fhir.Resource) error {
	if res.Type() != "AuditEvent" || !bytes.Contains(res.Body(), auditTag) || ctx.Value(trailKey{}) != nil {
		return nil
	}
	return fhir.NewError(fhir.Forbidden, "forbidden", "AuditEvents tagged "+string(auditTag)+" are written by Ember's audit trail only")
}

// refuseAuditEdit refuses to update, patch or delete one of Ember's own
// AuditEvents.
func refuseAuditEdit(ctx context.Context, tx *store.Tx, typ, id string) error {
	if typ != "AuditEvent" {
		return nil
	}
	v, err := tx.Read(ctx, typ, id)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrDeleted) {
		return nil
	}
	if err != nil {
		return err
	}
	if bytes.Contains(v.Content, auditTag) {
		return fhir.NewError(fhir.Forbidden, "forbidden", "AuditEvent/"+id+" is part of Ember's audit trail, which is append-only")
	}
	return nil
}
