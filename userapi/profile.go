package userapi

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/storage"
)

// maxProfileSize is the limit on a whole profile encoded as a JSON object (client-server API,
// "Profiles": servers may limit a profile to 64 KiB).
const maxProfileSize = 64 * 1024

// Profile returns the profile fields of a local user (ErrNotFound if there is no such account;
// a user ID of another server is not found either).
func (u *Users) Profile(ctx context.Context, userID id.UserID) (map[string]json.RawMessage, error) {
	if !u.isLocal(userID) {
		return nil, ErrNotFound
	}
	p, found, err := loadProfile(ctx, u.db, userID)
	if err != nil {
		return nil, fmt.Errorf("userapi: load profile of %s: %w", userID, err)
	}
	if !found {
		return nil, ErrNotFound
	}
	return p, nil
}

// loadProfile reads the fields of userID and whether the account exists, in one query.
func loadProfile(ctx context.Context, q storage.Querier, userID id.UserID) (map[string]json.RawMessage, bool, error) {
	rows, err := q.Query(ctx, `SELECT p.field, p.value FROM accounts a
		LEFT JOIN profiles p ON p.user_id = a.user_id WHERE a.user_id = $1`, userID)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	p := map[string]json.RawMessage{}
	found := false
	for rows.Next() {
		found = true
		var field, value sql.NullString
		if err := rows.Scan(&field, &value); err != nil {
			return nil, false, err
		}
		if field.Valid { // NULL: the account has no fields
			p[field.String] = json.RawMessage(value.String)
		}
	}
	return p, found, rows.Err()
}

// SetProfileField sets one field to any JSON value; ErrProfileTooLarge if the whole profile
// would exceed 64 KiB, ErrNotFound if there is no such account.
func (u *Users) SetProfileField(ctx context.Context, userID id.UserID, key string, value json.RawMessage) error {
	if !u.isLocal(userID) {
		return ErrNotFound
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, value); err != nil {
		return fmt.Errorf("userapi: set profile field %q of %s: value is not JSON: %w", key, userID, err)
	}
	value = compact.Bytes()
	err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
		// On PostgreSQL the account row's lock keeps two concurrent writes of different fields
		// from both passing the size check; SQLite runs one writer at a time anyway.
		if tx.Engine() == storage.EnginePostgres {
			var one int
			err := tx.QueryRow(ctx, `SELECT 1 FROM accounts WHERE user_id = $1 FOR UPDATE`, userID).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return ErrNotFound
			} else if err != nil {
				return err
			}
		}
		p, found, err := loadProfile(ctx, tx, userID)
		if err != nil {
			return err
		}
		if !found {
			return ErrNotFound
		}
		p[key] = value
		enc, err := json.Marshal(p)
		if err != nil {
			return err
		}
		if len(enc) > maxProfileSize {
			return ErrProfileTooLarge
		}
		_, err = tx.Exec(ctx, `INSERT INTO profiles (user_id, field, value) VALUES ($1, $2, $3)
			ON CONFLICT (user_id, field) DO UPDATE SET value = excluded.value`, userID, key, string(value))
		return err
	})
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrProfileTooLarge) {
		return err
	}
	if err != nil {
		return fmt.Errorf("userapi: set profile field %q of %s: %w", key, userID, err)
	}
	return nil
}

// DeleteProfileField removes one field (no error if it is absent); ErrNotFound if there is no
// such account.
func (u *Users) DeleteProfileField(ctx context.Context, userID id.UserID, key string) error {
	if !u.isLocal(userID) {
		return ErrNotFound
	}
	err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM accounts WHERE user_id = $1`, userID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM profiles WHERE user_id = $1 AND field = $2`, userID, key)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return err
	}
	if err != nil {
		return fmt.Errorf("userapi: delete profile field %q of %s: %w", key, userID, err)
	}
	return nil
}
