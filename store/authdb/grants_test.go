package authdb_test

import (
	"context"
	"slices"
	"testing"

	"github.com/emberfhir/ember/store/authdb"
)

// TestClientGrants: a client's chosen grant types are stored and read back
// (by id and in the list); a client registered without any reads back none.
func TestClientGrants(t *testing.T) {
	ctx := context.Background()
	db, _ := open(t)
	svc := authdb.Client{ID: "svc", Type: "symmetric", SecretHash: "h", Scopes: []string{"system/*.rs"},
		Grants: []string{"client_credentials"}}
	if err := db.AddClient(ctx, svc); err != nil {
		t.Fatal(err)
	}
	got, err := db.Client(ctx, "svc")
	if err != nil || !slices.Equal(got.Grants, svc.Grants) || len(got.RedirectURIs) != 0 {
		t.Fatalf("svc: %+v %v", got, err)
	}
	app, err := db.Client(ctx, "app")
	if err != nil || len(app.Grants) != 0 {
		t.Fatalf("app: %+v %v", app, err)
	}
	all, err := db.Clients(ctx)
	if err != nil || len(all) != 2 || !slices.Equal(all[1].Grants, svc.Grants) {
		t.Fatalf("clients: %+v %v", all, err)
	}
}
