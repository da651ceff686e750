package engine

import (
	"context"
	"errors"
	"strings"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/store"
)

// AsError maps err to the FHIR error it stands for: a *fhir.Error as it
// is, the store's sentinel errors as their kinds. ok is false for server
// faults, which map to an Internal error that reveals no internals.
func AsError(err error) (fe *fhir.Error, ok bool) {
	switch {
	case errors.As(err, &fe):
		return fe, true
	case errors.Is(err, store.ErrVersionConflict):
		return fhir.NewError(fhir.PreconditionFailed, "conflict", "version conflict: the If-Match version is not the current version"), true
	case errors.Is(err, store.ErrExists):
		return fhir.NewError(fhir.Conflict, "duplicate", "a resource with that id exists already"), true
	case errors.Is(err, store.ErrNotFound):
		return fhir.Missing("the resource is not known"), true
	case errors.Is(err, store.ErrDeleted):
		return fhir.NewError(fhir.Gone, "deleted", "the resource was deleted"), true
	case errors.Is(err, store.ErrBadCursor):
		return fhir.NewError(fhir.BadRequest, "invalid", "the paging link is invalid or has expired: repeat the search"), true
	case errors.Is(err, errMultipleMatches):
		return fhir.NewError(fhir.PreconditionFailed, "multiple-matches", "the condition matches more than one resource"), true
	case errors.Is(err, context.DeadlineExceeded):
		return fhir.NewError(fhir.Unavailable, "timeout", "the request timed out"), true
	case store.IsUnavailable(err):
		return fhir.NewError(fhir.Unavailable, "transient", "the database is unavailable: try again shortly"), true
	case store.IsCanceled(err):
		return fhir.NewError(fhir.Unavailable, "timeout",
			"the request ran past the database statement timeout and was stopped: narrow the search (more selective parameters, fewer values) or ask the administrator about --statement-timeout"), true
	}
	return &fhir.Error{Kind: fhir.Internal, Issues: []fhir.Issue{{Severity: "fatal", Code: "exception", Diagnostics: "internal error"}}}, false
}

var errMultipleMatches = errors.New("multiple matches")

func quote(s string) string {
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return `"` + strings.ToValidUTF8(s, "\uFFFD") + `"`
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
