package e2e

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// ephReceipts is an m.receipt content: event → receipt type → user → receipt.
type ephReceipts map[id.EventID]map[string]map[id.UserID]struct {
	TS       int64  `json:"ts"`
	ThreadID string `json:"thread_id"`
}

// ephEvents returns the content of each ephemeral event of typ in the room.
func ephEvents(t *testing.T, resp *mautrix.RespSync, room id.RoomID, typ string) []json.RawMessage {
	t.Helper()
	jr := resp.Rooms.Join[room]
	if jr == nil {
		return nil
	}
	var out []json.RawMessage
	for _, ev := range jr.Ephemeral.Events {
		if ev.Type.Type == typ {
			out = append(out, ev.Content.VeryRaw)
		}
	}
	return out
}

// ephTypers returns the user_ids of the room's m.typing event, and false without one.
func ephTypers(t *testing.T, resp *mautrix.RespSync, room id.RoomID) ([]id.UserID, bool) {
	t.Helper()
	evs := ephEvents(t, resp, room, "m.typing")
	if len(evs) == 0 {
		return nil, false
	}
	var c struct {
		UserIDs []id.UserID `json:"user_ids"`
	}
	if len(evs) != 1 || json.Unmarshal(evs[0], &c) != nil || c.UserIDs == nil {
		t.Fatalf("m.typing events %s", evs)
	}
	return c.UserIDs, true
}

// ephReceiptsIn returns the room's m.receipt contents.
func ephReceiptsIn(t *testing.T, resp *mautrix.RespSync, room id.RoomID) []ephReceipts {
	t.Helper()
	var out []ephReceipts
	for _, raw := range ephEvents(t, resp, room, "m.receipt") {
		var c ephReceipts
		if err := json.Unmarshal(raw, &c); err != nil {
			t.Fatalf("m.receipt content %s: %v", raw, err)
		}
		out = append(out, c)
	}
	return out
}

// ephSyncUntil long-polls from since until a response satisfies cond, and returns the token
// after it; every response seen is passed to cond.
func ephSyncUntil(t *testing.T, c *mautrix.Client, since string, what string, cond func(*mautrix.RespSync) bool) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp := syncOnce(t, c, since, "", 5000)
		since = resp.NextBatch
		if cond(resp) {
			return since
		}
	}
	t.Fatalf("%s: not seen within 20s", what)
	return ""
}

// ephTypingIs waits until the room's typing list, as c's sync delivers it, is want.
func ephTypingIs(t *testing.T, c *mautrix.Client, since string, room id.RoomID, want ...id.UserID) string {
	t.Helper()
	return ephSyncUntil(t, c, since, "typing list "+strings.Join(idStrings(want), ","), func(resp *mautrix.RespSync) bool {
		got, ok := ephTypers(t, resp, room)
		return ok && slices.Equal(got, want)
	})
}

func idStrings(us []id.UserID) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = string(u)
	}
	return out
}

// ephRoom has alice create a public room that bob joins.
func ephRoom(t *testing.T, alice, bob *mautrix.Client) id.RoomID {
	t.Helper()
	room := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if _, err := bob.JoinRoomByID(context.Background(), room); err != nil {
		t.Fatalf("join: %v", err)
	}
	return room
}

// TestEphemeralTyping: bob's /sync shows alice starting, stopping and timing out, and a
// long-poll wakes for each.
func TestEphemeralTyping(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	room := ephRoom(t, alice, bob)
	since := syncOnce(t, bob, "", "", 0).NextBatch

	// A long-poll that is waiting wakes when alice starts typing.
	done := make(chan *mautrix.RespSync, 1)
	go func() {
		resp, err := bob.SyncRequest(ctx, 10_000, since, "", false, "")
		if err != nil {
			t.Errorf("long-poll: %v", err)
		}
		done <- resp
	}()
	time.Sleep(50 * time.Millisecond) // let the long-poll start waiting; it would also see the typing if not
	start := time.Now()
	if _, err := alice.UserTyping(ctx, room, true, 30*time.Second); err != nil {
		t.Fatalf("typing: %v", err)
	}
	resp := <-done
	t.Logf("typing reached a waiting long-poll in %v", time.Since(start))
	if got, ok := ephTypers(t, resp, room); !ok || !slices.Equal(got, []id.UserID{alice.UserID}) {
		since = ephTypingIs(t, bob, since, room, alice.UserID)
	} else {
		since = resp.NextBatch
	}

	// A new initial sync shows who is typing now.
	if got, ok := ephTypers(t, syncOnce(t, bob, "", "", 0), room); !ok || !slices.Equal(got, []id.UserID{alice.UserID}) {
		t.Fatalf("initial sync typers %v, %v", got, ok)
	}

	if _, err := alice.UserTyping(ctx, room, false, 0); err != nil {
		t.Fatalf("stop typing: %v", err)
	}
	since = ephTypingIs(t, bob, since, room)

	// Typing ends by itself when its timeout passes.
	if _, err := bob.UserTyping(ctx, room, true, 300*time.Millisecond); err != nil {
		t.Fatalf("typing: %v", err)
	}
	since = ephTypingIs(t, alice, since, room, bob.UserID)
	ephTypingIs(t, alice, since, room)
}

