package todevice

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/syncapi/synctypes"
	"github.com/latticehq/lattice/userapi"
)

// DeviceLists is the device_lists stream of /sync (end-to-end encryption module, "Extensions to
// /sync"): changed lists the users whose devices or cross-signing keys changed and who share an
// encrypted room with the client, and those who now share one; left lists those who share none
// any more. Following the spec's DeviceLists definition only encrypted rooms count, as only
// their members' devices are encrypted for. The user's own changes always count.
type DeviceLists struct {
	a     *API
	pos   atomic.Int64
	rooms *roomCache
}

var _ synctypes.Source = (*DeviceLists)(nil)

// Stream is synctypes.StreamDeviceLists.
func (d *DeviceLists) Stream() string { return synctypes.StreamDeviceLists }

// Position is the latest device_lists position this component has seen committed.
func (d *DeviceLists) Position(context.Context) (int64, error) { return d.pos.Load(), nil }

// Collect fills device_lists for (from, to]. An initial sync has none ("only present on an
// incremental sync"); a full_state sync with a since token still gets the changes since it.
func (d *DeviceLists) Collect(ctx context.Context, req *synctypes.Request, from, to int64, resp *synctypes.Response) error {
	if req.Initial && from == 0 {
		return nil
	}
	changed, left, err := d.Changes(ctx, req.User, from, to)
	if err != nil {
		return err
	}
	resp.DeviceLists.Changed = append(resp.DeviceLists.Changed, changed...)
	resp.DeviceLists.Left = append(resp.DeviceLists.Left, left...)
	return nil
}

// Changes returns, for user, the device-list changes at device_lists positions in (from, to],
// sorted: what /sync's device_lists and GET /keys/changes answer.
//
// Cost: nothing but three indexed queries when no change touches the user; otherwise also the
// user's joined rooms (one query) and each one's encryption and joined members, which come from
// a cache the rooms consumer keeps current.
func (d *DeviceLists) Changes(ctx context.Context, user id.UserID, from, to int64) (changed, left []id.UserID, err error) {
	if from >= to {
		return nil, nil, nil
	}
	users, err := d.a.opts.Users.DeviceListsChanged(ctx, from, to)
	if err != nil {
		return nil, nil, err
	}
	members, err := d.a.store.MemberChanges(ctx, string(user), from, to)
	if err != nil {
		return nil, nil, err
	}
	encrypted, err := d.a.store.EncryptedBetween(ctx, string(user), from, to)
	if err != nil {
		return nil, nil, err
	}
	if len(users) == 0 && len(members) == 0 && len(encrypted) == 0 {
		return nil, nil, nil
	}
	sharing, err := d.sharing(ctx, user)
	if err != nil {
		return nil, nil, err
	}
	ch, lf := map[id.UserID]bool{}, map[id.UserID]bool{}
	// markChanged adds those who share an encrypted room with user now; markLeft those who don't.
	markChanged := func(us ...id.UserID) {
		for _, u := range us {
			if u != user && sharing[u] {
				ch[u] = true
			}
		}
	}
	markLeft := func(us ...id.UserID) {
		for _, u := range us {
			if u != user && !sharing[u] {
				lf[u] = true
			}
		}
	}
	for _, u := range users {
		if u == user {
			ch[u] = true
		}
		markChanged(u)
	}
	for _, m := range members {
		info, err := d.rooms.get(ctx, d.a.opts.Rooms, id.RoomID(m.RoomID))
		if err != nil {
			return nil, nil, err
		}
		if !info.encrypted {
			continue
		}
		who := id.UserID(m.UserID)
		switch {
		case who == user && m.Joined:
			markChanged(info.members...)
		case who == user:
			markLeft(info.members...)
		case m.Joined:
			markChanged(who)
		default:
			markLeft(who)
		}
	}
	for _, room := range encrypted {
		info, err := d.rooms.get(ctx, d.a.opts.Rooms, id.RoomID(room))
		if err != nil {
			return nil, nil, err
		}
		markChanged(info.members...)
	}
	return sortedKeys(ch), sortedKeys(lf), nil
}

