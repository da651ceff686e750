// Command idp is the zitadel/oidc v3 example OpenID provider
// (github.com/zitadel/oidc/v3/example/server) with one change: its service
// client "sid1" (secret "verysecret", client_credentials grant) gets JWT
// access tokens carrying the requested scopes and SMART claims, because the
// stock example issues only opaque access tokens. Used by the package tests.
//
// Environment: PORT (listen port; the issuer is http://localhost:PORT/).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/op"
)

type jwtStorage struct{ *storage.Storage }

// ClientCredentials marks the service client as one with JWT access tokens.
func (s jwtStorage) ClientCredentials(ctx context.Context, clientID, secret string) (op.Client, error) {
	c, err := s.Storage.ClientCredentials(ctx, clientID, secret)
	if err != nil {
		return nil, err
	}
	return jwtClient{c}, nil
}

// GetPrivateClaimsFromScopes adds the claims an organisation's provider
// would map for SMART: the scopes, and a fhirUser and patient.
func (s jwtStorage) GetPrivateClaimsFromScopes(ctx context.Context, userID, clientID string, scopes []string) (map[string]any, error) {
	claims, err := s.Storage.GetPrivateClaimsFromScopes(ctx, userID, clientID, scopes)
	if err != nil {
		return nil, err
	}
	if claims == nil {
		claims = map[string]any{}
	}
	claims["scope"] = strings.Join(scopes, " ")
	claims["scp"] = scopes
	claims["fhirUser"] = "Practitioner/" + userID
	claims["patient"] = "pat-123"
	return claims, nil
}

type jwtClient struct{ op.Client }

func (jwtClient) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "9998"
	}
	issuer := fmt.Sprintf("http://localhost:%s/", port)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	storage.RegisterClients(storage.WebClient("web", "secret"))
	st := jwtStorage{storage.NewStorage(storage.NewUserStore(issuer))}
	router := exampleop.SetupServer(issuer, st, logger, false)
	srv := &http.Server{Addr: "127.0.0.1:" + port, Handler: router}
	if err := srv.ListenAndServe(); err != nil {
		logger.Error("idp stopped", "error", err)
		os.Exit(1)
	}
}
