// Package receiptstore keeps the users' read receipts (client-server API, "Receipts"): one
// current receipt per room, user, receipt type and thread, each carrying the position of the
// receipts stream at which it last changed, so that /sync can read what changed since a token.
//
// A receipt is replaced in place when its owner moves it and is never deleted: the table is
// bounded by rooms × members × receipt types × threads.
package receiptstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/latticehq/lattice/storage"
)

// Stream is the stream whose positions the receipts take.
const Stream = "receipts"

// PrivateType is the receipt type shown to its owner alone ("Private read receipts").
const PrivateType = "m.read.private"

var migrations = []storage.Migration{{
	Version: 1,
	Name:    "receipts",
	// thread_id is "" for an unthreaded receipt. event_pos is the event's position on the
	// roomserver's output stream (0 when unknown), which keeps receipts from moving backwards.
	SQL: `CREATE TABLE receipts (
		room_id      TEXT   NOT NULL,
		user_id      TEXT   NOT NULL,
		receipt_type TEXT   NOT NULL,
		thread_id    TEXT   NOT NULL,
		event_id     TEXT   NOT NULL,
		event_pos    BIGINT NOT NULL,
		ts           BIGINT NOT NULL,
		pos          BIGINT NOT NULL,
		PRIMARY KEY (room_id, user_id, receipt_type, thread_id)
	);
	CREATE INDEX receipts_room_pos ON receipts (room_id, pos);`,
}}

// Store is the receipts table on one database.
type Store struct{ db *storage.DB }

// Open migrates the receipts table and returns the store.
func Open(ctx context.Context, db *storage.DB) (*Store, error) {
	if err := db.Migrate(ctx, "receiptstore", migrations); err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// Receipt is one user's receipt of one type in one room and thread.
type Receipt struct {
	RoomID   string
	UserID   string
	Type     string
	ThreadID string // "" for an unthreaded receipt
	EventID  string
	// EventPos is the event's position on the roomserver's output stream, 0 when unknown.
	EventPos int64
	TS       int64 // milliseconds since the epoch
	Pos      int64 // position of the receipts stream; set by Put
}

// Put stores receipts in one transaction, all at one new position of Stream, and returns that
// position and the receipts it wrote (0 and none when nothing changed). A receipt replaces the
// current one of its room, user, type and thread unless that one already acknowledges the same
// event or a later one (when both output positions are known): receipts are "up to" markers, so
// a lagging device must not move them back. Each of inTx runs in the same transaction with the
// receipts written, so that what follows from them (notifications marked read) commits with them.
func (s *Store) Put(ctx context.Context, rs []Receipt, inTx ...func(ctx context.Context, tx *storage.Tx, written []Receipt) error) (int64, []Receipt, error) {
	var (
		pos     int64
		written []Receipt
	)
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		pos, written = 0, written[:0] // WithTx may run this again after a conflict
		for _, r := range rs {
			var curEvent string
			var curPos int64
			err := tx.QueryRow(ctx, `SELECT event_id, event_pos FROM receipts
				WHERE room_id = $1 AND user_id = $2 AND receipt_type = $3 AND thread_id = $4`,
				r.RoomID, r.UserID, r.Type, r.ThreadID).Scan(&curEvent, &curPos)
			switch {
			case errors.Is(err, sql.ErrNoRows):
			case err != nil:
				return fmt.Errorf("read receipt of %s in %s: %w", r.UserID, r.RoomID, err)
			case curEvent == r.EventID, curPos > 0 && r.EventPos > 0 && curPos > r.EventPos:
				continue
			}
			written = append(written, r)
		}
		if len(written) == 0 {
			return nil
		}
		var err error
		if pos, err = tx.NextStreamPosition(ctx, Stream); err != nil {
			return err
		}
		for i := range written {
			r := &written[i]
			r.Pos = pos
			_, err := tx.Exec(ctx, `INSERT INTO receipts (room_id, user_id, receipt_type, thread_id, event_id, event_pos, ts, pos)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
				ON CONFLICT (room_id, user_id, receipt_type, thread_id) DO UPDATE SET
					event_id = excluded.event_id, event_pos = excluded.event_pos, ts = excluded.ts, pos = excluded.pos`,
				r.RoomID, r.UserID, r.Type, r.ThreadID, r.EventID, r.EventPos, r.TS, r.Pos)
			if err != nil {
				return fmt.Errorf("store receipt of %s in %s: %w", r.UserID, r.RoomID, err)
			}
		}
		for _, fn := range inTx {
			if err := fn(ctx, tx, written); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("receiptstore: %w", err)
	}
	return pos, written, nil
}

// Changed returns the current receipts of rooms whose position is in (from, to], oldest first,
// leaving out the private receipts of users other than viewer.
func (s *Store) Changed(ctx context.Context, rooms []string, from, to int64, viewer string) ([]Receipt, error) {
	if len(rooms) == 0 || from >= to {
		return nil, nil
	}
	list, err := json.Marshal(rooms)
	if err != nil {
		return nil, err
	}
	// The room list travels as one JSON array, so the statement is the same for any number of
	// rooms and one round trip serves a user in thousands of them.
	in := `(SELECT value FROM json_each($1))`
	if s.db.Engine() == storage.EnginePostgres {
		in = `(SELECT jsonb_array_elements_text($1::jsonb))`
	}
	rows, err := s.db.Query(ctx, `SELECT room_id, user_id, receipt_type, thread_id, event_id, event_pos, ts, pos
		FROM receipts WHERE room_id IN `+in+` AND pos > $2 AND pos <= $3 AND (receipt_type <> $4 OR user_id = $5)
		ORDER BY pos`, string(list), from, to, PrivateType, viewer)
	if err != nil {
		return nil, fmt.Errorf("receiptstore: receipts since %d: %w", from, err)
	}
	defer rows.Close()
	var out []Receipt
	for rows.Next() {
		var r Receipt
		if err := rows.Scan(&r.RoomID, &r.UserID, &r.Type, &r.ThreadID, &r.EventID, &r.EventPos, &r.TS, &r.Pos); err != nil {
			return nil, fmt.Errorf("receiptstore: receipts since %d: %w", from, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("receiptstore: receipts since %d: %w", from, err)
	}
	return out, nil
}
