package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/gorilla/mux"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/roomserver/auth"
	"github.com/latticehq/lattice/roomserver/pdu"
	"github.com/latticehq/lattice/userapi"
)

// registerUpgradeRoutes adds the room upgrade endpoint (client-server API, "Room Upgrades").
func (a *API) registerUpgradeRoutes(r *mux.Router) {
	handle(r, "/rooms/{roomId}/upgrade", a.authed(a.upgradeRoom), http.MethodPost)
}

// upgradeCopied are the state events an upgrade carries to the new room: the spec's recommended
// list but m.room.power_levels, which is handled apart, and the m.space.child events of spaces,
// without which an upgraded space would lose its rooms. None depends on who sent it.
var upgradeCopied = []string{"m.room.server_acl", "m.room.encryption", "m.room.name", "m.room.avatar", "m.room.topic",
	"m.room.guest_access", "m.room.history_visibility", "m.room.join_rules", "m.space.child"}

// upgradeRoom answers POST /rooms/{roomId}/upgrade, following the steps of the module's "Server
// behaviour": check the power to send m.room.tombstone, create the new room with a predecessor
// and the old type, copy the transferable state, move local aliases (and the canonical alias and
// the directory entry), send the tombstone, and restrict the old room's power levels.
//
// Memberships are not carried over, as the spec says; members follow the tombstone. The steps
// are not one transaction: a failure after the new room is made leaves it in place with the old
// room not yet tombstoned, and a retry makes another new room. Two upgrades of one room at once
// likewise make two new rooms; the later tombstone wins.
func (a *API) upgradeRoom(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	oldID, err := roomIDVar(r)
	if err != nil {
		return err
	}
	var body struct {
		NewVersion         *id.RoomVersion `json:"new_version"`
		AdditionalCreators []string        `json:"additional_creators"`
	}
	if err := httpapi.ReadJSON(r, &body); err != nil {
		return err
	}
	if body.NewVersion == nil {
		return httpapi.MissingParam("new_version is required")
	}
	version := *body.NewVersion
	if !slices.Contains(roomserver.SupportedVersions, version) {
		return httpapi.NewError(http.StatusBadRequest, "M_UNSUPPORTED_ROOM_VERSION", "This server does not support room version %q", version)
	}
	var extraCreators []id.UserID
	if version.PrivilegedRoomCreators() {
		for _, u := range body.AdditionalCreators {
			if !validUserID(u) {
				return httpapi.InvalidParam("%q is not a user ID", u)
			}
			if id.UserID(u) != dev.UserID && !slices.Contains(extraCreators, id.UserID(u)) {
				extraCreators = append(extraCreators, id.UserID(u))
			}
		}
	}
	ctx := r.Context()
	old, err := a.rooms.CurrentState(ctx, oldID)
	if err != nil {
		return roomError(err)
	}
	st := eventState(old)
	if auth.Membership(st, dev.UserID) != "join" {
		return httpapi.Forbidden("You are not in this room")
	}
	if auth.UserPowerLevel(st, dev.UserID) < auth.RequiredPowerLevel(st, "m.room.tombstone", true) {
		return httpapi.Forbidden("You do not have the power to upgrade this room")
	}
	if err := limit(a.messageLimit, string(dev.UserID)); err != nil {
		return err
	}
	newID, moved, err := a.createReplacement(ctx, dev.UserID, oldID, old, version, extraCreators)
	if err != nil {
		return err
	}
	a.dropCanonicalAlias(ctx, dev.UserID, oldID, func(s string) bool { return slices.Contains(moved, id.RoomAlias(s)) })
	if err := a.movePublication(ctx, oldID, newID); err != nil {
		return err
	}
	sk := ""
	tombstone, _ := json.Marshal(map[string]string{"body": "This room has been replaced", "replacement_room": string(newID)})
	if _, err := a.rooms.Send(ctx, oldID, roomserver.Template{Type: "m.room.tombstone", StateKey: &sk, Sender: dev.UserID, Content: tombstone}); err != nil {
		return roomError(err)
	}
	a.restrictOldRoom(ctx, dev.UserID, oldID)
	httpapi.WriteJSON(w, http.StatusOK, map[string]id.RoomID{"replacement_room": newID})
	return nil
}

