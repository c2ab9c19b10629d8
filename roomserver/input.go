package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver/auth"
	"github.com/latticehq/lattice/roomserver/pdu"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/roomstore"
)

// The input of events from other servers (server-server API, "Checks performed on receipt of a
// PDU"). Federation hands over events that parsed as their room version's format (check 1);
// here they are checked against signatures (2) and the content hash (3), and authorised against
// their auth events (4), the state before them (5) and the current state of the room (6).
// Policy servers (7) are not consulted yet.

// ErrRejected is matched (errors.Is) by a *RejectedError.
var ErrRejected = errors.New("roomserver: event rejected")

// ErrEventNotFound is returned by queries about events the server does not have.
var ErrEventNotFound = errors.New("roomserver: unknown event")

// RejectedError says an event failed the authorisation rules against its auth events or the
// state before it, and was stored as rejected (server-server API, "Rejection"): it changes
// nothing in the room and is never output, and being stored it is not fetched again.
type RejectedError struct {
	EventID id.EventID
	Reason  error // usually an *auth.Error
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("event %s rejected: %v", e.EventID, e.Reason)
}

// Unwrap lets errors.Is find ErrRejected and errors.As the reason.
func (e *RejectedError) Unwrap() []error { return []error{ErrRejected, e.Reason} }

// MissingKind says which references of an event are missing.
type MissingKind string

// What a MissingEventsError can be missing.
const (
	MissingAuthEvents MissingKind = "auth_events" // fetch them, e.g. with /event_auth
	MissingPrevEvents MissingKind = "prev_events" // fetch them (/get_missing_events) or the state (/state_ids)
	MissingState      MissingKind = "state"       // state events named by the supplied state
)

// MissingEventsError says the roomserver needs other events before it can take an event in.
// Nothing was stored; federation fetches the missing events and tries again.
type MissingEventsError struct {
	EventID id.EventID
	Kind    MissingKind
	Missing []id.EventID
}

func (e *MissingEventsError) Error() string {
	ids := make([]string, len(e.Missing))
	for i, m := range e.Missing {
		ids[i] = string(m)
	}
	return fmt.Sprintf("event %s: %d %s not stored: %s", e.EventID, len(e.Missing), e.Kind, strings.Join(ids, ", "))
}

// InputOutlier stores an event whose place in the room's state is not known: state and auth
// chain events from /state, /send_join or /event_auth. Its auth events must be stored (else a
// *MissingEventsError). It is checked as far as it can be without state (checks 2 to 4): a
// failed signature drops it (error wrapping pdu.ErrSignature, nothing stored), a content hash
// mismatch stores it redacted, failing its auth events stores it rejected (*RejectedError). It
// gets no state and no output position. A create event of an unknown room records the room,
// with no current state yet. An event already stored is left as it is.
func (r *Roomserver) InputOutlier(ctx context.Context, ev *pdu.Event) error {
	unlock := r.lock(ev.RoomID())
	defer unlock()
	return r.inputOutlier(ctx, ev)
}

