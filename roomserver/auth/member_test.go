package auth

import (
	"testing"
)

func member(sender, target, content string) string {
	return `{"type":"m.room.member","sender":"` + sender + `","state_key":"` + target + `","content":` + content + `}`
}

func joinRule(rule string) func(r *room) {
	return func(r *room) {
		r.set(`{"type":"m.room.join_rules","state_key":"","sender":"` + alice + `","content":{"join_rule":"` + rule + `"}}`)
	}
}

func powerLevels(content string) func(r *room) {
	return func(r *room) {
		r.set(`{"type":"m.room.power_levels","state_key":"","sender":"` + alice + `","content":` + content + `}`)
	}
}

func both(fs ...func(r *room)) func(r *room) {
	return func(r *room) {
		for _, f := range fs {
			f(r)
		}
	}
}

const (
	joinC   = `{"membership":"join"}`
	inviteC = `{"membership":"invite"}`
	leaveC  = `{"membership":"leave"}`
	banC    = `{"membership":"ban"}`
	knockC  = `{"membership":"knock"}`
	viaBob  = `{"membership":"join","join_authorised_via_users_server":"` + bob + `"}`
)

// Rule numbers below are per text version (see ruleFor): the member rule is 5 in the v1, v3 and
// v12 texts and 4 in v6–v11; its sub-rules shift by one from v8.
func TestMembership(t *testing.T) {
	runCheckCases(t, []checkCase{
		{name: "no membership", event: member(carol, carol, `{}`), rule: "1:5.1 6:4.1 12:5.1"},
		{name: "no state_key", event: `{"type":"m.room.member","sender":"` + carol + `","content":` + joinC + `}`, rule: "1:5.1 6:4.1 12:5.1"},
		{name: "unknown membership", event: member(carol, carol, `{"membership":"foo"}`), rule: "1:5.6 6:4.6 7:4.7 8:4.8 12:5.8"},
		{name: "non-string membership", event: member(carol, carol, `{"membership":1}`), rule: "1:5.6 6:4.6 7:4.7 8:4.8 12:5.8"},

		// join
		{name: "join public", event: member(dave, dave, joinC)},
		{name: "join for another user", event: member(bob, dave, joinC), rule: "1:5.2.2 6:4.2.2 8:4.3.2 12:5.3.2"},
		{name: "join while banned", event: member(eve, eve, joinC), rule: "1:5.2.3 6:4.2.3 8:4.3.3 12:5.3.3"},
		{name: "join invite-only uninvited", setup: joinRule("invite"), event: member(dave, dave, joinC), rule: "1:5.2.6 6:4.2.6 8:4.3.7 12:5.3.7"},
		{name: "join invite-only invited", setup: joinRule("invite"), event: member(ivan, ivan, joinC)},
		{name: "join invite-only profile change", setup: joinRule("invite"), event: member(carol, carol, `{"membership":"join","displayname":"C"}`)},
		{name: "join without join rules", setup: func(r *room) { r.del("m.room.join_rules", "") }, event: member(dave, dave, joinC), rule: "1:5.2.6 6:4.2.6 8:4.3.7 12:5.3.7"},
		{name: "join without join rules invited", setup: func(r *room) { r.del("m.room.join_rules", "") }, event: member(ivan, ivan, joinC)},
		{name: "join private", setup: joinRule("private"), event: member(dave, dave, joinC), rule: "1:5.2.6 6:4.2.6 8:4.3.7 12:5.3.7"},
		{name: "join knock rule invited", setup: joinRule("knock"), event: member(ivan, ivan, joinC), rule: "1:5.2.6 6:4.2.6 7:"},
		{name: "join knock rule uninvited", setup: joinRule("knock"), event: member(dave, dave, joinC), rule: "1:5.2.6 6:4.2.6 8:4.3.7 12:5.3.7"},
		{name: "join restricted via member", setup: joinRule("restricted"), event: member(dave, dave, viaBob), rule: "1:5.2.6 6:4.2.6 8:"},
		{name: "join restricted invited", setup: joinRule("restricted"), event: member(ivan, ivan, joinC), rule: "1:5.2.6 6:4.2.6 8:"},
		{name: "join restricted no via", setup: joinRule("restricted"), event: member(dave, dave, joinC), rule: "1:5.2.6 6:4.2.6 8:4.3.5.2 12:5.3.5.2"},
		{name: "join restricted via non-member", setup: joinRule("restricted"), event: member(dave, dave, `{"membership":"join","join_authorised_via_users_server":"`+ivan+`"}`), rule: "1:5.2.6 6:4.2.6 8:4.3.5.2 12:5.3.5.2"},
		{name: "join restricted via user below invite level", setup: both(joinRule("restricted"), powerLevels(`{"users":{"`+bob+`":50},"invite":60}`)), event: member(dave, dave, viaBob), rule: "1:5.2.6 6:4.2.6 8:4.3.5.2 12:5.3.5.2"},
		{name: "join restricted banned", setup: joinRule("restricted"), event: member(eve, eve, viaBob), rule: "1:5.2.3 6:4.2.3 8:4.3.3 12:5.3.3"},
		{name: "join knock_restricted via member", setup: joinRule("knock_restricted"), event: member(dave, dave, viaBob), rule: "1:5.2.6 6:4.2.6 8:4.3.7 10: 12:"},
		{name: "join knock_restricted no via", setup: joinRule("knock_restricted"), event: member(dave, dave, joinC), rule: "1:5.2.6 6:4.2.6 8:4.3.7 10:4.3.5.2 12:5.3.5.2"},
		{name: "join via is not a user ID", event: member(dave, dave, `{"membership":"join","join_authorised_via_users_server":"bob"}`), rule: "1: 8:4.2.1 12:5.2.1"},
		{name: "leave with via that is not a user ID", event: member(carol, carol, `{"membership":"leave","join_authorised_via_users_server":5}`), rule: "1: 8:4.2.1 12:5.2.1"},

		// invite
		{name: "invite", event: member(bob, dave, inviteC)},
		{name: "invite by non-member", event: member(dave, ivan, inviteC), rule: "1:5.3.2 6:4.3.2 8:4.4.2 12:5.4.2"},
		{name: "invite by invited user", event: member(ivan, dave, inviteC), rule: "1:5.3.2 6:4.3.2 8:4.4.2 12:5.4.2"},
		{name: "invite joined user", event: member(bob, carol, inviteC), rule: "1:5.3.3 6:4.3.3 8:4.4.3 12:5.4.3"},
		{name: "invite banned user", event: member(bob, eve, inviteC), rule: "1:5.3.3 6:4.3.3 8:4.4.3 12:5.4.3"},
		{name: "invite below invite level", setup: powerLevels(`{"users":{{alice100,}"` + bob + `":50},"invite":60}`), event: member(bob, dave, inviteC), rule: "1:5.3.5 6:4.3.5 8:4.4.5 12:5.4.5"},
		{name: "invite at invite level", setup: powerLevels(`{"users":{{alice100,}"` + bob + `":50},"invite":50}`), event: member(bob, dave, inviteC)},
		{name: "invite knocking user", event: member(bob, kim, inviteC)},
		{name: "re-invite", event: member(bob, ivan, inviteC)},

		// leave
		{name: "leave", event: member(carol, carol, leaveC)},
		{name: "reject invite", event: member(ivan, ivan, leaveC)},
		{name: "retract knock", event: member(kim, kim, leaveC), rule: "1:5.4.1 6:4.4.1 7:"},
		{name: "leave without membership", event: member(dave, dave, leaveC), rule: "1:5.4.1 6:4.4.1 8:4.5.1 12:5.5.1"},
		{name: "leave while banned", event: member(eve, eve, leaveC), rule: "1:5.4.1 6:4.4.1 8:4.5.1 12:5.5.1"},
		{name: "kick", event: member(bob, carol, leaveC)},
		{name: "revoke invite", event: member(bob, ivan, leaveC)},
		{name: "kick by non-member", event: member(dave, carol, leaveC), rule: "1:5.4.2 6:4.4.2 8:4.5.2 12:5.5.2"},
		{name: "kick by low user", event: member(carol, bob, leaveC), rule: "1:5.4.5 6:4.4.5 8:4.5.5 12:5.5.5"},
		{name: "kick higher user", event: member(bob, alice, leaveC), rule: "1:5.4.5 6:4.4.5 8:4.5.5 12:5.5.5"},
		{name: "kick equal user", setup: powerLevels(`{"users":{{alice100,}"` + bob + `":50,"` + carol + `":50}}`), event: member(bob, carol, leaveC), rule: "1:5.4.5 6:4.4.5 8:4.5.5 12:5.5.5"},
		{name: "kick below kick level", setup: powerLevels(`{"users":{{alice100,}"` + bob + `":50},"kick":60}`), event: member(bob, carol, leaveC), rule: "1:5.4.5 6:4.4.5 8:4.5.5 12:5.5.5"},
		{name: "unban", event: member(alice, eve, leaveC)},
		{name: "unban below ban level", setup: powerLevels(`{"users":{{alice100,}"` + bob + `":50},"ban":60}`), event: member(bob, eve, leaveC), rule: "1:5.4.3 6:4.4.3 8:4.5.3 12:5.5.3"},
		{name: "unban below kick level", setup: powerLevels(`{"users":{{alice100,}"` + bob + `":50},"kick":60}`), event: member(bob, eve, leaveC), rule: "1:5.4.5 6:4.4.5 8:4.5.5 12:5.5.5"},

		// ban
		{name: "ban", event: member(bob, carol, banC)},
		{name: "ban outsider", event: member(bob, dave, banC)},
		{name: "ban by non-member", event: member(dave, carol, banC), rule: "1:5.5.1 6:4.5.1 8:4.6.1 12:5.6.1"},
		{name: "ban by low user", event: member(carol, dave, banC), rule: "1:5.5.3 6:4.5.3 8:4.6.3 12:5.6.3"},
		{name: "ban higher user", event: member(bob, alice, banC), rule: "1:5.5.3 6:4.5.3 8:4.6.3 12:5.6.3"},
		{name: "ban below ban level", setup: powerLevels(`{"users":{{alice100,}"` + bob + `":50},"ban":51}`), event: member(bob, carol, banC), rule: "1:5.5.3 6:4.5.3 8:4.6.3 12:5.6.3"},
		{name: "ban the moderator", event: member(alice, bob, banC)},

		// knock (v7+), knock_restricted (v10+)
		{name: "knock", setup: joinRule("knock"), event: member(dave, dave, knockC), rule: "1:5.6 6:4.6 7:"},
		{name: "re-knock", setup: joinRule("knock"), event: member(kim, kim, knockC), rule: "1:5.6 6:4.6 7:"},
		{name: "knock after leaving", setup: both(joinRule("knock"), func(r *room) { r.set(member(dave, dave, leaveC)) }), event: member(dave, dave, knockC), rule: "1:5.6 6:4.6 7:"},
		{name: "knock public room", event: member(dave, dave, knockC), rule: "1:5.6 6:4.6 7:4.6.1 8:4.7.1 12:5.7.1"},
		{name: "knock invite-only room", setup: joinRule("invite"), event: member(dave, dave, knockC), rule: "1:5.6 6:4.6 7:4.6.1 8:4.7.1 12:5.7.1"},
		{name: "knock knock_restricted", setup: joinRule("knock_restricted"), event: member(dave, dave, knockC), rule: "1:5.6 6:4.6 7:4.6.1 8:4.7.1 10:"},
		{name: "knock restricted", setup: joinRule("restricted"), event: member(dave, dave, knockC), rule: "1:5.6 6:4.6 7:4.6.1 8:4.7.1 12:5.7.1"},
		{name: "knock for another", setup: joinRule("knock"), event: member(bob, dave, knockC), rule: "1:5.6 6:4.6 7:4.6.2 8:4.7.2 12:5.7.2"},
		{name: "knock while joined", setup: joinRule("knock"), event: member(carol, carol, knockC), rule: "1:5.6 6:4.6 7:4.6.4 8:4.7.4 12:5.7.4"},
		{name: "knock while banned", setup: joinRule("knock"), event: member(eve, eve, knockC), rule: "1:5.6 6:4.6 7:4.6.4 8:4.7.4 12:5.7.4"},
		{name: "knock while invited", setup: joinRule("knock"), event: member(ivan, ivan, knockC), rule: "1:5.6 6:4.6 7:4.6.4 8:4.7.4 12:5.7.4"},

		// the federation flag (rule 3, 4 in v12) applies to membership too
		{name: "join unfederated room from another server", setup: func(r *room) { r.setCreate(`"m.federate":false`) }, event: member(dave, dave, joinC), rule: "1:3 12:4"},
	})
}