// eventState lets the auth rules' readers read a state map.
type eventState map[auth.StateKey]*pdu.Event

// Get implements auth.State; absent state is a nil interface, not a nil *pdu.Event.
func (s eventState) Get(typ, stateKey string) auth.Event {
	if ev := s[auth.StateKey{Type: typ, StateKey: stateKey}]; ev != nil {
		return ev
	}
	return nil
}

// createReplacement creates the new room: its create event names the predecessor and keeps the
// old room's type (and m.federate: false), its initial state is the old room's transferable
// state, and its power levels are the old ones fitted to the new version. Then the old room's
// local aliases move to it (step 4), listed in moved, and its canonical alias follows them:
// after the room is made, as an alias can only point to a room that exists, and before the
// upgrader's interim power level is lowered.
func (a *API) createReplacement(ctx context.Context, user id.UserID, oldID id.RoomID, old eventState, version id.RoomVersion, extraCreators []id.UserID) (newID id.RoomID, moved []id.RoomAlias, err error) {
	predecessor := map[string]any{"room_id": oldID}
	latest, err := a.rooms.LatestEvent(ctx, oldID)
	if err != nil {
		return "", nil, roomError(err)
	}
	if latest != "" {
		predecessor["event_id"] = latest
	}
	creation := map[string]any{"predecessor": predecessor}
	if create := old[auth.StateKey{Type: "m.room.create"}]; create != nil {
		var c map[string]json.RawMessage
		json.Unmarshal(create.Content(), &c)
		if t, ok := c["type"]; ok {
			creation["type"] = t
		}
		if string(c["m.federate"]) == "false" {
			creation["m.federate"] = false
		}
	}
	if len(extraCreators) > 0 {
		creation["additional_creators"] = extraCreators
	}
	creationJSON, _ := json.Marshal(creation)

	var initial []roomserver.StateEvent
	for _, k := range sortedKeys(old) {
		if slices.Contains(upgradeCopied, k.Type) && (k.Type == "m.space.child" || k.StateKey == "") && !emptyContent(old[k].Content()) {
			initial = append(initial, roomserver.StateEvent{Type: k.Type, StateKey: k.StateKey, Content: old[k].Content()})
		}
	}
	// Without these the preset's defaults would apply, which differ from what their absence
	// means in the old room.
	for typ, content := range map[string]string{
		"m.room.join_rules":         `{"join_rule":"invite"}`,
		"m.room.history_visibility": `{"history_visibility":"shared"}`,
		"m.room.guest_access":       `{"guest_access":"forbidden"}`,
	} {
		if !slices.ContainsFunc(initial, func(e roomserver.StateEvent) bool { return e.Type == typ }) {
			initial = append(initial, roomserver.StateEvent{Type: typ, Content: json.RawMessage(content)})
		}
	}
	final, interim, err := upgradedPowerLevels(old, user, version, extraCreators)
	if err != nil {
		return "", nil, err
	}
	if interim != nil {
		initial = append(initial, roomserver.StateEvent{Type: "m.room.power_levels", Content: interim})
	} else if final != nil {
		initial = append(initial, roomserver.StateEvent{Type: "m.room.power_levels", Content: final})
	}

	req := roomserver.CreateRoomRequest{Creator: user, Version: version, Preset: roomserver.PresetPrivateChat,
		CreationContent: creationJSON, InitialState: initial}
	profile, err := a.users.Profile(ctx, user)
	if err != nil && !errors.Is(err, userapi.ErrNotFound) {
		return "", nil, err
	}
	json.Unmarshal(profile[profileDisplayName], &req.CreatorDisplayName)
	json.Unmarshal(profile[profileAvatarURL], &req.CreatorAvatarURL)
	newID, err = a.rooms.CreateRoom(ctx, req)
	switch {
	case errors.Is(err, roomserver.ErrUnsupportedVersion):
		return "", nil, httpapi.NewError(http.StatusBadRequest, "M_UNSUPPORTED_ROOM_VERSION", "Unsupported room version %q", version)
	case errors.Is(err, roomserver.ErrBadRequest), errors.Is(err, roomserver.ErrNotAllowed):
		// The old room's state cannot be carried into a room of the new version.
		return "", nil, httpapi.NewError(http.StatusBadRequest, "M_BAD_STATE", "The room's state cannot be carried to room version %s: %v", version, err)
	case err != nil:
		return "", nil, roomError(err)
	}
	if moved, err = a.moveAliases(ctx, oldID, newID); err != nil {
		return "", nil, err
	}
	sk := ""
	if ev := old[auth.StateKey{Type: "m.room.canonical_alias"}]; ev != nil && !emptyContent(ev.Content()) {
		_, err := a.rooms.Send(ctx, newID, roomserver.Template{Type: "m.room.canonical_alias", StateKey: &sk, Sender: user, Content: ev.Content()})
		if err != nil && !errors.Is(err, roomserver.ErrNotAllowed) {
			return "", nil, roomError(err)
		}
	}
	if interim != nil {
		// Sent by the upgrader at the interim level, which only lowers their own entry.
		if _, err := a.rooms.Send(ctx, newID, roomserver.Template{Type: "m.room.power_levels", StateKey: &sk, Sender: user, Content: final}); err != nil {
			return "", nil, roomError(err)
		}
	}
	return newID, moved, nil
}