// TestEphemeralTypingRestart: a token from before a restart learns that nobody types any more.
func TestEphemeralTypingRestart(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	room := ephRoom(t, alice, bob)
	since := syncOnce(t, bob, "", "", 0).NextBatch
	if _, err := alice.UserTyping(ctx, room, true, time.Hour); err != nil {
		t.Fatalf("typing: %v", err)
	}
	since = ephTypingIs(t, bob, since, room, alice.UserID)
	s.Restart(t)
	ephTypingIs(t, bob, since, room)
}

// TestEphemeralReceipts: public, private and threaded receipts and read markers through /sync,
// and the receipts still there after a restart.
func TestEphemeralReceipts(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	room := ephRoom(t, alice, bob)
	e1, e2 := sendBody(t, alice, room, "one"), sendBody(t, alice, room, "two")
	aliceSince := syncOnce(t, alice, "", "", 0).NextBatch
	bobSince := syncOnce(t, bob, "", "", 0).NextBatch

	if err := bob.SendReceipt(ctx, room, e1, event.ReceiptTypeRead, nil); err != nil {
		t.Fatalf("receipt: %v", err)
	}
	aliceSince = ephSyncUntil(t, alice, aliceSince, "bob's m.read on e1", func(resp *mautrix.RespSync) bool {
		for _, c := range ephReceiptsIn(t, resp, room) {
			if r, ok := c[e1]["m.read"][bob.UserID]; ok && r.TS > 0 && r.ThreadID == "" {
				return true
			}
		}
		return false
	})

	// A private receipt shows in bob's sync only; the public one sent after it reaches alice
	// without it.
	if err := bob.SendReceipt(ctx, room, e2, event.ReceiptTypeReadPrivate, nil); err != nil {
		t.Fatalf("private receipt: %v", err)
	}
	bobSince = ephSyncUntil(t, bob, bobSince, "bob's own private receipt", func(resp *mautrix.RespSync) bool {
		for _, c := range ephReceiptsIn(t, resp, room) {
			if _, ok := c[e2]["m.read.private"][bob.UserID]; ok {
				return true
			}
		}
		return false
	})
	if err := bob.SendReceipt(ctx, room, e2, event.ReceiptTypeRead, nil); err != nil {
		t.Fatalf("receipt: %v", err)
	}
	aliceSince = ephSyncUntil(t, alice, aliceSince, "bob's m.read on e2", func(resp *mautrix.RespSync) bool {
		seen := false
		for _, c := range ephReceiptsIn(t, resp, room) {
			for _, byType := range c {
				if _, ok := byType["m.read.private"]; ok {
					t.Fatalf("alice sees a private receipt: %+v", c)
				}
			}
			_, seen = c[e2]["m.read"][bob.UserID]
		}
		return seen
	})

	// A receipt in a thread carries its thread_id.
	root := sendBody(t, alice, room, "root")
	resp, err := alice.SendMessageEvent(ctx, room, event.EventMessage, map[string]any{"msgtype": "m.text", "body": "in thread",
		"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}})
	if err != nil {
		t.Fatalf("thread reply: %v", err)
	}
	reply := resp.EventID
	if err := bob.SendReceipt(ctx, room, reply, event.ReceiptTypeRead, map[string]any{"thread_id": root}); err != nil {
		t.Fatalf("threaded receipt: %v", err)
	}
	ephSyncUntil(t, alice, aliceSince, "bob's threaded receipt", func(resp *mautrix.RespSync) bool {
		for _, c := range ephReceiptsIn(t, resp, room) {
			if r, ok := c[reply]["m.read"][bob.UserID]; ok {
				if r.ThreadID != string(root) {
					t.Fatalf("threaded receipt has thread_id %q, want %s", r.ThreadID, root)
				}
				return true
			}
		}
		return false
	})

	// read_markers moves m.fully_read, which comes back as room account data.
	if err := bob.SetReadMarkers(ctx, room, &mautrix.ReqSetReadMarkers{FullyRead: e2, Read: e2}); err != nil {
		t.Fatalf("read_markers: %v", err)
	}
	ephSyncUntil(t, bob, bobSince, "m.fully_read account data", func(resp *mautrix.RespSync) bool {
		return ephFullyRead(resp, room) == e2
	})

	// After a restart a new initial sync still has every receipt and the marker.
	s.Restart(t)
	initial := syncOnce(t, alice, "", "", 0)
	found := map[id.EventID]string{}
	for _, c := range ephReceiptsIn(t, initial, room) {
		for ev, byType := range c {
			if r, ok := byType["m.read"][bob.UserID]; ok {
				found[ev] = r.ThreadID
			}
		}
	}
	if th, ok := found[e2]; !ok || th != "" || found[reply] != string(root) {
		t.Fatalf("receipts after restart: %v", found)
	}
	if got := ephFullyRead(syncOnce(t, bob, "", "", 0), room); got != e2 {
		t.Fatalf("m.fully_read after restart: %s", got)
	}
}

// ephFullyRead returns the event of the room's m.fully_read account data in a sync, "" if none.
func ephFullyRead(resp *mautrix.RespSync, room id.RoomID) id.EventID {
	jr := resp.Rooms.Join[room]
	if jr == nil {
		return ""
	}
	for _, ev := range jr.AccountData.Events {
		if ev.Type.Type == "m.fully_read" {
			var c struct {
				EventID id.EventID `json:"event_id"`
			}
			json.Unmarshal(ev.Content.VeryRaw, &c)
			return c.EventID
		}
	}
	return ""
}

// TestEphemeralErrors: each endpoint answers bad requests with the spec's errors.
func TestEphemeralErrors(t *testing.T) {
	s := Start(t)
	alice, bob, carol := s.NewUser(t, "alice"), s.NewUser(t, "bob"), s.NewUser(t, "carol")
	guest := newGuest(t, s, "guest")
	room := ephRoom(t, alice, bob)
	ev := sendBody(t, alice, room, "hello")
	r := string(room)
	for _, tc := range []struct {
		name   string
		as     *mautrix.Client
		method string
		url    string
		body   string
		status int
		code   string
	}{
		{"typing without token", nil, "PUT", clientURL(s, "rooms", r, "typing", string(bob.UserID)), `{"typing":true}`, 401, "M_MISSING_TOKEN"},
		{"typing as a guest", guest, "PUT", clientURL(s, "rooms", r, "typing", string(guest.UserID)), `{"typing":true}`, 403, "M_GUEST_ACCESS_FORBIDDEN"},
		{"typing for another user", bob, "PUT", clientURL(s, "rooms", r, "typing", string(alice.UserID)), `{"typing":true}`, 403, "M_FORBIDDEN"},
		{"typing outside the room", carol, "PUT", clientURL(s, "rooms", r, "typing", string(carol.UserID)), `{"typing":true}`, 403, "M_FORBIDDEN"},
		{"typing without typing", bob, "PUT", clientURL(s, "rooms", r, "typing", string(bob.UserID)), `{}`, 400, "M_MISSING_PARAM"},
		{"typing of the wrong type", bob, "PUT", clientURL(s, "rooms", r, "typing", string(bob.UserID)), `{"typing":1}`, 400, "M_BAD_JSON"},
		{"typing not JSON", bob, "PUT", clientURL(s, "rooms", r, "typing", string(bob.UserID)), `typing`, 400, "M_NOT_JSON"},
		{"typing bad room", bob, "PUT", clientURL(s, "rooms", "room", "typing", string(bob.UserID)), `{"typing":true}`, 400, "M_INVALID_PARAM"},
		{"receipt of an unknown type", bob, "POST", clientURL(s, "rooms", r, "receipt", "m.seen", string(ev)), `{}`, 400, "M_INVALID_PARAM"},
		{"receipt of an unknown event", bob, "POST", clientURL(s, "rooms", r, "receipt", "m.read", "$unknown"), `{}`, 404, "M_NOT_FOUND"},
		{"receipt outside the room", carol, "POST", clientURL(s, "rooms", r, "receipt", "m.read", string(ev)), `{}`, 403, "M_FORBIDDEN"},
		{"receipt with a bad thread_id", bob, "POST", clientURL(s, "rooms", r, "receipt", "m.read", string(ev)), `{"thread_id":""}`, 400, "M_INVALID_PARAM"},
		{"receipt thread_id on m.fully_read", bob, "POST", clientURL(s, "rooms", r, "receipt", "m.fully_read", string(ev)), `{"thread_id":"main"}`, 400, "M_INVALID_PARAM"},
		{"receipt body not JSON", bob, "POST", clientURL(s, "rooms", r, "receipt", "m.read", string(ev)), `{`, 400, "M_NOT_JSON"},
		{"read_markers outside the room", carol, "POST", clientURL(s, "rooms", r, "read_markers"), `{"m.read":"` + string(ev) + `"}`, 403, "M_FORBIDDEN"},
		{"read_markers of an unknown event", bob, "POST", clientURL(s, "rooms", r, "read_markers"), `{"m.fully_read":"$unknown"}`, 404, "M_NOT_FOUND"},
		{"read_markers of the wrong type", bob, "POST", clientURL(s, "rooms", r, "read_markers"), `{"m.read":true}`, 400, "M_BAD_JSON"},
		{"read_markers bad event ID", bob, "POST", clientURL(s, "rooms", r, "read_markers"), `{"m.read":"x"}`, 400, "M_INVALID_PARAM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.as != nil {
				hdr = bearer(tc.as)
			}
			status, _, body := do(t, tc.method, tc.url, []byte(tc.body), hdr...)
			wantError(t, status, body, tc.status, tc.code)
		})
	}
	// Setting m.fully_read directly as account data stays refused: read_markers owns it.
	status, _, body := do(t, "PUT", clientURL(s, "user", string(bob.UserID), "rooms", r, "account_data", "m.fully_read"), []byte(`{"event_id":"`+string(ev)+`"}`), bearer(bob)...)
	if status < 400 || status >= 500 {
		t.Fatalf("direct m.fully_read: %d %s", status, body)
	}
}

