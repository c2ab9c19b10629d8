package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// upgrade upgrades a room as c and returns the replacement room, failing the test on an error.
func upgrade(t *testing.T, s *Server, c *mautrix.Client, roomID id.RoomID, body string) id.RoomID {
	t.Helper()
	st, out := dirCall(t, s, c, "POST", body, "rooms", string(roomID), "upgrade")
	var resp struct {
		ReplacementRoom id.RoomID `json:"replacement_room"`
	}
	if st != http.StatusOK || json.Unmarshal(out, &resp) != nil || resp.ReplacementRoom == "" {
		t.Fatalf("upgrade %s %s: %d %s", roomID, body, st, out)
	}
	return resp.ReplacementRoom
}

// stateContent reads a piece of room state as a JSON object.
func stateContent(t *testing.T, c *mautrix.Client, roomID id.RoomID, typ, stateKey string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := c.StateEvent(ctx(t), roomID, event.Type{Type: typ, Class: event.StateEventType}, stateKey, &m); err != nil {
		t.Fatalf("%s of %s: %v", typ, roomID, err)
	}
	return m
}

// level reads a number of power levels content.
func level(m map[string]any, keys ...string) float64 {
	var v any = m
	for _, k := range keys {
		o, ok := v.(map[string]any)
		if !ok {
			return -1
		}
		v = o[k]
	}
	f, ok := v.(float64)
	if !ok {
		return -1
	}
	return f
}

// TestUpgradeRoom upgrades rooms of every version, checking what moves to the new room and
// what happens to the old one.
func TestUpgradeRoom(t *testing.T) {
	s := Start(t)
	alice, bob, carol := s.NewUser(t, "alice"), s.NewUser(t, "bob"), s.NewUser(t, "carol")
	versions := []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"}
	cases := [][2]string{{"9", "10"}, {"11", "12"}, {"12", "12"}, {"12", "11"}, {"12", "1"}}
	for _, v := range versions {
		cases = append(cases, [2]string{v, "12"})
	}
	for i, tc := range cases {
		from, to := id.RoomVersion(tc[0]), id.RoomVersion(tc[1])
		t.Run(fmt.Sprintf("%s-to-%s", from, to), func(t *testing.T) {
			aliasName := "up" + strconv.Itoa(i)
			alias := id.RoomAlias("#" + aliasName + ":localhost")
			old := createRoom(t, alice, &mautrix.ReqCreateRoom{RoomVersion: from, Preset: "public_chat", Visibility: "public",
				Name: "Room " + string(from), Topic: "About " + string(from), RoomAliasName: aliasName})
			mustJoin(t, bob, old)
			mustJoin(t, carol, old)
			pl := stateContent(t, alice, old, "m.room.power_levels", "")
			pl["users"].(map[string]any)[string(bob.UserID)] = 50
			putState(t, alice, old, "m.room.power_levels", "", pl)
			putState(t, alice, old, "m.room.avatar", "", map[string]string{"url": "mxc://localhost/avatar"})
			putState(t, alice, old, "m.room.encryption", "", map[string]string{"algorithm": "m.megolm.v1.aes-sha2"})
			putState(t, alice, old, "m.room.server_acl", "", map[string]any{"allow": []string{"*"}, "allow_ip_literals": false})
			putState(t, alice, old, "m.room.history_visibility", "", map[string]string{"history_visibility": "joined"})
			last, err := alice.SendText(ctx(t), old, "last words")
			if err != nil {
				t.Fatal(err)
			}

			newID := upgrade(t, s, alice, old, `{"new_version":"`+string(to)+`"}`)
			if newID == old {
				t.Fatal("the replacement is the old room")
			}

			// The new room: version, predecessor, copied state, aliases, directory entry.
			var create event.CreateEventContent
			if err := alice.StateEvent(ctx(t), newID, event.StateCreate, "", &create); err != nil {
				t.Fatal(err)
			}
			if create.RoomVersion != to || create.Predecessor == nil || create.Predecessor.RoomID != old || create.Predecessor.EventID != last.EventID {
				t.Fatalf("create content: %+v (predecessor %+v), want version %s after %s", create, create.Predecessor, to, last.EventID)
			}
			for typ, want := range map[string]string{
				"m.room.name":               `{"name":"Room ` + string(from) + `"}`,
				"m.room.avatar":             `{"url":"mxc://localhost/avatar"}`,
				"m.room.encryption":         `{"algorithm":"m.megolm.v1.aes-sha2"}`,
				"m.room.server_acl":         `{"allow":["*"],"allow_ip_literals":false}`,
				"m.room.join_rules":         `{"join_rule":"public"}`,
				"m.room.history_visibility": `{"history_visibility":"joined"}`,
				"m.room.guest_access":       `{"guest_access":"forbidden"}`,
				"m.room.canonical_alias":    `{"alias":"` + string(alias) + `"}`,
			} {
				wantJSONValue(t, stateContent(t, alice, newID, typ, ""), want)
			}
			if topic := stateContent(t, alice, newID, "m.room.topic", ""); topic["topic"] != "About "+string(from) {
				t.Errorf("topic: %v", topic)
			}
			newPL := stateContent(t, alice, newID, "m.room.power_levels", "")
			_, aliceListed := newPL["users"].(map[string]any)[string(alice.UserID)]
			if to == "12" {
				if aliceListed {
					t.Errorf("the v12 creator is listed in users: %v", newPL["users"])
				}
			} else if level(newPL, "users", string(alice.UserID)) < 100 {
				t.Errorf("alice's level in the new room: %v", newPL["users"])
			}
			if level(newPL, "users", string(bob.UserID)) != 50 || level(newPL, "state_default") != 50 {
				t.Errorf("new power levels: %v", newPL)
			}
			if resp, err := bob.ResolveAlias(ctx(t), alias); err != nil || resp.RoomID != newID {
				t.Errorf("alias after upgrade: %v %v", resp, err)
			}
			st, body := dirCall(t, s, nil, "GET", "", "directory", "list", "room", string(newID))
			wantOK(t, st, body, `{"visibility":"public"}`)
			st, body = dirCall(t, s, nil, "GET", "", "directory", "list", "room", string(old))
			wantOK(t, st, body, `{"visibility":"private"}`)
			// Memberships do not move: only the upgrader is in the new room.
			if members, err := alice.JoinedMembers(ctx(t), newID); err != nil || len(members.Joined) != 1 {
				t.Errorf("members of the new room: %v %v", members, err)
			}
			// The upgrader can still run the new room.
			putState(t, alice, newID, "m.room.name", "", map[string]string{"name": "renamed"})
			putState(t, alice, newID, "m.room.power_levels", "", newPL)
			mustJoin(t, carol, newID)

			// The old room: tombstone, no canonical alias, locked power levels.
			tomb := stateContent(t, bob, old, "m.room.tombstone", "")
			if tomb["replacement_room"] != string(newID) || tomb["body"] == "" {
				t.Errorf("tombstone: %v", tomb)
			}
			if c := stateContent(t, alice, old, "m.room.canonical_alias", ""); c["alias"] != nil {
				t.Errorf("old canonical alias: %v", c)
			}
			oldPL := stateContent(t, alice, old, "m.room.power_levels", "")
			if level(oldPL, "events_default") != 50 || level(oldPL, "invite") != 50 {
				t.Errorf("old power levels: %v", oldPL)
			}
			_, err = carol.SendText(ctx(t), old, "still here?")
			wantErrCode(t, err, http.StatusForbidden, "M_FORBIDDEN")
		})
	}
}

