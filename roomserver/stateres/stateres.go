package stateres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver/auth"
)

// StateMap is one state set: which event holds each piece of state.
type StateMap map[auth.StateKey]id.EventID

// Events is what resolution needs from storage.
//
// Every event named in the state sets, and every event in their auth chains, must be available
// from Event. An implementation may also implement Rejections, so that rejected auth events are
// never used during the iterative auth checks; without it no event is taken to be rejected.
type Events interface {
	// Event returns the event with the given ID.
	Event(ctx context.Context, id id.EventID) (auth.Event, error)
	// AuthChainDifference returns the events in the auth chain of some but not all of the sets
	// (rooms/v2.md "Auth difference"), where the auth chain of a set is the union of the auth
	// chains of its events; the order does not matter.
	AuthChainDifference(ctx context.Context, sets [][]id.EventID) ([]id.EventID, error)
	// AuthChain returns the union of the auth chains of the given events (rooms/v2.md "Auth
	// chain"): every event reachable through auth_events links, not counting the given events
	// themselves unless one is in the auth chain of another; the order does not matter. It is
	// used for the conflicted state subgraph (rooms/v12.md) and the power events' auth chains.
	AuthChain(ctx context.Context, ids []id.EventID) ([]id.EventID, error)
}

// Rejections is optionally implemented by an Events to tell which events were rejected, since
// rejected auth events are not used in the iterative auth checks (rooms/v2.md "Rejected events").
type Rejections interface {
	// Rejected reports whether the event was rejected.
	Rejected(ctx context.Context, id id.EventID) (bool, error)
}

