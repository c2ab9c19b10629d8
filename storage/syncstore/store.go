// Package syncstore is the sync component's storage: its copy of the rooms' timelines in the
// form clients read them, the membership history that decides what each user may see, and its
// cursor on the roomserver's output stream. All of it can be rebuilt from that stream.
package syncstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/latticehq/lattice/storage"
)

var migrations = []storage.Migration{{
	Version: 1,
	Name:    "timeline, memberships, cursor",
	// json: the event in the client format without unsigned, redacted in place when a
	// redaction applies (redacted_because then holds the redaction). visibility: the room's
	// history visibility in effect for the event. rel_*: its m.relates_to.
	SQL: `CREATE TABLE sync_cursor (
		name TEXT   NOT NULL PRIMARY KEY,
		pos  BIGINT NOT NULL
	);
	CREATE TABLE sync_events (
		pos              BIGINT  NOT NULL PRIMARY KEY,
		room_id          TEXT    NOT NULL,
		event_id         TEXT    NOT NULL UNIQUE,
		event_type       TEXT    NOT NULL,
		state_key        TEXT,
		sender           TEXT    NOT NULL,
		depth            BIGINT  NOT NULL,
		origin_server_ts BIGINT  NOT NULL,
		visibility       TEXT    NOT NULL,
		contains_url     INTEGER NOT NULL,
		json             TEXT    NOT NULL,
		redacted_because TEXT,
		txn_device       TEXT,
		txn_id           TEXT,
		rel_type         TEXT,
		rel_target       TEXT
	);
	CREATE INDEX sync_events_topo ON sync_events (room_id, depth, pos);
	CREATE INDEX sync_events_state ON sync_events (room_id, event_type, pos) WHERE state_key IS NOT NULL;
	CREATE INDEX sync_events_rel ON sync_events (rel_target, pos) WHERE rel_target IS NOT NULL;
	CREATE TABLE sync_memberships (
		room_id    TEXT   NOT NULL,
		user_id    TEXT   NOT NULL,
		pos        BIGINT NOT NULL,
		membership TEXT   NOT NULL,
		PRIMARY KEY (room_id, user_id, pos)
	);
	CREATE INDEX sync_memberships_user ON sync_memberships (user_id, pos);
	CREATE TABLE sync_forgotten (
		user_id TEXT NOT NULL,
		room_id TEXT NOT NULL,
		PRIMARY KEY (user_id, room_id)
	);`,
}, {
	Version: 2,
	Name:    "timeline by stream position",
	SQL:     `CREATE INDEX sync_events_room_pos ON sync_events (room_id, pos)`,
}}

// Store is the sync component's storage on one database.
type Store struct{ db *storage.DB }

// Open migrates the sync tables and returns the store.
func Open(ctx context.Context, db *storage.DB) (*Store, error) {
	if err := db.Migrate(ctx, "syncstore", migrations); err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// DB is the database the store is on.
func (s *Store) DB() *storage.DB { return s.db }

// Event is one timeline event as stored for clients.
type Event struct {
	Pos             int64
	RoomID          string
	EventID         string
	Type            string
	StateKey        *string
	Sender          string
	Depth           int64
	OriginServerTS  int64
	Visibility      string
	ContainsURL     bool
	JSON            []byte
	RedactedBecause []byte // nil unless redacted
	TxnDevice       string
	TxnID           string
	RelType         string
	RelTarget       string
}

// Cursor returns a consumer's position, 0 if it never ran.
func (s *Store) Cursor(ctx context.Context, q storage.Querier, name string) (int64, error) {
	var pos int64
	err := q.QueryRow(ctx, `SELECT pos FROM sync_cursor WHERE name = $1`, name).Scan(&pos)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read cursor %s: %w", name, err)
	}
	return pos, nil
}

