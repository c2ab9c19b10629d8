package mediastore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/latticehq/lattice/storage"
)

// Thumbnail is a generated thumbnail of one media item at one pre-set size and method.
type Thumbnail struct {
	ServerName string
	MediaID    string
	Method     string // "crop" or "scale"
	// ReqWidth and ReqHeight are the pre-set size the thumbnail answers for.
	ReqWidth, ReqHeight int
	// Width and Height are the thumbnail's own dimensions.
	Width, Height int
	SHA256        string
	Size          int64
	ContentType   string
	CreatedTS     int64
}

// Thumbnail returns the thumbnail of a media item at a pre-set size, ErrNotFound if none was
// made yet.
func (s *Store) Thumbnail(ctx context.Context, serverName, mediaID, method string, reqWidth, reqHeight int) (*Thumbnail, error) {
	t := Thumbnail{ServerName: serverName, MediaID: mediaID, Method: method, ReqWidth: reqWidth, ReqHeight: reqHeight}
	err := s.db.QueryRow(ctx, `SELECT width, height, sha256, size, content_type, created_ts FROM media_thumbnails
		WHERE server_name = $1 AND media_id = $2 AND method = $3 AND req_width = $4 AND req_height = $5`,
		serverName, mediaID, method, reqWidth, reqHeight).Scan(&t.Width, &t.Height, &t.SHA256, &t.Size, &t.ContentType, &t.CreatedTS)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("mediastore: thumbnail of %s/%s: %w", serverName, mediaID, err)
	}
	return &t, nil
}

// PutThumbnail stores a thumbnail unless one of its media item, method and pre-set size is
// stored already (then it is kept), and only while the media item exists: ErrNotFound
// otherwise, so a thumbnail made during a deletion leaves no row behind.
func (s *Store) PutThumbnail(ctx context.Context, t Thumbnail) error {
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		res, err := tx.Exec(ctx, `INSERT INTO media_thumbnails (server_name, media_id, method, req_width, req_height,
				width, height, sha256, size, content_type, created_ts)
			SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11
			WHERE EXISTS (SELECT 1 FROM media WHERE server_name = $1 AND media_id = $2)
			ON CONFLICT (server_name, media_id, method, req_width, req_height) DO NOTHING`,
			t.ServerName, t.MediaID, t.Method, t.ReqWidth, t.ReqHeight, t.Width, t.Height, t.SHA256, t.Size, t.ContentType, t.CreatedTS)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errNothingInserted
		}
		return nil
	})
	if errors.Is(err, errNothingInserted) {
		if _, err := s.Get(ctx, t.ServerName, t.MediaID); err != nil {
			return err // ErrNotFound when the media item is gone
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("mediastore: store thumbnail of %s/%s: %w", t.ServerName, t.MediaID, err)
	}
	return nil
}
