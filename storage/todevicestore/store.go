// Package todevicestore is the storage of the to-device component (syncapi/todevice): the
// send-to-device messages waiting for each local device, the transaction IDs that make sending
// idempotent, and the membership changes in rooms that, with userapi's device changes, make up the
// device-list stream. Each consumer's cursor lives here too, so that what it wrote and how far it
// got move in one transaction.
package todevicestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/syncapi/synctypes"
)

var migrations = []storage.Migration{{
	Version: 1,
	Name:    "to-device messages, transactions, device-list memberships, cursors",
	// todevice_messages: pos is the to_device stream position of the send that stored the row; a
	// send stores at most one message per device, so (user, device, pos) is unique.
	// devicelist_members: each (room, user)'s latest joined-or-not, at the device_lists position
	// where it last changed; devicelist_encrypted: when each room first became encrypted.
	SQL: `CREATE TABLE todevice_messages (
		user_id   TEXT   NOT NULL,
		device_id TEXT   NOT NULL,
		pos       BIGINT NOT NULL,
		sender    TEXT   NOT NULL,
		type      TEXT   NOT NULL,
		content   TEXT   NOT NULL,
		PRIMARY KEY (user_id, device_id, pos)
	);
	CREATE TABLE todevice_txns (
		user_id    TEXT   NOT NULL,
		device_id  TEXT   NOT NULL,
		txn_id     TEXT   NOT NULL,
		created_ts BIGINT NOT NULL,
		PRIMARY KEY (user_id, device_id, txn_id)
	);
	CREATE INDEX todevice_txns_created ON todevice_txns (created_ts);
	CREATE TABLE todevice_cursors (
		name TEXT   NOT NULL PRIMARY KEY,
		pos  BIGINT NOT NULL
	);
	CREATE TABLE devicelist_members (
		room_id TEXT    NOT NULL,
		user_id TEXT    NOT NULL,
		joined  BOOLEAN NOT NULL,
		pos     BIGINT  NOT NULL,
		PRIMARY KEY (room_id, user_id)
	);
	CREATE INDEX devicelist_members_pos ON devicelist_members (pos);
	CREATE INDEX devicelist_members_user ON devicelist_members (user_id);
	CREATE TABLE devicelist_encrypted (
		room_id TEXT   NOT NULL PRIMARY KEY,
		pos     BIGINT NOT NULL
	);
	CREATE INDEX devicelist_encrypted_pos ON devicelist_encrypted (pos);`,
}}

// Store is the to-device component's storage on one database.
type Store struct{ db *storage.DB }

// Open migrates the tables (component "todevicestore") and returns the store.
func Open(ctx context.Context, db *storage.DB) (*Store, error) {
	if err := db.Migrate(ctx, "todevicestore", migrations); err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// Cursor returns a consumer's position, 0 if it never ran.
func (s *Store) Cursor(ctx context.Context, name string) (int64, error) {
	var pos int64
	err := s.db.QueryRow(ctx, `SELECT pos FROM todevice_cursors WHERE name = $1`, name).Scan(&pos)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("todevicestore: cursor %s: %w", name, err)
	}
	return pos, nil
}

func setCursor(ctx context.Context, tx *storage.Tx, name string, pos int64) error {
	_, err := tx.Exec(ctx, `INSERT INTO todevice_cursors (name, pos) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET pos = excluded.pos`, name, pos)
	if err != nil {
		return fmt.Errorf("todevicestore: set cursor %s: %w", name, err)
	}
	return nil
}

// Device names one device of a user.
type Device struct {
	UserID   string
	DeviceID string
}

// Send is one PUT /sendToDevice after fan-out: one content per recipient device.
type Send struct {
	Sender       string
	SenderDevice string // "" for a token without a device
	TxnID        string
	Type         string
	CreatedTS    int64 // milliseconds, for pruning the transaction IDs
	Messages     map[Device]json.RawMessage
}

// rowsPerInsert keeps a multi-row INSERT well under both engines' parameter limits.
const rowsPerInsert = 500

// Send stores the messages of a send at one new to_device position, together with its transaction
// ID. A transaction ID the sender's device used before stores nothing and reports duplicate. pos
// is 0 when nothing was stored.
func (s *Store) Send(ctx context.Context, m Send) (pos int64, duplicate bool, err error) {
	err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
		pos, duplicate = 0, false
		res, err := tx.Exec(ctx, `INSERT INTO todevice_txns (user_id, device_id, txn_id, created_ts) VALUES ($1, $2, $3, $4)
			ON CONFLICT DO NOTHING`, m.Sender, m.SenderDevice, m.TxnID, m.CreatedTS)
		if err != nil {
			return fmt.Errorf("record transaction: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("record transaction: %w", err)
		} else if n == 0 {
			duplicate = true
			return nil
		}
		if len(m.Messages) == 0 {
			return nil
		}
		// Drawn as late as possible: other senders wait on the stream's counter until the commit.
		if pos, err = tx.NextStreamPosition(ctx, synctypes.StreamToDevice); err != nil {
			return err
		}
		return insertMessages(ctx, tx, pos, m)
	})
	if err != nil {
		return 0, false, fmt.Errorf("todevicestore: send %s from %s: %w", m.TxnID, m.Sender, err)
	}
	return pos, duplicate, nil
}

