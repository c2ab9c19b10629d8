package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/userapi"
)

// tdSend sends one to-device message per (user, device) with a chosen transaction ID.
func tdSend(t *testing.T, c *mautrix.Client, typ, txn string, messages map[id.UserID]map[id.DeviceID]any) {
	t.Helper()
	if err := tdTrySend(c, typ, txn, messages); err != nil {
		t.Fatalf("sendToDevice %s: %v", txn, err)
	}
}

func tdTrySend(c *mautrix.Client, typ, txn string, messages any) error {
	_, err := c.MakeRequest(context.Background(), http.MethodPut, c.BuildClientURL("v3", "sendToDevice", typ, txn),
		map[string]any{"messages": messages}, nil)
	return err
}

// tdLogin logs user in on one more device and returns a client for it.
func tdLogin(t *testing.T, s *Server, user id.UserID, device id.DeviceID) *mautrix.Client {
	t.Helper()
	dev, toks, err := s.Users().CreateDevice(context.Background(), userapi.NewDevice{UserID: user, DeviceID: device})
	if err != nil {
		t.Fatal(err)
	}
	c, err := mautrix.NewClient(s.URL, user, toks.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	c.DeviceID = dev.DeviceID
	return c
}

// tdEvents returns the to-device events of a sync as "type sender content".
func tdEvents(resp *mautrix.RespSync) []string {
	var out []string
	for _, ev := range resp.ToDevice.Events {
		out = append(out, fmt.Sprintf("%s %s %s", ev.Type.Type, ev.Sender, ev.Content.VeryRaw))
	}
	return out
}

// TestToDeviceDelivery sends to one device and to "*", repeats a transaction, and checks that
// each device gets its messages once, that they stay until a later token acknowledges them,
// and that a long-poll wakes for them.
func TestToDeviceDelivery(t *testing.T) {
	s := Start(t)
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	bob2 := tdLogin(t, s, bob.UserID, "BOBTWO")
	since := syncOnce(t, bob, "", "", 0).NextBatch
	since2 := syncOnce(t, bob2, "", "", 0).NextBatch

	tdSend(t, alice, "m.test", "t1", map[id.UserID]map[id.DeviceID]any{bob.UserID: {bob.DeviceID: map[string]int{"n": 1}}})
	tdSend(t, alice, "m.test", "t1", map[id.UserID]map[id.DeviceID]any{bob.UserID: {bob.DeviceID: map[string]int{"n": 1}}})
	tdSend(t, alice, "m.all", "t2", map[id.UserID]map[id.DeviceID]any{bob.UserID: {"*": map[string]bool{"all": true}}})

	want := []string{"m.test @alice:localhost {\"n\":1}", "m.all @alice:localhost {\"all\":true}"}
	first := syncOnce(t, bob, since, "", 0)
	if got := tdEvents(first); !slices.Equal(got, want) {
		t.Fatalf("bob's first device got %q, want %q", got, want)
	}
	if got := tdEvents(syncOnce(t, bob2, since2, "", 0)); !slices.Equal(got, want[1:]) {
		t.Fatalf("bob's second device got %q", got)
	}
	// The response may have been lost: the same token gets the same messages.
	if got := tdEvents(syncOnce(t, bob, since, "", 0)); !slices.Equal(got, want) {
		t.Fatalf("sync again from the old token: %q", got)
	}
	// The next token acknowledges them: delivered once, gone for good. (A sync from it with
	// nothing new acknowledges them too, once the sync core asks the stream to; with a new
	// message the response is built and acknowledges on its way.)
	tdSend(t, alice, "m.more", "t2b", map[id.UserID]map[id.DeviceID]any{bob.UserID: {bob.DeviceID: map[string]string{}}})
	next := syncOnce(t, bob, first.NextBatch, "", 0)
	if got := tdEvents(next); len(got) != 1 {
		t.Fatalf("after acknowledging: %q", got)
	}
	if got := tdEvents(syncOnce(t, bob, since, "", 0)); len(got) != 1 || got[0] != "m.more @alice:localhost {}" {
		t.Fatalf("acknowledged messages delivered again: %q", got)
	}

	// A long-poll wakes for a message.
	type result struct {
		resp *mautrix.RespSync
		err  error
		took time.Duration
	}
	done := make(chan result, 1)
	go func() {
		// A long-poll may also return for something else of bob's (his own presence, say):
		// the client then polls again from the new token, as clients do.
		start, since := time.Now(), next.NextBatch
		for {
			resp, err := bob.SyncRequest(context.Background(), 20000, since, "", false, "")
			if err != nil || len(resp.ToDevice.Events) > 0 || time.Since(start) > 10*time.Second {
				done <- result{resp, err, time.Since(start)}
				return
			}
			raw, _ := json.Marshal(resp)
			t.Logf("long-poll returned without the message: %s", raw)
			since = resp.NextBatch
		}
	}()
	sent := time.Now()
	tdSend(t, alice, "m.wake", "t3", map[id.UserID]map[id.DeviceID]any{bob.UserID: {bob.DeviceID: map[string]string{}}})
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if got := tdEvents(r.resp); len(got) != 1 || r.took > 10*time.Second {
		t.Fatalf("long-poll got %q after %v", got, r.took)
	}
	t.Logf("long-poll woke %v after the send", time.Since(sent))
}

// TestToDeviceManyInOrder queues more messages than one response carries and checks they all
// arrive once, in order, over successive syncs.
func TestToDeviceManyInOrder(t *testing.T) {
	s := Start(t)
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	since := syncOnce(t, bob, "", "", 0).NextBatch
	const n = 150
	for i := range n {
		tdSend(t, alice, "m.test", fmt.Sprint(i), map[id.UserID]map[id.DeviceID]any{bob.UserID: {bob.DeviceID: map[string]int{"i": i}}})
	}
	var got []int
	for range 10 {
		resp := syncOnce(t, bob, since, "", 0)
		since = resp.NextBatch
		if len(resp.ToDevice.Events) == 0 {
			break
		}
		t.Logf("one sync carried %d messages", len(resp.ToDevice.Events))
		for _, ev := range resp.ToDevice.Events {
			var c struct{ I int }
			if err := json.Unmarshal(ev.Content.VeryRaw, &c); err != nil {
				t.Fatal(err)
			}
			got = append(got, c.I)
		}
	}
	if len(got) != n {
		t.Fatalf("got %d messages, want %d", len(got), n)
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("message %d is %d: out of order or repeated", i, v)
		}
	}
}

