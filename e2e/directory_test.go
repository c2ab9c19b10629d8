package e2e

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/userapi"
)

// dirCall sends a raw request as c (or without a token for a nil c) to a client API path under v3.
func dirCall(t *testing.T, s *Server, c *mautrix.Client, method string, body string, parts ...string) (int, []byte) {
	t.Helper()
	var hdr []string
	if c != nil {
		hdr = bearer(c)
	}
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	status, _, out := do(t, method, clientURL(s, parts...), b, hdr...)
	return status, out
}

// putState sends a state event and fails the test if it is refused.
func putState(t *testing.T, c *mautrix.Client, roomID id.RoomID, typ string, stateKey string, content any) {
	t.Helper()
	if _, err := c.SendStateEvent(ctx(t), roomID, event.Type{Type: typ, Class: event.StateEventType}, stateKey, content); err != nil {
		t.Fatalf("send %s: %v", typ, err)
	}
}

// mustJoin joins c to a room and fails the test if it cannot.
func mustJoin(t *testing.T, c *mautrix.Client, roomID id.RoomID) {
	t.Helper()
	if _, err := c.JoinRoomByID(ctx(t), roomID); err != nil {
		t.Fatalf("%s joins %s: %v", c.UserID, roomID, err)
	}
}

// newAdminUser creates a server admin and returns a client logged in as them.
func newAdminUser(t *testing.T, s *Server, localpart string) *mautrix.Client {
	t.Helper()
	return s.NewAccount(t, userapi.NewAccount{Localpart: localpart, Password: "password", Admin: true})
}

