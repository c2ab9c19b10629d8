package roomserver

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver/auth"
	"github.com/latticehq/lattice/roomserver/pdu"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/roomstore"
)

// InputRemote takes a new event of a room's timeline in from another server (server-server
// API, "Checks performed on receipt of a PDU").
//
// The state before the event is stateBefore when federation supplies it (from /state_ids, when
// the prev events are missing; events of it not yet stored come in as outliers first, and
// rejected ones are left out), else the resolution of the states after each prev event, all of
// which must be stored with known state (else a *MissingEventsError). Its auth events must be
// stored (else a *MissingEventsError).
//
// A failed signature drops the event (an error wrapping pdu.ErrSignature, nothing stored); a
// content hash mismatch takes it in redacted. An event that fails the authorisation rules
// against its auth events or the state before it is stored as rejected (*RejectedError). One
// that passes those but fails against the current state is soft-failed ("Soft failure"): stored
// with its state, but not output, not a forward extremity, and the current state stays. Any
// other event is accepted: it becomes a forward extremity in place of its prev events, the
// current state becomes the resolution of the states after the extremities, and it is output.
//
// An event already in the timeline is left as it is (nil); a stored outlier joins the timeline.
// Of a room the server does not know, only the create event is taken in, starting the room.
func (r *Roomserver) InputRemote(ctx context.Context, ev *pdu.Event, stateBefore []*pdu.Event) error {
	unlock := r.lock(ev.RoomID())
	defer unlock()
	return r.inputRemote(ctx, ev, stateBefore)
}

