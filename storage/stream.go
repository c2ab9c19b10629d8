package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// storageMigrations create the tables this package owns; Open applies them.
var storageMigrations = []Migration{{
	Version: 1,
	Name:    "stream positions",
	SQL: `CREATE TABLE stream_positions (
		stream   TEXT   NOT NULL PRIMARY KEY,
		position BIGINT NOT NULL
	)`,
}}

// NextStreamPosition allocates the next position of stream inside the writing transaction; the
// first position of a stream is 1 and positions have no gaps.
//
// A consumer reads "position > cursor", so a position must never become visible after a higher
// one. A sequence would break that: two transactions draw 5 and 6, and 6 may commit first. Instead
// the transaction updates the stream's counter row and holds that row's lock until it commits or
// rolls back, so writers of one stream are serialised from this call on and commit in position
// order (a rollback releases the number for the next writer). Call it as late in the transaction as
// possible to keep that window short; writers of other streams are not affected.
func (tx *Tx) NextStreamPosition(ctx context.Context, stream string) (int64, error) {
	var pos int64
	err := tx.QueryRow(ctx, `INSERT INTO stream_positions (stream, position) VALUES ($1, 1)
		ON CONFLICT (stream) DO UPDATE SET position = stream_positions.position + 1
		RETURNING position`, stream).Scan(&pos)
	if err != nil {
		return 0, fmt.Errorf("storage: next position of stream %s: %w", stream, err)
	}
	return pos, nil
}

// StreamPosition returns the highest committed position of stream, or 0 when it was never used.
func (db *DB) StreamPosition(ctx context.Context, stream string) (int64, error) {
	var pos int64
	err := db.QueryRow(ctx, `SELECT position FROM stream_positions WHERE stream = $1`, stream).Scan(&pos)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("storage: position of stream %s: %w", stream, err)
	}
	return pos, nil
}