// TestCreatorJoin covers the first join after the create event, whose "creator" is
// content.creator up to v10 and the create event's sender from v11.
func TestCreatorJoin(t *testing.T) {
	for _, v := range allVersions {
		t.Run("v"+string(v), func(t *testing.T) {
			// alice sends the create event; in v1–v10 its content names zed as the creator.
			r := newBareRoom(t, v, "")
			if vnum(v) <= 10 {
				r.create.content = []byte(`{"creator":"` + zed + `"}`)
			}
			first := func(user string) error {
				return Check(r.ev(`{"type":"m.room.member","sender":"`+user+`","state_key":"`+user+`","prev_events":["{create}"],"content":{"membership":"join"}}`), r.state)
			}
			creator, other := alice, zed
			if vnum(v) <= 10 {
				creator, other = zed, alice
			}
			if err := first(creator); err != nil {
				t.Fatalf("creator's first join: %v", err)
			}
			// Anyone else ends at the join rule: none set means invite-only.
			expect(t, v, first(other), "1:5.2.6 6:4.2.6 8:4.3.7 12:5.3.7")
			// The rule needs the create event to be the only prev event.
			expect(t, v, Check(r.ev(`{"type":"m.room.member","sender":"`+creator+`","state_key":"`+creator+`","prev_events":["{create}","$other:a.test"],"content":{"membership":"join"}}`), r.state), "1:5.2.6 6:4.2.6 8:4.3.7 12:5.3.7")
			// Sender and state_key need not match for this rule (it comes before sub-rule 2).
			if err := Check(r.ev(`{"type":"m.room.member","sender":"`+other+`","state_key":"`+creator+`","prev_events":["{create}"],"content":{"membership":"join"}}`), r.state); err != nil {
				t.Fatalf("creator's join sent by another: %v", err)
			}
		})
	}
	t.Run("v12 additional creator", func(t *testing.T) {
		r := newBareRoom(t, "12", `"additional_creators":["`+zed+`"]`)
		e := r.ev(`{"type":"m.room.member","sender":"` + zed + `","state_key":"` + zed + `","prev_events":["{create}"],"content":{"membership":"join"}}`)
		expect(t, "12", Check(e, r.state), "12:5.3.7")
	})
}

