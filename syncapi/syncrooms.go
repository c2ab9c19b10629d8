package syncapi

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/synctoken"
	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/roomserver/auth"
	"github.com/latticehq/lattice/roomserver/pdu"
	"github.com/latticehq/lattice/storage/syncstore"
	"github.com/latticehq/lattice/syncapi/synctypes"
	"github.com/latticehq/lattice/userapi"
)

// roomsBuilder fills the rooms section of one /sync response.
type roomsBuilder struct {
	a       *API
	dev     *userapi.Device
	p       *syncParams
	since   synctoken.Stream
	now     synctoken.Stream
	initial bool
	resp    *synctypes.Response

	hist        map[string][]syncstore.Membership // the user's membership history per room
	current     map[id.RoomID]string              // membership at now
	joinedNow   []id.RoomID
	newlyJoined []id.RoomID
	forgotten   map[string]bool
	ignored     map[string]bool // senders the user ignores (m.ignored_user_list)
}

// roomAllowed applies the filter's room.rooms and room.not_rooms.
func (b *roomsBuilder) roomAllowed(room id.RoomID) bool {
	f := b.p.filter.Room
	if f == nil {
		return true
	}
	if f.Rooms != nil && !slices.Contains(f.Rooms, string(room)) {
		return false
	}
	return !slices.Contains(f.NotRooms, string(room))
}

// timelineFilter is the filter of timeline events, with its limit.
func (b *roomsBuilder) timelineFilter() (*roomEventFilter, int) {
	f := &roomEventFilter{}
	limit := defaultTimelineLimit
	if b.p.filter.Room != nil && b.p.filter.Room.Timeline != nil {
		t := b.p.filter.Room.Timeline
		f = &roomEventFilter{Types: t.Types, NotTypes: t.NotTypes, Senders: t.Senders, NotSenders: t.NotSenders,
			Rooms: t.Rooms, NotRooms: t.NotRooms, ContainsURL: t.ContainsURL}
		if t.Limit != nil {
			limit = min(max(*t.Limit, 0), maxTimelineLimit)
		}
	}
	return f, limit
}

// stateFilter is the filter of state events and whether members are lazy-loaded.
func (b *roomsBuilder) stateFilter() (*roomEventFilter, bool) {
	if b.p.filter.Room == nil || b.p.filter.Room.State == nil {
		return &roomEventFilter{}, false
	}
	s := b.p.filter.Room.State
	return &roomEventFilter{Types: s.Types, NotTypes: s.NotTypes, Senders: s.Senders, NotSenders: s.NotSenders,
		Rooms: s.Rooms, NotRooms: s.NotRooms, ContainsURL: s.ContainsURL}, s.LazyLoadMembers
}

func membershipAt(h []syncstore.Membership, pos int64) string {
	m := "leave"
	for _, x := range h {
		if x.Pos > pos {
			break
		}
		m = x.Membership
	}
	return m
}

// joinedAfter reports whether the history has a join after position pos.
func joinedAfter(h []syncstore.Membership, pos int64) bool {
	return slices.ContainsFunc(h, func(x syncstore.Membership) bool { return x.Pos > pos && x.Membership == "join" })
}