// SetCursor moves a consumer's position.
func (s *Store) SetCursor(ctx context.Context, tx *storage.Tx, name string, pos int64) error {
	_, err := tx.Exec(ctx, `INSERT INTO sync_cursor (name, pos) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET pos = excluded.pos`, name, pos)
	if err != nil {
		return fmt.Errorf("move cursor %s: %w", name, err)
	}
	return nil
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// InsertEvent stores a timeline event; one already stored is left as it is.
func (s *Store) InsertEvent(ctx context.Context, tx *storage.Tx, e *Event) error {
	_, err := tx.Exec(ctx, `INSERT INTO sync_events (pos, room_id, event_id, event_type, state_key, sender, depth, origin_server_ts,
			visibility, contains_url, json, redacted_because, txn_device, txn_id, rel_type, rel_target)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT DO NOTHING`,
		e.Pos, e.RoomID, e.EventID, e.Type, e.StateKey, e.Sender, e.Depth, e.OriginServerTS, e.Visibility, b2i(e.ContainsURL),
		string(e.JSON), nullBytes(e.RedactedBecause), nullable(e.TxnDevice), nullable(e.TxnID), nullable(e.RelType), nullable(e.RelTarget))
	if err != nil {
		return fmt.Errorf("store timeline event %s: %w", e.EventID, err)
	}
	return nil
}

func nullBytes(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Redact replaces a stored event's JSON with its redacted form.
func (s *Store) Redact(ctx context.Context, tx *storage.Tx, eventID string, redacted, because []byte) error {
	_, err := tx.Exec(ctx, `UPDATE sync_events SET json = $1, redacted_because = $2 WHERE event_id = $3`, string(redacted), string(because), eventID)
	if err != nil {
		return fmt.Errorf("redact %s: %w", eventID, err)
	}
	return nil
}

// AddMembership records a user's membership of a room from a position on.
func (s *Store) AddMembership(ctx context.Context, tx *storage.Tx, roomID, userID string, pos int64, membership string) error {
	_, err := tx.Exec(ctx, `INSERT INTO sync_memberships (room_id, user_id, pos, membership) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
		roomID, userID, pos, membership)
	if err != nil {
		return fmt.Errorf("record membership of %s: %w", userID, err)
	}
	return nil
}

// Membership is a user's membership of a room from Pos on.
type Membership struct {
	Pos        int64
	Membership string
}

// Memberships returns a user's membership history in a room, oldest first.
func (s *Store) Memberships(ctx context.Context, q storage.Querier, roomID, userID string) ([]Membership, error) {
	rows, err := q.Query(ctx, `SELECT pos, membership FROM sync_memberships WHERE room_id = $1 AND user_id = $2 ORDER BY pos`, roomID, userID)
	if err != nil {
		return nil, fmt.Errorf("membership history of %s: %w", userID, err)
	}
	defer rows.Close()
	var out []Membership
	for rows.Next() {
		var m Membership
		if err := rows.Scan(&m.Pos, &m.Membership); err != nil {
			return nil, fmt.Errorf("membership history of %s: %w", userID, err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

const eventColumns = `pos, room_id, event_id, event_type, state_key, sender, depth, origin_server_ts, visibility, contains_url,
	json, redacted_because, txn_device, txn_id, rel_type, rel_target`

func scanEvents(rows *sql.Rows) ([]*Event, error) {
	defer rows.Close()
	var out []*Event
	for rows.Next() {
		e := &Event{}
		var stateKey, because, dev, txn, relType, relTarget sql.NullString
		var url int
		var js string
		if err := rows.Scan(&e.Pos, &e.RoomID, &e.EventID, &e.Type, &stateKey, &e.Sender, &e.Depth, &e.OriginServerTS, &e.Visibility,
			&url, &js, &because, &dev, &txn, &relType, &relTarget); err != nil {
			return nil, err
		}
		if stateKey.Valid {
			e.StateKey = &stateKey.String
		}
		if because.Valid {
			e.RedactedBecause = []byte(because.String)
		}
		e.ContainsURL, e.JSON = url == 1, []byte(js)
		e.TxnDevice, e.TxnID, e.RelType, e.RelTarget = dev.String, txn.String, relType.String, relTarget.String
		out = append(out, e)
	}
	return out, rows.Err()
}

// EventByID returns a stored event, nil if unknown.
func (s *Store) EventByID(ctx context.Context, q storage.Querier, eventID string) (*Event, error) {
	rows, err := q.Query(ctx, `SELECT `+eventColumns+` FROM sync_events WHERE event_id = $1`, eventID)
	if err != nil {
		return nil, fmt.Errorf("load event %s: %w", eventID, err)
	}
	evs, err := scanEvents(rows)
	if err != nil || len(evs) == 0 {
		return nil, err
	}
	return evs[0], nil
}

// Point is a place in a room's topological order: between events, just after the event
// with (Depth, Pos).
type Point struct{ Depth, Pos int64 }

// Range returns up to limit events of a room after from (forwards) or at and before it
// (backwards), in that direction's order.
func (s *Store) Range(ctx context.Context, q storage.Querier, roomID string, from Point, backwards bool, limit int) ([]*Event, error) {
	var query string
	if backwards {
		query = `SELECT ` + eventColumns + ` FROM sync_events WHERE room_id = $1 AND (depth < $2 OR (depth = $2 AND pos <= $3))
			ORDER BY depth DESC, pos DESC LIMIT $4`
	} else {
		query = `SELECT ` + eventColumns + ` FROM sync_events WHERE room_id = $1 AND (depth > $2 OR (depth = $2 AND pos > $3))
			ORDER BY depth, pos LIMIT $4`
	}
	rows, err := q.Query(ctx, query, roomID, from.Depth, from.Pos, limit)
	if err != nil {
		return nil, fmt.Errorf("page through %s: %w", roomID, err)
	}
	evs, err := scanEvents(rows)
	if err != nil {
		return nil, fmt.Errorf("page through %s: %w", roomID, err)
	}
	return evs, nil
}

// LastPointAt returns the point just after the room's last event at or before stream position
// pos; ok is false if the room had none.
func (s *Store) LastPointAt(ctx context.Context, q storage.Querier, roomID string, pos int64) (Point, bool, error) {
	var p Point
	err := q.QueryRow(ctx, `SELECT depth, pos FROM sync_events WHERE room_id = $1 AND pos <= $2 ORDER BY pos DESC LIMIT 1`, roomID, pos).Scan(&p.Depth, &p.Pos)
	if errors.Is(err, sql.ErrNoRows) {
		return Point{}, false, nil
	}
	if err != nil {
		return Point{}, false, fmt.Errorf("position in %s: %w", roomID, err)
	}
	return p, true, nil
}

// LatestState returns the content JSON of the room's latest state event of a type with an
// empty state key, at or before position pos; nil if none.
func (s *Store) LatestState(ctx context.Context, q storage.Querier, roomID, typ string, pos int64) ([]byte, error) {
	var js string
	err := q.QueryRow(ctx, `SELECT json FROM sync_events WHERE room_id = $1 AND event_type = $2 AND state_key = '' AND pos <= $3
		ORDER BY pos DESC LIMIT 1`, roomID, typ, pos).Scan(&js)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("latest %s of %s: %w", typ, roomID, err)
	}
	return []byte(js), nil
}

// Forget marks a room forgotten by a user; Forgotten tells.
func (s *Store) Forget(ctx context.Context, tx *storage.Tx, userID, roomID string) error {
	_, err := tx.Exec(ctx, `INSERT INTO sync_forgotten (user_id, room_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, userID, roomID)
	if err != nil {
		return fmt.Errorf("forget %s: %w", roomID, err)
	}
	return nil
}

// Unforget clears a forgotten mark, when the user joins the room again.
func (s *Store) Unforget(ctx context.Context, tx *storage.Tx, userID, roomID string) error {
	_, err := tx.Exec(ctx, `DELETE FROM sync_forgotten WHERE user_id = $1 AND room_id = $2`, userID, roomID)
	if err != nil {
		return fmt.Errorf("unforget %s: %w", roomID, err)
	}
	return nil
}

// Forgotten reports whether a user forgot a room.
func (s *Store) Forgotten(ctx context.Context, q storage.Querier, userID, roomID string) (bool, error) {
	var n int
	if err := q.QueryRow(ctx, `SELECT COUNT(*) FROM sync_forgotten WHERE user_id = $1 AND room_id = $2`, userID, roomID).Scan(&n); err != nil {
		return false, fmt.Errorf("forgotten %s: %w", roomID, err)
	}
	return n > 0, nil
}

// Relations returns the events that relate to target, oldest first, optionally of one rel_type.
func (s *Store) Relations(ctx context.Context, q storage.Querier, target, relType string) ([]*Event, error) {
	query := `SELECT ` + eventColumns + ` FROM sync_events WHERE rel_target = $1`
	args := []any{target}
	if relType != "" {
		query += ` AND rel_type = $2`
		args = append(args, relType)
	}
	rows, err := q.Query(ctx, query+` ORDER BY pos`, args...)
	if err != nil {
		return nil, fmt.Errorf("relations of %s: %w", target, err)
	}
	return scanEvents(rows)
}

// RelationsOf returns the events relating to any of targets, oldest first.
func (s *Store) RelationsOf(ctx context.Context, q storage.Querier, targets []string) ([]*Event, error) {
	if len(targets) == 0 {
		return nil, nil
	}
	var b strings.Builder
	args := make([]any, len(targets))
	for i, t := range targets {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("$" + strconv.Itoa(i+1))
		args[i] = t
	}
	rows, err := q.Query(ctx, `SELECT `+eventColumns+` FROM sync_events WHERE rel_target IN (`+b.String()+`) ORDER BY pos`, args...)
	if err != nil {
		return nil, fmt.Errorf("relations: %w", err)
	}
	return scanEvents(rows)
}

// ThreadRoot is a thread of a room and the position of its latest reply.
type ThreadRoot struct {
	EventID string
	Latest  int64
}

// ThreadRoots returns the room's threads whose latest reply is before position before, most
// recently active first.
func (s *Store) ThreadRoots(ctx context.Context, q storage.Querier, roomID string, before int64, limit int) ([]ThreadRoot, error) {
	rows, err := q.Query(ctx, `SELECT rel_target, MAX(pos) AS latest FROM sync_events WHERE room_id = $1 AND rel_type = 'm.thread'
		GROUP BY rel_target HAVING MAX(pos) < $2 ORDER BY latest DESC LIMIT $3`, roomID, before, limit)
	if err != nil {
		return nil, fmt.Errorf("threads of %s: %w", roomID, err)
	}
	defer rows.Close()
	var out []ThreadRoot
	for rows.Next() {
		var t ThreadRoot
		if err := rows.Scan(&t.EventID, &t.Latest); err != nil {
			return nil, fmt.Errorf("threads of %s: %w", roomID, err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// ClosestByTS returns the room's first event at or after ts (forwards) or last at or before it,
// skipping the first skip matches; nil if none.
func (s *Store) ClosestByTS(ctx context.Context, q storage.Querier, roomID string, ts int64, forwards bool, skip int) (*Event, error) {
	query := `SELECT ` + eventColumns + ` FROM sync_events WHERE room_id = $1 AND origin_server_ts <= $2 ORDER BY origin_server_ts DESC, pos DESC LIMIT 1 OFFSET $3`
	if forwards {
		query = `SELECT ` + eventColumns + ` FROM sync_events WHERE room_id = $1 AND origin_server_ts >= $2 ORDER BY origin_server_ts, pos LIMIT 1 OFFSET $3`
	}
	rows, err := q.Query(ctx, query, roomID, ts, skip)
	if err != nil {
		return nil, fmt.Errorf("event by time in %s: %w", roomID, err)
	}
	evs, err := scanEvents(rows)
	if err != nil || len(evs) == 0 {
		return nil, err
	}
	return evs[0], nil
}

// EventsBetween returns up to limit events of every room with positions in (from, to], in
// stream order; more reports whether the limit cut it short.
func (s *Store) EventsBetween(ctx context.Context, q storage.Querier, from, to int64, limit int) (evs []*Event, more bool, err error) {
	rows, err := q.Query(ctx, `SELECT `+eventColumns+` FROM sync_events WHERE pos > $1 AND pos <= $2 ORDER BY pos LIMIT $3`, from, to, limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("events between %d and %d: %w", from, to, err)
	}
	if evs, err = scanEvents(rows); err != nil {
		return nil, false, fmt.Errorf("events between %d and %d: %w", from, to, err)
	}
	if len(evs) > limit {
		return evs[:limit], true, nil
	}
	return evs, false, nil
}

// LatestInRoom returns the room's last limit events with positions in (from, to], in stream
// order.
func (s *Store) LatestInRoom(ctx context.Context, q storage.Querier, roomID string, from, to int64, limit int) ([]*Event, error) {
	rows, err := q.Query(ctx, `SELECT `+eventColumns+` FROM sync_events WHERE room_id = $1 AND pos > $2 AND pos <= $3
		ORDER BY pos DESC LIMIT $4`, roomID, from, to, limit)
	if err != nil {
		return nil, fmt.Errorf("latest events of %s: %w", roomID, err)
	}
	evs, err := scanEvents(rows)
	if err != nil {
		return nil, fmt.Errorf("latest events of %s: %w", roomID, err)
	}
	slices.Reverse(evs)
	return evs, nil
}

// UserMemberships returns a user's membership history in every room, oldest first per room.
func (s *Store) UserMemberships(ctx context.Context, q storage.Querier, userID string) (map[string][]Membership, error) {
	rows, err := q.Query(ctx, `SELECT room_id, pos, membership FROM sync_memberships WHERE user_id = $1 ORDER BY pos`, userID)
	if err != nil {
		return nil, fmt.Errorf("memberships of %s: %w", userID, err)
	}
	defer rows.Close()
	out := map[string][]Membership{}
	for rows.Next() {
		var room string
		var m Membership
		if err := rows.Scan(&room, &m.Pos, &m.Membership); err != nil {
			return nil, fmt.Errorf("memberships of %s: %w", userID, err)
		}
		out[room] = append(out[room], m)
	}
	return out, rows.Err()
}

// ForgottenRooms returns the rooms a user has forgotten.
func (s *Store) ForgottenRooms(ctx context.Context, q storage.Querier, userID string) (map[string]bool, error) {
	rows, err := q.Query(ctx, `SELECT room_id FROM sync_forgotten WHERE user_id = $1`, userID)
	if err != nil {
		return nil, fmt.Errorf("forgotten rooms of %s: %w", userID, err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			return nil, fmt.Errorf("forgotten rooms of %s: %w", userID, err)
		}
		out[r] = true
	}
	return out, rows.Err()
}

// RoomMembers returns every user's membership of a room as of position pos (their latest
// membership recorded at or before it).
func (s *Store) RoomMembers(ctx context.Context, q storage.Querier, roomID string, pos int64) (map[string]string, error) {
	rows, err := q.Query(ctx, `SELECT m.user_id, m.membership FROM sync_memberships m
		WHERE m.room_id = $1 AND m.pos = (SELECT MAX(l.pos) FROM sync_memberships l
			WHERE l.room_id = $1 AND l.user_id = m.user_id AND l.pos <= $2)`, roomID, pos)
	if err != nil {
		return nil, fmt.Errorf("members of %s: %w", roomID, err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var user, m string
		if err := rows.Scan(&user, &m); err != nil {
			return nil, fmt.Errorf("members of %s: %w", roomID, err)
		}
		out[user] = m
	}
	return out, rows.Err()
}

// MembersAmong returns those of users who have had any membership of any of rooms.
func (s *Store) MembersAmong(ctx context.Context, q storage.Querier, rooms, users []string) ([]string, error) {
	if len(rooms) == 0 || len(users) == 0 {
		return nil, nil
	}
	rj, err := json.Marshal(rooms)
	if err != nil {
		return nil, err
	}
	uj, err := json.Marshal(users)
	if err != nil {
		return nil, err
	}
	list := func(n string) string {
		if q.Engine() == storage.EnginePostgres {
			return `(SELECT jsonb_array_elements_text(` + n + `::jsonb))`
		}
		return `(SELECT value FROM json_each(` + n + `))`
	}
	rows, err := q.Query(ctx, `SELECT DISTINCT user_id FROM sync_memberships WHERE room_id IN `+list("$1")+` AND user_id IN `+list("$2"),
		string(rj), string(uj))
	if err != nil {
		return nil, fmt.Errorf("members among %d users: %w", len(users), err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}