func (r *Roomserver) inputRemote(ctx context.Context, ev *pdu.Event, supplied []*pdu.Event) error {
	hs, err := r.store.EventHeadersByID(ctx, r.db, []string{string(ev.EventID())})
	if err != nil {
		return err
	}
	var outlier *roomstore.Event // the stored outlier that joins the timeline
	if len(hs) > 0 {
		if !hs[0].Outlier {
			return nil
		}
		outlier = hs[0]
		// The stored form passed checks 2 and 3 already (and may be the redacted one).
		if ev, _, err = r.eventByID(ctx, ev.EventID()); err != nil || ev == nil {
			return fmt.Errorf("load outlier %s: %w", outlier.EventID, errors.Join(err, ErrEventNotFound))
		}
	} else if ev, err = r.checkReceived(ctx, ev); err != nil {
		return err
	}
	room, err := r.knownRoom(ctx, ev, outlier != nil)
	if err != nil {
		return err
	}
	if room == nil {
		if ev.Type() != typeCreate {
			return fmt.Errorf("event %s: %w %s", ev.EventID(), ErrRoomNotFound, ev.RoomID())
		}
		if err := checkNewRoom(ev); err != nil {
			return err
		}
		return r.commit(ctx, ev.RoomID(), ev.Version(), ev, true, nil)
	}
	rc, err := r.room(ctx, ev.RoomID())
	if err != nil {
		return err
	}
	a, err := r.loadAuthEvents(ctx, ev)
	if err != nil {
		return err
	}
	before, fast, err := r.stateBeforeEvent(ctx, rc, ev, supplied)
	if err != nil {
		return err
	}

	var reason error
	switch {
	case outlier != nil && outlier.Rejected:
		reason = errors.New("rejected as an outlier")
	default:
		if reason = checkAuthEvents(ev, a); reason == nil { // check 4
			if reason, err = r.checkStateBefore(ctx, ev, rc, before, fast); err != nil { // check 5
				return err
			}
		}
	}
	// Check 6 ("Soft failure"): the current state is the state before when the prev events
	// are the forward extremities, and a room without extremities has no current state yet.
	softFail := false
	if reason == nil && !fast && len(rc.extremities) > 0 {
		if err := auth.Check(ev, rc.view()); err != nil {
			softFail = true
			r.opts.Logger.Info("soft-failed event", "event_id", ev.EventID(), "room_id", ev.RoomID(), "reason", err)
		}
	}
	accepted := reason == nil && !softFail

	// A new event and a new state key are numbered in the writing transaction; until then the
	// states hold placeholders.
	nums := pendingNums{event: pendingNID}
	var pending *pdu.Event
	if outlier != nil {
		nums.event = outlier.NID
	} else {
		pending = ev
	}
	if sk := ev.StateKey(); sk != nil {
		if nums.key, err = r.knownKeyNID(ctx, ev.Type(), *sk); err != nil {
			return err
		}
	}
	key := nums.key
	if key == 0 {
		key = pendingKeyNID
	}
	// The new current state, nil if it stays.
	var current, oldCurrent *numState
	if accepted {
		after := before
		if ev.StateKey() != nil {
			after = before.with(key, nums.event)
		}
		if fast || len(rc.extremities) == 0 {
			current = after
		} else {
			// Incrementally: the current state resolved with the state after the event.
			if oldCurrent, err = r.loadNumState(ctx, rc.snapshot); err != nil {
				return err
			}
			if current, err = r.resolveStates(ctx, rc.version, []*numState{oldCurrent, after}, pending, a.stateNIDs); err != nil {
				return err
			}
		}
	}
	prevNIDs, err := r.store.EventNIDs(ctx, r.db, idStrings(ev.PrevEventIDs()))
	if err != nil {
		return err
	}

	rec := recordOf(ev)
	if outlier != nil {
		rec = outlier
	}
	rec.RoomNID = room.NID
	var currentSnap int64
	var finalNums pendingNums
	err = r.db.WithTx(ctx, func(tx *storage.Tx) error {
		memo := map[*numState]int64{}
		txNums := nums
		if outlier == nil {
			if _, err := r.store.InsertEvent(ctx, tx, rec); err != nil {
				return err
			}
			k, err := r.indexStateEvent(ctx, tx, rec, ev, a)
			if err != nil {
				return err
			}
			txNums = pendingNums{event: rec.NID, key: k}
		}
		finalNums = txNums
		var err error
		if rec.StateBefore, err = storeState(ctx, tx, room.NID, before, txNums, memo); err != nil {
			return err
		}
		rec.Outlier, rec.Rejected, rec.SoftFailed, rec.StreamPos = false, reason != nil, softFail, 0
		if accepted {
			if currentSnap, err = storeState(ctx, tx, room.NID, current, txNums, memo); err != nil {
				return err
			}
			if currentSnap != rc.snapshot {
				if err := r.store.SetCurrentState(ctx, tx, room.NID, currentSnap); err != nil {
					return err
				}
			}
			if ev.StateKey() != nil && current.state[key] == nums.event {
				if err := r.recordLocalMembership(ctx, tx, room.NID, rec.NID, ev); err != nil {
					return err
				}
			}
			prevs := make([]int64, 0, len(prevNIDs))
			for _, n := range prevNIDs {
				prevs = append(prevs, n)
			}
			if err := r.store.UpdateForwardExtremities(ctx, tx, room.NID, rec.NID, prevs); err != nil {
				return err
			}
			// Allocated last: the output stream's counter row stays locked until commit.
			if rec.StreamPos, err = tx.NextStreamPosition(ctx, roomstore.StreamOutput); err != nil {
				return err
			}
		}
		return r.store.UpdateEvent(ctx, tx, rec)
	})
	if err != nil {
		if outlier == nil {
			r.store.Chains.Forget(rec.NID)
		}
		r.forget(ev.RoomID())
		return fmt.Errorf("store event %s: %w", ev.EventID(), err)
	}
	r.events.put(rec.NID, ev)
	if reason != nil {
		r.opts.Logger.Info("rejected event", "event_id", ev.EventID(), "room_id", ev.RoomID(), "reason", reason)
		return &RejectedError{EventID: ev.EventID(), Reason: reason}
	}
	if !accepted {
		return nil
	}
	if fast {
		r.applyToCache(ev.RoomID(), rc.version, rec, currentSnap, ev)
	} else {
		r.setCachedState(ctx, rc, ev, finalNums, oldCurrent, current, currentSnap)
	}
	if r.opts.Notifier != nil {
		r.opts.Notifier.Notify(roomstore.StreamOutput, rec.StreamPos, RoomKey(ev.RoomID()), OutputKey)
	}
	return nil
}

