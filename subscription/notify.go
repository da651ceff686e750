package subscription

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/xml"
	"github.com/emberfhir/ember/store"
	"github.com/emberfhir/ember/store/subdb"
)

// Notification types (SubscriptionStatus.type).
const (
	typeHandshake  = "handshake"
	typeHeartbeat  = "heartbeat"
	typeEvent      = "event-notification"
	typeQueryState = "query-status"
	typeQueryEvent = "query-event"
)

type obj = map[string]any

// statusParameters is the SubscriptionStatus of a subscription as the R4
// backport represents it: a Parameters resource.
func (s *Service) statusParameters(sub subdb.Sub, cfg *settings, kind string, events []obj) obj {
	params := []any{
		obj{"name": "subscription", "valueReference": obj{"reference": s.en.Base() + "/Subscription/" + sub.ID}},
		obj{"name": "topic", "valueCanonical": cfg.Topic},
		obj{"name": "status", "valueCode": sub.Status},
		obj{"name": "type", "valueCode": kind},
		obj{"name": "events-since-subscription-start", "valueString": strconv.FormatInt(sub.Events, 10)},
	}
	for _, e := range events {
		params = append(params, e)
	}
	if sub.Error != "" && (kind == typeQueryState || sub.Status == "error") {
		params = append(params, obj{"name": "error", "valueCodeableConcept": obj{"text": sub.Error}})
	}
	return obj{"resourceType": "Parameters", "id": uuid.NewString(), "meta": obj{"profile": []any{statusProfile}}, "parameter": params}
}

// notification builds a notification Bundle (type history) of kind for a
// subscription: its status first, then, for events, one entry per event
// as the payload content asks. The owner's grant is applied again here,
// at delivery time: an event whose resource the owner may no longer read
// keeps its number (numbers stay contiguous) but carries no focus and no
// resource.
func (s *Service) notification(ctx context.Context, sub subdb.Sub, cfg *settings, kind string, evs []subdb.Event) ([]byte, error) {
	caller := s.en.CallerFor(cfg.Owner.Grant())
	// The versions are read when the payload carries them or the owner's
	// grant must be applied to them; an unrestricted id-only notification
	// needs nothing but the events.
	versions := make([]store.Version, len(evs))
	if cfg.Content == contentResource || (cfg.Content == contentIDOnly && cfg.Owner != nil) {
		var err error
		if versions, err = s.db.Versions(ctx, evs); err != nil {
			return nil, err
		}
	} else {
		for i, e := range evs {
			versions[i] = store.Version{Type: e.Type, ID: e.ID, VersionID: e.Version, LastUpdated: e.At, Content: []byte("{}")}
		}
	}
	var notes []obj
	entries := []any{nil}
	for i, e := range evs {
		note := []any{
			obj{"name": "event-number", "valueString": strconv.FormatInt(e.Number, 10)},
			obj{"name": "timestamp", "valueInstant": fhir.FormatInstant(e.At)},
		}
		var entry obj
		if cfg.Content != contentEmpty {
			var err error
			if entry, err = s.eventEntry(ctx, caller, cfg, e, versions[i]); err != nil {
				return nil, err
			}
		}
		if entry != nil {
			note = append(note, obj{"name": "focus", "valueReference": obj{"reference": e.Type + "/" + e.ID + "/_history/" + strconv.FormatInt(e.Version, 10)}})
			entries = append(entries, entry)
		}
		notes = append(notes, obj{"name": "notification-event", "part": note})
	}
	status := s.statusParameters(sub, cfg, kind, notes)
	entries[0] = obj{"fullUrl": "urn:uuid:" + status["id"].(string), "resource": status,
		"request": obj{"method": "GET", "url": "Subscription/" + sub.ID + "/$status"}, "response": obj{"status": "200"}}
	bundle := obj{"resourceType": "Bundle", "id": uuid.NewString(), "type": "history",
		"timestamp": fhir.FormatInstant(time.Now()), "entry": entries}
	body, err := json.Marshal(bundle)
	if err != nil {
		return nil, err
	}
	if cfg.Payload == "application/fhir+xml" || cfg.Payload == "application/xml" {
		return xml.Marshal(nil, body, false)
	}
	return body, nil
}

// eventEntry is one event's Bundle entry, or nil when the owner may not
// read the version v (the same decision the store's guard makes on a
// read), or it was purged.
func (s *Service) eventEntry(ctx context.Context, caller *engine.Caller, cfg *settings, e subdb.Event, v store.Version) (obj, error) {
	full := s.en.Base() + "/" + e.Type + "/" + e.ID
	method, status, url := "PUT", "200", e.Type+"/"+e.ID
	if e.Version == 1 {
		status = "201" // an update that created
	}
	switch e.Method {
	case store.MethodCreate:
		method, status, url = "POST", "201", e.Type
	case store.MethodDelete:
		// A deletion was matched on what was deleted, which the owner
		// could read then; there is nothing left to read or to show.
		return obj{"fullUrl": full, "request": obj{"method": "DELETE", "url": e.Type + "/" + e.ID}, "response": obj{"status": "204"}}, nil
	}
	if v.Content == nil {
		return nil, nil
	}
	ok, err := caller.Visible(store.WithoutGuard(ctx), e.Type, e.ID, v.Content)
	if err != nil {
		var fe *fhir.Error
		if errors.As(err, &fe) && fe.Kind == fhir.Forbidden {
			return nil, nil
		}
		return nil, err
	}
	if !ok {
		return nil, nil
	}
	entry := obj{"fullUrl": full, "request": obj{"method": method, "url": url},
		"response": obj{"status": status, "etag": `W/"` + strconv.FormatInt(e.Version, 10) + `"`, "lastModified": fhir.FormatInstant(v.LastUpdated)}}
	if cfg.Content == contentResource {
		entry["resource"] = json.RawMessage(v.Content)
	}
	return entry, nil
}
