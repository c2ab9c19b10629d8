package auth

import (
	"slices"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"
)

// TestCreate covers rule 1 of every text.
func TestCreate(t *testing.T) {
	type createCase struct {
		name string
		only func(id.RoomVersion) bool
		// the event; {room} is a room ID on alice's server ("!room:a.test"), {roomid} the room_id
		// field the version expects (none in v12), {creator} a creator field where required
		event string
		rule  string
	}
	cases := []createCase{
		{name: "valid", event: `{"type":"m.room.create","state_key":"",{roomid}"sender":"` + alice + `","content":{{creator}"room_version":"{v}"}}`},
		{name: "any recognised room_version", event: `{"type":"m.room.create","state_key":"",{roomid}"sender":"` + alice + `","content":{{creator}"room_version":"1"}}`},
		{name: "no room_version", event: `{"type":"m.room.create","state_key":"",{roomid}"sender":"` + alice + `","content":{{creator}"x":1}}`},
		{name: "prev_events", event: `{"type":"m.room.create","state_key":"",{roomid}"sender":"` + alice + `","prev_events":["$x:a.test"],"content":{{creator}"room_version":"{v}"}}`, rule: "1.1"},
		{name: "room on another server", only: versionsUpTo(11), event: `{"type":"m.room.create","state_key":"","room_id":"!room:b.test","sender":"` + alice + `","content":{{creator}"room_version":"{v}"}}`, rule: "1.2"},
		{name: "room ID without server", only: versionsUpTo(11), event: `{"type":"m.room.create","state_key":"","room_id":"!room","sender":"` + alice + `","content":{{creator}"room_version":"{v}"}}`, rule: "1.2"},
		{name: "room_id present", only: versionsFrom(12), event: `{"type":"m.room.create","state_key":"","room_id":"!room:a.test","sender":"` + alice + `","content":{"room_version":"12"}}`, rule: "1.2"},
		{name: "room_id derived from the event ID", only: versionsFrom(12), event: `{"event_id":"$abc","type":"m.room.create","state_key":"","room_id":"!abc","sender":"` + alice + `","content":{"room_version":"12"}}`},
		{name: "unknown room_version", event: `{"type":"m.room.create","state_key":"",{roomid}"sender":"` + alice + `","content":{{creator}"room_version":"13"}}`, rule: "1.3"},
		{name: "empty room_version", event: `{"type":"m.room.create","state_key":"",{roomid}"sender":"` + alice + `","content":{{creator}"room_version":""}}`, rule: "1.3"},
		{name: "numeric room_version", event: `{"type":"m.room.create","state_key":"",{roomid}"sender":"` + alice + `","content":{{creator}"room_version":1}}`, rule: "1.3"},
		{name: "no creator", event: `{"type":"m.room.create","state_key":"",{roomid}"sender":"` + alice + `","content":{"room_version":"{v}"}}`, rule: "1:1.4 11:"},
		{name: "creator with other case", only: versionsUpTo(10), event: `{"type":"m.room.create","state_key":"",{roomid}"sender":"` + alice + `","content":{"Creator":"` + alice + `"}}`, rule: "1.4"},
		{name: "additional_creators valid", event: `{"type":"m.room.create","state_key":"",{roomid}"sender":"` + alice + `","content":{{creator}"additional_creators":["` + zed + `","@Old Style:z.test"]}}`},
		{name: "additional_creators not an array", event: `{"type":"m.room.create","state_key":"",{roomid}"sender":"` + alice + `","content":{{creator}"additional_creators":"` + zed + `"}}`, rule: "1: 12:1.4"},
		{name: "additional_creators null", event: `{"type":"m.room.create","state_key":"",{roomid}"sender":"` + alice + `","content":{{creator}"additional_creators":null}}`, rule: "1: 12:1.4"},
		{name: "additional_creators not user IDs", event: `{"type":"m.room.create","state_key":"",{roomid}"sender":"` + alice + `","content":{{creator}"additional_creators":["zed"]}}`, rule: "1: 12:1.4"},
		{name: "additional_creators bad server", event: `{"type":"m.room.create","state_key":"",{roomid}"sender":"` + alice + `","content":{{creator}"additional_creators":["@zed:"]}}`, rule: "1: 12:1.4"},
		{name: "additional_creators with a number", event: `{"type":"m.room.create","state_key":"",{roomid}"sender":"` + alice + `","content":{{creator}"additional_creators":[1]}}`, rule: "1: 12:1.4"},
		{name: "additional_creators empty", event: `{"type":"m.room.create","state_key":"",{roomid}"sender":"` + alice + `","content":{{creator}"additional_creators":[]}}`},
	}
	for _, v := range allVersions {
		for _, c := range cases {
			if c.only != nil && !c.only(v) {
				continue
			}
			t.Run("v"+string(v)+"/"+c.name, func(t *testing.T) {
				roomID, creator := `"room_id":"!room:a.test",`, `"creator":"`+alice+`",`
				if v.RoomIDIsCreateEventID() {
					roomID = ""
				}
				if !v.CreatorInContent() {
					creator = ""
				}
				js := strings.NewReplacer("{roomid}", roomID, "{creator}", creator, "{v}", string(v)).Replace(c.event)
				e := parseEvent(t, v, js)
				if e.id == "" {
					e.id = "$create:a.test"
				}
				// The state is irrelevant to the create event; give it none.
				expect(t, v, Check(e, StateMap{}), c.rule)
				if err := CheckAuthEvents(e, nil); err != nil {
					t.Fatalf("CheckAuthEvents of a create event: %v", err)
				}
				if s := Selection(e); len(s) != 0 {
					t.Fatalf("Selection of a create event: %v", s)
				}
			})
		}
	}
}