// TestRoomAliases creates, resolves, lists and deletes aliases, with every refusal.
func TestRoomAliases(t *testing.T) {
	s := Start(t)
	alice, bob, carol := s.NewUser(t, "alice"), s.NewUser(t, "bob"), s.NewUser(t, "carol")
	admin := newAdminUser(t, s, "admin")
	roomID := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	room := `{"room_id":"` + string(roomID) + `"}`

	st, body := dirCall(t, s, alice, "PUT", room, "directory", "room", "#a:localhost")
	wantOK(t, st, body, `{}`)
	// Resolving needs no access token.
	st, body = dirCall(t, s, nil, "GET", "", "directory", "room", "#a:localhost")
	wantOK(t, st, body, `{"room_id":"`+string(roomID)+`","servers":["localhost"]}`)
	if resp, err := bob.ResolveAlias(ctx(t), "#a:localhost"); err != nil || resp.RoomID != roomID {
		t.Fatalf("resolve through mautrix: %v %v", resp, err)
	}

	// Refusals of PUT.
	st, body = dirCall(t, s, alice, "PUT", room, "directory", "room", "#a:localhost")
	wantError(t, st, body, http.StatusConflict, "M_ROOM_IN_USE")
	for _, bad := range []string{"a:localhost", "#nocolon", "#:localhost", "#a:bad server", "#a\x00:localhost"} {
		st, body = dirCall(t, s, alice, "PUT", room, "directory", "room", bad)
		wantError(t, st, body, http.StatusBadRequest, "M_INVALID_PARAM")
	}
	st, body = dirCall(t, s, alice, "PUT", room, "directory", "room", "#a:other.example.org")
	wantError(t, st, body, http.StatusBadRequest, "M_INVALID_PARAM")
	st, body = dirCall(t, s, alice, "PUT", `{}`, "directory", "room", "#b:localhost")
	wantError(t, st, body, http.StatusBadRequest, "M_MISSING_PARAM")
	st, body = dirCall(t, s, alice, "PUT", `{"room_id":"nope"}`, "directory", "room", "#b:localhost")
	wantError(t, st, body, http.StatusBadRequest, "M_INVALID_PARAM")
	st, body = dirCall(t, s, alice, "PUT", `{"room_id":7}`, "directory", "room", "#b:localhost")
	wantError(t, st, body, http.StatusBadRequest, "M_BAD_JSON")
	st, body = dirCall(t, s, alice, "PUT", `{`, "directory", "room", "#b:localhost")
	wantError(t, st, body, http.StatusBadRequest, "M_NOT_JSON")
	st, body = dirCall(t, s, alice, "PUT", `{"room_id":"!unknown:localhost"}`, "directory", "room", "#b:localhost")
	wantError(t, st, body, http.StatusNotFound, "M_NOT_FOUND")
	st, body = dirCall(t, s, bob, "PUT", room, "directory", "room", "#b:localhost")
	wantError(t, st, body, http.StatusForbidden, "M_FORBIDDEN")
	st, body = dirCall(t, s, nil, "PUT", room, "directory", "room", "#b:localhost")
	wantError(t, st, body, http.StatusUnauthorized, "M_MISSING_TOKEN")

	// Refusals of GET.
	st, body = dirCall(t, s, nil, "GET", "", "directory", "room", "#unknown:localhost")
	wantError(t, st, body, http.StatusNotFound, "M_NOT_FOUND")
	st, body = dirCall(t, s, nil, "GET", "", "directory", "room", "#a:other.example.org")
	wantError(t, st, body, http.StatusNotFound, "M_NOT_FOUND")
	st, body = dirCall(t, s, nil, "GET", "", "directory", "room", "a")
	wantError(t, st, body, http.StatusBadRequest, "M_INVALID_PARAM")

	// Joined members may give the room aliases; the local aliases are listed for members only.
	mustJoin(t, bob, roomID)
	if _, err := bob.CreateAlias(ctx(t), "#bob:localhost", roomID); err != nil {
		t.Fatalf("bob's alias: %v", err)
	}
	aliases, err := alice.GetAliases(ctx(t), roomID)
	if err != nil || !slices.Equal(aliases.Aliases, []id.RoomAlias{"#a:localhost", "#bob:localhost"}) {
		t.Fatalf("aliases: %v %v", aliases, err)
	}
	st, body = dirCall(t, s, carol, "GET", "", "rooms", string(roomID), "aliases")
	wantError(t, st, body, http.StatusForbidden, "M_FORBIDDEN")
	st, body = dirCall(t, s, carol, "GET", "", "rooms", "!unknown:localhost", "aliases")
	wantError(t, st, body, http.StatusForbidden, "M_FORBIDDEN")
	st, body = dirCall(t, s, carol, "GET", "", "rooms", "nope", "aliases")
	wantError(t, st, body, http.StatusBadRequest, "M_INVALID_PARAM")
	st, body = dirCall(t, s, admin, "GET", "", "rooms", string(roomID), "aliases")
	wantOK(t, st, body, `{"aliases":["#a:localhost","#bob:localhost"]}`)
	putState(t, alice, roomID, "m.room.history_visibility", "", map[string]string{"history_visibility": "world_readable"})
	st, body = dirCall(t, s, carol, "GET", "", "rooms", string(roomID), "aliases")
	wantOK(t, st, body, `{"aliases":["#a:localhost","#bob:localhost"]}`)
	empty := createRoom(t, alice, &mautrix.ReqCreateRoom{})
	st, body = dirCall(t, s, alice, "GET", "", "rooms", string(empty), "aliases")
	wantOK(t, st, body, `{"aliases":[]}`)

	// Deleting: the creator, an admin, or a member with the power to send m.room.canonical_alias.
	putState(t, alice, roomID, "m.room.canonical_alias", "", map[string]any{"alias": "#a:localhost", "alt_aliases": []string{"#bob:localhost"}})
	mustJoin(t, carol, roomID)
	st, body = dirCall(t, s, carol, "DELETE", "", "directory", "room", "#a:localhost")
	wantError(t, st, body, http.StatusForbidden, "M_FORBIDDEN")
	st, body = dirCall(t, s, bob, "DELETE", "", "directory", "room", "#a:localhost")
	wantError(t, st, body, http.StatusForbidden, "M_FORBIDDEN")
	// alice did not create #bob, but moderates the room; the alias leaves the canonical alias.
	if _, err := alice.DeleteAlias(ctx(t), "#bob:localhost"); err != nil {
		t.Fatalf("moderator deletes: %v", err)
	}
	var canonical event.CanonicalAliasEventContent
	if err := alice.StateEvent(ctx(t), roomID, event.StateCanonicalAlias, "", &canonical); err != nil ||
		canonical.Alias != "#a:localhost" || len(canonical.AltAliases) != 0 {
		t.Fatalf("canonical alias after delete: %+v %v", canonical, err)
	}
	st, body = dirCall(t, s, nil, "GET", "", "directory", "room", "#bob:localhost")
	wantError(t, st, body, http.StatusNotFound, "M_NOT_FOUND")
	st, body = dirCall(t, s, alice, "DELETE", "", "directory", "room", "#bob:localhost")
	wantError(t, st, body, http.StatusNotFound, "M_NOT_FOUND")
	st, body = dirCall(t, s, alice, "DELETE", "", "directory", "room", "#x:other.example.org")
	wantError(t, st, body, http.StatusNotFound, "M_NOT_FOUND")
	st, body = dirCall(t, s, alice, "DELETE", "", "directory", "room", "nope")
	wantError(t, st, body, http.StatusBadRequest, "M_INVALID_PARAM")

	// bob's own alias is his to delete even without power in the room.
	if _, err := bob.CreateAlias(ctx(t), "#bob2:localhost", roomID); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.DeleteAlias(ctx(t), "#bob2:localhost"); err != nil {
		t.Fatalf("creator deletes: %v", err)
	}
	// A server admin may delete any alias, even of a room they are not in.
	if _, err := admin.DeleteAlias(ctx(t), "#a:localhost"); err != nil {
		t.Fatalf("admin deletes: %v", err)
	}
	aliases, err = alice.GetAliases(ctx(t), roomID)
	if err != nil || len(aliases.Aliases) != 0 {
		t.Fatalf("aliases after deletes: %v %v", aliases, err)
	}
}

