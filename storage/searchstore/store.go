// Package searchstore is the storage of the search component: a full-text index of room events
// (SQLite FTS4 or a PostgreSQL tsvector), the event headers, history visibility and membership
// spans that decide who may see which result, and the user directory. Its only writer is the
// search consumer of the roomserver's output stream, whose cursor lives here too, so that index
// and cursor move in one transaction.
package searchstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"

	"github.com/latticehq/lattice/storage"
)

// maxPos ends a membership span that is still open.
const maxPos = math.MaxInt64

// Store is the search index on one database.
type Store struct {
	db *storage.DB
}

// Open migrates the search tables and returns the store.
func Open(ctx context.Context, db *storage.DB) (*Store, error) {
	if err := Migrate(ctx, db); err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// DB is the database the store is on.
func (s *Store) DB() *storage.DB { return s.db }

// Cursor returns the consumer's position on the output stream, 0 before the first event.
func (s *Store) Cursor(ctx context.Context, q storage.Querier, name string) (int64, error) {
	var pos int64
	err := q.QueryRow(ctx, `SELECT pos FROM search_cursor WHERE name = $1`, name).Scan(&pos)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("searchstore: cursor %s: %w", name, err)
	}
	return pos, nil
}

// SetCursor moves the consumer's cursor, in the transaction that wrote what it consumed.
func (s *Store) SetCursor(ctx context.Context, tx *storage.Tx, name string, pos int64) error {
	_, err := tx.Exec(ctx, `INSERT INTO search_cursor (name, pos) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET pos = excluded.pos`, name, pos)
	if err != nil {
		return fmt.Errorf("searchstore: set cursor %s: %w", name, err)
	}
	return nil
}

// Room is what the index tracks of a room's current state, as of the consumer's cursor.
type Room struct {
	ID          string
	Visibility  string // m.room.history_visibility; "shared" without one
	JoinRule    string // m.room.join_rules content.join_rule; "" without one
	Encrypted   bool   // the room has had an m.room.encryption event
	CreateEvent string // event IDs of m.room.create and m.room.power_levels, for redactions
	PowerEvent  string
}

// Room returns a room's tracked state; an unknown room has the defaults.
func (s *Store) Room(ctx context.Context, q storage.Querier, roomID string) (Room, error) {
	r := Room{ID: roomID, Visibility: "shared"}
	var enc int
	err := q.QueryRow(ctx, `SELECT visibility, join_rule, encrypted, create_event, power_event
		FROM search_rooms WHERE room_id = $1`, roomID).Scan(&r.Visibility, &r.JoinRule, &enc, &r.CreateEvent, &r.PowerEvent)
	if errors.Is(err, sql.ErrNoRows) {
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("searchstore: room %s: %w", roomID, err)
	}
	r.Encrypted = enc != 0
	return r, nil
}

// SetRoom stores a room's tracked state.
func (s *Store) SetRoom(ctx context.Context, tx *storage.Tx, r Room) error {
	_, err := tx.Exec(ctx, `INSERT INTO search_rooms (room_id, visibility, join_rule, encrypted, create_event, power_event)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (room_id) DO UPDATE SET visibility = excluded.visibility,
		join_rule = excluded.join_rule, encrypted = excluded.encrypted, create_event = excluded.create_event,
		power_event = excluded.power_event`,
		r.ID, clean(r.Visibility), clean(r.JoinRule), boolInt(r.Encrypted), r.CreateEvent, r.PowerEvent)
	if err != nil {
		return fmt.Errorf("searchstore: set room %s: %w", r.ID, err)
	}
	return nil
}

// Event is the header of one event of the output stream.
type Event struct {
	Pos      int64
	EventID  string
	RoomID   string
	Sender   string
	Type     string
	StateKey *string
	// Visibility is the history visibility the event was sent under (for an
	// m.room.history_visibility event, the more permissive of before and after).
	Visibility string
	Redacted   bool
	// Text is what the search matches against ("" for events that are not searched).
	Text string
}