// InputOutliers is InputOutlier for many events, taken in so that auth events come before the
// events they authorise. Rejections do not stop the others; the other errors are joined.
func (r *Roomserver) InputOutliers(ctx context.Context, evs []*pdu.Event) error {
	var errs []error
	for _, ev := range authOrder(evs) {
		if err := r.InputOutlier(ctx, ev); err != nil && !errors.Is(err, ErrRejected) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (r *Roomserver) inputOutlier(ctx context.Context, ev *pdu.Event) error {
	if hs, err := r.store.EventHeadersByID(ctx, r.db, []string{string(ev.EventID())}); err != nil {
		return err
	} else if len(hs) > 0 {
		return nil
	}
	ev, err := r.checkReceived(ctx, ev)
	if err != nil {
		return err
	}
	room, err := r.knownRoom(ctx, ev, false)
	if err != nil {
		return err
	}
	if room == nil {
		if ev.Type() != typeCreate {
			if needed := neededAuthEvents(ev); len(needed) > 0 {
				return &MissingEventsError{EventID: ev.EventID(), Kind: MissingAuthEvents, Missing: needed}
			}
			return fmt.Errorf("event %s: %w %s", ev.EventID(), ErrRoomNotFound, ev.RoomID())
		}
		if err := checkNewRoom(ev); err != nil {
			return err
		}
	}
	a, err := r.loadAuthEvents(ctx, ev)
	if err != nil {
		return err
	}
	reason := checkAuthEvents(ev, a) // check 4
	rec := recordOf(ev)
	rec.Outlier, rec.Rejected = true, reason != nil
	err = r.db.WithTx(ctx, func(tx *storage.Tx) error {
		if room == nil {
			nid, err := r.store.CreateRoom(ctx, tx, string(ev.RoomID()), string(ev.Version()))
			if err != nil {
				return err
			}
			rec.RoomNID = nid
		} else {
			rec.RoomNID = room.NID
		}
		if _, err := r.store.InsertEvent(ctx, tx, rec); err != nil {
			return err
		}
		_, err := r.indexStateEvent(ctx, tx, rec, ev, a)
		return err
	})
	if err != nil {
		r.store.Chains.Forget(rec.NID)
		return fmt.Errorf("store outlier %s: %w", ev.EventID(), err)
	}
	r.events.put(rec.NID, ev)
	if reason != nil {
		r.opts.Logger.Info("rejected outlier", "event_id", ev.EventID(), "room_id", ev.RoomID(), "reason", reason)
		return &RejectedError{EventID: ev.EventID(), Reason: reason}
	}
	return nil
}

// checkReceived carries out checks 2 and 3 of "Checks performed on receipt of a PDU": an event
// whose signatures fail is dropped; one whose content hash does not match is taken in redacted
// ("Validating hashes and signatures on received events"). Without a KeyRing the caller has
// verified the signatures.
func (r *Roomserver) checkReceived(ctx context.Context, ev *pdu.Event) (*pdu.Event, error) {
	if r.opts.KeyRing != nil {
		if err := pdu.VerifySignatures(ctx, ev, r.opts.KeyRing); err != nil {
			return nil, fmt.Errorf("event %s dropped: %w", ev.EventID(), err)
		}
	}
	if !ev.CheckContentHash() {
		r.opts.Logger.Info("content hash mismatch: event redacted", "event_id", ev.EventID())
		ev = ev.Redacted()
	}
	return ev, nil
}

// knownRoom returns the stored room of ev, nil if the server does not know it, and refuses an
// event of another room version or, unless ev itself is stored, a second create event.
func (r *Roomserver) knownRoom(ctx context.Context, ev *pdu.Event, stored bool) (*roomstore.Room, error) {
	room, err := r.store.Room(ctx, r.db, string(ev.RoomID()))
	if errors.Is(err, roomstore.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	if id.RoomVersion(room.Version) != ev.Version() {
		return nil, fmt.Errorf("event %s is of room version %s, room %s of %s", ev.EventID(), ev.Version(), room.ID, room.Version)
	}
	if !stored && ev.Type() == typeCreate && ev.StateKey() != nil && *ev.StateKey() == "" {
		// The room was recorded with its create event, which is stored: this is another one.
		return nil, fmt.Errorf("%w: room %s already has a create event", ErrNotAllowed, room.ID)
	}
	return room, nil
}

// checkNewRoom checks the create event that starts a room the server does not know: its room
// version is the one it was parsed for (content.room_version, "1" when absent) and it passes
// rule 1 of the authorisation rules. A failing one is not stored, as there is no room to store
// it in.
func checkNewRoom(ev *pdu.Event) error {
	var c struct {
		RoomVersion *string `json:"room_version"`
	}
	_ = json.Unmarshal(ev.Content(), &c) // a malformed room_version fails rule 1.3 below
	want := id.RoomV1
	if c.RoomVersion != nil {
		want = id.RoomVersion(*c.RoomVersion)
	}
	if err := auth.Check(ev, stateMap{}); err != nil {
		return fmt.Errorf("%w: create event %s: %v", ErrNotAllowed, ev.EventID(), err)
	}
	if want != ev.Version() {
		return fmt.Errorf("create event %s is of room version %s, parsed as %s", ev.EventID(), want, ev.Version())
	}
	return nil
}

const typeCreate = "m.room.create"

// createEventID is the ID of the create event that a room ID names from room version 12.
func createEventID(roomID id.RoomID) id.EventID {
	return id.EventID("$" + strings.TrimPrefix(string(roomID), "!"))
}

// neededAuthEvents lists what ev's authorisation needs: its auth events and, from room version
// 12, the create event the room ID names.
func neededAuthEvents(ev *pdu.Event) []id.EventID {
	ids := slices.Clone(ev.AuthEventIDs())
	if ev.Version().RoomIDIsCreateEventID() && ev.Type() != typeCreate {
		ids = append(ids, createEventID(ev.RoomID()))
	}
	return ids
}

// authEvents are an event's stored auth events with what the store knows of them.
type authEvents struct {
	events  []*pdu.Event
	headers []*roomstore.Event // in events' order
	// create is, from room version 12, the create event the room ID names (rule 2).
	create       *pdu.Event
	createHeader *roomstore.Event
	// stateNIDs are the numbers of the auth events that are state events, for the chain index.
	stateNIDs []int64
}

// loadAuthEvents loads ev's auth events, or names the missing ones.
func (r *Roomserver) loadAuthEvents(ctx context.Context, ev *pdu.Event) (*authEvents, error) {
	needed := neededAuthEvents(ev)
	strs := make([]string, len(needed))
	for i, e := range needed {
		strs[i] = string(e)
	}
	hs, err := r.store.EventHeadersByID(ctx, r.db, strs)
	if err != nil {
		return nil, err
	}
	byID := make(map[id.EventID]*roomstore.Event, len(hs))
	for _, h := range hs {
		byID[id.EventID(h.EventID)] = h
	}
	var missing []id.EventID
	for _, e := range needed {
		if byID[e] == nil && !slices.Contains(missing, e) {
			missing = append(missing, e)
		}
	}
	if len(missing) > 0 {
		return nil, &MissingEventsError{EventID: ev.EventID(), Kind: MissingAuthEvents, Missing: missing}
	}
	evs, _, err := r.eventsByID(ctx, needed)
	if err != nil {
		return nil, err
	}
	a := &authEvents{}
	for _, e := range ev.AuthEventIDs() {
		if evs[e] == nil {
			return nil, fmt.Errorf("auth event %s of %s vanished", e, ev.EventID())
		}
		a.events = append(a.events, evs[e])
		a.headers = append(a.headers, byID[e])
		if byID[e].StateKey != nil && !slices.Contains(a.stateNIDs, byID[e].NID) {
			a.stateNIDs = append(a.stateNIDs, byID[e].NID)
		}
	}
	if len(needed) > len(ev.AuthEventIDs()) {
		c := createEventID(ev.RoomID())
		a.create, a.createHeader = evs[c], byID[c]
	}
	return a, nil
}

// checkAuthEvents is check 4: the authorisation rules against the event's auth events,
// including the rules about the auth events themselves (rule 2 of the v1–v11 texts, 3 of v12),
// whether any was rejected (2.3, 3.3), and in v12 whether the room's create event was accepted
// (rule 2).
func checkAuthEvents(ev *pdu.Event, a *authEvents) error {
	if ev.Type() == typeCreate {
		return auth.Check(ev, stateMap{}) // rule 1
	}
	list := make([]auth.Event, len(a.events))
	for i, e := range a.events {
		list[i] = e
	}
	if err := auth.CheckAuthEvents(ev, list); err != nil {
		return err
	}
	v := ev.Version()
	rule := "2.3"
	if v.RoomIDIsCreateEventID() {
		rule = "3.3"
	}
	for _, h := range a.headers {
		if h.Rejected {
			return &auth.Error{Version: v, Rule: rule, Reason: fmt.Sprintf("auth event %s was rejected", h.EventID)}
		}
	}
	state := auth.NewStateMap(list...)
	if a.create != nil {
		if a.createHeader.Rejected {
			return &auth.Error{Version: v, Rule: "2", Reason: fmt.Sprintf("create event %s was rejected", a.create.EventID())}
		}
		state[auth.StateKey{Type: typeCreate}] = a.create
	}
	return auth.Check(ev, state)
}

// recordOf is the stored form of a new event.
func recordOf(ev *pdu.Event) *roomstore.Event {
	return &roomstore.Event{
		EventID: string(ev.EventID()), Type: ev.Type(), StateKey: ev.StateKey(),
		Depth: ev.Depth(), OriginServerTS: ev.OriginServerTS(), JSON: ev.JSON(),
	}
}

// indexStateEvent numbers a new state event's state key and records its auth chain, so that
// every stored state event, outlier or rejected, can take part in state resolution. It returns
// the key's number, 0 for a message event.
func (r *Roomserver) indexStateEvent(ctx context.Context, tx *storage.Tx, rec *roomstore.Event, ev *pdu.Event, a *authEvents) (int64, error) {
	sk := ev.StateKey()
	if sk == nil {
		return 0, nil
	}
	keys, err := r.store.StateKeyNIDs(ctx, tx, []roomstore.StateKey{{Type: ev.Type(), StateKey: *sk}})
	if err != nil {
		return 0, err
	}
	return keys[0], r.store.Chains.Add(ctx, tx, rec.RoomNID, rec.NID, a.stateNIDs)
}

// knownKeyNID returns the number of a state key, 0 if it has none yet.
func (r *Roomserver) knownKeyNID(ctx context.Context, typ, stateKey string) (int64, error) {
	nids, err := r.store.KnownStateKeyNIDs(ctx, r.db, []roomstore.StateKey{{Type: typ, StateKey: stateKey}})
	if err != nil {
		return 0, err
	}
	return nids[0], nil
}

// storedKeyNID is knownKeyNID for the key of a stored state event, which always has a number.
func (r *Roomserver) storedKeyNID(ctx context.Context, h *roomstore.Event) (int64, error) {
	n, err := r.knownKeyNID(ctx, h.Type, *h.StateKey)
	if err == nil && n == 0 {
		err = fmt.Errorf("state key (%s, %q) of stored event %s has no number", h.Type, *h.StateKey, h.EventID)
	}
	return n, err
}

// authOrder sorts events so that each comes after those of its auth events among them.
func authOrder(evs []*pdu.Event) []*pdu.Event {
	byID := make(map[id.EventID]*pdu.Event, len(evs))
	for _, ev := range evs {
		byID[ev.EventID()] = ev
	}
	done := make(map[id.EventID]bool, len(evs)) // false: being visited
	out := make([]*pdu.Event, 0, len(evs))
	var visit func(ev *pdu.Event)
	visit = func(ev *pdu.Event) {
		if _, seen := done[ev.EventID()]; seen {
			return
		}
		done[ev.EventID()] = false
		for _, a := range neededAuthEvents(ev) {
			if dep := byID[a]; dep != nil {
				visit(dep)
			}
		}
		done[ev.EventID()] = true
		out = append(out, ev)
	}
	for _, ev := range evs {
		visit(ev)
	}
	return out
}

// numView is a state held by numbers as the authorisation rules read it, loading only the
// events they ask for.
type numView struct {
	ctx   context.Context
	r     *Roomserver
	state roomstore.State
	err   error
}

// Get returns nil (a nil interface) for absent state.
func (v *numView) Get(typ, stateKey string) auth.Event {
	nids, err := v.r.store.KnownStateKeyNIDs(v.ctx, v.r.db, []roomstore.StateKey{{Type: typ, StateKey: stateKey}})
	if err != nil {
		v.fail(err)
		return nil
	}
	nid, ok := v.state[nids[0]]
	if nids[0] == 0 || !ok {
		return nil
	}
	evs, err := v.r.eventsByNID(v.ctx, []int64{nid})
	if err != nil {
		v.fail(err)
		return nil
	}
	if evs[nid] == nil {
		v.fail(fmt.Errorf("state event %d is not stored", nid))
		return nil
	}
	return evs[nid]
}

func (v *numView) fail(err error) {
	if v.err == nil {
		v.err = err
	}
}
