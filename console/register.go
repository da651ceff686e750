package console

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/emberfhir/ember/smart/authserver"
	"github.com/emberfhir/ember/store"
)

// RegisteredScopes are the console client's scopes. The authorization
// server grants a user their intersection with the role's ceiling, less
// what the user unticks on the consent page, so a receptionist's console
// reads no clinical results and a patient's reads only their own record.
var RegisteredScopes = []string{"openid", "fhirUser", "launch/patient", "offline_access", "user/*.cruds", "patient/*.cruds"}

// RequestScope is what the console asks for at sign-in: the registered
// scopes without launch/patient, so staff are not sent to the patient
// picker; a patient user's patient/ scopes are their own record all the
// same (the authorization server sets their patient context).
const RequestScope = "openid fhirUser offline_access user/*.cruds patient/*.cruds"

// RedirectURI is the console's OAuth redirect URI for the FHIR base fhirBase:
// <public root>/console/callback, the public root being the base without
// its /fhir, as for the authorization server's issuer.
func RedirectURI(fhirBase string) string {
	return publicRoot(fhirBase) + Prefix + "/callback"
}

// URL is where the console is served for the FHIR base fhirBase.
func URL(fhirBase string) string {
	return publicRoot(fhirBase) + Prefix + "/"
}

func publicRoot(fhirBase string) string {
	return strings.TrimSuffix(strings.TrimSuffix(fhirBase, "/"), "/fhir")
}

// Register makes sure the console's public client exists with the redirect
// URI of fhirBase, at every start of serve: it adds it the first time and
// replaces it when the public base changed (the old redirect URI leads
// nowhere, so its refresh tokens go with it). A client an operator changed
// otherwise keeps its scopes. It reports what it did ("added", "updated" or
// "" when nothing changed).
func Register(ctx context.Context, st *store.Store, fhirBase string) (string, error) {
	want := RedirectURI(fhirBase)
	c, err := authserver.GetClient(ctx, st, ClientID)
	switch {
	case errors.Is(err, authserver.ErrNotFound):
		err = authserver.AddClient(ctx, st, authserver.Client{ID: ClientID, Type: authserver.Public,
			RedirectURIs: []string{want}, Scopes: RegisteredScopes})
		if err != nil {
			return registeredMeanwhile(ctx, st, want, err)
		}
		return "added", nil
	case err != nil:
		return "", fmt.Errorf("console client: %w", err)
	case slices.Equal(c.RedirectURIs, []string{want}) && c.Type == authserver.Public:
		return "", nil
	}
	// No update in place exists: remove and add, keeping the scopes. Another
	// replica starting at the same time may do the same; either result is
	// the same client.
	scopes := c.Scopes
	if len(scopes) == 0 {
		scopes = RegisteredScopes
	}
	if err := authserver.RemoveClient(ctx, st, ClientID); err != nil && !errors.Is(err, authserver.ErrNotFound) {
		return "", fmt.Errorf("console client: %w", err)
	}
	err = authserver.AddClient(ctx, st, authserver.Client{ID: ClientID, Type: authserver.Public,
		RedirectURIs: []string{want}, Scopes: scopes})
	if err != nil {
		return registeredMeanwhile(ctx, st, want, err)
	}
	return "updated", nil
}

// registeredMeanwhile accepts an AddClient failure when another process
// registered the same client in the meantime.
func registeredMeanwhile(ctx context.Context, st *store.Store, want string, addErr error) (string, error) {
	c, err := authserver.GetClient(ctx, st, ClientID)
	if err == nil && slices.Equal(c.RedirectURIs, []string{want}) {
		return "", nil
	}
	return "", fmt.Errorf("console client: %w", addErr)
}
