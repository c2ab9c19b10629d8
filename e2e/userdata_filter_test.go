package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

func TestFilters(t *testing.T) {
	s := Start(t)
	alice := s.NewUser(t, "alice")
	bob := s.NewUser(t, "bob")
	c := ctx(t)

	// The kind of filter a bridge or bot uploads.
	filter := &mautrix.Filter{
		EventFields: []string{"type", "content", "sender"},
		EventFormat: mautrix.EventFormatClient,
		Presence:    &mautrix.FilterPart{NotTypes: []event.Type{{Type: "*"}}},
		AccountData: &mautrix.FilterPart{Limit: 20, Types: []event.Type{event.AccountDataDirectChats}},
		Room: &mautrix.RoomFilter{
			IncludeLeave: true,
			NotRooms:     []id.RoomID{"!spam:example.org"},
			Timeline: &mautrix.FilterPart{
				Limit:           50,
				LazyLoadMembers: true,
				NotSenders:      []id.UserID{"@spam:example.org"},
				Types:           []event.Type{event.EventMessage, event.StateMember},
			},
			State: &mautrix.FilterPart{LazyLoadMembers: true, Rooms: []id.RoomID{v12Room}},
		},
	}
	resp, err := alice.CreateFilter(c, filter)
	if err != nil || resp.FilterID == "" || strings.HasPrefix(resp.FilterID, "{") {
		t.Fatalf("create filter: %+v %v", resp, err)
	}
	sent, _ := json.Marshal(filter)
	status, _, body := do(t, "GET", clientURL(s, "user", string(alice.UserID), "filter", resp.FilterID), nil, bearer(alice)...)
	wantOK(t, status, body, string(sent))

	// Unknown keys are kept; limits come back as integers.
	raw := `{"org.example.extension":{"x":[1,2]},"room":{"timeline":{"limit":10.0},"state":null},"event_fields":["<&>"]}`
	status, _, body = do(t, "POST", clientURL(s, "user", string(alice.UserID), "filter"), []byte(raw), bearer(alice)...)
	var created struct {
		FilterID string `json:"filter_id"`
	}
	if err := json.Unmarshal(body, &created); status != 200 || err != nil || created.FilterID == "" {
		t.Fatalf("create raw filter: %d %s", status, body)
	}
	status, _, body = do(t, "GET", s.URL+"/_matrix/client/r0/user/@alice:localhost/filter/"+created.FilterID, nil, bearer(alice)...)
	wantOK(t, status, body, `{"org.example.extension":{"x":[1,2]},"room":{"timeline":{"limit":10},"state":null},"event_fields":["<&>"]}`)
	if !strings.Contains(string(body), `"limit":10}`) {
		t.Errorf("limit not normalised: %s", body)
	}

	// An empty filter is a filter.
	status, _, body = do(t, "POST", clientURL(s, "user", string(bob.UserID), "filter"), []byte(`{}`), bearer(bob)...)
	if err := json.Unmarshal(body, &created); status != 200 || err != nil {
		t.Fatalf("empty filter: %d %s", status, body)
	}
	status, _, body = do(t, "GET", clientURL(s, "user", string(bob.UserID), "filter", created.FilterID), nil, bearer(bob)...)
	wantOK(t, status, body, `{}`)

	// Filters are per user: bob cannot read alice's, not even through his own user ID.
	status, _, body = do(t, "GET", clientURL(s, "user", string(alice.UserID), "filter", resp.FilterID), nil, bearer(bob)...)
	wantError(t, status, body, 403, "M_FORBIDDEN")
	if created.FilterID != resp.FilterID {
		status, _, body = do(t, "GET", clientURL(s, "user", string(bob.UserID), "filter", resp.FilterID), nil, bearer(bob)...)
		wantError(t, status, body, 404, "M_NOT_FOUND")
	}
}

