package clientapi

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/internal/synctoken"
	"github.com/latticehq/lattice/roomserver/auth"
	"github.com/latticehq/lattice/roomserver/pdu"
	"github.com/latticehq/lattice/userapi"
)

// visibleState returns the room state a user may read (client-server API, "GET
// /rooms/{roomId}/state"): the current state for members and for anyone in a world-readable
// room, the state when they left for former members, M_FORBIDDEN otherwise.
func (a *API) visibleState(ctx context.Context, roomID id.RoomID, user id.UserID) (map[auth.StateKey]*pdu.Event, error) {
	state, err := a.rooms.CurrentState(ctx, roomID)
	if err != nil {
		return nil, roomError(err)
	}
	member := state[auth.StateKey{Type: "m.room.member", StateKey: string(user)}]
	switch memberOf(member) {
	case "join":
		return state, nil
	case "leave", "ban":
		if member != nil {
			st, err := a.rooms.StateAfter(ctx, member.EventID())
			if err != nil {
				return nil, err
			}
			if st != nil {
				return st, nil
			}
		}
	}
	if historyVisibility(state) == "world_readable" {
		return state, nil
	}
	return nil, httpapi.Forbidden("You are not a member of this room")
}

// historyVisibility is the room's m.room.history_visibility, "shared" by default.
func historyVisibility(state map[auth.StateKey]*pdu.Event) string {
	ev := state[auth.StateKey{Type: "m.room.history_visibility"}]
	if ev == nil {
		return "shared"
	}
	var c struct {
		HistoryVisibility string `json:"history_visibility"`
	}
	if json.Unmarshal(ev.Content(), &c) != nil || c.HistoryVisibility == "" {
		return "shared"
	}
	return c.HistoryVisibility
}

// sortedEvents returns state in a stable order (type, then state key).
func sortedEvents(state map[auth.StateKey]*pdu.Event, keep func(auth.StateKey, *pdu.Event) bool) []*pdu.ClientEvent {
	keys := make([]auth.StateKey, 0, len(state))
	for k, ev := range state {
		if keep == nil || keep(k, ev) {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(x, y auth.StateKey) int {
		if c := strings.Compare(x.Type, y.Type); c != 0 {
			return c
		}
		return strings.Compare(x.StateKey, y.StateKey)
	})
	out := make([]*pdu.ClientEvent, len(keys))
	for i, k := range keys {
		out[i] = state[k].Client(nil)
	}
	return out
}

// getState answers GET /rooms/{roomId}/state.
func (a *API) getState(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	state, err := a.visibleState(r.Context(), roomID, dev.UserID)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, sortedEvents(state, nil))
	return nil
}

// getStateEvent answers GET /rooms/{roomId}/state/{eventType}/{stateKey}: the content, or the
// whole event with format=event.
func (a *API) getStateEvent(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	typ, err := eventTypeVar(r)
	if err != nil {
		return err
	}
	format := r.URL.Query().Get("format")
	if format != "" && format != "content" && format != "event" {
		return httpapi.InvalidParam("format must be content or event")
	}
	state, err := a.visibleState(r.Context(), roomID, dev.UserID)
	if err != nil {
		return err
	}
	ev := state[auth.StateKey{Type: typ, StateKey: httpapi.Vars(r)["stateKey"]}]
	if ev == nil {
		return httpapi.NotFound("The room has no such state")
	}
	if format == "event" {
		httpapi.WriteJSON(w, http.StatusOK, ev.Client(nil))
		return nil
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(ev.Content())
	return nil
}

// getMembers answers GET /rooms/{roomId}/members with its at, membership and not_membership
// filters. at is a pagination token; the members are those of the visible state, as Lattice
// keeps no membership history apart from state snapshots.
func (a *API) getMembers(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	valid := []string{"join", "invite", "knock", "leave", "ban"}
	want, notWant := q.Get("membership"), q.Get("not_membership")
	for _, m := range []string{want, notWant} {
		if m != "" && !slices.Contains(valid, m) {
			return httpapi.InvalidParam("Unknown membership %q", m)
		}
	}
	state, err := a.visibleState(r.Context(), roomID, dev.UserID)
	if err != nil {
		return err
	}
	if at := q.Get("at"); at != "" {
		// The members at an earlier point, but never more than the caller may see now.
		pos, err := synctoken.RoomsPosition(at)
		if err != nil {
			return httpapi.InvalidParam("Invalid at token")
		}
		if leave := state[auth.StateKey{Type: "m.room.member", StateKey: string(dev.UserID)}]; memberOf(leave) != "join" && leave != nil {
			left, err := a.rooms.StreamPosition(r.Context(), leave.EventID())
			if err != nil {
				return err
			}
			pos = min(pos, left)
		}
		old, err := a.rooms.StateAtPosition(r.Context(), roomID, pos)
		if err != nil {
			return err
		}
		state = old
	}
	chunk := sortedEvents(state, func(k auth.StateKey, ev *pdu.Event) bool {
		if k.Type != "m.room.member" {
			return false
		}
		m := memberOf(ev)
		return (want == "" || m == want) && (notWant == "" || m != notWant)
	})
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"chunk": chunk})
	return nil
}

// joinedMembers answers GET /rooms/{roomId}/joined_members.
func (a *API) joinedMembers(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	state, err := a.visibleState(r.Context(), roomID, dev.UserID)
	if err != nil {
		return err
	}
	type profile struct {
		DisplayName *string `json:"display_name"`
		AvatarURL   *string `json:"avatar_url"`
	}
	joined := map[id.UserID]profile{}
	for k, ev := range state {
		if k.Type != "m.room.member" || memberOf(ev) != "join" {
			continue
		}
		var c struct {
			DisplayName *string `json:"displayname"`
			AvatarURL   *string `json:"avatar_url"`
		}
		json.Unmarshal(ev.Content(), &c)
		joined[id.UserID(k.StateKey)] = profile{DisplayName: c.DisplayName, AvatarURL: c.AvatarURL}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"joined": joined})
	return nil
}
