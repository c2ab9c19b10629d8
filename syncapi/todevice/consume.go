package todevice

import (
	"context"
	"errors"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/storage/todevicestore"
	"github.com/latticehq/lattice/syncapi/synctypes"
	"github.com/latticehq/lattice/userapi"
)

// Consumer names, under which the cursors are kept.
const (
	roomsCursor   = "rooms"   // on the roomserver's output stream
	devicesCursor = "devices" // on device_lists, following userapi's changes
)

const (
	// outputBatch is how many output events one transaction of the rooms consumer takes.
	outputBatch = 200
	// devicePositions is how many device_lists positions the devices consumer reads at once.
	devicePositions = 500
)

// consumeRooms takes the next batch of the roomserver's output stream: the membership changes
// and encryption events in it become device_lists positions. It returns the output position
// reached and whether more may follow.
func (a *API) consumeRooms(ctx context.Context) (int64, bool, error) {
	from, err := a.store.Cursor(ctx, roomsCursor)
	if err != nil {
		return 0, false, err
	}
	evs, err := a.opts.Rooms.Output(ctx, from, outputBatch)
	if err != nil || len(evs) == 0 {
		return from, false, err
	}
	var rc todevicestore.RoomChanges
	touched := map[id.RoomID]bool{}
	for _, oe := range evs {
		ev := oe.Event
		sk := ev.StateKey()
		switch {
		case sk == nil:
		case ev.Type() == "m.room.member":
			rc.Members = append(rc.Members, todevicestore.MemberChange{RoomID: string(ev.RoomID()), UserID: *sk,
				Joined: roomserver.MembershipOf(ev) == "join"})
			touched[ev.RoomID()] = true
		case ev.Type() == "m.room.encryption" && *sk == "":
			rc.Encrypted = append(rc.Encrypted, string(ev.RoomID()))
			touched[ev.RoomID()] = true
		}
	}
	last := evs[len(evs)-1].Pos
	pos, members, encrypted, err := a.store.ApplyRooms(ctx, rc, roomsCursor, last)
	if err != nil {
		return from, false, err
	}
	for room := range touched {
		a.lists.rooms.invalidate(room)
	}
	if pos > 0 {
		advance(&a.lists.pos, pos)
		keys := map[string]bool{}
		for _, m := range members {
			keys[userapi.UserKey(id.UserID(m.UserID))] = true
			keys[roomserver.RoomKey(id.RoomID(m.RoomID))] = true
		}
		for _, room := range encrypted {
			keys[roomserver.RoomKey(id.RoomID(room))] = true
		}
		a.notify(synctypes.StreamDeviceLists, pos, setKeys(keys))
	}
	return last, len(evs) == outputBatch, nil
}

// consumeDevices follows userapi's device-list changes: it deletes what deleted devices had
// waiting and wakes the user and everyone sharing an encrypted room with them. It returns the
// device_lists position reached and whether more may follow.
func (a *API) consumeDevices(ctx context.Context) (int64, bool, error) {
	a.devMu.Lock()
	defer a.devMu.Unlock()
	if !a.devLoaded {
		c, err := a.store.Cursor(ctx, devicesCursor)
		if err != nil {
			return 0, false, err
		}
		a.devCursor, a.devLoaded = c, true
	}
	from := a.devCursor
	target, err := a.opts.DB.StreamPosition(ctx, synctypes.StreamDeviceLists)
	if err != nil || target <= from {
		return from, false, err
	}
	// Positions, not rows, bound a batch: one position may hold many devices of one user.
	upto := min(target, from+devicePositions)
	changes, err := a.opts.Users.DeviceListChanges(ctx, from, upto, 1<<30)
	if err != nil {
		return from, false, err
	}
	if len(changes) > 0 {
		var gone []todevicestore.Device
		for _, c := range changes {
			if !c.Deleted || c.DeviceID == "" {
				continue
			}
			// A device deleted and created again since keeps what was sent to the new one.
			_, err := a.opts.Users.Device(ctx, c.UserID, c.DeviceID)
			if errors.Is(err, userapi.ErrNotFound) {
				gone = append(gone, todevicestore.Device{UserID: string(c.UserID), DeviceID: string(c.DeviceID)})
			} else if err != nil {
				return from, false, err
			}
		}
		// Only batches with changes store the cursor: the rest has nothing to replay after a crash.
		if err := a.store.ForgetDevices(ctx, gone, devicesCursor, upto); err != nil {
			return from, false, err
		}
	}
	a.devCursor = upto
	advance(&a.lists.pos, upto)
	if len(changes) > 0 {
		keys, err := a.lists.wakeKeys(ctx, changes)
		if err != nil {
			a.log.Warn("rooms of users whose devices changed", "error", err)
		}
		a.notify(synctypes.StreamDeviceLists, upto, keys)
	}
	return upto, upto < target, nil
}

func setKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
