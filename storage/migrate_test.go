package storage_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

var testMigrations = []storage.Migration{
	{Version: 1, Name: "create notes", SQL: `CREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT NOT NULL)`},
	{Version: 2, Name: "engine marker",
		SQLite:   `CREATE TABLE marker (engine TEXT NOT NULL); INSERT INTO marker VALUES ('sqlite')`,
		Postgres: `CREATE TABLE marker (engine TEXT NOT NULL); INSERT INTO marker VALUES ('postgres')`},
	{Version: 3, Name: "seed note", SQL: `INSERT INTO notes (id, body) VALUES (1, 'first')`,
		SQLite: `INSERT INTO notes (id, body) VALUES (1, 'first')`},
}

// appliedVersions returns the bookkeeping rows of component in order.
func appliedVersions(t *testing.T, db *storage.DB, component string) []string {
	t.Helper()
	rows, err := db.Query(t.Context(),
		`SELECT version, name FROM lattice_migrations WHERE component = $1 ORDER BY version`, component)
	if err != nil {
		t.Fatalf("read bookkeeping: %v", err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var v int
		var name string
		if err := rows.Scan(&v, &name); err != nil {
			t.Fatal(err)
		}
		got = append(got, name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestMigrate(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := t.Context()
		// In two steps, then again: the second and third runs apply only what is missing.
		for _, n := range []int{1, 3, 3} {
			if err := db.Migrate(ctx, "notes", testMigrations[:n]); err != nil {
				t.Fatalf("Migrate to %d: %v", n, err)
			}
			if got := appliedVersions(t, db, "notes"); len(got) != n {
				t.Fatalf("after Migrate to %d: applied %q", n, got)
			}
		}
		if n := countRows(t, db, "notes"); n != 1 {
			t.Errorf("notes has %d rows, want 1 (the seed must run once)", n)
		}
		var engine string
		if err := db.QueryRow(ctx, `SELECT engine FROM marker`).Scan(&engine); err != nil || engine != string(db.Engine()) {
			t.Errorf("marker = %q (%v), want the %s-specific migration", engine, err, db.Engine())
		}
		if got := appliedVersions(t, db, "storage"); len(got) != 1 {
			t.Errorf("Open applied storage migrations %q, want 1", got)
		}

		// A binary that knows fewer versions than the database holds must refuse to run.
		err := db.Migrate(ctx, "notes", testMigrations[:2])
		if err == nil || !strings.Contains(err.Error(), "schema version 3") {
			t.Errorf("Migrate with an older binary: err = %v, want a refusal naming version 3", err)
		}
		if err := db.Migrate(ctx, "notes", nil); err == nil {
			t.Error("Migrate with no migrations over an applied component succeeded")
		}
	})
}

func TestMigrateFailureLeavesNothing(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := t.Context()
		ms := []storage.Migration{
			testMigrations[0],
			{Version: 2, Name: "half broken", SQL: `CREATE TABLE extra (x TEXT);
				INSERT INTO notes (id, body) VALUES (7, 'partial');
				INSERT INTO no_such_table VALUES (1)`},
			{Version: 3, Name: "never reached", SQL: `CREATE TABLE later (x TEXT)`},
		}
		err := db.Migrate(ctx, "broken", ms)
		if err == nil || !strings.Contains(err.Error(), "version 2 (half broken)") {
			t.Fatalf("Migrate: err = %v, want the failure of version 2", err)
		}
		if got := appliedVersions(t, db, "broken"); len(got) != 1 {
			t.Errorf("applied %q, want only version 1", got)
		}
		if n := countRows(t, db, "notes"); n != 0 {
			t.Errorf("notes has %d rows: the failed migration's insert survived", n)
		}
		for _, table := range []string{"extra", "later"} {
			var n int
			if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n); err == nil {
				t.Errorf("table %s exists after the failed migration", table)
			}
		}
	})
}

func TestMigrateRejectsBadSlices(t *testing.T) {
	m := func(v int) storage.Migration {
		return storage.Migration{Version: v, Name: "step", SQL: "CREATE TABLE t" + string(rune('0'+v)) + " (x TEXT)"}
	}
	tests := []struct {
		name, component string
		ms              []storage.Migration
		want            string
	}{
		{"starts at zero", "c", []storage.Migration{m(0), m(1)}, "without gaps"},
		{"starts at two", "c", []storage.Migration{m(2)}, "without gaps"},
		{"gap", "c", []storage.Migration{m(1), m(3)}, "without gaps"},
		{"duplicate", "c", []storage.Migration{m(1), m(1)}, "without gaps"},
		{"descending", "c", []storage.Migration{m(2), m(1)}, "without gaps"},
		{"no name", "c", []storage.Migration{{Version: 1, SQL: "SELECT 1"}}, "no name"},
		{"no SQL", "c", []storage.Migration{{Version: 1, Name: "empty"}}, "lacks SQL"},
		{"SQLite only", "c", []storage.Migration{{Version: 1, Name: "half", SQLite: "SELECT 1"}}, "lacks SQL"},
		{"no component", "", []storage.Migration{m(1)}, "empty component"},
	}
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		for _, tt := range tests {
			err := db.Migrate(t.Context(), tt.component, tt.ms)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s: err = %v, want one mentioning %q", tt.name, err, tt.want)
			}
			if got := appliedVersions(t, db, tt.component); len(got) != 0 {
				t.Errorf("%s: applied %q despite the error", tt.name, got)
			}
		}
	})
}

// TestMigrateConcurrent opens one fresh database from several goroutines at once, as several
// processes starting together would, and migrates it from each.
func TestMigrateConcurrent(t *testing.T) {
	for _, engine := range storagetest.Engines() {
		t.Run(string(engine), func(t *testing.T) {
			dsn := storagetest.DSN(t, engine)
			const n = 6
			dbs := make([]*storage.DB, n)
			errs := make([]error, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					<-start
					dbs[i], errs[i] = storage.Open(t.Context(), dsn, storage.Options{})
					if errs[i] == nil {
						errs[i] = dbs[i].Migrate(t.Context(), "notes", testMigrations)
					}
				})
			}
			close(start)
			wg.Wait()
			for i, db := range dbs {
				if errs[i] != nil {
					t.Errorf("goroutine %d: %v", i, errs[i])
				}
				if db != nil {
					t.Cleanup(func() { db.Close() })
				}
			}
			if t.Failed() {
				return
			}
			if got := appliedVersions(t, dbs[0], "notes"); len(got) != len(testMigrations) {
				t.Errorf("applied %q", got)
			}
			if got := countRows(t, dbs[0], "notes"); got != 1 {
				t.Errorf("notes has %d rows: a migration ran more than once", got)
			}
		})
	}
}
