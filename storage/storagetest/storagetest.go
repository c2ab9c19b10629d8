// Package storagetest runs storage tests against every available database engine.
//
// SQLite is always available. PostgreSQL is used when LATTICE_TEST_POSTGRES holds a DSN
// (postgres://…) of a role that may create schemas; each test gets a fresh schema. When CI is set,
// PostgreSQL is required, and a missing LATTICE_TEST_POSTGRES fails the tests instead of quietly
// running them on SQLite only.
package storagetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/latticehq/lattice/storage"
)

// PostgresEnv is the environment variable holding the PostgreSQL DSN for tests.
const PostgresEnv = "LATTICE_TEST_POSTGRES"

// Engines lists the engines available in this environment.
func Engines() []storage.Engine {
	if os.Getenv(PostgresEnv) != "" || os.Getenv("CI") != "" {
		// Under CI PostgreSQL is listed even without a DSN, so that DSN fails loudly.
		return []storage.Engine{storage.EngineSQLite, storage.EnginePostgres}
	}
	return []storage.Engine{storage.EngineSQLite}
}

// Run runs fn as a subtest named after each available engine, with an opened, migrated, empty
// database that is closed when the subtest ends.
func Run(t *testing.T, fn func(t *testing.T, db *storage.DB)) {
	t.Helper()
	for _, engine := range Engines() {
		t.Run(string(engine), func(t *testing.T) {
			t.Helper()
			dsn := DSN(t, engine)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			db, err := storage.Open(ctx, dsn, storage.Options{})
			if err != nil {
				t.Fatalf("open %s database: %v", engine, err)
			}
			t.Cleanup(func() {
				if err := db.Close(); err != nil {
					t.Errorf("close %s database: %v", engine, err)
				}
			})
			fn(t, db)
		})
	}
}

// DSN returns the DSN of a fresh, empty database for engine, removed when the test ends.
func DSN(t testing.TB, engine storage.Engine) string {
	t.Helper()
	switch engine {
	case storage.EngineSQLite:
		return "sqlite://" + filepath.Join(t.TempDir(), "lattice.db")
	case storage.EnginePostgres:
		return postgresDSN(t)
	}
	t.Fatalf("storagetest: unknown engine %q", engine)
	return ""
}

// postgresDSN creates a schema with a random name and returns a DSN whose search_path selects it,
// so that tests (and servers started by end-to-end tests) run side by side on one database.
func postgresDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(PostgresEnv)
	if base == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("storagetest: CI is set but %s is empty; PostgreSQL tests must run in CI", PostgresEnv)
		}
		t.Skipf("storagetest: %s is not set", PostgresEnv)
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		// err is not printed: it would echo the DSN, password included.
		t.Fatalf("storagetest: %s must be a postgres:// URL", PostgresEnv)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	schema := "lattice_test_" + hex.EncodeToString(b[:])

	if err := adminExec(base, `CREATE SCHEMA "`+schema+`"`); err != nil {
		t.Fatalf("storagetest: create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		if err := adminExec(base, `DROP SCHEMA IF EXISTS "`+schema+`" CASCADE`); err != nil {
			t.Errorf("storagetest: drop schema %s: %v", schema, err)
		}
	})
	q := u.Query()
	q.Set("search_path", schema) // sent as a runtime parameter at connection start-up
	u.RawQuery = q.Encode()
	return u.String()
}

// adminExec runs one statement on its own short-lived connection, because the test's context may
// already be cancelled when cleanup runs.
func adminExec(dsn, stmt string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	return nil
}
