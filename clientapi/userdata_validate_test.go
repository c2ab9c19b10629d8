package clientapi

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestNormaliseFilter(t *testing.T) {
	good := []struct{ in, want string }{
		{`{}`, `{}`},
		{`{"event_format":"federation","event_fields":["type","content.body"]}`, `{"event_fields":["type","content.body"],"event_format":"federation"}`},
		{`{"room":{"timeline":{"limit":10.0}}}`, `{"room":{"timeline":{"limit":10}}}`},
		{`{"room":{"timeline":{"limit":1e1}}}`, `{"room":{"timeline":{"limit":10}}}`},
		{`{"presence":{"limit":0,"not_types":["*"]}}`, `{"presence":{"limit":0,"not_types":["*"]}}`},
		{`{"room":{"state":{"lazy_load_members":true,"include_redundant_members":false,"contains_url":true,"unread_thread_notifications":true}}}`,
			`{"room":{"state":{"contains_url":true,"include_redundant_members":false,"lazy_load_members":true,"unread_thread_notifications":true}}}`},
		{`{"room":{"rooms":["!a:example.org","!aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"],"not_rooms":[],"include_leave":true}}`,
			`{"room":{"include_leave":true,"not_rooms":[],"rooms":["!a:example.org","!aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]}}`},
		{`{"account_data":{"senders":["@a:b.c","@Historical User:example.org"]}}`, `{"account_data":{"senders":["@a:b.c","@Historical User:example.org"]}}`},
		// Unknown keys are kept, nulls stand for absent keys, HTML is not escaped.
		{`{"org.example":{"x":1.5},"room":null,"event_fields":["<&>"]}`, `{"event_fields":["<&>"],"org.example":{"x":1.5},"room":null}`},
	}
	for _, tc := range good {
		got, err := normaliseFilter(json.RawMessage(tc.in))
		if err != nil || string(got) != tc.want {
			t.Errorf("normaliseFilter(%s) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}

	bad := []struct{ in, field string }{
		{`[]`, "object"},
		{`null`, "object"},
		{`"x"`, "object"},
		{`{"event_fields":"type"}`, "event_fields"},
		{`{"event_fields":[1]}`, "event_fields[0]"},
		{`{"event_format":"json"}`, "event_format"},
		{`{"event_format":1}`, "event_format"},
		{`{"presence":[]}`, "presence"},
		{`{"presence":{"limit":-1}}`, "presence.limit"},
		{`{"presence":{"limit":1.5}}`, "presence.limit"},
		{`{"presence":{"limit":"10"}}`, "presence.limit"},
		{`{"presence":{"limit":1e300}}`, "presence.limit"},
		{`{"account_data":{"types":[null]}}`, "account_data.types[0]"},
		{`{"account_data":{"senders":["alice"]}}`, "account_data.senders[0]"},
		{`{"account_data":{"not_senders":["@alice"]}}`, "account_data.not_senders[0]"},
		{`{"room":"all"}`, "room"},
		{`{"room":{"rooms":["#alias:example.org"]}}`, "room.rooms[0]"},
		{`{"room":{"not_rooms":["!short"]}}`, "room.not_rooms[0]"},
		{`{"room":{"include_leave":"yes"}}`, "room.include_leave"},
		{`{"room":{"timeline":{"limit":-5}}}`, "room.timeline.limit"},
		{`{"room":{"state":{"lazy_load_members":1}}}`, "room.state.lazy_load_members"},
		{`{"room":{"ephemeral":{"rooms":[1]}}}`, "room.ephemeral.rooms[0]"},
		{`{"room":{"account_data":{"contains_url":"true"}}}`, "room.account_data.contains_url"},
	}
	for _, tc := range bad {
		_, err := normaliseFilter(json.RawMessage(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("normaliseFilter(%s) = %v; want an error naming %s", tc.in, err, tc.field)
		}
	}
}

func FuzzNormaliseFilter(f *testing.F) {
	for _, s := range []string{`{}`, `{"room":{"timeline":{"limit":10}}}`, `{"presence":{"senders":["@a:b"]}}`, `[]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if !json.Valid([]byte(in)) {
			return // ReadJSON refuses these before
		}
		out, err := normaliseFilter(json.RawMessage(in))
		if err != nil {
			return
		}
		// What is stored is valid JSON and stays as it is when normalised again.
		again, err := normaliseFilter(out)
		if err != nil || string(again) != string(out) {
			t.Fatalf("normalised %s to %s, which normalises to %s, %v", in, out, again, err)
		}
	})
}

func TestValidProfileKey(t *testing.T) {
	for _, k := range []string{"displayname", "avatar_url", "m.tz", "org.example.job_title", "com.example-corp.x", "a.b", "m.example_field"} {
		if err := checkProfileKey(k, true); err != nil {
			t.Errorf("%q refused: %v", k, err)
		}
	}
	for _, k := range []string{"", "bio", "Display", "m.", ".m", "a..b", "org.Example.x", "1a.b", "a.1b", "a.b/c", "a.b c", "displayname.", "m.tz\x00"} {
		if checkProfileKey(k, true) == nil {
			t.Errorf("%q accepted", k)
		}
	}
	long := "org.example." + strings.Repeat("a", 300)
	if err := checkProfileKey(long, true); err == nil || !strings.Contains(err.Error(), "M_KEY_TOO_LARGE") {
		t.Errorf("long key: %v", err)
	}
	if err := checkProfileKey(long, false); err == nil || !strings.Contains(err.Error(), "M_INVALID_PARAM") {
		t.Errorf("long key on look-up: %v", err)
	}
}

func TestValidIDs(t *testing.T) {
	rooms := map[string]bool{
		"!abc:example.org":                              true,
		"!abc:example.org:8448":                         true,
		"!abc:[::1]":                                    true,
		"!" + strings.Repeat("A", 43):                   true,
		"!" + strings.Repeat("-", 43):                   true,
		"!" + strings.Repeat("A", 42):                   false,
		"!" + strings.Repeat("+", 43):                   false,
		"!:example.org":                                 false,
		"!abc:":                                         false,
		"!abc:exa mple.org":                             false,
		"abc:example.org":                               false,
		"@abc:example.org":                              false,
		"!a\x00b:example.org":                           false,
		"!" + strings.Repeat("a", 250) + ":example.org": false,
		"":  false,
		"!": false,
	}
	for s, want := range rooms {
		if got := validRoomID(s); got != want {
			t.Errorf("validRoomID(%q) = %v", s, got)
		}
	}
	users := map[string]bool{
		"@alice:example.org":     true,
		"@Alice Old:example.org": true, // historical localparts are still accepted
		"@:example.org":          true,
		"@alice:localhost:8008":  true,
		"alice:example.org":      false,
		"@alice":                 false,
		"@alice:":                false,
		"@alice:exa_mple.org":    false,
		"@a\x00:example.org":     false,
		"@\xff:example.org":      false,
		"@" + strings.Repeat("a", 250) + ":example.org": false,
	}
	for s, want := range users {
		if got := validUserID(s); got != want {
			t.Errorf("validUserID(%q) = %v", s, got)
		}
	}
}