// TestDirectoryVisibility reads and sets a room's visibility in the published room directory.
func TestDirectoryVisibility(t *testing.T) {
	s := Start(t)
	alice, bob, carol := s.NewUser(t, "alice"), s.NewUser(t, "bob"), s.NewUser(t, "carol")
	admin := newAdminUser(t, s, "admin")
	roomID := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	mustJoin(t, bob, roomID)

	st, body := dirCall(t, s, nil, "GET", "", "directory", "list", "room", string(roomID))
	wantOK(t, st, body, `{"visibility":"private"}`)
	st, body = dirCall(t, s, nil, "GET", "", "directory", "list", "room", "!unknown:localhost")
	wantError(t, st, body, http.StatusNotFound, "M_NOT_FOUND")
	st, body = dirCall(t, s, nil, "GET", "", "directory", "list", "room", "nope")
	wantError(t, st, body, http.StatusBadRequest, "M_INVALID_PARAM")

	st, body = dirCall(t, s, bob, "PUT", `{"visibility":"public"}`, "directory", "list", "room", string(roomID))
	wantError(t, st, body, http.StatusForbidden, "M_FORBIDDEN")
	st, body = dirCall(t, s, carol, "PUT", `{"visibility":"public"}`, "directory", "list", "room", string(roomID))
	wantError(t, st, body, http.StatusForbidden, "M_FORBIDDEN")
	st, body = dirCall(t, s, alice, "PUT", `{"visibility":"secret"}`, "directory", "list", "room", string(roomID))
	wantError(t, st, body, http.StatusBadRequest, "M_INVALID_PARAM")
	st, body = dirCall(t, s, alice, "PUT", `{"visibility":1}`, "directory", "list", "room", string(roomID))
	wantError(t, st, body, http.StatusBadRequest, "M_BAD_JSON")
	st, body = dirCall(t, s, alice, "PUT", `{}`, "directory", "list", "room", "!unknown:localhost")
	wantError(t, st, body, http.StatusNotFound, "M_NOT_FOUND")
	st, body = dirCall(t, s, nil, "PUT", `{}`, "directory", "list", "room", string(roomID))
	wantError(t, st, body, http.StatusUnauthorized, "M_MISSING_TOKEN")

	// No visibility means public.
	st, body = dirCall(t, s, alice, "PUT", `{}`, "directory", "list", "room", string(roomID))
	wantOK(t, st, body, `{}`)
	st, body = dirCall(t, s, nil, "GET", "", "directory", "list", "room", string(roomID))
	wantOK(t, st, body, `{"visibility":"public"}`)
	// A server admin may change it without being in the room.
	st, body = dirCall(t, s, admin, "PUT", `{"visibility":"private"}`, "directory", "list", "room", string(roomID))
	wantOK(t, st, body, `{}`)
	st, body = dirCall(t, s, nil, "GET", "", "directory", "list", "room", string(roomID))
	wantOK(t, st, body, `{"visibility":"private"}`)

	// Rooms created with visibility public start in the directory.
	pub := createRoom(t, alice, &mautrix.ReqCreateRoom{Visibility: "public"})
	st, body = dirCall(t, s, nil, "GET", "", "directory", "list", "room", string(pub))
	wantOK(t, st, body, `{"visibility":"public"}`)
}

