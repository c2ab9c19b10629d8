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
	"github.com/latticehq/lattice/roomserver/auth"
	"github.com/latticehq/lattice/roomserver/pdu"
	"github.com/latticehq/lattice/userapi"
)

// registerRoomRoutes adds the room endpoints: creation, sending, state and membership.
func (a *API) registerRoomRoutes(r *mux.Router) {
	handle(r, "/createRoom", a.authed(a.createRoom), http.MethodPost)
	handle(r, "/rooms/{roomId}/send/{eventType}/{txnId}", a.authed(a.sendMessage, guestsAllowed), http.MethodPut)
	// The old form without a transaction ID (client-server API r0), which some clients and
	// test suites still use: each request sends a new event.
	handle(r, "/rooms/{roomId}/send/{eventType}", a.authed(a.sendMessage, guestsAllowed), http.MethodPost)
	handle(r, "/rooms/{roomId}/state/{eventType}", a.authed(a.sendState, guestsAllowed), http.MethodPut)
	handle(r, "/rooms/{roomId}/state/{eventType}/{stateKey:[^/]*}", a.authed(a.sendState, guestsAllowed), http.MethodPut)
	handle(r, "/rooms/{roomId}/redact/{eventId}/{txnId}", a.authed(a.redact, guestsAllowed), http.MethodPut)
	handle(r, "/rooms/{roomId}/report/{eventId}", a.authed(a.report), http.MethodPost)
	handle(r, "/rooms/{roomId}/state", a.authed(a.getState, guestsAllowed), http.MethodGet)
	handle(r, "/rooms/{roomId}/state/{eventType}", a.authed(a.getStateEvent, guestsAllowed), http.MethodGet)
	handle(r, "/rooms/{roomId}/state/{eventType}/{stateKey:[^/]*}", a.authed(a.getStateEvent, guestsAllowed), http.MethodGet)
	handle(r, "/rooms/{roomId}/members", a.authed(a.getMembers, guestsAllowed), http.MethodGet)
	handle(r, "/rooms/{roomId}/joined_members", a.authed(a.joinedMembers, guestsAllowed), http.MethodGet)
	a.registerMembershipRoutes(r)
}

// roomError turns the roomserver's errors into the client-server API's.
func roomError(err error) error {
	var he *httpapi.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &he):
		return err
	case errors.Is(err, roomserver.ErrRoomNotFound):
		return httpapi.NotFound("Unknown room")
	case errors.Is(err, roomserver.ErrNotAllowed):
		return httpapi.Forbidden("%s", strings.TrimPrefix(err.Error(), roomserver.ErrNotAllowed.Error()+": "))
	case errors.Is(err, roomserver.ErrUnsupportedVersion):
		return httpapi.NewError(http.StatusBadRequest, "M_UNSUPPORTED_ROOM_VERSION", "%v", err)
	case errors.Is(err, roomserver.ErrUnableToAuthoriseJoin):
		return httpapi.NewError(http.StatusBadRequest, "M_UNABLE_TO_AUTHORISE_JOIN", "No user of this server can authorise the join")
	case errors.Is(err, roomserver.ErrAliasTaken):
		return httpapi.NewError(http.StatusBadRequest, "M_ROOM_IN_USE", "The alias is already in use")
	case errors.Is(err, roomserver.ErrAliasNotFound):
		return httpapi.NotFound("Unknown room alias")
	case errors.Is(err, pdu.ErrTooLarge):
		return httpapi.TooLarge("The event is too large: %v", err)
	case errors.Is(err, pdu.ErrInvalidEvent), errors.Is(err, pdu.ErrBadJSON), errors.Is(err, pdu.ErrNotJSON):
		return httpapi.BadJSON("%v", err)
	}
	return err
}

// roomIDVar returns the {roomId} of the path, M_INVALID_PARAM if it is not a room ID.
func roomIDVar(r *http.Request) (id.RoomID, error) {
	s := httpapi.Vars(r)["roomId"]
	if !strings.HasPrefix(s, "!") || len(s) > 255 {
		return "", httpapi.InvalidParam("%q is not a room ID", s)
	}
	return id.RoomID(s), nil
}

// eventTypeVar returns the {eventType} of the path.
func eventTypeVar(r *http.Request) (string, error) {
	t := httpapi.Vars(r)["eventType"]
	if t == "" || len(t) > 255 {
		return "", httpapi.InvalidParam("Invalid event type")
	}
	return t, nil
}

// readContent reads an event's content: any JSON object.
func readContent(r *http.Request) (json.RawMessage, error) {
	var content json.RawMessage
	if err := httpapi.ReadJSON(r, &content); err != nil {
		return nil, err
	}
	if t := strings.TrimSpace(string(content)); !strings.HasPrefix(t, "{") {
		return nil, httpapi.BadJSON("The event content must be a JSON object")
	}
	return content, nil
}

// sendLimited sends an event for a user, under the per-user send rate limit.
func (a *API) sendLimited(ctx context.Context, dev *userapi.Device, roomID id.RoomID, t roomserver.Template) (*pdu.Event, error) {
	if dev.AppServiceID == "" {
		if err := limit(a.messageLimit, string(dev.UserID)); err != nil {
			return nil, err
		}
	}
	ev, err := a.rooms.Send(ctx, roomID, t)
	return ev, roomError(err)
}

