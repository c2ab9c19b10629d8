package e2e

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/pushrules"
)

// pushURL is the URL of a push rule path under /pushrules/, its parts percent-encoded.
func pushURL(s *Server, parts ...string) string {
	return clientURL(s, append([]string{"pushrules"}, parts...)...)
}

// ruleIDsOf lists the rule IDs of one kind of a ruleset answer.
func ruleIDsOf(t *testing.T, body []byte, kind string) []string {
	t.Helper()
	var rs map[string][]struct {
		RuleID string `json:"rule_id"`
	}
	if err := json.Unmarshal(body, &rs); err != nil {
		t.Fatalf("ruleset %s: %v", body, err)
	}
	ids := []string{}
	for _, r := range rs[kind] {
		ids = append(ids, r.RuleID)
	}
	return ids
}

var (
	defaultOverride = []string{".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me",
		".m.rule.member_event", ".m.rule.is_user_mention", ".m.rule.is_room_mention", ".m.rule.tombstone",
		".m.rule.reaction", ".m.rule.room.server_acl", ".m.rule.suppress_edits"}
	defaultUnderride = []string{".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one",
		".m.rule.message", ".m.rule.encrypted"}
)

// TestPushRulesDefault reads a new user's ruleset the ways clients do.
func TestPushRulesDefault(t *testing.T) {
	s := Start(t)
	alice := s.NewUser(t, "alice")
	c := ctx(t)

	// What matrix-js-sdk asks before its first /sync.
	status, _, body := do(t, "GET", s.URL+"/_matrix/client/v3/pushrules/", nil, bearer(alice)...)
	if status != 200 {
		t.Fatalf("GET /pushrules/: %d %s", status, body)
	}
	var all struct {
		Global json.RawMessage `json:"global"`
	}
	if err := json.Unmarshal(body, &all); err != nil || len(all.Global) == 0 {
		t.Fatalf("GET /pushrules/: %s", body)
	}
	global := all.Global
	for _, kind := range []string{"content", "room", "sender"} {
		if !strings.Contains(string(global), `"`+kind+`":[]`) {
			t.Errorf("%s is not an empty list: %s", kind, global)
		}
	}
	if got := ruleIDsOf(t, global, "override"); !reflect.DeepEqual(got, defaultOverride) {
		t.Errorf("override rules %v", got)
	}
	if got := ruleIDsOf(t, global, "underride"); !reflect.DeepEqual(got, defaultUnderride) {
		t.Errorf("underride rules %v", got)
	}
	// The same ruleset at /pushrules/global/, also under r0; each kind at /pushrules/global/{kind}/.
	for _, u := range []string{s.URL + "/_matrix/client/v3/pushrules/global/", s.URL + "/_matrix/client/r0/pushrules/global/"} {
		status, _, body := do(t, "GET", u, nil, bearer(alice)...)
		wantOK(t, status, body, string(global))
	}
	status, _, body = do(t, "GET", s.URL+"/_matrix/client/v3/pushrules/global/underride/", nil, bearer(alice)...)
	var rules []struct {
		RuleID string `json:"rule_id"`
	}
	if status != 200 || json.Unmarshal(body, &rules) != nil || len(rules) != len(defaultUnderride) || rules[0].RuleID != defaultUnderride[0] {
		t.Fatalf("GET /pushrules/global/underride/: %d %s", status, body)
	}
	// Paths that name no ruleset, kind or rule: 404 without the slash the spec has, 400 for
	// incomplete rule paths, as other servers answer.
	for path, want := range map[string]int{"": 404, "/global": 400, "/global/room": 400, "/not_a_scope/": 400,
		"/global/not_a_kind/": 400, "/global/override/.m.rule.master/not_an_attr": 400} {
		status, _, body := do(t, "GET", s.URL+"/_matrix/client/v3/pushrules"+path, nil, bearer(alice)...)
		if status != want || !json.Valid(body) {
			t.Errorf("GET /pushrules%s: %d %s, want %d", path, status, body, want)
		}
	}
	for _, path := range []string{"/", "/global", "/global/room", "/global/room/"} {
		status, _, body := do(t, "PUT", s.URL+"/_matrix/client/v3/pushrules"+path, []byte(`{"actions":["notify"]}`), bearer(alice)...)
		if status != 400 || !json.Valid(body) {
			t.Errorf("PUT /pushrules%s: %d %s, want 400", path, status, body)
		}
	}

	// The user-specific rules name the user.
	for _, tc := range []struct{ kind, id, want string }{
		{"override", ".m.rule.invite_for_me", `{"rule_id":".m.rule.invite_for_me","default":true,"enabled":true,
			"conditions":[{"key":"type","kind":"event_match","pattern":"m.room.member"},
				{"key":"content.membership","kind":"event_match","pattern":"invite"},
				{"key":"state_key","kind":"event_match","pattern":"@alice:localhost"}],
			"actions":["notify",{"set_tweak":"sound","value":"default"}]}`},
		{"override", ".m.rule.is_user_mention", `{"rule_id":".m.rule.is_user_mention","default":true,"enabled":true,
			"conditions":[{"kind":"event_property_contains","key":"content.m\\.mentions.user_ids","value":"@alice:localhost"}],
			"actions":["notify",{"set_tweak":"sound","value":"default"},{"set_tweak":"highlight"}]}`},
		{"override", ".m.rule.master", `{"rule_id":".m.rule.master","default":true,"enabled":false,"conditions":[],"actions":[]}`},
		{"underride", ".m.rule.call", `{"rule_id":".m.rule.call","default":true,"enabled":true,
			"conditions":[{"key":"type","kind":"event_match","pattern":"m.call.invite"}],
			"actions":["notify",{"set_tweak":"sound","value":"ring"}]}`},
	} {
		status, _, body := do(t, "GET", pushURL(s, "global", tc.kind, tc.id), nil, bearer(alice)...)
		wantOK(t, status, body, tc.want)
	}
	status, _, body = do(t, "GET", pushURL(s, "global", "override", ".m.rule.master", "enabled"), nil, bearer(alice)...)
	wantOK(t, status, body, `{"enabled":false}`)
	status, _, body = do(t, "GET", pushURL(s, "global", "underride", ".m.rule.message", "actions"), nil, bearer(alice)...)
	wantOK(t, status, body, `{"actions":["notify"]}`)

	// A real client library understands it.
	rs, err := alice.GetPushRules(c)
	if err != nil {
		t.Fatalf("mautrix GetPushRules: %v", err)
	}
	if len(rs.Override) != len(defaultOverride) || len(rs.Underride) != len(defaultUnderride) || len(rs.Content) != 0 {
		t.Errorf("mautrix ruleset: %+v", rs)
	}
	rule, err := alice.GetPushRule(c, "global", pushrules.OverrideRule, ".m.rule.suppress_notices")
	if err != nil || rule.RuleID != ".m.rule.suppress_notices" || !rule.Default || len(rule.Conditions) != 1 {
		t.Errorf("mautrix GetPushRule: %+v %v", rule, err)
	}
}

