// Package audit is what Ember's audit trail records and how producers
// report it: an Event is one access — a FHIR REST interaction, a DICOMweb
// or DIMSE operation, a SMART authentication event, an admin command — and
// a Recorder takes it without blocking. The HTTP layer, DICOM and the
// authorization server depend on this small package only; audit/trail
// writes the events (as hash-chained FHIR AuditEvents, through the engine).
// RedactQuery and HTTP are the helpers producers share.
package audit

import (
	"context"
	"time"
)

// Kind is what sort of access an Event is; it picks the AuditEvent.type.
type Kind uint8

// The kinds of access.
const (
	// REST is a FHIR RESTful interaction (type rest; subtype the
	// interaction from http://hl7.org/fhir/restful-interaction).
	REST Kind = iota + 1
	// DICOMweb is a STOW-RS, WADO-RS or QIDO-RS request.
	DICOMweb
	// DIMSE is a C-STORE, C-FIND or association (C-ECHO) on the DIMSE listener.
	DIMSE
	// Auth is a SMART authorization event: login, logout, token issued,
	// refused or revoked.
	Auth
	// Admin is an administrative command (ember import, token, client,
	// user, reindex, audit verify …).
	Admin
)

// Action is the AuditEvent.action code.
type Action byte

// The AuditEvent actions.
const (
	Create  Action = 'C'
	Read    Action = 'R'
	Update  Action = 'U'
	Delete  Action = 'D'
	Execute Action = 'E'
)

// Outcome is the AuditEvent.outcome code.
type Outcome uint8

// The AuditEvent outcomes.
const (
	Success      Outcome = 0
	MinorFailure Outcome = 4
	SeriousFail  Outcome = 8
	MajorFailure Outcome = 12
)

// OutcomeOfStatus maps an HTTP status to an outcome: 2xx and 3xx succeed,
// 4xx are minor failures (the request was refused), 5xx serious ones.
func OutcomeOfStatus(status int) Outcome {
	switch {
	case status >= 500:
		return SeriousFail
	case status >= 400:
		return MinorFailure
	}
	return Success
}

// Agent is who acted. Every field is an identifier, never a name: the
// trail must not copy personal data beyond references.
type Agent struct {
	// User is the user's FHIR resource ("Practitioner/123"), when known.
	User string
	// Subject is the authenticated subject (a user name or, for backend
	// services, the client id); AuditEvent.agent.altId.
	Subject string
	// Client is the OAuth client id.
	Client string
	// Role is the user's role (admin, doctor, …).
	Role string
	// Address is the network address the request came from.
	Address string
	// AETitle is a DICOM peer's calling AE title.
	AETitle string
}

// Event is one access, as a producer reports it.
type Event struct {
	Kind Kind
	// Subtype names the interaction: a restful-interaction code ("read",
	// "search-type", "transaction", "operation"), a DICOM service
	// ("STOW-RS", "C-STORE"), an auth event ("login", "token"), a command.
	Subtype string
	// Operation is an operation's name ("$export") when Subtype is
	// "operation".
	Operation string
	Action    Action
	Outcome   Outcome
	// Status is the protocol status (HTTP status, DIMSE status) for
	// AuditEvent.outcomeDesc; 0 for none.
	Status int
	// When is when the access happened; zero means when it was recorded.
	When  time.Time
	Agent Agent
	// Entities are the resources touched, as references ("Observation/1"),
	// or DICOM UIDs as "urn:oid:…".
	Entities []string
	// Patient is the patient whose data this was ("Patient/7"), when known.
	Patient string
	// Query is a search's query string, already stripped of values that
	// could identify a person (see RedactQuery).
	Query string
	// Content is a resource the access read or wrote, from which the trail
	// derives the patient off the request path when Patient is empty. It
	// is never copied into the event.
	Content []byte
	// ContentType is Content's resource type and ContentKey names its
	// version ("Observation/1/_history/2"), under which its patient is
	// remembered; "" remembers nothing.
	ContentType, ContentKey string
	// Bundle is a transaction or batch response, whose entries' locations
	// become the entities (off the request path).
	Bundle []byte
}

// Recorder takes accesses. Record must not block or fail: the trail is
// never a reason for a request to wait.
type Recorder interface {
	Record(Event)
}

// Off records nothing (--audit off).
type Off struct{}

// Record drops e.
func (Off) Record(Event) {}

type noteKey struct{}

// WithNote returns ctx carrying e, for layers below a protocol's audit
// wrapper (the token check in front of DICOMweb, the handlers themselves)
// to fill in who and what.
func WithNote(ctx context.Context, e *Event) context.Context {
	return context.WithValue(ctx, noteKey{}, e)
}

// Note returns the Event ctx carries, or nil outside an audited request:
// callers check for nil.
func Note(ctx context.Context) *Event {
	e, _ := ctx.Value(noteKey{}).(*Event)
	return e
}
