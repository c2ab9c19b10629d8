package userapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/notifier"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

// specDefaultRules are the server-default rules as the client-server API v1.19 prints them
// ("Predefined Rules"), in its order, for @alice:test.local.
const specDefaultRules = `{
"override": [
  {"rule_id": ".m.rule.master", "default": true, "enabled": false, "conditions": [], "actions": []},
  {"rule_id": ".m.rule.suppress_notices", "default": true, "enabled": true,
   "conditions": [{"kind": "event_match", "key": "content.msgtype", "pattern": "m.notice"}],
   "actions": []},
  {"rule_id": ".m.rule.invite_for_me", "default": true, "enabled": true,
   "conditions": [
     {"key": "type", "kind": "event_match", "pattern": "m.room.member"},
     {"key": "content.membership", "kind": "event_match", "pattern": "invite"},
     {"key": "state_key", "kind": "event_match", "pattern": "@alice:test.local"}],
   "actions": ["notify", {"set_tweak": "sound", "value": "default"}]},
  {"rule_id": ".m.rule.member_event", "default": true, "enabled": true,
   "conditions": [{"key": "type", "kind": "event_match", "pattern": "m.room.member"}],
   "actions": []},
  {"rule_id": ".m.rule.is_user_mention", "default": true, "enabled": true,
   "conditions": [{"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": "@alice:test.local"}],
   "actions": ["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}]},
  {"rule_id": ".m.rule.is_room_mention", "default": true, "enabled": true,
   "conditions": [
     {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": true},
     {"kind": "sender_notification_permission", "key": "room"}],
   "actions": ["notify", {"set_tweak": "highlight"}]},
  {"rule_id": ".m.rule.tombstone", "default": true, "enabled": true,
   "conditions": [
     {"kind": "event_match", "key": "type", "pattern": "m.room.tombstone"},
     {"kind": "event_match", "key": "state_key", "pattern": ""}],
   "actions": ["notify", {"set_tweak": "highlight"}]},
  {"rule_id": ".m.rule.reaction", "default": true, "enabled": true,
   "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.reaction"}],
   "actions": []},
  {"rule_id": ".m.rule.room.server_acl", "default": true, "enabled": true,
   "conditions": [
     {"kind": "event_match", "key": "type", "pattern": "m.room.server_acl"},
     {"kind": "event_match", "key": "state_key", "pattern": ""}],
   "actions": []},
  {"rule_id": ".m.rule.suppress_edits", "default": true, "enabled": true,
   "conditions": [{"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type", "value": "m.replace"}],
   "actions": []}
],
"content": [],
"room": [],
"sender": [],
"underride": [
  {"rule_id": ".m.rule.call", "default": true, "enabled": true,
   "conditions": [{"key": "type", "kind": "event_match", "pattern": "m.call.invite"}],
   "actions": ["notify", {"set_tweak": "sound", "value": "ring"}]},
  {"rule_id": ".m.rule.encrypted_room_one_to_one", "default": true, "enabled": true,
   "conditions": [{"kind": "room_member_count", "is": "2"}, {"kind": "event_match", "key": "type", "pattern": "m.room.encrypted"}],
   "actions": ["notify", {"set_tweak": "sound", "value": "default"}]},
  {"rule_id": ".m.rule.room_one_to_one", "default": true, "enabled": true,
   "conditions": [{"kind": "room_member_count", "is": "2"}, {"kind": "event_match", "key": "type", "pattern": "m.room.message"}],
   "actions": ["notify", {"set_tweak": "sound", "value": "default"}]},
  {"rule_id": ".m.rule.message", "default": true, "enabled": true,
   "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.message"}],
   "actions": ["notify"]},
  {"rule_id": ".m.rule.encrypted", "default": true, "enabled": true,
   "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.encrypted"}],
   "actions": ["notify"]}
]}`