// TestPushRulesEdit adds, orders, replaces, disables and deletes rules, and changes server-default ones.
func TestPushRulesEdit(t *testing.T) {
	s := Start(t)
	alice := s.NewUser(t, "alice")
	bob := s.NewUser(t, "bob")
	c := ctx(t)
	put := func(kind, ruleID, query, body string) {
		t.Helper()
		u := pushURL(s, "global", kind, ruleID) + query
		status, _, resp := do(t, "PUT", u, []byte(body), bearer(alice)...)
		wantOK(t, status, resp, `{}`)
	}
	order := func(kind string, want ...string) {
		t.Helper()
		_, _, body := do(t, "GET", pushURL(s, "global")+"/", nil, bearer(alice)...)
		var got []string
		for _, id := range ruleIDsOf(t, body, kind) {
			if !strings.HasPrefix(id, ".") {
				got = append(got, id)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s rules %v, want %v", kind, got, want)
		}
	}

	// The spec's own examples.
	put("room", "!dj234r78wl45Gh4D:matrix.org", "", `{"actions":[]}`)
	put("sender", "@spambot:matrix.org", "", `{"actions":[]}`)
	put("content", "SSByZWFsbHkgbGlrZSBjYWtl", "", `{"pattern":"cake","actions":["notify",{"set_tweak":"sound","value":"cakealarm.wav"}]}`)
	put("content", "U3BvbmdlIGNha2UgaXMgYmVzdA", "?before=SSByZWFsbHkgbGlrZSBjYWtl", `{"pattern":"cake*lie","actions":["notify"]}`)
	put("override", "U2VlIHlvdSBpbiBUaGUgRHVrZQ", "", `{"conditions":[{"kind":"event_match","key":"content.body","pattern":"beer"},
		{"kind":"room_member_count","is":"<=10"}],"actions":["notify",{"set_tweak":"sound","value":"beeroclock.wav"}]}`)
	order("content", "U3BvbmdlIGNha2UgaXMgYmVzdA", "SSByZWFsbHkgbGlrZSBjYWtl")
	status, _, body := do(t, "GET", pushURL(s, "global", "room", "!dj234r78wl45Gh4D:matrix.org"), nil, bearer(alice)...)
	wantOK(t, status, body, `{"rule_id":"!dj234r78wl45Gh4D:matrix.org","default":false,"enabled":true,"actions":[]}`)
	status, _, body = do(t, "GET", pushURL(s, "global", "content", "U3BvbmdlIGNha2UgaXMgYmVzdA"), nil, bearer(alice)...)
	wantOK(t, status, body, `{"rule_id":"U3BvbmdlIGNha2UgaXMgYmVzdA","default":false,"enabled":true,"pattern":"cake*lie","actions":["notify"]}`)

	// The master rule stays above the user's override rules, which come before the other
	// server-default ones.
	_, _, body = do(t, "GET", pushURL(s)+"/", nil, bearer(alice)...)
	var all struct {
		Global json.RawMessage `json:"global"`
	}
	json.Unmarshal(body, &all)
	if got := ruleIDsOf(t, all.Global, "override"); len(got) != 11 || got[0] != ".m.rule.master" || got[1] != "U2VlIHlvdSBpbiBUaGUgRHVrZQ" {
		t.Errorf("override order %v", got)
	}

	// before and after, through mautrix as well; before wins when both are given.
	cond := []pushrules.PushCondition{{Kind: pushrules.KindEventMatch, Key: "content.body", Pattern: "x"}}
	mput := func(id, before, after string) error {
		return alice.PutPushRule(c, "global", pushrules.UnderrideRule, id, &mautrix.ReqPutPushRule{
			Before: before, After: after, Conditions: cond, Actions: []pushrules.PushActionType{pushrules.ActionNotify}})
	}
	for _, step := range []struct{ id, before, after string }{
		{"a", "", ""}, {"b", "", ""}, {"c", "", "b"}, {"d", "a", ""}, {"e", "d", "a"}, {"f", "", "a"},
	} {
		if err := mput(step.id, step.before, step.after); err != nil {
			t.Fatalf("put %+v: %v", step, err)
		}
	}
	order("underride", "b", "c", "e", "d", "a", "f")
	// Replacing keeps the place and the enabled state unless moved.
	status, _, _ = do(t, "PUT", pushURL(s, "global", "underride", "d", "enabled"), []byte(`{"enabled":false}`), bearer(alice)...)
	if status != 200 {
		t.Fatal(status)
	}
	put("underride", "d", "", `{"conditions":[],"actions":["notify"]}`)
	order("underride", "b", "c", "e", "d", "a", "f")
	put("underride", "d", "?after=f", `{"conditions":[],"actions":[]}`)
	order("underride", "b", "c", "e", "a", "f", "d")
	status, _, body = do(t, "GET", pushURL(s, "global", "underride", "d"), nil, bearer(alice)...)
	wantOK(t, status, body, `{"rule_id":"d","default":false,"enabled":false,"conditions":[],"actions":[]}`)
	if err := alice.DeletePushRule(c, "global", pushrules.UnderrideRule, "c"); err != nil {
		t.Fatal(err)
	}
	order("underride", "b", "e", "a", "f", "d")
	status, _, body = do(t, "GET", pushURL(s, "global", "underride", "c"), nil, bearer(alice)...)
	wantError(t, status, body, 404, "M_NOT_FOUND")

	// enabled and actions of the user's rules and of server-default ones; historical actions are
	// stripped.
	for _, tc := range []struct{ kind, id string }{{"underride", "a"}, {"override", ".m.rule.master"}, {"underride", ".m.rule.message"}} {
		for _, enabled := range []string{"true", "false", "true"} {
			status, _, body := do(t, "PUT", pushURL(s, "global", tc.kind, tc.id, "enabled"), []byte(`{"enabled":`+enabled+`}`), bearer(alice)...)
			wantOK(t, status, body, `{}`)
			status, _, body = do(t, "GET", pushURL(s, "global", tc.kind, tc.id, "enabled"), nil, bearer(alice)...)
			wantOK(t, status, body, `{"enabled":`+enabled+`}`)
		}
		actions := `["notify",{"set_tweak":"sound","value":"bing"},{"set_tweak":"highlight","value":false},{"set_tweak":"org.example.led","value":[1,2]}]`
		status, _, body := do(t, "PUT", pushURL(s, "global", tc.kind, tc.id, "actions"), []byte(`{"actions":`+actions+`}`), bearer(alice)...)
		wantOK(t, status, body, `{}`)
		status, _, body = do(t, "GET", pushURL(s, "global", tc.kind, tc.id, "actions"), nil, bearer(alice)...)
		wantOK(t, status, body, `{"actions":`+actions+`}`)
		status, _, body = do(t, "PUT", pushURL(s, "global", tc.kind, tc.id, "actions"), []byte(`{"actions":["dont_notify","coalesce"]}`), bearer(alice)...)
		wantOK(t, status, body, `{}`)
		status, _, body = do(t, "GET", pushURL(s, "global", tc.kind, tc.id, "actions"), nil, bearer(alice)...)
		wantOK(t, status, body, `{"actions":[]}`)
	}
	status, _, body = do(t, "GET", pushURL(s, "global", "override", ".m.rule.master"), nil, bearer(alice)...)
	wantOK(t, status, body, `{"rule_id":".m.rule.master","default":true,"enabled":true,"conditions":[],"actions":[]}`)

	// Bob's rules are untouched by Alice's.
	status, _, body = do(t, "GET", pushURL(s, "global", "override", ".m.rule.master"), nil, bearer(bob)...)
	wantOK(t, status, body, `{"rule_id":".m.rule.master","default":true,"enabled":false,"conditions":[],"actions":[]}`)
	status, _, body = do(t, "GET", pushURL(s, "global", "underride", "a"), nil, bearer(bob)...)
	wantError(t, status, body, 404, "M_NOT_FOUND")

	// Rules outlive a restart.
	s.Restart(t)
	order("underride", "b", "e", "a", "f", "d")
	status, _, body = do(t, "GET", pushURL(s, "global", "override", ".m.rule.master", "enabled"), nil, bearer(alice)...)
	wantOK(t, status, body, `{"enabled":true}`)
}

// TestPushRulesErrors checks every refusal of the push rule endpoints.
func TestPushRulesErrors(t *testing.T) {
	s := Start(t)
	alice := s.NewUser(t, "alice")
	guest := newGuest(t, s, "guest")
	put := func(kind, ruleID, query, body string) (int, []byte) {
		t.Helper()
		status, _, resp := do(t, "PUT", pushURL(s, "global", kind, ruleID)+query, []byte(body), bearer(alice)...)
		return status, resp
	}
	okRule := `{"actions":["notify"],"conditions":[]}`
	if status, body := put("override", "mine", "", okRule); status != 200 {
		t.Fatalf("PUT: %d %s", status, body)
	}

	// Authentication: a token is needed, and guests are not served.
	for _, tc := range []struct{ method, path string }{
		{"GET", "/"}, {"GET", "/global/"}, {"GET", "/global/override/mine"}, {"PUT", "/global/override/mine"},
		{"DELETE", "/global/override/mine"}, {"GET", "/global/override/mine/enabled"}, {"PUT", "/global/override/mine/actions"},
	} {
		u := s.URL + "/_matrix/client/v3/pushrules" + tc.path
		status, _, body := do(t, tc.method, u, []byte(okRule))
		wantError(t, status, body, 401, "M_MISSING_TOKEN")
		status, _, body = do(t, tc.method, u, []byte(okRule), bearer(guest)...)
		wantError(t, status, body, 403, "M_GUEST_ACCESS_FORBIDDEN")
	}

	// Scope and kind of the path.
	for _, p := range []string{"/device/", "/device/override/mine", "/Global/override/mine/enabled"} {
		status, _, body := do(t, "GET", s.URL+"/_matrix/client/v3/pushrules"+p, nil, bearer(alice)...)
		wantError(t, status, body, 400, "M_INVALID_PARAM")
	}
	for _, kind := range []string{"overide", "Override", "global"} {
		for _, method := range []string{"GET", "PUT", "DELETE"} {
			status, _, body := do(t, method, pushURL(s, "global", kind, "mine"), []byte(okRule), bearer(alice)...)
			wantError(t, status, body, 400, "M_INVALID_PARAM")
		}
		status, _, body := do(t, "PUT", pushURL(s, "global", kind, "mine", "enabled"), []byte(`{"enabled":true}`), bearer(alice)...)
		wantError(t, status, body, 400, "M_INVALID_PARAM")
	}
	// Paths that are no endpoint, and methods an endpoint does not have.
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"POST", "/global/override/mine", 405}, {"DELETE", "/global/override/mine/enabled", 405},
		{"GET", "/global/override/mine/enabled/more", 404},
	} {
		status, _, body := do(t, tc.method, s.URL+"/_matrix/client/v3/pushrules"+tc.path, nil, bearer(alice)...)
		wantError(t, status, body, tc.status, "M_UNRECOGNIZED")
	}
	// Incomplete rule paths and unknown attributes are bad parameters.
	for _, tc := range []struct{ method, path string }{
		{"GET", "/global/override/mine/other"}, {"PUT", "/global/"}, {"PUT", "/global/override/"}, {"GET", "/global/override"},
	} {
		status, _, body := do(t, tc.method, s.URL+"/_matrix/client/v3/pushrules"+tc.path, []byte(okRule), bearer(alice)...)
		wantError(t, status, body, 400, "M_INVALID_PARAM")
	}

	// Unknown rules.
	for _, tc := range []struct{ kind, id string }{{"override", "nope"}, {"content", "mine"}, {"underride", ".m.rule.master"}, {"content", ".m.rule.contains_user_name"}} {
		for _, req := range []struct{ method, suffix, body string }{
			{"GET", "", ""}, {"DELETE", "", ""}, {"GET", "/enabled", ""}, {"GET", "/actions", ""},
			{"PUT", "/enabled", `{"enabled":false}`}, {"PUT", "/actions", `{"actions":[]}`},
		} {
			status, _, body := do(t, req.method, pushURL(s, "global", tc.kind, tc.id)+req.suffix, []byte(req.body), bearer(alice)...)
			wantError(t, status, body, 404, "M_NOT_FOUND")
		}
	}

	// Rule IDs a PUT may not use. Room rules take any ID (clients have used aliases); one that
	// is no room's ID matches nothing.
	for _, tc := range []struct{ kind, id string }{
		{"override", ".m.rule.master"}, {"override", ".mine"}, {"content", ".m.rule.contains_user_name"},
		{"override", "a/b"}, {"override", `a\b`}, {"override", strings.Repeat("r", 256)},
		{"sender", "alice"}, {"sender", "!r:localhost"}, {"sender", "@alice:"},
	} {
		status, body := put(tc.kind, tc.id, "", `{"actions":[],"conditions":[],"pattern":"p"}`)
		wantError(t, status, body, 400, "M_INVALID_PARAM")
	}
	// Server-default rules cannot be deleted.
	status, _, body := do(t, "DELETE", pushURL(s, "global", "override", ".m.rule.master"), nil, bearer(alice)...)
	wantError(t, status, body, 400, "M_INVALID_PARAM")

	// before and after: an unknown rule is the spec's 400 M_UNKNOWN; a server-default one is
	// refused outright.
	for _, q := range []string{"?before=nope", "?after=nope", "?before=nope&after=mine", "?after=" + "mine2"} {
		status, body := put("override", "new", q, okRule)
		wantError(t, status, body, 400, "M_UNKNOWN")
	}
	for _, q := range []string{"?before=.m.rule.master", "?after=.m.rule.suppress_notices", "?before=mine&after=.m.rule.master"} {
		status, body := put("override", "new", q, okRule)
		wantError(t, status, body, 400, "M_INVALID_PARAM")
	}
	// A rule of another kind is no anchor.
	if status, body := put("content", "c", "?after=mine", `{"pattern":"p","actions":[]}`); status != 400 {
		t.Errorf("anchor of another kind: %d %s", status, body)
	}

	// Bodies.
	for _, tc := range []struct{ kind, body, code string }{
		{"override", ``, "M_NOT_JSON"},
		{"override", `{"actions":`, "M_NOT_JSON"},
		{"override", `{"actions":[]}x`, "M_NOT_JSON"},
		{"override", `[]`, "M_BAD_JSON"},
		{"override", `null`, "M_BAD_JSON"},
		{"override", `{"conditions":[]}`, "M_BAD_JSON"},
		{"override", `{"conditions":[],"actions":null}`, "M_BAD_JSON"},
		{"override", `{"conditions":[],"actions":"notify"}`, "M_BAD_JSON"},
		{"override", `{"conditions":[],"actions":["beep"]}`, "M_BAD_JSON"},
		{"override", `{"conditions":[],"actions":[{"set_sound":"x"}]}`, "M_BAD_JSON"},
		{"override", `{"conditions":[],"actions":[{"set_tweak":"highlight","value":"yes"}]}`, "M_BAD_JSON"},
		{"override", `{"conditions":[],"actions":[{"set_tweak":"sound","value":1}]}`, "M_BAD_JSON"},
		{"override", `{"actions":[]}`, "M_BAD_JSON"},
		{"underride", `{"actions":[],"conditions":null}`, "M_BAD_JSON"},
		{"override", `{"actions":[],"conditions":{}}`, "M_BAD_JSON"},
		{"override", `{"actions":[],"conditions":[{"key":"type"}]}`, "M_BAD_JSON"},
		{"override", `{"actions":[],"conditions":[{"kind":"event_match","key":"type"}]}`, "M_BAD_JSON"},
		{"override", `{"actions":[],"conditions":[{"kind":"event_property_is","key":"a","value":{"x":1}}]}`, "M_BAD_JSON"},
		{"override", `{"actions":[],"conditions":[{"kind":"room_member_count","is":"two"}]}`, "M_BAD_JSON"},
		{"override", `{"actions":[],"conditions":[{"kind":"event_match","key":"a","pattern":"a\u0000"}]}`, "M_BAD_JSON"},
		{"content", `{"actions":[]}`, "M_BAD_JSON"},
		{"content", `{"actions":[],"pattern":""}`, "M_BAD_JSON"},
		{"content", `{"actions":[],"pattern":7}`, "M_BAD_JSON"},
	} {
		status, body := put(tc.kind, "bodies", "", tc.body)
		if status != 400 || !strings.Contains(string(body), tc.code) {
			t.Errorf("PUT %s %q: %d %s, want 400 %s", tc.kind, tc.body, status, body, tc.code)
		}
	}
	status, body = put("override", "big", "", `{"actions":[],"conditions":[{"kind":"event_match","key":"a","pattern":"`+strings.Repeat("x", 70<<10)+`"}]}`)
	wantError(t, status, body, 413, "M_TOO_LARGE")
	// Nothing refused was stored.
	_, _, all := do(t, "GET", pushURL(s, "global")+"/", nil, bearer(alice)...)
	for _, id := range []string{`"bodies"`, `"new"`, `"big"`, `".mine"`} {
		if strings.Contains(string(all), id) {
			t.Errorf("refused rule %s stored: %s", id, all)
		}
	}

	for _, attr := range []struct{ name, body, code string }{
		{"enabled", `{}`, "M_BAD_JSON"},
		{"enabled", `{"enabled":"yes"}`, "M_BAD_JSON"},
		{"enabled", `{"enabled":null}`, "M_BAD_JSON"},
		{"enabled", `true`, "M_BAD_JSON"},
		{"enabled", `{"enabled":`, "M_NOT_JSON"},
		{"actions", `{}`, "M_BAD_JSON"},
		{"actions", `{"actions":{}}`, "M_BAD_JSON"},
		{"actions", `{"actions":["beep"]}`, "M_BAD_JSON"},
		{"actions", `{"actions":[null]}`, "M_BAD_JSON"},
		{"actions", ``, "M_NOT_JSON"},
	} {
		for _, rule := range []string{"mine", ".m.rule.master"} {
			status, _, body := do(t, "PUT", pushURL(s, "global", "override", rule, attr.name), []byte(attr.body), bearer(alice)...)
			if status != 400 || !strings.Contains(string(body), attr.code) {
				t.Errorf("PUT %s/%s %q: %d %s, want 400 %s", rule, attr.name, attr.body, status, body, attr.code)
			}
		}
	}
}

