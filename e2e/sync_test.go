package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// syncOnce runs one /sync with an inline or stored filter.
func syncOnce(t *testing.T, c *mautrix.Client, since, filter string, timeout int) *mautrix.RespSync {
	t.Helper()
	resp, err := c.SyncRequest(context.Background(), timeout, since, filter, false, "")
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return resp
}

// timelineBodies returns the bodies of the messages of a room's timeline.
func timelineBodies(resp *mautrix.RespSync, room id.RoomID) []string {
	jr := resp.Rooms.Join[room]
	if jr == nil {
		return nil
	}
	return bodies(jr.Timeline.Events)
}

// TestSyncBasics walks a client through an initial sync, an incremental one, a long-poll that a
// message wakes, and the invite and leave sections.
func TestSyncBasics(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	room := createRoom(t, alice, &mautrix.ReqCreateRoom{Name: "sync room"})
	sendBody(t, alice, room, "first")

	initial := syncOnce(t, alice, "", "", 0)
	jr := initial.Rooms.Join[room]
	if jr == nil {
		t.Fatalf("initial sync lacks the room: %+v", initial.Rooms)
	}
	if got := timelineBodies(initial, room); fmt.Sprint(got) != "[first]" {
		t.Fatalf("initial timeline: %v", got)
	}
	hasName := false
	for _, ev := range append(jr.State.Events, jr.Timeline.Events...) {
		hasName = hasName || ev.Type == event.StateRoomName
	}
	if !hasName || jr.Summary.JoinedMemberCount == nil || *jr.Summary.JoinedMemberCount != 1 {
		t.Fatalf("initial state or summary: name %v, summary %+v", hasName, jr.Summary)
	}

	// Nothing new: an incremental sync without timeout comes back empty.
	empty := syncOnce(t, alice, initial.NextBatch, "", 0)
	if len(empty.Rooms.Join) != 0 {
		t.Fatalf("nothing new, yet rooms: %+v", empty.Rooms.Join)
	}

	// A long-poll returns when a message arrives.
	done := make(chan *mautrix.RespSync, 1)
	go func() {
		// The long-poll may also return for other news of alice's (her own presence,
		// re-announced when the presence component sees her join): poll on, as clients do.
		since := initial.NextBatch
		for {
			resp, err := alice.SyncRequest(ctx, 10_000, since, "", false, "")
			if err != nil {
				t.Errorf("long-poll: %v", err)
				done <- nil
				return
			}
			if jr := resp.Rooms.Join[room]; jr != nil && len(jr.Timeline.Events) > 0 || resp.NextBatch == since {
				done <- resp
				return
			}
			since = resp.NextBatch
		}
	}()
	time.Sleep(50 * time.Millisecond) // let the long-poll start waiting; it would also see the message if not
	start := time.Now()
	sendBody(t, alice, room, "second")
	var woke *mautrix.RespSync
	select {
	case woke = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the long-poll did not return")
	}
	if woke == nil {
		t.FailNow()
	}
	if got := timelineBodies(woke, room); fmt.Sprint(got) != "[second]" {
		raw, _ := json.Marshal(woke)
		t.Fatalf("incremental timeline: %v in %s", got, raw)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("the long-poll took %v", time.Since(start))
	}

	// bob is invited: the invite section, then the join section after joining.
	if _, err := alice.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: bob.UserID}); err != nil {
		t.Fatal(err)
	}
	bobSync := syncOnce(t, bob, "", "", 0)
	inv := bobSync.Rooms.Invite[room]
	if inv == nil || len(inv.State.Events) == 0 {
		t.Fatalf("bob's invite: %+v", bobSync.Rooms)
	}
	if _, err := bob.JoinRoomByID(ctx, room); err != nil {
		t.Fatal(err)
	}
	bobSync2 := syncOnce(t, bob, bobSync.NextBatch, "", 0)
	if bobSync2.Rooms.Join[room] == nil {
		t.Fatalf("bob's join: %+v", bobSync2.Rooms)
	}
	// Shared history: bob sees the room's earlier messages once joined.
	if got := timelineBodies(bobSync2, room); len(got) == 0 {
		t.Fatalf("bob's timeline after joining: %v", got)
	}
	if _, err := bob.LeaveRoom(ctx, room); err != nil {
		t.Fatal(err)
	}
	bobSync3 := syncOnce(t, bob, bobSync2.NextBatch, "", 0)
	if bobSync3.Rooms.Leave[room] == nil {
		t.Fatalf("bob's leave: %+v", bobSync3.Rooms)
	}

	// Account data set now arrives incrementally.
	if err := alice.SetAccountData(ctx, "com.example.test", map[string]any{"x": 1}); err != nil {
		t.Fatal(err)
	}
	ad := syncOnce(t, alice, woke.NextBatch, "", 0)
	found := false
	for _, ev := range ad.AccountData.Events {
		found = found || ev.Type.Type == "com.example.test"
	}
	if !found {
		t.Fatalf("account data not synced: %+v", ad.AccountData)
	}

	// Bad input.
	_, err := alice.SyncRequest(ctx, 0, "garbage", "", false, "")
	wantErrCode(t, err, http.StatusBadRequest, "M_INVALID_PARAM")
	_, err = alice.SyncRequest(ctx, 0, "", "no-such-filter", false, "")
	wantErrCode(t, err, http.StatusBadRequest, "M_INVALID_PARAM")
}

