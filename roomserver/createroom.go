// Package roomserver keeps rooms as event graphs: it builds, checks and stores events, resolves
// state, and publishes what happens in rooms to the rest of Lattice.
package roomserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"maunium.net/go/mautrix/id"
)

// Presets of POST /createRoom.
const (
	PresetPrivateChat        = "private_chat"
	PresetTrustedPrivateChat = "trusted_private_chat"
	PresetPublicChat         = "public_chat"
)

// DefaultRoomVersion is the version of new rooms when the client names none.
const DefaultRoomVersion = id.RoomV10

// SupportedVersions are the room versions Lattice can create and join, all stable.
var SupportedVersions = []id.RoomVersion{id.RoomV1, id.RoomV2, id.RoomV3, id.RoomV4, id.RoomV5, id.RoomV6,
	id.RoomV7, id.RoomV8, id.RoomV9, id.RoomV10, id.RoomV11, id.RoomV12}

// ErrUnsupportedVersion is returned for a room version Lattice does not support.
var ErrUnsupportedVersion = errors.New("unsupported room version")

// StateEvent is a state event to send: its type, state key and content.
type StateEvent struct {
	Type     string          `json:"type"`
	StateKey string          `json:"state_key"`
	Content  json.RawMessage `json:"content"`
}

// CreateRoomRequest is a room to create, as POST /createRoom describes it; clientapi has already
// checked the shapes of its fields.
type CreateRoomRequest struct {
	Creator            id.UserID
	Version            id.RoomVersion // "" for the default
	Preset             string         // "" derives it from Visibility
	Visibility         string         // "public" or "private" (the default)
	CreationContent    json.RawMessage
	Alias              id.RoomAlias // the full alias for room_alias_name, or ""
	InitialState       []StateEvent
	Name, Topic        *string
	Invite             []id.UserID
	IsDirect           bool
	PowerLevelOverride json.RawMessage
	// CreatorProfile is the creator's displayname and avatar_url for their join event.
	CreatorDisplayName, CreatorAvatarURL string
	// BeforeInitialState, if set, runs once the create event is stored and before the rest: the
	// room's alias must exist before m.room.canonical_alias names it.
	BeforeInitialState func(roomID id.RoomID) error
}

// ErrBadRequest is returned for a room creation request whose options cannot make a room.
var ErrBadRequest = errors.New("roomserver: bad request")

// InitialEvents returns the new room's first events, all sent by the creator, in the order of
// POST /createRoom (client-server API, "Creation"): create, the creator's join, power levels,
// canonical alias, the preset's join rules, history visibility and guest access, initial_state,
// name, topic, invites.
func InitialEvents(req CreateRoomRequest) (id.RoomVersion, []StateEvent, error) {
	version := req.Version
	if version == "" {
		version = DefaultRoomVersion
	}
	if !slices.Contains(SupportedVersions, version) {
		return "", nil, fmt.Errorf("%w %q", ErrUnsupportedVersion, version)
	}
	preset := req.Preset
	if preset == "" {
		preset = PresetPrivateChat
		if req.Visibility == "public" {
			preset = PresetPublicChat
		}
	}
	if preset != PresetPrivateChat && preset != PresetTrustedPrivateChat && preset != PresetPublicChat {
		return "", nil, fmt.Errorf("unknown preset %q", preset)
	}

	// initial_state overrides the preset's events and is overridden by name and topic; of
	// several events with one type and state key, the last counts.
	last := map[[2]string]int{}
	for i, ev := range req.InitialState {
		switch ev.Type {
		case "m.room.create":
			return "", nil, errors.New("initial_state may not hold m.room.create: use creation_content")
		case "m.room.member":
			return "", nil, errors.New("initial_state may not hold m.room.member: use invite")
		}
		last[[2]string{ev.Type, ev.StateKey}] = i
	}
	var initialOrder []StateEvent
	for i, ev := range req.InitialState {
		if last[[2]string{ev.Type, ev.StateKey}] != i ||
			(ev.Type == "m.room.name" && req.Name != nil) || (ev.Type == "m.room.topic" && req.Topic != nil) {
			continue
		}
		initialOrder = append(initialOrder, ev)
	}

	create, err := createContent(req, version, preset)
	if err != nil {
		return "", nil, err
	}
	join := map[string]any{"membership": "join"}
	if req.CreatorDisplayName != "" {
		join["displayname"] = req.CreatorDisplayName
	}
	if req.CreatorAvatarURL != "" {
		join["avatar_url"] = req.CreatorAvatarURL
	}
	events := []StateEvent{
		{Type: "m.room.create", Content: create},
		{Type: "m.room.member", StateKey: string(req.Creator), Content: mustJSON(join)},
	}

	pl, err := powerLevels(req, version, preset)
	if err != nil {
		return "", nil, err
	}
	if i := slices.IndexFunc(initialOrder, func(e StateEvent) bool { return e.Type == "m.room.power_levels" && e.StateKey == "" }); i >= 0 {
		pl = initialOrder[i].Content // a whole power levels event given by the client wins
		initialOrder = slices.Delete(initialOrder, i, i+1)
	}
	events = append(events, StateEvent{Type: "m.room.power_levels", Content: pl})
	if req.Alias != "" {
		events = append(events, StateEvent{Type: "m.room.canonical_alias", Content: mustJSON(map[string]string{"alias": string(req.Alias)})})
	}

	joinRule, guestAccess := "invite", "can_join"
	if preset == PresetPublicChat {
		joinRule, guestAccess = "public", "forbidden"
	}
	for _, ev := range []StateEvent{
		{Type: "m.room.join_rules", Content: mustJSON(map[string]string{"join_rule": joinRule})},
		{Type: "m.room.history_visibility", Content: mustJSON(map[string]string{"history_visibility": "shared"})},
		{Type: "m.room.guest_access", Content: mustJSON(map[string]string{"guest_access": guestAccess})},
	} {
		if !slices.ContainsFunc(initialOrder, func(e StateEvent) bool { return e.Type == ev.Type && e.StateKey == "" }) {
			events = append(events, ev)
		}
	}
	events = append(events, initialOrder...)
	if req.Name != nil {
		events = append(events, StateEvent{Type: "m.room.name", Content: mustJSON(map[string]string{"name": *req.Name})})
	}
	if req.Topic != nil {
		events = append(events, StateEvent{Type: "m.room.topic", Content: mustJSON(map[string]any{
			"topic":   *req.Topic,
			"m.topic": map[string]any{"m.text": []map[string]string{{"mimetype": "text/plain", "body": *req.Topic}}},
		})})
	}
	for _, u := range dedupeUsers(req.Invite) {
		if u == req.Creator {
			continue
		}
		invite := map[string]any{"membership": "invite"}
		if req.IsDirect {
			invite["is_direct"] = true
		}
		events = append(events, StateEvent{Type: "m.room.member", StateKey: string(u), Content: mustJSON(invite)})
	}
	return version, events, nil
}

