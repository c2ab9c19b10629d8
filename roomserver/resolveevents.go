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
	"github.com/latticehq/lattice/storage/roomstore"
)

// storeEvents is stateres.Events and stateres.Rejections backed by the store: events through
// the event cache, auth chains from the Chains index. It also translates between event IDs and
// numbers for one resolution, remembering what it learnt.
type storeEvents struct {
	r       *Roomserver
	ids     map[int64]id.EventID
	nids    map[id.EventID]int64
	keyNIDs map[auth.StateKey]int64
	// pending is the event being taken in (numbered pendingNID), not yet stored nor indexed;
	// its auth chain is pendingAuth and their chains.
	pending     *pdu.Event
	pendingAuth []int64
	// common is the auth chain of events that every state holds but that were left out of
	// what stateres sees (reduceStates); nil when none were.
	common map[int64]struct{}
}

var (
	_ stateres.Events     = (*storeEvents)(nil)
	_ stateres.Rejections = (*storeEvents)(nil)
)

func newStoreEvents(r *Roomserver, pending *pdu.Event, pendingAuth []int64) *storeEvents {
	s := &storeEvents{r: r, ids: map[int64]id.EventID{}, nids: map[id.EventID]int64{}, keyNIDs: map[auth.StateKey]int64{},
		pending: pending, pendingAuth: pendingAuth}
	if pending != nil {
		s.ids[pendingNID], s.nids[pending.EventID()] = pending.EventID(), pendingNID
	}
	return s
}

// stateMaps translates numeric states to the event IDs stateres works with.
func (s *storeEvents) stateMaps(ctx context.Context, states []roomstore.State) ([]stateres.StateMap, error) {
	keySet := map[int64]struct{}{}
	var evNIDs []int64
	for _, st := range states {
		for k, e := range st {
			if _, ok := keySet[k]; !ok && k != pendingKeyNID {
				keySet[k] = struct{}{}
			}
			if _, ok := s.ids[e]; !ok {
				evNIDs = append(evNIDs, e)
			}
		}
	}
	keys, err := s.r.store.StateKeys(ctx, s.r.db, slices.Collect(maps.Keys(keySet)))
	if err != nil {
		return nil, err
	}
	if _, err := s.idsOf(ctx, dedupeNIDs(evNIDs)); err != nil {
		return nil, err
	}
	byNID := make(map[int64]auth.StateKey, len(keys)+1)
	if sk := s.pendingKey(); sk != nil && slices.ContainsFunc(states, func(st roomstore.State) bool { _, ok := st[pendingKeyNID]; return ok }) {
		byNID[pendingKeyNID], s.keyNIDs[*sk] = *sk, pendingKeyNID
	}
	for n, k := range keys {
		ak := auth.StateKey{Type: k.Type, StateKey: k.StateKey}
		byNID[n] = ak
		s.keyNIDs[ak] = n
	}
	out := make([]stateres.StateMap, len(states))
	for i, st := range states {
		m := make(stateres.StateMap, len(st))
		for k, e := range st {
			ak, ok := byNID[k]
			if !ok {
				return nil, fmt.Errorf("state key %d is not stored", k)
			}
			m[ak] = s.ids[e]
		}
		out[i] = m
	}
	return out, nil
}

// pendingKey is the state key of the pending event, nil if there is none.
func (s *storeEvents) pendingKey() *auth.StateKey {
	if s.pending == nil || s.pending.StateKey() == nil {
		return nil
	}
	return &auth.StateKey{Type: s.pending.Type(), StateKey: *s.pending.StateKey()}
}

