package roomserver

import (
	"container/list"
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver/auth"
	"github.com/latticehq/lattice/roomserver/pdu"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/roomstore"
)

// DefaultEventCacheBytes bounds the event cache when Options.EventCacheBytes is 0: room state of a
// few large rooms, parsed, plus the recent timeline.
const DefaultEventCacheBytes = 64 << 20

// entryOverhead estimates what a cached event holds besides its JSON: the parsed fields, the
// list element and both index entries.
const entryOverhead = 400

// eventCache keeps parsed stored events by ID and by number, the least recently used leaving
// first once their estimated size passes the bound. A stored event never changes, so an entry is
// never stale; only committed events are put in, since on SQLite the number of a rolled-back
// insert is handed out again.
type eventCache struct {
	mu    sync.Mutex
	max   int64
	size  int64
	lru   list.List // of *cacheEntry, most recently used first
	byID  map[id.EventID]*list.Element
	byNID map[int64]*list.Element

	hits, misses, evictions atomic.Int64
}

type cacheEntry struct {
	nid  int64
	ev   *pdu.Event
	cost int64
}

// EventCacheStats measures the event cache.
type EventCacheStats struct {
	Entries                 int
	Bytes, MaxBytes         int64 // estimated memory held, and its bound
	Hits, Misses, Evictions int64
}

func newEventCache(maxBytes int64) *eventCache {
	if maxBytes == 0 {
		maxBytes = DefaultEventCacheBytes
	}
	return &eventCache{max: maxBytes, byID: map[id.EventID]*list.Element{}, byNID: map[int64]*list.Element{}}
}

func costOf(ev *pdu.Event) int64 {
	return int64(len(ev.JSON())) + 64*int64(len(ev.PrevEventIDs())+len(ev.AuthEventIDs())) + entryOverhead
}

// put records a committed event.
func (c *eventCache) put(nid int64, ev *pdu.Event) {
	cost := costOf(ev)
	if cost > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byNID[nid]; ok {
		c.lru.MoveToFront(el)
		return
	}
	for c.size+cost > c.max {
		last := c.lru.Back()
		e := last.Value.(*cacheEntry)
		c.lru.Remove(last)
		delete(c.byID, e.ev.EventID())
		delete(c.byNID, e.nid)
		c.size -= e.cost
		c.evictions.Add(1)
	}
	el := c.lru.PushFront(&cacheEntry{nid: nid, ev: ev, cost: cost})
	c.byID[ev.EventID()] = el
	c.byNID[nid] = el
	c.size += cost
}

func (c *eventCache) get(el *list.Element, ok bool) *cacheEntry {
	if !ok {
		c.misses.Add(1)
		return nil
	}
	c.hits.Add(1)
	c.lru.MoveToFront(el)
	return el.Value.(*cacheEntry)
}

// byEventID returns a cached event and its number.
func (c *eventCache) byEventID(eventID id.EventID) (*pdu.Event, int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byID[eventID]
	if e := c.get(el, ok); e != nil {
		return e.ev, e.nid, true
	}
	return nil, 0, false
}

// byNumbers fills out[i] with the cached event numbered nids[i], leaving misses nil, under one
// lock, and reports whether any missed.
func (c *eventCache) byNumbers(nids []int64, out []*pdu.Event) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	missed := false
	for i, n := range nids {
		el, ok := c.byNID[n]
		if e := c.get(el, ok); e != nil {
			out[i] = e.ev
		} else {
			missed = true
		}
	}
	return missed
}

// idsByNumbers fills out[i] with the ID of the cached event numbered nids[i], leaving misses
// "", and returns the numbers it missed. It is a peek for callers that need only IDs: it moves
// nothing in the LRU order and counts nothing.
func (c *eventCache) idsByNumbers(nids []int64, out []id.EventID) (missed []int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, n := range nids {
		if el, ok := c.byNID[n]; ok {
			out[i] = el.Value.(*cacheEntry).ev.EventID()
		} else {
			missed = append(missed, n)
		}
	}
	return missed
}

// byNumber returns a cached event by number.
func (c *eventCache) byNumber(nid int64) (*pdu.Event, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byNID[nid]
	if e := c.get(el, ok); e != nil {
		return e.ev, true
	}
	return nil, false
}

func (c *eventCache) stats() EventCacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return EventCacheStats{Entries: c.lru.Len(), Bytes: c.size, MaxBytes: c.max,
		Hits: c.hits.Load(), Misses: c.misses.Load(), Evictions: c.evictions.Load()}
}

// EventCacheStats reports how the event cache is doing, for metrics.
func (r *Roomserver) EventCacheStats() EventCacheStats { return r.events.stats() }

