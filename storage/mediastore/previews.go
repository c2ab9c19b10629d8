package mediastore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/latticehq/lattice/storage"
)

// Preview returns the cached preview (its JSON) of a URL in a time bucket, ErrNotFound if none.
func (s *Store) Preview(ctx context.Context, url string, bucket int64) ([]byte, error) {
	var p string
	err := s.db.QueryRow(ctx, `SELECT preview FROM media_previews WHERE url = $1 AND bucket = $2`, url, bucket).Scan(&p)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("mediastore: preview: %w", err)
	}
	return []byte(p), nil
}

// PutPreview caches the preview of a URL in a time bucket, replacing one cached before.
func (s *Store) PutPreview(ctx context.Context, url string, bucket int64, preview []byte, now int64) error {
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO media_previews (url, bucket, preview, created_ts) VALUES ($1, $2, $3, $4)
			ON CONFLICT (url, bucket) DO UPDATE SET preview = excluded.preview, created_ts = excluded.created_ts`,
			url, bucket, string(preview), now)
		return err
	})
	if err != nil {
		return fmt.Errorf("mediastore: store preview: %w", err)
	}
	return nil
}

// DeletePreviewsBefore drops previews cached before ts and returns how many.
func (s *Store) DeletePreviewsBefore(ctx context.Context, ts int64) (int, error) {
	var n int64
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM media_previews WHERE created_ts < $1`, ts)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("mediastore: delete old previews: %w", err)
	}
	return int(n), nil
}
