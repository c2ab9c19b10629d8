package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestCreateRoomOptions checks that createRoom's options reach the room's state, and its errors.
func TestCreateRoomOptions(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	roomID := createRoom(t, alice, &mautrix.ReqCreateRoom{
		Preset: "trusted_private_chat", Name: "Lounge", Topic: "chat", RoomAliasName: "lounge",
		Invite: []id.UserID{bob.UserID}, IsDirect: true,
		InitialState:       []*event.Event{{Type: event.StateJoinRules, StateKey: ptr(""), Content: event.Content{Raw: map[string]any{"join_rule": "public"}}}},
		PowerLevelOverride: &event.PowerLevelsEventContent{EventsDefault: 5, Users: map[id.UserID]int{alice.UserID: 100}},
		CreationContent:    map[string]any{"m.federate": false},
	})
	var name event.RoomNameEventContent
	if err := bob.StateEvent(ctx, roomID, event.StateRoomName, "", &name); err == nil {
		t.Fatal("an invited user read the state")
	}
	if _, err := bob.JoinRoomByID(ctx, roomID); err != nil {
		t.Fatal(err)
	}
	if err := bob.StateEvent(ctx, roomID, event.StateRoomName, "", &name); err != nil || name.Name != "Lounge" {
		t.Fatalf("name: %+v %v", name, err)
	}
	var jr event.JoinRulesEventContent
	if err := bob.StateEvent(ctx, roomID, event.StateJoinRules, "", &jr); err != nil || jr.JoinRule != "public" {
		t.Fatalf("join rules: %+v %v", jr, err)
	}
	var pl event.PowerLevelsEventContent
	if err := bob.StateEvent(ctx, roomID, event.StatePowerLevels, "", &pl); err != nil || pl.EventsDefault != 5 {
		t.Fatalf("power levels: events_default %d, %v", pl.EventsDefault, err)
	}
	var alias event.CanonicalAliasEventContent
	if err := bob.StateEvent(ctx, roomID, event.StateCanonicalAlias, "", &alias); err != nil || alias.Alias != "#lounge:localhost" {
		t.Fatalf("canonical alias: %+v %v", alias, err)
	}
	var create event.CreateEventContent
	if err := bob.StateEvent(ctx, roomID, event.StateCreate, "", &create); err != nil || create.Federate == nil || *create.Federate {
		t.Fatalf("create: %+v %v", create, err)
	}
	joined, err := bob.JoinRoom(ctx, "#lounge:localhost", nil)
	if err != nil || joined.RoomID != roomID {
		t.Fatalf("join by alias: %v %v", joined, err)
	}

	for _, c := range []struct {
		name   string
		req    map[string]any
		status int
		code   string
	}{
		{"unknown version", map[string]any{"room_version": "99"}, 400, "M_UNSUPPORTED_ROOM_VERSION"},
		{"alias taken", map[string]any{"room_alias_name": "lounge"}, 400, "M_ROOM_IN_USE"},
		{"bad alias", map[string]any{"room_alias_name": "a:b"}, 400, "M_INVALID_PARAM"},
		{"bad preset", map[string]any{"preset": "open"}, 400, "M_INVALID_PARAM"},
		{"bad visibility", map[string]any{"visibility": "secret"}, 400, "M_INVALID_PARAM"},
		{"3pid invite", map[string]any{"invite_3pid": []any{map[string]any{"medium": "email"}}}, 400, "M_UNRECOGNIZED"},
		{"create in initial_state", map[string]any{"initial_state": []any{map[string]any{"type": "m.room.create", "content": map[string]any{}}}}, 400, "M_BAD_JSON"},
		{"unknown invitee", map[string]any{"invite": []string{"@nobody:localhost"}}, 404, "M_NOT_FOUND"},
		{"bad invitee", map[string]any{"invite": []string{"nobody"}}, 400, "M_INVALID_PARAM"},
		{"power levels not an object", map[string]any{"power_level_content_override": 5}, 400, "M_BAD_JSON"},
		{"refused power levels", map[string]any{"power_level_content_override": map[string]any{"users": map[string]any{"@alice:localhost": 0}}, "name": "x"}, 400, "M_BAD_JSON"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := alice.MakeRequest(ctx, http.MethodPost, alice.BuildClientURL("v3", "createRoom"), c.req, nil)
			wantErrCode(t, err, c.status, c.code)
		})
	}
	// A refused createRoom leaves no room behind.
	rooms, err := alice.JoinedRooms(ctx)
	if err != nil || len(rooms.JoinedRooms) != 1 {
		t.Fatalf("alice's rooms after refused creations: %v %v", rooms, err)
	}
}

