package server

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
)

// kindStatus is the one table from the engine's error kinds to HTTP
// statuses; REST answers and transaction/batch response entries both use it.
var kindStatus = [...]int{
	fhir.Internal:           http.StatusInternalServerError,
	fhir.BadRequest:         http.StatusBadRequest,
	fhir.Forbidden:          http.StatusForbidden,
	fhir.NotFound:           http.StatusNotFound,
	fhir.Conflict:           http.StatusConflict,
	fhir.Gone:               http.StatusGone,
	fhir.PreconditionFailed: http.StatusPreconditionFailed,
	fhir.Unprocessable:      http.StatusUnprocessableEntity,
	fhir.Unavailable:        http.StatusServiceUnavailable,
	fhir.UnsupportedFormat:  http.StatusUnsupportedMediaType,
}

// outcomeStatus is the status of a successful interaction's outcome.
var outcomeStatus = [...]int{
	engine.Created:   http.StatusCreated,
	engine.Updated:   http.StatusOK,
	engine.Found:     http.StatusOK,
	engine.Unchanged: http.StatusOK,
	engine.Deleted:   http.StatusNoContent,
}

func statusOfKind(k fhir.Kind) int {
	if int(k) < len(kindStatus) && kindStatus[k] != 0 {
		return kindStatus[k]
	}
	return http.StatusInternalServerError
}

// statusError is a failure only HTTP has (a method not allowed, an Accept
// or Content-Type it cannot serve, a body too large, a range outside a
// file): its status is given, not looked up.
type statusError struct {
	status int
	fe     *fhir.Error
}

func (e *statusError) Error() string { return e.fe.Error() }

// httpError returns a statusError with one error issue.
func httpError(status int, code, diagnostics string, expression ...string) error {
	return &statusError{status: status, fe: fhir.NewError(fhir.BadRequest, code, diagnostics, expression...)}
}

// asHTTPError maps err to its status and OperationOutcome. ok is false for
// server faults (a 500 that reveals no internals).
func asHTTPError(err error) (int, *fhir.Error, bool) {
	var se *statusError
	if errors.As(err, &se) {
		return se.status, se.fe, true
	}
	fe, ok := engine.AsError(err)
	return statusOfKind(fe.Kind), fe, ok
}

// entryStatus renders a transaction/batch entry's response.status and, for
// a failed entry, its OperationOutcome.
func entryStatus(e engine.EntryResponse) (string, []byte) {
	status := http.StatusOK
	var outcome []byte
	if e.Err != nil {
		var fe *fhir.Error
		status, fe, _ = asHTTPError(e.Err)
		outcome = fe.Outcome()
	} else if int(e.Result.Outcome) < len(outcomeStatus) && outcomeStatus[e.Result.Outcome] != 0 {
		status = outcomeStatus[e.Result.Outcome]
	}
	return strconv.Itoa(status) + " " + http.StatusText(status), outcome
}