// TestToDeviceSurvivesRestart checks that a message answered 200 is delivered after a restart,
// and that the transaction ID is still known then.
func TestToDeviceSurvivesRestart(t *testing.T) {
	s := Start(t)
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	since := syncOnce(t, bob, "", "", 0).NextBatch
	msg := map[id.UserID]map[id.DeviceID]any{bob.UserID: {bob.DeviceID: map[string]string{"k": "v"}}}
	tdSend(t, alice, "m.test", "before", msg)
	s.Restart(t)
	tdSend(t, alice, "m.test", "before", msg)
	if got := tdEvents(syncOnce(t, bob, since, "", 0)); len(got) != 1 {
		t.Fatalf("after restart: %q", got)
	}
}

// TestToDeviceSurvivesKill kills the binary with SIGKILL right after a send was answered.
func TestToDeviceSurvivesKill(t *testing.T) {
	run := binaryServer(t)
	p, base := run()
	register := func(user string) *mautrix.Client { return registerAt(t, base, user) }
	alice, bob := register("alice"), register("bob")
	since := syncOnce(t, bob, "", "", 0).NextBatch
	tdSend(t, alice, "m.test", "k1", map[id.UserID]map[id.DeviceID]any{bob.UserID: {bob.DeviceID: map[string]int{"n": 1}}})
	p.kill(t)

	_, base = run()
	pointAt(t, base, alice, bob)
	if got := tdEvents(syncOnce(t, bob, since, "", 0)); len(got) != 1 {
		t.Fatalf("after SIGKILL: %q", got)
	}
}