// sameJSON reports whether two JSON texts hold the same value.
func sameJSON(t *testing.T, got []byte, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s is not JSON: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation %s: %v", want, err)
	}
	return reflect.DeepEqual(g, w)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDefaultPushRulesAreTheSpecs(t *testing.T) {
	got := mustJSON(t, DefaultPushRules("@alice:test.local"))
	if !sameJSON(t, got, specDefaultRules) {
		t.Errorf("default rules:\n%s\nwant\n%s", got, specDefaultRules)
	}
	// The ruleset parses back into the same Go value.
	var rs PushRuleset
	if err := json.Unmarshal(got, &rs); err != nil {
		t.Fatal(err)
	}
	if again := mustJSON(t, rs); string(again) != string(got) {
		t.Errorf("round trip:\n%s\n%s", again, got)
	}
	// Every server-default rule is valid by our own checks, and is found by isDefaultRule.
	for _, k := range PushRuleKinds() {
		for _, r := range rs.Rules(k) {
			if _, err := r.Normalize(k); err != nil {
				t.Errorf("%s %s: %v", k, r.RuleID, err)
			}
			if !isDefaultRule("@alice:test.local", k, r.RuleID) {
				t.Errorf("isDefaultRule(%s, %s) = false", k, r.RuleID)
			}
		}
	}
	if isDefaultRule("@alice:test.local", PushUnderride, masterRuleID) || isDefaultRule("@alice:test.local", PushContent, ".m.rule.contains_user_name") {
		t.Error("isDefaultRule of another kind or of a removed rule")
	}
}

func TestPushConditionJSON(t *testing.T) {
	for _, tc := range []struct{ in, out string }{
		// Known kinds keep their parameters, an empty pattern included, and any extra member.
		{`{"kind":"event_match","key":"state_key","pattern":""}`, ``},
		{`{"kind":"event_match","key":"a","pattern":"b*","x-extra":[1]}`, ``},
		{`{"kind":"event_property_is","key":"k","value":null}`, ``},
		{`{"kind":"event_property_contains","key":"k","value":-9007199254740991}`, ``},
		{`{"kind":"room_member_count","is":">=10"}`, ``},
		{`{"kind":"sender_notification_permission","key":"room"}`, ``},
		{`{"kind":"contains_display_name"}`, ``},
		// Conditions of unknown kinds are kept whole (they never match).
		{`{"kind":"org.example.future","key":5,"pattern":{"a":1}}`, ``},
	} {
		var c PushCondition
		if err := json.Unmarshal([]byte(tc.in), &c); err != nil {
			t.Errorf("Unmarshal(%s): %v", tc.in, err)
			continue
		}
		if err := c.validate(); err != nil {
			t.Errorf("validate(%s): %v", tc.in, err)
		}
		want := tc.out
		if want == "" {
			want = tc.in
		}
		if got := mustJSON(t, c); !sameJSON(t, got, want) {
			t.Errorf("%s came back as %s", tc.in, got)
		}
	}
	// Shapes refused when parsing.
	for _, in := range []string{
		`null`, `[]`, `"event_match"`, `{}`, `{"kind":1}`,
		`{"kind":"event_match","key":"a"}`, `{"kind":"event_match","pattern":"a"}`, `{"kind":"event_match","key":"a","pattern":1}`,
		`{"kind":"event_property_is","key":"a"}`, `{"kind":"room_member_count"}`, `{"kind":"room_member_count","is":2}`,
		`{"kind":"sender_notification_permission"}`,
	} {
		var c PushCondition
		if err := json.Unmarshal([]byte(in), &c); err == nil {
			t.Errorf("Unmarshal(%s) accepted: %+v", in, c)
		}
	}
	// Values refused when validating.
	for _, in := range []string{
		`{"kind":"","x":1}`,
		`{"kind":"event_match","key":"","pattern":"a"}`,
		`{"kind":"event_property_is","key":"a","value":1.5}`,
		`{"kind":"event_property_is","key":"a","value":1e3}`,
		`{"kind":"event_property_is","key":"a","value":9007199254740992}`,
		`{"kind":"event_property_contains","key":"a","value":{"x":1}}`,
		`{"kind":"event_property_contains","key":"a","value":["x"]}`,
		`{"kind":"room_member_count","is":""}`,
		`{"kind":"room_member_count","is":"=2"}`,
		`{"kind":"room_member_count","is":"<"}`,
		`{"kind":"room_member_count","is":"-1"}`,
		`{"kind":"room_member_count","is":" 2"}`,
		`{"kind":"room_member_count","is":"99999999999999999999"}`,
	} {
		var c PushCondition
		if err := json.Unmarshal([]byte(in), &c); err != nil {
			t.Errorf("Unmarshal(%s): %v", in, err)
			continue
		}
		if err := c.validate(); err == nil {
			t.Errorf("validate(%s) accepted", in)
		}
	}
}

