package authserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/emberfhir/ember/audit"
	"github.com/emberfhir/ember/store"
	"github.com/emberfhir/ember/store/authdb"
)

// LaunchTTL is how long an EHR launch context can be used.
const LaunchTTL = time.Hour

// Launch is an EHR launch context: what the opaque launch parameter binds.
type Launch struct {
	ID        string
	ClientID  string
	Patient   string // id, without "Patient/"
	Encounter string // id, without "Encounter/"
	Username  string // when set, only this user may complete the launch
}

// CreateLaunch stores a launch context for l.ClientID in st and returns it
// with the app launch URL: the client's launch URI with iss (fhirBase) and
// launch.
func CreateLaunch(ctx context.Context, st *store.Store, fhirBase string, l Launch) (*Launch, string, error) {
	return createLaunch(ctx, authdb.New(st), fhirBase, l)
}

func createLaunch(ctx context.Context, db *authdb.DB, fhirBase string, l Launch) (*Launch, string, error) {
	c, err := getClient(ctx, db, l.ClientID)
	if err != nil {
		return nil, "", err
	}
	if c.LaunchURI == "" {
		return nil, "", fmt.Errorf("client %s has no launch URI (register one with --launch-uri)", c.ID)
	}
	l.Patient = strings.TrimPrefix(l.Patient, "Patient/")
	l.Encounter = strings.TrimPrefix(l.Encounter, "Encounter/")
	if l.Patient == "" {
		return nil, "", errors.New("a launch needs a patient")
	}
	if l.Username != "" {
		if _, err := getUser(ctx, db, l.Username); err != nil {
			return nil, "", err
		}
	}
	l.ID = randomToken(24)
	if err := db.AddLaunch(ctx, authdb.Launch{ID: l.ID, ClientID: l.ClientID, Patient: l.Patient, Encounter: l.Encounter,
		Username: l.Username, ExpiresAt: time.Now().Add(LaunchTTL)}); err != nil {
		return nil, "", fmt.Errorf("store launch: %w", err)
	}
	return &l, addQuery(c.LaunchURI, url.Values{"iss": {strings.TrimSuffix(fhirBase, "/")}, "launch": {l.ID}}), nil
}

func getLaunch(ctx context.Context, db *authdb.DB, id string) (*Launch, error) {
	r, err := db.Launch(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("launch: %w", err)
	}
	return &Launch{ID: r.ID, ClientID: r.ClientID, Patient: r.Patient, Encounter: r.Encounter, Username: r.Username}, nil
}

// launch is POST /auth/launch: an admin user (HTTP Basic) creates a launch
// context from the form fields client, patient, encounter and user, and gets
// {"launch": …, "url": …}.
func (s *Server) launch(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil {
		s.writeErr(w, err)
		return
	}
	name, pw, ok := r.BasicAuth()
	if !ok {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "HTTP Basic credentials of an admin user required")
		return
	}
	// Audited once answered: who created a launch for which patient, or
	// who tried.
	out, patient := audit.MinorFailure, ""
	defer func() { s.auditLaunch(r, name, patient, out) }()
	u, err := s.login(r, name, pw)
	if errors.Is(err, errLogin) {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "bad credentials")
		return
	} else if err != nil {
		s.writeErr(w, err)
		return
	}
	if u.Role != "admin" {
		oauthError(w, http.StatusForbidden, "access_denied", "only admin users create launches")
		return
	}
	f := r.PostForm
	p := strings.TrimPrefix(f.Get("patient"), "Patient/")
	if _, err := s.st.Read(r.Context(), "Patient", p); err != nil || p == "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "no such patient")
		return
	}
	l, launchURL, err := createLaunch(r.Context(), s.db, s.fhirBase, Launch{ClientID: f.Get("client"), Patient: p,
		Encounter: f.Get("encounter"), Username: f.Get("user")})
	if err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	out, patient = audit.Success, "Patient/"+p
	writeJSON(w, http.StatusCreated, map[string]string{"launch": l.ID, "url": launchURL}, true)
}
