package userapi

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver/pdu"
	"github.com/latticehq/lattice/storage"
)

// backupMigrations create the server-side key backup tables, as version 3 of the key component.
var backupMigrations = []storage.Migration{{
	Version: 3,
	Name:    "server-side key backups",
	// A deleted version keeps its row (deleted) so that its number is never handed out again:
	// a client still writing to it must be told it is gone, not land in a new backup.
	SQL: `CREATE TABLE e2e_backup_versions (
		user_id   TEXT    NOT NULL,
		version   BIGINT  NOT NULL,
		algorithm TEXT    NOT NULL,
		auth_data TEXT    NOT NULL,
		etag      BIGINT  NOT NULL,
		deleted   BOOLEAN NOT NULL,
		PRIMARY KEY (user_id, version)
	);
	CREATE TABLE e2e_backup_keys (
		user_id             TEXT    NOT NULL,
		version             BIGINT  NOT NULL,
		room_id             TEXT    NOT NULL,
		session_id          TEXT    NOT NULL,
		first_message_index BIGINT  NOT NULL,
		forwarded_count     BIGINT  NOT NULL,
		is_verified         BOOLEAN NOT NULL,
		session_data        TEXT    NOT NULL,
		PRIMARY KEY (user_id, version, room_id, session_id)
	);`,
}}

// KeyBackup describes one backup version (client-server API, "Server-side key backups").
type KeyBackup struct {
	Version   string          `json:"version"`
	Algorithm string          `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Count     int             `json:"count"`
	ETag      string          `json:"etag"`
}

// BackupKey is one session's key in a backup (KeyBackupData).
type BackupKey struct {
	FirstMessageIndex int64           `json:"first_message_index"`
	ForwardedCount    int64           `json:"forwarded_count"`
	IsVerified        bool            `json:"is_verified"`
	SessionData       json.RawMessage `json:"session_data"`
}

// WrongBackupVersionError refuses a write to a backup version that is not the latest.
type WrongBackupVersionError struct {
	Current string // the latest version
}

func (e *WrongBackupVersionError) Error() string {
	return "userapi: backup version is not the current one, " + e.Current
}

// better reports whether key k should replace the stored key old (end-to-end encryption module,
// "Server-side key backups"): a verified key wins over an unverified one, then the lower
// first_message_index, then the lower forwarded_count.
func (k BackupKey) better(old BackupKey) bool {
	if k.IsVerified != old.IsVerified {
		return k.IsVerified
	}
	if k.FirstMessageIndex != old.FirstMessageIndex {
		return k.FirstMessageIndex < old.FirstMessageIndex
	}
	return k.ForwardedCount < old.ForwardedCount
}

// parseBackupVersion reads a version string; anything else is an unknown version.
func parseBackupVersion(v string) (int64, bool) {
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil && n > 0
}

// canonicalObject checks that raw is a JSON object and returns it in canonical JSON.
func canonicalObject(what string, raw json.RawMessage) (string, error) {
	c, err := pdu.CanonicalJSON(raw)
	if err != nil || len(c) == 0 || c[0] != '{' {
		return "", invalidKeys("%s must be an object", what)
	}
	return string(c), nil
}

// CreateKeyBackup creates a new backup version, which becomes the latest, and returns it.
func (u *Users) CreateKeyBackup(ctx context.Context, user id.UserID, algorithm string, authData json.RawMessage) (string, error) {
	if algorithm == "" {
		return "", invalidKeys("algorithm is required")
	}
	auth, err := canonicalObject("auth_data", authData)
	if err != nil {
		return "", err
	}
	var version int64
	err = u.db.WithTx(ctx, func(tx *storage.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) + 1 FROM e2e_backup_versions WHERE user_id = $1`, user).Scan(&version); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO e2e_backup_versions (user_id, version, algorithm, auth_data, etag, deleted)
			VALUES ($1, $2, $3, $4, 0, FALSE)`, user, version, algorithm, auth)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("userapi: create key backup of %s: %w", user, err)
	}
	return strconv.FormatInt(version, 10), nil
}

// latestBackup returns the user's latest backup version and its etag; 0 if none.
func latestBackup(ctx context.Context, tx *storage.Tx, user id.UserID) (version, etag int64, err error) {
	err = tx.QueryRow(ctx, `SELECT version, etag FROM e2e_backup_versions WHERE user_id = $1 AND NOT deleted
		ORDER BY version DESC LIMIT 1`, user).Scan(&version, &etag)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, nil
	}
	return version, etag, err
}

// backupVersion resolves a version string ("" for the latest) to an existing version.
func backupVersion(ctx context.Context, tx *storage.Tx, user id.UserID, v string) (int64, error) {
	if v == "" {
		latest, _, err := latestBackup(ctx, tx, user)
		if err != nil {
			return 0, err
		}
		if latest == 0 {
			return 0, ErrNotFound
		}
		return latest, nil
	}
	n, ok := parseBackupVersion(v)
	if !ok {
		return 0, ErrNotFound
	}
	var deleted bool
	err := tx.QueryRow(ctx, `SELECT deleted FROM e2e_backup_versions WHERE user_id = $1 AND version = $2`, user, n).Scan(&deleted)
	if errors.Is(err, sql.ErrNoRows) || err == nil && deleted {
		return 0, ErrNotFound
	}
	return n, err
}

// GetKeyBackup returns a backup version ("" for the latest) with its key count and etag;
// ErrNotFound if there is none or it was deleted.
func (u *Users) GetKeyBackup(ctx context.Context, user id.UserID, version string) (*KeyBackup, error) {
	var b KeyBackup
	err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
		n, err := backupVersion(ctx, tx, user, version)
		if err != nil {
			return err
		}
		var auth string
		var etag int64
		if err := tx.QueryRow(ctx, `SELECT algorithm, auth_data, etag FROM e2e_backup_versions WHERE user_id = $1 AND version = $2`,
			user, n).Scan(&b.Algorithm, &auth, &etag); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM e2e_backup_keys WHERE user_id = $1 AND version = $2`, user, n).Scan(&b.Count); err != nil {
			return err
		}
		b.Version, b.AuthData, b.ETag = strconv.FormatInt(n, 10), json.RawMessage(auth), strconv.FormatInt(etag, 10)
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("userapi: key backup %q of %s: %w", version, user, err)
	}
	return &b, nil
}

