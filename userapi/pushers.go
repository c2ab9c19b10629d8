package userapi

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/storage"
)

// StreamPushers is the stream that moves when a pusher is set or deleted; PushersKey is woken
// with it, for the push sender.
const (
	StreamPushers = "pushers"
	PushersKey    = "pushers"
)

// Pusher is one of a user's pushers (client-server API, "Push Notifications", GET /pushers):
// where and how the push sender delivers the user's notifications.
type Pusher struct {
	UserID            id.UserID       `json:"-"`
	PushKey           string          `json:"pushkey"`
	Kind              string          `json:"kind"`
	AppID             string          `json:"app_id"`
	AppDisplayName    string          `json:"app_display_name"`
	DeviceDisplayName string          `json:"device_display_name"`
	ProfileTag        string          `json:"profile_tag,omitempty"`
	Lang              string          `json:"lang"`
	Data              json.RawMessage `json:"data"`
	// DeviceID is the device that set the pusher; deleting the device deletes it.
	DeviceID id.DeviceID `json:"-"`
	// PushKeyTS is when the pushkey was last set, in milliseconds since the epoch.
	PushKeyTS int64 `json:"-"`
	// CreatedTS is when the pusher was first set: notifications older than it are not sent.
	CreatedTS int64 `json:"-"`
}

// PusherData is the part of a pusher's data the server reads.
type PusherData struct {
	URL    string `json:"url"`
	Format string `json:"format"`
}

// ParsedData reads the pusher's data object.
func (p *Pusher) ParsedData() PusherData {
	var d PusherData
	json.Unmarshal(p.Data, &d)
	return d
}

const pusherColumns = `user_id, app_id, pushkey, kind, app_display_name, device_display_name, profile_tag, lang, data,
	device_id, pushkey_ts, created_ts`

func scanPushers(rows *sql.Rows) ([]Pusher, error) {
	defer rows.Close()
	out := []Pusher{}
	for rows.Next() {
		var p Pusher
		var data string
		if err := rows.Scan(&p.UserID, &p.AppID, &p.PushKey, &p.Kind, &p.AppDisplayName, &p.DeviceDisplayName,
			&p.ProfileTag, &p.Lang, &data, &p.DeviceID, &p.PushKeyTS, &p.CreatedTS); err != nil {
			return nil, err
		}
		p.Data = json.RawMessage(data)
		out = append(out, p)
	}
	return out, rows.Err()
}

// Pushers returns the user's pushers, oldest first.
func (u *Users) Pushers(ctx context.Context, userID id.UserID) ([]Pusher, error) {
	rows, err := u.db.Query(ctx, `SELECT `+pusherColumns+` FROM pushers WHERE user_id = $1 ORDER BY created_ts, app_id, pushkey`, userID)
	if err != nil {
		return nil, fmt.Errorf("userapi: pushers of %s: %w", userID, err)
	}
	ps, err := scanPushers(rows)
	if err != nil {
		return nil, fmt.Errorf("userapi: pushers of %s: %w", userID, err)
	}
	return ps, nil
}

// AllPushers returns every pusher.
func (u *Users) AllPushers(ctx context.Context) ([]Pusher, error) {
	rows, err := u.db.Query(ctx, `SELECT `+pusherColumns+` FROM pushers ORDER BY user_id, created_ts`)
	if err != nil {
		return nil, fmt.Errorf("userapi: all pushers: %w", err)
	}
	ps, err := scanPushers(rows)
	if err != nil {
		return nil, fmt.Errorf("userapi: all pushers: %w", err)
	}
	return ps, nil
}

// SetPusher creates or replaces the user's pusher with p's app ID and pushkey (POST
// /pushers/set). A replaced pusher keeps its creation time, so notifications already due to it
// are still sent; without appendPusher, other users' pushers with the same app ID and pushkey
// are deleted ("append": "the homeserver must remove any other pushers with the same App ID and
// pushkey for different users"). The caller has validated p.
func (u *Users) SetPusher(ctx context.Context, p Pusher, appendPusher bool) error {
	now := u.nowMS()
	if p.Data == nil {
		p.Data = json.RawMessage("{}")
	}
	var pos int64
	err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
		var err error
		if pos, err = tx.NextStreamPosition(ctx, StreamPushers); err != nil {
			return err
		}
		if !appendPusher {
			if _, err := tx.Exec(ctx, `DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3`,
				p.AppID, p.PushKey, p.UserID); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `INSERT INTO pushers (`+pusherColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
			ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET kind = excluded.kind,
				app_display_name = excluded.app_display_name, device_display_name = excluded.device_display_name,
				profile_tag = excluded.profile_tag, lang = excluded.lang, data = excluded.data,
				device_id = excluded.device_id, pushkey_ts = excluded.pushkey_ts`,
			p.UserID, p.AppID, p.PushKey, p.Kind, p.AppDisplayName, p.DeviceDisplayName, p.ProfileTag, p.Lang,
			string(p.Data), p.DeviceID, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("userapi: set pusher of %s: %w", p.UserID, err)
	}
	u.notify(StreamPushers, pos, PushersKey)
	return nil
}

// DeletePusher deletes the user's pusher with the app ID and pushkey, if there is one.
func (u *Users) DeletePusher(ctx context.Context, userID id.UserID, appID, pushKey string) error {
	var pos int64
	err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
		var err error
		if pos, err = tx.NextStreamPosition(ctx, StreamPushers); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3`, userID, appID, pushKey)
		return err
	})
	if err != nil {
		return fmt.Errorf("userapi: delete pusher of %s: %w", userID, err)
	}
	u.notify(StreamPushers, pos, PushersKey)
	return nil
}
