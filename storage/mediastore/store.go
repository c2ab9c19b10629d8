// Package mediastore keeps the metadata of the media repository: one row per media item
// (local uploads, media IDs created for a later upload, cached remote media), one per
// generated thumbnail, and cached URL previews.
//
// The bytes live in files named by their SHA-256 (mediaapi owns the folder); rows name the
// hash, so one file serves every row with the same content, and a file may go only once no
// row of either table names its hash (HashRefs).
package mediastore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/latticehq/lattice/storage"
)

// Errors the store answers with.
var (
	ErrNotFound        = errors.New("mediastore: not found")
	ErrExists          = errors.New("mediastore: media ID already taken")
	ErrUploaded        = errors.New("mediastore: media already uploaded")
	ErrTooManyPending  = errors.New("mediastore: too many pending uploads")
	errNothingInserted = errors.New("mediastore: nothing inserted")
)

var migrations = []storage.Migration{{
	Version: 1,
	Name:    "media, thumbnails and URL previews",
	// media: sha256 is "" and uploaded_ts 0 while a created media ID waits for its upload
	// (expires_ts is then its unused_expires_at); user_id is "" for remote and server-owned
	// media. legacy_access is 0 for media stored while unauthenticated access was frozen.
	// media_thumbnails: req_width/req_height/method name the pre-set size it answers; width
	// and height are the thumbnail's own.
	SQL: `CREATE TABLE media (
		server_name   TEXT    NOT NULL,
		media_id      TEXT    NOT NULL,
		sha256        TEXT    NOT NULL,
		size          BIGINT  NOT NULL,
		content_type  TEXT    NOT NULL,
		filename      TEXT    NOT NULL,
		user_id       TEXT    NOT NULL,
		created_ts    BIGINT  NOT NULL,
		uploaded_ts   BIGINT  NOT NULL,
		expires_ts    BIGINT  NOT NULL,
		quarantined   INTEGER NOT NULL,
		legacy_access INTEGER NOT NULL,
		PRIMARY KEY (server_name, media_id)
	);
	CREATE INDEX media_user ON media (user_id, created_ts);
	CREATE INDEX media_sha256 ON media (sha256);
	CREATE INDEX media_pending ON media (expires_ts) WHERE uploaded_ts = 0;
	CREATE TABLE media_thumbnails (
		server_name  TEXT    NOT NULL,
		media_id     TEXT    NOT NULL,
		method       TEXT    NOT NULL,
		req_width    INTEGER NOT NULL,
		req_height   INTEGER NOT NULL,
		width        INTEGER NOT NULL,
		height       INTEGER NOT NULL,
		sha256       TEXT    NOT NULL,
		size         BIGINT  NOT NULL,
		content_type TEXT    NOT NULL,
		created_ts   BIGINT  NOT NULL,
		PRIMARY KEY (server_name, media_id, method, req_width, req_height)
	);
	CREATE INDEX media_thumbnails_sha256 ON media_thumbnails (sha256);
	CREATE TABLE media_previews (
		url        TEXT   NOT NULL,
		bucket     BIGINT NOT NULL,
		preview    TEXT   NOT NULL,
		created_ts BIGINT NOT NULL,
		PRIMARY KEY (url, bucket)
	);
	CREATE INDEX media_previews_created ON media_previews (created_ts);`,
}}

// Store is the media metadata on one database.
type Store struct{ db *storage.DB }

