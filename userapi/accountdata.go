package userapi

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/storage"
)

// SetAccountData stores account data (roomID "" for global), moves it to a new position of the
// account_data stream in the same transaction (design principle 2) and wakes the user's waiters.
func (u *Users) SetAccountData(ctx context.Context, userID id.UserID, roomID id.RoomID, typ string, content json.RawMessage) error {
	if !json.Valid(content) {
		return fmt.Errorf("userapi: set account data %s of %s: content is not JSON", typ, userID)
	}
	var pos int64
	err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
		// The position is drawn by the last statement but one: from here to the commit, other
		// writers of the stream wait (see NextStreamPosition).
		var err error
		if pos, err = tx.NextStreamPosition(ctx, StreamAccountData); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO account_data (user_id, room_id, type, content, position)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content, position = excluded.position`,
			userID, roomID, typ, string(content), pos)
		return err
	})
	if err != nil {
		return fmt.Errorf("userapi: set account data %s of %s: %w", typ, userID, err)
	}
	if roomID == "" && typ == IgnoredUserListType {
		u.ignores.set(userID, content)
	}
	u.notify(StreamAccountData, pos, UserKey(userID))
	return nil
}

// GetAccountData returns one entry's content, ErrNotFound if none.
func (u *Users) GetAccountData(ctx context.Context, userID id.UserID, roomID id.RoomID, typ string) (json.RawMessage, error) {
	var content string
	err := u.db.QueryRow(ctx, `SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3`,
		userID, roomID, typ).Scan(&content)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("userapi: load account data %s of %s: %w", typ, userID, err)
	}
	return json.RawMessage(content), nil
}

// AccountDataSince returns the user's entries changed after position from (0: all) in stream
// order, and the position to continue from: at least the stream's position when the call began,
// so a caller's token moves on even when this user had nothing new. With from 0 the entries
// include m.push_rules with the current ruleset, at position 0 if the user never changed it.
func (u *Users) AccountDataSince(ctx context.Context, userID id.UserID, from int64) ([]AccountData, int64, error) {
	// Read the stream position before the entries: positions commit in order, so every change
	// up to it is visible to the query that follows.
	next, err := u.db.StreamPosition(ctx, StreamAccountData)
	if err != nil {
		return nil, 0, fmt.Errorf("userapi: account data of %s: %w", userID, err)
	}
	next = max(next, from)
	rows, err := u.db.Query(ctx, `SELECT room_id, type, content, position FROM account_data
		WHERE user_id = $1 AND position > $2 ORDER BY position`, userID, from)
	if err != nil {
		return nil, 0, fmt.Errorf("userapi: account data of %s: %w", userID, err)
	}
	defer rows.Close()
	var out []AccountData
	for rows.Next() {
		var ad AccountData
		var content string
		if err := rows.Scan(&ad.RoomID, &ad.Type, &content, &ad.Position); err != nil {
			return nil, 0, fmt.Errorf("userapi: account data of %s: %w", userID, err)
		}
		ad.Content = json.RawMessage(content)
		next = max(next, ad.Position)
		out = append(out, ad)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("userapi: account data of %s: %w", userID, err)
	}
	if from == 0 {
		// The whole account data always has the current push rules, even for a user who never
		// changed one (pushrules.go).
		if out, err = u.withCurrentPushRules(ctx, userID, out); err != nil {
			return nil, 0, fmt.Errorf("userapi: account data of %s: %w", userID, err)
		}
	}
	return out, next, nil
}
