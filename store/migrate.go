package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

func migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embedded directory is fixed at build time
	}
	return sub
}

// Migrate applies every pending schema migration to the database at databaseURL.
// A Postgres session advisory lock serialises concurrent callers, so several
// processes starting at once each end with a fully migrated schema.
func Migrate(ctx context.Context, databaseURL string) error {
	db, err := openSQL(databaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return fmt.Errorf("migrate: session locker: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations(), goose.WithSessionLocker(locker))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: apply: %w", err)
	}
	return nil
}

// schemaCurrent reports whether every embedded migration has been applied.
func schemaCurrent(ctx context.Context, databaseURL string) (bool, error) {
	db, err := openSQL(databaseURL)
	if err != nil {
		return false, err
	}
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations())
	if err != nil {
		return false, fmt.Errorf("migrate: %w", err)
	}
	pending, err := p.HasPending(ctx)
	if err != nil {
		return false, fmt.Errorf("migrate: check pending: %w", err)
	}
	return !pending, nil
}

func openSQL(databaseURL string) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	return stdlib.OpenDB(*cfg), nil
}
