package fhir

import (
	"encoding/json"
	"strconv"
	"strings"
)

// Issue is one OperationOutcome.issue.
type Issue struct {
	Severity    string   `json:"severity"` // fatal | error | warning | information
	Code        string   `json:"code"`     // IssueType code, e.g. invalid, structure, not-found
	Diagnostics string   `json:"diagnostics,omitempty"`
	Expression  []string `json:"expression,omitempty"`
}

// Kind is what a failure means for the request, independent of the protocol
// that reports it: the HTTP layer maps each kind to one status (server's
// table), a transaction entry reports it the same way.
type Kind uint8

// The kinds of failure. The zero Kind is Internal: an Error built without
// one is a server fault, never mistaken for the client's.
const (
	// Internal: a fault of the server (500).
	Internal Kind = iota
	// BadRequest: the request is malformed, invalid or asks for what is
	// not supported (400); the issue code says which.
	BadRequest
	// Forbidden: the grant does not permit it (403).
	Forbidden
	// NotFound: the resource, version or endpoint does not exist (404).
	NotFound
	// Conflict: the request clashes with what is stored, e.g. a duplicate
	// id (409).
	Conflict
	// Gone: the resource was deleted (410).
	Gone
	// PreconditionFailed: an If-Match or a condition does not hold (412).
	PreconditionFailed
	// Unprocessable: well-formed, but its content is not a valid resource
	// or its outcome would not be (422).
	Unprocessable
	// Unavailable: the server could not finish in time (503).
	Unavailable
	// UnsupportedFormat: the content is in a format Ember does not take,
	// e.g. a patch of an unknown media type (415).
	UnsupportedFormat
)

var kindNames = [...]string{"internal", "bad-request", "forbidden", "not-found", "conflict", "gone", "precondition-failed", "unprocessable", "unavailable", "unsupported-format"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Error is a failure with the OperationOutcome that describes it.
type Error struct {
	Kind   Kind
	Issues []Issue
}

func (e *Error) Error() string {
	var b strings.Builder
	for i, is := range e.Issues {
		if i > 0 {
			b.WriteString("; ")
		}
		// Diagnostics that already start with the location (a transaction
		// entry's, say) are not prefixed with it twice.
		if expr := strings.Join(is.Expression, ","); expr != "" && !strings.HasPrefix(is.Diagnostics, expr+": ") {
			b.WriteString(expr)
			b.WriteString(": ")
		}
		b.WriteString(is.Diagnostics)
	}
	return b.String()
}

// Errorf-style constructors for the common cases.

// NewError returns an Error of kind with one issue of severity error.
func NewError(kind Kind, code, diagnostics string, expression ...string) *Error {
	return &Error{Kind: kind, Issues: []Issue{{Severity: "error", Code: code, Diagnostics: diagnostics, Expression: expression}}}
}

// Missing is the error for a resource or version that does not exist.
func Missing(diagnostics string) *Error {
	return NewError(NotFound, "not-found", diagnostics)
}

// Invalid is the error for a syntactically fine but invalid request.
func Invalid(diagnostics string, expression ...string) *Error {
	return NewError(BadRequest, "invalid", diagnostics, expression...)
}

type outcome struct {
	ResourceType string  `json:"resourceType"`
	Issue        []Issue `json:"issue"`
}

// Outcome serialises an OperationOutcome holding issues.
func Outcome(issues ...Issue) []byte {
	b, _ := json.Marshal(outcome{ResourceType: "OperationOutcome", Issue: issues}) // plain strings only: cannot fail
	return b
}

// Outcome serialises the error as an OperationOutcome.
func (e *Error) Outcome() []byte { return Outcome(e.Issues...) }

// Information returns an OperationOutcome with one informational issue, used
// for Prefer: return=OperationOutcome and successful deletes.
func Information(diagnostics string) []byte {
	return Outcome(Issue{Severity: "information", Code: "informational", Diagnostics: diagnostics})
}