// publicRoomsPage is the answer of /publicRooms.
type publicRoomsPage struct {
	Chunk     []map[string]any `json:"chunk"`
	NextBatch string           `json:"next_batch"`
	PrevBatch string           `json:"prev_batch"`
	Total     int              `json:"total_room_count_estimate"`
}

func (p *publicRoomsPage) ids() []id.RoomID {
	var out []id.RoomID
	for _, r := range p.Chunk {
		out = append(out, id.RoomID(r["room_id"].(string)))
	}
	return out
}

// fetchPublicRooms fetches a page of /publicRooms; a POST when body is not empty.
func fetchPublicRooms(t *testing.T, s *Server, c *mautrix.Client, query, body string) *publicRoomsPage {
	t.Helper()
	method, b := "GET", []byte(nil)
	if body != "" {
		method, b = "POST", []byte(body)
	}
	var hdr []string
	if c != nil {
		hdr = bearer(c)
	}
	st, _, out := do(t, method, s.URL+"/_matrix/client/v3/publicRooms"+query, b, hdr...)
	if st != http.StatusOK {
		t.Fatalf("%s /publicRooms%s %s: %d %s", method, query, body, st, out)
	}
	var p publicRoomsPage
	if err := json.Unmarshal(out, &p); err != nil || p.Chunk == nil {
		t.Fatalf("publicRooms answer %s: %v", out, err)
	}
	return &p
}

