package roomstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/latticehq/lattice/storage"
)

// Txn is a client's transaction ID for an event it sent.
type Txn struct {
	UserID, DeviceID, TxnID string
}

// TxnEvent returns the number of the event a device sent into a room with a transaction ID,
// 0 if there is none.
func (s *Store) TxnEvent(ctx context.Context, q storage.Querier, roomNID int64, t Txn) (int64, error) {
	var nid int64
	err := q.QueryRow(ctx, `SELECT event_nid FROM room_transactions WHERE user_id = $1 AND device_id = $2 AND room_nid = $3 AND txn_id = $4`,
		t.UserID, t.DeviceID, roomNID, t.TxnID).Scan(&nid)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("look up transaction %s: %w", t.TxnID, err)
	}
	return nid, nil
}

// InsertTxn records the event a transaction ID sent.
func (s *Store) InsertTxn(ctx context.Context, tx *storage.Tx, roomNID, eventNID int64, t Txn) error {
	_, err := tx.Exec(ctx, `INSERT INTO room_transactions (user_id, device_id, room_nid, txn_id, event_nid) VALUES ($1, $2, $3, $4, $5)`,
		t.UserID, t.DeviceID, roomNID, t.TxnID, eventNID)
	if err != nil {
		return fmt.Errorf("record transaction %s: %w", t.TxnID, err)
	}
	return nil
}

// OutputEvent is an event of the output stream with what consumers need besides its JSON.
type OutputEvent struct {
	*Event
	RoomID string
	// Txn is set when a local device sent the event with a transaction ID.
	Txn *Txn
}

// Output returns up to limit events of the output stream after position from, in order, with
// their room IDs and transaction IDs.
func (s *Store) Output(ctx context.Context, q storage.Querier, from int64, limit int) ([]OutputEvent, error) {
	rows, err := q.Query(ctx, `SELECT e.event_nid, e.event_id, e.room_nid, e.event_type, e.state_key, e.depth, e.origin_server_ts, e.json,
			e.state_before_nid, e.rejected, e.soft_failed, e.outlier, e.stream_pos, r.room_id, t.user_id, t.device_id, t.txn_id
		FROM room_events e JOIN rooms r ON r.room_nid = e.room_nid
		LEFT JOIN room_transactions t ON t.event_nid = e.event_nid
		WHERE e.stream_pos > $1 ORDER BY e.stream_pos LIMIT $2`, from, limit)
	if err != nil {
		return nil, fmt.Errorf("read output stream: %w", err)
	}
	defer rows.Close()
	var out []OutputEvent
	for rows.Next() {
		e := &Event{}
		var stateKey, user, device, txn sql.NullString
		var rejected, softFailed, outlier int
		var o OutputEvent
		if err := rows.Scan(&e.NID, &e.EventID, &e.RoomNID, &e.Type, &stateKey, &e.Depth, &e.OriginServerTS, &e.JSON,
			&e.StateBefore, &rejected, &softFailed, &outlier, &e.StreamPos, &o.RoomID, &user, &device, &txn); err != nil {
			return nil, fmt.Errorf("read output stream: %w", err)
		}
		if stateKey.Valid {
			e.StateKey = &stateKey.String
		}
		e.Rejected, e.SoftFailed, e.Outlier = rejected == 1, softFailed == 1, outlier == 1
		o.Event = e
		if txn.Valid {
			o.Txn = &Txn{UserID: user.String, DeviceID: device.String, TxnID: txn.String}
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read output stream: %w", err)
	}
	return out, nil
}

// OutputPosition is the latest position of the output stream, 0 if nothing was output.
func (s *Store) OutputPosition(ctx context.Context) (int64, error) {
	return s.db.StreamPosition(ctx, StreamOutput)
}

// LastEventAt returns the ID of the room's last output event at or before position pos, ""
// if the room had none then.
func (s *Store) LastEventAt(ctx context.Context, q storage.Querier, roomID string, pos int64) (string, error) {
	var eid string
	err := q.QueryRow(ctx, `SELECT e.event_id FROM room_events e JOIN rooms r ON r.room_nid = e.room_nid
		WHERE r.room_id = $1 AND e.stream_pos > 0 AND e.stream_pos <= $2 ORDER BY e.stream_pos DESC LIMIT 1`, roomID, pos).Scan(&eid)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("last event of %s at %d: %w", roomID, pos, err)
	}
	return eid, nil
}
