package auth

import (
	"errors"
	"testing"

	"maunium.net/go/mautrix/id"
)

func message(sender string) string {
	return `{"type":"m.room.message","sender":"` + sender + `","content":{"body":"hi"}}`
}

func stateEv(typ, sender, stateKey string) string {
	return `{"type":"` + typ + `","sender":"` + sender + `","state_key":"` + stateKey + `","content":{}}`
}

func redaction(sender, redacts string) string {
	return `{"type":"m.room.redaction","sender":"` + sender + `","redacts":"` + redacts + `","content":{}}`
}

// TestRules covers the rules after the membership rule, the federation flag, the aliases special
// case (v1–v5) and the redaction rule (v1–v2).
func TestRules(t *testing.T) {
	noPL := func(r *room) { r.del("m.room.power_levels", "") }
	runCheckCases(t, []checkCase{
		// sender must be joined
		{name: "message by member", event: message(carol)},
		{name: "message by outsider", event: message(dave), rule: "1:6 6:5 12:6"},
		{name: "message by banned", event: message(eve), rule: "1:6 6:5 12:6"},
		{name: "message by invited", event: message(ivan), rule: "1:6 6:5 12:6"},
		{name: "message by knocking", event: message(kim), rule: "1:6 6:5 12:6"},
		{name: "state by outsider", event: stateEv("m.room.topic", dave, ""), rule: "1:6 6:5 12:6"},

		// m.room.third_party_invite needs the invite level, not state_default
		{name: "third-party invite at invite level 0", event: stateEv("m.room.third_party_invite", carol, "tok")},
		{name: "third-party invite below invite level", setup: powerLevels(`{"users":{{alice100,}"` + bob + `":50},"invite":60}`), event: stateEv("m.room.third_party_invite", bob, "tok"), rule: "1:7.1 6:6.1 12:7.1"},
		{name: "third-party invite by outsider", event: stateEv("m.room.third_party_invite", dave, "tok"), rule: "1:6 6:5 12:6"},

		// required power level: events, events_default, state_default
		{name: "message below events_default", setup: powerLevels(`{"users":{{alice100,}"` + bob + `":50},"events_default":10}`), event: message(carol), rule: "1:8 6:7 12:8"},
		{name: "message type allowed by events", setup: powerLevels(`{"users":{{alice100,}"` + bob + `":50},"events_default":10,"events":{"m.room.message":0}}`), event: message(carol)},
		{name: "message type raised by events", setup: powerLevels(`{"users":{{alice100,}"` + bob + `":50},"events":{"m.room.message":51}}`), event: message(bob), rule: "1:8 6:7 12:8"},
		{name: "state below state_default", event: stateEv("m.room.topic", carol, ""), rule: "1:8 6:7 12:8"},
		{name: "state at state_default", event: stateEv("m.room.topic", bob, "")},
		{name: "state type lowered by events", setup: powerLevels(`{"users":{{alice100,}"` + bob + `":50},"events":{"m.room.topic":0}}`), event: stateEv("m.room.topic", carol, "")},
		{name: "state_default raised", setup: powerLevels(`{"users":{{alice100,}"` + bob + `":50},"state_default":51}`), event: stateEv("m.room.topic", bob, ""), rule: "1:8 6:7 12:8"},
		{name: "no power levels: state by member", setup: noPL, event: stateEv("m.room.topic", carol, ""), rule: "1:8 6:7 12:8"},
		{name: "no power levels: state by creator", setup: noPL, event: stateEv("m.room.topic", alice, "")},
		{name: "no power levels: message by member", setup: noPL, event: message(carol)},
		{name: "string events_default", setup: powerLevels(`{"users":{{alice100,}"` + bob + `":50},"events_default":" +010 "}`), event: message(carol), rule: "1:8 6:7 10:"},
		{name: "float events_default", setup: powerLevels(`{"users":{{alice100,}"` + bob + `":50},"events_default":10.9}`), event: message(carol), rule: "1:8 6:"},
		{name: "string user level", setup: powerLevels(`{"users":{{alice100,}"` + bob + `":"50"}}`), event: stateEv("m.room.topic", bob, ""), rule: "1: 10:7 12:8"},
		{name: "float user level", setup: powerLevels(`{"users":{{alice100,}"` + bob + `":5.1e1}}`), event: stateEv("m.room.topic", bob, ""), rule: "1: 6:7 12:8"},
		{name: "users_default", setup: powerLevels(`{"users":{{alice100,}"` + bob + `":50},"users_default":50}`), event: stateEv("m.room.topic", carol, "")},

		// state keys that are user IDs
		{name: "state key of another user", event: stateEv("m.custom", bob, carol), rule: "1:9 6:8 12:9"},
		{name: "state key of the sender", event: stateEv("m.custom", bob, bob)},
		{name: "state key @ without colon", event: stateEv("m.custom", bob, "@x"), rule: "1:9 6:8 12:9"},

		// m.federate
		{name: "unfederated room, other server", setup: func(r *room) { r.setCreate(`"m.federate":false`) }, event: message(bob), rule: "1:3 12:4"},
		{name: "unfederated room, creator's server", setup: func(r *room) { r.setCreate(`"m.federate":false`) }, event: message(alice)},
		{name: "m.federate not a boolean", setup: func(r *room) { r.setCreate(`"m.federate":"false"`) }, event: message(bob)},
		{name: "federated room", setup: func(r *room) { r.setCreate(`"m.federate":true`) }, event: message(bob)},

		// m.room.aliases: special in v1–v5, ordinary state from v6
		{name: "aliases by outsider for own server", event: stateEv("m.room.aliases", dave, "d.test"), rule: "1: 6:5 12:6"},
		{name: "aliases for another server", event: stateEv("m.room.aliases", bob, "x.test"), rule: "1:4.2 6:"},
		{name: "aliases without state key", event: `{"type":"m.room.aliases","sender":"` + dave + `","content":{}}`, rule: "1:4.1 6:5 12:6"},
		{name: "aliases by low member", event: stateEv("m.room.aliases", carol, "c.test"), rule: "1: 6:7 12:8"},

		// redactions: rule 11 of the v1 text, gone from v3 (the redact level is then applied
		// when the redaction is carried out, not here)
		{name: "redact own server's event", event: redaction(carol, "$x:c.test")},
		{name: "redact other server's event below redact level", event: redaction(carol, "$x:a.test"), rule: "1:11.3 3:"},
		{name: "redact other server's event at redact level", event: redaction(bob, "$x:a.test")},
		{name: "redact with redact level raised", setup: powerLevels(`{"users":{{alice100,}"` + bob + `":50},"redact":60}`), event: redaction(bob, "$x:a.test"), rule: "1:11.3 3:"},
		{name: "redaction below its event level", setup: powerLevels(`{"users":{{alice100,}"` + bob + `":50},"events":{"m.room.redaction":10}}`), event: redaction(carol, "$x:c.test"), rule: "1:8 6:7 12:8"},
		{name: "redaction by outsider", event: redaction(dave, "$x:d.test"), rule: "1:6 6:5 12:6"},

		// the create event must be in the state (v12: the one the room ID names)
		{name: "no create event", setup: func(r *room) { r.del("m.room.create", "") }, event: message(carol), rule: "1:2.4 12:2"},
		{name: "room ID not the create event's", only: versionsFrom(12), event: `{"type":"m.room.message","room_id":"!other","sender":"` + carol + `","content":{}}`, rule: "12:2"},
	})
}