// TestUpgradeSpaceAndCreators upgrades a space, which keeps its type and children, into room
// version 12 with additional creators.
func TestUpgradeSpaceAndCreators(t *testing.T) {
	s := Start(t)
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	child := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	space := createRoom(t, alice, &mautrix.ReqCreateRoom{RoomVersion: "11", Preset: "public_chat",
		CreationContent: map[string]any{"type": "m.space"}})
	putState(t, alice, space, "m.space.child", string(child), map[string]any{"via": []string{"localhost"}})
	mustJoin(t, bob, space)
	pl := stateContent(t, alice, space, "m.room.power_levels", "")
	pl["users"].(map[string]any)[string(bob.UserID)] = 100
	putState(t, alice, space, "m.room.power_levels", "", pl)

	st, body := dirCall(t, s, alice, "POST", `{"new_version":"12","additional_creators":["not a user"]}`, "rooms", string(space), "upgrade")
	wantError(t, st, body, http.StatusBadRequest, "M_INVALID_PARAM")

	newID := upgrade(t, s, alice, space, `{"new_version":"12","additional_creators":["`+string(bob.UserID)+`"]}`)
	var create event.CreateEventContent
	if err := alice.StateEvent(ctx(t), newID, event.StateCreate, "", &create); err != nil {
		t.Fatal(err)
	}
	if create.Type != event.RoomTypeSpace || !slices.Equal(create.AdditionalCreators, []id.UserID{bob.UserID}) {
		t.Fatalf("create content: %+v", create)
	}
	users := stateContent(t, alice, newID, "m.room.power_levels", "")["users"].(map[string]any)
	if len(users) != 0 {
		t.Errorf("creators listed in users: %v", users)
	}
	if got := fetchHierarchy(t, s, alice, newID, "").ids(); !slices.Equal(got, []id.RoomID{newID, child}) {
		t.Errorf("hierarchy of the new space: %v", got)
	}

	// Additional creators are ignored for versions without them.
	again := upgrade(t, s, alice, newID, `{"new_version":"11","additional_creators":["`+string(bob.UserID)+`"]}`)
	create = event.CreateEventContent{}
	if err := alice.StateEvent(ctx(t), again, event.StateCreate, "", &create); err != nil || len(create.AdditionalCreators) != 0 || create.Type != event.RoomTypeSpace {
		t.Fatalf("create content of the v11 room: %+v %v", create, err)
	}
	// Both v12 creators keep the power they had.
	users = stateContent(t, alice, again, "m.room.power_levels", "")["users"].(map[string]any)
	if users[string(alice.UserID)].(float64) < 100 || users[string(bob.UserID)] != users[string(alice.UserID)] {
		t.Errorf("creators' levels after leaving v12: %v", users)
	}
}

