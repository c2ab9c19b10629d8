package userapi

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/storage"
)

// filterAttempts bounds the retries when two concurrent uploads of one user draw the same ID.
const filterAttempts = 5

// CreateFilter stores a filter and returns its ID: a per-user sequence number (0, 1, 2 …).
// Uploading a filter the user already has returns that filter's ID, because many clients upload
// the same filter on every start.
func (u *Users) CreateFilter(ctx context.Context, userID id.UserID, filter json.RawMessage) (string, error) {
	var compact bytes.Buffer
	if err := json.Compact(&compact, filter); err != nil {
		return "", fmt.Errorf("userapi: create filter for %s: not JSON: %w", userID, err)
	}
	content := compact.String()
	var filterID int64
	for attempt := 1; ; attempt++ {
		err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
			err := tx.QueryRow(ctx, `SELECT filter_id FROM filters WHERE user_id = $1 AND content = $2
				ORDER BY filter_id LIMIT 1`, userID, content).Scan(&filterID)
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			return tx.QueryRow(ctx, `INSERT INTO filters (user_id, filter_id, content)
				SELECT $1, COALESCE(MAX(filter_id) + 1, 0), $2 FROM filters WHERE user_id = $1
				RETURNING filter_id`, userID, content).Scan(&filterID)
		})
		// On PostgreSQL two transactions can read the same MAX; the loser's insert violates the
		// key, and running it again reads the winner's row.
		if storage.IsUniqueViolation(err) && attempt < filterAttempts {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("userapi: create filter for %s: %w", userID, err)
		}
		return strconv.FormatInt(filterID, 10), nil
	}
}

// Filter returns a stored filter of userID, ErrNotFound if none (including IDs that are not
// numbers, and other users' filters).
func (u *Users) Filter(ctx context.Context, userID id.UserID, filterID string) (json.RawMessage, error) {
	n, err := strconv.ParseInt(filterID, 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != filterID { // one spelling per filter

		return nil, ErrNotFound
	}
	var content string
	err = u.db.QueryRow(ctx, `SELECT content FROM filters WHERE user_id = $1 AND filter_id = $2`, userID, n).Scan(&content)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("userapi: load filter %s of %s: %w", filterID, userID, err)
	}
	return json.RawMessage(content), nil
}
