package stateres

import (
	"container/heap"
	"fmt"
	"maps"
	"math"
	"slices"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver/auth"
)

// powerSortKey is what the reverse topological power ordering compares events by.
type powerSortKey struct {
	ev    auth.Event
	power int64
	ts    int64
	id    id.EventID
}

// less is the comparison relation of rooms/v2.md "Reverse topological power ordering": greater
// sender power level first, then smaller origin_server_ts, then smaller event ID.
func (a *powerSortKey) less(b *powerSortKey) bool {
	if a.power != b.power {
		return a.power > b.power
	}
	if a.ts != b.ts {
		return a.ts < b.ts
	}
	return a.id < b.id
}

// candidates is the min-heap of events whose auth ancestors are all placed.
type candidates []*powerSortKey

func (c candidates) Len() int           { return len(c) }
func (c candidates) Less(i, j int) bool { return c[i].less(c[j]) }
func (c candidates) Swap(i, j int)      { c[i], c[j] = c[j], c[i] }
func (c *candidates) Push(x any)        { *c = append(*c, x.(*powerSortKey)) }
func (c *candidates) Pop() any {
	old := *c
	x := old[len(old)-1]
	*c = old[:len(old)-1]
	return x
}

// reverseTopologicalPowerOrder sorts the events with Kahn's algorithm, taking at each step the
// smallest candidate (rooms/v2.md "Reverse topological power ordering"). An event comes after
// every event of the set in its auth chain, whether or not the auth_events path between them
// stays inside the set, so the order is a topological ordering of the auth DAG itself.
func (r *resolver) reverseTopologicalPowerOrder(set map[id.EventID]struct{}) ([]auth.Event, error) {
	ids := make([]id.EventID, 0, len(set))
	for e := range set {
		ids = append(ids, e)
	}
	slices.Sort(ids)
	keys := make(map[id.EventID]*powerSortKey, len(ids))
	for _, e := range ids {
		ev, err := r.load(e)
		if err != nil {
			return nil, err
		}
		ae, err := r.authEventMap(ev)
		if err != nil {
			return nil, err
		}
		// The sender's power level as its auth events give it.
		keys[e] = &powerSortKey{
			ev:    ev,
			power: r.powerLevels(ae).User(ev.Sender()),
			ts:    ev.OriginServerTS(),
			id:    e,
		}
	}

	// Usually no auth_events path leaves the set and comes back into it, and the links inside the
	// set are all the edges needed; one auth chain query over the links that leave it tells.
	viaOutside, err := r.pathsLeaveSet(ids, set)
	if err != nil {
		return nil, err
	}
	// ancestors of each event within the set, and the reverse edges to release successors.
	pending := make(map[id.EventID]int, len(ids))
	successors := make(map[id.EventID][]id.EventID, len(ids))
	for _, e := range ids {
		var anc []id.EventID
		if viaOutside {
			if anc, err = r.ancestorsIn(keys[e].ev, set); err != nil {
				return nil, err
			}
		} else {
			anc = inSet(keys[e].ev.AuthEventIDs(), set)
		}
		pending[e] = len(anc)
		for _, a := range anc {
			successors[a] = append(successors[a], e)
		}
	}

	var h candidates
	for _, e := range ids {
		if pending[e] == 0 {
			h = append(h, keys[e])
		}
	}
	heap.Init(&h)
	order := make([]auth.Event, 0, len(ids))
	for h.Len() > 0 {
		k := heap.Pop(&h).(*powerSortKey)
		order = append(order, k.ev)
		for _, s := range successors[k.id] {
			pending[s]--
			if pending[s] == 0 {
				heap.Push(&h, keys[s])
			}
		}
	}
	if len(order) != len(ids) {
		// Only a cycle in auth_events (impossible where event IDs are hashes) leaves events
		// unplaced; they follow in event ID order, so that the result stays deterministic.
		for _, e := range ids {
			if pending[e] > 0 {
				order = append(order, keys[e].ev)
			}
		}
	}
	return order, nil
}

// pathsLeaveSet reports whether some event of the set has another in its auth chain through an
// auth event outside the set.
func (r *resolver) pathsLeaveSet(ids []id.EventID, set map[id.EventID]struct{}) (bool, error) {
	outside := make(map[id.EventID]struct{})
	for _, e := range ids {
		ev, err := r.load(e)
		if err != nil {
			return false, err
		}
		for _, a := range ev.AuthEventIDs() {
			if _, ok := set[a]; !ok {
				outside[a] = struct{}{}
			}
		}
	}
	if len(outside) == 0 {
		return false, nil
	}
	chain, err := r.events.AuthChain(r.ctx, slices.Sorted(maps.Keys(outside)))
	if err != nil {
		return false, fmt.Errorf("auth chain: %w", err)
	}
	return len(inSet(chain, set)) > 0, nil
}

