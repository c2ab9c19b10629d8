package userapi

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/storage"
)

// keyOwnerMigrations record, per device with keys, which incarnation of the device the keys
// belong to, as version 4 of the key component. A device ID can be deleted and created again
// (clients may choose their device ID at login); the keys of the deleted device must then never
// be served or claimed for the new one, which has other keys.
var keyOwnerMigrations = []storage.Migration{{
	Version: 4,
	Name:    "device of the stored keys",
	SQL: `CREATE TABLE e2e_key_owners (
		user_id           TEXT   NOT NULL,
		device_id         TEXT   NOT NULL,
		device_created_ts BIGINT NOT NULL,
		PRIMARY KEY (user_id, device_id)
	);
	INSERT INTO e2e_key_owners (user_id, device_id, device_created_ts)
		SELECT d.user_id, d.device_id, d.created_ts FROM devices d WHERE
			EXISTS (SELECT 1 FROM e2e_device_keys k WHERE k.user_id = d.user_id AND k.device_id = d.device_id) OR
			EXISTS (SELECT 1 FROM e2e_one_time_keys k WHERE k.user_id = d.user_id AND k.device_id = d.device_id) OR
			EXISTS (SELECT 1 FROM e2e_fallback_keys k WHERE k.user_id = d.user_id AND k.device_id = d.device_id);`,
}}

// ownKeys makes the stored keys of a device those of the device as it exists now, inside tx:
// keys left by an earlier device of the same ID (and signatures of them) are deleted. It reports
// false when the device does not exist.
func ownKeys(ctx context.Context, tx *storage.Tx, user id.UserID, device id.DeviceID) (bool, error) {
	var created int64
	err := tx.QueryRow(ctx, `SELECT created_ts FROM devices WHERE user_id = $1 AND device_id = $2`, user, device).Scan(&created)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("device %s %s: %w", user, device, err)
	}
	var owner int64
	err = tx.QueryRow(ctx, `SELECT device_created_ts FROM e2e_key_owners WHERE user_id = $1 AND device_id = $2`, user, device).Scan(&owner)
	if err == nil && owner == created {
		return true, nil
	} else if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("owner of the keys of %s %s: %w", user, device, err)
	}
	if err := dropDeviceKeys(ctx, tx, user, device); err != nil {
		return false, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO e2e_key_owners (user_id, device_id, device_created_ts) VALUES ($1, $2, $3)
		ON CONFLICT (user_id, device_id) DO UPDATE SET device_created_ts = excluded.device_created_ts`, user, device, created); err != nil {
		return false, fmt.Errorf("owner of the keys of %s %s: %w", user, device, err)
	}
	return true, nil
}

// currentDeviceJoin joins a key table aliased k to the devices whose keys it holds now; the
// readers that do not write use it instead of ownKeys.
const currentDeviceJoin = ` JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id
	JOIN e2e_key_owners o ON o.user_id = k.user_id AND o.device_id = k.device_id AND o.device_created_ts = d.created_ts `

// dropDeviceKeys deletes a device's keys and the signatures of them, inside tx: when the device
// is deleted, or its ID is taken by a new device.
func dropDeviceKeys(ctx context.Context, tx *storage.Tx, user id.UserID, device id.DeviceID) error {
	for _, q := range []string{
		`DELETE FROM e2e_device_keys WHERE user_id = $1 AND device_id = $2`,
		`DELETE FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2`,
		`DELETE FROM e2e_fallback_keys WHERE user_id = $1 AND device_id = $2`,
		`DELETE FROM e2e_signatures WHERE target_user_id = $1 AND target_key_id = $2`,
	} {
		if _, err := tx.Exec(ctx, q, user, device); err != nil {
			return fmt.Errorf("drop keys of %s %s: %w", user, device, err)
		}
	}
	return nil
}

// devicesDeleted records, inside the deleting transaction, what follows from deleting devices:
// their keys go, and their user's device list changes.
func devicesDeleted(ctx context.Context, tx *storage.Tx, user id.UserID, devices []id.DeviceID) (int64, error) {
	for _, d := range devices {
		if err := dropDeviceKeys(ctx, tx, user, d); err != nil {
			return 0, err
		}
		// A logged-out phone must stop getting pushes: its pushers go with it.
		if _, err := tx.Exec(ctx, `DELETE FROM pushers WHERE user_id = $1 AND device_id = $2`, user, d); err != nil {
			return 0, fmt.Errorf("delete pushers of %s: %w", d, err)
		}
	}
	return RecordDeviceListChange(ctx, tx, user, devices, true)
}