// TestSyncLimitedAndLazy checks a gappy timeline (limited, prev_batch, state in the gap) and
// lazy-loaded members.
func TestSyncLimitedAndLazy(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	room := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	filter, _ := json.Marshal(map[string]any{"room": map[string]any{
		"timeline": map[string]any{"limit": 3},
		"state":    map[string]any{"lazy_load_members": true},
	}})
	first := syncOnce(t, alice, "", string(filter), 0)
	if _, err := bob.JoinRoomByID(ctx, room); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendStateEvent(ctx, room, event.StateTopic, "", map[string]any{"topic": "gap topic"}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		sendBody(t, alice, room, fmt.Sprint("m", i))
	}
	resp := syncOnce(t, alice, first.NextBatch, string(filter), 0)
	jr := resp.Rooms.Join[room]
	if jr == nil || !jr.Timeline.Limited || len(jr.Timeline.Events) != 3 || jr.Timeline.PrevBatch == "" {
		t.Fatalf("gappy timeline: %+v", jr)
	}
	var topic, bobMember bool
	for _, ev := range jr.State.Events {
		topic = topic || ev.Type == event.StateTopic
		bobMember = bobMember || (ev.Type == event.StateMember && ev.GetStateKey() == string(bob.UserID))
	}
	if !topic {
		t.Fatal("the topic changed in the gap is not in state")
	}
	if bobMember {
		t.Fatal("lazy loading sent bob's member event though bob sent nothing in the timeline")
	}
	// prev_batch pages back into the gap.
	page, err := alice.Messages(ctx, room, jr.Timeline.PrevBatch, "", mautrix.DirectionBackward, nil, 2)
	if err != nil || fmt.Sprint(bodies(page.Chunk)) != "[m1 m0]" {
		t.Fatalf("paging from prev_batch: %v %v", bodies(page.Chunk), err)
	}
	// bob speaks: his member event is lazy-loaded.
	sendBody(t, bob, room, "hi")
	resp2 := syncOnce(t, alice, resp.NextBatch, string(filter), 0)
	bobMember = false
	for _, ev := range resp2.Rooms.Join[room].State.Events {
		bobMember = bobMember || (ev.Type == event.StateMember && ev.GetStateKey() == string(bob.UserID))
	}
	if !bobMember {
		t.Fatal("bob's member event was not lazy-loaded with his message")
	}
}