// pushRulesIn returns the m.push_rules global account data of a sync, nil if none.
func pushRulesIn(t *testing.T, resp *mautrix.RespSync) *pushrules.PushRuleset {
	t.Helper()
	for _, ev := range resp.AccountData.Events {
		if ev.Type == event.AccountDataPushRules {
			rs, err := pushrules.EventToPushRules(ev)
			if err != nil || rs == nil {
				t.Fatalf("m.push_rules %s: %v", ev.Content.VeryRaw, err)
			}
			return rs
		}
	}
	return nil
}

// TestPushRulesSync checks that the ruleset reaches clients as m.push_rules account data: in an
// initial /sync even before any change, and after each change, waking a long-poll.
func TestPushRulesSync(t *testing.T) {
	s := Start(t)
	alice := s.NewUser(t, "alice")
	c := ctx(t)

	first, err := alice.SyncRequest(c, 0, "", "", false, "")
	if err != nil {
		t.Fatal(err)
	}
	rs := pushRulesIn(t, first)
	if rs == nil || len(rs.Override) != len(defaultOverride) || rs.Override[0].RuleID != ".m.rule.master" || rs.Override[0].Enabled {
		t.Fatalf("initial sync: m.push_rules %+v", rs)
	}
	// Nothing new: an incremental sync has no m.push_rules.
	next, err := alice.SyncRequest(c, 0, first.NextBatch, "", false, "")
	if err != nil || pushRulesIn(t, next) != nil {
		t.Fatalf("incremental sync: %+v %v", next.AccountData, err)
	}

	// A change wakes a waiting /sync and arrives whole.
	since := next.NextBatch
	for i, change := range []func() (int, []byte){
		func() (int, []byte) {
			status, _, body := do(t, "PUT", pushURL(s, "global", "override", ".m.rule.master", "enabled"), []byte(`{"enabled":true}`), bearer(alice)...)
			return status, body
		},
		func() (int, []byte) {
			status, _, body := do(t, "PUT", pushURL(s, "global", "content", "cake"), []byte(`{"pattern":"cake","actions":["notify"]}`), bearer(alice)...)
			return status, body
		},
		func() (int, []byte) {
			status, _, body := do(t, "PUT", pushURL(s, "global", "content", "cake", "actions"), []byte(`{"actions":[]}`), bearer(alice)...)
			return status, body
		},
		func() (int, []byte) {
			status, _, body := do(t, "DELETE", pushURL(s, "global", "content", "cake"), nil, bearer(alice)...)
			return status, body
		},
	} {
		type result struct {
			resp *mautrix.RespSync
			err  error
		}
		done := make(chan result, 1)
		go func() {
			resp, err := alice.SyncRequest(c, 30_000, since, "", false, "")
			done <- result{resp, err}
		}()
		// Whether the long-poll is already waiting when the change lands or starts after it, it
		// must answer with the change long before its timeout.
		if status, body := change(); status != 200 {
			t.Fatalf("change %d: %d %s", i, status, body)
		}
		var r result
		select {
		case r = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("change %d did not wake the long-poll", i)
		}
		if r.err != nil {
			t.Fatalf("change %d: sync: %v", i, r.err)
		}
		got := pushRulesIn(t, r.resp)
		if got == nil {
			t.Fatalf("change %d: no m.push_rules in %+v", i, r.resp.AccountData)
		}
		if !got.Override[0].Enabled {
			t.Errorf("change %d: master rule not enabled: %+v", i, got.Override[0])
		}
		var contentRules []string
		for _, r := range got.Content {
			contentRules = append(contentRules, fmt.Sprintf("%s%v", r.RuleID, len(r.Actions)))
		}
		want := map[int]string{0: "[]", 1: "[cake1]", 2: "[cake0]", 3: "[]"}[i]
		if fmt.Sprint(contentRules) != want && !(want == "[]" && contentRules == nil) {
			t.Errorf("change %d: content rules %v, want %s", i, contentRules, want)
		}
		since = r.resp.NextBatch
	}

	// A new initial sync carries the current rules.
	again, err := alice.SyncRequest(c, 0, "", "", false, "")
	if err != nil {
		t.Fatal(err)
	}
	if rs := pushRulesIn(t, again); rs == nil || !rs.Override[0].Enabled || len(rs.Content) != 0 {
		t.Errorf("initial sync after changes: %+v", rs)
	}
	// Clients still cannot write m.push_rules as account data.
	status, _, body := do(t, "PUT", clientURL(s, "user", string(alice.UserID), "account_data", "m.push_rules"), []byte(`{"global":{}}`), bearer(alice)...)
	wantError(t, status, body, 405, "M_BAD_JSON")
}
