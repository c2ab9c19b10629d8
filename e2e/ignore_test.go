package e2e

import (
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestIgnoredUsers checks m.ignored_user_list: /sync leaves out the messages and invites of
// ignored users but keeps their state events.
func TestIgnoredUsers(t *testing.T) {
	s := Start(t)
	alice := register(t, s, "alice", "pw")
	bob := register(t, s, "bob", "pw")
	carol := register(t, s, "carol", "pw")
	room := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	for _, c := range []*mautrix.Client{bob, carol} {
		if _, err := c.JoinRoomByID(ctx(t), room); err != nil {
			t.Fatal(err)
		}
	}
	if err := alice.SetAccountData(ctx(t), "m.ignored_user_list", map[string]any{"ignored_users": map[string]any{string(bob.UserID): map[string]any{}}}); err != nil {
		t.Fatal(err)
	}
	send := func(c *mautrix.Client, body string) id.EventID {
		t.Helper()
		resp, err := c.SendMessageEvent(ctx(t), room, event.EventMessage, map[string]string{"msgtype": "m.text", "body": body})
		if err != nil {
			t.Fatal(err)
		}
		return resp.EventID
	}
	fromBob, fromCarol := send(bob, "from bob"), send(carol, "from carol")
	topic, err := bob.SendStateEvent(ctx(t), room, event.StateMember, string(bob.UserID), map[string]string{"membership": "join", "displayname": "Bobby"})
	if err != nil {
		t.Fatal(err)
	}
	other := createRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{alice.UserID}})

	resp := syncOnce(t, alice, "", "", 0)
	seen := map[id.EventID]bool{}
	for _, ev := range resp.Rooms.Join[room].Timeline.Events {
		seen[ev.ID] = true
	}
	if seen[fromBob] || !seen[fromCarol] || !seen[topic.EventID] {
		t.Fatalf("timeline: bob's message %v, carol's %v, bob's member event %v", seen[fromBob], seen[fromCarol], seen[topic.EventID])
	}
	if _, ok := resp.Rooms.Invite[other]; ok {
		t.Fatal("invite from an ignored user sent")
	}

	// Un-ignored, the user's new messages show again.
	if err := alice.SetAccountData(ctx(t), "m.ignored_user_list", map[string]any{"ignored_users": map[string]any{}}); err != nil {
		t.Fatal(err)
	}
	again := send(bob, "again")
	resp = syncOnce(t, alice, "", "", 0)
	found := false
	for _, ev := range resp.Rooms.Join[room].Timeline.Events {
		found = found || ev.ID == again
	}
	if !found {
		t.Fatal("message of a no longer ignored user missing")
	}
	if _, ok := resp.Rooms.Invite[other]; !ok {
		t.Fatal("invite missing once its sender is no longer ignored")
	}
}