func TestPushActions(t *testing.T) {
	parse := func(s string) []PushAction {
		t.Helper()
		var a []PushAction
		if err := json.Unmarshal([]byte(s), &a); err != nil {
			t.Fatalf("Unmarshal(%s): %v", s, err)
		}
		return a
	}
	for _, tc := range []struct{ in, want string }{
		{`[]`, `[]`},
		{`["notify"]`, `["notify"]`},
		// "Clients and homeservers MUST ignore these actions ... by stripping them."
		{`["dont_notify"]`, `[]`},
		{`["notify","coalesce",{"set_tweak":"sound","value":"default"}]`, `["notify",{"set_tweak":"sound","value":"default"}]`},
		{`[{"set_tweak":"highlight"},{"set_tweak":"highlight","value":false}]`, `[{"set_tweak":"highlight"},{"set_tweak":"highlight","value":false}]`},
		// Other tweaks pass through whatever their value.
		{`[{"set_tweak":"org.example.led","value":{"colour":"blue"}}]`, `[{"set_tweak":"org.example.led","value":{"colour":"blue"}}]`},
		// Members of a tweak object other than set_tweak and value are not kept.
		{`[{"set_tweak":"x","other":1}]`, `[{"set_tweak":"x"}]`},
	} {
		got, err := NormalizePushActions(parse(tc.in))
		if err != nil {
			t.Errorf("NormalizePushActions(%s): %v", tc.in, err)
			continue
		}
		if b := mustJSON(t, got); string(b) != tc.want {
			t.Errorf("NormalizePushActions(%s) = %s, want %s", tc.in, b, tc.want)
		}
	}
	for _, in := range []string{`["beep"]`, `[""]`, `[{"set_tweak":"highlight","value":"yes"}]`, `[{"set_tweak":"highlight","value":null}]`,
		`[{"set_tweak":"sound"}]`, `[{"set_tweak":"sound","value":1}]`} {
		if got, err := NormalizePushActions(parse(in)); err == nil {
			t.Errorf("NormalizePushActions(%s) accepted: %+v", in, got)
		}
	}
	for _, in := range []string{`[1]`, `[null]`, `[{"set_sound":"x"}]`, `[{"set_tweak":""}]`, `[{"set_tweak":1}]`, `[["notify"]]`} {
		var a []PushAction
		if err := json.Unmarshal([]byte(in), &a); err == nil {
			t.Errorf("Unmarshal(%s) accepted: %+v", in, a)
		}
	}
	if got, _ := NormalizePushActions(nil); got == nil {
		t.Error("NormalizePushActions(nil) is nil, want empty")
	}
}