// TestRedactedRestrictedJoin shows why v9 exists (RestrictedJoinsFix): v8's redaction algorithm
// strips join_authorised_via_users_server, so a redacted restricted join no longer passes the
// rules; from v9 redaction keeps the key and the redacted join passes as before.
func TestRedactedRestrictedJoin(t *testing.T) {
	for _, v := range allVersions {
		if !v.RestrictedJoins() {
			continue
		}
		t.Run("v"+string(v), func(t *testing.T) {
			r := newRoom(t, v)
			joinRule("restricted")(r)
			redacted, want := joinC, "8:4.3.5.2" // what v8 redaction leaves of viaBob
			if v.RestrictedJoinsFix() {
				redacted, want = viaBob, ""
			}
			expect(t, v, Check(r.ev(member(dave, dave, redacted)), r.state), want)
		})
	}
}

// TestV12Creators covers the creators' infinite power level in membership changes.
func TestV12Creators(t *testing.T) {
	r := newRoom(t, "12")
	r.setCreate(`"additional_creators":["` + zed + `"]`)
	r.set(member(zed, zed, joinC))
	// A creator cannot kick or ban another creator: neither level is below the other.
	expect(t, "12", Check(r.ev(member(alice, zed, banC)), r.state), "12:5.6.3")
	expect(t, "12", Check(r.ev(member(zed, alice, leaveC)), r.state), "12:5.5.5")
	// But a creator outranks any level written down.
	r.set(plEvent(alice, `{"users":{"`+bob+`":9007199254740991}}`))
	expect(t, "12", Check(r.ev(member(zed, bob, banC)), r.state), "")
	expect(t, "12", Check(r.ev(member(bob, zed, banC)), r.state), "12:5.6.3")
	// Without power levels creators still have infinite power and everyone else 0.
	r.del("m.room.power_levels", "")
	expect(t, "12", Check(r.ev(stateEv("m.room.tombstone", zed, "")), r.state), "")
	expect(t, "12", Check(r.ev(stateEv("m.room.topic", bob, "")), r.state), "12:8")
}
