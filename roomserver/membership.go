package roomserver

import (
	"context"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver/auth"
	"github.com/latticehq/lattice/roomserver/pdu"
	"github.com/latticehq/lattice/storage"
)

// ErrUnableToAuthoriseJoin is returned when a restricted room's allow conditions admit the
// user but no local member has the power to invite them (M_UNABLE_TO_AUTHORISE_JOIN).
var ErrUnableToAuthoriseJoin = errors.New("roomserver: no local member can authorise the join")

// JoinAuthoriser picks the local member who authorises a join to a restricted room (client-server
// API, "Restricted rooms"; room version 8 "Authorization rules" 4.3.4): a joined user of this
// server whose power level lets them invite. Users already joined or invited need none, and
// neither do rooms that are not restricted.
func (r *Roomserver) JoinAuthoriser(ctx context.Context, roomID id.RoomID, user id.UserID) (id.UserID, error) {
	state, err := r.CurrentState(ctx, roomID)
	if err != nil {
		return "", err
	}
	sm := stateMap(state)
	jr := auth.LoadJoinRules(sm)
	version, err := r.RoomVersion(ctx, roomID)
	if err != nil {
		return "", err
	}
	restricted := (jr.Rule == "restricted" && version.RestrictedJoins()) || (jr.Rule == "knock_restricted" && version.KnockRestricted())
	if !restricted {
		return "", nil
	}
	if m := auth.Membership(sm, user); m == "join" || m == "invite" {
		return "", nil
	}
	allowed := false
	for _, c := range jr.Allow {
		if c.Type != "m.room_membership" {
			continue
		}
		ev, err := r.StateEvent(ctx, c.RoomID, "m.room.member", string(user))
		if errors.Is(err, ErrRoomNotFound) {
			continue
		}
		if err != nil {
			return "", err
		}
		if ev != nil && auth.Membership(stateMap{auth.StateKey{Type: "m.room.member", StateKey: string(user)}: ev}, user) == "join" {
			allowed = true
			break
		}
	}
	if !allowed {
		return "", fmt.Errorf("%w: the user is in none of the rooms the join rules allow", ErrNotAllowed)
	}
	pl := auth.LoadPowerLevels(sm)
	var best id.UserID
	bestLevel := int64(-1)
	for k := range state {
		if k.Type != "m.room.member" {
			continue
		}
		u := id.UserID(k.StateKey)
		if u.Homeserver() != r.opts.ServerName || auth.Membership(sm, u) != "join" {
			continue
		}
		if l := pl.User(u); l >= pl.Invite() && (l > bestLevel || (l == bestLevel && u < best)) {
			best, bestLevel = u, l
		}
	}
	if best == "" {
		return "", ErrUnableToAuthoriseJoin
	}
	return best, nil
}

// recordLocalMembership keeps the index of local users' memberships current when ev, a new
// piece of the room's current state, is a local user's member event.
func (r *Roomserver) recordLocalMembership(ctx context.Context, tx *storage.Tx, roomNID, eventNID int64, ev *pdu.Event) error {
	sk := ev.StateKey()
	if ev.Type() != "m.room.member" || sk == nil || id.UserID(*sk).Homeserver() != r.opts.ServerName {
		return nil
	}
	m := auth.Membership(stateMap{auth.StateKey{Type: "m.room.member", StateKey: *sk}: ev}, id.UserID(*sk))
	return r.store.SetLocalMembership(ctx, tx, roomNID, *sk, m, eventNID)
}

// RoomsOf returns the rooms where a local user's current membership is membership.
func (r *Roomserver) RoomsOf(ctx context.Context, user id.UserID, membership string) ([]id.RoomID, error) {
	ids, err := r.store.LocalRooms(ctx, r.db, string(user), membership)
	if err != nil {
		return nil, err
	}
	out := make([]id.RoomID, len(ids))
	for i, s := range ids {
		out[i] = id.RoomID(s)
	}
	return out, nil
}

// StateAtPosition returns the room's state just after its last output event at or before
// output-stream position pos (the at of /members), nil if the room had no event then.
func (r *Roomserver) StateAtPosition(ctx context.Context, roomID id.RoomID, pos int64) (map[auth.StateKey]*pdu.Event, error) {
	eid, err := r.store.LastEventAt(ctx, r.db, string(roomID), pos)
	if err != nil || eid == "" {
		return nil, err
	}
	return r.StateAfter(ctx, id.EventID(eid))
}

// StreamPosition returns an event's output-stream position, 0 if it was never output.
func (r *Roomserver) StreamPosition(ctx context.Context, eventID id.EventID) (int64, error) {
	hs, err := r.store.EventHeadersByID(ctx, r.db, []string{string(eventID)})
	if err != nil || len(hs) == 0 {
		return 0, err
	}
	return hs[0].StreamPos, nil
}

// StateOf lets the auth rules' readers (power levels, join rules, membership) read a state map.
func StateOf(m map[auth.StateKey]*pdu.Event) auth.State { return stateMap(m) }

// MembershipOf returns the membership a member event sets ("leave" for nil).
func MembershipOf(ev *pdu.Event) string {
	if ev == nil || ev.StateKey() == nil {
		return "leave"
	}
	return auth.Membership(memberState{ev}, id.UserID(*ev.StateKey()))
}