// versionOf returns the version of a room by number. Rooms never change version, so the answer
// is kept; it takes no room lock, so a writer of one room may ask about another.
func (r *Roomserver) versionOf(ctx context.Context, q storage.Querier, roomNID int64) (id.RoomVersion, error) {
	if v, ok := r.versions.Load(roomNID); ok {
		return v.(id.RoomVersion), nil
	}
	room, err := r.store.RoomByNID(ctx, q, roomNID)
	if err != nil {
		return "", err
	}
	v := id.RoomVersion(room.Version)
	r.versions.Store(roomNID, v)
	return v, nil
}

// eventsByNID returns stored events by number, from the cache or the database; unknown numbers
// are left out. Events read from the database are cached.
func (r *Roomserver) eventsByNID(ctx context.Context, nids []int64) (map[int64]*pdu.Event, error) {
	list, err := r.eventList(ctx, nids)
	if err != nil {
		return nil, err
	}
	out := make(map[int64]*pdu.Event, len(nids))
	for i, ev := range list {
		if ev != nil {
			out[nids[i]] = ev
		}
	}
	return out, nil
}

// eventList is eventsByNID in nids' order, nil for unknown numbers.
func (r *Roomserver) eventList(ctx context.Context, nids []int64) ([]*pdu.Event, error) {
	out := make([]*pdu.Event, len(nids))
	if !r.events.byNumbers(nids, out) {
		return out, nil
	}
	var missing []int64
	for i, ev := range out {
		if ev == nil {
			missing = append(missing, nids[i])
		}
	}
	recs, err := r.store.EventJSONByNID(ctx, r.db, missing)
	if err != nil {
		return nil, err
	}
	loaded := make(map[int64]*pdu.Event, len(recs))
	for nid, rec := range recs {
		v, err := r.versionOf(ctx, r.db, rec.RoomNID)
		if err != nil {
			return nil, err
		}
		ev, err := pdu.ParseStored(v, rec.JSON, id.EventID(rec.EventID))
		if err != nil {
			return nil, fmt.Errorf("stored event %s: %w", rec.EventID, err)
		}
		r.events.put(nid, ev)
		loaded[nid] = ev
	}
	for i, ev := range out {
		if ev == nil {
			out[i] = loaded[nids[i]]
		}
	}
	return out, nil
}

// snapshotEvents reads a snapshot's state as events.
func (r *Roomserver) snapshotEvents(ctx context.Context, snapshot int64) (map[auth.StateKey]*pdu.Event, error) {
	st, err := roomstore.LoadState(ctx, r.db, snapshot)
	if err != nil {
		return nil, err
	}
	keyNIDs, evNIDs := make([]int64, 0, len(st)), make([]int64, 0, len(st))
	for k, e := range st {
		keyNIDs, evNIDs = append(keyNIDs, k), append(evNIDs, e)
	}
	keys, err := r.store.StateKeys(ctx, r.db, keyNIDs)
	if err != nil {
		return nil, err
	}
	evs, err := r.eventList(ctx, evNIDs)
	if err != nil {
		return nil, err
	}
	out := make(map[auth.StateKey]*pdu.Event, len(st))
	for i, ev := range evs {
		if ev == nil {
			return nil, fmt.Errorf("snapshot %d: state event %d is not stored", snapshot, evNIDs[i])
		}
		k := keys[keyNIDs[i]]
		out[auth.StateKey{Type: k.Type, StateKey: k.StateKey}] = ev
	}
	return out, nil
}

// eventsByID is eventsByNID by event ID, with each event's number.
func (r *Roomserver) eventsByID(ctx context.Context, ids []id.EventID) (map[id.EventID]*pdu.Event, map[id.EventID]int64, error) {
	evs := make(map[id.EventID]*pdu.Event, len(ids))
	nids := make(map[id.EventID]int64, len(ids))
	var missing []string
	for _, e := range ids {
		if ev, nid, ok := r.events.byEventID(e); ok {
			evs[e], nids[e] = ev, nid
		} else {
			missing = append(missing, string(e))
		}
	}
	if len(missing) == 0 {
		return evs, nids, nil
	}
	recs, err := r.store.EventsByID(ctx, r.db, missing)
	if err != nil {
		return nil, nil, err
	}
	for _, rec := range recs {
		v, err := r.versionOf(ctx, r.db, rec.RoomNID)
		if err != nil {
			return nil, nil, err
		}
		ev, err := pdu.ParseStored(v, rec.JSON, id.EventID(rec.EventID))
		if err != nil {
			return nil, nil, fmt.Errorf("stored event %s: %w", rec.EventID, err)
		}
		r.events.put(rec.NID, ev)
		evs[ev.EventID()], nids[ev.EventID()] = ev, rec.NID
	}
	return evs, nids, nil
}

// eventByID returns one stored event, nil if unknown.
func (r *Roomserver) eventByID(ctx context.Context, eventID id.EventID) (*pdu.Event, int64, error) {
	evs, nids, err := r.eventsByID(ctx, []id.EventID{eventID})
	if err != nil {
		return nil, 0, err
	}
	return evs[eventID], nids[eventID], nil
}
