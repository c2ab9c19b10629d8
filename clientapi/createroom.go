package clientapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/userapi"
)

// createRoomBody is the body of POST /createRoom (client-server API, "Creation").
type createRoomBody struct {
	Visibility         string                  `json:"visibility"`
	RoomAliasName      string                  `json:"room_alias_name"`
	Name               *string                 `json:"name"`
	Topic              *string                 `json:"topic"`
	Invite             []id.UserID             `json:"invite"`
	Invite3PID         []json.RawMessage       `json:"invite_3pid"`
	RoomVersion        id.RoomVersion          `json:"room_version"`
	CreationContent    json.RawMessage         `json:"creation_content"`
	InitialState       []roomserver.StateEvent `json:"initial_state"`
	Preset             string                  `json:"preset"`
	IsDirect           bool                    `json:"is_direct"`
	PowerLevelOverride json.RawMessage         `json:"power_level_content_override"`
}

// createRoom answers POST /createRoom.
func (a *API) createRoom(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	var body createRoomBody
	if err := httpapi.ReadJSON(r, &body); err != nil {
		return err
	}
	ctx := r.Context()
	if body.Visibility != "" && body.Visibility != "public" && body.Visibility != "private" {
		return httpapi.InvalidParam("visibility must be public or private")
	}
	switch body.Preset {
	case "", roomserver.PresetPrivateChat, roomserver.PresetTrustedPrivateChat, roomserver.PresetPublicChat:
	default:
		return httpapi.InvalidParam("Unknown preset %q", body.Preset)
	}
	if len(body.Invite3PID) > 0 {
		return httpapi.NewError(http.StatusBadRequest, "M_UNRECOGNIZED", "Third-party invites need an identity server, which this server does not use")
	}
	for _, part := range []json.RawMessage{body.CreationContent, body.PowerLevelOverride} {
		if t := strings.TrimSpace(string(part)); t != "" && t != "null" && !strings.HasPrefix(t, "{") {
			return httpapi.BadJSON("creation_content and power_level_content_override must be objects")
		}
	}
	for _, ev := range body.InitialState {
		if ev.Type == "" {
			return httpapi.BadJSON("initial_state events need a type")
		}
		if t := strings.TrimSpace(string(ev.Content)); !strings.HasPrefix(t, "{") {
			return httpapi.BadJSON("initial_state events need object content")
		}
		if ev.Type == "m.room.create" || ev.Type == "m.room.member" {
			return httpapi.BadJSON("initial_state may not hold %s events", ev.Type)
		}
	}
	invites := make([]id.UserID, 0, len(body.Invite))
	for _, u := range body.Invite {
		if _, _, err := u.Parse(); err != nil {
			return httpapi.InvalidParam("%q is not a user ID", u)
		}
		if u.Homeserver() != a.cfg.ServerName {
			return httpapi.Forbidden("Inviting users of other servers needs federation, which this server does not speak yet")
		}
		if _, err := a.users.Account(ctx, u); errors.Is(err, userapi.ErrNotFound) {
			return httpapi.NotFound("Unknown user %s", u)
		} else if err != nil {
			return err
		}
		invites = append(invites, u)
	}
	var alias id.RoomAlias
	if body.RoomAliasName != "" {
		if strings.ContainsAny(body.RoomAliasName, ":#\x00 ") {
			return httpapi.NewError(http.StatusBadRequest, "M_INVALID_PARAM", "room_alias_name is the local part of the alias, without # or :")
		}
		alias = id.RoomAlias("#" + body.RoomAliasName + ":" + a.cfg.ServerName)
		if !validAlias(alias) {
			return httpapi.InvalidParam("room_alias_name makes an alias longer than 255 bytes")
		}
		if _, err := a.rooms.ResolveAlias(ctx, alias); err == nil {
			return httpapi.NewError(http.StatusBadRequest, "M_ROOM_IN_USE", "The alias %s is already in use", alias)
		} else if !errors.Is(err, roomserver.ErrAliasNotFound) {
			return err
		}
	}
	if err := limit(a.messageLimit, string(dev.UserID)); err != nil {
		return err
	}
	req := roomserver.CreateRoomRequest{
		Creator: dev.UserID, Version: body.RoomVersion, Preset: body.Preset, Visibility: body.Visibility,
		CreationContent: body.CreationContent, Alias: alias, InitialState: body.InitialState,
		Name: body.Name, Topic: body.Topic, Invite: invites, IsDirect: body.IsDirect,
		PowerLevelOverride: body.PowerLevelOverride,
	}
	profile, err := a.users.Profile(ctx, dev.UserID)
	if err != nil && !errors.Is(err, userapi.ErrNotFound) {
		return err
	}
	json.Unmarshal(profile[profileDisplayName], &req.CreatorDisplayName)
	json.Unmarshal(profile[profileAvatarURL], &req.CreatorAvatarURL)

	// The alias must point to the room before its m.room.canonical_alias event names it; the
	// room ID is known only once the roomserver has built the create event, so the alias is
	// bound through the hook the roomserver calls before the initial state.
	if alias != "" {
		req.BeforeInitialState = func(roomID id.RoomID) error {
			return a.rooms.CreateAlias(ctx, roomserver.Alias{Alias: alias, RoomID: roomID, Creator: dev.UserID})
		}
	}
	roomID, err := a.rooms.CreateRoom(ctx, req)
	if err != nil {
		if errors.Is(err, roomserver.ErrUnsupportedVersion) {
			return httpapi.NewError(http.StatusBadRequest, "M_UNSUPPORTED_ROOM_VERSION", "Unsupported room version %q", body.RoomVersion)
		}
		if errors.Is(err, roomserver.ErrBadRequest) || errors.Is(err, roomserver.ErrNotAllowed) {
			// The options made an event the room version or its auth rules refuse.
			return httpapi.BadJSON("%v", err)
		}
		return roomError(err)
	}
	if body.Visibility == "public" {
		if err := a.rooms.SetPublished(ctx, roomID, true); err != nil {
			return err
		}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]id.RoomID{"room_id": roomID})
	return nil
}