func insertMessages(ctx context.Context, tx *storage.Tx, pos int64, m Send) error {
	var b strings.Builder
	args := make([]any, 0, 6*min(len(m.Messages), rowsPerInsert))
	flush := func() error {
		if len(args) == 0 {
			return nil
		}
		_, err := tx.Exec(ctx, `INSERT INTO todevice_messages (user_id, device_id, pos, sender, type, content) VALUES `+b.String(), args...)
		b.Reset()
		args = args[:0]
		if err != nil {
			return fmt.Errorf("store messages: %w", err)
		}
		return nil
	}
	for d, content := range m.Messages {
		if len(args) > 0 {
			b.WriteByte(',')
		}
		n := len(args)
		b.WriteString("($" + strconv.Itoa(n+1) + ",$" + strconv.Itoa(n+2) + ",$" + strconv.Itoa(n+3) + ",$" +
			strconv.Itoa(n+4) + ",$" + strconv.Itoa(n+5) + ",$" + strconv.Itoa(n+6) + ")")
		args = append(args, d.UserID, d.DeviceID, pos, m.Sender, m.Type, string(content))
		if len(args) == 6*rowsPerInsert {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// Message is one stored to-device message.
type Message struct {
	Pos     int64
	Sender  string
	Type    string
	Content json.RawMessage
}

// Oldest returns the position of a device's oldest pending message; ok is false if it has none.
func (s *Store) Oldest(ctx context.Context, d Device) (pos int64, ok bool, err error) {
	err = s.db.QueryRow(ctx, `SELECT pos FROM todevice_messages WHERE user_id = $1 AND device_id = $2 ORDER BY pos LIMIT 1`,
		d.UserID, d.DeviceID).Scan(&pos)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("todevicestore: oldest message of %s %s: %w", d.UserID, d.DeviceID, err)
	}
	return pos, true, nil
}

// Pending returns up to limit of a device's messages with positions in (from, to], in order.
func (s *Store) Pending(ctx context.Context, d Device, from, to int64, limit int) ([]Message, error) {
	rows, err := s.db.Query(ctx, `SELECT pos, sender, type, content FROM todevice_messages
		WHERE user_id = $1 AND device_id = $2 AND pos > $3 AND pos <= $4 ORDER BY pos LIMIT $5`,
		d.UserID, d.DeviceID, from, to, limit)
	if err != nil {
		return nil, fmt.Errorf("todevicestore: messages of %s %s: %w", d.UserID, d.DeviceID, err)
	}
	defer rows.Close()
	var out []Message
	for rows.Next() {
		var m Message
		var content string
		if err := rows.Scan(&m.Pos, &m.Sender, &m.Type, &content); err != nil {
			return nil, fmt.Errorf("todevicestore: messages of %s %s: %w", d.UserID, d.DeviceID, err)
		}
		m.Content = json.RawMessage(content)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("todevicestore: messages of %s %s: %w", d.UserID, d.DeviceID, err)
	}
	return out, nil
}

// Acknowledge deletes a device's messages at positions up to upto, which it has received.
func (s *Store) Acknowledge(ctx context.Context, d Device, upto int64) error {
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM todevice_messages WHERE user_id = $1 AND device_id = $2 AND pos <= $3`,
			d.UserID, d.DeviceID, upto)
		return err
	})
	if err != nil {
		return fmt.Errorf("todevicestore: acknowledge messages of %s %s: %w", d.UserID, d.DeviceID, err)
	}
	return nil
}

// ForgetDevices deletes the pending messages and the transaction IDs of deleted devices and moves
// the named cursor to pos, in one transaction.
func (s *Store) ForgetDevices(ctx context.Context, ds []Device, cursor string, pos int64) error {
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		for _, d := range ds {
			for _, table := range []string{"todevice_messages", "todevice_txns"} {
				if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE user_id = $1 AND device_id = $2`, d.UserID, d.DeviceID); err != nil {
					return fmt.Errorf("forget %s %s: %w", d.UserID, d.DeviceID, err)
				}
			}
		}
		return setCursor(ctx, tx, cursor, pos)
	})
	if err != nil {
		return fmt.Errorf("todevicestore: %w", err)
	}
	return nil
}

// PruneTxns forgets transaction IDs recorded before the given time (milliseconds) and reports
// how many.
func (s *Store) PruneTxns(ctx context.Context, before int64) (int64, error) {
	var n int64
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM todevice_txns WHERE created_ts < $1`, before)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("todevicestore: prune transaction IDs: %w", err)
	}
	return n, nil
}