func TestPushRuleNormalizeAndJSON(t *testing.T) {
	notify := []PushAction{{Action: ActionNotify}}
	cond := []PushCondition{{Kind: CondEventMatch, Key: "type", Pattern: "m.room.message"}}
	for _, tc := range []struct {
		kind PushRuleKind
		in   PushRule
		want string // JSON of the normalized rule, "" for an error
	}{
		{PushOverride, PushRule{RuleID: "o", Conditions: []PushCondition{}, Actions: notify}, `{"rule_id":"o","default":false,"enabled":false,"conditions":[],"actions":["notify"]}`},
		{PushUnderride, PushRule{RuleID: "u", Conditions: cond, Pattern: "dropped"}, `{"rule_id":"u","default":false,"enabled":false,"conditions":[{"key":"type","kind":"event_match","pattern":"m.room.message"}],"actions":[]}`},
		{PushContent, PushRule{RuleID: "c", Pattern: "cake*lie", Conditions: cond, Actions: notify}, `{"rule_id":"c","default":false,"enabled":false,"pattern":"cake*lie","actions":["notify"]}`},
		{PushRoom, PushRule{RuleID: "!r:x", Conditions: cond, Pattern: "p"}, `{"rule_id":"!r:x","default":false,"enabled":false,"actions":[]}`},
		{PushSender, PushRule{RuleID: "@s:x", Actions: []PushAction{{Action: "dont_notify"}}}, `{"rule_id":"@s:x","default":false,"enabled":false,"actions":[]}`},
		{PushOverride, PushRule{RuleID: "o"}, ""},
		{PushUnderride, PushRule{RuleID: "u", Conditions: []PushCondition{{Kind: CondRoomMemberCount, Is: "x"}}}, ""},
		{PushContent, PushRule{RuleID: "c"}, ""},
		{PushRoom, PushRule{RuleID: "!r:x", Actions: []PushAction{{Action: "beep"}}}, ""},
		{"device", PushRule{RuleID: "d"}, ""},
	} {
		got, err := tc.in.Normalize(tc.kind)
		if tc.want == "" {
			if err == nil {
				t.Errorf("Normalize(%s, %+v) accepted", tc.kind, tc.in)
			}
			continue
		}
		if err != nil {
			t.Errorf("Normalize(%s, %+v): %v", tc.kind, tc.in, err)
			continue
		}
		if b := mustJSON(t, got); !sameJSON(t, b, tc.want) {
			t.Errorf("Normalize(%s, %+v) = %s, want %s", tc.kind, tc.in, b, tc.want)
		}
	}

	r := PushRule{RuleID: "!r:x", Pattern: "ca*"}
	for _, tc := range []struct {
		kind PushRuleKind
		want string
	}{
		{PushContent, `[{"kind":"event_match","key":"content.body","pattern":"ca*"}]`},
		{PushRoom, `[{"kind":"event_property_is","key":"room_id","value":"!r:x"}]`},
		{PushSender, `[{"kind":"event_property_is","key":"sender","value":"!r:x"}]`},
		{PushOverride, `null`},
	} {
		if got := mustJSON(t, r.ImpliedConditions(tc.kind)); !sameJSON(t, got, tc.want) {
			t.Errorf("ImpliedConditions(%s) = %s, want %s", tc.kind, got, tc.want)
		}
	}
	if got := mustJSON(t, PushRuleset{}); string(got) != `{"override":[],"content":[],"room":[],"sender":[],"underride":[]}` {
		t.Errorf("empty ruleset: %s", got)
	}
}

// ruleIDs lists the IDs of the rules of kind k in rs.
func ruleIDs(rs *PushRuleset, k PushRuleKind) []string {
	var ids []string
	for _, r := range rs.Rules(k) {
		ids = append(ids, r.RuleID)
	}
	return ids
}

// userRuleIDs lists the IDs of the user-defined rules of kind k in rs.
func userRuleIDs(rs *PushRuleset, k PushRuleKind) []string {
	var ids []string
	for _, r := range rs.Rules(k) {
		if !r.Default {
			ids = append(ids, r.RuleID)
		}
	}
	return ids
}

// storedPushRules returns the m.push_rules account data of user as stored.
func storedPushRules(t *testing.T, u *Users, user id.UserID) *PushRuleset {
	t.Helper()
	raw, err := u.GetAccountData(t.Context(), user, "", PushRulesType)
	if err != nil {
		t.Fatalf("m.push_rules of %s: %v", user, err)
	}
	var c pushRulesContent
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatalf("m.push_rules of %s: %v", user, err)
	}
	return &c.Global
}

