package userapi

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"maunium.net/go/mautrix/id"
)

const pushAlice id.UserID = "@alice:test.local"

// pushEvent flattens an event given as JSON, failing the test if it cannot.
func pushEvent(t testing.TB, eventJSON string) *PushEvent {
	t.Helper()
	ev, err := NewPushEvent([]byte(eventJSON))
	if err != nil {
		t.Fatalf("NewPushEvent(%s): %v", eventJSON, err)
	}
	return ev
}

// withContent is an m.room.message event from bob in !room:test.local with the given content.
func withContent(content string) string {
	return `{"type": "m.room.message", "sender": "@bob:test.local", "room_id": "!room:test.local",
		"event_id": "$e", "origin_server_ts": 1, "content": ` + content + `}`
}

// holdsAlone evaluates one condition as the only condition of an override rule.
func holdsAlone(ev *PushEvent, c PushCondition, pc *PushContext) bool {
	rs := PushRuleset{Override: []PushRule{{RuleID: "r", Enabled: true, Conditions: []PushCondition{c}}}}
	return rs.Evaluate(ev, pc) != nil
}

func TestEventMatch(t *testing.T) {
	match := func(key, pattern string) PushCondition {
		return PushCondition{Kind: CondEventMatch, Key: key, Pattern: pattern}
	}
	topic := func(v string) string {
		return `{"type": "m.room.topic", "state_key": "", "sender": "@example:example.org",
			"room_id": "!636q39766251:example.com", "event_id": "$143273582443PhrSn:example.org",
			"content": {"topic": ` + v + `}}`
	}
	for _, tc := range []struct {
		name  string
		event string
		cond  PushCondition
		want  bool
	}{
		// The spec's example of event_match: content.topic against lunc?*.
		{"topic Lunch plans", topic(`"Lunch plans"`), match("content.topic", "lunc?*"), true},
		{"topic LUNCH", topic(`"LUNCH"`), match("content.topic", "lunc?*"), true},
		{"topic leading space", topic(`" lunch"`), match("content.topic", "lunc?*"), false},
		{"topic lunc: ? needs a character", topic(`"lunc"`), match("content.topic", "lunc?*"), false},
		{"topic null", topic(`null`), match("content.topic", "lunc?*"), false},
		{"topic null against *", topic(`null`), match("content.topic", "*"), false},
		{"topic a number against *", topic(`12`), match("content.topic", "*"), false},
		{"topic an object against *", topic(`{"a": "b"}`), match("content.topic", "*"), false},
		{"topic an array against *", topic(`["lunch"]`), match("content.topic", "*"), false},
		{"absent against *", topic(`"x"`), match("content.nothing", "*"), false},
		{"empty against *", topic(`""`), match("content.topic", "*"), true},
		{"empty against empty", topic(`""`), match("content.topic", ""), true},
		{"whole value only", topic(`"Lunch plans"`), match("content.topic", "lunch"), false},
		{"? is one character, not a byte", topic(`"café"`), match("content.topic", "caf?"), true},
		{"? matches a non-Latin character", topic(`"日本"`), match("content.topic", "?本"), true},
		{"case folding beyond ASCII", topic(`"ÄPFEL"`), match("content.topic", "äpfel"), true},
		{"case folding with wildcards", topic(`"Straße ÄPFEL"`), match("content.topic", "*äp?el"), true},
		{"several stars", topic(`"a-b-c-d"`), match("content.topic", "a*b*d"), true},
		{"several stars, out of order", topic(`"a-b-c-d"`), match("content.topic", "a*d*b"), false},
		{"a star's segment must fit after the last", topic(`"abcab"`), match("content.topic", "ab*cab"), true},
		{"segments do not overlap", topic(`"abab"`), match("content.topic", "aba*bab"), false},
		{"top-level type", topic(`"x"`), match("type", "m.room.topic"), true},
		{"type is case-insensitive", topic(`"x"`), match("type", "M.ROOM.TOPIC"), true},
		{"state_key empty", topic(`"x"`), match("state_key", ""), true},
		{"state_key absent from a message", withContent(`{"body": "x"}`), match("state_key", ""), false},
		{"state_key absent from a message, *", withContent(`{"body": "x"}`), match("state_key", "*"), false},

		// The spec's example of content.body: ex*ple at word boundaries.
		{"body An example event.", withContent(`{"body": "An example event."}`), match("content.body", "ex*ple"), true},
		{"body exple", withContent(`{"body": "exple"}`), match("content.body", "ex*ple"), true},
		{"body spans words and -", withContent(`{"body": "An exciting triple-whammy"}`), match("content.body", "ex*ple"), true},
		{"body not inside a word", withContent(`{"body": "complexample"}`), match("content.body", "ex*ple"), false},
		{"body must end at a boundary", withContent(`{"body": "examples"}`), match("content.body", "ex*ple"), false},
		{"body word", withContent(`{"body": "Shall we have lunch?"}`), match("content.body", "lunch"), true},
		{"body word, case-insensitive", withContent(`{"body": "LUNCH!"}`), match("content.body", "lunch"), true},
		{"body not a part of a word", withContent(`{"body": "cheesecake"}`), match("content.body", "cake"), false},
		{"body digits and _ are word characters", withContent(`{"body": "cake_2 cake2"}`), match("content.body", "cake"), false},
		{"body a non-ASCII letter is a boundary", withContent(`{"body": "écakeé"}`), match("content.body", "cake"), true},
		{"body a pattern starting with a boundary character", withContent(`{"body": "hi @room!"}`), match("content.body", "@room"), true},
		{"body ? at a boundary", withContent(`{"body": "a tea b"}`), match("content.body", "t?a"), true},
		{"body * alone", withContent(`{"body": "anything"}`), match("content.body", "*"), true},
		{"body not a string", withContent(`{"body": 5}`), match("content.body", "*"), false},
		{"body absent", withContent(`{}`), match("content.body", "*"), false},
		{"body escaped key is the same key", withContent(`{"body": "lunch"}`), match(`content.b\ody`, "lunch"), false},
		// Only content.body is matched by words; other keys need the whole value.
		{"other keys match whole values", withContent(`{"body": "x", "formatted_body": "let us have lunch"}`),
			match("content.formatted_body", "lunch"), false},

		// Dot-separated property paths and their escapes.
		{"escaped dot", withContent(`{"m.relates_to": {"rel_type": "m.thread"}}`), match(`content.m\.relates_to.rel_type`, "m.thread"), true},
		{"unescaped dot is a level", withContent(`{"m.relates_to": {"rel_type": "m.thread"}}`), match(`content.m.relates_to.rel_type`, "m.thread"), false},
		{"unescaped dot finds nested objects", withContent(`{"m": {"relates_to": {"rel_type": "m.thread"}}}`), match(`content.m.relates_to.rel_type`, "m.thread"), true},
		{"escaped backslash", withContent(`{"m\\foo": "x"}`), match(`content.m\\foo`, "x"), true},
		{"other escapes are a literal backslash", withContent(`{"m\\foo": "x"}`), match(`content.m\foo`, "x"), true},
		{"trailing backslash", withContent(`{"m\\": "x"}`), match(`content.m\`, "x"), true},
		{"an escaped backslash then a dot", withContent(`{"a\\": {"b": "x"}}`), match(`content.a\\.b`, "x"), true},
		{"empty key", withContent(`{"": {"a": "x"}}`), match(`content..a`, "x"), true},
		{"a path into an array does not exist", withContent(`{"a": [{"b": "x"}]}`), match(`content.a.b`, "x"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := holdsAlone(pushEvent(t, tc.event), tc.cond, nil); got != tc.want {
				t.Errorf("%s %q against %s: %v, want %v", tc.cond.Key, tc.cond.Pattern, tc.event, got, tc.want)
			}
		})
	}
}

func TestEventPropertyIs(t *testing.T) {
	create := func(federate string) string {
		return `{"type": "m.room.create", "state_key": "", "sender": "@example:example.org",
			"room_id": "!636q39766251:example.com", "event_id": "$143273582443PhrSn:example.org",
			"content": {"creator": "@example:example.org", "m.federate": ` + federate + `,
				"predecessor": {"event_id": "$something:example.org", "room_id": "!oldroom:example.org"},
				"room_version": "1"}}`
	}
	is := func(key, value string) PushCondition {
		return PushCondition{Kind: CondEventPropertyIs, Key: key, Value: json.RawMessage(value)}
	}
	for _, tc := range []struct {
		name  string
		event string
		cond  PushCondition
		want  bool
	}{
		// The spec's example: content.m\.federate is true.
		{"m.federate true", create("true"), is(`content.m\.federate`, "true"), true},
		{`m.federate "true"`, create(`"true"`), is(`content.m\.federate`, "true"), false},
		{"m.federate 1", create("1"), is(`content.m\.federate`, "true"), false},
		{"m.federate false", create("false"), is(`content.m\.federate`, "true"), false},
		{"false is false", create("false"), is(`content.m\.federate`, "false"), true},
		{"null is null", create("null"), is(`content.m\.federate`, "null"), true},
		{"null is not false", create("null"), is(`content.m\.federate`, "false"), false},
		{"absent is not null", create("true"), is(`content.nothing`, "null"), false},
		{"integer", create("42"), is(`content.m\.federate`, "42"), true},
		{"negative integer", create("-42"), is(`content.m\.federate`, "-42"), true},
		{"integer is not its string", create("42"), is(`content.m\.federate`, `"42"`), false},
		{"largest safe integer", create("9007199254740991"), is(`content.m\.federate`, "9007199254740991"), true},
		{"beyond the safe integers", create("9007199254740992"), is(`content.m\.federate`, "9007199254740992"), false},
		{"a fraction is not an integer", create("1.0"), is(`content.m\.federate`, "1"), false},
		{"exponent", create("1e2"), is(`content.m\.federate`, "100"), false},
		{"string", create("true"), is(`content.room_version`, `"1"`), true},
		{"string is exact", create("true"), is(`content.room_version`, `"1 "`), false},
		{"string is case-sensitive", create("true"), is(`sender`, `"@EXAMPLE:example.org"`), false},
		{"string with escapes", create("true"), is(`content.room_version`, `"\u0031"`), true},
		{"nested", create("true"), is(`content.predecessor.room_id`, `"!oldroom:example.org"`), true},
		{"an object never", create("true"), is(`content.predecessor`, `{}`), false},
		{"an object is not a value", create(`{"a": 1}`), is(`content.m\.federate`, `null`), false},
		{"an array is not a value", create(`[true]`), is(`content.m\.federate`, `true`), false},
		{"an invalid value never matches", create("true"), is(`content.m\.federate`, `tru`), false},
		{"an empty value never matches", create("true"), is(`content.m\.federate`, ``), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := holdsAlone(pushEvent(t, tc.event), tc.cond, nil); got != tc.want {
				t.Errorf("%s is %s: %v, want %v", tc.cond.Key, tc.cond.Value, got, tc.want)
			}
		})
	}
}

func TestEventPropertyContains(t *testing.T) {
	aliases := func(alt string) string {
		return `{"type": "m.room.canonical_alias", "state_key": "", "sender": "@example:example.org",
			"room_id": "!jEsUZKDJdhlrceRyVU:example.org", "event_id": "$143273582443PhrSn:example.org",
			"origin_server_ts": 1432735824653, "unsigned": {"age": 1234},
			"content": {"alias": "#somewhere:localhost", "alt_aliases": ` + alt + `}}`
	}
	contains := func(key, value string) PushCondition {
		return PushCondition{Kind: CondEventPropertyContains, Key: key, Value: json.RawMessage(value)}
	}
	spec := aliases(`["#somewhere:example.org", "#myroom:example.com"]`)
	for _, tc := range []struct {
		name  string
		event string
		cond  PushCondition
		want  bool
	}{
		// The spec's example: content.alt_aliases contains "#myroom:example.com".
		{"alt_aliases contains", spec, contains("content.alt_aliases", `"#myroom:example.com"`), true},
		{"partial values do not match", spec, contains("content.alt_aliases", `":example.com"`), false},
		{"exact, not case-insensitive", spec, contains("content.alt_aliases", `"#MYROOM:example.com"`), false},
		{"a string is not an array", spec, contains("content.alias", `"#somewhere:localhost"`), false},
		{"absent", spec, contains("content.nothing", `"x"`), false},
		{"empty array", aliases(`[]`), contains("content.alt_aliases", `"x"`), false},
		{"compound elements are ignored", aliases(`[{"a": "x"}, ["x"], "x"]`), contains("content.alt_aliases", `"x"`), true},
		{"compound elements never match", aliases(`[{"a": "x"}, ["x"]]`), contains("content.alt_aliases", `"x"`), false},
		{"integers", aliases(`[1, 2, 3]`), contains("content.alt_aliases", `2`), true},
		{"no casting", aliases(`["2", true]`), contains("content.alt_aliases", `2`), false},
		{"booleans", aliases(`[false]`), contains("content.alt_aliases", `false`), true},
		{"null", aliases(`[null]`), contains("content.alt_aliases", `null`), true},
		{"unsafe integers are ignored", aliases(`[9007199254740993]`), contains("content.alt_aliases", `9007199254740993`), false},
		{"m.mentions", withContent(`{"m.mentions": {"user_ids": ["@bob:test.local", "@alice:test.local"]}}`),
			contains(`content.m\.mentions.user_ids`, `"@alice:test.local"`), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := holdsAlone(pushEvent(t, tc.event), tc.cond, nil); got != tc.want {
				t.Errorf("%s contains %s: %v, want %v", tc.cond.Key, tc.cond.Value, got, tc.want)
			}
		})
	}
}

func TestContainsDisplayName(t *testing.T) {
	cond := PushCondition{Kind: CondContainsDisplayName}
	for _, tc := range []struct {
		name, content, displayName string
		want                       bool
	}{
		{"a word", `{"body": "hello Alice!"}`, "Alice", true},
		{"case-insensitive", `{"body": "HELLO ALICE"}`, "alice", true},
		{"at the start", `{"body": "alice: hi"}`, "Alice", true},
		{"whole body", `{"body": "Alice"}`, "Alice", true},
		{"not inside a word", `{"body": "Malice"}`, "Alice", false},
		{"not a prefix of a word", `{"body": "Alices"}`, "Alice", false},
		{"several words", `{"body": "hi Alice Liddell, hi"}`, "alice liddell", true},
		{"the name is text, not a glob", `{"body": "hi Alice"}`, "A*", false},
		{"glob characters literally", `{"body": "hi A* there"}`, "A*", true},
		{"? literally", `{"body": "who? me"}`, "wh??", false},
		{"empty name never matches", `{"body": "hello"}`, "", false},
		{"body not a string", `{"body": ["Alice"]}`, "Alice", false},
		{"no body", `{"formatted_body": "Alice"}`, "Alice", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := holdsAlone(pushEvent(t, withContent(tc.content)), cond, &PushContext{DisplayName: tc.displayName})
			if got != tc.want {
				t.Errorf("%q in %s: %v, want %v", tc.displayName, tc.content, got, tc.want)
			}
		})
	}
}

func TestRoomMemberCount(t *testing.T) {
	ev := pushEvent(t, withContent(`{"body": "x"}`))
	for _, tc := range []struct {
		is    string
		count int
		want  bool
	}{
		{"2", 2, true}, {"2", 3, false}, {"2", 1, false},
		{"==2", 2, true}, {"==2", 3, false},
		{"<3", 2, true}, {"<3", 3, false},
		{">3", 4, true}, {">3", 3, false},
		{">=3", 3, true}, {">=3", 4, true}, {">=3", 2, false},
		{"<=3", 3, true}, {"<=3", 2, true}, {"<=3", 4, false},
		{"0", 0, true}, {"02", 2, true},
		// Not of the form: never matches.
		{"", 0, false}, {"=2", 2, false}, {"!=2", 3, false}, {"+2", 2, false}, {"-2", -2, false},
		{"2 ", 2, false}, {" 2", 2, false}, {"two", 2, false}, {"<", 0, false},
		{"99999999999999999999", 2, false}, {"<99999999999999999999", 2, true}, {">=99999999999999999999", 2, false},
		{"<=000000000000000000000000000002", 2, true}, {"<100000000000000000", 99999999999999999, true},
		{"<100000000000000000", 100000000000000000, false},
	} {
		got := holdsAlone(ev, PushCondition{Kind: CondRoomMemberCount, Is: tc.is}, &PushContext{MemberCount: tc.count})
		if got != tc.want {
			t.Errorf("is %q with %d members: %v, want %v", tc.is, tc.count, got, tc.want)
		}
	}
	// Without a context nothing is known: zero members.
	if !holdsAlone(ev, PushCondition{Kind: CondRoomMemberCount, Is: "0"}, nil) {
		t.Error("no context: not zero members")
	}
}

func TestSenderNotificationPermission(t *testing.T) {
	ev := pushEvent(t, withContent(`{"body": "x"}`))
	for _, tc := range []struct {
		name   string
		key    string
		sender int64
		levels map[string]int64
		want   bool
	}{
		{"no notifications object, 50", "room", 50, nil, true},
		{"no notifications object, 49", "room", 49, nil, false},
		{"no notifications object, 100", "room", 100, nil, true},
		{"no room key, default 50", "room", 50, map[string]int64{"other": 0}, true},
		{"no room key, below 50", "room", 10, map[string]int64{"other": 0}, false},
		{"room lowered to 0", "room", 0, map[string]int64{"room": 0}, true},
		{"room raised to 100", "room", 99, map[string]int64{"room": 100}, false},
		{"negative levels", "room", -5, map[string]int64{"room": -10}, true},
		{"another key set", "custom", 10, map[string]int64{"custom": 10}, true},
		{"another key set higher", "custom", 10, map[string]int64{"custom": 11}, false},
		{"another key unset has no default", "custom", 100, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc := &PushContext{SenderPowerLevel: tc.sender, NotificationPowerLevels: tc.levels}
			got := holdsAlone(ev, PushCondition{Kind: CondSenderNotificationPermission, Key: tc.key}, pc)
			if got != tc.want {
				t.Errorf("%s at %d with %v: %v, want %v", tc.key, tc.sender, tc.levels, got, tc.want)
			}
		})
	}
}

func TestUnknownConditionsNeverMatch(t *testing.T) {
	ev := pushEvent(t, withContent(`{"body": "x"}`))
	pc := &PushContext{MemberCount: 2, SenderPowerLevel: 100, DisplayName: "x"}
	for _, c := range []PushCondition{
		{Kind: "org.example.always"},
		{Kind: ""},
		{Kind: "EVENT_MATCH", Key: "type", Pattern: "*"},
		{Kind: "event_match ", Key: "type", Pattern: "*"},
	} {
		if holdsAlone(ev, c, pc) {
			t.Errorf("condition %q matched", c.Kind)
		}
		// Not even together with conditions that hold, and parsed from JSON with parameters.
		rs := PushRuleset{Underride: []PushRule{{RuleID: "r", Enabled: true, Conditions: []PushCondition{
			{Kind: CondEventMatch, Key: "type", Pattern: "m.room.message"}, c}}}}
		if rs.Evaluate(ev, pc) != nil {
			t.Errorf("rule with condition %q matched", c.Kind)
		}
	}
	var c PushCondition
	if err := json.Unmarshal([]byte(`{"kind": "org.example.is", "key": "type", "value": "m.room.message"}`), &c); err != nil {
		t.Fatal(err)
	}
	if holdsAlone(ev, c, pc) {
		t.Error("an unknown kind with a known kind's parameters matched")
	}
}

// pushExpect is what evaluating an event should give: the deciding rule ("" for none), and
// whether it notifies, highlights and with which sound.
type pushExpect struct {
	rule      string
	notify    bool
	highlight bool
	sound     string
}

// checkOutcome evaluates ev against rs and compares with want.
func checkOutcome(t *testing.T, rs *PushRuleset, ev *PushEvent, pc *PushContext, want pushExpect) {
	t.Helper()
	r := rs.Evaluate(ev, pc)
	var got pushExpect
	if r != nil {
		got.rule = r.RuleID
		o := OutcomeOf(r.Actions)
		got.notify, got.highlight = o.Notify, o.Highlight
		if s, ok := o.Tweaks[TweakSound]; ok {
			if err := json.Unmarshal(s, &got.sound); err != nil {
				t.Fatalf("sound tweak %s: %v", s, err)
			}
		}
	}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// TestDefaultRules evaluates, for every server-default rule, an event that the rule decides;
// a default rule without a case here fails the test.
func TestDefaultRules(t *testing.T) {
	group := &PushContext{MemberCount: 10, SenderPowerLevel: 0}
	oneToOne := &PushContext{MemberCount: 2}
	member := func(stateKey, membership string) string {
		return `{"type": "m.room.member", "state_key": "` + stateKey + `", "sender": "@bob:test.local",
			"room_id": "!room:test.local", "event_id": "$e", "content": {"membership": "` + membership + `"}}`
	}
	state := func(typ, stateKey, content string) string {
		return `{"type": "` + typ + `", "state_key": "` + stateKey + `", "sender": "@bob:test.local",
			"room_id": "!room:test.local", "event_id": "$e", "content": ` + content + `}`
	}
	message := func(typ, content string) string {
		return `{"type": "` + typ + `", "sender": "@bob:test.local", "room_id": "!room:test.local",
			"event_id": "$e", "content": ` + content + `}`
	}
	type tc struct {
		name  string
		event string
		pc    *PushContext
		edit  func(rs *PushRuleset) // changes to the default ruleset, if any
		want  pushExpect
	}
	cases := map[string][]tc{
		".m.rule.master": {
			{"enabled, it silences everything", withContent(`{"body": "hi", "m.mentions": {"user_ids": ["@alice:test.local"]}}`), oneToOne,
				func(rs *PushRuleset) { rs.Override[0].Enabled = true }, pushExpect{rule: ".m.rule.master"}},
			{"enabled, even the user's own rules", withContent(`{"body": "lunch"}`), group,
				func(rs *PushRuleset) {
					rs.Override[0].Enabled = true
					rs.Content = []PushRule{{RuleID: "lunch", Enabled: true, Pattern: "lunch", Actions: []PushAction{{Action: ActionNotify}}}}
				}, pushExpect{rule: ".m.rule.master"}},
			{"disabled by default", withContent(`{"body": "hi"}`), group, nil,
				pushExpect{rule: ".m.rule.message", notify: true}},
		},
		".m.rule.suppress_notices": {
			{"notices are silent", withContent(`{"msgtype": "m.notice", "body": "beep"}`), oneToOne, nil,
				pushExpect{rule: ".m.rule.suppress_notices"}},
			{"even when they mention the user", withContent(`{"msgtype": "m.notice", "body": "hi", "m.mentions": {"user_ids": ["@alice:test.local"]}}`), group, nil,
				pushExpect{rule: ".m.rule.suppress_notices"}},
			{"a disabled rule is skipped", withContent(`{"msgtype": "m.notice", "body": "beep"}`), group,
				func(rs *PushRuleset) { rs.Rule(PushOverride, ".m.rule.suppress_notices").Enabled = false },
				pushExpect{rule: ".m.rule.message", notify: true}},
		},
		".m.rule.invite_for_me": {
			{"an invite for me notifies with sound", member(string(pushAlice), "invite"), group, nil,
				pushExpect{rule: ".m.rule.invite_for_me", notify: true, sound: "default"}},
		},
		".m.rule.member_event": {
			{"someone joining is silent", member("@carol:test.local", "join"), group, nil, pushExpect{rule: ".m.rule.member_event"}},
			{"someone else's invite is silent", member("@carol:test.local", "invite"), group, nil, pushExpect{rule: ".m.rule.member_event"}},
			{"my own join is silent", member(string(pushAlice), "join"), oneToOne, nil, pushExpect{rule: ".m.rule.member_event"}},
		},
		".m.rule.is_user_mention": {
			{"a mention highlights", withContent(`{"body": "hi", "m.mentions": {"user_ids": ["@carol:test.local", "@alice:test.local"]}}`), group, nil,
				pushExpect{rule: ".m.rule.is_user_mention", notify: true, highlight: true, sound: "default"}},
			{"someone else's mention does not", withContent(`{"body": "hi", "m.mentions": {"user_ids": ["@carol:test.local"]}}`), group, nil,
				pushExpect{rule: ".m.rule.message", notify: true}},
			{"the ID in the body does not", withContent(`{"body": "hi @alice:test.local alice", "m.mentions": {}}`), group, nil,
				pushExpect{rule: ".m.rule.message", notify: true}},
			{"an encrypted event's mentions are not seen", message("m.room.encrypted", `{"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "x"}`), group, nil,
				pushExpect{rule: ".m.rule.encrypted", notify: true}},
		},
		".m.rule.is_room_mention": {
			{"with permission by default level", withContent(`{"body": "@room", "m.mentions": {"room": true}}`), &PushContext{MemberCount: 10, SenderPowerLevel: 50}, nil,
				pushExpect{rule: ".m.rule.is_room_mention", notify: true, highlight: true}},
			{"without permission", withContent(`{"body": "@room", "m.mentions": {"room": true}}`), group, nil,
				pushExpect{rule: ".m.rule.message", notify: true}},
			{"with permission lowered", withContent(`{"body": "@room", "m.mentions": {"room": true}}`),
				&PushContext{MemberCount: 10, NotificationPowerLevels: map[string]int64{"room": 0}}, nil,
				pushExpect{rule: ".m.rule.is_room_mention", notify: true, highlight: true}},
			{"without permission raised", withContent(`{"body": "@room", "m.mentions": {"room": true}}`),
				&PushContext{MemberCount: 10, SenderPowerLevel: 50, NotificationPowerLevels: map[string]int64{"room": 75}}, nil,
				pushExpect{rule: ".m.rule.message", notify: true}},
			{`room "true" is not true`, withContent(`{"body": "@room", "m.mentions": {"room": "true"}}`), &PushContext{MemberCount: 10, SenderPowerLevel: 100}, nil,
				pushExpect{rule: ".m.rule.message", notify: true}},
		},
		".m.rule.tombstone": {
			{"a tombstone highlights", state("m.room.tombstone", "", `{"body": "moved", "replacement_room": "!new:test.local"}`), group, nil,
				pushExpect{rule: ".m.rule.tombstone", notify: true, highlight: true}},
			{"only as state", message("m.room.tombstone", `{"body": "moved"}`), group, nil, pushExpect{}},
			{"only with an empty state key", state("m.room.tombstone", "x", `{}`), group, nil, pushExpect{}},
		},
		".m.rule.reaction": {
			{"reactions are silent", message("m.reaction", `{"m.relates_to": {"rel_type": "m.annotation", "event_id": "$x", "key": "👍"}}`), oneToOne, nil,
				pushExpect{rule: ".m.rule.reaction"}},
		},
		".m.rule.room.server_acl": {
			{"server ACL changes are silent", state("m.room.server_acl", "", `{"allow": ["*"]}`), group, nil,
				pushExpect{rule: ".m.rule.room.server_acl"}},
		},
		".m.rule.suppress_edits": {
			{"edits are silent", withContent(`{"body": "* hi", "m.new_content": {"body": "hi"}, "m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}}`), oneToOne, nil,
				pushExpect{rule: ".m.rule.suppress_edits"}},
			{"other relations are not", withContent(`{"body": "hi", "m.relates_to": {"rel_type": "m.thread", "event_id": "$x"}}`), group, nil,
				pushExpect{rule: ".m.rule.message", notify: true}},
		},
		".m.rule.call": {
			{"a call rings", message("m.call.invite", `{"call_id": "c", "version": "1", "lifetime": 60000}`), group, nil,
				pushExpect{rule: ".m.rule.call", notify: true, sound: "ring"}},
		},
		".m.rule.encrypted_room_one_to_one": {
			{"encrypted in a one-to-one room", message("m.room.encrypted", `{"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "x"}`), oneToOne, nil,
				pushExpect{rule: ".m.rule.encrypted_room_one_to_one", notify: true, sound: "default"}},
		},
		".m.rule.room_one_to_one": {
			{"a message in a one-to-one room", withContent(`{"msgtype": "m.text", "body": "hi"}`), oneToOne, nil,
				pushExpect{rule: ".m.rule.room_one_to_one", notify: true, sound: "default"}},
		},
		".m.rule.message": {
			{"a message in a group notifies without sound", withContent(`{"msgtype": "m.text", "body": "hi"}`), group, nil,
				pushExpect{rule: ".m.rule.message", notify: true}},
			{"three members are a group", withContent(`{"msgtype": "m.text", "body": "hi"}`), &PushContext{MemberCount: 3}, nil,
				pushExpect{rule: ".m.rule.message", notify: true}},
		},
		".m.rule.encrypted": {
			{"encrypted in a group notifies", message("m.room.encrypted", `{"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "x"}`), group, nil,
				pushExpect{rule: ".m.rule.encrypted", notify: true}},
		},
	}
	// Events no default rule decides.
	others := []tc{
		{"a topic change", state("m.room.topic", "", `{"topic": "hi"}`), group, nil, pushExpect{}},
		{"a sticker", message("m.sticker", `{"body": "hi"}`), group, nil, pushExpect{}},
		{"a typeless event", `{"content": {"body": "hi"}}`, group, nil, pushExpect{}},
	}

	defaults := DefaultPushRules(pushAlice)
	run := func(ruleID string, c tc) {
		t.Run(ruleID+"/"+c.name, func(t *testing.T) {
			rs := DefaultPushRules(pushAlice)
			if c.edit != nil {
				c.edit(&rs)
			}
			checkOutcome(t, &rs, pushEvent(t, c.event), c.pc, c.want)
		})
	}
	for _, k := range PushRuleKinds() {
		for _, r := range defaults.Rules(k) {
			if len(cases[r.RuleID]) == 0 {
				t.Errorf("no test case for the default rule %s", r.RuleID)
			}
			for _, c := range cases[r.RuleID] {
				run(r.RuleID, c)
			}
		}
	}
	for ruleID := range cases {
		if defaults.Rule(PushOverride, ruleID) == nil && defaults.Rule(PushUnderride, ruleID) == nil {
			t.Errorf("test cases for %s, which is not a default rule", ruleID)
		}
	}
	for _, c := range others {
		run("none", c)
	}
}

// TestEvaluateOrder checks the order of kinds, of rules within a kind, and that the implied
// conditions of content, room and sender rules are those of ImpliedConditions.
func TestEvaluateOrder(t *testing.T) {
	notify := []PushAction{{Action: ActionNotify}}
	rule := func(id string) PushRule { return PushRule{RuleID: id, Enabled: true, Actions: notify} }
	content := func(id, pattern string) PushRule { r := rule(id); r.Pattern = pattern; return r }
	always := func(id string) PushRule { r := rule(id); r.Conditions = []PushCondition{}; return r }
	rs := PushRuleset{
		Override:  []PushRule{{RuleID: "off", Enabled: false, Conditions: []PushCondition{}}},
		Content:   []PushRule{content("tea", "tea"), content("time", "time"), content("lunch", "lunch")},
		Room:      []PushRule{rule("!other:test.local"), rule("!room:test.local")},
		Sender:    []PushRule{rule("@carol:test.local"), rule("@bob:test.local")},
		Underride: []PushRule{always("fallback")},
	}
	for _, tc := range []struct {
		event string
		want  string
	}{
		// "a rule matching tea and a separate rule matching time would both match": the first wins.
		{withContent(`{"body": "It's time for tea"}`), "tea"},
		{withContent(`{"body": "lunchtime"}`), "!room:test.local"},
		{`{"type": "m.room.message", "sender": "@bob:test.local", "room_id": "!elsewhere:test.local", "content": {"body": "x"}}`, "@bob:test.local"},
		{`{"type": "m.room.message", "sender": "@dave:test.local", "room_id": "!elsewhere:test.local", "content": {"body": "x"}}`, "fallback"},
		{`{"type": "m.room.message", "sender": "@BOB:test.local", "room_id": "!ROOM:test.local", "content": {"body": "x"}}`, "fallback"},
		{`{"type": "m.room.message", "sender": 5, "room_id": ["!room:test.local"], "content": {"body": "x"}}`, "fallback"},
	} {
		ev := pushEvent(t, tc.event)
		got := ""
		if r := rs.Evaluate(ev, nil); r != nil {
			got = r.RuleID
		}
		if got != tc.want {
			t.Errorf("%s: rule %q, want %q", tc.event, got, tc.want)
		}
		// The same rule by the generic path: each rule's ImpliedConditions.
		generic := ""
	kinds:
		for _, k := range PushRuleKinds() {
			for _, r := range rs.Rules(k) {
				if r.Enabled && ev.holdAll(r.ImpliedConditions(k), &PushContext{}) {
					generic = r.RuleID
					break kinds
				}
			}
		}
		if generic != got {
			t.Errorf("%s: rule %q, by ImpliedConditions %q", tc.event, got, generic)
		}
	}
	if r := (*PushRuleset)(nil).Evaluate(pushEvent(t, withContent(`{}`)), nil); r != nil {
		t.Errorf("nil ruleset: %v", r)
	}
	if r := rs.Evaluate(nil, nil); r != nil {
		t.Errorf("nil event: %v", r)
	}
}

func TestOutcomeOf(t *testing.T) {
	tweak := func(name, value string) PushAction {
		a := PushAction{Action: ActionSetTweak, Tweak: name}
		if value != "" {
			a.Value = json.RawMessage(value)
		}
		return a
	}
	for _, tc := range []struct {
		name    string
		actions []PushAction
		notify  bool
		high    bool
		tweaks  string
	}{
		{"nothing", nil, false, false, `null`},
		{"notify", []PushAction{{Action: ActionNotify}}, true, false, `null`},
		{"highlight without value", []PushAction{{Action: ActionNotify}, tweak("highlight", "")}, true, true, `{"highlight": true}`},
		{"highlight true", []PushAction{tweak("highlight", "true")}, false, true, `{"highlight": true}`},
		{"highlight false", []PushAction{{Action: ActionNotify}, tweak("highlight", "false")}, true, false, `{"highlight": false}`},
		{"highlight null", []PushAction{tweak("highlight", "null")}, false, false, `{"highlight": null}`},
		{"the later tweak wins", []PushAction{tweak("highlight", ""), tweak("highlight", "false")}, false, false, `{"highlight": false}`},
		{"sound and custom tweaks", []PushAction{{Action: ActionNotify}, tweak("sound", `"ring"`), tweak("org.example.led", `{"colour": "red"}`)},
			true, false, `{"sound": "ring", "org.example.led": {"colour": "red"}}`},
		{"historical actions are ignored", []PushAction{{Action: "dont_notify"}, {Action: "coalesce"}}, false, false, `null`},
		{"dont_notify does not cancel notify", []PushAction{{Action: ActionNotify}, {Action: "dont_notify"}}, true, false, `null`},
		{"unknown actions are ignored", []PushAction{{Action: "org.example"}, {Action: ActionSetTweak}}, false, false, `null`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := OutcomeOf(tc.actions)
			if o.Notify != tc.notify || o.Highlight != tc.high {
				t.Errorf("notify %v highlight %v, want %v %v", o.Notify, o.Highlight, tc.notify, tc.high)
			}
			if got := mustJSON(t, o.Tweaks); !sameJSON(t, got, tc.tweaks) {
				t.Errorf("tweaks %s, want %s", got, tc.tweaks)
			}
		})
	}
}