func reversed(evs []Event) []Event {
	out := slices.Clone(evs)
	slices.Reverse(out)
	return out
}

// TestAuthEvents covers the rules on an event's own auth_events (rule 2, 3 in v12).
func TestAuthEvents(t *testing.T) {
	for _, v := range allVersions {
		t.Run("v"+string(v), func(t *testing.T) {
			r := newRoom(t, v)
			get := func(typ, sk string) Event { return r.state.Get(typ, sk) }
			create, pl, jr := get("m.room.create", ""), get("m.room.power_levels", ""), get("m.room.join_rules", "")
			carolM, daveInvite := get("m.room.member", carol), r.set(member(bob, dave, inviteC))
			withCreate := func(evs ...Event) []Event {
				if v.RoomIDIsCreateEventID() {
					return evs
				}
				return append([]Event{create}, evs...)
			}
			msg := r.ev(message(carol))
			top := "2"
			if v.RoomIDIsCreateEventID() {
				top = "3"
			}
			check := func(name string, ev Event, auth []Event, sub string) {
				t.Helper()
				want := ""
				if sub != "" {
					want = top + "." + sub
				}
				t.Run(name, func(t *testing.T) { expect(t, v, CheckAuthEvents(ev, auth), want) })
			}
			check("message", msg, withCreate(pl, carolM), "")
			check("message, no power levels", msg, withCreate(carolM), "")
			check("message, reversed order", msg, reversed(withCreate(pl, carolM)), "")
			check("duplicate", msg, withCreate(pl, carolM, r.ev(member(carol, carol, joinC))), "1")
			dupPL := r.ev(plEvent(alice, `{}`))
			check("duplicate power levels", msg, withCreate(pl, dupPL), "1")
			check("not selected", msg, withCreate(pl, carolM, jr), "2")
			check("another member", msg, withCreate(pl, carolM, get("m.room.member", bob)), "2")
			check("message event among auth events", msg, withCreate(pl, r.ev(message(carol))), "2")
			if v.RoomIDIsCreateEventID() {
				check("create among auth events", msg, []Event{create, pl, carolM}, "2")
			} else {
				check("no create", msg, []Event{pl, carolM}, "4")
			}
			other := r.ev(`{"type":"m.room.power_levels","state_key":"","room_id":"!other:a.test","sender":"` + alice + `","content":{}}`)
			check("other room", msg, withCreate(other, carolM), "5")

			// membership events select more
			join := r.ev(member(dave, dave, joinC))
			check("join", join, withCreate(pl, jr, daveInvite), "")
			inviteTPI := r.ev(member(bob, dave, `{"membership":"invite","third_party_invite":{"signed":{"mxid":"`+dave+`","token":"tok"}}}`))
			tpi := r.ev(stateEv("m.room.third_party_invite", bob, "tok"))
			check("third-party invite", inviteTPI, withCreate(pl, get("m.room.member", bob), jr, tpi), "")
			check("third-party invite of another token", inviteTPI, withCreate(pl, r.ev(stateEv("m.room.third_party_invite", bob, "other"))), "2")
			check("third-party invite event for plain invite", r.ev(member(bob, dave, inviteC)), withCreate(tpi), "2")
			leave := r.ev(member(carol, carol, leaveC))
			check("join rules for leave", leave, withCreate(carolM, jr), "2")
			restricted := r.ev(member(dave, dave, viaBob))
			restrictedSpec := "2"
			if v.RestrictedJoins() {
				restrictedSpec = ""
			}
			check("restricted join", restricted, withCreate(pl, jr, get("m.room.member", bob)), restrictedSpec)
		})
	}
}

