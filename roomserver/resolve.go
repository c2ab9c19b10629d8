package roomserver

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver/auth"
	"github.com/latticehq/lattice/roomserver/pdu"
	"github.com/latticehq/lattice/roomserver/stateres"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/roomstore"
)

// State resolution over storage (server-server API, "Room State Resolution"). States are held
// by numbers (state key → event) while they are worked on, translated to event IDs only for
// stateres, and stored as changes against a snapshot one of them came from, so that storage
// stays a chain of small deltas however large the room.

// pendingNID stands for the number of the event being taken in, and pendingKeyNID for that of
// its state key if the key is new: both are numbered only in the event's writing transaction,
// after the states that hold them have been resolved.
const (
	pendingNID    = -1
	pendingKeyNID = -1
)

// pendingNums are what pendingNID and pendingKeyNID stand for, once known.
type pendingNums struct{ event, key int64 }

func (n pendingNums) entry(e roomstore.Entry) roomstore.Entry {
	if e.Event == pendingNID {
		e.Event = n.event
	}
	if e.Key == pendingKeyNID {
		e.Key = n.key
	}
	return e
}

// numState is a room state by numbers: the changes delta applied to parent, or with parent nil
// to the stored snapshot base (0: the empty state). state is the whole result, nil where it was
// not needed and not loaded.
type numState struct {
	state  roomstore.State
	parent *numState
	base   int64
	delta  []roomstore.Entry
}

// loadNumState reads a stored snapshot.
func (r *Roomserver) loadNumState(ctx context.Context, snapshot int64) (*numState, error) {
	st, err := roomstore.LoadState(ctx, r.db, snapshot)
	if err != nil {
		return nil, err
	}
	return &numState{state: st, base: snapshot}, nil
}

// with returns the state with one more entry, as a change to s.
func (s *numState) with(key, event int64) *numState {
	var st roomstore.State
	if s.state != nil {
		st = maps.Clone(s.state)
		st[key] = event
	}
	return &numState{state: st, parent: s, delta: []roomstore.Entry{{Key: key, Event: event}}}
}

// storeState stores s, and the states it derives from, as snapshots in tx and returns its own,
// with the placeholders in them replaced by nums. memo belongs to one transaction attempt.
func storeState(ctx context.Context, tx *storage.Tx, roomNID int64, s *numState, nums pendingNums, memo map[*numState]int64) (int64, error) {
	if snap, ok := memo[s]; ok {
		return snap, nil
	}
	parent := s.base
	if s.parent != nil {
		var err error
		if parent, err = storeState(ctx, tx, roomNID, s.parent, nums, memo); err != nil {
			return 0, err
		}
	}
	snap := parent
	if len(s.delta) > 0 {
		changes := make([]roomstore.Entry, len(s.delta))
		for i, e := range s.delta {
			changes[i] = nums.entry(e)
		}
		var err error
		if snap, err = roomstore.AddSnapshot(ctx, tx, roomNID, parent, changes); err != nil {
			return 0, err
		}
	}
	memo[s] = snap
	return snap, nil
}

// diffStates returns the changes that turn state from into state to.
func diffStates(from, to roomstore.State) []roomstore.Entry {
	var out []roomstore.Entry
	for k, e := range to {
		if from[k] != e {
			out = append(out, roomstore.Entry{Key: k, Event: e})
		}
	}
	for k := range from {
		if _, ok := to[k]; !ok {
			out = append(out, roomstore.Entry{Key: k, Event: 0})
		}
	}
	return out
}