// Open migrates the media tables and returns the store.
func Open(ctx context.Context, db *storage.DB) (*Store, error) {
	if err := db.Migrate(ctx, "mediastore", migrations); err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// Media is one media item, identified by its origin server and media ID.
type Media struct {
	ServerName  string
	MediaID     string
	SHA256      string // hex; "" while pending
	Size        int64
	ContentType string
	Filename    string // "" when the upload named none
	UserID      string // the uploader; "" for remote and server-owned media
	CreatedTS   int64  // milliseconds since the epoch
	UploadedTS  int64  // 0 while pending
	ExpiresTS   int64  // while pending: when the created ID expires; 0 otherwise
	Quarantined bool
	// LegacyAccess allows the unauthenticated /_matrix/media/v3 download and thumbnail
	// endpoints; media stored while they are frozen lack it.
	LegacyAccess bool
}

// Pending reports whether the media ID was created and its content is not yet uploaded.
func (m *Media) Pending() bool { return m.UploadedTS == 0 }

const mediaColumns = `server_name, media_id, sha256, size, content_type, filename, user_id,
	created_ts, uploaded_ts, expires_ts, quarantined, legacy_access`

func scanMedia(sc interface{ Scan(...any) error }) (*Media, error) {
	var m Media
	var q, legacy int
	err := sc.Scan(&m.ServerName, &m.MediaID, &m.SHA256, &m.Size, &m.ContentType, &m.Filename, &m.UserID,
		&m.CreatedTS, &m.UploadedTS, &m.ExpiresTS, &q, &legacy)
	if err != nil {
		return nil, err
	}
	m.Quarantined, m.LegacyAccess = q != 0, legacy != 0
	return &m, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func insertMedia(ctx context.Context, tx *storage.Tx, m *Media) error {
	_, err := tx.Exec(ctx, `INSERT INTO media (`+mediaColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		m.ServerName, m.MediaID, m.SHA256, m.Size, m.ContentType, m.Filename, m.UserID,
		m.CreatedTS, m.UploadedTS, m.ExpiresTS, b2i(m.Quarantined), b2i(m.LegacyAccess))
	if storage.IsUniqueViolation(err) {
		return ErrExists
	}
	return err
}

// Insert stores a media item: ErrExists if its server name and media ID are taken.
func (s *Store) Insert(ctx context.Context, m Media) error {
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error { return insertMedia(ctx, tx, &m) })
	if err != nil && !errors.Is(err, ErrExists) {
		return fmt.Errorf("mediastore: insert %s/%s: %w", m.ServerName, m.MediaID, err)
	}
	return err
}

// CreatePending stores a created media ID without content (m.UploadedTS must be 0), unless
// its user already has maxPending created IDs that are neither uploaded nor expired at now:
// then ErrTooManyPending.
func (s *Store) CreatePending(ctx context.Context, m Media, maxPending int, now int64) error {
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		var n int
		err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM media
			WHERE user_id = $1 AND uploaded_ts = 0 AND expires_ts > $2`, m.UserID, now).Scan(&n)
		if err != nil {
			return err
		}
		if n >= maxPending {
			return ErrTooManyPending
		}
		return insertMedia(ctx, tx, &m)
	})
	if err != nil && !errors.Is(err, ErrTooManyPending) && !errors.Is(err, ErrExists) {
		return fmt.Errorf("mediastore: create %s/%s: %w", m.ServerName, m.MediaID, err)
	}
	return err
}

// Complete gives a pending media item its content: ErrNotFound if there is no such item or it
// expired before now, ErrUploaded if it already has content. Only the columns of the content
// (hash, size, type, file name, upload time and legacy access) are taken from m.
func (s *Store) Complete(ctx context.Context, m Media, now int64) error {
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE media SET sha256 = $3, size = $4, content_type = $5, filename = $6,
			uploaded_ts = $7, expires_ts = 0, legacy_access = $8
			WHERE server_name = $1 AND media_id = $2 AND uploaded_ts = 0 AND expires_ts > $9`,
			m.ServerName, m.MediaID, m.SHA256, m.Size, m.ContentType, m.Filename, m.UploadedTS, b2i(m.LegacyAccess), now)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 1 {
			return nil
		}
		var uploaded int64
		err = tx.QueryRow(ctx, `SELECT uploaded_ts FROM media WHERE server_name = $1 AND media_id = $2`,
			m.ServerName, m.MediaID).Scan(&uploaded)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return ErrNotFound
		case err != nil:
			return err
		case uploaded != 0:
			return ErrUploaded
		}
		return ErrNotFound // expired
	})
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrUploaded) {
		return fmt.Errorf("mediastore: complete %s/%s: %w", m.ServerName, m.MediaID, err)
	}
	return err
}