// TestPublicRooms lists, filters and pages through the published room directory.
func TestPublicRooms(t *testing.T) {
	s := Start(t)
	alice, bob, carol := s.NewUser(t, "alice"), s.NewUser(t, "bob"), s.NewUser(t, "carol")
	alpha := createRoom(t, alice, &mautrix.ReqCreateRoom{Visibility: "public", Name: "Alpha", Topic: "The first room", RoomAliasName: "alpha"})
	mustJoin(t, bob, alpha)
	mustJoin(t, carol, alpha)
	beta := createRoom(t, alice, &mautrix.ReqCreateRoom{Visibility: "public", Name: "Beta"})
	mustJoin(t, bob, beta)
	putState(t, alice, beta, "m.room.history_visibility", "", map[string]string{"history_visibility": "world_readable"})
	putState(t, alice, beta, "m.room.guest_access", "", map[string]string{"guest_access": "can_join"})
	putState(t, alice, beta, "m.room.avatar", "", map[string]string{"url": "mxc://localhost/beta"})
	// Only an m.topic HTML representation: no plain-text topic is shown.
	putState(t, alice, beta, "m.room.topic", "", map[string]any{"topic": "<b>bold</b>", "m.topic": map[string]any{"m.text": []map[string]string{{"mimetype": "text/html", "body": "<b>bold</b>"}}}})
	space := createRoom(t, alice, &mautrix.ReqCreateRoom{Visibility: "public", Name: "Gamma space", CreationContent: map[string]any{"type": "m.space"}})
	createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Unlisted"})

	all := fetchPublicRooms(t, s, nil, "", "")
	if got := all.ids(); !slices.Equal(got, []id.RoomID{alpha, beta, space}) || all.Total != 3 || all.NextBatch != "" || all.PrevBatch != "" {
		t.Fatalf("directory: %v (total %d, %q %q)", got, all.Total, all.NextBatch, all.PrevBatch)
	}
	wantJSONValue(t, all.Chunk[0], `{"room_id":"`+string(alpha)+`","name":"Alpha","topic":"The first room","canonical_alias":"#alpha:localhost",
		"num_joined_members":3,"world_readable":false,"guest_can_join":false,"join_rule":"public"}`)
	wantJSONValue(t, all.Chunk[1], `{"room_id":"`+string(beta)+`","name":"Beta","num_joined_members":2,"world_readable":true,
		"guest_can_join":true,"avatar_url":"mxc://localhost/beta","join_rule":"public"}`)
	wantJSONValue(t, all.Chunk[2], `{"room_id":"`+string(space)+`","name":"Gamma space","num_joined_members":1,"world_readable":false,
		"guest_can_join":false,"join_rule":"public","room_type":"m.space"}`)
	if resp, err := bob.PublicRooms(ctx(t), &mautrix.ReqPublicRooms{Server: "localhost"}); err != nil || len(resp.Chunk) != 3 {
		t.Fatalf("through mautrix: %v %v", resp, err)
	}

	// Pages of one room, forwards and back.
	p1 := fetchPublicRooms(t, s, nil, "?limit=1", "")
	if !slices.Equal(p1.ids(), []id.RoomID{alpha}) || p1.NextBatch == "" || p1.PrevBatch != "" || p1.Total != 3 {
		t.Fatalf("page 1: %+v", p1)
	}
	p2 := fetchPublicRooms(t, s, nil, "?limit=1&since="+p1.NextBatch, "")
	if !slices.Equal(p2.ids(), []id.RoomID{beta}) || p2.NextBatch == "" || p2.PrevBatch == "" {
		t.Fatalf("page 2: %+v", p2)
	}
	p3 := fetchPublicRooms(t, s, bob, "", `{"limit":1,"since":"`+p2.NextBatch+`"}`)
	if !slices.Equal(p3.ids(), []id.RoomID{space}) || p3.NextBatch != "" || p3.PrevBatch == "" {
		t.Fatalf("page 3: %+v", p3)
	}
	back := fetchPublicRooms(t, s, nil, "?limit=1&since="+p3.PrevBatch, "")
	if !slices.Equal(back.ids(), []id.RoomID{beta}) {
		t.Fatalf("back from page 3: %+v", back)
	}
	back = fetchPublicRooms(t, s, nil, "?limit=5&since="+p3.PrevBatch, "")
	if !slices.Equal(back.ids(), []id.RoomID{alpha, beta}) || back.PrevBatch != "" || back.NextBatch == "" {
		t.Fatalf("back with a larger limit: %+v", back)
	}

	// Filters.
	for _, tc := range []struct {
		body string
		want []id.RoomID
	}{
		{`{"filter":{"generic_search_term":"alp"}}`, []id.RoomID{alpha}},
		{`{"filter":{"generic_search_term":"FIRST"}}`, []id.RoomID{alpha}},
		{`{"filter":{"generic_search_term":"#alpha:"}}`, []id.RoomID{alpha}},
		{`{"filter":{"generic_search_term":"bold"}}`, nil},
		{`{"filter":{"generic_search_term":"a"}}`, []id.RoomID{alpha, beta, space}},
		{`{"filter":{"room_types":[null]}}`, []id.RoomID{alpha, beta}},
		{`{"filter":{"room_types":["m.space"]}}`, []id.RoomID{space}},
		{`{"filter":{"room_types":[null,"m.space"]}}`, []id.RoomID{alpha, beta, space}},
		{`{"filter":{"room_types":[]}}`, []id.RoomID{alpha, beta, space}},
		{`{"filter":{"room_types":["m.space"],"generic_search_term":"beta"}}`, nil},
		{`{"include_all_networks":true}`, []id.RoomID{alpha, beta, space}},
		{`{"third_party_instance_id":"irc"}`, nil},
		{`{"limit":2}`, []id.RoomID{alpha, beta}},
	} {
		if got := fetchPublicRooms(t, s, carol, "", tc.body).ids(); !slices.Equal(got, tc.want) {
			t.Errorf("POST %s: %v, want %v", tc.body, got, tc.want)
		}
	}
	if got := fetchPublicRooms(t, s, carol, "?server=localhost", `{}`).ids(); len(got) != 3 {
		t.Errorf("server=localhost: %v", got)
	}

	// Refusals.
	for _, tc := range []struct {
		method, query, body string
		status              int
		code                string
	}{
		{"GET", "?limit=-1", "", 400, "M_INVALID_PARAM"},
		{"GET", "?limit=ten", "", 400, "M_INVALID_PARAM"},
		{"GET", "?since=garbage", "", 400, "M_INVALID_PARAM"},
		{"GET", "?server=other.example.org", "", 404, "M_NOT_FOUND"},
		{"GET", "?server=bad%20server", "", 400, "M_INVALID_PARAM"},
		{"GET", "?include_all_networks=maybe", "", 400, "M_INVALID_PARAM"},
		{"POST", "", `{"limit":-5}`, 400, "M_INVALID_PARAM"},
		{"POST", "", `{"limit":"5"}`, 400, "M_BAD_JSON"},
		{"POST", "", `{"since":"!!"}`, 400, "M_INVALID_PARAM"},
		{"POST", "", `{"filter":{"room_types":[1]}}`, 400, "M_BAD_JSON"},
		{"POST", "", `{"include_all_networks":true,"third_party_instance_id":"irc"}`, 400, "M_INVALID_PARAM"},
		{"POST", "", `[]`, 400, "M_BAD_JSON"},
		{"POST", "", `{`, 400, "M_NOT_JSON"},
	} {
		st, _, out := do(t, tc.method, s.URL+"/_matrix/client/v3/publicRooms"+tc.query, []byte(tc.body), bearer(carol)...)
		wantError(t, st, out, tc.status, tc.code)
	}
	st, _, out := do(t, "POST", s.URL+"/_matrix/client/v3/publicRooms", []byte(`{}`))
	wantError(t, st, out, http.StatusUnauthorized, "M_MISSING_TOKEN")
}