func (b *roomsBuilder) build(ctx context.Context) error {
	a := b.a
	var err error
	if b.hist, err = a.store.UserMemberships(ctx, a.db, string(b.dev.UserID)); err != nil {
		return err
	}
	if b.forgotten, err = a.store.ForgottenRooms(ctx, a.db, string(b.dev.UserID)); err != nil {
		return err
	}
	if b.ignored, err = a.ignoredUsers(ctx, b.dev.UserID); err != nil {
		return err
	}
	b.current = map[id.RoomID]string{}
	for room, h := range b.hist {
		b.current[id.RoomID(room)] = membershipAt(h, b.now.Rooms)
	}
	for room, m := range b.current {
		if m == "join" {
			b.joinedNow = append(b.joinedNow, room)
		}
	}
	slices.Sort(b.joinedNow)

	// What changed in (since, now]: one stream-ordered read when the gap is small.
	byRoom := map[id.RoomID][]*syncstore.Event{}
	perRoom := b.initial
	if !b.initial && b.now.Rooms > b.since.Rooms {
		evs, more, err := a.store.EventsBetween(ctx, a.db, b.since.Rooms, b.now.Rooms, maxDeltaEvents)
		if err != nil {
			return err
		}
		if more {
			perRoom = true
		} else {
			for _, e := range evs {
				if _, ok := b.hist[e.RoomID]; ok {
					byRoom[id.RoomID(e.RoomID)] = append(byRoom[id.RoomID(e.RoomID)], e)
				}
			}
		}
	}

	for room, m := range b.current {
		if !b.roomAllowed(room) {
			continue
		}
		h := b.hist[string(room)]
		last := h[len(h)-1]
		changed := last.Pos > b.since.Rooms // membership changed in the window
		switch m {
		case "join":
			newlyJoined := changed && membershipAt(h, b.since.Rooms) != "join"
			if newlyJoined && !b.initial {
				b.newlyJoined = append(b.newlyJoined, room)
			}
			full := b.initial || newlyJoined
			if perRoom || full {
				if err := b.joined(ctx, room, nil, full, true); err != nil {
					return err
				}
				continue
			}
			evs := byRoom[room]
			if len(evs) == 0 {
				continue
			}
			if err := b.joined(ctx, room, evs, false, false); err != nil {
				return err
			}
		case "invite":
			if b.initial || changed {
				if err := b.stripped(ctx, room, last.Pos, "invite"); err != nil {
					return err
				}
			}
		case "knock":
			if b.initial || changed {
				if err := b.stripped(ctx, room, last.Pos, "knock"); err != nil {
					return err
				}
			}
		case "leave", "ban":
			includeLeave := b.p.filter.Room != nil && b.p.filter.Room.IncludeLeave
			if b.forgotten[string(room)] || (b.initial && !includeLeave) || (!b.initial && !changed) {
				continue
			}
			// A room the user was never joined to (a rejected invite) still shows, so clients
			// drop the invite.
			if err := b.left(ctx, room, last.Pos); err != nil {
				return err
			}
		}
	}
	return b.formatEvents(ctx)
}

// joined fills one joined room. With read set, the timeline's events are read here (the last
// ones up to now); else evs are the room's new events. full gives the whole state at the start
// of the timeline, as for an initial sync or a newly joined room.
func (b *roomsBuilder) joined(ctx context.Context, room id.RoomID, evs []*syncstore.Event, full, read bool) error {
	a := b.a
	tf, limit := b.timelineFilter()
	v := &viewer{user: string(b.dev.UserID), hist: b.hist[string(room)], ignored: b.ignored}
	from := b.since.Rooms
	if full {
		from = 0
	}
	var err error
	olderRemain := false
	if read {
		if evs, olderRemain, err = b.readTimeline(ctx, room, from, limit, func(e *syncstore.Event) bool {
			return tf.matches(e) && v.canSee(e)
		}); err != nil {
			return err
		}
	}
	var timeline []*syncstore.Event
	for i := len(evs) - 1; i >= 0 && len(timeline) <= limit; i-- {
		e := evs[i]
		if tf.matches(e) && v.canSee(e) {
			timeline = append(timeline, e)
		}
	}
	limited := len(timeline) > limit || olderRemain
	if len(timeline) > limit {
		timeline = timeline[:limit]
	}
	slices.Reverse(timeline)
	if !full && len(timeline) == 0 && !limited {
		return nil
	}
	jr := b.resp.JoinedRoom(room)
	rendered, err := a.renderAggregated(ctx, timeline, b.dev, v)
	if err != nil {
		return err
	}
	jr.Timeline.Events = rendered
	jr.Timeline.Limited = limited
	if len(timeline) > 0 {
		first := timeline[0]
		jr.Timeline.PrevBatch = pointToken(syncstore.Point{Depth: first.Depth, Pos: first.Pos - 1})
	} else {
		jr.Timeline.PrevBatch = b.now.String()
	}
	return b.state(ctx, room, jr, timeline, evs, full, limited)
}

// Bounds of readTimeline: the first read, and how far it reads back for a timeline whose
// filter or history visibility hides most events.
const (
	maxTimelineReads  = 8
	maxTimelineWindow = 500
)

// readTimeline reads a room's latest events after from, enough for limit+1 of them to pass
// keep when the room has them: a little more than the limit first, then further back in
// growing steps, within bounds. olderRemain reports whether events before those read remain.
func (b *roomsBuilder) readTimeline(ctx context.Context, room id.RoomID, from int64, limit int, keep func(*syncstore.Event) bool) (evs []*syncstore.Event, olderRemain bool, err error) {
	window := limit*2 + 1
	to := b.now.Rooms
	kept := 0
	for range maxTimelineReads {
		batch, err := b.a.store.LatestInRoom(ctx, b.a.db, string(room), from, to, window)
		if err != nil {
			return nil, false, err
		}
		evs = append(batch, evs...)
		olderRemain = len(batch) == window
		for _, e := range batch {
			if keep(e) {
				kept++
			}
		}
		if !olderRemain || kept > limit {
			break
		}
		to = batch[0].Pos - 1
		window = min(window*2, maxTimelineWindow)
	}
	return evs, olderRemain, nil
}

