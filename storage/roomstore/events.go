package roomstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/latticehq/lattice/storage"
)

// Event is one stored event with what the roomserver tracks about it.
type Event struct {
	NID            int64
	EventID        string
	RoomNID        int64
	Type           string
	StateKey       *string
	Depth          int64
	OriginServerTS int64
	JSON           []byte
	// StateBefore is the snapshot of the room state before the event; 0 for outliers, whose
	// state is not known.
	StateBefore int64
	Rejected    bool
	SoftFailed  bool
	Outlier     bool
	// StreamPos is the event's position on the output stream, 0 if it was never output
	// (outliers, rejected and soft-failed events).
	StreamPos int64
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// InsertEvent stores an event and returns its number. An event already stored keeps its row
// and number (ErrExists): events are immutable, and an outlier becomes part of the timeline
// through UpdateEvent.
func (s *Store) InsertEvent(ctx context.Context, tx *storage.Tx, e *Event) (int64, error) {
	var nid int64
	err := tx.QueryRow(ctx, `INSERT INTO room_events (event_id, room_nid, event_type, state_key, depth, origin_server_ts,
			json, state_before_nid, rejected, soft_failed, outlier, stream_pos)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
		ON CONFLICT (event_id) DO NOTHING RETURNING event_nid`,
		e.EventID, e.RoomNID, e.Type, e.StateKey, e.Depth, e.OriginServerTS, e.JSON, e.StateBefore,
		b2i(e.Rejected), b2i(e.SoftFailed), b2i(e.Outlier), e.StreamPos).Scan(&nid)
	if errors.Is(err, sql.ErrNoRows) {
		if err := tx.QueryRow(ctx, `SELECT event_nid FROM room_events WHERE event_id = $1`, e.EventID).Scan(&nid); err != nil {
			return 0, fmt.Errorf("store event %s: %w", e.EventID, err)
		}
		e.NID = nid
		return nid, ErrExists
	}
	if err != nil {
		return 0, fmt.Errorf("store event %s: %w", e.EventID, err)
	}
	e.NID = nid
	return nid, nil
}

// ErrExists is returned by InsertEvent for an event that is already stored.
var ErrExists = errors.New("roomstore: event already stored")

// UpdateEvent records what the pipeline learnt of a stored event: its state, flags and output
// position (an outlier that joins the timeline, say).
func (s *Store) UpdateEvent(ctx context.Context, tx *storage.Tx, e *Event) error {
	_, err := tx.Exec(ctx, `UPDATE room_events SET state_before_nid = $1, rejected = $2, soft_failed = $3, outlier = $4, stream_pos = $5
		WHERE event_nid = $6`, e.StateBefore, b2i(e.Rejected), b2i(e.SoftFailed), b2i(e.Outlier), e.StreamPos, e.NID)
	if err != nil {
		return fmt.Errorf("update event %s: %w", e.EventID, err)
	}
	return nil
}

const eventColumns = `event_nid, event_id, room_nid, event_type, state_key, depth, origin_server_ts, json,
	state_before_nid, rejected, soft_failed, outlier, stream_pos`

// scanEvent reads one row of eventColumns.
func scanEvent(rows *sql.Rows) (*Event, error) {
	e := &Event{}
	var stateKey sql.NullString
	var rejected, softFailed, outlier int
	if err := rows.Scan(&e.NID, &e.EventID, &e.RoomNID, &e.Type, &stateKey, &e.Depth, &e.OriginServerTS, &e.JSON,
		&e.StateBefore, &rejected, &softFailed, &outlier, &e.StreamPos); err != nil {
		return nil, err
	}
	if stateKey.Valid {
		e.StateKey = &stateKey.String
	}
	e.Rejected, e.SoftFailed, e.Outlier = rejected == 1, softFailed == 1, outlier == 1
	return e, nil
}

func scanEvents(rows *sql.Rows) ([]*Event, error) {
	defer rows.Close()
	var out []*Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// EventsByID returns the stored events among ids, in no particular order; unknown IDs are left out.
func (s *Store) EventsByID(ctx context.Context, q storage.Querier, ids []string) ([]*Event, error) {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return s.eventsIn(ctx, q, "event_id", args)
}

// EventsByNID returns the stored events among nids; unknown numbers are left out.
func (s *Store) EventsByNID(ctx context.Context, q storage.Querier, nids []int64) ([]*Event, error) {
	args := make([]any, len(nids))
	for i, n := range nids {
		args[i] = n
	}
	return s.eventsIn(ctx, q, "event_nid", args)
}

func (s *Store) eventsIn(ctx context.Context, q storage.Querier, column string, args []any) ([]*Event, error) {
	var out []*Event
	err := inBatches(ctx, q, `SELECT `+eventColumns+` FROM room_events WHERE `+column+` IN `, args, func(rows *sql.Rows) error {
		e, err := scanEvent(rows)
		if err != nil {
			return err
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load events: %w", err)
	}
	return out, nil
}

// ForwardExtremities returns the numbers of the room's forward extremities: the events without
// children that new events build on.
func (s *Store) ForwardExtremities(ctx context.Context, q storage.Querier, roomNID int64) ([]int64, error) {
	rows, err := q.Query(ctx, `SELECT event_nid FROM room_forward_extremities WHERE room_nid = $1 ORDER BY event_nid`, roomNID)
	if err != nil {
		return nil, fmt.Errorf("load forward extremities: %w", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("load forward extremities: %w", err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// UpdateForwardExtremities removes the extremities an event referenced and adds the event.
func (s *Store) UpdateForwardExtremities(ctx context.Context, tx *storage.Tx, roomNID, eventNID int64, referenced []int64) error {
	for _, r := range referenced {
		if _, err := tx.Exec(ctx, `DELETE FROM room_forward_extremities WHERE room_nid = $1 AND event_nid = $2`, roomNID, r); err != nil {
			return fmt.Errorf("update forward extremities: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO room_forward_extremities (room_nid, event_nid) VALUES ($1, $2) ON CONFLICT DO NOTHING`, roomNID, eventNID); err != nil {
		return fmt.Errorf("update forward extremities: %w", err)
	}
	return nil
}

// OutputSince returns up to limit events of the output stream after position from, in order.
func (s *Store) OutputSince(ctx context.Context, q storage.Querier, from int64, limit int) ([]*Event, error) {
	rows, err := q.Query(ctx, `SELECT `+eventColumns+` FROM room_events WHERE stream_pos > $1 ORDER BY stream_pos LIMIT $2`, from, limit)
	if err != nil {
		return nil, fmt.Errorf("read output stream: %w", err)
	}
	evs, err := scanEvents(rows)
	if err != nil {
		return nil, fmt.Errorf("read output stream: %w", err)
	}
	return evs, nil
}