// TestSelection checks the auth events selection of the server-server API.
func TestSelection(t *testing.T) {
	for _, v := range allVersions {
		t.Run("v"+string(v), func(t *testing.T) {
			r := newRoom(t, v)
			var head []StateKey
			if !v.RoomIDIsCreateEventID() {
				head = []StateKey{{"m.room.create", ""}}
			}
			head = append(head, StateKey{"m.room.power_levels", ""})
			keys := func(ks ...StateKey) []StateKey { return append(slices.Clone(head), ks...) }
			m := func(u string) StateKey { return StateKey{"m.room.member", u} }
			jr := StateKey{"m.room.join_rules", ""}
			restricted := keys(m(dave), jr)
			if v.RestrictedJoins() {
				restricted = append(restricted, m(bob))
			}
			for name, c := range map[string]struct {
				event string
				want  []StateKey
			}{
				"message":            {message(carol), keys(m(carol))},
				"state":              {stateEv("m.room.topic", carol, ""), keys(m(carol))},
				"join":               {member(dave, dave, joinC), keys(m(dave), jr)},
				"invite":             {member(bob, dave, inviteC), keys(m(bob), m(dave), jr)},
				"knock":              {member(dave, dave, knockC), keys(m(dave), jr)},
				"leave":              {member(carol, carol, leaveC), keys(m(carol))},
				"kick":               {member(bob, carol, leaveC), keys(m(bob), m(carol))},
				"ban":                {member(bob, carol, banC), keys(m(bob), m(carol))},
				"third-party invite": {member(bob, dave, `{"membership":"invite","third_party_invite":{"signed":{"token":"tok"}}}`), keys(m(bob), m(dave), jr, StateKey{"m.room.third_party_invite", "tok"})},
				"restricted join":    {member(dave, dave, viaBob), restricted},
				"via on a leave":     {member(dave, dave, `{"membership":"leave","join_authorised_via_users_server":"`+bob+`"}`), keys(m(dave))},
				"member no key":      {`{"type":"m.room.member","sender":"` + carol + `","content":{}}`, keys(m(carol))},
			} {
				if got := Selection(r.ev(c.event)); !slices.Equal(got, c.want) {
					t.Errorf("%s: got %v, want %v", name, got, c.want)
				}
			}
		})
	}
}

func TestRequiredSigners(t *testing.T) {
	for _, v := range allVersions {
		r := newRoom(t, v)
		got := RequiredSigners(r.ev(member(dave, dave, viaBob)))
		if v.RestrictedJoins() != slices.Equal(got, []string{"b.test"}) || (!v.RestrictedJoins() && got != nil) {
			t.Errorf("v%s: RequiredSigners = %v", v, got)
		}
		if got := RequiredSigners(r.ev(message(carol))); got != nil {
			t.Errorf("v%s: RequiredSigners of a message = %v", v, got)
		}
	}
}
