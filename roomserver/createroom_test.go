package roomserver

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"
)

func content(t *testing.T, evs []StateEvent, typ, key string) map[string]any {
	t.Helper()
	for _, e := range evs {
		if e.Type == typ && e.StateKey == key {
			var m map[string]any
			if err := json.Unmarshal(e.Content, &m); err != nil {
				t.Fatal(err)
			}
			return m
		}
	}
	return nil
}

func types(evs []StateEvent) string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Type+"/"+e.StateKey)
	}
	return strings.Join(out, " ")
}

func TestInitialEventsOrderAndVersions(t *testing.T) {
	name, topic := "Room", "About"
	for _, v := range SupportedVersions {
		t.Run(string(v), func(t *testing.T) {
			version, evs, err := InitialEvents(CreateRoomRequest{
				Creator: "@a:x", Version: v, Preset: PresetTrustedPrivateChat,
				CreationContent: json.RawMessage(`{"m.federate":false,"creator":"@evil:x","room_version":"1"}`),
				Alias:           "#r:x", Name: &name, Topic: &topic,
				InitialState: []StateEvent{{Type: "m.room.encryption", Content: json.RawMessage(`{"algorithm":"m.megolm.v1.aes-sha2"}`)}},
				Invite:       []id.UserID{"@b:x", "@a:x", "@b:x"}, IsDirect: true, CreatorDisplayName: "Alice",
			})
			if err != nil || version != v {
				t.Fatalf("%v %v", version, err)
			}
			want := "m.room.create/ m.room.member/@a:x m.room.power_levels/ m.room.canonical_alias/ m.room.join_rules/ m.room.history_visibility/ m.room.guest_access/ m.room.encryption/ m.room.name/ m.room.topic/ m.room.member/@b:x"
			if got := types(evs); got != want {
				t.Fatalf("order:\n got %s\nwant %s", got, want)
			}
			create := content(t, evs, "m.room.create", "")
			if create["room_version"] != string(v) || create["m.federate"] != false {
				t.Errorf("create content %v", create)
			}
			if _, has := create["creator"]; has != v.CreatorInContent() || (has && create["creator"] != "@a:x") {
				t.Errorf("creator in create content: %v", create)
			}
			pl := content(t, evs, "m.room.power_levels", "")
			users := pl["users"].(map[string]any)
			tomb := pl["events"].(map[string]any)["m.room.tombstone"].(float64)
			if v.PrivilegedRoomCreators() {
				if len(users) != 0 || tomb <= pl["state_default"].(float64) {
					t.Errorf("v12 power levels list creators or keep tombstone low: %v", pl)
				}
				if ac := create["additional_creators"]; ac == nil || len(ac.([]any)) != 1 || ac.([]any)[0] != "@b:x" {
					t.Errorf("trusted private chat invitees not additional creators: %v", create)
				}
			} else if users["@a:x"] != 100.0 || users["@b:x"] != 100.0 {
				t.Errorf("trusted private chat power levels: %v", users)
			}
			if j := content(t, evs, "m.room.member", "@a:x"); j["membership"] != "join" || j["displayname"] != "Alice" {
				t.Errorf("creator join %v", j)
			}
			if inv := content(t, evs, "m.room.member", "@b:x"); inv["membership"] != "invite" || inv["is_direct"] != true {
				t.Errorf("invite %v", inv)
			}
			if tp := content(t, evs, "m.room.topic", ""); tp["topic"] != "About" || tp["m.topic"] == nil {
				t.Errorf("topic %v", tp)
			}
		})
	}
}

func TestInitialEventsOverrides(t *testing.T) {
	name := "Named"
	_, evs, err := InitialEvents(CreateRoomRequest{
		Creator: "@a:x", Visibility: "public", Name: &name,
		InitialState: []StateEvent{
			{Type: "m.room.join_rules", Content: json.RawMessage(`{"join_rule":"knock"}`)},
			{Type: "m.room.name", Content: json.RawMessage(`{"name":"ignored"}`)},
			{Type: "x.custom", StateKey: "k", Content: json.RawMessage(`{"n":1}`)},
			{Type: "x.custom", StateKey: "k", Content: json.RawMessage(`{"n":2}`)},
		},
		PowerLevelOverride: json.RawMessage(`{"ban":75,"users":{"@z:x":42}}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	if jr := content(t, evs, "m.room.join_rules", ""); jr["join_rule"] != "knock" {
		t.Errorf("initial_state did not override the preset: %v", jr)
	}
	if n := content(t, evs, "m.room.name", ""); n["name"] != "Named" {
		t.Errorf("name did not override initial_state: %v", n)
	}
	if g := content(t, evs, "m.room.guest_access", ""); g["guest_access"] != "forbidden" {
		t.Errorf("public_chat preset from visibility: %v", g)
	}
	if c := content(t, evs, "x.custom", "k"); c["n"] != 2.0 {
		t.Errorf("the last duplicate did not win: %v", c)
	}
	if n := strings.Count(types(evs), "x.custom/k"); n != 1 || strings.Count(types(evs), "m.room.name/") != 1 || strings.Count(types(evs), "m.room.join_rules/") != 1 {
		t.Errorf("duplicates sent: %s", types(evs))
	}
	pl := content(t, evs, "m.room.power_levels", "")
	if pl["ban"] != 75.0 || pl["users"].(map[string]any)["@z:x"] != 42.0 {
		t.Errorf("override not applied: %v", pl)
	}

	_, evs, err = InitialEvents(CreateRoomRequest{Creator: "@a:x", InitialState: []StateEvent{{Type: "m.room.power_levels", Content: json.RawMessage(`{"users":{"@a:x":100},"ban":1}`)}}})
	if err != nil || content(t, evs, "m.room.power_levels", "")["ban"] != 1.0 || strings.Count(types(evs), "m.room.power_levels") != 1 {
		t.Errorf("initial_state power levels: %v %s", err, types(evs))
	}
	if i := slices.IndexFunc(evs, func(e StateEvent) bool { return e.Type == "m.room.power_levels" }); i != 2 {
		t.Errorf("power levels at %d, want 2 (before the events it authorises)", i)
	}
}

func TestInitialEventsErrors(t *testing.T) {
	for name, req := range map[string]CreateRoomRequest{
		"version":          {Creator: "@a:x", Version: "13"},
		"preset":           {Creator: "@a:x", Preset: "secret_chat"},
		"create in state":  {Creator: "@a:x", InitialState: []StateEvent{{Type: "m.room.create", Content: json.RawMessage(`{}`)}}},
		"member in state":  {Creator: "@a:x", InitialState: []StateEvent{{Type: "m.room.member", StateKey: "@b:x", Content: json.RawMessage(`{}`)}}},
		"creation content": {Creator: "@a:x", CreationContent: json.RawMessage(`[1]`)},
		"override":         {Creator: "@a:x", PowerLevelOverride: json.RawMessage(`"x"`)},
		"creators":         {Creator: "@a:x", Version: id.RoomV12, CreationContent: json.RawMessage(`{"additional_creators":"@b:x"}`)},
	} {
		if _, _, err := InitialEvents(req); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, _, err := InitialEvents(CreateRoomRequest{Creator: "@a:x", Version: "13"}); !errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("unsupported version error: %v", err)
	}
	if v, _, err := InitialEvents(CreateRoomRequest{Creator: "@a:x"}); err != nil || v != DefaultRoomVersion {
		t.Errorf("default version: %v %v", v, err)
	}
}
