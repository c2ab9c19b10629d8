package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/gorilla/mux"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/userapi"
)

// registerMembershipRoutes adds the membership endpoints (client-server API, "Room membership").
func (a *API) registerMembershipRoutes(r *mux.Router) {
	handle(r, "/rooms/{roomId}/join", a.authed(a.joinRoomID, guestsAllowed), http.MethodPost)
	handle(r, "/join/{roomIdOrAlias}", a.authed(a.joinIDOrAlias, guestsAllowed), http.MethodPost)
	handle(r, "/knock/{roomIdOrAlias}", a.authed(a.knock), http.MethodPost)
	handle(r, "/rooms/{roomId}/leave", a.authed(a.leave, guestsAllowed), http.MethodPost)
	handle(r, "/rooms/{roomId}/invite", a.authed(a.invite), http.MethodPost)
	handle(r, "/rooms/{roomId}/kick", a.authed(a.kick), http.MethodPost)
	handle(r, "/rooms/{roomId}/ban", a.authed(a.ban), http.MethodPost)
	handle(r, "/rooms/{roomId}/unban", a.authed(a.unban), http.MethodPost)
	handle(r, "/joined_rooms", a.authed(a.joinedRooms, guestsAllowed), http.MethodGet)
}

// membershipBody is the body of the membership endpoints.
type membershipBody struct {
	UserID id.UserID `json:"user_id"`
	Reason *string   `json:"reason"`
}

// resolveRoom returns the room a {roomIdOrAlias} names: a room ID as is, a local alias by
// lookup. Remote aliases need federation, which Lattice does not speak yet.
func (a *API) resolveRoom(ctx context.Context, s string) (id.RoomID, error) {
	switch {
	case strings.HasPrefix(s, "!"):
		return id.RoomID(s), nil
	case strings.HasPrefix(s, "#"):
		alias := id.RoomAlias(s)
		if !validAlias(alias) {
			return "", httpapi.InvalidParam("%q is not a room alias", s)
		}
		if aliasServer(alias) != a.cfg.ServerName {
			return "", httpapi.NotFound("Room alias %s is on another server, and this server does not federate yet", s)
		}
		target, err := a.rooms.ResolveAlias(ctx, alias)
		if err != nil {
			return "", roomError(err)
		}
		return target.RoomID, nil
	}
	return "", httpapi.InvalidParam("%q is neither a room ID nor a room alias", s)
}

// memberContent builds the content of a member event with the user's profile.
func (a *API) memberContent(ctx context.Context, user id.UserID, membership string, reason *string, extra map[string]any) (json.RawMessage, error) {
	c := map[string]any{"membership": membership}
	if user.Homeserver() == a.cfg.ServerName {
		profile, err := a.users.Profile(ctx, user)
		if err != nil && !errors.Is(err, userapi.ErrNotFound) {
			return nil, err
		}
		for _, k := range []string{profileDisplayName, profileAvatarURL} {
			if v, ok := profile[k]; ok {
				c[k] = v
			}
		}
	}
	if reason != nil {
		c["reason"] = *reason
	}
	for k, v := range extra {
		c[k] = v
	}
	return json.Marshal(c)
}

// join sends the user's join event (client-server API, "Joining rooms"), with the
// authorisation of a local member for restricted rooms. Joining again with an unchanged
// profile sends nothing.
func (a *API) join(ctx context.Context, dev *userapi.Device, roomID id.RoomID, reason *string, custom map[string]any) error {
	cur, err := a.rooms.StateEvent(ctx, roomID, "m.room.member", string(dev.UserID))
	if err != nil {
		return roomError(err)
	}
	extra := map[string]any{}
	for k, v := range custom {
		extra[k] = v
	}
	authoriser, err := a.rooms.JoinAuthoriser(ctx, roomID, dev.UserID)
	if err != nil {
		return roomError(err)
	}
	if authoriser != "" {
		extra["join_authorised_via_users_server"] = authoriser
	}
	content, err := a.memberContent(ctx, dev.UserID, "join", reason, extra)
	if err != nil {
		return err
	}
	if cur != nil && memberOf(cur) == "join" && sameJSON(cur.Content(), content) {
		return nil
	}
	if memberOf(cur) == "ban" {
		return httpapi.Forbidden("You are banned from this room")
	}
	sk := string(dev.UserID)
	_, err = a.sendLimited(ctx, dev, roomID, roomserver.Template{Type: "m.room.member", StateKey: &sk, Sender: dev.UserID, Content: content})
	if errors.Is(err, roomserver.ErrRoomNotFound) {
		return httpapi.NotFound("Unknown room")
	}
	return err
}