// toNumbers translates a resolved state back to numbers.
func (s *storeEvents) toNumbers(ctx context.Context, res stateres.StateMap) (roomstore.State, error) {
	var unknown []auth.StateKey
	for k := range res {
		if _, ok := s.keyNIDs[k]; !ok {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		// Keys of events from the auth difference, held by none of the states.
		keys := make([]roomstore.StateKey, len(unknown))
		for i, k := range unknown {
			keys[i] = roomstore.StateKey{Type: k.Type, StateKey: k.StateKey}
		}
		nids, err := s.r.store.KnownStateKeyNIDs(ctx, s.r.db, keys)
		if err != nil {
			return nil, err
		}
		for i, k := range unknown {
			if nids[i] == 0 {
				return nil, fmt.Errorf("state key %v of a stored event has no number", k)
			}
			s.keyNIDs[k] = nids[i]
		}
	}
	// nidsOf learns the number of every event in the result.
	if _, err := s.nidsOf(ctx, slices.Collect(maps.Values(res))); err != nil {
		return nil, err
	}
	out := make(roomstore.State, len(res))
	for k, e := range res {
		out[s.keyNIDs[k]] = s.nids[e]
	}
	return out, nil
}

// idsOf returns the IDs of events by number, in nids' order.
func (s *storeEvents) idsOf(ctx context.Context, nids []int64) ([]id.EventID, error) {
	var missing []int64
	for _, n := range nids {
		if _, ok := s.ids[n]; ok {
			continue
		}
		if ev, ok := s.r.events.byNumber(n); ok {
			s.ids[n], s.nids[ev.EventID()] = ev.EventID(), n
		} else {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		found, err := s.r.store.EventIDs(ctx, s.r.db, missing)
		if err != nil {
			return nil, err
		}
		for n, e := range found {
			s.ids[n], s.nids[id.EventID(e)] = id.EventID(e), n
		}
	}
	out := make([]id.EventID, len(nids))
	for i, n := range nids {
		e, ok := s.ids[n]
		if !ok {
			return nil, fmt.Errorf("event %d is not stored", n)
		}
		out[i] = e
	}
	return out, nil
}

// nidsOf returns the numbers of events by ID, in ids' order.
func (s *storeEvents) nidsOf(ctx context.Context, ids []id.EventID) ([]int64, error) {
	var missing []string
	for _, e := range ids {
		if _, ok := s.nids[e]; ok {
			continue
		}
		if _, n, ok := s.r.events.byEventID(e); ok {
			s.ids[n], s.nids[e] = e, n
		} else {
			missing = append(missing, string(e))
		}
	}
	if len(missing) > 0 {
		found, err := s.r.store.EventNIDs(ctx, s.r.db, missing)
		if err != nil {
			return nil, err
		}
		for e, n := range found {
			s.ids[n], s.nids[id.EventID(e)] = id.EventID(e), n
		}
	}
	out := make([]int64, len(ids))
	for i, e := range ids {
		n, ok := s.nids[e]
		if !ok {
			return nil, fmt.Errorf("event %s is not stored", e)
		}
		out[i] = n
	}
	return out, nil
}

// Event implements stateres.Events.
func (s *storeEvents) Event(ctx context.Context, eventID id.EventID) (auth.Event, error) {
	if s.pending != nil && eventID == s.pending.EventID() {
		return s.pending, nil
	}
	ev, nid, err := s.r.eventByID(ctx, eventID)
	if err != nil {
		return nil, err
	}
	if ev == nil {
		return nil, fmt.Errorf("event %s is not stored", eventID)
	}
	s.ids[nid], s.nids[eventID] = eventID, nid
	return ev, nil
}

// Rejected implements stateres.Rejections.
func (s *storeEvents) Rejected(ctx context.Context, eventID id.EventID) (bool, error) {
	if s.pending != nil && eventID == s.pending.EventID() {
		return false, nil
	}
	hs, err := s.r.store.EventHeadersByID(ctx, s.r.db, []string{string(eventID)})
	if err != nil {
		return false, err
	}
	if len(hs) == 0 {
		return false, fmt.Errorf("event %s is not stored", eventID)
	}
	return hs[0].Rejected, nil
}

// chain returns the union of the auth chains of events from the index, the pending event's
// being its auth events and their chains.
func (s *storeEvents) chain(ctx context.Context, nids []int64) ([]int64, error) {
	list := make([]int64, 0, len(nids))
	pending := false
	for _, n := range nids {
		if n == pendingNID {
			pending = true
			list = append(list, s.pendingAuth...)
		} else {
			list = append(list, n)
		}
	}
	ch, err := s.r.store.Chains.AuthChain(ctx, s.r.db, list)
	if err != nil {
		return nil, err
	}
	if pending {
		ch = append(ch, s.pendingAuth...)
		slices.Sort(ch)
		ch = slices.Compact(ch)
	}
	return ch, nil
}

// AuthChain implements stateres.Events from the auth-chain index.
func (s *storeEvents) AuthChain(ctx context.Context, ids []id.EventID) ([]id.EventID, error) {
	nids, err := s.nidsOf(ctx, ids)
	if err != nil {
		return nil, err
	}
	ch, err := s.chain(ctx, nids)
	if err != nil {
		return nil, err
	}
	return s.idsOf(ctx, ch)
}

// AuthChainDifference implements stateres.Events from the auth-chain index (rooms/v2.md "Auth
// difference").
func (s *storeEvents) AuthChainDifference(ctx context.Context, sets [][]id.EventID) ([]id.EventID, error) {
	nidSets := make([][]int64, len(sets))
	pending := false
	for i, set := range sets {
		var err error
		if nidSets[i], err = s.nidsOf(ctx, set); err != nil {
			return nil, err
		}
		pending = pending || slices.Contains(nidSets[i], pendingNID)
	}
	var diff []int64
	var err error
	if pending || s.common != nil {
		diff, err = s.difference(ctx, nidSets)
	} else {
		diff, err = s.r.store.Chains.Difference(ctx, s.r.db, nidSets)
	}
	if err != nil {
		return nil, err
	}
	return s.idsOf(ctx, diff)
}

// difference is Chains.Difference for sets that may hold the pending event, less the common
// chain: events held by every set add their chains to every set's, so only the others' chains
// are compared.
func (s *storeEvents) difference(ctx context.Context, sets [][]int64) ([]int64, error) {
	inAll := map[int64]int{}
	for _, set := range sets {
		for _, e := range dedupeNIDs(set) {
			inAll[e]++
		}
	}
	var shared []int64
	counts := map[int64]int{}
	for i, set := range sets {
		var own []int64
		for _, e := range dedupeNIDs(set) {
			if inAll[e] == len(sets) {
				if i == 0 {
					shared = append(shared, e)
				}
			} else {
				own = append(own, e)
			}
		}
		ch, err := s.chain(ctx, own)
		if err != nil {
			return nil, err
		}
		for _, x := range ch {
			counts[x]++
		}
	}
	common, err := s.chain(ctx, shared)
	if err != nil {
		return nil, err
	}
	for _, x := range common {
		delete(counts, x)
	}
	for x := range counts {
		if _, ok := s.common[x]; ok {
			delete(counts, x)
		}
	}
	var out []int64
	for x, n := range counts {
		if n < len(sets) {
			out = append(out, x)
		}
	}
	slices.Sort(out)
	return out, nil
}

func dedupeNIDs(s []int64) []int64 {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}
