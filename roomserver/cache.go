package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver/auth"
	"github.com/latticehq/lattice/roomserver/pdu"
	"github.com/latticehq/lattice/storage/roomstore"
)

// maxCachedStateEntries bounds the state entries of all cached rooms together. Cached state
// keeps its events in memory even when the event cache has let them go, so the bound is on
// entries, not only on rooms.
const maxCachedStateEntries = 250_000

// maxCachedRooms bounds how many rooms keep their current state in memory; sending into a
// cached room reads nothing of its state from the database.
const maxCachedRooms = 512

// roomCache is what the writer of a room needs at hand: its current state and extremities.
// Only the room's writer (holding its lock) changes it.
type roomCache struct {
	nid         int64
	version     id.RoomVersion
	snapshot    int64
	state       map[auth.StateKey]*pdu.Event
	extremities []*pdu.Event
	// pl caches the parsed power levels of state: in a room whose power levels name
	// thousands of users, parsing them per message would dominate sending.
	pl *auth.PowerLevels
}

// view is the room's current state as the auth rules read it, with the cached power levels.
// Only the room's writer calls it.
func (rc *roomCache) view() *stateView { return &stateView{rc: rc} }

type stateView struct{ rc *roomCache }

var _ auth.CachedPowerLevels = (*stateView)(nil)

// Get returns nil (a nil interface, not a nil *pdu.Event) for absent state.
func (v *stateView) Get(typ, stateKey string) auth.Event {
	return stateMap(v.rc.state).Get(typ, stateKey)
}

// PowerLevels implements auth.CachedPowerLevels.
func (v *stateView) PowerLevels() *auth.PowerLevels {
	if v.rc.pl == nil {
		v.rc.pl = auth.LoadPowerLevels(stateMap(v.rc.state))
	}
	return v.rc.pl
}

// readRoom returns the cached room for a reader. A miss loads it under the room's lock, so a
// load can never replace a fresher entry that the room's writer has just updated.
func (r *Roomserver) readRoom(ctx context.Context, roomID id.RoomID) (*roomCache, error) {
	r.mu.Lock()
	rc := r.rooms[roomID]
	r.mu.Unlock()
	if rc != nil {
		return rc, nil
	}
	unlock := r.lock(roomID)
	defer unlock()
	return r.room(ctx, roomID)
}

// room returns the cached room, loading it on first use; the caller holds the room's lock.
func (r *Roomserver) room(ctx context.Context, roomID id.RoomID) (*roomCache, error) {
	r.mu.Lock()
	rc := r.rooms[roomID]
	r.mu.Unlock()
	if rc != nil {
		return rc, nil
	}
	room, err := r.store.Room(ctx, r.db, string(roomID))
	if errors.Is(err, roomstore.ErrNotFound) {
		return nil, ErrRoomNotFound
	} else if err != nil {
		return nil, err
	}
	version := id.RoomVersion(room.Version)
	state, err := r.loadState(ctx, version, room.Snapshot)
	if err != nil {
		return nil, err
	}
	extNIDs, err := r.store.ForwardExtremities(ctx, r.db, room.NID)
	if err != nil {
		return nil, err
	}
	exts, err := r.parseNIDs(ctx, version, extNIDs)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(exts, func(a, b *pdu.Event) int { return int(a.Depth() - b.Depth()) })
	rc = &roomCache{nid: room.NID, version: version, snapshot: room.Snapshot, state: state, extremities: exts}
	r.storeCache(roomID, rc)
	return rc, nil
}

// storeCache caches a room, dropping others until the bounds hold with it.
func (r *Roomserver) storeCache(roomID id.RoomID, rc *roomCache) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rooms[roomID] = rc
	r.trimLocked(roomID)
}

// trimLocked drops cached rooms other than keep until the rooms and their state entries fit the
// bounds; keep stays even if it alone is over them, as its writer needs it. It runs whenever a
// room is loaded or its cached state grows, never per message. The caller holds r.mu.
func (r *Roomserver) trimLocked(keep id.RoomID) {
	entries := 0
	for _, c := range r.rooms {
		entries += len(c.state)
	}
	for k, c := range r.rooms {
		if len(r.rooms) <= maxCachedRooms && entries <= r.maxStateEntries {
			return
		}
		if k == keep {
			continue
		}
		delete(r.rooms, k) // any room: a dropped one is reloaded from its snapshot
		entries -= len(c.state)
	}
}

// CacheStats describes the roomserver's in-memory caches.
type CacheStats struct {
	Rooms        int // rooms with their current state cached
	StateEntries int // state entries of those rooms together
	Events       EventCacheStats
	ChainNIDs    int // event numbers held by the auth-chain cache
	StateKeys    int // state key numbers held by the store's cache
	EventIDs     int // event IDs by number held by the store's cache
}

// CacheStats reports the sizes and use of the roomserver's caches, for /metrics.
func (r *Roomserver) CacheStats() CacheStats {
	r.mu.Lock()
	st := CacheStats{Rooms: len(r.rooms)}
	for _, c := range r.rooms {
		st.StateEntries += len(c.state)
	}
	r.mu.Unlock()
	st.Events = r.EventCacheStats()
	st.ChainNIDs = r.store.Chains.Size()
	st.StateKeys, st.EventIDs = r.store.CacheSizes()
	return st
}

func (r *Roomserver) forget(roomID id.RoomID) {
	r.mu.Lock()
	delete(r.rooms, roomID)
	r.mu.Unlock()
}