// resolveStates resolves room states with the algorithm of the room version (rooms/vN.md "State
// resolution") and returns the result as changes to the input it differs from least. Every
// input's state must be loaded. pending, if not nil, is the event being taken in, which the
// states may hold as pendingNID (and its state key as pendingKeyNID); pendingAuth are the
// numbers of its auth events that are state events.
//
// From room version 2 the states are split by numbers first ("Unconflicted state map and
// conflicted state set"), and stateres is given only the conflicted keys and the unconflicted
// ones its authorisation checks can consult, so that a room's thousands of unconflicted members
// are never translated to event IDs; see reduceStates for why the result is the same.
func (r *Roomserver) resolveStates(ctx context.Context, version id.RoomVersion, inputs []*numState, pending *pdu.Event, pendingAuth []int64) (*numState, error) {
	return r.resolve(ctx, version, inputs, pending, pendingAuth, true)
}

// resolve is resolveStates, with reduce false giving stateres the whole states (for tests).
func (r *Roomserver) resolve(ctx context.Context, version id.RoomVersion, inputs []*numState, pending *pdu.Event, pendingAuth []int64, reduce bool) (*numState, error) {
	var distinct []*numState
	for _, in := range inputs {
		if !slices.ContainsFunc(distinct, func(d *numState) bool { return maps.Equal(d.state, in.state) }) {
			distinct = append(distinct, in)
		}
	}
	switch len(distinct) {
	case 0:
		return &numState{state: roomstore.State{}}, nil
	case 1:
		return distinct[0], nil
	}
	evs := newStoreEvents(r, pending, pendingAuth)
	states := make([]roomstore.State, len(distinct))
	for i, d := range distinct {
		states[i] = d.state
	}
	var unconflicted roomstore.State
	var kept map[int64]bool // nil: every key goes to stateres
	if reduce && version.StateResVersion() != id.StateResV1 {
		var err error
		if unconflicted, kept, err = evs.reduceStates(ctx, version, states); err != nil {
			return nil, err
		}
		for i, st := range states {
			reduced := make(roomstore.State, len(kept))
			for k := range kept {
				if e, ok := st[k]; ok {
					reduced[k] = e
				}
			}
			states[i] = reduced
		}
	}
	sets, err := evs.stateMaps(ctx, states)
	if err != nil {
		return nil, err
	}
	res, err := stateres.Resolve(ctx, version, sets, evs)
	if err != nil {
		return nil, err
	}
	resolved, err := evs.toNumbers(ctx, res)
	if err != nil {
		return nil, err
	}
	result := resolved
	if kept != nil {
		// The unconflicted keys left out win over whatever the checks put there (step 5).
		result = make(roomstore.State, len(unconflicted)+len(resolved))
		for k, e := range resolved {
			result[k] = e
		}
		for k, e := range unconflicted {
			if !kept[k] {
				result[k] = e
			}
		}
	}
	best, bestDelta := 0, []roomstore.Entry(nil)
	for i, in := range distinct {
		d := diffStates(in.state, result)
		if i == 0 || len(d) < len(bestDelta) {
			best, bestDelta = i, d
		}
	}
	return &numState{state: result, parent: distinct[best], delta: bestDelta}, nil
}