// TestProfilePropagates changes a display name and finds it in the member events.
func TestProfilePropagates(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice := s.NewUser(t, "alice")
	r1 := createRoom(t, alice, &mautrix.ReqCreateRoom{})
	r2 := createRoom(t, alice, &mautrix.ReqCreateRoom{})
	if err := alice.SetDisplayName(ctx, "Alice A."); err != nil {
		t.Fatal(err)
	}
	for _, r := range []id.RoomID{r1, r2} {
		var m event.MemberEventContent
		if err := alice.StateEvent(ctx, r, event.StateMember, string(alice.UserID), &m); err != nil || m.Displayname != "Alice A." || m.Membership != event.MembershipJoin {
			t.Fatalf("member event in %s: %+v %v", r, m, err)
		}
	}
}

// TestRestrictedAndKnock joins a restricted room through membership of another room, and
// knocks on a knock room.
func TestRestrictedAndKnock(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice, bob, carol := s.NewUser(t, "alice"), s.NewUser(t, "bob"), s.NewUser(t, "carol")
	space := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomVersion: "10"})
	restricted := createRoom(t, alice, &mautrix.ReqCreateRoom{RoomVersion: "10", InitialState: []*event.Event{{
		Type: event.StateJoinRules, StateKey: ptr(""),
		Content: event.Content{Raw: map[string]any{"join_rule": "restricted", "allow": []any{map[string]any{"type": "m.room_membership", "room_id": space}}}},
	}}})
	_, err := bob.JoinRoomByID(ctx, restricted)
	wantErrCode(t, err, http.StatusForbidden, "M_FORBIDDEN")
	if _, err := bob.JoinRoomByID(ctx, space); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoomByID(ctx, restricted); err != nil {
		t.Fatalf("restricted join: %v", err)
	}
	var m map[string]any
	if err := bob.StateEvent(ctx, restricted, event.StateMember, string(bob.UserID), &m); err != nil || m["join_authorised_via_users_server"] != string(alice.UserID) {
		t.Fatalf("restricted member event: %v %v", m, err)
	}

	knockRoom := createRoom(t, alice, &mautrix.ReqCreateRoom{RoomVersion: "7", InitialState: []*event.Event{{
		Type: event.StateJoinRules, StateKey: ptr(""), Content: event.Content{Raw: map[string]any{"join_rule": "knock"}},
	}}})
	if _, err := carol.KnockRoom(ctx, string(knockRoom), &mautrix.ReqKnockRoom{Reason: "let me in"}); err != nil {
		t.Fatalf("knock: %v", err)
	}
	members, err := alice.Members(ctx, knockRoom, mautrix.ReqMembers{Membership: event.MembershipKnock})
	if err != nil || len(members.Chunk) != 1 || members.Chunk[0].GetStateKey() != string(carol.UserID) {
		t.Fatalf("knocking members: %v %v", members, err)
	}
	if _, err := alice.InviteUser(ctx, knockRoom, &mautrix.ReqInviteUser{UserID: carol.UserID}); err != nil {
		t.Fatal(err)
	}
	if _, err := carol.JoinRoomByID(ctx, knockRoom); err != nil {
		t.Fatal(err)
	}
	old := createRoom(t, alice, &mautrix.ReqCreateRoom{RoomVersion: "6", InitialState: []*event.Event{{
		Type: event.StateJoinRules, StateKey: ptr(""), Content: event.Content{Raw: map[string]any{"join_rule": "knock"}},
	}}})
	_, err = carol.KnockRoom(ctx, string(old), nil)
	wantErrCode(t, err, http.StatusForbidden, "M_FORBIDDEN")
}