// UpdateKeyBackup replaces a backup version's auth_data; the algorithm may not change
// (ErrInvalidKeys). ErrNotFound if the version does not exist.
func (u *Users) UpdateKeyBackup(ctx context.Context, user id.UserID, version, algorithm string, authData json.RawMessage) error {
	auth, err := canonicalObject("auth_data", authData)
	if err != nil {
		return err
	}
	err = u.db.WithTx(ctx, func(tx *storage.Tx) error {
		n, err := backupVersion(ctx, tx, user, version)
		if err != nil {
			return err
		}
		var current string
		if err := tx.QueryRow(ctx, `SELECT algorithm FROM e2e_backup_versions WHERE user_id = $1 AND version = $2`, user, n).Scan(&current); err != nil {
			return err
		}
		if algorithm != current {
			return invalidKeys("the algorithm of a backup cannot change")
		}
		_, err = tx.Exec(ctx, `UPDATE e2e_backup_versions SET auth_data = $3 WHERE user_id = $1 AND version = $2`, user, n, auth)
		return err
	})
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalidKeys) {
		return err
	}
	if err != nil {
		return fmt.Errorf("userapi: update key backup %s of %s: %w", version, user, err)
	}
	return nil
}

// DeleteKeyBackup deletes a backup version and its keys; ErrNotFound if there is none.
func (u *Users) DeleteKeyBackup(ctx context.Context, user id.UserID, version string) error {
	err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
		n, err := backupVersion(ctx, tx, user, version)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM e2e_backup_keys WHERE user_id = $1 AND version = $2`, user, n); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE e2e_backup_versions SET deleted = TRUE WHERE user_id = $1 AND version = $2`, user, n)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return err
	}
	if err != nil {
		return fmt.Errorf("userapi: delete key backup %s of %s: %w", version, user, err)
	}
	return nil
}