// emptyContent reports whether an event's content is {} (a removed name, a space child taken
// out), which need not be copied.
func emptyContent(c json.RawMessage) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(c, &m) == nil && len(m) == 0
}

// sortedKeys returns the keys of state in a stable order.
func sortedKeys(state eventState) []auth.StateKey {
	keys := make([]auth.StateKey, 0, len(state))
	for k := range state {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y auth.StateKey) int {
		if c := strings.Compare(x.Type, y.Type); c != 0 {
			return c
		}
		return strings.Compare(x.StateKey, y.StateKey)
	})
	return keys
}

// The integer levels of m.room.power_levels content (client-server API, m.room.power_levels).
var namedLevels = []string{"users_default", "events_default", "state_default", "ban", "kick", "redact", "invite"}

// upgradedPowerLevels fits the old room's power levels to the new room (nil if the old room has
// none, so the new room gets the defaults). Levels are rewritten as integers, as room versions 10
// and later demand. From version 12 the new room's creators have infinite power and may not be
// listed in users; before it, creators of a version 12 room keep their power as the highest level
// the content names (at least 100). When the upgrader's own level would not let them send every
// copied event, interim is the same content with the upgrader raised to that level, to be
// replaced by final once the room is made (client-server API, "Room Upgrades", step 3).
func upgradedPowerLevels(old eventState, user id.UserID, version id.RoomVersion, extraCreators []id.UserID) (final, interim json.RawMessage, err error) {
	ev := old[auth.StateKey{Type: "m.room.power_levels"}]
	if ev == nil {
		return nil, nil, nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(ev.Content(), &raw); err != nil {
		return nil, nil, httpapi.NewError(http.StatusBadRequest, "M_BAD_STATE", "The room's power levels are not an object")
	}
	pl := map[string]any{}
	for k, v := range raw {
		switch {
		case slices.Contains(namedLevels, k):
			if l, ok := plLevel(v); ok {
				pl[k] = l
			}
		case k == "users" || k == "events" || k == "notifications":
			var m map[string]json.RawMessage
			json.Unmarshal(v, &m)
			levels := map[string]int64{}
			for key, lv := range m {
				if l, ok := plLevel(lv); ok && (k != "users" || validUserID(key)) {
					levels[key] = l
				}
			}
			pl[k] = levels
		default:
			pl[k] = v
		}
	}
	users, _ := pl["users"].(map[string]int64)
	if users == nil {
		users = map[string]int64{}
		pl["users"] = users
	}
	top := int64(100) // the highest level any action needs, at least 100
	needed := levelOr(pl, "state_default", 50)
	for _, k := range namedLevels {
		top = max(top, levelOr(pl, k, 0))
	}
	if events, ok := pl["events"].(map[string]int64); ok {
		for _, l := range events {
			top, needed = max(top, l), max(needed, l)
		}
	}
	if version.PrivilegedRoomCreators() {
		delete(users, string(user))
		for _, c := range extraCreators {
			delete(users, string(c))
		}
	} else {
		for _, c := range auth.Creators(old) {
			if auth.UserPowerLevel(old, c) == auth.InfinitePowerLevel {
				users[string(c)] = top
			}
		}
	}
	if final, err = json.Marshal(pl); err != nil {
		return nil, nil, fmt.Errorf("encode power levels: %w", err)
	}
	own, listed := users[string(user)]
	if !listed {
		own = levelOr(pl, "users_default", 0)
	}
	if version.PrivilegedRoomCreators() || own >= needed {
		return final, nil, nil
	}
	users[string(user)] = needed
	interim, err = json.Marshal(pl)
	if err != nil {
		return nil, nil, fmt.Errorf("encode power levels: %w", err)
	}
	return final, interim, nil
}

// levelOr is the named level k of normalised power levels content, def if absent.
func levelOr(pl map[string]any, k string, def int64) int64 {
	if l, ok := pl[k].(int64); ok {
		return l
	}
	return def
}

// maxLevel bounds levels to the integers canonical JSON allows (appendices, "Canonical JSON").
const maxLevel = 1<<53 - 1

// plLevel reads a power level written as any older room version allowed it: an integer, a
// float (truncated) or a string holding an integer; false for anything else.
func plLevel(raw json.RawMessage) (int64, bool) {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return 0, false
	}
	var f float64
	switch x := v.(type) {
	case float64:
		f = math.Trunc(x)
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		if err != nil {
			return 0, false
		}
		f = float64(n)
	default:
		return 0, false
	}
	return int64(max(-maxLevel, min(maxLevel, f))), true
}

