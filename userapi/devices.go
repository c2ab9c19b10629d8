package userapi

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/storage"
)

// CreateDevice logs a user in on a device and returns its tokens. A device ID the user already
// has is reused: the device keeps its keys and history, is renamed if a name is given, and its
// previous access and refresh tokens are revoked (client-server API, "Relationship between
// access tokens and devices"). ErrNotFound or ErrDeactivated unless the account is active.
func (u *Users) CreateDevice(ctx context.Context, req NewDevice) (*Device, Tokens, error) {
	if !u.isLocal(req.UserID) {
		return nil, Tokens{}, ErrNotFound
	}
	now := u.now()
	var toks Tokens
	var accessHash, refreshHash tokenHash
	toks.AccessToken, accessHash = newToken(accessTokenPrefix)
	withRefresh := req.WithRefresh && u.opts.AccessTokenLifetime > 0
	if withRefresh {
		toks.RefreshToken, refreshHash = newToken(refreshTokenPrefix)
		toks.ExpiresIn = u.opts.AccessTokenLifetime
	}
	var dev *Device
	var reused bool
	var listPos int64
	err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
		listPos = 0
		acc, err := scanAccount(tx.QueryRow(ctx, `SELECT `+accountColumns+` FROM accounts WHERE user_id = $1`, req.UserID))
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return err
		} else if acc.Deactivated {
			return ErrDeactivated
		}
		dev = &Device{
			UserID: req.UserID, DeviceID: req.DeviceID, DisplayName: req.DisplayName,
			LastSeenTS: now.UnixMilli(), LastSeenIP: req.IP, LastSeenUA: req.UserAgent,
			IsGuest: acc.IsGuest, IsAdmin: acc.IsAdmin,
		}
		if reused, err = insertDevice(ctx, tx, dev, req.DeviceID == ""); err != nil {
			return err
		}
		if reused {
			if err := reuseDevice(ctx, tx, dev); err != nil {
				return err
			}
		}
		var refreshID sql.NullInt64
		if withRefresh {
			refreshID.Valid = true
			err := tx.QueryRow(ctx, `INSERT INTO refresh_tokens (token_hash, user_id, device_id, expires_at, created_ts)
				VALUES ($1, $2, $3, $4, $5) RETURNING id`,
				refreshHash[:], dev.UserID, dev.DeviceID, msOrNull(now, u.opts.RefreshTokenLifetime), now.UnixMilli(),
			).Scan(&refreshID.Int64)
			if err != nil {
				return fmt.Errorf("store refresh token: %w", err)
			}
		}
		if err := insertAccessToken(ctx, tx, accessHash, dev, msOrNull(now, toks.ExpiresIn), refreshID, now.UnixMilli()); err != nil {
			return err
		}
		if reused && req.DisplayName == "" {
			return nil // the same device logging in again: nothing /keys/query shows has changed
		}
		listPos, err = RecordDeviceListChange(ctx, tx, dev.UserID, []id.DeviceID{dev.DeviceID}, false)
		return err
	})
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrDeactivated) {
		return nil, Tokens{}, err
	}
	if err != nil {
		return nil, Tokens{}, fmt.Errorf("userapi: create device for %s: %w", req.UserID, err)
	}
	if reused {
		u.revoked(req.UserID)
	}
	u.deviceListChanged(req.UserID, listPos)
	return dev, toks, nil
}

