package roomstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/latticehq/lattice/storage"
)

// ErrAliasTaken is returned when an alias already points to a room.
var ErrAliasTaken = errors.New("roomstore: alias already in use")

// Alias is one room alias of this server.
type Alias struct {
	Alias, RoomID, Creator string
}

// InsertAlias makes alias point to a room; ErrAliasTaken if it already points anywhere.
func (s *Store) InsertAlias(ctx context.Context, tx *storage.Tx, a Alias) error {
	res, err := tx.Exec(ctx, `INSERT INTO room_aliases (alias, room_id, creator_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		a.Alias, a.RoomID, a.Creator)
	if err != nil {
		return fmt.Errorf("create alias %s: %w", a.Alias, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrAliasTaken
	}
	return nil
}

// LookupAlias returns what an alias points to; ErrNotFound if nothing.
func (s *Store) LookupAlias(ctx context.Context, q storage.Querier, alias string) (Alias, error) {
	a := Alias{Alias: alias}
	err := q.QueryRow(ctx, `SELECT room_id, creator_id FROM room_aliases WHERE alias = $1`, alias).Scan(&a.RoomID, &a.Creator)
	if errors.Is(err, sql.ErrNoRows) {
		return Alias{}, ErrNotFound
	}
	if err != nil {
		return Alias{}, fmt.Errorf("look up alias %s: %w", alias, err)
	}
	return a, nil
}

// DeleteAlias removes an alias; ErrNotFound if it did not exist.
func (s *Store) DeleteAlias(ctx context.Context, tx *storage.Tx, alias string) error {
	res, err := tx.Exec(ctx, `DELETE FROM room_aliases WHERE alias = $1`, alias)
	if err != nil {
		return fmt.Errorf("delete alias %s: %w", alias, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// RoomAliases returns the aliases that point to a room, sorted.
func (s *Store) RoomAliases(ctx context.Context, q storage.Querier, roomID string) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias`, roomID)
	if err != nil {
		return nil, fmt.Errorf("aliases of %s: %w", roomID, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return nil, fmt.Errorf("aliases of %s: %w", roomID, err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// Report is a user's report of an event to the server's administrators.
type Report struct {
	RoomID, EventID, UserID string
	Reason                  *string
	Score                   *int64
	ReceivedTS              int64
}

// InsertReport stores a report.
func (s *Store) InsertReport(ctx context.Context, tx *storage.Tx, r Report) error {
	_, err := tx.Exec(ctx, `INSERT INTO room_reports (room_id, event_id, user_id, reason, score, received_ts) VALUES ($1, $2, $3, $4, $5, $6)`,
		r.RoomID, r.EventID, r.UserID, r.Reason, r.Score, r.ReceivedTS)
	if err != nil {
		return fmt.Errorf("store report of %s: %w", r.EventID, err)
	}
	return nil
}

// SetLocalMembership records a local user's current membership of a room.
func (s *Store) SetLocalMembership(ctx context.Context, tx *storage.Tx, roomNID int64, userID, membership string, eventNID int64) error {
	_, err := tx.Exec(ctx, `INSERT INTO room_local_memberships (user_id, room_nid, membership, event_nid) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id, room_nid) DO UPDATE SET membership = excluded.membership, event_nid = excluded.event_nid`,
		userID, roomNID, membership, eventNID)
	if err != nil {
		return fmt.Errorf("record membership of %s: %w", userID, err)
	}
	return nil
}

// LocalRooms returns the IDs of the rooms where a local user's membership is one of the given.
func (s *Store) LocalRooms(ctx context.Context, q storage.Querier, userID string, membership string) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT r.room_id FROM room_local_memberships m JOIN rooms r ON r.room_nid = m.room_nid
		WHERE m.user_id = $1 AND m.membership = $2 ORDER BY r.room_id`, userID, membership)
	if err != nil {
		return nil, fmt.Errorf("rooms of %s: %w", userID, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			return nil, fmt.Errorf("rooms of %s: %w", userID, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// SetPublished adds a room to the public room directory or removes it.
func (s *Store) SetPublished(ctx context.Context, tx *storage.Tx, roomID string, published bool) error {
	q := `DELETE FROM room_directory WHERE room_id = $1`
	if published {
		q = `INSERT INTO room_directory (room_id) VALUES ($1) ON CONFLICT DO NOTHING`
	}
	if _, err := tx.Exec(ctx, q, roomID); err != nil {
		return fmt.Errorf("set directory visibility of %s: %w", roomID, err)
	}
	return nil
}

// Published reports whether a room is in the public room directory.
func (s *Store) Published(ctx context.Context, q storage.Querier, roomID string) (bool, error) {
	var n int
	err := q.QueryRow(ctx, `SELECT COUNT(*) FROM room_directory WHERE room_id = $1`, roomID).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("directory visibility of %s: %w", roomID, err)
	}
	return n > 0, nil
}

// PublishedRooms returns the IDs of the rooms in the public room directory, sorted.
func (s *Store) PublishedRooms(ctx context.Context, q storage.Querier) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT room_id FROM room_directory ORDER BY room_id`)
	if err != nil {
		return nil, fmt.Errorf("public rooms: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			return nil, fmt.Errorf("public rooms: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