// stateBeforeEvent works out the state before ev, for check 5: the supplied state, or the
// resolution of the states after its prev events ("Room State Resolution"), where the state
// after an event is the state before it with the event applied unless it is a message or was
// rejected ("Rejection"). fast says the prev events are exactly the room's forward extremities,
// so the state before is the room's current state, which is then not loaded.
func (r *Roomserver) stateBeforeEvent(ctx context.Context, rc *roomCache, ev *pdu.Event, supplied []*pdu.Event) (*numState, bool, error) {
	if supplied != nil {
		st, err := r.suppliedState(ctx, rc, ev, supplied)
		return st, false, err
	}
	prevs := slices.Compact(slices.Sorted(slices.Values(ev.PrevEventIDs())))
	if len(prevs) == 0 {
		return &numState{state: roomstore.State{}}, false, nil // the create event
	}
	if len(prevs) == len(rc.extremities) && !slices.ContainsFunc(rc.extremities, func(e *pdu.Event) bool {
		_, found := slices.BinarySearch(prevs, e.EventID())
		return !found
	}) {
		return &numState{base: rc.snapshot}, true, nil
	}
	hs, err := r.store.EventHeadersByID(ctx, r.db, idStrings(prevs))
	if err != nil {
		return nil, false, err
	}
	known := map[id.EventID]*roomstore.Event{}
	for _, h := range hs {
		if h.RoomNID != rc.nid {
			return nil, false, fmt.Errorf("prev event %s of %s is in another room", h.EventID, ev.EventID())
		}
		if !h.Outlier {
			known[id.EventID(h.EventID)] = h
		}
	}
	var missing []id.EventID
	for _, p := range prevs {
		if known[p] == nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return nil, false, &MissingEventsError{EventID: ev.EventID(), Kind: MissingPrevEvents, Missing: missing}
	}
	inputs := make([]*numState, 0, len(prevs))
	for _, p := range prevs {
		h := known[p]
		st, err := r.loadNumState(ctx, h.StateBefore)
		if err != nil {
			return nil, false, err
		}
		if h.StateKey != nil && !h.Rejected {
			key, err := r.storedKeyNID(ctx, h)
			if err != nil {
				return nil, false, err
			}
			st = st.with(key, h.NID)
		}
		inputs = append(inputs, st)
	}
	st, err := r.resolveStates(ctx, rc.version, inputs, nil, nil)
	return st, false, err
}

// suppliedState is the state before ev as federation supplied it, stored as changes to the
// current state, which it usually resembles.
func (r *Roomserver) suppliedState(ctx context.Context, rc *roomCache, ev *pdu.Event, supplied []*pdu.Event) (*numState, error) {
	ids := make([]id.EventID, len(supplied))
	for i, s := range supplied {
		if s.RoomID() != ev.RoomID() {
			return nil, fmt.Errorf("state event %s of %s is in room %s", s.EventID(), ev.EventID(), s.RoomID())
		}
		ids[i] = s.EventID()
	}
	hs, err := r.store.EventHeadersByID(ctx, r.db, idStrings(ids))
	if err != nil {
		return nil, err
	}
	if len(hs) < len(slices.Compact(slices.Sorted(slices.Values(ids)))) {
		stored := map[string]bool{}
		for _, h := range hs {
			stored[h.EventID] = true
		}
		var fresh []*pdu.Event
		for _, s := range supplied {
			if !stored[string(s.EventID())] {
				fresh = append(fresh, s)
			}
		}
		for _, s := range authOrder(fresh) {
			if err := r.inputOutlier(ctx, s); err != nil && !errors.Is(err, ErrRejected) {
				return nil, err
			}
		}
		if hs, err = r.store.EventHeadersByID(ctx, r.db, idStrings(ids)); err != nil {
			return nil, err
		}
	}
	byID := make(map[id.EventID]*roomstore.Event, len(hs))
	for _, h := range hs {
		byID[id.EventID(h.EventID)] = h
	}
	st := roomstore.State{}
	var missing []id.EventID
	for _, e := range ids {
		h := byID[e]
		switch {
		case h == nil:
			missing = append(missing, e) // dropped for its signatures
			continue
		case h.StateKey == nil:
			return nil, fmt.Errorf("state of %s holds %s, not a state event", ev.EventID(), e)
		case h.Rejected:
			continue // a rejected event never enters a state ("Rejection")
		}
		key, err := r.storedKeyNID(ctx, h)
		if err != nil {
			return nil, err
		}
		if _, dup := st[key]; dup {
			return nil, fmt.Errorf("state of %s holds two events for (%s, %q)", ev.EventID(), h.Type, *h.StateKey)
		}
		st[key] = h.NID
	}
	if len(missing) > 0 {
		return nil, &MissingEventsError{EventID: ev.EventID(), Kind: MissingState, Missing: missing}
	}
	cur, err := roomstore.LoadState(ctx, r.db, rc.snapshot)
	if err != nil {
		return nil, err
	}
	return &numState{state: st, base: rc.snapshot, delta: diffStates(cur, st)}, nil
}