// wantJSONValue checks that a decoded JSON object equals want (JSON).
func wantJSONValue(t *testing.T, got map[string]any, want string) {
	t.Helper()
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	wantJSON(t, b, want)
}

// hierarchyPage is the answer of /hierarchy.
type hierarchyPage struct {
	Rooms []struct {
		RoomID        id.RoomID        `json:"room_id"`
		RoomType      string           `json:"room_type"`
		RoomVersion   string           `json:"room_version"`
		Name          string           `json:"name"`
		JoinRule      string           `json:"join_rule"`
		Allowed       []id.RoomID      `json:"allowed_room_ids"`
		ChildrenState []map[string]any `json:"children_state"`
	} `json:"rooms"`
	NextBatch string `json:"next_batch"`
}

func (p *hierarchyPage) ids() []id.RoomID {
	var out []id.RoomID
	for _, r := range p.Rooms {
		out = append(out, r.RoomID)
	}
	return out
}

// fetchHierarchy fetches a page of /hierarchy, failing the test on an error.
func fetchHierarchy(t *testing.T, s *Server, c *mautrix.Client, root id.RoomID, query string) *hierarchyPage {
	t.Helper()
	st, _, out := do(t, "GET", s.URL+"/_matrix/client/v1/rooms/"+string(root)+"/hierarchy"+query, nil, bearer(c)...)
	if st != http.StatusOK {
		t.Fatalf("hierarchy%s: %d %s", query, st, out)
	}
	var p hierarchyPage
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatalf("hierarchy answer %s: %v", out, err)
	}
	return &p
}

