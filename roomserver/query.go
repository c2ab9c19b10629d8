package roomserver

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver/auth"
	"github.com/latticehq/lattice/roomserver/pdu"
	"github.com/latticehq/lattice/storage/roomstore"
)

// DefaultMissingEventsLimit is the limit of /get_missing_events when the request gives none.
const DefaultMissingEventsLimit = 10

// StateAfter returns the state of the room just after an event: the state before it with the
// event applied, unless it is a message event or was rejected ("Rejection"); nil for an
// outlier, whose state is unknown, or an unknown event.
func (r *Roomserver) StateAfter(ctx context.Context, eventID id.EventID) (map[auth.StateKey]*pdu.Event, error) {
	hs, err := r.store.EventHeadersByID(ctx, r.db, []string{string(eventID)})
	if err != nil || len(hs) == 0 || hs[0].Outlier {
		return nil, err
	}
	h := hs[0]
	version, err := r.versionOf(ctx, r.db, h.RoomNID)
	if err != nil {
		return nil, err
	}
	st, err := r.loadState(ctx, version, h.StateBefore)
	if err != nil {
		return nil, fmt.Errorf("state after %s: %w", eventID, err)
	}
	if h.StateKey != nil && !h.Rejected {
		evs, err := r.eventsByNID(ctx, []int64{h.NID})
		if err != nil {
			return nil, err
		}
		st[auth.StateKey{Type: h.Type, StateKey: *h.StateKey}] = evs[h.NID]
	}
	return st, nil
}

// StateIDsAfter returns the state just after an event as event IDs, as /state_ids answers it.
// Nothing is parsed, so it stays fast for old events of large rooms whose events are not cached;
// nil for an outlier or an unknown event.
func (r *Roomserver) StateIDsAfter(ctx context.Context, eventID id.EventID) (map[auth.StateKey]id.EventID, error) {
	hs, err := r.store.EventHeadersByID(ctx, r.db, []string{string(eventID)})
	if err != nil || len(hs) == 0 || hs[0].Outlier {
		return nil, err
	}
	h := hs[0]
	st, err := roomstore.LoadState(ctx, r.db, h.StateBefore)
	if err != nil {
		return nil, fmt.Errorf("state after %s: %w", eventID, err)
	}
	keyNIDs, evNIDs := make([]int64, 0, len(st)+1), make([]int64, 0, len(st)+1)
	for k, e := range st {
		keyNIDs, evNIDs = append(keyNIDs, k), append(evNIDs, e)
	}
	keys, err := r.store.StateKeys(ctx, r.db, keyNIDs)
	if err != nil {
		return nil, err
	}
	// Events this roomserver committed enter its event cache, which may still hold them; the
	// store caches the IDs of the others as it reads them.
	evIDs := make([]id.EventID, len(evNIDs))
	stored, err := r.store.EventIDs(ctx, r.db, r.events.idsByNumbers(evNIDs, evIDs))
	if err != nil {
		return nil, err
	}
	out := make(map[auth.StateKey]id.EventID, len(st)+1)
	for i, k := range keyNIDs {
		if evIDs[i] == "" {
			evIDs[i] = id.EventID(stored[evNIDs[i]])
		}
		out[auth.StateKey{Type: keys[k].Type, StateKey: keys[k].StateKey}] = evIDs[i]
	}
	if h.StateKey != nil && !h.Rejected {
		out[auth.StateKey{Type: h.Type, StateKey: *h.StateKey}] = eventID
	}
	return out, nil
}

// Members returns, sorted, the users whose m.room.member event in the room's current state has
// the given membership ("join", "invite", "leave", "ban", "knock"), or every user with a member
// event for "".
func (r *Roomserver) Members(ctx context.Context, roomID id.RoomID, membership string) ([]id.UserID, error) {
	rc, err := r.readRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	var evs []*pdu.Event
	r.mu.Lock()
	for k, ev := range rc.state {
		if k.Type == "m.room.member" {
			evs = append(evs, ev)
		}
	}
	r.mu.Unlock()
	var out []id.UserID
	for _, ev := range evs {
		user := id.UserID(*ev.StateKey())
		if membership == "" || auth.Membership(memberState{ev}, user) == membership {
			out = append(out, user)
		}
	}
	slices.Sort(out)
	return out, nil
}

// memberState shows the rules' membership reader a single member event.
type memberState struct{ ev *pdu.Event }

func (m memberState) Get(typ, stateKey string) auth.Event {
	if sk := m.ev.StateKey(); typ == m.ev.Type() && sk != nil && *sk == stateKey {
		return m.ev
	}
	return nil
}