// InsertEvent adds an event's header and, unless it is redacted or has no text, its text to
// the full-text index.
func (s *Store) InsertEvent(ctx context.Context, tx *storage.Tx, e *Event) error {
	text := ""
	if !e.Redacted {
		text = clean(e.Text)
	}
	var err error
	if tx.Engine() == storage.EnginePostgres {
		_, err = tx.Exec(ctx, `INSERT INTO search_events (pos, event_id, room_id, sender, type, state_key, visibility, redacted, tsv)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $9 = '' THEN NULL ELSE to_tsvector('simple', $9) END)`,
			e.Pos, e.EventID, e.RoomID, e.Sender, e.Type, e.StateKey, e.Visibility, boolInt(e.Redacted), text)
	} else {
		_, err = tx.Exec(ctx, `INSERT INTO search_events (pos, event_id, room_id, sender, type, state_key, visibility, redacted)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			e.Pos, e.EventID, e.RoomID, e.Sender, e.Type, e.StateKey, e.Visibility, boolInt(e.Redacted))
		if err == nil && text != "" {
			_, err = tx.Exec(ctx, `INSERT INTO search_fts (docid, body) VALUES ($1, $2)`, e.Pos, text)
		}
	}
	if err != nil {
		return fmt.Errorf("searchstore: insert event %s: %w", e.EventID, err)
	}
	return nil
}

// EventHeader returns the header of an event by ID (without its text), nil if unknown.
func (s *Store) EventHeader(ctx context.Context, q storage.Querier, eventID string) (*Event, error) {
	evs, err := s.scanEvents(q.Query(ctx, `SELECT `+eventColumns+` FROM search_events WHERE event_id = $1`, eventID))
	if err != nil || len(evs) == 0 {
		return nil, err
	}
	return &evs[0], nil
}

// Redact marks an event redacted and takes its text out of the index (client-server API,
// "Redactions": a redacted event must not be found by its content any more).
func (s *Store) Redact(ctx context.Context, tx *storage.Tx, e *Event) error {
	var err error
	if tx.Engine() == storage.EnginePostgres {
		_, err = tx.Exec(ctx, `UPDATE search_events SET redacted = 1, tsv = NULL WHERE pos = $1`, e.Pos)
	} else {
		if _, err = tx.Exec(ctx, `UPDATE search_events SET redacted = 1 WHERE pos = $1`, e.Pos); err == nil {
			_, err = tx.Exec(ctx, `DELETE FROM search_fts WHERE docid = $1`, e.Pos)
		}
	}
	if err != nil {
		return fmt.Errorf("searchstore: redact %s: %w", e.EventID, err)
	}
	return nil
}

// Redaction is an m.room.redaction the consumer has seen, kept so that a target that arrives
// after its redaction is indexed redacted.
type Redaction struct {
	TargetID, RedactionID, RoomID, Sender string
	// Powerful is whether the sender's power level reached the redact level, which lets it
	// redact any sender's events; otherwise only events of its own server.
	Powerful bool
}

// AddRedaction records a redaction.
func (s *Store) AddRedaction(ctx context.Context, tx *storage.Tx, r Redaction) error {
	_, err := tx.Exec(ctx, `INSERT INTO search_redactions (target_id, redaction_id, room_id, sender, powerful)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (target_id, redaction_id) DO NOTHING`,
		r.TargetID, r.RedactionID, r.RoomID, r.Sender, boolInt(r.Powerful))
	if err != nil {
		return fmt.Errorf("searchstore: add redaction %s: %w", r.RedactionID, err)
	}
	return nil
}

// Redactions returns the redactions recorded against an event.
func (s *Store) Redactions(ctx context.Context, q storage.Querier, targetID string) ([]Redaction, error) {
	rows, err := q.Query(ctx, `SELECT redaction_id, room_id, sender, powerful FROM search_redactions WHERE target_id = $1`, targetID)
	if err != nil {
		return nil, fmt.Errorf("searchstore: redactions of %s: %w", targetID, err)
	}
	defer rows.Close()
	var out []Redaction
	for rows.Next() {
		r := Redaction{TargetID: targetID}
		var powerful int
		if err := rows.Scan(&r.RedactionID, &r.RoomID, &r.Sender, &powerful); err != nil {
			return nil, fmt.Errorf("searchstore: redactions of %s: %w", targetID, err)
		}
		r.Powerful = powerful != 0
		out = append(out, r)
	}
	return out, rows.Err()
}

// SetMembership records a local user's membership change at pos: the open span ends there,
// and a join or invite opens a new one. A member event that keeps the membership (a new display
// name) changes nothing.
func (s *Store) SetMembership(ctx context.Context, tx *storage.Tx, userID, roomID, membership string, pos int64) error {
	var cur string
	err := tx.QueryRow(ctx, `SELECT membership FROM search_spans WHERE user_id = $1 AND room_id = $2 AND end_pos = $3`,
		userID, roomID, int64(maxPos)).Scan(&cur)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		err = nil
	case err == nil && cur == membership:
		return nil
	case err == nil:
		_, err = tx.Exec(ctx, `UPDATE search_spans SET end_pos = $3 WHERE user_id = $1 AND room_id = $2 AND end_pos = $4`,
			userID, roomID, pos, int64(maxPos))
	}
	if err == nil && (membership == "join" || membership == "invite") {
		_, err = tx.Exec(ctx, `INSERT INTO search_spans (user_id, room_id, membership, start_pos, end_pos) VALUES ($1, $2, $3, $4, $5)`,
			userID, roomID, membership, pos, int64(maxPos))
	}
	if err != nil {
		return fmt.Errorf("searchstore: membership of %s in %s: %w", userID, roomID, err)
	}
	return nil
}

// Span is a stretch of the output stream during which a user was joined to or invited into a
// room: from the member event at Start to the one at End (maxPos while it lasts).
type Span struct {
	RoomID     string
	Membership string
	Start, End int64
}

// Open reports whether the span lasts until now.
func (s Span) Open() bool { return s.End == maxPos }

// Spans returns a user's spans in a room ("" for every room), oldest first.
func (s *Store) Spans(ctx context.Context, q storage.Querier, userID, roomID string) ([]Span, error) {
	rows, err := q.Query(ctx, `SELECT room_id, membership, start_pos, end_pos FROM search_spans
		WHERE user_id = $1 AND ($2 = '' OR room_id = $2) ORDER BY start_pos`, userID, roomID)
	if err != nil {
		return nil, fmt.Errorf("searchstore: spans of %s: %w", userID, err)
	}
	defer rows.Close()
	var out []Span
	for rows.Next() {
		var sp Span
		if err := rows.Scan(&sp.RoomID, &sp.Membership, &sp.Start, &sp.End); err != nil {
			return nil, fmt.Errorf("searchstore: spans of %s: %w", userID, err)
		}
		out = append(out, sp)
	}
	return out, rows.Err()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
