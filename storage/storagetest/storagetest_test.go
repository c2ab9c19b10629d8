package storagetest_test

import (
	"database/sql"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

func TestEngines(t *testing.T) {
	tests := []struct {
		name, ci, pg string
		want         []storage.Engine
	}{
		{"local", "", "", []storage.Engine{storage.EngineSQLite}},
		{"local with postgres", "", "postgres://x/y", []storage.Engine{storage.EngineSQLite, storage.EnginePostgres}},
		{"CI requires postgres", "true", "", []storage.Engine{storage.EngineSQLite, storage.EnginePostgres}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			t.Setenv(storagetest.PostgresEnv, tt.pg)
			if got := storagetest.Engines(); !slices.Equal(got, tt.want) {
				t.Errorf("Engines() = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestRunIsolates checks that each call of Run gets an empty database of its own.
func TestRunIsolates(t *testing.T) {
	seen := map[storage.Engine]int{}
	for range 2 {
		storagetest.Run(t, func(t *testing.T, db *storage.DB) {
			seen[db.Engine()]++
			ctx := t.Context()
			err := db.WithTx(ctx, func(tx *storage.Tx) error {
				_, err := tx.Exec(ctx, `CREATE TABLE only_once (x TEXT)`)
				return err
			})
			if err != nil {
				t.Fatalf("create table in a fresh database: %v", err)
			}
		})
	}
	for _, e := range storagetest.Engines() {
		if seen[e] != 2 {
			t.Errorf("engine %s ran %d times, want 2", e, seen[e])
		}
	}
}

// TestPostgresSchemaDropped checks that the schema behind a PostgreSQL DSN is removed at cleanup.
func TestPostgresSchemaDropped(t *testing.T) {
	base := os.Getenv(storagetest.PostgresEnv)
	if base == "" {
		t.Skipf("%s is not set", storagetest.PostgresEnv)
	}
	var dsn string
	t.Run("use", func(t *testing.T) {
		dsn = storagetest.DSN(t, storage.EnginePostgres)
		db, err := storage.Open(t.Context(), dsn, storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var schema string
		if err := db.QueryRow(t.Context(), `SELECT current_schema()`).Scan(&schema); err != nil ||
			!strings.HasPrefix(schema, "lattice_test_") {
			t.Errorf("current_schema() = %q (%v), want the test schema", schema, err)
		}
	})
	_, rest, _ := strings.Cut(dsn, "search_path=")
	schema, _, _ := strings.Cut(rest, "&")
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var n int
	err = admin.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM pg_namespace WHERE nspname = $1`, schema).Scan(&n)
	if err != nil || n != 0 || schema == "" {
		t.Errorf("schema %q: %d left after cleanup (%v)", schema, n, err)
	}
}