// TestMembersAndReads covers /members filters and at, /joined_members, /context,
// /timestamp_to_event, reports and canonical alias checks.
func TestMembersAndReads(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice, bob, carol := s.NewUser(t, "alice"), s.NewUser(t, "bob"), s.NewUser(t, "carol")
	roomID := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if _, err := bob.JoinRoomByID(ctx, roomID); err != nil {
		t.Fatal(err)
	}
	msg := sendBody(t, alice, roomID, "hello")
	page, err := alice.Messages(ctx, roomID, "", "", mautrix.DirectionBackward, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := carol.JoinRoomByID(ctx, roomID); err != nil {
		t.Fatal(err)
	}
	all, err := alice.Members(ctx, roomID)
	if err != nil || len(all.Chunk) != 3 {
		t.Fatalf("members: %v %v", all, err)
	}
	before, err := alice.Members(ctx, roomID, mautrix.ReqMembers{At: page.Start})
	if err != nil || len(before.Chunk) != 2 {
		t.Fatalf("members at an earlier token: %d %v", len(before.Chunk), err)
	}
	notJoined, err := alice.Members(ctx, roomID, mautrix.ReqMembers{NotMembership: event.MembershipJoin})
	if err != nil || len(notJoined.Chunk) != 0 {
		t.Fatalf("not_membership: %v %v", notJoined, err)
	}
	_, err = alice.Members(ctx, roomID, mautrix.ReqMembers{Membership: "dancing"})
	wantErrCode(t, err, http.StatusBadRequest, "M_INVALID_PARAM")
	jm, err := carol.JoinedMembers(ctx, roomID)
	if err != nil || len(jm.Joined) != 3 {
		t.Fatalf("joined members: %v %v", jm, err)
	}

	sendBody(t, bob, roomID, "after")
	cx, err := carol.Context(ctx, roomID, msg, nil, 4)
	if err != nil || cx.Event.ID != msg || len(cx.EventsAfter) == 0 || cx.End == "" {
		t.Fatalf("context: %+v %v", cx, err)
	}
	_, err = carol.Context(ctx, roomID, "$nope", nil, 4)
	wantErrCode(t, err, http.StatusNotFound, "M_NOT_FOUND")

	ts, err := carol.TimestampToEvent(ctx, roomID, time.Now().Add(time.Hour), mautrix.DirectionBackward)
	if err != nil || ts.EventID == "" {
		t.Fatalf("timestamp_to_event: %v %v", ts, err)
	}
	_, err = carol.TimestampToEvent(ctx, roomID, time.Now().Add(time.Hour), mautrix.DirectionForward)
	wantErrCode(t, err, http.StatusNotFound, "M_NOT_FOUND")

	if err := carol.ReportEvent(ctx, roomID, msg, "spam"); err != nil {
		t.Fatalf("report: %v", err)
	}
	dave := s.NewUser(t, "dave")
	err = dave.ReportEvent(ctx, roomID, msg, "spam")
	wantErrCode(t, err, http.StatusNotFound, "M_NOT_FOUND")

	_, err = alice.SendStateEvent(ctx, roomID, event.StateCanonicalAlias, "", map[string]any{"alias": "#missing:localhost"})
	wantErrCode(t, err, http.StatusBadRequest, "M_BAD_ALIAS")
	_, err = alice.SendStateEvent(ctx, roomID, event.StateCanonicalAlias, "", map[string]any{"alias": "not an alias"})
	wantErrCode(t, err, http.StatusBadRequest, "M_INVALID_PARAM")

	// Sending state twice with the same content gives the same event.
	first, err := alice.SendStateEvent(ctx, roomID, event.StateTopic, "", map[string]any{"topic": "t"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := alice.SendStateEvent(ctx, roomID, event.StateTopic, "", map[string]any{"topic": "t"})
	if err != nil || second.EventID != first.EventID {
		t.Fatalf("same state twice: %v %v %v", first, second, err)
	}
	// bob (power 0) may not change the topic.
	_, err = bob.SendStateEvent(ctx, roomID, event.StateTopic, "", map[string]any{"topic": "mine"})
	wantErrCode(t, err, http.StatusForbidden, "M_FORBIDDEN")
	// Bodies that are not objects.
	_, err = alice.MakeRequest(ctx, http.MethodPut, alice.BuildClientURL("v3", "rooms", roomID, "send", "m.room.message", "t1"), json.RawMessage(`[1]`), nil)
	wantErrCode(t, err, http.StatusBadRequest, "M_BAD_JSON")
	_, err = alice.MakeRequest(ctx, http.MethodPut, alice.BuildClientURL("v3", "rooms", "not-a-room", "send", "m.room.message", "t2"), map[string]any{}, nil)
	wantErrCode(t, err, http.StatusBadRequest, "M_INVALID_PARAM")
	big := map[string]any{"msgtype": "m.text", "body": strings.Repeat("x", 70_000)}
	_, err = alice.MakeRequest(ctx, http.MethodPut, alice.BuildClientURL("v3", "rooms", roomID, "send", "m.room.message", "t3"), big, nil)
	wantErrCode(t, err, http.StatusRequestEntityTooLarge, "M_TOO_LARGE")
	var full struct {
		EventID id.EventID `json:"event_id"`
		Type    string     `json:"type"`
	}
	if _, err := alice.MakeRequest(ctx, http.MethodGet, alice.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "rooms", roomID, "state", "m.room.topic", ""},
		map[string]string{"format": "event"}), nil, &full); err != nil || full.EventID != first.EventID || full.Type != "m.room.topic" {
		t.Fatalf("state with format=event: %+v %v", full, err)
	}
	var noState any
	_, err = alice.MakeRequest(ctx, http.MethodGet, alice.BuildClientURL("v3", "rooms", roomID, "state", "m.room.tombstone", ""), nil, &noState)
	wantErrCode(t, err, http.StatusNotFound, "M_NOT_FOUND")
}

// TestGuestsAndForget checks guest access to rooms and forgetting a room.
func TestGuestsAndForget(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice := s.NewUser(t, "alice")
	guest := newGuest(t, s, "guest1")
	closed := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	_, err := guest.JoinRoomByID(ctx, closed)
	wantErrCode(t, err, http.StatusForbidden, "M_GUEST_ACCESS_FORBIDDEN")
	open := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", InitialState: []*event.Event{{
		Type: event.StateGuestAccess, StateKey: ptr(""), Content: event.Content{Raw: map[string]any{"guest_access": "can_join"}},
	}}})
	if _, err := guest.JoinRoomByID(ctx, open); err != nil {
		t.Fatalf("guest join: %v", err)
	}

	bob := s.NewUser(t, "bob")
	if _, err := bob.JoinRoomByID(ctx, open); err != nil {
		t.Fatal(err)
	}
	_, err = bob.ForgetRoom(ctx, open)
	wantErrCode(t, err, http.StatusBadRequest, "M_UNKNOWN")
	if _, err := bob.LeaveRoom(ctx, open); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Messages(ctx, open, "", "", mautrix.DirectionBackward, nil, 10); err != nil {
		t.Fatalf("history after leaving: %v", err)
	}
	if _, err := bob.ForgetRoom(ctx, open); err != nil {
		t.Fatal(err)
	}
	_, err = bob.Messages(ctx, open, "", "", mautrix.DirectionBackward, nil, 10)
	wantErrCode(t, err, http.StatusForbidden, "M_FORBIDDEN")
}