// TestSyncFilters applies room filters, include_leave, full_state, event_fields and
// event_format to /sync.
func TestSyncFilters(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice := s.NewUser(t, "alice")
	keep := createRoom(t, alice, &mautrix.ReqCreateRoom{Name: "keep"})
	skip := createRoom(t, alice, &mautrix.ReqCreateRoom{Name: "skip"})
	gone := createRoom(t, alice, &mautrix.ReqCreateRoom{Name: "gone"})
	sendBody(t, alice, keep, "kept")
	if _, err := alice.LeaveRoom(ctx, gone); err != nil {
		t.Fatal(err)
	}
	inline := func(v any) string { raw, _ := json.Marshal(v); return string(raw) }

	resp := syncOnce(t, alice, "", inline(map[string]any{"room": map[string]any{"not_rooms": []id.RoomID{skip}}}), 0)
	if resp.Rooms.Join[keep] == nil || resp.Rooms.Join[skip] != nil || resp.Rooms.Leave[gone] != nil {
		t.Fatalf("not_rooms: join %v, leave %v", len(resp.Rooms.Join), len(resp.Rooms.Leave))
	}
	resp = syncOnce(t, alice, "", inline(map[string]any{"room": map[string]any{"include_leave": true}}), 0)
	if resp.Rooms.Leave[gone] == nil {
		t.Fatal("include_leave did not list the left room")
	}
	// A stored filter with event_fields.
	fid, err := alice.CreateFilter(ctx, &mautrix.Filter{EventFields: []string{"type", "content.body"}})
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Rooms struct {
			Join map[id.RoomID]struct {
				Timeline struct {
					Events []map[string]any `json:"events"`
				} `json:"timeline"`
			} `json:"join"`
		} `json:"rooms"`
	}
	_, err = alice.MakeRequest(ctx, http.MethodGet, alice.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "sync"}, map[string]string{"filter": fid.FilterID}), nil, &raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range raw.Rooms.Join[keep].Timeline.Events {
		if _, ok := ev["event_id"]; ok || ev["type"] == nil {
			t.Fatalf("event_fields kept %v", ev)
		}
	}
	// The federation format carries the PDU's fields.
	_, err = alice.MakeRequest(ctx, http.MethodGet, alice.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "sync"},
		map[string]string{"filter": inline(map[string]any{"event_format": "federation"})}), nil, &raw)
	if err != nil {
		t.Fatal(err)
	}
	evs := raw.Rooms.Join[keep].Timeline.Events
	if len(evs) == 0 || evs[0]["hashes"] == nil || evs[0]["depth"] == nil || evs[0]["event_id"] == nil {
		t.Fatalf("federation format: %v", evs)
	}
	_, err = alice.MakeRequest(ctx, http.MethodGet, alice.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "sync"},
		map[string]string{"filter": inline(map[string]any{"event_format": "xml"})}), nil, nil)
	wantErrCode(t, err, http.StatusBadRequest, "M_INVALID_PARAM")
	// full_state with a since gives the whole state again.
	first := syncOnce(t, alice, "", "", 0)
	full, err := alice.SyncRequest(ctx, 0, first.NextBatch, "", true, "")
	if err != nil || full.Rooms.Join[keep] == nil || len(full.Rooms.Join[keep].State.Events)+len(full.Rooms.Join[keep].Timeline.Events) < 5 {
		t.Fatalf("full_state: %+v %v", full.Rooms.Join[keep], err)
	}
}