// sharing returns the users who share an encrypted room with user now, user included.
func (d *DeviceLists) sharing(ctx context.Context, user id.UserID) (map[id.UserID]bool, error) {
	rooms, err := d.a.opts.Rooms.RoomsOf(ctx, user, "join")
	if err != nil {
		return nil, err
	}
	out := map[id.UserID]bool{user: true}
	for _, room := range rooms {
		info, err := d.rooms.get(ctx, d.a.opts.Rooms, room)
		if err != nil {
			return nil, err
		}
		if info.encrypted {
			for _, m := range info.members {
				out[m] = true
			}
		}
	}
	return out, nil
}

// wakeKeys returns the notifier keys of the users whose devices changed and of their encrypted
// rooms, whose members' long-polls must wake.
func (d *DeviceLists) wakeKeys(ctx context.Context, changes []userapi.DeviceListChange) ([]string, error) {
	keys := map[string]bool{}
	var firstErr error
	for _, c := range changes {
		k := userapi.UserKey(c.UserID)
		if keys[k] {
			continue
		}
		keys[k] = true
		rooms, err := d.a.opts.Rooms.RoomsOf(ctx, c.UserID, "join")
		if err != nil {
			firstErr = cmp.Or(firstErr, err)
			continue
		}
		for _, room := range rooms {
			info, err := d.rooms.get(ctx, d.a.opts.Rooms, room)
			if err != nil {
				firstErr = cmp.Or(firstErr, err)
				continue
			}
			if info.encrypted {
				keys[roomserver.RoomKey(room)] = true
			}
		}
	}
	return setKeys(keys), firstErr
}

func sortedKeys(m map[id.UserID]bool) []id.UserID {
	if len(m) == 0 {
		return nil
	}
	out := make([]id.UserID, 0, len(m))
	for u := range m {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

// Bounds of the room cache; past either it starts again empty.
const (
	maxCachedRooms   = 50_000
	maxCachedMembers = 2_000_000
)

// roomInfo is what device lists need of a room's current state.
type roomInfo struct {
	encrypted bool
	members   []id.UserID // the joined members; only kept for encrypted rooms
}

// roomCache keeps roomInfo per room. The rooms consumer invalidates a room when it sees a member
// or encryption event of it; epoch keeps a read that straddles an invalidation from caching
// what it read before it.
type roomCache struct {
	mu      sync.Mutex
	m       map[id.RoomID]*roomInfo
	members int
	epoch   uint64
}

func newRoomCache() *roomCache { return &roomCache{m: map[id.RoomID]*roomInfo{}} }

func (c *roomCache) get(ctx context.Context, rooms roomserver.API, room id.RoomID) (*roomInfo, error) {
	c.mu.Lock()
	info, epoch := c.m[room], c.epoch
	c.mu.Unlock()
	if info != nil {
		return info, nil
	}
	enc, err := rooms.StateEvent(ctx, room, "m.room.encryption", "")
	if errors.Is(err, roomserver.ErrRoomNotFound) {
		return &roomInfo{}, nil // nobody shares a room the server does not know
	} else if err != nil {
		return nil, err
	}
	info = &roomInfo{encrypted: enc != nil}
	if info.encrypted {
		if info.members, err = rooms.Members(ctx, room, "join"); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch == epoch {
		if len(c.m) >= maxCachedRooms || c.members+len(info.members) > maxCachedMembers {
			c.m, c.members = map[id.RoomID]*roomInfo{}, 0
		}
		if old := c.m[room]; old != nil {
			c.members -= len(old.members)
		}
		c.m[room] = info
		c.members += len(info.members)
	}
	return info, nil
}

func (c *roomCache) invalidate(room id.RoomID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.m[room]; old != nil {
		c.members -= len(old.members)
		delete(c.m, room)
	}
	c.epoch++
}
