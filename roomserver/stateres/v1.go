package stateres

import (
	"cmp"
	"crypto/sha1"
	"maps"
	"slices"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver/auth"
)

// resolveV1 is the algorithm of rooms/v1.md "State resolution".
//
// A conflict is a key for which the states hold different events; a key that only some states
// hold, all with the same event, is not a conflict and goes into R with the rest.
func (r *resolver) resolveV1(sets []StateMap) (StateMap, error) {
	conflicts := make(map[auth.StateKey][]id.EventID)
	union := make(StateMap)
	for _, s := range sets {
		for k, v := range s {
			w, ok := union[k]
			if !ok {
				union[k] = v
				continue
			}
			if w != v {
				conflicts[k] = append(conflicts[k], v)
			}
		}
	}
	if len(conflicts) == 0 {
		return union, nil
	}
	// R starts as the union of the states without the conflicting events.
	for k := range conflicts {
		conflicts[k] = uniq(append(conflicts[k], union[k]))
		delete(union, k)
	}
	state := &overlay{base: union, changes: make(StateMap)}

	keys := slices.SortedFunc(maps.Keys(conflicts), func(a, b auth.StateKey) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.StateKey, b.StateKey))
	})
	// Power levels first, then join rules, then each member's conflict: these affect the
	// authorisation rules, so each later candidate must be allowed by R as resolved so far.
	for _, typ := range []string{typePowerLevels, typeJoinRules, typeMember} {
		for _, k := range keys {
			if k.Type != typ {
				continue
			}
			if err := r.resolveV1AuthConflict(state, k, conflicts[k]); err != nil {
				return nil, err
			}
		}
	}
	// Every other conflict: the deepest event, then the lowest sha1(event_id), that R allows.
	for _, k := range keys {
		if k.Type == typePowerLevels || k.Type == typeJoinRules || k.Type == typeMember {
			continue
		}
		evs, err := r.v1Sorted(conflicts[k])
		if err != nil {
			return nil, err
		}
		for i := len(evs) - 1; i >= 0; i-- {
			ok, err := r.allowed(evs[i].ev, state, false)
			if err != nil {
				return nil, err
			}
			if ok {
				state.set(k, evs[i].ev.EventID())
				break
			}
		}
	}

	// R's base is no longer needed on its own, so it becomes the result.
	maps.Copy(union, state.changes)
	return union, nil
}

// resolveV1AuthConflict adds the first event (by ascending depth, then descending
// sha1(event_id)) to R, then each following one as long as R allows it.
func (r *resolver) resolveV1AuthConflict(state *overlay, k auth.StateKey, ids []id.EventID) error {
	evs, err := r.v1Sorted(ids)
	if err != nil {
		return err
	}
	for i, e := range evs {
		if i > 0 {
			ok, err := r.allowed(e.ev, state, false)
			if err != nil {
				return err
			}
			if !ok {
				return nil
			}
		}
		state.set(k, e.ev.EventID())
	}
	return nil
}

type v1Event struct {
	ev   auth.Event
	sha1 [sha1.Size]byte
}

// v1Sorted loads the events of one conflict, sorted by ascending depth and then descending
// sha1(event_id).
func (r *resolver) v1Sorted(ids []id.EventID) ([]v1Event, error) {
	evs := make([]v1Event, 0, len(ids))
	for _, e := range ids {
		ev, err := r.load(e)
		if err != nil {
			return nil, err
		}
		if _, ok := keyOf(ev); !ok {
			continue
		}
		evs = append(evs, v1Event{ev: ev, sha1: sha1.Sum([]byte(e))})
	}
	slices.SortFunc(evs, func(a, b v1Event) int {
		if c := cmp.Compare(a.ev.Depth(), b.ev.Depth()); c != 0 {
			return c
		}
		for i := range a.sha1 {
			if a.sha1[i] != b.sha1[i] {
				return cmp.Compare(b.sha1[i], a.sha1[i])
			}
		}
		return 0
	})
	return evs, nil
}