func TestPushRulesStore(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{})
		ctx := t.Context()
		alice, bob := mustAccount(t, u, "alice", "").UserID, mustAccount(t, u, "bob", "").UserID

		rs, err := u.PushRules(ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		if got := mustJSON(t, rs); !sameJSON(t, got, specDefaultRules) {
			t.Errorf("a new user's rules: %s", got)
		}
		if _, err := u.GetAccountData(ctx, alice, "", PushRulesType); err != ErrNotFound {
			t.Errorf("m.push_rules stored before any change: %v", err)
		}

		put := func(kind PushRuleKind, ruleID, before, after string) error {
			t.Helper()
			r := PushRule{RuleID: ruleID, Actions: []PushAction{{Action: ActionNotify}}}
			switch kind {
			case PushOverride, PushUnderride:
				r.Conditions = []PushCondition{{Kind: CondEventMatch, Key: "content.body", Pattern: ruleID}}
			case PushContent:
				r.Pattern = ruleID
			}
			return u.PutPushRule(ctx, alice, kind, r, before, after)
		}
		mustPut := func(kind PushRuleKind, ruleID, before, after string) {
			t.Helper()
			if err := put(kind, ruleID, before, after); err != nil {
				t.Fatalf("PutPushRule(%s, %s, before %q, after %q): %v", kind, ruleID, before, after, err)
			}
		}
		wantOrder := func(kind PushRuleKind, want ...string) {
			t.Helper()
			rs, err := u.PushRules(ctx, alice)
			if err != nil {
				t.Fatal(err)
			}
			if got := userRuleIDs(rs, kind); !reflect.DeepEqual(got, want) {
				t.Errorf("%s rules %v, want %v", kind, got, want)
			}
			// The account data always holds the ruleset PushRules reads.
			if stored := storedPushRules(t, u, alice); !reflect.DeepEqual(mustJSON(t, stored), mustJSON(t, rs)) {
				t.Errorf("m.push_rules %s differs from %s", mustJSON(t, stored), mustJSON(t, rs))
			}
		}

		// New rules go first; before and after place them among the user's rules.
		mustPut(PushContent, "a", "", "")
		mustPut(PushContent, "b", "", "")
		wantOrder(PushContent, "b", "a")
		mustPut(PushContent, "c", "", "b")
		wantOrder(PushContent, "b", "c", "a")
		mustPut(PushContent, "d", "b", "")
		wantOrder(PushContent, "d", "b", "c", "a")
		mustPut(PushContent, "e", "", "a")
		wantOrder(PushContent, "d", "b", "c", "a", "e")
		// With both, before wins.
		mustPut(PushContent, "f", "c", "d")
		wantOrder(PushContent, "d", "b", "f", "c", "a", "e")
		// Replacing keeps the place without before or after, and moves with them.
		mustPut(PushContent, "c", "", "")
		wantOrder(PushContent, "d", "b", "f", "c", "a", "e")
		mustPut(PushContent, "c", "d", "")
		wantOrder(PushContent, "c", "d", "b", "f", "a", "e")
		mustPut(PushContent, "c", "", "e")
		wantOrder(PushContent, "d", "b", "f", "a", "e", "c")
		mustPut(PushContent, "c", "c", "") // relative to itself: stays
		wantOrder(PushContent, "d", "b", "f", "a", "e", "c")

		for _, tc := range []struct {
			kind                  PushRuleKind
			ruleID, before, after string
		}{
			{PushContent, "g", "nope", ""},
			{PushContent, "g", "", "nope"},
			{PushContent, "g", "g", ""},              // a new rule cannot be its own anchor
			{PushContent, "g", ".m.rule.master", ""}, // nor a server-default rule
			{PushUnderride, "g", "", ".m.rule.call"}, // of its own kind
			{PushOverride, "g", "a", ""},             // "a" is a content rule
			{PushContent, "c", "nope", "d"},          // before wins, also when it fails
		} {
			if err := put(tc.kind, tc.ruleID, tc.before, tc.after); err != ErrPushRuleAnchor {
				t.Errorf("PutPushRule(%s, %s, %q, %q) = %v, want ErrPushRuleAnchor", tc.kind, tc.ruleID, tc.before, tc.after, err)
			}
		}
		wantOrder(PushContent, "d", "b", "f", "a", "e", "c")

		// Server-default rules cannot be replaced or deleted.
		for _, kind := range []PushRuleKind{PushOverride, PushContent} {
			if err := put(kind, ".m.rule.master", "", ""); err != ErrPushRuleDefault {
				t.Errorf("PutPushRule(%s, .m.rule.master) = %v", kind, err)
			}
		}
		if err := u.DeletePushRule(ctx, alice, PushOverride, ".m.rule.master"); err != ErrPushRuleDefault {
			t.Errorf("DeletePushRule(.m.rule.master) = %v", err)
		}
		for _, tc := range []struct {
			kind PushRuleKind
			id   string
		}{{PushUnderride, ".m.rule.master"}, {PushContent, "nope"}, {PushOverride, "a"}, {"device", "a"}} {
			if err := u.DeletePushRule(ctx, alice, tc.kind, tc.id); err != ErrNotFound {
				t.Errorf("DeletePushRule(%s, %s) = %v, want ErrNotFound", tc.kind, tc.id, err)
			}
			if err := u.SetPushRuleEnabled(ctx, alice, tc.kind, tc.id, false); err != ErrNotFound {
				t.Errorf("SetPushRuleEnabled(%s, %s) = %v, want ErrNotFound", tc.kind, tc.id, err)
			}
			if err := u.SetPushRuleActions(ctx, alice, tc.kind, tc.id, nil); err != ErrNotFound {
				t.Errorf("SetPushRuleActions(%s, %s) = %v, want ErrNotFound", tc.kind, tc.id, err)
			}
			if _, err := u.PushRule(ctx, alice, tc.kind, tc.id); err != ErrNotFound {
				t.Errorf("PushRule(%s, %s) = %v, want ErrNotFound", tc.kind, tc.id, err)
			}
		}
		if err := u.PutPushRule(ctx, alice, PushOverride, PushRule{RuleID: "x", Actions: []PushAction{}}, "", ""); !errors.Is(err, ErrInvalidPushRule) {
			t.Errorf("override rule without conditions: %v", err)
		}
		if err := u.SetPushRuleActions(ctx, alice, PushContent, "a", []PushAction{{Action: "beep"}}); !errors.Is(err, ErrInvalidPushRule) {
			t.Errorf("unknown action: %v", err)
		}

		// Deleting; the others keep their order.
		if err := u.DeletePushRule(ctx, alice, PushContent, "b"); err != nil {
			t.Fatal(err)
		}
		wantOrder(PushContent, "d", "f", "a", "e", "c")
		mustPut(PushContent, "b", "", "a")
		wantOrder(PushContent, "d", "f", "a", "b", "e", "c")

		// Enabled and actions, on the user's rules and on server-default ones.
		if err := u.SetPushRuleEnabled(ctx, alice, PushContent, "a", false); err != nil {
			t.Fatal(err)
		}
		sound := json.RawMessage(`"bing"`)
		if err := u.SetPushRuleActions(ctx, alice, PushContent, "a", []PushAction{{Action: ActionNotify}, {Action: ActionSetTweak, Tweak: TweakSound, Value: sound}, {Action: "coalesce"}}); err != nil {
			t.Fatal(err)
		}
		if err := u.SetPushRuleEnabled(ctx, alice, PushOverride, ".m.rule.master", true); err != nil {
			t.Fatal(err)
		}
		if err := u.SetPushRuleActions(ctx, alice, PushUnderride, ".m.rule.message", []PushAction{{Action: "dont_notify"}}); err != nil {
			t.Fatal(err)
		}
		if err := u.SetPushRuleEnabled(ctx, alice, PushUnderride, ".m.rule.message", false); err != nil {
			t.Fatal(err)
		}
		check := func(kind PushRuleKind, ruleID, want string) {
			t.Helper()
			r, err := u.PushRule(ctx, alice, kind, ruleID)
			if err != nil {
				t.Fatalf("PushRule(%s, %s): %v", kind, ruleID, err)
			}
			if got := mustJSON(t, r); !sameJSON(t, got, want) {
				t.Errorf("PushRule(%s, %s) = %s, want %s", kind, ruleID, got, want)
			}
		}
		check(PushContent, "a", `{"rule_id":"a","default":false,"enabled":false,"pattern":"a","actions":["notify",{"set_tweak":"sound","value":"bing"}]}`)
		check(PushOverride, ".m.rule.master", `{"rule_id":".m.rule.master","default":true,"enabled":true,"conditions":[],"actions":[]}`)
		check(PushUnderride, ".m.rule.message", `{"rule_id":".m.rule.message","default":true,"enabled":false,"conditions":[{"kind":"event_match","key":"type","pattern":"m.room.message"}],"actions":[]}`)
		// Replacing a rule keeps its enabled state and takes the new actions.
		mustPut(PushContent, "a", "", "")
		check(PushContent, "a", `{"rule_id":"a","default":false,"enabled":false,"pattern":"a","actions":["notify"]}`)
		wantOrder(PushContent, "d", "f", "a", "b", "e", "c")

		// Each kind has its own rules; the master rule stays above the user's override rules,
		// which come before the other server-default ones.
		mustPut(PushOverride, "a", "", "")
		mustPut(PushRoom, "!room:test.local", "", "")
		mustPut(PushSender, "@carol:test.local", "", "")
		mustPut(PushUnderride, "u", "", "")
		rs, _ = u.PushRules(ctx, alice)
		if got := ruleIDs(rs, PushOverride); len(got) != 11 || got[0] != masterRuleID || got[1] != "a" || got[2] != ".m.rule.suppress_notices" {
			t.Errorf("override order: %v", got)
		}
		if got := ruleIDs(rs, PushUnderride); len(got) != 6 || got[0] != "u" || got[1] != ".m.rule.call" {
			t.Errorf("underride order: %v", got)
		}
		if got := mustJSON(t, rs.Rule(PushRoom, "!room:test.local")); !sameJSON(t, got, `{"rule_id":"!room:test.local","default":false,"enabled":true,"actions":["notify"]}`) {
			t.Errorf("room rule: %s", got)
		}
		wantOrder(PushSender, "@carol:test.local")

		// Bob's rules are his own; other servers' users have none here.
		rs, err = u.PushRules(ctx, bob)
		if err != nil || !sameJSON(t, mustJSON(t, rs), strings.ReplaceAll(specDefaultRules, "@alice:", "@bob:")) {
			t.Errorf("bob's rules: %s %v", mustJSON(t, rs), err)
		}
		if _, err := u.PushRules(ctx, "@alice:elsewhere.example"); err != ErrNotFound {
			t.Errorf("remote user's rules: %v", err)
		}
		if err := u.SetPushRuleEnabled(ctx, "@alice:elsewhere.example", PushOverride, masterRuleID, true); err != ErrNotFound {
			t.Errorf("remote user's change: %v", err)
		}
		if err := u.SetPushRuleEnabled(ctx, "@nobody:test.local", PushOverride, masterRuleID, true); err != ErrNotFound {
			t.Errorf("unknown user's change: %v", err)
		}
	})
}