func TestCheckUnknownVersion(t *testing.T) {
	r := newRoom(t, "11")
	e := r.ev(message(carol))
	e.version = "13"
	for name, err := range map[string]error{
		"Check":           Check(e, r.state),
		"CheckAuthEvents": CheckAuthEvents(e, nil),
	} {
		if !errors.Is(err, id.ErrUnknownRoomVersion) {
			t.Errorf("%s: want unknown room version, got %v", name, err)
		}
	}
	if s := Selection(e); s != nil {
		t.Errorf("Selection of unknown version: %v", s)
	}
	// The pre-room-versions version "" is v1.
	e.version = ""
	if err := Check(e, r.state); err != nil {
		t.Errorf(`version "": %v`, err)
	}
}

func TestErrorText(t *testing.T) {
	r := newRoom(t, "10")
	err := Check(r.ev(member(bob, dave, joinC)), r.state)
	want := "auth rule 4.3.2 (v10): sender @bob:b.test cannot join for @dave:d.test"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

func TestHelpers(t *testing.T) {
	for _, v := range allVersions {
		t.Run("v"+string(v), func(t *testing.T) {
			r := newRoom(t, v)
			wantAlice := int64(100)
			if v.PrivilegedRoomCreators() {
				wantAlice = InfinitePowerLevel
			}
			for user, want := range map[id.UserID]int64{alice: wantAlice, bob: 50, carol: 0, dave: 0} {
				if got := UserPowerLevel(r.state, user); got != want {
					t.Errorf("UserPowerLevel(%s) = %d, want %d", user, got, want)
				}
			}
			if got := RequiredPowerLevel(r.state, "m.room.topic", true); got != 50 {
				t.Errorf("state default = %d", got)
			}
			if got := RequiredPowerLevel(r.state, "m.room.message", false); got != 0 {
				t.Errorf("events default = %d", got)
			}
			pl := LoadPowerLevels(r.state)
			if pl.Ban() != 50 || pl.Kick() != 50 || pl.Redact() != 50 || pl.Invite() != 0 || pl.Notification("room") != 50 {
				t.Errorf("defaults: ban %d kick %d redact %d invite %d room %d", pl.Ban(), pl.Kick(), pl.Redact(), pl.Invite(), pl.Notification("room"))
			}
			if got := Creators(r.state); len(got) != 1 || got[0] != alice {
				t.Errorf("Creators = %v", got)
			}
			if got := Membership(r.state, eve); got != "ban" {
				t.Errorf("Membership(eve) = %q", got)
			}
			if got := Membership(r.state, dave); got != "leave" {
				t.Errorf("Membership(dave) = %q", got)
			}
			r.del("m.room.power_levels", "")
			if got := UserPowerLevel(r.state, alice); got != wantAlice {
				t.Errorf("without power levels alice = %d, want %d", got, wantAlice)
			}
			if got := UserPowerLevel(r.state, bob); got != 0 {
				t.Errorf("without power levels bob = %d", got)
			}
		})
	}
	t.Run("v12 additional creators", func(t *testing.T) {
		r := newBareRoom(t, "12", `"additional_creators":["`+zed+`","`+zed+`","bad"]`)
		got := Creators(r.state)
		if len(got) != 2 || got[0] != alice || got[1] != zed {
			t.Fatalf("Creators = %v", got)
		}
		if UserPowerLevel(r.state, zed) != InfinitePowerLevel {
			t.Fatal("additional creator is not infinitely powerful")
		}
	})
	t.Run("v10 creator from content", func(t *testing.T) {
		r := newBareRoom(t, "10", "")
		r.create.content = []byte(`{"creator":"` + zed + `"}`)
		if got := Creators(r.state); len(got) != 1 || got[0] != zed {
			t.Fatalf("Creators = %v", got)
		}
		if UserPowerLevel(r.state, zed) != 100 || UserPowerLevel(r.state, alice) != 0 {
			t.Fatal("v10 default levels do not follow content.creator")
		}
	})
	t.Run("join rules", func(t *testing.T) {
		r := newRoom(t, "10")
		r.set(`{"type":"m.room.join_rules","state_key":"","sender":"` + alice + `","content":{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":"!space:a.test"},{"type":"m.room_membership"},{"type":"m.other"},5]}}`)
		jr := LoadJoinRules(r.state)
		if jr.Rule != "restricted" || len(jr.Allow) != 2 || jr.Allow[0].RoomID != "!space:a.test" || jr.Allow[1].Type != "m.other" {
			t.Fatalf("LoadJoinRules = %+v", jr)
		}
	})
}
