// Package presencestore is the presence component's storage: one row per local user who ever
// had a presence, holding the current state, status message and last activity, and the stream
// position of the row's last change that /sync delivers (design principle 2).
//
// Rows are never deleted: a user's row is small and is overwritten in place, so the table
// grows with the number of users, not with the number of changes.
package presencestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/latticehq/lattice/storage"
)

// Stream is the stream positions of presence changes are drawn from; it is the name the sync
// token and the notifier use for presence too.
const Stream = "presence"

var migrations = []storage.Migration{{
	Version: 1,
	Name:    "presence",
	// presence_active lists the users the idle sweep watches after a restart: a partial
	// index, since most users are offline most of the time.
	SQL: `CREATE TABLE presence (
		user_id        TEXT   NOT NULL PRIMARY KEY,
		state          TEXT   NOT NULL,
		status_msg     TEXT,
		set_by         TEXT   NOT NULL,
		last_active_ts BIGINT NOT NULL,
		pos            BIGINT NOT NULL
	);
	CREATE INDEX presence_pos ON presence (pos);
	CREATE INDEX presence_active ON presence (user_id) WHERE state <> 'offline';`,
}}

// Presence is one user's stored presence.
type Presence struct {
	UserID       string
	State        string  // online, unavailable or offline
	StatusMsg    *string // nil when none is set
	SetBy        string  // who chose the state; the presence component gives it meaning
	LastActiveTS int64   // milliseconds since the epoch of the last activity
	Pos          int64   // stream position of the last change delivered to clients
}

// Store is the presence table on one database.
type Store struct{ db *storage.DB }

// Open migrates the presence table and returns the store.
func Open(ctx context.Context, db *storage.DB) (*Store, error) {
	if err := db.Migrate(ctx, "presencestore", migrations); err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// Position returns the latest committed position of the presence stream.
func (s *Store) Position(ctx context.Context) (int64, error) {
	return s.db.StreamPosition(ctx, Stream)
}

// Write stores the presences in one transaction, each at a new stream position that it sets in
// ps[i].Pos. Positions are assigned in slice order.
func (s *Store) Write(ctx context.Context, ps []Presence) error {
	if len(ps) == 0 {
		return nil
	}
	pos := make([]int64, len(ps))
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		for i, p := range ps {
			// As late as possible: the position's row lock serialises presence writers.
			n, err := tx.NextStreamPosition(ctx, Stream)
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `INSERT INTO presence (user_id, state, status_msg, set_by, last_active_ts, pos)
				VALUES ($1, $2, $3, $4, $5, $6)
				ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, status_msg = excluded.status_msg,
					set_by = excluded.set_by, last_active_ts = excluded.last_active_ts, pos = excluded.pos`,
				p.UserID, p.State, p.StatusMsg, p.SetBy, p.LastActiveTS, n)
			if err != nil {
				return fmt.Errorf("presencestore: write presence of %s: %w", p.UserID, err)
			}
			pos[i] = n
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := range ps {
		ps[i].Pos = pos[i]
	}
	return nil
}

// SetLastActive records later activity times without a new stream position: clients are not
// told of them (an online user is currently active), but reads after a restart see them.
// Users without a row are skipped. active maps user IDs to milliseconds since the epoch.
func (s *Store) SetLastActive(ctx context.Context, active map[string]int64) error {
	if len(active) == 0 {
		return nil
	}
	return s.db.WithTx(ctx, func(tx *storage.Tx) error {
		for user, ts := range active {
			// Never backwards: a Write of a newer time may have committed meanwhile.
			if _, err := tx.Exec(ctx, `UPDATE presence SET last_active_ts = $1 WHERE user_id = $2 AND last_active_ts < $1`, ts, user); err != nil {
				return fmt.Errorf("presencestore: last activity of %s: %w", user, err)
			}
		}
		return nil
	})
}

const columns = `user_id, state, status_msg, set_by, last_active_ts, pos`

func scan(rows *sql.Rows) ([]Presence, error) {
	defer rows.Close()
	var out []Presence
	for rows.Next() {
		var p Presence
		if err := rows.Scan(&p.UserID, &p.State, &p.StatusMsg, &p.SetBy, &p.LastActiveTS, &p.Pos); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Get returns a user's presence, nil if they never had one.
func (s *Store) Get(ctx context.Context, user string) (*Presence, error) {
	var p Presence
	err := s.db.QueryRow(ctx, `SELECT `+columns+` FROM presence WHERE user_id = $1`, user).
		Scan(&p.UserID, &p.State, &p.StatusMsg, &p.SetBy, &p.LastActiveTS, &p.Pos)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("presencestore: presence of %s: %w", user, err)
	}
	return &p, nil
}

// Changed returns up to limit presences whose last change is in (from, to], oldest first.
func (s *Store) Changed(ctx context.Context, from, to int64, limit int) ([]Presence, error) {
	if from >= to {
		return nil, nil
	}
	rows, err := s.db.Query(ctx, `SELECT `+columns+` FROM presence WHERE pos > $1 AND pos <= $2 ORDER BY pos LIMIT $3`, from, to, limit)
	if err != nil {
		return nil, fmt.Errorf("presencestore: changes since %d: %w", from, err)
	}
	out, err := scan(rows)
	if err != nil {
		return nil, fmt.Errorf("presencestore: changes since %d: %w", from, err)
	}
	return out, nil
}

// ChangedOf returns the presences of the given users whose last change is in (from, to],
// oldest first.
func (s *Store) ChangedOf(ctx context.Context, users []string, from, to int64) ([]Presence, error) {
	if len(users) == 0 || from >= to {
		return nil, nil
	}
	list, err := json.Marshal(users)
	if err != nil {
		return nil, err
	}
	// One JSON array parameter: one statement and one round trip for any number of users.
	in := `(SELECT value FROM json_each($1))`
	if s.db.Engine() == storage.EnginePostgres {
		in = `(SELECT jsonb_array_elements_text($1::jsonb))`
	}
	rows, err := s.db.Query(ctx, `SELECT `+columns+` FROM presence WHERE user_id IN `+in+` AND pos > $2 AND pos <= $3 ORDER BY pos`,
		string(list), from, to)
	if err != nil {
		return nil, fmt.Errorf("presencestore: changes of %d users since %d: %w", len(users), from, err)
	}
	out, err := scan(rows)
	if err != nil {
		return nil, fmt.Errorf("presencestore: changes of %d users since %d: %w", len(users), from, err)
	}
	return out, nil
}

// NotOffline returns the presences whose state is not offline.
func (s *Store) NotOffline(ctx context.Context) ([]Presence, error) {
	rows, err := s.db.Query(ctx, `SELECT `+columns+` FROM presence WHERE state <> 'offline'`)
	if err != nil {
		return nil, fmt.Errorf("presencestore: users not offline: %w", err)
	}
	out, err := scan(rows)
	if err != nil {
		return nil, fmt.Errorf("presencestore: users not offline: %w", err)
	}
	return out, nil
}