// TestSyncNewlyJoinedEphemeral: a user who joins a room gets its existing receipts and typing
// list in the next incremental sync, as an initial sync would give them.
func TestSyncNewlyJoinedEphemeral(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	room := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	msg := sendBody(t, alice, room, "read me")
	if err := alice.SendReceipt(ctx, room, msg, event.ReceiptTypeRead, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.UserTyping(ctx, room, true, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	first := syncOnce(t, bob, "", "", 0)
	if _, err := bob.JoinRoomByID(ctx, room); err != nil {
		t.Fatal(err)
	}
	resp := syncOnce(t, bob, first.NextBatch, "", 0)
	jr := resp.Rooms.Join[room]
	if jr == nil {
		t.Fatal("the joined room is missing")
	}
	var receipt, typing bool
	for _, ev := range jr.Ephemeral.Events {
		receipt = receipt || ev.Type == event.EphemeralEventReceipt
		typing = typing || ev.Type == event.EphemeralEventTyping
	}
	if !receipt || !typing {
		t.Fatalf("ephemeral events of the newly joined room: receipt %v, typing %v", receipt, typing)
	}
}

// TestSyncRoomAccountData: tags and room account data reach the room's account_data section.
func TestSyncRoomAccountData(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice := s.NewUser(t, "alice")
	room := createRoom(t, alice, &mautrix.ReqCreateRoom{})
	first := syncOnce(t, alice, "", "", 0)
	if err := alice.AddTag(ctx, room, "m.favourite", 0.5); err != nil {
		t.Fatal(err)
	}
	if err := alice.SetRoomAccountData(ctx, room, "com.example.room", map[string]any{"y": 2}); err != nil {
		t.Fatal(err)
	}
	resp := syncOnce(t, alice, first.NextBatch, "", 0)
	jr := resp.Rooms.Join[room]
	if jr == nil {
		t.Fatal("room missing")
	}
	var tag, custom bool
	for _, ev := range jr.AccountData.Events {
		tag = tag || ev.Type.Type == "m.tag"
		custom = custom || ev.Type.Type == "com.example.room"
	}
	if !tag || !custom {
		t.Fatalf("room account data: tag %v, custom %v", tag, custom)
	}
}

// TestSyncTokenSurvivesRestart: a token from before a restart still gives exactly what came
// after it.
func TestSyncTokenSurvivesRestart(t *testing.T) {
	s := Start(t)
	alice := s.NewUser(t, "alice")
	room := createRoom(t, alice, &mautrix.ReqCreateRoom{})
	sendBody(t, alice, room, "before")
	first := syncOnce(t, alice, "", "", 0)
	s.Restart(t)
	sendBody(t, alice, room, "after")
	resp := syncOnce(t, alice, first.NextBatch, "", 5000)
	if got := timelineBodies(resp, room); fmt.Sprint(got) != "[after]" {
		t.Fatalf("after a restart: %v", got)
	}
}

// TestSyncSummaryHeroes checks that heroes name only rooms that have no name of their own.
func TestSyncSummaryHeroes(t *testing.T) {
	s := Start(t)
	alice := register(t, s, "alice", "pw")
	bob := register(t, s, "bob", "pw")
	room := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if _, err := bob.JoinRoomByID(ctx(t), room); err != nil {
		t.Fatal(err)
	}
	summary := func() map[string]any {
		t.Helper()
		status, _, body := do(t, "GET", s.URL+"/_matrix/client/v3/sync", nil, "Authorization", "Bearer "+alice.AccessToken)
		var resp struct {
			Rooms struct {
				Join map[id.RoomID]struct {
					Summary map[string]any `json:"summary"`
				} `json:"join"`
			} `json:"rooms"`
		}
		if err := json.Unmarshal(body, &resp); status != 200 || err != nil {
			t.Fatalf("sync: %d %s", status, body)
		}
		return resp.Rooms.Join[room].Summary
	}
	if h, ok := summary()["m.heroes"].([]any); !ok || len(h) != 1 || h[0] != string(bob.UserID) {
		t.Fatalf("unnamed room: %v", summary())
	}
	if _, err := alice.SendStateEvent(ctx(t), room, event.StateRoomName, "", map[string]string{"name": "Named"}); err != nil {
		t.Fatal(err)
	}
	if got := summary(); got["m.heroes"] != nil || got["m.joined_member_count"] != float64(2) {
		t.Fatalf("named room: %v", got)
	}
}

// TestSyncFilteredTimelineReachesBack checks that a timeline filter that hides the latest
// events still finds older matching ones.
func TestSyncFilteredTimelineReachesBack(t *testing.T) {
	s := Start(t)
	alice := register(t, s, "alice", "pw")
	room := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	msg, err := alice.SendMessageEvent(ctx(t), room, event.EventMessage, map[string]string{"msgtype": "m.text", "body": "My message"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		if _, err := alice.SendMessageEvent(ctx(t), room, event.Type{Type: "a.filler", Class: event.MessageEventType}, map[string]int{"n": i}); err != nil {
			t.Fatal(err)
		}
	}
	filter := `{"room":{"timeline":{"limit":1,"types":["m.room.message"]}}}`
	status, _, body := do(t, "GET", s.URL+"/_matrix/client/v3/sync?filter="+url.QueryEscape(filter), nil, "Authorization", "Bearer "+alice.AccessToken)
	var resp struct {
		Rooms struct {
			Join map[id.RoomID]struct {
				Timeline struct {
					Events []struct {
						EventID id.EventID `json:"event_id"`
					} `json:"events"`
					Limited bool `json:"limited"`
				} `json:"timeline"`
			} `json:"join"`
		} `json:"rooms"`
	}
	if err := json.Unmarshal(body, &resp); status != 200 || err != nil {
		t.Fatalf("sync: %d %s", status, body)
	}
	tl := resp.Rooms.Join[room].Timeline
	if len(tl.Events) != 1 || tl.Events[0].EventID != msg.EventID || tl.Limited {
		t.Fatalf("timeline %+v, want only %s, not limited: no older match exists", tl, msg.EventID)
	}
}

// TestSyncJoinAndLeaveInOneBatch checks that a room the user joined and left since the token
// comes with its whole state in the leave section.
func TestSyncJoinAndLeaveInOneBatch(t *testing.T) {
	s := Start(t)
	alice := register(t, s, "alice", "pw")
	bob := register(t, s, "bob", "pw")
	room := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if _, err := alice.SendStateEvent(ctx(t), room, event.Type{Type: "a.test.state", Class: event.StateEventType}, "", map[string]int{"my_key": 1}); err != nil {
		t.Fatal(err)
	}
	filter := `{"room":{"timeline":{"types":[]},"state":{"types":["a.test.state"]},"include_leave":true}}`
	first := syncOnce(t, bob, "", filter, 0)
	if _, err := bob.JoinRoomByID(ctx(t), room); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.LeaveRoom(ctx(t), room); err != nil {
		t.Fatal(err)
	}
	next := syncOnce(t, bob, first.NextBatch, filter, 0)
	lr := next.Rooms.Leave[room]
	if lr == nil || len(lr.State.Events) != 1 || lr.State.Events[0].Type.Type != "a.test.state" {
		t.Fatalf("leave section: %+v", lr)
	}
}

// TestSyncLazyOwnMember checks that a lazy-loading client gets its own member event with the
// whole state, and in later syncs only when it changes.
func TestSyncLazyOwnMember(t *testing.T) {
	s := Start(t)
	alice := register(t, s, "alice", "pw")
	carol := register(t, s, "carol", "pw")
	room := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if _, err := carol.JoinRoomByID(ctx(t), room); err != nil {
		t.Fatal(err)
	}
	filter := `{"room":{"timeline":{"limit":5},"state":{"lazy_load_members":true}}}`
	members := func(resp *mautrix.RespSync) map[string]bool {
		out := map[string]bool{}
		if jr := resp.Rooms.Join[room]; jr != nil {
			for _, ev := range jr.State.Events {
				if ev.Type == event.StateMember {
					out[*ev.StateKey] = true
				}
			}
		}
		return out
	}
	first := syncOnce(t, alice, "", filter, 0)
	if !members(first)[string(alice.UserID)] {
		t.Fatalf("initial sync lacks the user's own member event: %v", members(first))
	}
	for i := range 8 {
		if _, err := carol.SendMessageEvent(ctx(t), room, event.EventMessage, map[string]any{"msgtype": "m.text", "body": fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	next := syncOnce(t, alice, first.NextBatch, filter, 0)
	if m := members(next); m[string(alice.UserID)] || !m[string(carol.UserID)] {
		t.Fatalf("gapped sync's member events: %v", m)
	}
}