// Get returns one media item, ErrNotFound if there is none.
func (s *Store) Get(ctx context.Context, serverName, mediaID string) (*Media, error) {
	m, err := scanMedia(s.db.QueryRow(ctx, `SELECT `+mediaColumns+` FROM media
		WHERE server_name = $1 AND media_id = $2`, serverName, mediaID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("mediastore: get %s/%s: %w", serverName, mediaID, err)
	}
	return m, nil
}

// UserMedia lists the media a user uploaded or created, oldest first, at most limit.
func (s *Store) UserMedia(ctx context.Context, userID string, limit int) ([]Media, error) {
	rows, err := s.db.Query(ctx, `SELECT `+mediaColumns+` FROM media WHERE user_id = $1
		ORDER BY created_ts, media_id LIMIT $2`, userID, limit)
	if err != nil {
		return nil, fmt.Errorf("mediastore: media of %s: %w", userID, err)
	}
	defer rows.Close()
	var out []Media
	for rows.Next() {
		m, err := scanMedia(rows)
		if err != nil {
			return nil, fmt.Errorf("mediastore: media of %s: %w", userID, err)
		}
		out = append(out, *m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mediastore: media of %s: %w", userID, err)
	}
	return out, nil
}

// SetQuarantined quarantines or releases one media item; ErrNotFound if there is none.
func (s *Store) SetQuarantined(ctx context.Context, serverName, mediaID string, quarantined bool) error {
	var n int64
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE media SET quarantined = $3 WHERE server_name = $1 AND media_id = $2`,
			serverName, mediaID, b2i(quarantined))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("mediastore: quarantine %s/%s: %w", serverName, mediaID, err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// QuarantineUser quarantines or releases every media item of a user and returns how many
// changed.
func (s *Store) QuarantineUser(ctx context.Context, userID string, quarantined bool) (int, error) {
	var n int64
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE media SET quarantined = $2 WHERE user_id = $1 AND quarantined <> $2`,
			userID, b2i(quarantined))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("mediastore: quarantine media of %s: %w", userID, err)
	}
	return int(n), nil
}

// Delete removes a media item and its thumbnails in one transaction and returns the hashes
// their rows named (each once; the caller removes the files no row names any more).
// ErrNotFound if there is no such item.
func (s *Store) Delete(ctx context.Context, serverName, mediaID string) ([]string, error) {
	var hashes []string
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		hashes = hashes[:0]
		rows, err := tx.Query(ctx, `SELECT sha256 FROM media WHERE server_name = $1 AND media_id = $2
			UNION SELECT sha256 FROM media_thumbnails WHERE server_name = $1 AND media_id = $2`, serverName, mediaID)
		if err != nil {
			return err
		}
		for rows.Next() {
			var h string
			if err := rows.Scan(&h); err != nil {
				rows.Close()
				return err
			}
			if h != "" {
				hashes = append(hashes, h)
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM media_thumbnails WHERE server_name = $1 AND media_id = $2`, serverName, mediaID); err != nil {
			return err
		}
		res, err := tx.Exec(ctx, `DELETE FROM media WHERE server_name = $1 AND media_id = $2`, serverName, mediaID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNotFound
		}
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("mediastore: delete %s/%s: %w", serverName, mediaID, err)
	}
	return hashes, nil
}

// HashRefs counts the media and thumbnail rows that name a file hash.
func (s *Store) HashRefs(ctx context.Context, sha256 string) (int, error) {
	var n int
	err := s.db.QueryRow(ctx, `SELECT (SELECT COUNT(*) FROM media WHERE sha256 = $1)
		+ (SELECT COUNT(*) FROM media_thumbnails WHERE sha256 = $1)`, sha256).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("mediastore: references of %s: %w", sha256, err)
	}
	return n, nil
}

// DeleteExpiredPending removes created media IDs whose upload did not come before now and
// returns how many.
func (s *Store) DeleteExpiredPending(ctx context.Context, now int64) (int, error) {
	var n int64
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM media WHERE uploaded_ts = 0 AND expires_ts <= $1`, now)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("mediastore: delete expired media IDs: %w", err)
	}
	return int(n), nil
}