// sendMessage answers PUT /rooms/{roomId}/send/{eventType}/{txnId}: idempotent per device and
// transaction ID (client-server API, "Transaction identifiers").
func (a *API) sendMessage(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	typ, err := eventTypeVar(r)
	if err != nil {
		return err
	}
	content, err := readContent(r)
	if err != nil {
		return err
	}
	t := roomserver.Template{Type: typ, Sender: dev.UserID, Content: content}
	if txnID := httpapi.Vars(r)["txnId"]; txnID != "" {
		t.Txn = &roomserver.Txn{DeviceID: dev.DeviceID, TxnID: txnID}
	}
	if typ == "m.room.redaction" {
		// A redaction through /send names its target in content.redacts (v11 format); earlier
		// room versions carry it at the top level too.
		var c struct {
			Redacts id.EventID `json:"redacts"`
		}
		if json.Unmarshal(content, &c) != nil || c.Redacts == "" {
			return httpapi.BadJSON("A redaction needs content.redacts")
		}
		t.Redacts = c.Redacts
		if err := a.checkRedaction(r.Context(), roomID, dev.UserID, c.Redacts); err != nil {
			return err
		}
	}
	ev, err := a.sendLimited(r.Context(), dev, roomID, t)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]id.EventID{"event_id": ev.EventID()})
	return nil
}

// sendState answers PUT /rooms/{roomId}/state/{eventType}/{stateKey}.
func (a *API) sendState(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	typ, err := eventTypeVar(r)
	if err != nil {
		return err
	}
	stateKey := httpapi.Vars(r)["stateKey"]
	content, err := readContent(r)
	if err != nil {
		return err
	}
	if err := a.checkStateContent(r.Context(), roomID, typ, stateKey, content); err != nil {
		return err
	}
	// Setting a state event to the content it already has changes nothing: answer with the
	// current event, as clients retrying a state change expect.
	if cur, err := a.rooms.StateEvent(r.Context(), roomID, typ, stateKey); err == nil && cur != nil &&
		cur.Sender() == dev.UserID && sameJSON(cur.Content(), content) {
		httpapi.WriteJSON(w, http.StatusOK, map[string]id.EventID{"event_id": cur.EventID()})
		return nil
	}
	ev, err := a.sendLimited(r.Context(), dev, roomID, roomserver.Template{Type: typ, StateKey: &stateKey, Sender: dev.UserID, Content: content})
	if err != nil {
		return err
	}
	if typ == "m.room.guest_access" && stateKey == "" {
		a.removeGuests(r.Context(), roomID, content)
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]id.EventID{"event_id": ev.EventID()})
	return nil
}

// removeGuests makes the room's local guests leave once m.room.guest_access no longer lets
// them join (client-server API, "Guest access": the server MUST set their membership to
// leave). A failure is logged: the change of guest access itself has happened.
func (a *API) removeGuests(ctx context.Context, roomID id.RoomID, content json.RawMessage) {
	var c struct {
		GuestAccess string `json:"guest_access"`
	}
	if json.Unmarshal(content, &c) == nil && c.GuestAccess == "can_join" {
		return
	}
	state, err := a.rooms.CurrentState(ctx, roomID)
	if err != nil {
		a.log.Warn("remove guests: read room state", "room", roomID, "error", err)
		return
	}
	for k, ev := range state {
		u := id.UserID(k.StateKey)
		if k.Type != "m.room.member" || roomserver.MembershipOf(ev) != "join" || u.Homeserver() != a.cfg.ServerName {
			continue
		}
		acc, err := a.users.Account(ctx, u)
		if err != nil || !acc.IsGuest {
			continue
		}
		sk := string(u)
		leave, _ := json.Marshal(map[string]string{"membership": "leave"})
		if _, err := a.rooms.Send(ctx, roomID, roomserver.Template{Type: "m.room.member", StateKey: &sk, Sender: u, Content: leave}); err != nil {
			a.log.Warn("remove guest from room", "room", roomID, "user", u, "error", err)
		}
	}
}

// sameJSON reports whether two JSON values are equal.
func sameJSON(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return string(ja) == string(jb)
}