// joinRoomID answers POST /rooms/{roomId}/join.
func (a *API) joinRoomID(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	return a.answerJoin(w, r, dev, roomID)
}

// joinIDOrAlias answers POST /join/{roomIdOrAlias}.
func (a *API) joinIDOrAlias(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	roomID, err := a.resolveRoom(r.Context(), httpapi.Vars(r)["roomIdOrAlias"])
	if err != nil {
		return err
	}
	return a.answerJoin(w, r, dev, roomID)
}

func (a *API) answerJoin(w http.ResponseWriter, r *http.Request, dev *userapi.Device, roomID id.RoomID) error {
	var body map[string]json.RawMessage
	if err := readOptionalJSON(r, &body); err != nil {
		return err
	}
	var reason *string
	custom := map[string]any{}
	for k, v := range body {
		switch k {
		case "reason":
			if err := json.Unmarshal(v, &reason); err != nil {
				return httpapi.BadJSON("reason must be a string")
			}
		case "third_party_signed", "membership", "join_authorised_via_users_server", "displayname", "avatar_url":
			// Parameters of the request, or keys the server fills in itself.
		default:
			// Other keys go into the member event's content, as Synapse does (clients use
			// this for custom profile fields).
			custom[k] = v
		}
	}
	if dev.IsGuest {
		if err := a.checkGuestAccess(r.Context(), roomID); err != nil {
			return err
		}
	}
	if err := a.join(r.Context(), dev, roomID, reason, custom); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]id.RoomID{"room_id": roomID})
	return nil
}

// checkGuestAccess refuses guests in rooms whose m.room.guest_access is not can_join
// (client-server API, "Guest access").
func (a *API) checkGuestAccess(ctx context.Context, roomID id.RoomID) error {
	ev, err := a.rooms.StateEvent(ctx, roomID, "m.room.guest_access", "")
	if err != nil {
		return roomError(err)
	}
	var c struct {
		GuestAccess string `json:"guest_access"`
	}
	if ev != nil {
		json.Unmarshal(ev.Content(), &c)
	}
	if c.GuestAccess != "can_join" {
		return httpapi.NewError(http.StatusForbidden, "M_GUEST_ACCESS_FORBIDDEN", "Guests may not join this room")
	}
	return nil
}

// knock answers POST /knock/{roomIdOrAlias} (room versions 7 and later).
func (a *API) knock(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	roomID, err := a.resolveRoom(r.Context(), httpapi.Vars(r)["roomIdOrAlias"])
	if err != nil {
		return err
	}
	var body struct {
		Reason *string `json:"reason"`
	}
	if err := readOptionalJSON(r, &body); err != nil {
		return err
	}
	if err := a.sendMembership(r.Context(), dev, roomID, dev.UserID, "knock", body.Reason); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]id.RoomID{"room_id": roomID})
	return nil
}

