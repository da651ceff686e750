package authserver

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/emberfhir/ember/fhir"
)

// maxFormBytes bounds the form body of every endpoint: OAuth requests,
// client assertions and the sign-in pages are a few KiB at most.
const maxFormBytes = 64 << 10

// maxUsername bounds a username (AddUser refuses longer ones, so a login
// with one is refused without hashing).
const maxUsername = 256

// parseForm is how every handler reads its input: the query and a form body
// of at most maxFormBytes into r.Form and r.PostForm, and the HTTP Basic
// credentials. Names and values must be text: a NUL byte or invalid UTF-8
// is no OAuth parameter, username or search, and PostgreSQL refuses to
// compare them (SQLSTATE 22021). The error is an invalid_request *oauthErr
// (413 for an oversized body, else 400) that pages show as an error page.
func parseForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &oauthErr{http.StatusRequestEntityTooLarge, "invalid_request", "the form is larger than 64 KiB", 0}
		}
		return badRequest("invalid_request", "malformed request")
	}
	if !textValues(r.Form) {
		return badRequest("invalid_request", "a parameter holds a NUL byte or is not UTF-8")
	}
	if id, secret, ok := r.BasicAuth(); ok && (!fhir.StorableText(id) || !fhir.StorableText(secret)) {
		return badRequest("invalid_request", "the HTTP Basic credentials hold a NUL byte or are not UTF-8")
	}
	return nil
}

// textValues reports whether every name and value is storable text.
func textValues(v url.Values) bool {
	for k, vs := range v {
		if !fhir.StorableText(k) {
			return false
		}
		for _, s := range vs {
			if !fhir.StorableText(s) {
				return false
			}
		}
	}
	return true
}

// formError shows a parseForm error as an error page.
func (s *Server) formError(w http.ResponseWriter, err error) {
	var oe *oauthErr
	if errors.As(err, &oe) {
		s.errorPage(w, oe.status, oe.msg)
		return
	}
	s.errorPage(w, http.StatusBadRequest, "malformed request")
}
