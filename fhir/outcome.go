package fhir

import (
	"encoding/json"
	"net/http"
	"strings"
)

// Issue is one OperationOutcome.issue.
type Issue struct {
	Severity    string   `json:"severity"` // fatal | error | warning | information
	Code        string   `json:"code"`     // IssueType code, e.g. invalid, structure, not-found
	Diagnostics string   `json:"diagnostics,omitempty"`
	Expression  []string `json:"expression,omitempty"`
}

// Error is a failure that maps to an HTTP status and an OperationOutcome.
type Error struct {
	Status int
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

// NewError returns an Error with one issue of severity error.
func NewError(status int, code, diagnostics string, expression ...string) *Error {
	return &Error{Status: status, Issues: []Issue{{Severity: "error", Code: code, Diagnostics: diagnostics, Expression: expression}}}
}

// NotFound is the error for a resource or version that does not exist.
func NotFound(diagnostics string) *Error {
	return NewError(http.StatusNotFound, "not-found", diagnostics)
}

// Invalid is the error for a syntactically fine but invalid request (400).
func Invalid(diagnostics string, expression ...string) *Error {
	return NewError(http.StatusBadRequest, "invalid", diagnostics, expression...)
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