// AuthChain returns the auth chain of events (server-server API, "Auth events selection";
// /event_auth): every event reachable from them through auth_events, the events themselves
// left out unless one is in another's chain, ordered so that auth events come before the events
// they authorise. The chains of state events come from the index; message events, which have
// no entry, contribute their auth events and those events' chains. Unknown events are an error
// wrapping ErrEventNotFound.
func (r *Roomserver) AuthChain(ctx context.Context, eventIDs []id.EventID) ([]*pdu.Event, error) {
	nids, err := r.store.EventNIDs(ctx, r.db, idStrings(eventIDs))
	if err != nil {
		return nil, err
	}
	var unknown []string
	for _, e := range eventIDs {
		if nids[string(e)] == 0 {
			unknown = append(unknown, string(e))
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("auth chain: %w: %s", ErrEventNotFound, strings.Join(unknown, ", "))
	}
	chain := map[int64]struct{}{}
	todo := slices.Collect(maps.Values(nids))
	for len(todo) > 0 {
		found, err := r.store.Chains.Lookup(ctx, r.db, todo)
		if err != nil {
			return nil, err
		}
		var walk []int64
		for _, n := range todo {
			if ch, ok := found[n]; ok {
				for _, x := range ch {
					chain[x] = struct{}{}
				}
			} else {
				walk = append(walk, n)
			}
		}
		todo = nil
		if len(walk) == 0 {
			break
		}
		evs, err := r.eventsByNID(ctx, walk)
		if err != nil {
			return nil, err
		}
		var authIDs []string
		for _, ev := range evs {
			authIDs = append(authIDs, idStrings(ev.AuthEventIDs())...)
		}
		authNIDs, err := r.store.EventNIDs(ctx, r.db, authIDs)
		if err != nil {
			return nil, err
		}
		for _, a := range authNIDs {
			if _, ok := chain[a]; !ok {
				chain[a] = struct{}{}
				todo = append(todo, a)
			}
		}
	}
	keys := slices.Sorted(maps.Keys(chain))
	evs, err := r.eventsByNID(ctx, keys)
	if err != nil {
		return nil, err
	}
	// Numbers follow storage order, and an event is stored only after its auth events.
	out := make([]*pdu.Event, 0, len(keys))
	for _, n := range keys {
		if ev := evs[n]; ev != nil {
			out = append(out, ev)
		}
	}
	return out, nil
}

// MissingEvents returns the events of /get_missing_events (server-server API, "Backfilling and
// retrieving missing events"): a breadth-first walk of prev_events back from latest, leaving
// out and not walking past the events in earliest, that stops at limit events (limit <= 0:
// DefaultMissingEventsLimit). Rejected events are neither returned nor walked through; soft-failed
// ones are returned only when the walk reaches them, that is when a later event references them
// ("Soft failure"). The result is oldest first. Whether the requesting server may see the events
// (history visibility) is for the caller to decide.
func (r *Roomserver) MissingEvents(ctx context.Context, roomID id.RoomID, earliest, latest []id.EventID, limit int) ([]*pdu.Event, error) {
	if limit <= 0 {
		limit = DefaultMissingEventsLimit
	}
	seen := map[id.EventID]bool{}
	for _, e := range slices.Concat(earliest, latest) {
		seen[e] = true
	}
	start, _, err := r.eventsByID(ctx, latest)
	if err != nil {
		return nil, err
	}
	var frontier, out []*pdu.Event
	for _, e := range latest {
		if ev := start[e]; ev != nil && ev.RoomID() == roomID {
			frontier = append(frontier, ev)
		}
	}
	for len(frontier) > 0 && len(out) < limit {
		var next []id.EventID
		for _, ev := range frontier {
			for _, p := range ev.PrevEventIDs() {
				if !seen[p] {
					seen[p] = true
					next = append(next, p)
				}
			}
		}
		if len(next) == 0 {
			break
		}
		hs, err := r.store.EventHeadersByID(ctx, r.db, idStrings(next))
		if err != nil {
			return nil, err
		}
		rejected := map[id.EventID]bool{}
		for _, h := range hs {
			rejected[id.EventID(h.EventID)] = h.Rejected
		}
		evs, _, err := r.eventsByID(ctx, next)
		if err != nil {
			return nil, err
		}
		frontier = frontier[:0:0]
		for _, p := range next {
			ev := evs[p]
			if ev == nil || ev.RoomID() != roomID || rejected[p] {
				continue
			}
			out = append(out, ev)
			frontier = append(frontier, ev)
			if len(out) == limit {
				break
			}
		}
	}
	slices.SortStableFunc(out, func(a, b *pdu.Event) int { return cmp.Compare(a.Depth(), b.Depth()) })
	return out, nil
}