// TestSpaceHierarchy walks a space tree with nested spaces, a loop, private, restricted and
// unknown children, as users who see different parts of it.
func TestSpaceHierarchy(t *testing.T) {
	s := Start(t)
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	newSpace := func(name string) id.RoomID {
		return createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: name, CreationContent: map[string]any{"type": "m.space"}})
	}
	root, sub := newSpace("root"), newSpace("sub")
	open := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "open"})
	private := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "private"})
	deep := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "deep"})
	restricted := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "restricted"})
	putState(t, alice, restricted, "m.room.join_rules", "", map[string]any{"join_rule": "restricted",
		"allow": []map[string]string{{"type": "m.room_membership", "room_id": string(root)}}})
	via := []string{"localhost"}
	// The order keys put sub first, then open; the others follow by timestamp.
	putState(t, alice, root, "m.space.child", string(open), map[string]any{"via": via, "order": "b", "suggested": true})
	putState(t, alice, root, "m.space.child", string(sub), map[string]any{"via": via, "order": "a"})
	putState(t, alice, root, "m.space.child", string(private), map[string]any{"via": via})
	putState(t, alice, root, "m.space.child", string(restricted), map[string]any{"via": via})
	putState(t, alice, root, "m.space.child", "!remote:other.example.org", map[string]any{"via": []string{"other.example.org"}})
	putState(t, alice, root, "m.space.child", string(deep), map[string]any{}) // no via: not a child
	putState(t, alice, sub, "m.space.child", string(deep), map[string]any{"via": via})
	putState(t, alice, sub, "m.space.child", string(root), map[string]any{"via": via}) // a loop

	full := fetchHierarchy(t, s, alice, root, "")
	if got, want := full.ids(), []id.RoomID{root, sub, deep, open, private, restricted}; !slices.Equal(got, want) || full.NextBatch != "" {
		t.Fatalf("alice's hierarchy: %v, want %v (next %q)", got, want, full.NextBatch)
	}
	r0 := full.Rooms[0]
	if r0.RoomType != "m.space" || r0.Name != "root" || r0.RoomVersion == "" || len(r0.ChildrenState) != 5 {
		t.Fatalf("root entry: %+v", r0)
	}
	first := r0.ChildrenState[0]
	if first["type"] != "m.space.child" || first["state_key"] != string(sub) || first["sender"] != string(alice.UserID) || first["origin_server_ts"] == nil {
		t.Fatalf("first child event: %v", first)
	}
	if len(full.Rooms[2].ChildrenState) != 0 || full.Rooms[2].ChildrenState == nil {
		t.Fatalf("a room that is not a space has children_state []: %+v", full.Rooms[2])
	}
	if r := full.Rooms[5]; r.JoinRule != "restricted" || !slices.Equal(r.Allowed, []id.RoomID{root}) {
		t.Fatalf("restricted entry: %+v", r)
	}

	// bob sees the public rooms; the restricted one once he is in the space it names.
	if got, want := fetchHierarchy(t, s, bob, root, "").ids(), []id.RoomID{root, sub, deep, open}; !slices.Equal(got, want) {
		t.Fatalf("bob's hierarchy: %v, want %v", got, want)
	}
	mustJoin(t, bob, root)
	if got, want := fetchHierarchy(t, s, bob, root, "").ids(), []id.RoomID{root, sub, deep, open, restricted}; !slices.Equal(got, want) {
		t.Fatalf("bob's hierarchy as a member of the space: %v, want %v", got, want)
	}
	resp, err := bob.Hierarchy(ctx(t), root, &mautrix.ReqHierarchy{})
	if err != nil || len(resp.Rooms) != 5 {
		t.Fatalf("through mautrix: %v %v", resp, err)
	}

	for _, tc := range []struct {
		query string
		want  []id.RoomID
	}{
		{"?max_depth=0", []id.RoomID{root}},
		{"?max_depth=1", []id.RoomID{root, sub, open, private, restricted}},
		{"?suggested_only=true", []id.RoomID{root, open}},
		{"?suggested_only=false&max_depth=99", []id.RoomID{root, sub, deep, open, private, restricted}},
	} {
		if got := fetchHierarchy(t, s, alice, root, tc.query).ids(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.query, got, tc.want)
		}
	}
	// Starting at a room that is not a space gives that room alone.
	if got := fetchHierarchy(t, s, alice, open, "").ids(); !slices.Equal(got, []id.RoomID{open}) {
		t.Errorf("hierarchy of a plain room: %v", got)
	}

	// Pages of two rooms give the whole walk.
	var paged []id.RoomID
	page := fetchHierarchy(t, s, alice, root, "?limit=2")
	for i := 0; ; i++ {
		paged = append(paged, page.ids()...)
		if page.NextBatch == "" || i > 5 {
			break
		}
		page = fetchHierarchy(t, s, alice, root, "?limit=2&from="+page.NextBatch)
	}
	if !slices.Equal(paged, full.ids()) {
		t.Fatalf("paged: %v, want %v", paged, full.ids())
	}
	next := fetchHierarchy(t, s, alice, root, "?limit=2&max_depth=3").NextBatch

	// Refusals.
	carol := s.NewUser(t, "carol")
	for _, tc := range []struct {
		who    *mautrix.Client
		room   string
		query  string
		status int
		code   string
	}{
		{alice, string(root), "?limit=0", 400, "M_INVALID_PARAM"},
		{alice, string(root), "?limit=x", 400, "M_INVALID_PARAM"},
		{alice, string(root), "?max_depth=-1", 400, "M_INVALID_PARAM"},
		{alice, string(root), "?suggested_only=yes", 400, "M_INVALID_PARAM"},
		{alice, string(root), "?from=garbage", 400, "M_INVALID_PARAM"},
		{alice, string(root), "?limit=2&max_depth=3&suggested_only=true&from=" + next, 400, "M_INVALID_PARAM"},
		{alice, string(root), "?limit=2&max_depth=2&from=" + next, 400, "M_INVALID_PARAM"},
		{alice, string(sub), "?limit=2&max_depth=3&from=" + next, 400, "M_INVALID_PARAM"},
		{alice, "nope", "", 400, "M_INVALID_PARAM"},
		{carol, string(private), "", 403, "M_FORBIDDEN"},
		{carol, "!unknown:localhost", "", 403, "M_FORBIDDEN"},
		{nil, string(root), "", 401, "M_MISSING_TOKEN"},
	} {
		var hdr []string
		if tc.who != nil {
			hdr = bearer(tc.who)
		}
		st, _, out := do(t, "GET", s.URL+"/_matrix/client/v1/rooms/"+tc.room+"/hierarchy"+tc.query, nil, hdr...)
		wantError(t, st, out, tc.status, tc.code)
	}
	// A banned user sees not even a public space.
	if _, err := alice.BanUser(ctx(t), root, &mautrix.ReqBanUser{UserID: carol.UserID}); err != nil {
		t.Fatal(err)
	}
	st, _, out := do(t, "GET", s.URL+"/_matrix/client/v1/rooms/"+string(root)+"/hierarchy", nil, bearer(carol)...)
	wantError(t, st, out, http.StatusForbidden, "M_FORBIDDEN")
}