// reduceStates splits numeric states into the unconflicted state map and the conflicted keys
// (rooms/v2.md "Unconflicted state map and conflicted state set"), and returns the keys to give
// stateres: the conflicted ones, and every key the authorisation rules consult for an event
// that stateres may check, which are those of the auth events selection of each event
// (server-server API, "Auth events selection") plus m.room.create, m.room.power_levels and
// m.room.join_rules.
//
// The result is the same as from the whole states. The events checked are those of the full
// conflicted set, and for room version 12 the conflicted state subgraph, all drawn from the
// conflicted events, their auth chains and the auth difference; checks read the unconflicted
// map only at the keys kept; mainline ordering reads only the power levels, which are kept;
// and the unconflicted map wins in the end, so the keys left out are put back over the result.
// The auth difference of the smaller states differs only by events in the auth chain of the
// unconflicted events left out, which are in every state's auth chain: storeEvents subtracts
// the auth chain of all unconflicted events (its common chain).
func (s *storeEvents) reduceStates(ctx context.Context, version id.RoomVersion, states []roomstore.State) (roomstore.State, map[int64]bool, error) {
	unconflicted := make(roomstore.State, len(states[0]))
	kept := map[int64]bool{}
	for k, e := range states[0] {
		same := true
		for _, st := range states[1:] {
			if st[k] != e {
				same = false
				break
			}
		}
		if same {
			unconflicted[k] = e
		}
	}
	own := make([][]int64, len(states))
	var conflictedEvents []int64
	for i, st := range states {
		for k, e := range st {
			if _, ok := unconflicted[k]; !ok {
				kept[k] = true
				own[i] = append(own[i], e)
				conflictedEvents = append(conflictedEvents, e)
			}
		}
	}
	common, err := s.r.store.Chains.AuthChain(ctx, s.r.db, slices.Collect(maps.Values(unconflicted)))
	if err != nil {
		return nil, nil, err
	}
	s.common = make(map[int64]struct{}, len(common))
	for _, x := range common {
		s.common[x] = struct{}{}
	}
	// The events stateres may check: the full conflicted set, and the auth chains of the
	// conflicted events, where the v12 conflicted state subgraph lies.
	checked, err := s.difference(ctx, own)
	if err != nil {
		return nil, nil, err
	}
	checked = append(checked, conflictedEvents...)
	if version.StateResVersion() == id.StateResV2_1 {
		ch, err := s.chain(ctx, dedupeNIDs(conflictedEvents))
		if err != nil {
			return nil, nil, err
		}
		checked = append(checked, ch...)
	}
	checked = dedupeNIDs(checked)
	var evs map[int64]*pdu.Event
	if evs, err = s.r.eventsByNID(ctx, slices.DeleteFunc(slices.Clone(checked), func(n int64) bool { return n == pendingNID })); err != nil {
		return nil, nil, err
	}
	if s.pending != nil {
		evs[pendingNID] = s.pending
	}
	keySet := map[auth.StateKey]struct{}{{Type: "m.room.create"}: {}, {Type: "m.room.power_levels"}: {}, {Type: "m.room.join_rules"}: {}}
	for _, n := range checked {
		ev := evs[n]
		if ev == nil {
			return nil, nil, fmt.Errorf("event %d is not stored", n)
		}
		for _, k := range auth.Selection(ev) {
			keySet[k] = struct{}{}
		}
	}
	keys := make([]roomstore.StateKey, 0, len(keySet))
	for k := range keySet {
		keys = append(keys, roomstore.StateKey{Type: k.Type, StateKey: k.StateKey})
	}
	// A new key of the pending event is conflicted, and kept, already.
	nids, err := s.r.store.KnownStateKeyNIDs(ctx, s.r.db, keys)
	if err != nil {
		return nil, nil, err
	}
	for _, n := range nids {
		if n != 0 {
			kept[n] = true
		}
	}
	return unconflicted, kept, nil
}

// resolveSnapshots resolves the states of stored snapshots of a room and stores the result as a
// new snapshot, holding only its changes against the snapshot it is closest to; it returns that
// snapshot ("Room State Resolution" over snapshots).
func (r *Roomserver) resolveSnapshots(ctx context.Context, roomID id.RoomID, snapshots []int64) (int64, error) {
	room, err := r.store.Room(ctx, r.db, string(roomID))
	if err != nil {
		return 0, fmt.Errorf("resolve states of %s: %w", roomID, err)
	}
	inputs := make([]*numState, len(snapshots))
	for i, s := range snapshots {
		if inputs[i], err = r.loadNumState(ctx, s); err != nil {
			return 0, err
		}
	}
	res, err := r.resolveStates(ctx, id.RoomVersion(room.Version), inputs, nil, nil)
	if err != nil {
		return 0, fmt.Errorf("resolve states of %s: %w", roomID, err)
	}
	var snap int64
	err = r.db.WithTx(ctx, func(tx *storage.Tx) error {
		var err error
		snap, err = storeState(ctx, tx, room.NID, res, pendingNums{}, map[*numState]int64{})
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store resolved state of %s: %w", roomID, err)
	}
	return snap, nil
}