// applyToCache records a committed event in the room's cache.
func (r *Roomserver) applyToCache(roomID id.RoomID, version id.RoomVersion, rec *roomstore.Event, snapshot int64, ev *pdu.Event) {
	r.mu.Lock()
	rc := r.rooms[roomID]
	r.mu.Unlock()
	if rc == nil {
		if ev.Type() != "m.room.create" {
			return // dropped meanwhile: the next use loads the room from storage
		}
		rc = &roomCache{nid: rec.RoomNID, version: version, state: map[auth.StateKey]*pdu.Event{}}
		r.storeCache(roomID, rc)
	}
	// The writer owns rc; readers get copies (CurrentState), so updating in place is safe.
	r.mu.Lock()
	defer r.mu.Unlock()
	rc.snapshot = snapshot
	if sk := ev.StateKey(); sk != nil {
		rc.state[auth.StateKey{Type: ev.Type(), StateKey: *sk}] = ev
		if ev.Type() == "m.room.power_levels" || ev.Type() == "m.room.create" {
			rc.pl = nil
		}
		r.trimLocked(roomID)
	}
	prev := ev.PrevEventIDs()
	rc.extremities = slices.DeleteFunc(slices.Clone(rc.extremities), func(e *pdu.Event) bool { return slices.Contains(prev, e.EventID()) })
	rc.extremities = append(rc.extremities, ev)
}

// loadState reads a snapshot as events.
func (r *Roomserver) loadState(ctx context.Context, _ id.RoomVersion, snapshot int64) (map[auth.StateKey]*pdu.Event, error) {
	return r.snapshotEvents(ctx, snapshot)
}

// parseNIDs returns stored events by number, through the event cache.
func (r *Roomserver) parseNIDs(ctx context.Context, _ id.RoomVersion, nids []int64) ([]*pdu.Event, error) {
	evs, err := r.eventsByNID(ctx, nids)
	if err != nil {
		return nil, err
	}
	return slices.Collect(maps.Values(evs)), nil
}

// RoomVersion returns a room's version.
func (r *Roomserver) RoomVersion(ctx context.Context, roomID id.RoomID) (id.RoomVersion, error) {
	rc, err := r.readRoom(ctx, roomID)
	if err != nil {
		return "", err
	}
	return rc.version, nil
}

// CurrentState returns a copy of a room's current state.
func (r *Roomserver) CurrentState(ctx context.Context, roomID id.RoomID) (map[auth.StateKey]*pdu.Event, error) {
	rc, err := r.readRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(rc.state), nil
}

// StateEvent returns one piece of a room's current state, nil if absent.
func (r *Roomserver) StateEvent(ctx context.Context, roomID id.RoomID, typ, stateKey string) (*pdu.Event, error) {
	rc, err := r.readRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return rc.state[auth.StateKey{Type: typ, StateKey: stateKey}], nil
}

// Event returns an event by ID, nil if unknown.
func (r *Roomserver) Event(ctx context.Context, eventID id.EventID) (*pdu.Event, error) {
	ev, _, err := r.eventByID(ctx, eventID)
	return ev, err
}

// StateBefore returns the state of the room just before an event (nil for an outlier, whose
// state is unknown).
func (r *Roomserver) StateBefore(ctx context.Context, eventID id.EventID) (map[auth.StateKey]*pdu.Event, error) {
	recs, err := r.store.EventsByID(ctx, r.db, []string{string(eventID)})
	if err != nil || len(recs) == 0 {
		return nil, err
	}
	if recs[0].Outlier {
		return nil, nil
	}
	room, err := r.roomOfNID(ctx, recs[0].RoomNID)
	if err != nil {
		return nil, err
	}
	return r.loadState(ctx, room.version, recs[0].StateBefore)
}

// roomOfNID finds the version of a room by number. Rooms are few next to events, so a scan of
// the cache comes first.
func (r *Roomserver) roomOfNID(ctx context.Context, nid int64) (*roomCache, error) {
	r.mu.Lock()
	for _, rc := range r.rooms {
		if rc.nid == nid {
			r.mu.Unlock()
			return rc, nil
		}
	}
	r.mu.Unlock()
	var roomID string
	if err := r.db.QueryRow(ctx, `SELECT room_id FROM rooms WHERE room_nid = $1`, nid).Scan(&roomID); err != nil {
		return nil, fmt.Errorf("room %d: %w", nid, err)
	}
	return r.readRoom(ctx, id.RoomID(roomID))
}

// stateMap lets the auth rules read a state held as events.
type stateMap map[auth.StateKey]*pdu.Event

// Get returns nil (a nil interface, not a nil *pdu.Event) for absent state.
func (s stateMap) Get(typ, stateKey string) auth.Event {
	if ev := s[auth.StateKey{Type: typ, StateKey: stateKey}]; ev != nil {
		return ev
	}
	return nil
}

// templateEvent shows a template to auth.Selection, which needs the event's type, keys and
// content before the event itself can be built.
type templateEvent struct {
	t       Template
	roomID  id.RoomID
	version id.RoomVersion
}

func (e *templateEvent) EventID() id.EventID        { return "" }
func (e *templateEvent) RoomID() id.RoomID          { return e.roomID }
func (e *templateEvent) Type() string               { return e.t.Type }
func (e *templateEvent) StateKey() *string          { return e.t.StateKey }
func (e *templateEvent) Sender() id.UserID          { return e.t.Sender }
func (e *templateEvent) Content() json.RawMessage   { return e.t.Content }
func (e *templateEvent) PrevEventIDs() []id.EventID { return nil }
func (e *templateEvent) AuthEventIDs() []id.EventID { return nil }
func (e *templateEvent) Depth() int64               { return 0 }
func (e *templateEvent) OriginServerTS() int64      { return 0 }
func (e *templateEvent) Redacts() id.EventID        { return e.t.Redacts }
func (e *templateEvent) Version() id.RoomVersion    { return e.version }
