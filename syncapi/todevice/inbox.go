package todevice

import (
	"context"
	"encoding/json"
	"math"
	"sync/atomic"

	"github.com/latticehq/lattice/storage/todevicestore"
	"github.com/latticehq/lattice/syncapi/synctypes"
)

// MaxPerSync is how many to-device messages one /sync response carries at most (client-server
// API, "Send-to-Device messaging": "100 messages is recommended as a reasonable limit").
const MaxPerSync = 100

// Inbox is the to_device stream of /sync: each device's pending messages, in order of arrival.
type Inbox struct {
	a   *API
	pos atomic.Int64
}

var _ synctypes.Source = (*Inbox)(nil)

// Stream is synctypes.StreamToDevice.
func (in *Inbox) Stream() string { return synctypes.StreamToDevice }

// Position is the latest to_device position committed by this server.
func (in *Inbox) Position(context.Context) (int64, error) { return in.pos.Load(), nil }

// Collect adds every message of the device in (from, to]. It never leaves one out, so a sync
// core that knows only Collect loses nothing; CollectLimited is what keeps responses small.
func (in *Inbox) Collect(ctx context.Context, req *synctypes.Request, from, to int64, resp *synctypes.Response) error {
	_, err := in.collect(ctx, req, from, to, resp, math.MaxInt32)
	return err
}

// CollectLimited adds the device's first MaxPerSync messages in (from, to] and returns the
// position the response reaches: to, or the position of the last message added when more
// remain. The sync core must put that position, not to, in next_batch, so the rest comes with
// the next sync, which then answers at once because the stream is ahead of its token.
//
// Both methods first acknowledge what the device has received: a since token past a message
// is the proof (module "Server behaviour"), so the messages up to from are deleted then, and
// not before, so a response lost on its way is delivered again.
func (in *Inbox) CollectLimited(ctx context.Context, req *synctypes.Request, from, to int64, resp *synctypes.Response) (int64, error) {
	return in.collect(ctx, req, from, to, resp, MaxPerSync)
}

// toDeviceEvent is one event of to_device.events.
type toDeviceEvent struct {
	Sender  string          `json:"sender"`
	Type    string          `json:"type"`
	Content json.RawMessage `json:"content"`
}

// Acknowledge deletes the device's messages up to since, the to_device position of the token
// it presented. Collect and CollectLimited do so themselves; the sync core calls it when it
// answers a sync without collecting anything (nothing new), so that a later sync from an older
// token cannot bring the messages back.
func (in *Inbox) Acknowledge(ctx context.Context, req *synctypes.Request, since int64) error {
	_, err := in.acknowledge(ctx, req, since)
	return err
}

// acknowledge deletes the device's messages up to since and reports the position of the oldest
// message it had before, 0 if none.
func (in *Inbox) acknowledge(ctx context.Context, req *synctypes.Request, since int64) (int64, error) {
	if req.Device == "" {
		return 0, nil
	}
	d := todevicestore.Device{UserID: string(req.User), DeviceID: string(req.Device)}
	oldest, ok, err := in.a.store.Oldest(ctx, d)
	if err != nil || !ok {
		return 0, err
	}
	// A token ahead of the stream (a restored database) acknowledges nothing.
	if since > 0 && since <= in.pos.Load() && oldest <= since {
		if err := in.a.store.Acknowledge(ctx, d, since); err != nil {
			return 0, err
		}
	}
	return oldest, nil
}

func (in *Inbox) collect(ctx context.Context, req *synctypes.Request, from, to int64, resp *synctypes.Response, limit int) (int64, error) {
	oldest, err := in.acknowledge(ctx, req, from)
	if err != nil || oldest == 0 || from >= to || oldest > to {
		return to, err
	}
	d := todevicestore.Device{UserID: string(req.User), DeviceID: string(req.Device)}
	msgs, err := in.a.store.Pending(ctx, d, from, to, limit+1)
	if err != nil {
		return to, err
	}
	reached := to
	if len(msgs) > limit {
		msgs = msgs[:limit]
		reached = msgs[limit-1].Pos
	}
	for _, m := range msgs {
		resp.ToDevice.Add(toDeviceEvent{Sender: m.Sender, Type: m.Type, Content: m.Content})
	}
	return reached, nil
}