// TestJoinCustomContent checks that extra keys of a join request's body go into the member
// event, while the server keeps its own keys.
func TestJoinCustomContent(t *testing.T) {
	s := Start(t)
	alice := register(t, s, "alice", "pw")
	bob := register(t, s, "bob", "pw")
	room := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	status, _, body := do(t, "POST", s.URL+"/_matrix/client/v3/join/"+string(room), []byte(`{"foo":"bar","membership":"leave","reason":"hello"}`),
		"Authorization", "Bearer "+bob.AccessToken)
	if status != 200 {
		t.Fatalf("join: %d %s", status, body)
	}
	var c map[string]any
	if err := bob.StateEvent(ctx(t), room, event.StateMember, string(bob.UserID), &c); err != nil {
		t.Fatal(err)
	}
	if c["foo"] != "bar" || c["membership"] != "join" || c["reason"] != "hello" {
		t.Fatalf("member content %v", c)
	}
	status, _, body = do(t, "POST", s.URL+"/_matrix/client/v3/rooms/"+string(room)+"/join", []byte(`{"reason":5}`),
		"Authorization", "Bearer "+bob.AccessToken)
	wantError(t, status, body, 400, "M_BAD_JSON")
}

// TestMessagesEndAtRoomStart checks that a page reaching the room's start still carries end,
// and that the page after it is empty and has none.
func TestMessagesEndAtRoomStart(t *testing.T) {
	s := Start(t)
	alice := register(t, s, "alice", "pw")
	room := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	hdr := []string{"Authorization", "Bearer " + alice.AccessToken}
	var page struct {
		Start string            `json:"start"`
		End   *string           `json:"end"`
		Chunk []json.RawMessage `json:"chunk"`
	}
	status, _, body := do(t, "GET", s.URL+"/_matrix/client/v3/rooms/"+string(room)+"/messages?dir=b&limit=100", nil, hdr...)
	if err := json.Unmarshal(body, &page); status != 200 || err != nil || len(page.Chunk) == 0 || page.End == nil {
		t.Fatalf("first page: %d %s", status, body)
	}
	status, _, body = do(t, "GET", s.URL+"/_matrix/client/v3/rooms/"+string(room)+"/messages?dir=b&limit=100&from="+*page.End, nil, hdr...)
	page.End, page.Chunk = nil, nil
	if err := json.Unmarshal(body, &page); status != 200 || err != nil || len(page.Chunk) != 0 || page.End != nil {
		t.Fatalf("page past the start: %d %s", status, body)
	}
}

