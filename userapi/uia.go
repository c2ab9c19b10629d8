package userapi

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/latticehq/lattice/storage"
)

// SaveUIASession stores a user-interactive auth session's state until expires, replacing an
// earlier state of the same session. Sessions are kept in the database, not in memory, so that
// a flow survives a restart and works with several client API processes.
func (u *Users) SaveUIASession(ctx context.Context, sessionID string, state json.RawMessage, expires time.Time) error {
	if !json.Valid(state) {
		return fmt.Errorf("userapi: save UIA session: state is not JSON")
	}
	now := u.nowMS()
	err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
		// Abandoned sessions would otherwise pile up; the expiry index makes this cheap.
		if _, err := tx.Exec(ctx, `DELETE FROM uia_sessions WHERE expires_at <= $1`, now); err != nil {
			return fmt.Errorf("delete expired sessions: %w", err)
		}
		_, err := tx.Exec(ctx, `INSERT INTO uia_sessions (session_id, state, expires_at) VALUES ($1, $2, $3)
			ON CONFLICT (session_id) DO UPDATE SET state = excluded.state, expires_at = excluded.expires_at`,
			sessionID, string(state), expires.UnixMilli())
		return err
	})
	if err != nil {
		return fmt.Errorf("userapi: save UIA session: %w", err)
	}
	return nil
}

// UIASession loads a session, ErrNotFound if unknown or expired.
func (u *Users) UIASession(ctx context.Context, sessionID string) (json.RawMessage, error) {
	var state string
	err := u.db.QueryRow(ctx, `SELECT state FROM uia_sessions WHERE session_id = $1 AND expires_at > $2`,
		sessionID, u.nowMS()).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("userapi: load UIA session: %w", err)
	}
	return json.RawMessage(state), nil
}

// DeleteUIASession forgets a session; forgetting an unknown one is not an error.
func (u *Users) DeleteUIASession(ctx context.Context, sessionID string) error {
	err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM uia_sessions WHERE session_id = $1`, sessionID)
		return err
	})
	if err != nil {
		return fmt.Errorf("userapi: delete UIA session: %w", err)
	}
	return nil
}