func TestNewPushEventRefuses(t *testing.T) {
	for _, in := range []string{
		``, `null`, `[]`, `"event"`, `5`, `{`, `{"type": "m.room.message"} {}`, `{"type": "m.room.message"}x`,
		`{"a": "` + strings.Repeat("x", maxPushEventSize) + `"}`,
	} {
		if _, err := NewPushEvent([]byte(in)); err == nil {
			t.Errorf("NewPushEvent(%.40q) succeeded", in)
		}
	}
	// Trailing white space is fine, and so is deep nesting, which is flattened down to a limit.
	deep := strings.Repeat(`{"a": `, 100) + `"x"` + strings.Repeat(`}`, 100)
	if ev := pushEvent(t, `{"type": "t", "content": `+deep+"}\n"); len(ev.props) != 1 {
		t.Errorf("deep nesting flattened to %d properties, want 1 (type)", len(ev.props))
	}
	for _, levels := range []int{maxPushEventDepth - 1, maxPushEventDepth} {
		nested := strings.Repeat(`{"a": `, levels) + `"x"` + strings.Repeat(`}`, levels)
		ev := pushEvent(t, `{"content": `+nested+`}`)
		path := "content" + strings.Repeat(".a", levels)
		seen := holdsAlone(ev, PushCondition{Kind: CondEventMatch, Key: path, Pattern: "x"}, nil)
		if want := levels+1 <= maxPushEventDepth; seen != want {
			t.Errorf("a property %d levels deep seen: %v, want %v", levels+1, seen, want)
		}
	}
}