// TestSendWithoutTxnID checks the old POST form of /send: each request sends a new event, and
// content outside canonical JSON's range is refused.
func TestSendWithoutTxnID(t *testing.T) {
	s := Start(t)
	alice := register(t, s, "alice", "pw")
	room := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", RoomVersion: "6"})
	url := s.URL + "/_matrix/client/v3/rooms/" + string(room) + "/send/m.room.message"
	hdr := []string{"Authorization", "Bearer " + alice.AccessToken}
	ids := map[string]bool{}
	for range 2 {
		status, _, body := do(t, "POST", url, []byte(`{"msgtype":"m.text","body":"hi"}`), hdr...)
		var resp struct {
			EventID string `json:"event_id"`
		}
		if err := json.Unmarshal(body, &resp); status != 200 || err != nil || resp.EventID == "" {
			t.Fatalf("POST send: %d %s", status, body)
		}
		ids[resp.EventID] = true
	}
	if len(ids) != 2 {
		t.Fatalf("two requests sent %d events", len(ids))
	}
	for _, bad := range []string{`{"body":9007199254740992}`, `{"body":1.1}`} {
		status, _, body := do(t, "POST", url, []byte(bad), hdr...)
		wantError(t, status, body, 400, "M_BAD_JSON")
	}
}

// TestGuestsLeaveWhenGuestAccessEnds checks that guests are made to leave a room whose
// m.room.guest_access stops letting them join, while other members stay.
func TestGuestsLeaveWhenGuestAccessEnds(t *testing.T) {
	s := Start(t)
	alice := register(t, s, "alice", "pw")
	bob := register(t, s, "bob", "pw")
	guest := newGuest(t, s, "guest1")
	room := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", InitialState: []*event.Event{{
		Type: event.StateGuestAccess, StateKey: ptr(""), Content: event.Content{Raw: map[string]any{"guest_access": "can_join"}},
	}}})
	for _, c := range []*mautrix.Client{guest, bob} {
		if _, err := c.JoinRoomByID(ctx(t), room); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := alice.SendStateEvent(ctx(t), room, event.StateGuestAccess, "", map[string]string{"guest_access": "forbidden"}); err != nil {
		t.Fatal(err)
	}
	members, err := alice.JoinedMembers(ctx(t), room)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := members.Joined[guest.UserID]; ok || len(members.Joined) != 2 {
		t.Fatalf("joined members after guest access ended: %v", members.Joined)
	}
	var c map[string]any
	if err := alice.StateEvent(ctx(t), room, event.StateMember, string(guest.UserID), &c); err != nil || c["membership"] != "leave" {
		t.Fatalf("guest's member event: %v %v", c, err)
	}
}
