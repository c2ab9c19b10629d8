package stateres

import (
	"fmt"
	"maps"
	"slices"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver/auth"
)

// separate splits the sets into the unconflicted state map and the conflicted state set
// (rooms/v2.md "Unconflicted state map and conflicted state set"): a key is unconflicted only
// when every set holds it with the same event.
func separate(sets []StateMap) (StateMap, map[id.EventID]struct{}) {
	// Walk the smallest set: a key missing from it is conflicted anyway. Map lookups dominate a
	// resolution of a large room, so each set is looked into once per key of the smallest.
	smallest := 0
	for i, s := range sets {
		if len(s) < len(sets[smallest]) {
			smallest = i
		}
	}
	base := sets[smallest]
	unconflicted := make(StateMap, len(base))
	conflicted := make(map[id.EventID]struct{})
	found := make([]int, len(sets)) // keys of base that each set holds
	for k, v := range base {
		same := true
		for i, s := range sets {
			if i == smallest {
				continue
			}
			if w, ok := s[k]; ok {
				found[i]++
				same = same && w == v
			} else {
				same = false
			}
		}
		if same {
			unconflicted[k] = v
			continue
		}
		for _, s := range sets {
			if w, ok := s[k]; ok {
				conflicted[w] = struct{}{}
			}
		}
	}
	// Keys outside the smallest set, in the sets that have any.
	for i, s := range sets {
		if i == smallest || found[i] == len(s) {
			continue
		}
		for k, v := range s {
			if _, ok := base[k]; !ok {
				conflicted[v] = struct{}{}
			}
		}
	}
	return unconflicted, conflicted
}

// resolveV2 is the algorithm of rooms/v2.md "State resolution", or with v21 that of rooms/v12.md
// "State resolution" (v2.1: the conflicted state subgraph joins the full conflicted set, and the
// power events' iterative auth checks start from the empty state). A non-nil authDiff is used as
// the auth difference instead of asking storage, which benchmarks use.
func (r *resolver) resolveV2(sets []StateMap, v21 bool, authDiff []id.EventID) (StateMap, error) {
	unconflicted, conflicted := separate(sets)
	if len(conflicted) == 0 {
		return unconflicted, nil
	}

	// Full conflicted set (rooms/v2.md, rooms/v12.md "Full conflicted set").
	full := make(map[id.EventID]struct{}, len(conflicted))
	for e := range conflicted {
		full[e] = struct{}{}
	}
	if authDiff == nil {
		lists := make([][]id.EventID, len(sets))
		for i, s := range sets {
			lists[i] = slices.Collect(maps.Values(s))
		}
		var err error
		authDiff, err = r.events.AuthChainDifference(r.ctx, lists)
		if err != nil {
			return nil, fmt.Errorf("auth difference: %w", err)
		}
	}
	for _, e := range authDiff {
		full[e] = struct{}{}
	}
	if v21 {
		sub, err := r.conflictedSubgraph(conflicted)
		if err != nil {
			return nil, err
		}
		for _, e := range sub {
			full[e] = struct{}{}
		}
	}

	// Step 1: the power events of the full conflicted set and their auth chains within it.
	var power []id.EventID
	for e := range full {
		ev, err := r.load(e)
		if err != nil {
			return nil, err
		}
		if isPowerEvent(ev) {
			power = append(power, e)
		}
	}
	slices.Sort(power)
	picked := make(map[id.EventID]struct{}, len(power))
	for _, e := range power {
		picked[e] = struct{}{}
	}
	if len(power) > 0 {
		chain, err := r.events.AuthChain(r.ctx, power)
		if err != nil {
			return nil, fmt.Errorf("auth chain of power events: %w", err)
		}
		for _, e := range chain {
			if _, ok := full[e]; ok {
				picked[e] = struct{}{}
			}
		}
	}
	powerOrder, err := r.reverseTopologicalPowerOrder(picked)
	if err != nil {
		return nil, err
	}

	// Step 2: iterative auth checks from the unconflicted state map (v2) or the empty one (v2.1).
	state := &overlay{changes: make(StateMap)}
	if !v21 {
		state.base = unconflicted
	}
	if err := r.iterativeAuthChecks(state, powerOrder); err != nil {
		return nil, err
	}

	// Step 3: the remaining events in mainline order based on the resolved power levels.
	var rest []id.EventID
	for e := range full {
		if _, ok := picked[e]; !ok {
			rest = append(rest, e)
		}
	}
	var pl id.EventID
	if e, ok := state.get(auth.StateKey{Type: typePowerLevels}); ok {
		pl = e
	}
	restOrder, err := r.mainlineOrder(pl, rest)
	if err != nil {
		return nil, err
	}

	// Step 4: iterative auth checks on the partially resolved state.
	if err := r.iterativeAuthChecks(state, restOrder); err != nil {
		return nil, err
	}

	// Step 5: the unconflicted state map wins over whatever the checks put under its keys. It
	// is no longer needed on its own, so it becomes the result.
	res := unconflicted
	for k, v := range state.changes {
		if _, ok := res[k]; !ok {
			res[k] = v
		}
	}
	return res, nil
}