// ancestorsIn returns the events of set that are in the auth chain of ev. When every auth event
// of ev is in the set, the direct links are the answer, since the events of the set reachable
// through them come before them anyway; otherwise the auth chain is asked of storage.
func (r *resolver) ancestorsIn(ev auth.Event, set map[id.EventID]struct{}) ([]id.EventID, error) {
	direct := ev.AuthEventIDs()
	if len(inSet(direct, set)) == len(direct) {
		return uniq(direct), nil
	}
	chain, err := r.events.AuthChain(r.ctx, []id.EventID{ev.EventID()})
	if err != nil {
		return nil, fmt.Errorf("auth chain of %s: %w", ev.EventID(), err)
	}
	return inSet(chain, set), nil
}

// inSet returns, sorted without duplicates, the IDs that are in set.
func inSet(ids []id.EventID, set map[id.EventID]struct{}) []id.EventID {
	var out []id.EventID
	for _, e := range ids {
		if _, ok := set[e]; ok {
			out = append(out, e)
		}
	}
	return uniq(out)
}

// uniq returns the IDs sorted without duplicates.
func uniq(ids []id.EventID) []id.EventID {
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}

// mainlineOrder sorts events by the mainline ordering based on the power levels event pl, which
// may be empty (rooms/v2.md "Mainline ordering").
func (r *resolver) mainlineOrder(pl id.EventID, events []id.EventID) ([]auth.Event, error) {
	// The mainline of pl: its position in the chain of power levels events it cites.
	mainline := make(map[id.EventID]int)
	for p, i := pl, 0; p != ""; i++ {
		if _, seen := mainline[p]; seen {
			break
		}
		mainline[p] = i
		ev, err := r.load(p)
		if err != nil {
			return nil, err
		}
		if p, err = r.powerLevelsAuthEvent(ev); err != nil {
			return nil, err
		}
	}

	// first[e] is the mainline index of the first event of the mainline met when following the
	// power levels auth events from e, e included; memoised since events share their chains.
	first := make(map[id.EventID]int)
	firstOnMainline := func(start id.EventID) (int, error) {
		var path []id.EventID
		pos := math.MaxInt
		for e := start; e != ""; {
			if i, ok := mainline[e]; ok {
				pos = i
				break
			}
			if i, ok := first[e]; ok {
				pos = i
				break
			}
			if slices.Contains(path, e) {
				break
			}
			path = append(path, e)
			ev, err := r.load(e)
			if err != nil {
				return 0, err
			}
			if e, err = r.powerLevelsAuthEvent(ev); err != nil {
				return 0, err
			}
		}
		for _, e := range path {
			first[e] = pos
		}
		return pos, nil
	}

	type sortKey struct {
		ev  auth.Event
		pos int
	}
	keys := make([]sortKey, 0, len(events))
	for _, e := range events {
		ev, err := r.load(e)
		if err != nil {
			return nil, err
		}
		// The mainline position of e counts from e's power levels auth event, not e itself.
		p, err := r.powerLevelsAuthEvent(ev)
		if err != nil {
			return nil, err
		}
		pos := math.MaxInt
		if p != "" {
			if pos, err = firstOnMainline(p); err != nil {
				return nil, err
			}
		}
		keys = append(keys, sortKey{ev: ev, pos: pos})
	}
	slices.SortFunc(keys, func(a, b sortKey) int {
		// A greater mainline position sorts first: it is based on an earlier power levels event.
		if a.pos != b.pos {
			if a.pos > b.pos {
				return -1
			}
			return 1
		}
		if ta, tb := a.ev.OriginServerTS(), b.ev.OriginServerTS(); ta != tb {
			if ta < tb {
				return -1
			}
			return 1
		}
		switch ia, ib := a.ev.EventID(), b.ev.EventID(); {
		case ia < ib:
			return -1
		case ia > ib:
			return 1
		}
		return 0
	})
	out := make([]auth.Event, len(keys))
	for i, k := range keys {
		out[i] = k.ev
	}
	return out, nil
}

// powerLevelsAuthEvent returns the m.room.power_levels event among ev's auth events, or "".
func (r *resolver) powerLevelsAuthEvent(ev auth.Event) (id.EventID, error) {
	for _, a := range ev.AuthEventIDs() {
		ae, err := r.load(a)
		if err != nil {
			return "", err
		}
		if ae.Type() == typePowerLevels && ae.StateKey() != nil && *ae.StateKey() == "" {
			return a, nil
		}
	}
	return "", nil
}