func TestGlobLimit(t *testing.T) {
	long := strings.Repeat("a", maxGlobLen)
	if !matchGlob(long, long, 0) || !matchGlob(long, "x "+long, globWords) {
		t.Error("a pattern at the limit does not match")
	}
	if matchGlob(long+"a", long+"a", 0) || matchGlob(long+"*", long, globWords) {
		t.Error("a pattern over the limit matches")
	}
}

// globRegexp is a reference matcher for tests: a glob as a regular expression, case-insensitive
// by Unicode simple folding as matchGlob is.
func globRegexp(pattern string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString(`(?is)\A`)
	for _, r := range pattern {
		switch r {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString(`\z`)
	return regexp.MustCompile(b.String())
}

// referenceGlob matches as matchGlob does, by brute force: in word mode, every substring that
// starts and ends at a word boundary is tried against the whole-value expression.
func referenceGlob(pattern, value string, words bool) bool {
	re := globRegexp(pattern)
	if !words {
		return re.MatchString(value)
	}
	return anyWordSubstring(value, re.MatchString)
}

// anyWordSubstring reports whether match holds for a substring of value, between character
// boundaries, that starts and ends at a word boundary.
func anyWordSubstring(value string, match func(string) bool) bool {
	at := func(i int) bool {
		return (i == len(value) || utf8.RuneStart(value[i])) && atWordBoundary(value, i)
	}
	for i := 0; i <= len(value); i++ {
		for j := i; j <= len(value) && at(i); j++ {
			if at(j) && match(value[i:j]) {
				return true
			}
		}
	}
	return false
}

func FuzzGlob(f *testing.F) {
	for _, s := range [][2]string{
		{"lunc?*", "Lunch plans"}, {"ex*ple", "An exciting triple-whammy"}, {"ex*ple", "examples"},
		{"a*b*c", "xx a-b-c xx"}, {"*", ""}, {"?", "é"}, {"ab*cab", "abcab"}, {"aba*bab", "abab"},
		{"*a?", "a a a"}, {"K", "\u212a"}, {"ß", "SS"}, {"@room", "hi@room!"}, {"", "x"}, {"*?*", "日"},
		{"a*", "b a"}, {"*_x", "a _x"}, {"s", "a ſ b"}, {"ks*", "x \u212aſ y"}, {"*ss", "Kſs"}, {"Ab", "xaB aB"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, value string) {
		if !utf8.ValidString(pattern) || !utf8.ValidString(value) || len(pattern) > 40 || len(value) > 200 {
			return // event and rule JSON carry valid UTF-8 only
		}
		for _, words := range []bool{false, true} {
			mode := globMode(0)
			if words {
				mode |= globWords
			}
			if isASCII(value) {
				mode |= globASCII
			}
			if got, want := matchGlob(pattern, value, mode), referenceGlob(pattern, value, words); got != want {
				t.Errorf("matchGlob(%q, %q, words %v) = %v, reference %v", pattern, value, words, got, want)
			}
			if got := matchGlob(pattern, value, mode&^globASCII); got != referenceGlob(pattern, value, words) {
				t.Errorf("matchGlob(%q, %q, words %v) without knowing the value ASCII = %v", pattern, value, words, got)
			}
			// Literally, * and ? are themselves.
			if got, want := matchGlob(pattern, value, mode|globLiteral), referenceLiteral(pattern, value, words); got != want {
				t.Errorf("literal matchGlob(%q, %q, words %v) = %v, reference %v", pattern, value, words, got, want)
			}
		}
	})
}

// referenceLiteral is referenceGlob with * and ? taken literally.
func referenceLiteral(text, value string, words bool) bool {
	eq := func(s string) bool { return strings.EqualFold(s, text) }
	if !words {
		return eq(value)
	}
	return anyWordSubstring(value, eq)
}

// FuzzNewPushEvent flattens any input and evaluates the default rules and rules of every
// condition kind against it: nothing may panic, and the outcome is one of a rule's.
func FuzzNewPushEvent(f *testing.F) {
	for _, s := range []string{
		withContent(`{"msgtype": "m.text", "body": "hello alice, lunch?"}`),
		withContent(`{"body": "hi", "m.mentions": {"user_ids": ["@alice:test.local"], "room": true}}`),
		withContent(`{"m.relates_to": {"rel_type": "m.replace"}, "a.b\\c": {"": [1, "x", null, true, {}, []]}}`),
		`{"type": "m.room.member", "state_key": "@alice:test.local", "content": {"membership": "invite"}}`,
		`{"type": "m.room.tombstone", "state_key": "", "content": {"body": 1e400}}`,
		`{"type": "m.room.create", "content": {"m.federate": true, "n": -9007199254740991, "f": 1.5}}`,
		`{"content": {"body": "\u0000\ud800"}}`, `{}`, `[]`, `{"a":`, `null`,
	} {
		f.Add([]byte(s))
	}
	rs := DefaultPushRules(pushAlice)
	rs.Content = []PushRule{{RuleID: "c", Enabled: true, Pattern: "lu*c?", Actions: []PushAction{{Action: ActionNotify}}}}
	rs.Room = []PushRule{{RuleID: "!room:test.local", Enabled: true}}
	rs.Sender = []PushRule{{RuleID: "@bob:test.local", Enabled: true}}
	rs.Override = append(rs.Override, PushRule{RuleID: "all", Enabled: true, Conditions: []PushCondition{
		{Kind: CondEventMatch, Key: `content.a\.b\c.`, Pattern: "*x?"},
		{Kind: CondEventPropertyContains, Key: `content.a\.b\\c.`, Value: json.RawMessage(`1`)},
		{Kind: CondContainsDisplayName},
		{Kind: CondRoomMemberCount, Is: ">=1"},
		{Kind: CondSenderNotificationPermission, Key: "room"},
		{Kind: "org.example.unknown"},
	}})
	pc := &PushContext{MemberCount: 2, SenderPowerLevel: 50, DisplayName: "alice"}
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := NewPushEvent(data)
		if err != nil {
			return
		}
		if r := rs.Evaluate(ev, pc); r != nil {
			OutcomeOf(r.Actions)
		}
	})
}