// TestEphemeralReceiptsSurviveKill: receipts and the read marker answered 200 are still there
// after the process is killed with SIGKILL and started again.
func TestEphemeralReceiptsSurviveKill(t *testing.T) {
	run := binaryServer(t)
	p, base := run()
	register := func(user string) *mautrix.Client { return registerAt(t, base, user) }
	ctx := context.Background()
	alice, bob := register("alice"), register("bob")
	room := ephRoom(t, alice, bob)
	ev := sendBody(t, alice, room, "read me")
	if err := bob.SendReceipt(ctx, room, ev, event.ReceiptTypeRead, nil); err != nil {
		t.Fatalf("receipt: %v", err)
	}
	if err := bob.SetReadMarkers(ctx, room, &mautrix.ReqSetReadMarkers{FullyRead: ev, ReadPrivate: ev}); err != nil {
		t.Fatalf("read_markers: %v", err)
	}
	p.kill(t)

	_, base = run()
	pointAt(t, base, alice, bob)
	got := ephReceiptsIn(t, syncOnce(t, alice, "", "", 0), room)
	if len(got) != 1 || got[0][ev]["m.read"][bob.UserID].TS == 0 {
		t.Fatalf("alice's receipts after SIGKILL: %+v", got)
	}
	if _, ok := got[0][ev]["m.read.private"]; ok {
		t.Fatal("alice sees bob's private receipt")
	}
	bobSync := syncOnce(t, bob, "", "", 0)
	if ephFullyRead(bobSync, room) != ev {
		t.Fatal("m.fully_read lost by SIGKILL")
	}
	private := false
	for _, c := range ephReceiptsIn(t, bobSync, room) {
		_, private = c[ev]["m.read.private"][bob.UserID]
	}
	if !private {
		t.Fatal("bob's private receipt lost by SIGKILL")
	}
}