// createContent is creation_content with room_version (and, before v11, creator) set by the
// server, and for v12 trusted private chats the invitees among additional_creators.
func createContent(req CreateRoomRequest, version id.RoomVersion, preset string) (json.RawMessage, error) {
	content := map[string]json.RawMessage{}
	if len(req.CreationContent) > 0 && string(req.CreationContent) != "null" {
		if err := json.Unmarshal(req.CreationContent, &content); err != nil {
			return nil, errors.New("creation_content must be an object")
		}
	}
	content["room_version"] = mustJSON(version)
	delete(content, "creator")
	if version.CreatorInContent() {
		content["creator"] = mustJSON(req.Creator)
	}
	if version.PrivilegedRoomCreators() {
		var extra []id.UserID
		if raw, ok := content["additional_creators"]; ok {
			if err := json.Unmarshal(raw, &extra); err != nil {
				return nil, errors.New("creation_content.additional_creators must be a list of user IDs")
			}
		}
		if preset == PresetTrustedPrivateChat {
			extra = append(extra, req.Invite...)
		}
		extra = slices.DeleteFunc(dedupeUsers(extra), func(u id.UserID) bool { return u == req.Creator })
		if len(extra) > 0 {
			content["additional_creators"] = mustJSON(extra)
		} else {
			delete(content, "additional_creators")
		}
	}
	return encode(content)
}

// powerLevels is the default power levels content of a new room with the client's override on
// top. Creators are listed with 100 up to v11; from v12 they have infinite power and are never
// listed, and m.room.tombstone needs more than state_default (create_room.yaml, step 3).
func powerLevels(req CreateRoomRequest, version id.RoomVersion, preset string) (json.RawMessage, error) {
	users := map[string]int{}
	tombstone := 100
	if version.PrivilegedRoomCreators() {
		tombstone = 150
	} else {
		users[string(req.Creator)] = 100
		if preset == PresetTrustedPrivateChat {
			for _, u := range req.Invite {
				users[string(u)] = 100
			}
		}
	}
	pl := map[string]any{
		"users":          users,
		"users_default":  0,
		"events_default": 0,
		"state_default":  50,
		"ban":            50,
		"kick":           50,
		"redact":         50,
		"invite":         0,
		"events": map[string]int{
			"m.room.name":               50,
			"m.room.avatar":             50,
			"m.room.canonical_alias":    50,
			"m.room.topic":              50,
			"m.room.power_levels":       100,
			"m.room.history_visibility": 100,
			"m.room.tombstone":          tombstone,
			"m.room.server_acl":         100,
			"m.room.encryption":         100,
		},
		"notifications": map[string]int{"room": 50},
	}
	if len(req.PowerLevelOverride) > 0 && string(req.PowerLevelOverride) != "null" {
		var override map[string]json.RawMessage
		if err := json.Unmarshal(req.PowerLevelOverride, &override); err != nil {
			return nil, errors.New("power_level_content_override must be an object")
		}
		for k, v := range override {
			pl[k] = v // top-level keys replace, as Synapse and clients expect
		}
	}
	return encode(pl)
}

func dedupeUsers(us []id.UserID) []id.UserID {
	var out []id.UserID
	for _, u := range us {
		if !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}

// encode marshals content that holds client JSON, which could in principle fail to encode.
func encode(v any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode event content: %w", err)
	}
	return b, nil
}

// mustJSON marshals values built here from strings and numbers, which always encode.
func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("roomserver: encode %T: %v", v, err))
	}
	return b
}