// insertDevice adds dev, with a generated ID if generate; it reports false, not an error, when
// dev's given ID already exists.
func insertDevice(ctx context.Context, tx *storage.Tx, dev *Device, generate bool) (exists bool, err error) {
	for {
		if generate {
			dev.DeviceID = newDeviceID()
		}
		// DO NOTHING rather than a unique violation, which would abort a PostgreSQL transaction,
		// and which a concurrent login with the same device ID could provoke.
		res, err := tx.Exec(ctx, `INSERT INTO devices
			(user_id, device_id, display_name, last_seen_ts, last_seen_ip, last_seen_ua, created_ts)
			VALUES ($1, $2, $3, $4, $5, $6, $4) ON CONFLICT (user_id, device_id) DO NOTHING`,
			dev.UserID, dev.DeviceID, dev.DisplayName, dev.LastSeenTS, dev.LastSeenIP, dev.LastSeenUA)
		if err != nil {
			return false, fmt.Errorf("insert device: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return false, fmt.Errorf("insert device: %w", err)
		}
		if n == 1 {
			return false, nil
		}
		if !generate {
			return true, nil
		}
		// A generated ID collided with one of the user's devices (26^10 IDs): draw again.
	}
}

// reuseDevice revokes the tokens of an existing device, renames it if dev has a name, notes the
// login as its last use, and fills in dev's name from the row.
func reuseDevice(ctx context.Context, tx *storage.Tx, dev *Device) error {
	if err := deleteTokens(ctx, tx, dev.UserID, dev.DeviceID); err != nil {
		return err
	}
	err := tx.QueryRow(ctx, `UPDATE devices
		SET display_name = CASE WHEN $3 = '' THEN display_name ELSE $3 END,
			last_seen_ts = $4, last_seen_ip = $5, last_seen_ua = $6
		WHERE user_id = $1 AND device_id = $2 RETURNING display_name`,
		dev.UserID, dev.DeviceID, dev.DisplayName, dev.LastSeenTS, dev.LastSeenIP, dev.LastSeenUA,
	).Scan(&dev.DisplayName)
	if err != nil {
		return fmt.Errorf("update reused device: %w", err)
	}
	return nil
}

// insertAccessToken stores the hash of a new access token of dev.
func insertAccessToken(ctx context.Context, tx *storage.Tx, h tokenHash, dev *Device, expires, refreshID sql.NullInt64, nowMS int64) error {
	_, err := tx.Exec(ctx, `INSERT INTO access_tokens (token_hash, user_id, device_id, expires_at, refresh_token_id, created_ts)
		VALUES ($1, $2, $3, $4, $5, $6)`, h[:], dev.UserID, dev.DeviceID, expires, refreshID, nowMS)
	if err != nil {
		return fmt.Errorf("store access token: %w", err)
	}
	return nil
}

// deleteTokens revokes every access and refresh token of one device.
func deleteTokens(ctx context.Context, tx *storage.Tx, userID id.UserID, deviceID id.DeviceID) error {
	if _, err := tx.Exec(ctx, `DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2`, userID, deviceID); err != nil {
		return fmt.Errorf("delete access tokens: %w", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM refresh_tokens WHERE user_id = $1 AND device_id = $2`, userID, deviceID); err != nil {
		return fmt.Errorf("delete refresh tokens: %w", err)
	}
	return nil
}

// deleteDevicesExcept deletes every device of userID but keep ("" keeps none), with their tokens,
// and records the deletions on the device-list stream; it returns that position, 0 if no device
// was deleted.
func deleteDevicesExcept(ctx context.Context, tx *storage.Tx, userID id.UserID, keep id.DeviceID) (int64, error) {
	for _, table := range []string{"access_tokens", "refresh_tokens"} {
		if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE user_id = $1 AND device_id <> $2`, userID, keep); err != nil {
			return 0, fmt.Errorf("delete from %s: %w", table, err)
		}
	}
	rows, err := tx.Query(ctx, `DELETE FROM devices WHERE user_id = $1 AND device_id <> $2 RETURNING device_id`, userID, keep)
	if err != nil {
		return 0, fmt.Errorf("delete from devices: %w", err)
	}
	var deleted []id.DeviceID
	for rows.Next() {
		var d id.DeviceID
		if err := rows.Scan(&d); err != nil {
			rows.Close()
			return 0, fmt.Errorf("delete from devices: %w", err)
		}
		deleted = append(deleted, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("delete from devices: %w", err)
	}
	if len(deleted) == 0 {
		return 0, nil
	}
	return devicesDeleted(ctx, tx, userID, deleted)
}

// revoked drops the cached sessions of userID after a committed change revoked some of its
// tokens or altered what its cached devices say.
func (u *Users) revoked(userID id.UserID) { u.cache.invalidateUser(userID) }

// Devices lists a user's devices, ordered by device ID.
func (u *Users) Devices(ctx context.Context, userID id.UserID) ([]Device, error) {
	rows, err := u.db.Query(ctx, `SELECT `+deviceColumns+`
		FROM devices d JOIN accounts a ON a.user_id = d.user_id
		WHERE d.user_id = $1 ORDER BY d.device_id`, userID)
	if err != nil {
		return nil, fmt.Errorf("userapi: list devices of %s: %w", userID, err)
	}
	defer rows.Close()
	var out []Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("userapi: list devices of %s: %w", userID, err)
		}
		u.seen.overlay(d)
		out = append(out, *d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("userapi: list devices of %s: %w", userID, err)
	}
	return out, nil
}

const deviceColumns = `d.user_id, d.device_id, d.display_name, d.last_seen_ts, d.last_seen_ip, d.last_seen_ua, a.is_guest, a.is_admin`

func scanDevice(row interface{ Scan(...any) error }, extra ...any) (*Device, error) {
	var d Device
	dest := append([]any{&d.UserID, &d.DeviceID, &d.DisplayName, &d.LastSeenTS, &d.LastSeenIP, &d.LastSeenUA, &d.IsGuest, &d.IsAdmin}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	return &d, nil
}

// Device returns one device, ErrNotFound if none.
func (u *Users) Device(ctx context.Context, userID id.UserID, deviceID id.DeviceID) (*Device, error) {
	d, err := scanDevice(u.db.QueryRow(ctx, `SELECT `+deviceColumns+`
		FROM devices d JOIN accounts a ON a.user_id = d.user_id
		WHERE d.user_id = $1 AND d.device_id = $2`, userID, deviceID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("userapi: load device %s of %s: %w", deviceID, userID, err)
	}
	u.seen.overlay(d)
	return d, nil
}

// RenameDevice sets a device's display name; ErrNotFound if none.
func (u *Users) RenameDevice(ctx context.Context, userID id.UserID, deviceID id.DeviceID, name string) error {
	var n, listPos int64
	err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2`, userID, deviceID, name)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		// The name is part of what /keys/query answers (unsigned.device_display_name).
		listPos, err = RecordDeviceListChange(ctx, tx, userID, []id.DeviceID{deviceID}, false)
		return err
	})
	if err != nil {
		return fmt.Errorf("userapi: rename device %s of %s: %w", deviceID, userID, err)
	}
	if n == 0 {
		return ErrNotFound
	}
	u.revoked(userID) // cached devices carry the name
	u.deviceListChanged(userID, listPos)
	return nil
}

// DeleteDevices deletes devices and their tokens; unknown IDs are ignored.
func (u *Users) DeleteDevices(ctx context.Context, userID id.UserID, deviceIDs []id.DeviceID) error {
	if len(deviceIDs) == 0 {
		return nil
	}
	var listPos int64
	err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
		var deleted []id.DeviceID
		for _, d := range deviceIDs {
			if err := deleteTokens(ctx, tx, userID, d); err != nil {
				return err
			}
			res, err := tx.Exec(ctx, `DELETE FROM devices WHERE user_id = $1 AND device_id = $2`, userID, d)
			if err != nil {
				return fmt.Errorf("delete device %s: %w", d, err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return fmt.Errorf("delete device %s: %w", d, err)
			} else if n > 0 {
				deleted = append(deleted, d)
			}
		}
		listPos = 0
		if len(deleted) == 0 {
			return nil
		}
		var err error
		listPos, err = devicesDeleted(ctx, tx, userID, deleted)
		return err
	})
	if err != nil {
		return fmt.Errorf("userapi: delete devices of %s: %w", userID, err)
	}
	u.revoked(userID)
	u.deviceListChanged(userID, listPos)
	return nil
}

// DeleteAllDevices deletes every device of the user but keep ("" keeps none), with their tokens.
func (u *Users) DeleteAllDevices(ctx context.Context, userID id.UserID, keep id.DeviceID) error {
	var listPos int64
	err := u.db.WithTx(ctx, func(tx *storage.Tx) (err error) {
		listPos, err = deleteDevicesExcept(ctx, tx, userID, keep)
		return err
	})
	if err != nil {
		return fmt.Errorf("userapi: delete devices of %s: %w", userID, err)
	}
	u.revoked(userID)
	u.deviceListChanged(userID, listPos)
	return nil
}