// state fills a joined room's state section: the whole state at the start of the timeline when
// full, else the state changes the timeline does not show (a gap of a limited timeline), with
// the member events of the timeline's senders for lazy-loading clients.
func (b *roomsBuilder) state(ctx context.Context, room id.RoomID, jr *synctypes.JoinedRoom, timeline, evs []*syncstore.Event, full, limited bool) error {
	current, err := b.a.rooms.CurrentState(ctx, room)
	if err != nil {
		return err
	}
	out := b.stateEvents(current, timeline, evs, full, limited)
	now := time.Now().UnixMilli()
	for _, ev := range out {
		jr.State.Add(clientJSON(ev, now))
	}
	_, lazy := b.stateFilter()
	if full || lazy || hasMembership(timeline) || len(out) > 0 {
		jr.Summary = summary(current, b.dev.UserID)
	}
	return nil
}

// stateEvents picks the state section's events from state (see state).
func (b *roomsBuilder) stateEvents(current map[auth.StateKey]*pdu.Event, timeline, evs []*syncstore.Event, full, limited bool) []*pdu.Event {
	sf, lazy := b.stateFilter()
	inTimeline := map[string]bool{}
	// A lazy-loading client gets its user's own member event with the whole state; later
	// syncs carry it only when it changes, like any other state.
	senders := map[string]bool{}
	if full {
		senders[string(b.dev.UserID)] = true
	}
	for _, e := range timeline {
		inTimeline[e.EventID] = true
		senders[e.Sender] = true
	}
	keep := func(k auth.StateKey, ev *pdu.Event) bool {
		if inTimeline[string(ev.EventID())] {
			return false
		}
		if k.Type == "m.room.member" && lazy && !senders[k.StateKey] {
			return false
		}
		return sf.matches(&syncstore.Event{Type: k.Type, Sender: string(ev.Sender()), RoomID: string(ev.RoomID())})
	}
	var out []*pdu.Event
	switch {
	case full:
		for k, ev := range current {
			if keep(k, ev) {
				out = append(out, ev)
			}
		}
	case limited:
		// State events in the gap, as the current state holds them.
		for _, e := range evs {
			if e.StateKey == nil || inTimeline[e.EventID] {
				continue
			}
			k := auth.StateKey{Type: e.Type, StateKey: *e.StateKey}
			if ev := current[k]; ev != nil && keep(k, ev) && !slices.Contains(out, ev) {
				out = append(out, ev)
			}
		}
		fallthrough
	default:
		if lazy {
			for s := range senders {
				k := auth.StateKey{Type: "m.room.member", StateKey: s}
				if ev := current[k]; ev != nil && keep(k, ev) && !slices.Contains(out, ev) {
					out = append(out, ev)
				}
			}
		}
	}
	slices.SortFunc(out, func(x, y *pdu.Event) int { return cmpInt(x.Depth(), y.Depth()) })
	return out
}

func hasMembership(evs []*syncstore.Event) bool {
	return slices.ContainsFunc(evs, func(e *syncstore.Event) bool { return e.Type == "m.room.member" })
}

// clientJSON renders a state event from the roomserver for a client.
func clientJSON(ev *pdu.Event, now int64) json.RawMessage {
	raw, _ := json.Marshal(ev.Client(map[string]any{"age": max(now-ev.OriginServerTS(), 0)}))
	return raw
}

// summary computes a room's summary (client-server API, "Room summary"): up to five heroes,
// other members ordered by user ID, joined ones first, and the member counts.
func summary(state map[auth.StateKey]*pdu.Event, user id.UserID) synctypes.Summary {
	var joined, invited int
	var heroesJoined, heroesOther []id.UserID
	for k, ev := range state {
		if k.Type != "m.room.member" {
			continue
		}
		m := roomserver.MembershipOf(ev)
		u := id.UserID(k.StateKey)
		switch m {
		case "join":
			joined++
		case "invite":
			invited++
		}
		if u == user {
			continue
		}
		if m == "join" || m == "invite" {
			heroesJoined = append(heroesJoined, u)
		} else {
			heroesOther = append(heroesOther, u)
		}
	}
	slices.Sort(heroesJoined)
	slices.Sort(heroesOther)
	heroes := append(heroesJoined, heroesOther...)
	if len(heroes) > 5 {
		heroes = heroes[:5]
	}
	// Heroes name a room that has no name of its own; the spec requires them only then, and
	// clients show the name or alias otherwise.
	if stateString(state, "m.room.name", "name") != "" || stateString(state, "m.room.canonical_alias", "alias") != "" {
		heroes = nil
	}
	return synctypes.Summary{Heroes: heroes, JoinedMemberCount: &joined, InvitedMemberCount: &invited}
}