// sendMembership sends a member event for target with the given membership.
func (a *API) sendMembership(ctx context.Context, dev *userapi.Device, roomID id.RoomID, target id.UserID, membership string, reason *string) error {
	var extra map[string]any
	if membership == "invite" || membership == "knock" {
		// The invitee's or knocker's own profile; for leave and ban the event is about a
		// membership ending, so no profile is copied.
		c, err := a.memberContent(ctx, target, membership, reason, extra)
		if err != nil {
			return err
		}
		sk := string(target)
		_, err = a.sendLimited(ctx, dev, roomID, roomserver.Template{Type: "m.room.member", StateKey: &sk, Sender: dev.UserID, Content: c})
		return err
	}
	c := map[string]any{"membership": membership}
	if reason != nil {
		c["reason"] = *reason
	}
	content, _ := json.Marshal(c)
	sk := string(target)
	_, err := a.sendLimited(ctx, dev, roomID, roomserver.Template{Type: "m.room.member", StateKey: &sk, Sender: dev.UserID, Content: content})
	return err
}

// targetAction answers the endpoints that change another user's membership (invite, kick,
// ban, unban): {user_id, reason}.
func (a *API) targetAction(w http.ResponseWriter, r *http.Request, dev *userapi.Device, membership string) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	var body membershipBody
	if err := httpapi.ReadJSON(r, &body); err != nil {
		return err
	}
	if body.UserID == "" {
		return httpapi.MissingParam("Missing user_id")
	}
	if _, _, err := body.UserID.Parse(); err != nil {
		return httpapi.InvalidParam("%q is not a user ID", body.UserID)
	}
	ctx := r.Context()
	cur, err := a.membership(ctx, roomID, body.UserID)
	if err != nil {
		return err
	}
	switch membership {
	case "invite":
		if body.UserID.Homeserver() != a.cfg.ServerName {
			return httpapi.Forbidden("Inviting users of other servers needs federation, which this server does not speak yet")
		}
		if _, err := a.users.Account(ctx, body.UserID); errors.Is(err, userapi.ErrNotFound) {
			return httpapi.NotFound("Unknown user %s", body.UserID)
		} else if err != nil {
			return err
		}
		switch cur {
		case "join":
			return httpapi.Forbidden("%s is already in the room", body.UserID)
		case "ban":
			return httpapi.Forbidden("%s is banned from the room", body.UserID)
		case "invite":
			// Inviting again changes nothing (client-server API, "Invite").
			httpapi.WriteJSON(w, http.StatusOK, struct{}{})
			return nil
		}
	case "kick":
		if cur != "join" && cur != "invite" && cur != "knock" {
			return httpapi.Forbidden("%s is not in the room", body.UserID)
		}
		membership = "leave"
	case "unban":
		if cur != "ban" {
			return httpapi.Forbidden("%s is not banned", body.UserID)
		}
		membership = "leave"
	}
	if err := a.sendMembership(ctx, dev, roomID, body.UserID, membership, body.Reason); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

func (a *API) invite(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	return a.targetAction(w, r, dev, "invite")
}

func (a *API) kick(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	return a.targetAction(w, r, dev, "kick")
}

func (a *API) ban(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	return a.targetAction(w, r, dev, "ban")
}

func (a *API) unban(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	return a.targetAction(w, r, dev, "unban")
}

// leave answers POST /rooms/{roomId}/leave: leaving, rejecting an invite or withdrawing a knock.
func (a *API) leave(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	var body struct {
		Reason *string `json:"reason"`
	}
	if err := readOptionalJSON(r, &body); err != nil {
		return err
	}
	cur, err := a.membership(r.Context(), roomID, dev.UserID)
	if err != nil {
		return err
	}
	switch cur {
	case "leave":
		// Already gone: leaving again changes nothing.
	case "ban":
		return httpapi.Forbidden("You are banned from this room")
	default:
		if err := a.sendMembership(r.Context(), dev, roomID, dev.UserID, "leave", body.Reason); err != nil {
			return err
		}
	}
	httpapi.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

// joinedRooms answers GET /joined_rooms.
func (a *API) joinedRooms(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	rooms, err := a.rooms.RoomsOf(r.Context(), dev.UserID, "join")
	if err != nil {
		return err
	}
	if rooms == nil {
		rooms = []id.RoomID{}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"joined_rooms": rooms})
	return nil
}