// TestUpgradeByModerator lets a user with just the power to send m.room.tombstone upgrade: they
// get the power to copy the state while the room is made and lose it again afterwards.
func TestUpgradeByModerator(t *testing.T) {
	s := Start(t)
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	old := createRoom(t, alice, &mautrix.ReqCreateRoom{RoomVersion: "9", Preset: "public_chat", Name: "moderated"})
	mustJoin(t, bob, old)
	// Levels as strings are what old clients wrote, valid up to room version 9; the new room
	// gets integers.
	pl := stateContent(t, alice, old, "m.room.power_levels", "")
	pl["users"].(map[string]any)[string(bob.UserID)] = "50"
	pl["events"].(map[string]any)["m.room.tombstone"] = 50
	pl["state_default"] = " 60"
	putState(t, alice, old, "m.room.power_levels", "", pl)

	newID := upgrade(t, s, bob, old, `{"new_version":"11"}`)
	newPL := stateContent(t, bob, newID, "m.room.power_levels", "")
	if level(newPL, "users", string(bob.UserID)) != 50 || level(newPL, "users", string(alice.UserID)) != 100 || level(newPL, "state_default") != 60 {
		t.Fatalf("final power levels: %v", newPL)
	}
	if name := stateContent(t, bob, newID, "m.room.name", ""); name["name"] != "moderated" {
		t.Fatalf("name: %v", name)
	}
	// bob could not change the old power levels (they need 100), so they stay as they were.
	oldPL := stateContent(t, bob, old, "m.room.power_levels", "")
	if level(oldPL, "events_default") != 0 {
		t.Errorf("old power levels changed without the power to: %v", oldPL)
	}
	if tomb := stateContent(t, bob, old, "m.room.tombstone", ""); tomb["replacement_room"] != string(newID) {
		t.Errorf("tombstone: %v", tomb)
	}
}

// TestUpgradeRefusals checks the errors of POST /upgrade.
func TestUpgradeRefusals(t *testing.T) {
	s := Start(t)
	alice, bob, carol := s.NewUser(t, "alice"), s.NewUser(t, "bob"), s.NewUser(t, "carol")
	roomID := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	mustJoin(t, bob, roomID)
	for _, tc := range []struct {
		who    *mautrix.Client
		room   string
		body   string
		status int
		code   string
	}{
		{bob, string(roomID), `{"new_version":"11"}`, 403, "M_FORBIDDEN"},
		{carol, string(roomID), `{"new_version":"11"}`, 403, "M_FORBIDDEN"},
		{alice, string(roomID), `{"new_version":"99"}`, 400, "M_UNSUPPORTED_ROOM_VERSION"},
		{alice, string(roomID), `{"new_version":""}`, 400, "M_UNSUPPORTED_ROOM_VERSION"},
		{alice, string(roomID), `{}`, 400, "M_MISSING_PARAM"},
		{alice, string(roomID), `{"new_version":11}`, 400, "M_BAD_JSON"},
		{alice, string(roomID), `{"new_version":"12","additional_creators":"bob"}`, 400, "M_BAD_JSON"},
		{alice, string(roomID), `nope`, 400, "M_NOT_JSON"},
		{alice, "!unknown:localhost", `{"new_version":"11"}`, 404, "M_NOT_FOUND"},
		{alice, "nope", `{"new_version":"11"}`, 400, "M_INVALID_PARAM"},
		{nil, string(roomID), `{"new_version":"11"}`, 401, "M_MISSING_TOKEN"},
	} {
		st, body := dirCall(t, s, tc.who, "POST", tc.body, "rooms", tc.room, "upgrade")
		wantError(t, st, body, tc.status, tc.code)
	}
	// Nothing was upgraded.
	var tomb map[string]any
	err := alice.StateEvent(ctx(t), roomID, event.StateTombstone, "", &tomb)
	wantErrCode(t, err, http.StatusNotFound, "M_NOT_FOUND")
}
