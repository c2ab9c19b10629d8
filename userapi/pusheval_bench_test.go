package userapi

import (
	"fmt"
	"testing"
)

// benchMessage is a plain group message as a client sends it, with unsigned data.
const benchMessage = `{"type": "m.room.message", "sender": "@bob:test.local", "room_id": "!room:test.local",
	"event_id": "$0123456789abcdefghijklmnopqrstuvwxyzABCDEFG", "origin_server_ts": 1700000000000,
	"unsigned": {"age": 1234, "transaction_id": "m1700000000000.0"},
	"content": {"msgtype": "m.text", "body": "Shall we meet for lunch at the usual place around noon?",
		"format": "org.matrix.custom.html",
		"formatted_body": "Shall we meet for <b>lunch</b> at the usual place around noon?",
		"m.mentions": {"user_ids": ["@carol:test.local"]}}}`

// BenchmarkEvaluateDefault is the evaluation of the server-default rules that every member of a
// room without custom rules gets for each new message: all override rules are checked and fail,
// and .m.rule.message decides.
func BenchmarkEvaluateDefault(b *testing.B) {
	ev := pushEvent(b, benchMessage)
	rs := DefaultPushRules(pushAlice)
	pc := &PushContext{MemberCount: 25, SenderPowerLevel: 0}
	if r := rs.Evaluate(ev, pc); r == nil || r.RuleID != ".m.rule.message" {
		b.Fatalf("decided by %v", r)
	}
	b.ReportAllocs()
	for b.Loop() {
		rs.Evaluate(ev, pc)
	}
}

// BenchmarkEvaluateContentRules is the same with 20 keyword (content) rules before the defaults,
// none of which matches: each is searched for in the body.
func BenchmarkEvaluateContentRules(b *testing.B) {
	ev := pushEvent(b, benchMessage)
	rs := DefaultPushRules(pushAlice)
	for i := range 20 {
		pattern := fmt.Sprintf("keyword%d", i)
		if i%4 == 0 {
			pattern = fmt.Sprintf("proj*%d?", i) // some with wildcards
		}
		rs.Content = append(rs.Content, PushRule{RuleID: pattern, Enabled: true, Pattern: pattern,
			Actions: []PushAction{{Action: ActionNotify}, {Action: ActionSetTweak, Tweak: TweakHighlight}}})
	}
	pc := &PushContext{MemberCount: 25, SenderPowerLevel: 0}
	if r := rs.Evaluate(ev, pc); r == nil || r.RuleID != ".m.rule.message" {
		b.Fatalf("decided by %v", r)
	}
	b.ReportAllocs()
	for b.Loop() {
		rs.Evaluate(ev, pc)
	}
}

// BenchmarkNewPushEvent is the flattening done once per event, whatever the number of members.
func BenchmarkNewPushEvent(b *testing.B) {
	data := []byte(benchMessage)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewPushEvent(data); err != nil {
			b.Fatal(err)
		}
	}
}