// Resolve resolves the given state sets with the algorithm of the room version.
//
// No set is modified; the result is always a new map. With no sets the result is empty, and a
// single set is returned unchanged. An unknown room version gives an error wrapping
// id.ErrUnknownRoomVersion.
func Resolve(ctx context.Context, version id.RoomVersion, sets []StateMap, events Events) (StateMap, error) {
	if !version.IsKnown() {
		return nil, fmt.Errorf("resolve state: %w %q", id.ErrUnknownRoomVersion, version)
	}
	switch len(sets) {
	case 0:
		return StateMap{}, nil
	case 1:
		return maps.Clone(sets[0]), nil
	}
	if events == nil {
		return nil, errors.New("resolve state: no Events to load events from")
	}
	r := newResolver(ctx, version, events)
	var (
		res StateMap
		err error
	)
	switch version.StateResVersion() {
	case id.StateResV1:
		res, err = r.resolveV1(sets)
	case id.StateResV2:
		res, err = r.resolveV2(sets, false, nil)
	default:
		res, err = r.resolveV2(sets, true, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("resolve state (room version %s): %w", version, err)
	}
	return res, nil
}

// resolver holds what one resolution has loaded, so that each event is fetched once.
type resolver struct {
	ctx    context.Context
	events Events
	cache  map[id.EventID]auth.Event
	// impliedCreate says the room ID names the create event, which auth_events then omit
	// (rooms/v12.md "Authorisation rules").
	impliedCreate bool
	rejected      map[id.EventID]bool
	pls           map[[2]id.EventID]*auth.PowerLevels
}

func newResolver(ctx context.Context, version id.RoomVersion, events Events) *resolver {
	return &resolver{
		ctx:           ctx,
		events:        events,
		cache:         make(map[id.EventID]auth.Event),
		impliedCreate: version.RoomIDIsCreateEventID(),
		rejected:      make(map[id.EventID]bool),
		pls:           make(map[[2]id.EventID]*auth.PowerLevels),
	}
}

// load returns an event, fetching it once per resolution.
func (r *resolver) load(eventID id.EventID) (auth.Event, error) {
	if ev, ok := r.cache[eventID]; ok {
		return ev, nil
	}
	if err := r.ctx.Err(); err != nil {
		return nil, err
	}
	ev, err := r.events.Event(r.ctx, eventID)
	if err != nil {
		return nil, fmt.Errorf("load event %s: %w", eventID, err)
	}
	if ev == nil {
		return nil, fmt.Errorf("load event %s: not found", eventID)
	}
	r.cache[eventID] = ev
	return ev, nil
}

// isRejected reports whether storage marked the event as rejected.
func (r *resolver) isRejected(eventID id.EventID) (bool, error) {
	rj, ok := r.events.(Rejections)
	if !ok {
		return false, nil
	}
	if v, ok := r.rejected[eventID]; ok {
		return v, nil
	}
	v, err := rj.Rejected(r.ctx, eventID)
	if err != nil {
		return false, fmt.Errorf("rejection of %s: %w", eventID, err)
	}
	r.rejected[eventID] = v
	return v, nil
}

// createEvent returns the create event that a room ID names, in room versions where the room ID
// is the create event's ID with the sigil "!" instead of "$".
func (r *resolver) createEvent(roomID id.RoomID) (auth.Event, error) {
	s := string(roomID)
	if len(s) < 2 || s[0] != '!' {
		return nil, fmt.Errorf("room ID %q does not name a create event", roomID)
	}
	return r.load(id.EventID("$" + s[1:]))
}

// keyOf returns the state key of a state event, and false for a message event.
func keyOf(ev auth.Event) (auth.StateKey, bool) {
	sk := ev.StateKey()
	if sk == nil {
		return auth.StateKey{}, false
	}
	return auth.StateKey{Type: ev.Type(), StateKey: *sk}, true
}

// authEventMap maps an event's auth events by (type, state_key), adding the create event the
// room ID implies where auth_events omit it.
func (r *resolver) authEventMap(ev auth.Event) (auth.StateMap, error) {
	ids := ev.AuthEventIDs()
	m := make(auth.StateMap, len(ids)+1)
	for _, aid := range ids {
		ae, err := r.load(aid)
		if err != nil {
			return nil, err
		}
		k, ok := keyOf(ae)
		if !ok {
			continue
		}
		if _, dup := m[k]; dup {
			// Duplicate keys fail rule 3.1 of the authorisation rules; keep the first.
			continue
		}
		m[k] = ae
	}
	if r.impliedCreate {
		k := auth.StateKey{Type: typeCreate}
		if _, ok := m[k]; !ok && ev.Type() != typeCreate {
			ce, err := r.createEvent(ev.RoomID())
			if err != nil {
				return nil, err
			}
			m[k] = ce
		}
	}
	return m, nil
}

// powerLevels returns the power levels a state gives, parsed once per resolution for each pair
// of create and power levels events: the auth rules consult them for every event checked.
func (r *resolver) powerLevels(st auth.State) *auth.PowerLevels {
	cr, pl := st.Get(typeCreate, ""), st.Get(typePowerLevels, "")
	var k [2]id.EventID
	if cr != nil {
		k[0] = cr.EventID()
	}
	if pl != nil {
		k[1] = pl.EventID()
	}
	if p, ok := r.pls[k]; ok {
		return p
	}
	p := auth.LoadPowerLevels(auth.NewStateMap(cr, pl))
	r.pls[k] = p
	return p
}

const (
	typeCreate      = "m.room.create"
	typePowerLevels = "m.room.power_levels"
	typeJoinRules   = "m.room.join_rules"
	typeMember      = "m.room.member"
)

// overlay is a state being built: changes over a base map that is never written to, so that the
// large unconflicted state is not copied until the result is assembled.
type overlay struct {
	base    StateMap
	changes StateMap
}

func (o *overlay) get(k auth.StateKey) (id.EventID, bool) {
	if v, ok := o.changes[k]; ok {
		return v, true
	}
	v, ok := o.base[k]
	return v, ok
}

func (o *overlay) set(k auth.StateKey, v id.EventID) {
	o.changes[k] = v
}

// checkState is the auth.State an event is checked against during iterative auth checks: the
// state being built, and where a key is missing there, the event's own auth event unless it was
// rejected (rooms/v2.md "Iterative auth checks").
type checkState struct {
	r          *resolver
	state      *overlay
	authEvents auth.StateMap
	err        error
}

func (s *checkState) Get(typ, stateKey string) auth.Event {
	k := auth.StateKey{Type: typ, StateKey: stateKey}
	if eid, ok := s.state.get(k); ok {
		ev, err := s.r.load(eid)
		if err != nil {
			s.fail(err)
			return nil
		}
		return ev
	}
	ev, ok := s.authEvents[k]
	if !ok {
		return nil
	}
	if k.Type == typeCreate && s.r.impliedCreate {
		// The create event the room ID names, not an auth event.
		return ev
	}
	rej, err := s.r.isRejected(ev.EventID())
	if err != nil {
		s.fail(err)
		return nil
	}
	if rej {
		return nil
	}
	return ev
}

func (s *checkState) PowerLevels() *auth.PowerLevels { return s.r.powerLevels(s) }

func (s *checkState) fail(err error) {
	if s.err == nil {
		s.err = err
	}
}

// allowed runs the authorisation rules for ev against the state being built, with ev's auth
// events where the state lacks a key if withAuthEvents is set.
func (r *resolver) allowed(ev auth.Event, state *overlay, withAuthEvents bool) (bool, error) {
	cs := &checkState{r: r, state: state}
	if withAuthEvents {
		m, err := r.authEventMap(ev)
		if err != nil {
			return false, err
		}
		cs.authEvents = m
	}
	checkErr := auth.Check(ev, cs)
	if cs.err != nil {
		return false, cs.err
	}
	return checkErr == nil, nil
}

// membership returns content.membership of a member event, or "".
func membership(ev auth.Event) string {
	var c struct {
		Membership string `json:"membership"`
	}
	if json.Unmarshal(ev.Content(), &c) != nil {
		return ""
	}
	return c.Membership
}