func TestFilterErrors(t *testing.T) {
	s := Start(t)
	alice := s.NewUser(t, "alice")
	bob := s.NewUser(t, "bob")
	create := clientURL(s, "user", string(alice.UserID), "filter")

	status, _, body := do(t, "POST", create, []byte(`{}`))
	wantError(t, status, body, 401, "M_MISSING_TOKEN")
	status, _, body = do(t, "GET", create+"/0", nil)
	wantError(t, status, body, 401, "M_MISSING_TOKEN")
	status, _, body = do(t, "POST", create, []byte(`{}`), bearer(bob)...)
	wantError(t, status, body, 403, "M_FORBIDDEN")
	status, _, body = do(t, "GET", create+"/0", nil, bearer(bob)...)
	wantError(t, status, body, 403, "M_FORBIDDEN")
	status, _, body = do(t, "PUT", create, []byte(`{}`), bearer(alice)...)
	wantError(t, status, body, 405, "M_UNRECOGNIZED")

	for _, filterID := range []string{"0", "999", "abc", "{}", "-1", "00", strings.Repeat("9", 300)} {
		status, _, body := do(t, "GET", clientURL(s, "user", string(alice.UserID), "filter", filterID), nil, bearer(alice)...)
		wantError(t, status, body, 404, "M_NOT_FOUND")
	}
	status, _, body = do(t, "GET", clientURL(s, "user", string(alice.UserID), "filter", "a\x00b"), nil, bearer(alice)...)
	wantError(t, status, body, 400, "M_INVALID_PARAM") // NUL in a path is refused before routing

	for _, tc := range []struct{ body, code, field string }{
		{``, "M_NOT_JSON", ""},
		{`{"room":`, "M_NOT_JSON", ""},
		{`[]`, "M_BAD_JSON", ""},
		{`null`, "M_BAD_JSON", ""},
		{`"filter"`, "M_BAD_JSON", ""},
		{`{"event_fields":"type"}`, "M_BAD_JSON", "event_fields"},
		{`{"event_fields":[1]}`, "M_BAD_JSON", "event_fields[0]"},
		{`{"event_format":"xml"}`, "M_BAD_JSON", "event_format"},
		{`{"presence":true}`, "M_BAD_JSON", "presence"},
		{`{"presence":{"limit":-1}}`, "M_BAD_JSON", "presence.limit"},
		{`{"presence":{"limit":2.5}}`, "M_BAD_JSON", "presence.limit"},
		{`{"presence":{"limit":"5"}}`, "M_BAD_JSON", "presence.limit"},
		{`{"account_data":{"types":"m.direct"}}`, "M_BAD_JSON", "account_data.types"},
		{`{"account_data":{"senders":["bob"]}}`, "M_BAD_JSON", "account_data.senders[0]"},
		{`{"room":{"rooms":["#alias:localhost"]}}`, "M_BAD_JSON", "room.rooms[0]"},
		{`{"room":{"not_rooms":[{}]}}`, "M_BAD_JSON", "room.not_rooms[0]"},
		{`{"room":{"include_leave":1}}`, "M_BAD_JSON", "room.include_leave"},
		{`{"room":{"timeline":{"limit":1e100}}}`, "M_BAD_JSON", "room.timeline.limit"},
		{`{"room":{"timeline":{"not_senders":["@spam"]}}}`, "M_BAD_JSON", "room.timeline.not_senders[0]"},
		{`{"room":{"state":{"lazy_load_members":"true"}}}`, "M_BAD_JSON", "room.state.lazy_load_members"},
		{`{"room":{"ephemeral":{"not_rooms":["!r"]}}}`, "M_BAD_JSON", "room.ephemeral.not_rooms[0]"},
		{`{"room":{"account_data":{"contains_url":0}}}`, "M_BAD_JSON", "room.account_data.contains_url"},
	} {
		status, _, body := do(t, "POST", create, []byte(tc.body), bearer(alice)...)
		if status != 400 || !strings.Contains(string(body), tc.code) || !strings.Contains(string(body), tc.field) {
			t.Errorf("POST filter %s: %d %s, want 400 %s naming %q", tc.body, status, body, tc.code, tc.field)
		}
	}
	// None of them was stored.
	status, _, body = do(t, "GET", create+"/0", nil, bearer(alice)...)
	wantError(t, status, body, 404, "M_NOT_FOUND")
}
