package userapi

import (
	"context"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/storage"
)

// StreamDeviceLists is the stream of changes to users' device lists (client-server API,
// "Tracking the device list for a user"). Each change is written in the transaction of the device
// change itself; after the commit the notifier is woken with UserKey(user) and DeviceListsKey.
const StreamDeviceLists = "device_lists"

// DeviceListsKey is the notifier key woken, under StreamDeviceLists, for every change of any
// user's device list: the key consumers of the whole stream wait on.
const DeviceListsKey = "userapi:device_lists"

// deviceListMigrations create the change table. It is its own migration component so that the
// device-list stream evolves without renumbering the userapi schema.
var deviceListMigrations = []storage.Migration{{
	Version: 1,
	Name:    "device list changes",
	// One row per device (device_id '' for the user's cross-signing keys) holding its latest
	// change: a reader asking for (from, to] learns that the user changed, which is all /sync and
	// /keys/changes say, and the table stays as small as the set of devices ever seen.
	SQL: `CREATE TABLE device_list_changes (
		user_id   TEXT    NOT NULL,
		device_id TEXT    NOT NULL,
		pos       BIGINT  NOT NULL,
		deleted   BOOLEAN NOT NULL,
		PRIMARY KEY (user_id, device_id)
	);
	CREATE INDEX device_list_changes_pos ON device_list_changes (pos);`,
}}

// migrateDeviceLists applies deviceListMigrations.
func migrateDeviceLists(ctx context.Context, db *storage.DB) error {
	return db.Migrate(ctx, "userapi_devicelists", deviceListMigrations)
}

// DeviceListChange is the latest change of one device of a user.
type DeviceListChange struct {
	Pos      int64
	UserID   id.UserID
	DeviceID id.DeviceID // "" for a change of the user's cross-signing keys
	Deleted  bool
}

// RecordDeviceListChange writes a change of user's device list on StreamDeviceLists inside the
// transaction that makes it: devices created, renamed, deleted (deleted true) or given new keys;
// no devices means a change of the user's cross-signing keys. It draws the stream position, so
// call it as the transaction's last statement, and after the commit wake the stream's waiters
// with Users.deviceListChanged. It returns the position.
func RecordDeviceListChange(ctx context.Context, tx *storage.Tx, user id.UserID, devices []id.DeviceID, deleted bool) (int64, error) {
	pos, err := tx.NextStreamPosition(ctx, StreamDeviceLists)
	if err != nil {
		return 0, err
	}
	if len(devices) == 0 {
		devices = []id.DeviceID{""}
	}
	for _, d := range devices {
		_, err := tx.Exec(ctx, `INSERT INTO device_list_changes (user_id, device_id, pos, deleted) VALUES ($1, $2, $3, $4)
			ON CONFLICT (user_id, device_id) DO UPDATE SET pos = excluded.pos, deleted = excluded.deleted`,
			user, d, pos, deleted)
		if err != nil {
			return 0, fmt.Errorf("record device list change of %s: %w", user, err)
		}
	}
	return pos, nil
}

// deviceListChanged wakes the waiters of StreamDeviceLists after a committed change at pos.
func (u *Users) deviceListChanged(user id.UserID, pos int64) {
	if u.opts.Notifier != nil && pos > 0 {
		u.opts.Notifier.Notify(StreamDeviceLists, pos, UserKey(user), DeviceListsKey)
	}
}

// DeviceListChanges returns the device-list changes with positions in (from, to], oldest first,
// at most limit of them. Only a device's latest change is kept, so a change may show up at a
// later position than it was first made, never earlier.
func (u *Users) DeviceListChanges(ctx context.Context, from, to int64, limit int) ([]DeviceListChange, error) {
	rows, err := u.db.Query(ctx, `SELECT pos, user_id, device_id, deleted FROM device_list_changes
		WHERE pos > $1 AND pos <= $2 ORDER BY pos, user_id, device_id LIMIT $3`, from, to, limit)
	if err != nil {
		return nil, fmt.Errorf("userapi: device list changes in (%d, %d]: %w", from, to, err)
	}
	defer rows.Close()
	var out []DeviceListChange
	for rows.Next() {
		var c DeviceListChange
		if err := rows.Scan(&c.Pos, &c.UserID, &c.DeviceID, &c.Deleted); err != nil {
			return nil, fmt.Errorf("userapi: device list changes in (%d, %d]: %w", from, to, err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("userapi: device list changes in (%d, %d]: %w", from, to, err)
	}
	return out, nil
}

// DeviceListsChanged returns the users whose device list changed in (from, to], in no order.
func (u *Users) DeviceListsChanged(ctx context.Context, from, to int64) ([]id.UserID, error) {
	rows, err := u.db.Query(ctx, `SELECT DISTINCT user_id FROM device_list_changes WHERE pos > $1 AND pos <= $2`, from, to)
	if err != nil {
		return nil, fmt.Errorf("userapi: device lists changed in (%d, %d]: %w", from, to, err)
	}
	defer rows.Close()
	var out []id.UserID
	for rows.Next() {
		var user id.UserID
		if err := rows.Scan(&user); err != nil {
			return nil, fmt.Errorf("userapi: device lists changed in (%d, %d]: %w", from, to, err)
		}
		out = append(out, user)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("userapi: device lists changed in (%d, %d]: %w", from, to, err)
	}
	return out, nil
}
