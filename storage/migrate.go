package storage

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Migration is one versioned schema step of a component; SQL is used on both engines unless the
// engine-specific field is set.
type Migration struct {
	Version  int    // 1 for the first step, then one more for each step
	Name     string // a short description, kept in the bookkeeping table
	SQL      string // statements for both engines
	SQLite   string // statements for SQLite only, replacing SQL there
	Postgres string // statements for PostgreSQL only, replacing SQL there
}

// sqlFor returns the statements of m for engine e.
func (m Migration) sqlFor(e Engine) string {
	switch {
	case e == EngineSQLite && m.SQLite != "":
		return m.SQLite
	case e == EnginePostgres && m.Postgres != "":
		return m.Postgres
	}
	return m.SQL
}

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS lattice_migrations (
	component  TEXT    NOT NULL,
	version    INTEGER NOT NULL,
	name       TEXT    NOT NULL,
	applied_at BIGINT  NOT NULL,
	PRIMARY KEY (component, version)
)`

// migrationLockClass is the first key of the PostgreSQL advisory lock that serialises migrations;
// the second is a hash of the current schema, so per-schema test databases don't wait on each other.
const migrationLockClass = 0x4C617474 // "Latt"

// Migrate applies the component's migrations that are not yet applied, in version order, each in a
// transaction together with its bookkeeping row.
//
// It is safe to run twice and from several processes at once. It refuses to run when the database
// holds a newer version of the component than ms knows, and when ms is not numbered 1..n.
func (db *DB) Migrate(ctx context.Context, component string, ms []Migration) error {
	if err := validateMigrations(component, ms); err != nil {
		return err
	}
	var current int
	err := db.WithTx(ctx, func(tx *Tx) error {
		// The lock comes first: concurrent CREATE TABLE IF NOT EXISTS can fail on PostgreSQL with
		// a unique violation in its catalog.
		if err := tx.lockMigrations(ctx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, createMigrationsTable); err != nil {
			return fmt.Errorf("create migrations table: %w", err)
		}
		var err error
		current, err = tx.migrationVersion(ctx, component, len(ms))
		return err
	})
	if err != nil {
		return fmt.Errorf("storage: migrate %s: %w", component, err)
	}
	for _, m := range ms[current:] {
		if err := db.WithTx(ctx, func(tx *Tx) error { return tx.applyMigration(ctx, component, m, len(ms)) }); err != nil {
			return fmt.Errorf("storage: migrate %s to version %d (%s): %w", component, m.Version, m.Name, err)
		}
	}
	return nil
}

// applyMigration applies m unless another process got there first while this one waited.
func (tx *Tx) applyMigration(ctx context.Context, component string, m Migration, known int) error {
	if err := tx.lockMigrations(ctx); err != nil {
		return err
	}
	current, err := tx.migrationVersion(ctx, component, known)
	if err != nil {
		return err
	}
	if current >= m.Version {
		return nil
	}
	if current != m.Version-1 {
		return fmt.Errorf("database is at version %d, expected %d", current, m.Version-1)
	}
	if _, err := tx.Exec(ctx, m.sqlFor(tx.Engine())); err != nil {
		return err
	}
	_, err = tx.Exec(ctx,
		`INSERT INTO lattice_migrations (component, version, name, applied_at) VALUES ($1, $2, $3, $4)`,
		component, m.Version, m.Name, time.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("record migration: %w", err)
	}
	return nil
}

// lockMigrations serialises migrations across processes until the transaction ends. SQLite needs
// nothing: the transaction already holds the database's write lock from its first statement.
func (tx *Tx) lockMigrations(ctx context.Context) error {
	if tx.Engine() != EnginePostgres {
		return nil
	}
	_, err := tx.Exec(ctx, fmt.Sprintf(
		`SELECT pg_advisory_xact_lock(%d, hashtext(coalesce(current_schema(), '')))`, migrationLockClass))
	if err != nil {
		return fmt.Errorf("take migration lock: %w", err)
	}
	return nil
}

// migrationVersion returns the component's applied version, refusing one newer than known.
func (tx *Tx) migrationVersion(ctx context.Context, component string, known int) (int, error) {
	var v int
	err := tx.QueryRow(ctx,
		`SELECT COALESCE(MAX(version), 0) FROM lattice_migrations WHERE component = $1`, component).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if v > known {
		return 0, fmt.Errorf("database has schema version %d but this binary knows only up to %d; run a newer Lattice", v, known)
	}
	return v, nil
}

func validateMigrations(component string, ms []Migration) error {
	if component == "" {
		return errors.New("storage: migrate: empty component name")
	}
	for i, m := range ms {
		if m.Version != i+1 {
			return fmt.Errorf("storage: migrate %s: migration %d has version %d; versions must run 1, 2, 3 … without gaps", component, i, m.Version)
		}
		if m.Name == "" {
			return fmt.Errorf("storage: migrate %s: migration %d has no name", component, m.Version)
		}
		if m.sqlFor(EngineSQLite) == "" || m.sqlFor(EnginePostgres) == "" {
			return fmt.Errorf("storage: migrate %s: migration %d lacks SQL for an engine", component, m.Version)
		}
	}
	return nil
}
