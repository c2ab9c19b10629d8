package roomstore

import (
	"context"
	"strings"

	"github.com/latticehq/lattice/storage"
)

// migrations create the roomserver's tables. One schema text serves both engines: {{ID}} and
// {{BYTES}} become each engine's auto-numbered key and byte-string type.
var migrations = dialects([]storage.Migration{{
	Version: 1,
	Name:    "state snapshots",
	// entries: varint-packed (state key, event) pairs; is_base 1 holds the whole state, 0 the
	// changes against parent_nid. base_size and since_base let the next write decide without a walk.
	SQL: `CREATE TABLE room_state_snapshots (
		snapshot_nid {{ID}},
		room_nid     BIGINT  NOT NULL,
		parent_nid   BIGINT  NOT NULL,
		base_nid     BIGINT  NOT NULL,
		is_base      INTEGER NOT NULL,
		base_size    BIGINT  NOT NULL,
		since_base   BIGINT  NOT NULL,
		entries      {{BYTES}}    NOT NULL
	)`,
}, {
	Version: 2,
	Name:    "auth chain index",
	// chain: the sorted, varint-delta-packed numeric IDs of every event in the auth chain.
	SQL: `CREATE TABLE room_auth_chains (
		event_nid BIGINT PRIMARY KEY,
		room_nid  BIGINT NOT NULL,
		chain     {{BYTES}}   NOT NULL
	)`,
}, {
	Version: 3,
	Name:    "rooms, state keys, events, forward extremities",
	// Numeric IDs keep snapshots and chains compact. json is the PDU as received or built;
	// state_before_nid 0 marks an outlier's unknown state; stream_pos 0 marks events never
	// output (outliers, rejected, soft-failed).
	SQL: `CREATE TABLE rooms (
		room_nid     {{ID}},
		room_id      TEXT    NOT NULL UNIQUE,
		room_version TEXT    NOT NULL,
		snapshot_nid BIGINT  NOT NULL
	);
	CREATE TABLE room_state_keys (
		state_key_nid {{ID}},
		event_type    TEXT    NOT NULL,
		state_key     TEXT    NOT NULL,
		UNIQUE (event_type, state_key)
	);
	CREATE TABLE room_events (
		event_nid        {{ID}},
		event_id         TEXT    NOT NULL UNIQUE,
		room_nid         BIGINT  NOT NULL,
		event_type       TEXT    NOT NULL,
		state_key        TEXT,
		depth            BIGINT  NOT NULL,
		origin_server_ts BIGINT  NOT NULL,
		json             TEXT    NOT NULL,
		state_before_nid BIGINT  NOT NULL,
		rejected         INTEGER NOT NULL,
		soft_failed      INTEGER NOT NULL,
		outlier          INTEGER NOT NULL,
		stream_pos       BIGINT  NOT NULL
	);
	CREATE INDEX room_events_stream ON room_events (stream_pos) WHERE stream_pos > 0;
	CREATE TABLE room_forward_extremities (
		room_nid  BIGINT NOT NULL,
		event_nid BIGINT NOT NULL,
		PRIMARY KEY (room_nid, event_nid)
	);`,
}, {
	Version: 4,
	Name:    "client transaction IDs",
	// A client's transaction ID names one event per device and room (client-server API,
	// "Transaction identifiers"), kept so that retries, even after a restart, are idempotent.
	SQL: `CREATE TABLE room_transactions (
		user_id   TEXT   NOT NULL,
		device_id TEXT   NOT NULL,
		room_nid  BIGINT NOT NULL,
		txn_id    TEXT   NOT NULL,
		event_nid BIGINT NOT NULL UNIQUE,
		PRIMARY KEY (user_id, device_id, room_nid, txn_id)
	)`,
}, {
	Version: 5,
	Name:    "aliases, room directory, local memberships, reports",
	// room_local_memberships: the current membership of this server's users, per room.
	SQL: `CREATE TABLE room_aliases (
		alias      TEXT NOT NULL PRIMARY KEY,
		room_id    TEXT NOT NULL,
		creator_id TEXT NOT NULL
	);
	CREATE INDEX room_aliases_room ON room_aliases (room_id);
	CREATE INDEX room_events_room_stream ON room_events (room_nid, stream_pos) WHERE stream_pos > 0;
	CREATE TABLE room_directory (
		room_id TEXT NOT NULL PRIMARY KEY
	);
	CREATE TABLE room_local_memberships (
		user_id    TEXT   NOT NULL,
		room_nid   BIGINT NOT NULL,
		membership TEXT   NOT NULL,
		event_nid  BIGINT NOT NULL,
		PRIMARY KEY (user_id, room_nid)
	);
	CREATE TABLE room_reports (
		report_nid {{ID}},
		room_id    TEXT   NOT NULL,
		event_id   TEXT   NOT NULL,
		user_id    TEXT   NOT NULL,
		reason     TEXT,
		score      BIGINT,
		received_ts BIGINT NOT NULL
	);`,
}})

// dialects turns each migration's schema text into its SQLite and PostgreSQL forms.
func dialects(ms []storage.Migration) []storage.Migration {
	for i, m := range ms {
		sqlite := strings.NewReplacer("{{ID}}", "INTEGER PRIMARY KEY AUTOINCREMENT", "{{BYTES}}", "BLOB")
		postgres := strings.NewReplacer("{{ID}}", "BIGSERIAL PRIMARY KEY", "{{BYTES}}", "BYTEA")
		ms[i].SQLite, ms[i].Postgres, ms[i].SQL = sqlite.Replace(m.SQL), postgres.Replace(m.SQL), ""
	}
	return ms
}

// Migrate creates or updates the roomserver's tables.
func Migrate(ctx context.Context, db *storage.DB) error {
	return db.Migrate(ctx, "roomstore", migrations)
}
