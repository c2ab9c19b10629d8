package roomstore

import (
	"context"

	"github.com/latticehq/lattice/storage"
)

// migrations create the roomserver's tables.
var migrations = []storage.Migration{{
	Version: 1,
	Name:    "state snapshots",
	// entries: varint-packed (state key, event) pairs; is_base 1 holds the whole state, 0 the
	// changes against parent_nid. base_size and since_base let the next write decide without a walk.
	SQLite: `CREATE TABLE room_state_snapshots (
		snapshot_nid INTEGER PRIMARY KEY AUTOINCREMENT,
		room_nid     BIGINT  NOT NULL,
		parent_nid   BIGINT  NOT NULL,
		base_nid     BIGINT  NOT NULL,
		is_base      INTEGER NOT NULL,
		base_size    BIGINT  NOT NULL,
		since_base   BIGINT  NOT NULL,
		entries      BLOB    NOT NULL
	)`,
	Postgres: `CREATE TABLE room_state_snapshots (
		snapshot_nid BIGSERIAL PRIMARY KEY,
		room_nid     BIGINT  NOT NULL,
		parent_nid   BIGINT  NOT NULL,
		base_nid     BIGINT  NOT NULL,
		is_base      INTEGER NOT NULL,
		base_size    BIGINT  NOT NULL,
		since_base   BIGINT  NOT NULL,
		entries      BYTEA   NOT NULL
	)`,
}, {
	Version: 2,
	Name:    "auth chain index",
	// chain: the sorted, varint-delta-packed numeric IDs of every event in the auth chain.
	SQLite: `CREATE TABLE room_auth_chains (
		event_nid BIGINT PRIMARY KEY,
		room_nid  BIGINT NOT NULL,
		chain     BLOB   NOT NULL
	)`,
	Postgres: `CREATE TABLE room_auth_chains (
		event_nid BIGINT PRIMARY KEY,
		room_nid  BIGINT NOT NULL,
		chain     BYTEA  NOT NULL
	)`,
}}

// Migrate creates or updates the roomserver's tables.
func Migrate(ctx context.Context, db *storage.DB) error {
	return db.Migrate(ctx, "roomstore", migrations)
}