// backupCount returns a version's key count and etag.
func backupCount(ctx context.Context, tx *storage.Tx, user id.UserID, n int64) (int, string, error) {
	var count int
	var etag int64
	if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM e2e_backup_keys WHERE user_id = $1 AND version = $2`, user, n).Scan(&count); err != nil {
		return 0, "", err
	}
	if err := tx.QueryRow(ctx, `SELECT etag FROM e2e_backup_versions WHERE user_id = $1 AND version = $2`, user, n).Scan(&etag); err != nil {
		return 0, "", err
	}
	return count, strconv.FormatInt(etag, 10), nil
}

// PutBackupKeys stores session keys in the latest backup version, keeping for each session the
// better of the stored and the new key (BackupKey.better). A version that is not the latest is
// refused with *WrongBackupVersionError, and ErrNotFound when the user has no backup. It returns
// the version's key count and etag, which changes whenever a key does.
func (u *Users) PutBackupKeys(ctx context.Context, user id.UserID, version string, keys map[id.RoomID]map[string]BackupKey) (int, string, error) {
	for room, sessions := range keys {
		for session, k := range sessions {
			if _, err := canonicalObject("session_data", k.SessionData); err != nil {
				return 0, "", err
			}
			if room == "" || session == "" || k.FirstMessageIndex < 0 || k.ForwardedCount < 0 {
				return 0, "", invalidKeys("invalid key of room %q session %q", room, session)
			}
		}
	}
	var count int
	var etag string
	err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
		latest, _, err := latestBackup(ctx, tx, user)
		if err != nil {
			return err
		}
		if latest == 0 {
			return ErrNotFound
		}
		if n, ok := parseBackupVersion(version); !ok || n != latest {
			return &WrongBackupVersionError{Current: strconv.FormatInt(latest, 10)}
		}
		changed := false
		for room, sessions := range keys {
			for session, k := range sessions {
				var old BackupKey
				err := tx.QueryRow(ctx, `SELECT first_message_index, forwarded_count, is_verified FROM e2e_backup_keys
					WHERE user_id = $1 AND version = $2 AND room_id = $3 AND session_id = $4`, user, latest, room, session).
					Scan(&old.FirstMessageIndex, &old.ForwardedCount, &old.IsVerified)
				switch {
				case errors.Is(err, sql.ErrNoRows):
				case err != nil:
					return err
				case !k.better(old):
					continue
				}
				data, _ := canonicalObject("session_data", k.SessionData)
				if _, err := tx.Exec(ctx, `INSERT INTO e2e_backup_keys (user_id, version, room_id, session_id,
					first_message_index, forwarded_count, is_verified, session_data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
					ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET first_message_index = excluded.first_message_index,
						forwarded_count = excluded.forwarded_count, is_verified = excluded.is_verified, session_data = excluded.session_data`,
					user, latest, room, session, k.FirstMessageIndex, k.ForwardedCount, k.IsVerified, data); err != nil {
					return fmt.Errorf("store key of %s %s: %w", room, session, err)
				}
				changed = true
			}
		}
		if changed {
			if _, err := tx.Exec(ctx, `UPDATE e2e_backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2`, user, latest); err != nil {
				return err
			}
		}
		count, etag, err = backupCount(ctx, tx, user, latest)
		return err
	})
	var wrong *WrongBackupVersionError
	if errors.Is(err, ErrNotFound) || errors.As(err, &wrong) {
		return 0, "", err
	}
	if err != nil {
		return 0, "", fmt.Errorf("userapi: put backup keys of %s: %w", user, err)
	}
	return count, etag, nil
}

// BackupKeys returns the keys of a backup version: all, one room's (room set) or one session's
// (session set too). ErrNotFound if the version does not exist.
func (u *Users) BackupKeys(ctx context.Context, user id.UserID, version string, room id.RoomID, session string) (map[id.RoomID]map[string]BackupKey, error) {
	out := map[id.RoomID]map[string]BackupKey{}
	err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
		clear(out)
		n, err := backupVersion(ctx, tx, user, version)
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data
			FROM e2e_backup_keys WHERE user_id = $1 AND version = $2 AND ($3 = '' OR room_id = $3) AND ($4 = '' OR session_id = $4)`,
			user, n, string(room), session)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r id.RoomID
			var s, data string
			var k BackupKey
			if err := rows.Scan(&r, &s, &k.FirstMessageIndex, &k.ForwardedCount, &k.IsVerified, &data); err != nil {
				return err
			}
			k.SessionData = json.RawMessage(data)
			if out[r] == nil {
				out[r] = map[string]BackupKey{}
			}
			out[r][s] = k
		}
		return rows.Err()
	})
	if errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("userapi: backup keys of %s: %w", user, err)
	}
	return out, nil
}

// DeleteBackupKeys deletes keys of a backup version: all, one room's or one session's. It returns
// the version's key count and etag; ErrNotFound if the version does not exist.
func (u *Users) DeleteBackupKeys(ctx context.Context, user id.UserID, version string, room id.RoomID, session string) (int, string, error) {
	var count int
	var etag string
	err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
		n, err := backupVersion(ctx, tx, user, version)
		if err != nil {
			return err
		}
		res, err := tx.Exec(ctx, `DELETE FROM e2e_backup_keys WHERE user_id = $1 AND version = $2
			AND ($3 = '' OR room_id = $3) AND ($4 = '' OR session_id = $4)`, user, n, string(room), session)
		if err != nil {
			return err
		}
		if deleted, err := res.RowsAffected(); err != nil {
			return err
		} else if deleted > 0 {
			if _, err := tx.Exec(ctx, `UPDATE e2e_backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2`, user, n); err != nil {
				return err
			}
		}
		count, etag, err = backupCount(ctx, tx, user, n)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return 0, "", err
	}
	if err != nil {
		return 0, "", fmt.Errorf("userapi: delete backup keys of %s: %w", user, err)
	}
	return count, etag, nil
}