// TestToDeviceErrors checks the answers to bad sends.
func TestToDeviceErrors(t *testing.T) {
	s := Start(t)
	alice := s.NewUser(t, "alice")
	for _, c := range []struct {
		name     string
		messages any
		status   int
		code     string
	}{
		{"messages not an object", []int{1}, 400, "M_BAD_JSON"},
		{"content not an object", map[string]any{"@bob:localhost": map[string]any{"D": "text"}}, 400, "M_BAD_JSON"},
		{"bad user ID", map[string]any{"bob": map[string]any{"D": map[string]any{}}}, 400, "M_INVALID_PARAM"},
		{"no messages", nil, 400, "M_MISSING_PARAM"},
	} {
		err := tdTrySend(alice, "m.test", "e-"+c.name, c.messages)
		var httpErr mautrix.HTTPError
		if !errors.As(err, &httpErr) || !httpErr.IsStatus(c.status) || httpErr.RespError == nil || httpErr.RespError.ErrCode != c.code {
			t.Errorf("%s: %v, want %d %s", c.name, err, c.status, c.code)
		}
	}
	anon := s.Client(t)
	err := tdTrySend(anon, "m.test", "anon", map[string]any{})
	var httpErr mautrix.HTTPError
	if !errors.As(err, &httpErr) || !httpErr.IsStatus(401) {
		t.Errorf("without a token: %v", err)
	}
}

// tdSyncUntil long-polls from since until cond holds for the accumulated device lists.
func tdSyncUntil(t *testing.T, c *mautrix.Client, since string, what string, cond func(changed, left []id.UserID) bool) string {
	t.Helper()
	var changed, left []id.UserID
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp := syncOnce(t, c, since, "", 2000)
		since = resp.NextBatch
		changed = append(changed, resp.DeviceLists.Changed...)
		left = append(left, resp.DeviceLists.Left...)
		if cond(changed, left) {
			return since
		}
	}
	t.Fatalf("no %s: changed %v left %v", what, changed, left)
	return ""
}

// TestDeviceListsThroughSync: a new login of bob shows in alice's device_lists.changed while
// they share an encrypted room, and his leaving in device_lists.left.
func TestDeviceListsThroughSync(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	room := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", InitialState: []*event.Event{{
		Type: event.StateEncryption, StateKey: ptr(""), Content: event.Content{Raw: map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}},
	}}})
	tdLogin(t, s, alice.UserID, "") // a change before the initial sync is not in it
	initial := syncOnce(t, alice, "", "", 0)
	if len(initial.DeviceLists.Changed)+len(initial.DeviceLists.Left) != 0 {
		t.Errorf("initial sync has device lists: %+v", initial.DeviceLists)
	}
	// bob joining the encrypted room makes him someone alice must track.
	if _, err := bob.JoinRoomByID(ctx, room); err != nil {
		t.Fatal(err)
	}
	since := tdSyncUntil(t, alice, initial.NextBatch, "bob's join", func(ch, _ []id.UserID) bool { return slices.Contains(ch, bob.UserID) })

	start := time.Now()
	tdLogin(t, s, bob.UserID, "")
	since = tdSyncUntil(t, alice, since, "bob's new device", func(ch, _ []id.UserID) bool { return slices.Contains(ch, bob.UserID) })
	t.Logf("bob's new device reached alice's sync in %v", time.Since(start))

	if _, err := bob.LeaveRoom(ctx, room); err != nil {
		t.Fatal(err)
	}
	since = tdSyncUntil(t, alice, since, "bob in left", func(_, left []id.UserID) bool { return slices.Contains(left, bob.UserID) })

	// Not sharing a room any more, bob's next device is no business of alice's.
	tdLogin(t, s, bob.UserID, "")
	resp := syncOnce(t, alice, since, "", 1000)
	if slices.Contains(resp.DeviceLists.Changed, bob.UserID) {
		t.Errorf("alice told of bob's device after he left: %+v", resp.DeviceLists)
	}
}
