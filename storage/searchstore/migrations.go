package searchstore

import (
	"context"

	"github.com/latticehq/lattice/storage"
)

// component names the search index's migrations in lattice_migrations.
const component = "searchstore"

// The tables every engine shares. search_events holds a header of every event of the output
// stream (the timeline that event context, history visibility and redactions need); only
// searchable ones carry text. search_spans holds the stretches of stream during which a local
// user was joined to or invited into a room, open ones ending at maxPos.
const commonTables = `
	CREATE TABLE search_cursor (
		name TEXT   NOT NULL PRIMARY KEY,
		pos  BIGINT NOT NULL
	);
	CREATE TABLE search_rooms (
		room_id      TEXT    NOT NULL PRIMARY KEY,
		visibility   TEXT    NOT NULL,
		join_rule    TEXT    NOT NULL,
		encrypted    INTEGER NOT NULL,
		create_event TEXT    NOT NULL,
		power_event  TEXT    NOT NULL
	);
	CREATE TABLE search_spans (
		user_id    TEXT   NOT NULL,
		room_id    TEXT   NOT NULL,
		membership TEXT   NOT NULL,
		start_pos  BIGINT NOT NULL,
		end_pos    BIGINT NOT NULL,
		PRIMARY KEY (user_id, room_id, start_pos)
	);
	CREATE TABLE search_redactions (
		target_id    TEXT    NOT NULL,
		redaction_id TEXT    NOT NULL,
		room_id      TEXT    NOT NULL,
		sender       TEXT    NOT NULL,
		powerful     INTEGER NOT NULL,
		PRIMARY KEY (target_id, redaction_id)
	);
	CREATE TABLE dir_members (
		room_id TEXT NOT NULL,
		user_id TEXT NOT NULL,
		PRIMARY KEY (room_id, user_id)
	);
	CREATE INDEX dir_members_user ON dir_members (user_id, room_id);
	CREATE TABLE dir_users (
		user_id      TEXT NOT NULL PRIMARY KEY,
		display_name TEXT NOT NULL,
		avatar_url   TEXT NOT NULL,
		name_key     TEXT NOT NULL,
		local_key    TEXT NOT NULL,
		local        INTEGER NOT NULL
	);
	CREATE INDEX dir_words_user ON dir_words (user_id);
	CREATE INDEX search_events_room ON search_events (room_id, pos);
	CREATE INDEX search_events_member ON search_events (room_id, state_key, pos) WHERE type = 'm.room.member';
`

// migrations create the search index's tables. SQLite keeps the text in an FTS4 table whose
// rowid is the event's stream position (FTS5 needs a build tag of go-sqlite3, FTS4 does not);
// PostgreSQL keeps a tsvector column with a GIN index. dir_words is compared byte-wise for
// prefix ranges, hence COLLATE "C" on PostgreSQL (SQLite compares bytes already).
var migrations = []storage.Migration{{
	Version: 1,
	Name:    "search index and user directory",
	SQLite: `
	CREATE TABLE search_events (
		pos        INTEGER PRIMARY KEY, -- the rowid, as in search_fts
		event_id   TEXT    NOT NULL UNIQUE,
		room_id    TEXT    NOT NULL,
		sender     TEXT    NOT NULL,
		type       TEXT    NOT NULL,
		state_key  TEXT,
		visibility TEXT    NOT NULL,
		redacted   INTEGER NOT NULL
	);
	CREATE VIRTUAL TABLE search_fts USING fts4(body, tokenize=unicode61 "remove_diacritics=2");
	CREATE TABLE dir_words (
		word    TEXT NOT NULL,
		user_id TEXT NOT NULL,
		PRIMARY KEY (word, user_id)
	);` + commonTables,
	Postgres: `
	CREATE TABLE search_events (
		pos        BIGINT  NOT NULL PRIMARY KEY,
		event_id   TEXT    NOT NULL UNIQUE,
		room_id    TEXT    NOT NULL,
		sender     TEXT    NOT NULL,
		type       TEXT    NOT NULL,
		state_key  TEXT,
		visibility TEXT    NOT NULL,
		redacted   INTEGER NOT NULL,
		tsv        TSVECTOR
	);
	CREATE INDEX search_events_tsv ON search_events USING GIN (tsv);
	CREATE TABLE dir_words (
		word    TEXT COLLATE "C" NOT NULL,
		user_id TEXT NOT NULL,
		PRIMARY KEY (word, user_id)
	);` + commonTables,
}}

// Migrate creates or updates the search index's tables.
func Migrate(ctx context.Context, db *storage.DB) error {
	return db.Migrate(ctx, component, migrations)
}