// checkStateContent validates the state events whose content the server must check before
// sending (client-server API, "m.room.canonical_alias"; "m.room.member" is only sent through
// the membership endpoints' rules by the auth rules).
func (a *API) checkStateContent(ctx context.Context, roomID id.RoomID, typ, stateKey string, content json.RawMessage) error {
	if typ != "m.room.canonical_alias" || stateKey != "" {
		return nil
	}
	var c struct {
		Alias      *string  `json:"alias"`
		AltAliases []string `json:"alt_aliases"`
	}
	if err := json.Unmarshal(content, &c); err != nil {
		return httpapi.BadJSON("Invalid m.room.canonical_alias content: %v", err)
	}
	aliases := c.AltAliases
	if c.Alias != nil {
		aliases = append(aliases, *c.Alias)
	}
	for _, s := range aliases {
		alias := id.RoomAlias(s)
		if !validAlias(alias) {
			return httpapi.NewError(http.StatusBadRequest, "M_INVALID_PARAM", "%q is not a valid room alias", s)
		}
		if aliasServer(alias) != a.cfg.ServerName {
			continue // another server's alias cannot be checked without federation
		}
		target, err := a.rooms.ResolveAlias(ctx, alias)
		if errors.Is(err, roomserver.ErrAliasNotFound) || (err == nil && target.RoomID != roomID) {
			return httpapi.NewError(http.StatusBadRequest, "M_BAD_ALIAS", "%s does not point to this room", s)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// validAlias reports whether s is a well-formed room alias (appendices, "Room Aliases").
func validAlias(alias id.RoomAlias) bool {
	s := string(alias)
	local, server, ok := strings.Cut(strings.TrimPrefix(s, "#"), ":")
	return strings.HasPrefix(s, "#") && ok && local != "" && server != "" && len(s) <= 255
}

// aliasServer is the server part of a room alias.
func aliasServer(alias id.RoomAlias) string {
	_, server, _ := strings.Cut(string(alias), ":")
	return server
}

// redact answers PUT /rooms/{roomId}/redact/{eventId}/{txnId}.
func (a *API) redact(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	target := id.EventID(httpapi.Vars(r)["eventId"])
	if !strings.HasPrefix(string(target), "$") {
		return httpapi.InvalidParam("%q is not an event ID", target)
	}
	var body struct {
		Reason *string `json:"reason"`
	}
	if err := httpapi.ReadJSON(r, &body); err != nil {
		return err
	}
	if err := a.checkRedaction(r.Context(), roomID, dev.UserID, target); err != nil {
		return err
	}
	content := map[string]any{}
	if body.Reason != nil {
		content["reason"] = *body.Reason
	}
	version, err := a.rooms.RoomVersion(r.Context(), roomID)
	if err != nil {
		return roomError(err)
	}
	if version.RedactsInContent() {
		content["redacts"] = target
	}
	raw, _ := json.Marshal(content)
	ev, err := a.sendLimited(r.Context(), dev, roomID, roomserver.Template{Type: "m.room.redaction", Sender: dev.UserID,
		Content: raw, Redacts: target, Txn: &roomserver.Txn{DeviceID: dev.DeviceID, TxnID: "redact:" + httpapi.Vars(r)["txnId"]}})
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]id.EventID{"event_id": ev.EventID()})
	return nil
}

// checkRedaction lets users redact their own events, and others' only with the power level
// the room sets for redactions (client-server API, "Redactions"); the auth rules of room
// versions 3 and later leave this to the sending server.
func (a *API) checkRedaction(ctx context.Context, roomID id.RoomID, user id.UserID, target id.EventID) error {
	ev, err := a.rooms.Event(ctx, target)
	if err != nil {
		return err
	}
	if ev == nil || ev.RoomID() != roomID {
		return httpapi.NotFound("Unknown event %s", target)
	}
	if ev.Sender() == user {
		return nil
	}
	state, err := a.rooms.CurrentState(ctx, roomID)
	if err != nil {
		return roomError(err)
	}
	pl := auth.LoadPowerLevels(roomserver.StateOf(state))
	if pl.User(user) < pl.Redact() {
		return httpapi.Forbidden("You may not redact other users' events")
	}
	return nil
}

// report answers POST /rooms/{roomId}/report/{eventId} (client-server API, "Reporting content").
// The spec lets servers answer 404 for events the reporter cannot see, so as not to reveal them.
func (a *API) report(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	roomID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	eventID := id.EventID(httpapi.Vars(r)["eventId"])
	var body struct {
		Reason *string `json:"reason"`
		Score  *int64  `json:"score"`
	}
	if err := httpapi.ReadJSON(r, &body); err != nil {
		return err
	}
	if body.Score != nil && (*body.Score < -100 || *body.Score > 0) {
		return httpapi.InvalidParam("score must be between -100 and 0")
	}
	ev, err := a.rooms.Event(r.Context(), eventID)
	if err != nil {
		return err
	}
	if ev == nil || ev.RoomID() != roomID {
		return httpapi.NotFound("Unknown event")
	}
	if m, err := a.membership(r.Context(), roomID, dev.UserID); err != nil || m != "join" {
		return httpapi.NotFound("Unknown event")
	}
	if err := a.rooms.ReportEvent(r.Context(), roomserver.Report{RoomID: roomID, EventID: eventID, UserID: dev.UserID,
		Reason: body.Reason, Score: body.Score}); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

// membership returns a user's current membership of a room ("leave" without a member event).
func (a *API) membership(ctx context.Context, roomID id.RoomID, user id.UserID) (string, error) {
	ev, err := a.rooms.StateEvent(ctx, roomID, "m.room.member", string(user))
	if err != nil {
		return "", roomError(err)
	}
	return memberOf(ev), nil
}

// memberOf is the membership a member event sets, "leave" for none.
func memberOf(ev *pdu.Event) string { return roomserver.MembershipOf(ev) }