// TestPushRulesAccountData checks that every change writes the ruleset to the account data
// stream and wakes the user's waiters, and that the whole account data has the current rules.
func TestPushRulesAccountData(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		n := notifier.New()
		defer n.Close()
		u, _ := newUsers(t, db, Options{Notifier: n})
		ctx := t.Context()
		alice, bob := mustAccount(t, u, "alice", "").UserID, mustAccount(t, u, "bob", "").UserID

		// A user who never changed a rule gets the server-default ones from position 0.
		all, since, err := u.AccountDataSince(ctx, alice, 0)
		if err != nil || len(all) != 1 || all[0].Type != PushRulesType || all[0].RoomID != "" || all[0].Position != 0 || since != 0 {
			t.Fatalf("AccountDataSince(0) = %+v, %d, %v", all, since, err)
		}
		if !sameJSON(t, all[0].Content, `{"global":`+specDefaultRules+`}`) {
			t.Errorf("m.push_rules = %s", all[0].Content)
		}

		changes := []func() error{
			func() error {
				return u.PutPushRule(ctx, alice, PushRoom, PushRule{RuleID: "!r:test.local", Actions: []PushAction{}}, "", "")
			},
			func() error { return u.SetPushRuleEnabled(ctx, alice, PushRoom, "!r:test.local", false) },
			func() error {
				return u.SetPushRuleActions(ctx, alice, PushRoom, "!r:test.local", []PushAction{{Action: ActionNotify}})
			},
			func() error { return u.SetPushRuleEnabled(ctx, alice, PushOverride, masterRuleID, true) },
			func() error {
				return u.SetPushRuleActions(ctx, alice, PushOverride, masterRuleID, []PushAction{{Action: ActionNotify}})
			},
			func() error { return u.DeletePushRule(ctx, alice, PushRoom, "!r:test.local") },
		}
		for i, change := range changes {
			woken := make(chan error, 1)
			go func() {
				wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				woken <- n.Wait(wctx, map[string]int64{StreamAccountData: since}, UserKey(alice))
			}()
			if err := change(); err != nil {
				t.Fatalf("change %d: %v", i, err)
			}
			if err := <-woken; err != nil {
				t.Fatalf("change %d woke nobody: %v", i, err)
			}
			got, next, err := u.AccountDataSince(ctx, alice, since)
			if err != nil || len(got) != 1 || got[0].Type != PushRulesType || got[0].Position != next || next != since+1 {
				t.Fatalf("change %d: AccountDataSince(%d) = %+v, %d, %v", i, since, got, next, err)
			}
			rs, _ := u.PushRules(ctx, alice)
			if !sameJSON(t, got[0].Content, `{"global":`+string(mustJSON(t, rs))+`}`) {
				t.Errorf("change %d: m.push_rules = %s", i, got[0].Content)
			}
			since = next
		}
		// A failed change writes nothing.
		if err := u.DeletePushRule(ctx, alice, PushRoom, "!r:test.local"); err != ErrNotFound {
			t.Fatal(err)
		}
		if pos, _ := db.StreamPosition(ctx, StreamAccountData); pos != since {
			t.Errorf("a failed change moved the stream to %d from %d", pos, since)
		}
		// From 0, the stored entry is listed once, with its position.
		all, _, _ = u.AccountDataSince(ctx, alice, 0)
		if len(all) != 1 || all[0].Position != since {
			t.Errorf("AccountDataSince(0) after changes = %+v", all)
		}
		// Bob was not concerned.
		if bobs, _, _ := u.AccountDataSince(ctx, bob, 1); len(bobs) != 0 {
			t.Errorf("bob's account data: %+v", bobs)
		}
	})
}

