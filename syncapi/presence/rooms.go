package presence

import (
	"context"
	"sync"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver"
)

// maxCachedUsers bounds the users whose joined rooms are kept; past it the cache starts over.
// An entry is a user's room IDs, so 100 000 users in 20 rooms each stay near 100 MiB at worst.
const maxCachedUsers = 100_000

// roomCache keeps local users' joined rooms, which decide who sees whose presence and which
// rooms a change wakes. The consumer of the output stream drops a user's entry whenever a member
// event about them goes by, so the cache follows joins and leaves within one consumer round.
//
// A miss reads the roomserver and then puts the answer; the epoch keeps an answer read before a
// drop from being put after it. Without the consumer (presence disabled) nothing would drop
// entries, so live is false then and every call reads the roomserver.
//
// Lock order: mu is a leaf; the roomserver is called without it.
type roomCache struct {
	rooms Rooms
	live  bool

	mu    sync.Mutex
	epoch uint64
	m     map[id.UserID]map[id.RoomID]struct{}
}

func newRoomCache(rooms Rooms, live bool) *roomCache {
	return &roomCache{rooms: rooms, live: live, m: map[id.UserID]map[id.RoomID]struct{}{}}
}

// joined returns the rooms a local user is joined to; the caller must not change the map.
func (c *roomCache) joined(ctx context.Context, user id.UserID) (map[id.RoomID]struct{}, error) {
	c.mu.Lock()
	set, ok := c.m[user]
	epoch := c.epoch
	c.mu.Unlock()
	if ok {
		return set, nil
	}
	list, err := c.rooms.RoomsOf(ctx, user, "join")
	if err != nil {
		return nil, err
	}
	set = make(map[id.RoomID]struct{}, len(list))
	for _, r := range list {
		set[r] = struct{}{}
	}
	if !c.live {
		return set, nil
	}
	c.mu.Lock()
	if c.epoch == epoch {
		if len(c.m) >= maxCachedUsers {
			c.m = map[id.UserID]map[id.RoomID]struct{}{}
		}
		c.m[user] = set
	}
	c.mu.Unlock()
	return set, nil
}

// drop forgets a user's rooms after their membership changed.
func (c *roomCache) drop(user id.UserID) {
	c.mu.Lock()
	c.epoch++
	delete(c.m, user)
	c.mu.Unlock()
}

// reset forgets every user's rooms.
func (c *roomCache) reset() {
	c.mu.Lock()
	c.epoch++
	c.m = map[id.UserID]map[id.RoomID]struct{}{}
	c.mu.Unlock()
}

// sharesRoom reports whether a local user and another user, local or remote, are both joined
// to some room: who may see whose presence ("Presence": "sent to interested parties where
// users share a room membership").
func (t *Tracker) sharesRoom(ctx context.Context, local, other id.UserID) (bool, error) {
	mine, err := t.rooms.joined(ctx, local)
	if err != nil {
		return false, err
	}
	if t.isLocal(other) {
		theirs, err := t.rooms.joined(ctx, other)
		if err != nil {
			return false, err
		}
		if len(theirs) < len(mine) {
			mine, theirs = theirs, mine
		}
		for r := range mine {
			if _, ok := theirs[r]; ok {
				return true, nil
			}
		}
		return false, nil
	}
	// RoomsOf knows local users only; a remote user's membership is in each room's state.
	for r := range mine {
		ev, err := t.opts.Rooms.StateEvent(ctx, r, "m.room.member", string(other))
		if err != nil {
			return false, err
		}
		if ev != nil && roomserver.MembershipOf(ev) == "join" {
			return true, nil
		}
	}
	return false, nil
}