// stateString returns a string field of a state event's content (state key ""), or "".
func stateString(state map[auth.StateKey]*pdu.Event, typ, field string) string {
	ev := state[auth.StateKey{Type: typ}]
	if ev == nil {
		return ""
	}
	var c map[string]json.RawMessage
	if json.Unmarshal(ev.Content(), &c) != nil {
		return ""
	}
	var v string
	if json.Unmarshal(c[field], &v) != nil {
		return ""
	}
	return v
}

// strippedTypes are the state events shown of a room one is invited to or knocking on
// (client-server API, "Stripped state").
var strippedTypes = []string{"m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar", "m.room.canonical_alias",
	"m.room.encryption", "m.room.topic"}

// stripped fills an invited or knocked room with stripped state and the user's member event.
func (b *roomsBuilder) stripped(ctx context.Context, room id.RoomID, _ int64, membership string) error {
	state, err := b.a.rooms.CurrentState(ctx, room)
	if err != nil {
		return err
	}
	var events []json.RawMessage
	add := func(ev *pdu.Event) {
		raw, _ := json.Marshal(map[string]any{"type": ev.Type(), "state_key": ev.StateKey(), "content": ev.Content(), "sender": ev.Sender()})
		events = append(events, raw)
	}
	for _, t := range strippedTypes {
		if ev := state[auth.StateKey{Type: t}]; ev != nil {
			add(ev)
		}
	}
	me := state[auth.StateKey{Type: "m.room.member", StateKey: string(b.dev.UserID)}]
	if me != nil && membership == "invite" && b.ignored[string(me.Sender())] {
		return nil // invites from ignored users are not sent (client-server API, "Ignoring Users")
	}
	if me != nil {
		// The member event itself, whole, as clients read the inviter and time from it.
		events = append(events, clientJSON(me, time.Now().UnixMilli()))
	}
	if events == nil {
		events = []json.RawMessage{}
	}
	if membership == "invite" {
		b.resp.Rooms.Invite[room] = &synctypes.InvitedRoom{InviteState: synctypes.Events{Events: events}}
	} else {
		b.resp.Rooms.Knock[room] = &synctypes.KnockedRoom{KnockState: synctypes.Events{Events: events}}
	}
	return nil
}

// left fills a room the user left or was removed from: the timeline up to their leave and the
// state then.
func (b *roomsBuilder) left(ctx context.Context, room id.RoomID, leavePos int64) error {
	a := b.a
	tf, limit := b.timelineFilter()
	v := &viewer{user: string(b.dev.UserID), hist: b.hist[string(room)], ignored: b.ignored}
	from := b.since.Rooms
	if b.initial {
		from = 0
	}
	evs, err := a.store.LatestInRoom(ctx, a.db, string(room), from, leavePos, limit*2+1)
	if err != nil {
		return err
	}
	var timeline []*syncstore.Event
	for i := len(evs) - 1; i >= 0 && len(timeline) < limit; i-- {
		if tf.matches(evs[i]) && v.canSee(evs[i]) {
			timeline = append(timeline, evs[i])
		}
	}
	slices.Reverse(timeline)
	lr := &synctypes.LeftRoom{State: synctypes.Events{Events: []json.RawMessage{}}, Timeline: synctypes.Timeline{Events: []json.RawMessage{}},
		AccountData: synctypes.Events{Events: []json.RawMessage{}}}
	rendered, err := a.renderAggregated(ctx, timeline, b.dev, v)
	if err != nil {
		return err
	}
	lr.Timeline.Events = rendered
	lr.Timeline.Limited = len(evs) > len(timeline)
	if len(timeline) > 0 {
		lr.Timeline.PrevBatch = pointToken(syncstore.Point{Depth: timeline[0].Depth, Pos: timeline[0].Pos - 1})
	}
	// The state when the user left: after their last member event.
	if me, err := a.rooms.StateEvent(ctx, room, "m.room.member", string(b.dev.UserID)); err != nil {
		return err
	} else if me != nil {
		st, err := a.rooms.StateAfter(ctx, me.EventID())
		if err != nil {
			return err
		}
		now := time.Now().UnixMilli()
		// A client that never saw the user joined (they joined and left since its token)
		// gets the whole state then, as on an initial sync.
		full := b.initial || (membershipAt(b.hist[string(room)], b.since.Rooms) != "join" && joinedAfter(b.hist[string(room)], b.since.Rooms))
		for _, ev := range b.stateEvents(st, timeline, evs, full, lr.Timeline.Limited) {
			lr.State.Add(clientJSON(ev, now))
		}
	}
	b.resp.Rooms.Leave[room] = lr
	return nil
}