// TestPushRulesConcurrentChanges checks that concurrent changes of one user's rules all land,
// in the tables and in the account data written last.
func TestPushRulesConcurrentChanges(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{})
		ctx := t.Context()
		alice := mustAccount(t, u, "alice", "").UserID
		const writers, each = 4, 5
		var wg sync.WaitGroup
		errs := make(chan error, writers*each)
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					r := PushRule{RuleID: fmt.Sprintf("r%d.%d", w, i), Pattern: "x", Actions: []PushAction{}}
					if err := u.PutPushRule(ctx, alice, PushContent, r, "", ""); err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		rs, _ := u.PushRules(ctx, alice)
		if got := len(rs.Content); got != writers*each {
			t.Errorf("%d content rules, want %d", got, writers*each)
		}
		if stored := storedPushRules(t, u, alice); len(stored.Content) != writers*each {
			t.Errorf("m.push_rules has %d content rules, want %d", len(stored.Content), writers*each)
		}
	})
}

func TestPushRulesSizeLimit(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{})
		ctx := t.Context()
		alice := mustAccount(t, u, "alice", "").UserID
		pattern := strings.Repeat("p", 60<<10)
		var err error
		n := 0
		for ; n < 20 && err == nil; n++ {
			err = u.PutPushRule(ctx, alice, PushContent, PushRule{RuleID: fmt.Sprint(n), Pattern: pattern, Actions: []PushAction{}}, "", "")
		}
		if err != ErrPushRulesTooLarge || n < 8 {
			t.Fatalf("rule %d: %v, want ErrPushRulesTooLarge after some", n, err)
		}
		rs, _ := u.PushRules(ctx, alice)
		if len(rs.Content) != n-1 {
			t.Errorf("%d rules kept, want %d", len(rs.Content), n-1)
		}
		// Shrinking is always possible.
		if err := u.DeletePushRule(ctx, alice, PushContent, "0"); err != nil {
			t.Error(err)
		}
	})
}