// iterativeAuthChecks applies each event in order to the state when the authorisation rules allow
// it, and drops it otherwise (rooms/v2.md "Iterative auth checks").
func (r *resolver) iterativeAuthChecks(state *overlay, order []auth.Event) error {
	for _, ev := range order {
		k, ok := keyOf(ev)
		if !ok {
			continue
		}
		ok, err := r.allowed(ev, state, true)
		if err != nil {
			return err
		}
		if ok {
			state.set(k, ev.EventID())
		}
	}
	return nil
}

// isPowerEvent tells power events (rooms/v2.md "Power events"): power levels, join rules, and
// kicks and bans of someone other than the sender.
func isPowerEvent(ev auth.Event) bool {
	sk := ev.StateKey()
	if sk == nil {
		return false
	}
	switch ev.Type() {
	case typePowerLevels, typeJoinRules:
		return true
	case typeMember:
		m := membership(ev)
		return (m == "leave" || m == "ban") && *sk != string(ev.Sender())
	}
	return false
}

// conflictedSubgraph returns the events on auth_events paths between events of the conflicted
// state set, endpoints included (rooms/v12.md "Conflicted state subgraph"). It looks only at
// the auth chains of the conflicted events.
func (r *resolver) conflictedSubgraph(conflicted map[id.EventID]struct{}) ([]id.EventID, error) {
	start := slices.Sorted(maps.Keys(conflicted))
	chain, err := r.events.AuthChain(r.ctx, start)
	if err != nil {
		return nil, fmt.Errorf("auth chain of conflicted events: %w", err)
	}
	// reaches[e] says whether a conflicted event is e or in e's auth chain. Every auth event of
	// an event in the chain is in the chain too, so the walk stays inside it.
	reaches := make(map[id.EventID]bool, len(chain)+len(start))
	for e := range conflicted {
		reaches[e] = true
	}
	var visit func(e id.EventID) (bool, error)
	visit = func(e id.EventID) (bool, error) {
		if v, ok := reaches[e]; ok {
			return v, nil
		}
		// Mark first: auth graphs are acyclic, but a malformed one must not loop.
		reaches[e] = false
		ev, err := r.load(e)
		if err != nil {
			return false, err
		}
		found := false
		for _, a := range ev.AuthEventIDs() {
			ok, err := visit(a)
			if err != nil {
				return false, err
			}
			found = found || ok
		}
		reaches[e] = found
		return found, nil
	}
	var sub []id.EventID
	for _, e := range start {
		ev, err := r.load(e)
		if err != nil {
			return nil, err
		}
		for _, a := range ev.AuthEventIDs() {
			if _, err := visit(a); err != nil {
				return nil, err
			}
		}
	}
	for _, e := range chain {
		if reaches[e] {
			sub = append(sub, e)
		}
	}
	return sub, nil
}