// moveAliases points the old room's local aliases to the new room, keeping their creators.
func (a *API) moveAliases(ctx context.Context, oldID, newID id.RoomID) ([]id.RoomAlias, error) {
	aliases, err := a.rooms.RoomAliases(ctx, oldID)
	if err != nil {
		return nil, err
	}
	var moved []id.RoomAlias
	for _, alias := range aliases {
		target, err := a.rooms.ResolveAlias(ctx, alias)
		if errors.Is(err, roomserver.ErrAliasNotFound) || (err == nil && target.RoomID != oldID) {
			continue // deleted or moved meanwhile
		} else if err != nil {
			return nil, err
		}
		if err := a.rooms.DeleteAlias(ctx, alias); errors.Is(err, roomserver.ErrAliasNotFound) {
			continue
		} else if err != nil {
			return nil, err
		}
		if err := a.rooms.CreateAlias(ctx, roomserver.Alias{Alias: alias, RoomID: newID, Creator: target.Creator}); err != nil {
			return nil, err
		}
		moved = append(moved, alias)
	}
	return moved, nil
}

// movePublication moves the old room's entry in the published room directory to the new room.
func (a *API) movePublication(ctx context.Context, oldID, newID id.RoomID) error {
	published, err := a.rooms.Published(ctx, oldID)
	if err != nil || !published {
		return err
	}
	if err := a.rooms.SetPublished(ctx, newID, true); err != nil {
		return err
	}
	return a.rooms.SetPublished(ctx, oldID, false)
}

// restrictOldRoom raises events_default and invite of the old room to the greater of 50 and
// users_default + 1, so that it is no longer used (step 6). The spec asks for it "if possible":
// an upgrader without the power to change the power levels leaves them as they are.
func (a *API) restrictOldRoom(ctx context.Context, user id.UserID, roomID id.RoomID) {
	ev, err := a.rooms.StateEvent(ctx, roomID, "m.room.power_levels", "")
	if err != nil || ev == nil {
		return
	}
	var c map[string]json.RawMessage
	if json.Unmarshal(ev.Content(), &c) != nil {
		return
	}
	level := func(k string) int64 {
		l, _ := plLevel(c[k])
		return l // absent: 0, the default of all three
	}
	want := max(50, level("users_default")+1)
	changed := false
	for _, k := range []string{"events_default", "invite"} {
		if level(k) < want {
			c[k] = json.RawMessage(strconv.FormatInt(want, 10))
			changed = true
		}
	}
	if !changed {
		return
	}
	content, _ := json.Marshal(c)
	sk := ""
	_, err = a.rooms.Send(ctx, roomID, roomserver.Template{Type: "m.room.power_levels", StateKey: &sk, Sender: user, Content: content})
	if err != nil && !errors.Is(err, roomserver.ErrNotAllowed) {
		a.log.Warn("restrict upgraded room", "room_id", roomID, "error", err)
	}
}