// checkStateBefore is check 5: the authorisation rules against the state before the event.
func (r *Roomserver) checkStateBefore(ctx context.Context, ev *pdu.Event, rc *roomCache, before *numState, fast bool) (reason, err error) {
	if fast {
		return auth.Check(ev, rc.view()), nil
	}
	v := &numView{ctx: ctx, r: r, state: before.state}
	reason = auth.Check(ev, v)
	if v.err != nil {
		return nil, v.err
	}
	return reason, nil
}

// setCachedState brings the room's cache to a current state that was resolved rather than
// built on: only the keys that changed are loaded. On any failure the room is dropped from the
// cache, to be loaded again from storage.
func (r *Roomserver) setCachedState(ctx context.Context, rc *roomCache, ev *pdu.Event, nums pendingNums, old, current *numState, snap int64) {
	roomID := ev.RoomID()
	var err error
	if old == nil {
		old, err = r.loadNumState(ctx, rc.snapshot)
	}
	var keys map[int64]roomstore.StateKey
	var evs map[int64]*pdu.Event
	var changes []roomstore.Entry
	if err == nil {
		changes = diffStates(old.state, current.state)
		keyNIDs, evNIDs := make([]int64, len(changes)), make([]int64, 0, len(changes))
		for i, c := range changes {
			changes[i] = nums.entry(c)
			keyNIDs[i] = changes[i].Key
			if changes[i].Event != 0 {
				evNIDs = append(evNIDs, changes[i].Event)
			}
		}
		if keys, err = r.store.StateKeys(ctx, r.db, keyNIDs); err == nil {
			evs, err = r.eventsByNID(ctx, evNIDs)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rooms[roomID] != rc {
		return // dropped meanwhile: the next use loads it from storage
	}
	if err != nil {
		delete(r.rooms, roomID)
		return
	}
	for _, c := range changes {
		k := keys[c.Key]
		ak := auth.StateKey{Type: k.Type, StateKey: k.StateKey}
		if c.Event == 0 {
			delete(rc.state, ak)
		} else if e := evs[c.Event]; e != nil {
			rc.state[ak] = e
		} else {
			delete(r.rooms, roomID)
			return
		}
		if k.Type == "m.room.power_levels" || k.Type == typeCreate {
			rc.pl = nil
		}
	}
	rc.snapshot = snap
	r.trimLocked(roomID)
	prev := ev.PrevEventIDs()
	rc.extremities = slices.DeleteFunc(slices.Clone(rc.extremities), func(e *pdu.Event) bool { return slices.Contains(prev, e.EventID()) })
	rc.extremities = append(rc.extremities, ev)
	slices.SortFunc(rc.extremities, func(a, b *pdu.Event) int { return int(a.Depth() - b.Depth()) })
}

func idStrings(ids []id.EventID) []string {
	out := make([]string, len(ids))
	for i, e := range ids {
		out[i] = string(e)
	}
	return out
}
