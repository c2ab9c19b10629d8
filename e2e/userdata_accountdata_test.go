package e2e

import (
	"strings"
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// v12Room is a room ID without a domain, as room version 12 makes them.
const v12Room = id.RoomID("!31hneApxJ_1o-63DmFrpeqnkFfWppnzWso1JvH3ogLM")

func TestAccountData(t *testing.T) {
	s := Start(t)
	alice := s.NewUser(t, "alice")
	bob := s.NewUser(t, "bob")
	c := ctx(t)
	room := id.RoomID("!room:localhost")

	type config struct {
		Theme string `json:"theme"`
		Size  int    `json:"size"`
	}
	if err := alice.SetAccountData(c, "org.example.config", config{"dark", 3}); err != nil {
		t.Fatalf("set global: %v", err)
	}
	if err := alice.SetRoomAccountData(c, room, "org.example.config", config{"light", 1}); err != nil {
		t.Fatalf("set room: %v", err)
	}
	if err := alice.SetRoomAccountData(c, v12Room, "org.example.config", config{"v12", 12}); err != nil {
		t.Fatalf("set room without domain: %v", err)
	}
	var got config
	if err := alice.GetAccountData(c, "org.example.config", &got); err != nil || got != (config{"dark", 3}) {
		t.Fatalf("global: %+v %v", got, err)
	}
	if err := alice.GetRoomAccountData(c, room, "org.example.config", &got); err != nil || got != (config{"light", 1}) {
		t.Fatalf("room: %+v %v", got, err)
	}
	if err := alice.GetRoomAccountData(c, v12Room, "org.example.config", &got); err != nil || got != (config{"v12", 12}) {
		t.Fatalf("room without domain: %+v %v", got, err)
	}
	// Overwriting replaces the whole content.
	if err := alice.SetAccountData(c, "org.example.config", map[string]any{"other": true}); err != nil {
		t.Fatal(err)
	}
	status, _, body := do(t, "GET", clientURL(s, "user", string(alice.UserID), "account_data", "org.example.config"), nil, bearer(alice)...)
	wantOK(t, status, body, `{"other":true}`)

	// Content comes back as sent; types may hold any character but NUL, which every body refuses.
	content := `{"html":"<&>","nested":{"list":[1,2.5,null,"x"]},"emoji":"🐈","escape":"\u0001"}`
	status, _, body = do(t, "PUT", clientURL(s, "user", string(alice.UserID), "account_data", "org.example.nul"), []byte(`{"nul":"a\u0000b"}`), bearer(alice)...)
	wantError(t, status, body, 400, "M_BAD_JSON")
	for _, typ := range []string{"org.example/with slash", "é.ü"} {
		u := clientURL(s, "user", string(alice.UserID), "account_data", typ)
		status, _, body = do(t, "PUT", u, []byte(content), bearer(alice)...)
		wantOK(t, status, body, `{}`)
		status, _, body = do(t, "GET", u, nil, bearer(alice)...)
		wantOK(t, status, body, content)
	}

	// No fall-back between global and room data, nor between users or rooms.
	status, _, body = do(t, "GET", clientURL(s, "user", string(alice.UserID), "rooms", "!other:localhost", "account_data", "org.example.config"), nil, bearer(alice)...)
	wantError(t, status, body, 404, "M_NOT_FOUND")
	if err := alice.SetRoomAccountData(c, room, "org.example.roomonly", map[string]any{}); err != nil {
		t.Fatal(err)
	}
	status, _, body = do(t, "GET", clientURL(s, "user", string(alice.UserID), "account_data", "org.example.roomonly"), nil, bearer(alice)...)
	wantError(t, status, body, 404, "M_NOT_FOUND")
	status, _, body = do(t, "GET", clientURL(s, "user", string(bob.UserID), "account_data", "org.example.config"), nil, bearer(bob)...)
	wantError(t, status, body, 404, "M_NOT_FOUND")
	status, _, body = do(t, "GET", s.URL+"/_matrix/client/r0/user/@alice:localhost/account_data/org.example.config", nil, bearer(alice)...)
	wantOK(t, status, body, `{"other":true}`)
}

func TestAccountDataErrors(t *testing.T) {
	s := Start(t)
	alice := s.NewUser(t, "alice")
	bob := s.NewUser(t, "bob")
	me := string(alice.UserID)
	global := func(typ string) string { return clientURL(s, "user", me, "account_data", typ) }
	inRoom := func(room, typ string) string { return clientURL(s, "user", me, "rooms", room, "account_data", typ) }

	for _, u := range []string{global("org.example"), inRoom("!r:localhost", "org.example")} {
		for _, method := range []string{"GET", "PUT"} {
			status, _, body := do(t, method, u, []byte(`{}`))
			wantError(t, status, body, 401, "M_MISSING_TOKEN")
			// Another user's account data can be neither read nor written.
			status, _, body = do(t, method, u, []byte(`{}`), bearer(bob)...)
			wantError(t, status, body, 403, "M_FORBIDDEN")
		}
		status, _, body := do(t, "DELETE", u, nil, bearer(alice)...)
		wantError(t, status, body, 405, "M_UNRECOGNIZED")
	}

	// Types the server manages are refused with 405 M_BAD_JSON, globally and per room, and can
	// still be read.
	for _, typ := range []string{"m.fully_read", "m.push_rules"} {
		for _, u := range []string{global(typ), inRoom("!r:localhost", typ)} {
			status, _, body := do(t, "PUT", u, []byte(`{"event_id":"$x"}`), bearer(alice)...)
			wantError(t, status, body, 405, "M_BAD_JSON")
			status, _, body = do(t, "GET", u, nil, bearer(alice)...)
			wantError(t, status, body, 404, "M_NOT_FOUND")
		}
	}

	for _, u := range []string{global("org.example"), inRoom("!r:localhost", "org.example")} {
		for _, tc := range []struct{ body, code string }{
			{``, "M_NOT_JSON"},
			{`{"a":`, "M_NOT_JSON"},
			{`{"a":1}x`, "M_NOT_JSON"},
			{`null`, "M_BAD_JSON"},
			{`[]`, "M_BAD_JSON"},
			{`"text"`, "M_BAD_JSON"},
			{`42`, "M_BAD_JSON"},
		} {
			status, _, body := do(t, "PUT", u, []byte(tc.body), bearer(alice)...)
			if status != 400 || !strings.Contains(string(body), tc.code) {
				t.Errorf("PUT %s %q: %d %s, want 400 %s", u, tc.body, status, body, tc.code)
			}
		}
		status, _, body := do(t, "GET", u, nil, bearer(alice)...)
		wantError(t, status, body, 404, "M_NOT_FOUND")
	}

	for _, room := range []string{"room", "#alias:localhost", "@alice:localhost", "!:localhost", "!r:bad_server", "!r:", "!short"} {
		for _, method := range []string{"GET", "PUT"} {
			status, _, body := do(t, method, inRoom(room, "org.example"), []byte(`{}`), bearer(alice)...)
			wantError(t, status, body, 400, "M_INVALID_PARAM")
		}
	}
	for _, typ := range []string{strings.Repeat("t", 256), "a\x00b", "\xff"} {
		status, _, body := do(t, "PUT", global(typ), []byte(`{}`), bearer(alice)...)
		wantError(t, status, body, 400, "M_INVALID_PARAM")
	}
	status, _, body := do(t, "PUT", global(strings.Repeat("t", 255)), []byte(`{}`), bearer(alice)...)
	wantOK(t, status, body, `{}`)
}

func TestTags(t *testing.T) {
	s := Start(t)
	alice := s.NewUser(t, "alice")
	c := ctx(t)
	room := id.RoomID("!room:localhost")

	if err := alice.AddTag(c, room, event.RoomTagFavourite, 0.25); err != nil {
		t.Fatalf("add tag: %v", err)
	}
	if err := alice.AddTag(c, room, "u.work", 1); err != nil {
		t.Fatalf("add tag: %v", err)
	}
	if err := alice.AddTagWithCustomData(c, room, "u.later", map[string]any{"org.example.note": "x"}); err != nil {
		t.Fatalf("add tag without order: %v", err)
	}
	if err := alice.AddTag(c, v12Room, event.RoomTagLowPriority, 0); err != nil {
		t.Fatalf("add tag in room without domain: %v", err)
	}
	tags, err := alice.GetTags(c, room)
	if err != nil || len(tags.Tags) != 3 || tags.Tags[event.RoomTagFavourite].Order != "0.25" || tags.Tags["u.work"].Order != "1" || tags.Tags["u.later"].Order != "" {
		t.Fatalf("tags: %+v %v", tags, err)
	}
	// The tags are the room account data event m.tag, which /sync delivers.
	tagsURL := clientURL(s, "user", string(alice.UserID), "rooms", string(room), "tags")
	want := `{"tags":{"m.favourite":{"order":0.25},"u.work":{"order":1},"u.later":{"org.example.note":"x"}}}`
	status, _, body := do(t, "GET", tagsURL, nil, bearer(alice)...)
	wantOK(t, status, body, want)
	status, _, body = do(t, "GET", clientURL(s, "user", string(alice.UserID), "rooms", string(room), "account_data", "m.tag"), nil, bearer(alice)...)
	wantOK(t, status, body, want)

	// Setting a tag again replaces its object.
	if err := alice.AddTag(c, room, "u.work", 0.5); err != nil {
		t.Fatal(err)
	}
	// Removing a tag, twice, and one that never was, all succeed.
	for range 2 {
		if err := alice.RemoveTag(c, room, event.RoomTagFavourite); err != nil {
			t.Fatalf("remove tag: %v", err)
		}
	}
	if err := alice.RemoveTag(c, room, "u.never"); err != nil {
		t.Fatalf("remove missing tag: %v", err)
	}
	status, _, body = do(t, "GET", tagsURL, nil, bearer(alice)...)
	wantOK(t, status, body, `{"tags":{"u.work":{"order":0.5},"u.later":{"org.example.note":"x"}}}`)

	// A room without tags has an empty object, not null.
	status, _, body = do(t, "GET", clientURL(s, "user", string(alice.UserID), "rooms", "!none:localhost", "tags"), nil, bearer(alice)...)
	if status != 200 || string(body) != `{"tags":{}}` {
		t.Fatalf("no tags: %d %s", status, body)
	}
	status, _, body = do(t, "GET", clientURL(s, "user", string(alice.UserID), "rooms", string(v12Room), "tags"), nil, bearer(alice)...)
	wantOK(t, status, body, `{"tags":{"m.lowpriority":{"order":0}}}`)

	// m.tag content set directly with the wrong shape: entries that are not objects are
	// ignored, other keys survive tag changes.
	odd := clientURL(s, "user", string(alice.UserID), "rooms", "!odd:localhost", "account_data", "m.tag")
	status, _, body = do(t, "PUT", odd, []byte(`{"tags":{"bad":1,"good":{}},"org.example":true}`), bearer(alice)...)
	wantOK(t, status, body, `{}`)
	oddTags := clientURL(s, "user", string(alice.UserID), "rooms", "!odd:localhost", "tags")
	status, _, body = do(t, "GET", oddTags, nil, bearer(alice)...)
	wantOK(t, status, body, `{"tags":{"good":{}}}`)
	status, _, body = do(t, "PUT", oddTags+"/u.new", []byte(`{"order":0.75}`), bearer(alice)...)
	wantOK(t, status, body, `{}`)
	status, _, body = do(t, "GET", odd, nil, bearer(alice)...)
	wantOK(t, status, body, `{"tags":{"good":{},"u.new":{"order":0.75}},"org.example":true}`)
	status, _, body = do(t, "PUT", odd, []byte(`{"tags":"none"}`), bearer(alice)...)
	wantOK(t, status, body, `{}`)
	status, _, body = do(t, "GET", oddTags, nil, bearer(alice)...)
	wantOK(t, status, body, `{"tags":{}}`)
}

func TestTagErrors(t *testing.T) {
	s := Start(t)
	alice := s.NewUser(t, "alice")
	bob := s.NewUser(t, "bob")
	tagURL := func(room, tag string) string {
		return clientURL(s, "user", string(alice.UserID), "rooms", room, "tags", tag)
	}
	tagsOf := func(room string) string { return clientURL(s, "user", string(alice.UserID), "rooms", room, "tags") }
	tagsURL := tagsOf("!r:localhost")

	for _, tc := range []struct {
		method string
		url    func(room string) string
	}{
		{"GET", tagsOf},
		{"PUT", func(room string) string { return tagURL(room, "u.x") }},
		{"DELETE", func(room string) string { return tagURL(room, "u.x") }},
	} {
		status, _, body := do(t, tc.method, tc.url("!r:localhost"), []byte(`{}`))
		wantError(t, status, body, 401, "M_MISSING_TOKEN")
		status, _, body = do(t, tc.method, tc.url("!r:localhost"), []byte(`{}`), bearer(bob)...)
		wantError(t, status, body, 403, "M_FORBIDDEN")
		status, _, body = do(t, tc.method, tc.url("not-a-room"), []byte(`{}`), bearer(alice)...)
		wantError(t, status, body, 400, "M_INVALID_PARAM")
	}

	for _, tc := range []struct{ body, code string }{
		{``, "M_NOT_JSON"},
		{`{`, "M_NOT_JSON"},
		{`[]`, "M_BAD_JSON"},
		{`null`, "M_BAD_JSON"},
		{`{"order":"0.5"}`, "M_BAD_JSON"},
		{`{"order":null}`, "M_BAD_JSON"},
		{`{"order":1.5}`, "M_BAD_JSON"},
		{`{"order":-0.1}`, "M_BAD_JSON"},
		{`{"order":1e400}`, "M_BAD_JSON"},
	} {
		status, _, body := do(t, "PUT", tagURL("!r:localhost", "u.x"), []byte(tc.body), bearer(alice)...)
		if status != 400 || !strings.Contains(string(body), tc.code) {
			t.Errorf("PUT tag %q: %d %s, want 400 %s", tc.body, status, body, tc.code)
		}
	}
	// "The name of a tag MUST NOT exceed 255 bytes."
	status, _, body := do(t, "PUT", tagURL("!r:localhost", "u."+strings.Repeat("é", 127)), []byte(`{}`), bearer(alice)...)
	wantError(t, status, body, 400, "M_INVALID_PARAM")
	status, _, body = do(t, "PUT", tagURL("!r:localhost", "u."+strings.Repeat("é", 126)+"x"), []byte(`{"order":5e-01}`), bearer(alice)...)
	wantOK(t, status, body, `{}`)
	status, _, body = do(t, "GET", tagsURL, nil, bearer(alice)...)
	wantOK(t, status, body, `{"tags":{"u.`+strings.Repeat("é", 126)+`x":{"order":0.5}}}`)
	status, _, body = do(t, "POST", tagURL("!r:localhost", "u.x"), []byte(`{}`), bearer(alice)...)
	wantError(t, status, body, 405, "M_UNRECOGNIZED")
}
