package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/config"
)

// presEvents returns the m.presence events of a sync response by sender.
func presEvents(t *testing.T, resp *mautrix.RespSync) map[id.UserID]event.PresenceEventContent {
	t.Helper()
	out := map[id.UserID]event.PresenceEventContent{}
	for _, ev := range resp.Presence.Events {
		if ev.Type != event.EphemeralEventPresence {
			t.Fatalf("presence section holds a %s", ev.Type.Type)
		}
		var c event.PresenceEventContent
		if err := json.Unmarshal(ev.Content.VeryRaw, &c); err != nil {
			t.Fatalf("presence content %s: %v", ev.Content.VeryRaw, err)
		}
		out[ev.Sender] = c
	}
	return out
}

// presSyncUntil long-polls c's /sync from since until cond holds for a response's presence,
// and returns the next batch.
func presSyncUntil(t *testing.T, c *mautrix.Client, since, what string, cond func(map[id.UserID]event.PresenceEventContent) bool) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := c.SyncRequest(context.Background(), 5000, since, "", false, "")
		if err != nil {
			t.Fatalf("sync: %v", err)
		}
		since = resp.NextBatch
		if cond(presEvents(t, resp)) {
			return since
		}
	}
	t.Fatalf("%s: no sync brought it", what)
	return ""
}

// presRoom is a room that alice creates and bob joins.
func presRoom(t *testing.T, alice, bob *mautrix.Client) id.RoomID {
	t.Helper()
	room := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if _, err := bob.JoinRoomByID(context.Background(), room); err != nil {
		t.Fatalf("join: %v", err)
	}
	return room
}

func presSet(t *testing.T, c *mautrix.Client, presence event.Presence, msg string) {
	t.Helper()
	if err := c.SetPresence(context.Background(), mautrix.ReqPresence{Presence: presence, StatusMsg: msg}); err != nil {
		t.Fatalf("set presence of %s: %v", c.UserID, err)
	}
}

// TestPresenceSync: bob's status message reaches alice, who shares a room with him, by a
// long-poll it wakes, and not carol, who does not; GET answers the same.
func TestPresenceSync(t *testing.T) {
	s := Start(t)
	alice, bob, carol := s.NewUser(t, "alice"), s.NewUser(t, "bob"), s.NewUser(t, "carol")
	presRoom(t, alice, bob)
	createRoom(t, carol, &mautrix.ReqCreateRoom{})
	since := syncOnce(t, alice, "", "", 0).NextBatch
	carolSince := syncOnce(t, carol, "", "", 0).NextBatch
	// Catch up with carol coming online, so that the long-poll below waits.
	caught, err := alice.SyncRequest(context.Background(), 0, since, "", false, event.PresenceOffline)
	if err != nil {
		t.Fatal(err)
	}
	since = caught.NextBatch

	woke := make(chan *mautrix.RespSync, 1)
	go func() {
		resp, err := alice.SyncRequest(context.Background(), 10000, since, "", false, event.PresenceOffline)
		if err != nil {
			t.Errorf("long-poll: %v", err)
		}
		woke <- resp
	}()
	start := time.Now()
	presSet(t, bob, event.PresenceUnavailable, "in a meeting")
	resp := <-woke
	if resp == nil {
		t.FailNow()
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the long-poll answered after %v: the PUT did not wake it", d)
	}
	got := presEvents(t, resp)
	b, ok := got[bob.UserID]
	if !ok || b.Presence != event.PresenceUnavailable || b.StatusMessage != "in a meeting" || b.CurrentlyActive {
		t.Fatalf("alice's presence events: %+v", got)
	}

	// carol shares no room with bob: her syncs never carry his presence.
	for _, r := range []*mautrix.RespSync{syncOnce(t, carol, carolSince, "", 0), syncOnce(t, carol, "", "", 0)} {
		if _, ok := presEvents(t, r)[bob.UserID]; ok {
			t.Fatal("carol sees bob's presence")
		}
	}
	// An initial sync of alice carries bob's current presence.
	if c := presEvents(t, syncOnce(t, alice, "", "", 0))[bob.UserID]; c.Presence != event.PresenceUnavailable || c.StatusMessage != "in a meeting" {
		t.Fatalf("alice's initial sync: %+v", c)
	}

	p, err := alice.GetPresence(context.Background(), bob.UserID)
	if err != nil || p.Presence != event.PresenceUnavailable || p.StatusMsg != "in a meeting" {
		t.Fatalf("GET bob's presence as alice: %+v %v", p, err)
	}
	if _, err := carol.GetPresence(context.Background(), bob.UserID); presStatus(err) != 403 {
		t.Fatalf("GET bob's presence as carol: %v", err)
	}
	if p, err := carol.GetPresence(context.Background(), carol.UserID); err != nil || p.Presence != event.PresenceOnline {
		t.Fatalf("carol's own presence: %+v %v", p, err)
	}
}

// presStatus is the HTTP status of a failed mautrix call, 0 if there is none.
func presStatus(err error) int {
	var herr mautrix.HTTPError
	if errors.As(err, &herr) && herr.Response != nil {
		return herr.Response.StatusCode
	}
	return 0
}

// TestPresenceSetOnSync: set_presence of bob's syncs moves his presence as alice sees it.
func TestPresenceSetOnSync(t *testing.T) {
	s := Start(t)
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	presRoom(t, alice, bob)
	since := syncOnce(t, alice, "", "", 0).NextBatch

	bobSync := func(set event.Presence) {
		t.Helper()
		if _, err := bob.SyncRequest(context.Background(), 0, "", "", false, set); err != nil {
			t.Fatalf("bob's sync with set_presence %q: %v", set, err)
		}
	}
	bobSync(event.PresenceUnavailable)
	since = presSyncUntil(t, alice, since, "bob unavailable", func(m map[id.UserID]event.PresenceEventContent) bool {
		return m[bob.UserID].Presence == event.PresenceUnavailable
	})
	bobSync("") // the default: online
	since = presSyncUntil(t, alice, since, "bob online", func(m map[id.UserID]event.PresenceEventContent) bool {
		c := m[bob.UserID]
		return c.Presence == event.PresenceOnline && c.CurrentlyActive
	})
	// set_presence offline changes nothing.
	bobSync(event.PresenceOffline)
	resp, err := alice.SyncRequest(context.Background(), 300, since, "", false, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := presEvents(t, resp); len(got) != 0 {
		t.Fatalf("after an offline sync: %+v", got)
	}
	if p, err := alice.GetPresence(context.Background(), bob.UserID); err != nil || p.Presence != event.PresenceOnline {
		t.Fatalf("bob after an offline sync: %+v %v", p, err)
	}
	status, _, body := do(t, "GET", s.URL+"/_matrix/client/v3/sync?set_presence=away", nil, bearer(bob)...)
	wantError(t, status, body, 400, "M_INVALID_PARAM")
}

// TestPresenceFilter: the sync filter's presence section drops events.
func TestPresenceFilter(t *testing.T) {
	s := Start(t)
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	presRoom(t, alice, bob)
	presSet(t, bob, event.PresenceOnline, "here")
	for filter, want := range map[string]bool{
		`{"presence":{"not_types":["m.presence"]}}`:                   false,
		`{"presence":{"senders":["@nobody:localhost"]}}`:              false,
		`{"presence":{"not_senders":["` + string(bob.UserID) + `"]}}`: false,
		`{"presence":{"types":["m.*"]}}`:                              true,
	} {
		_, seen := presEvents(t, syncOnce(t, alice, "", filter, 0))[bob.UserID]
		if seen != want {
			t.Errorf("filter %s: bob seen %v, want %v", filter, seen, want)
		}
	}
}

// TestPresenceDisabled: with presence.enabled false the endpoints answer, everyone is offline
// and syncs carry nothing.
func TestPresenceDisabled(t *testing.T) {
	s := Start(t, func(c *config.Config) { c.Presence.Enabled = false })
	alice, bob, carol := s.NewUser(t, "alice"), s.NewUser(t, "bob"), s.NewUser(t, "carol")
	presRoom(t, alice, bob)
	presSet(t, bob, event.PresenceUnavailable, "ignored")
	status, _, body := do(t, "GET", clientURL(s, "presence", string(bob.UserID), "status"), nil, bearer(alice)...)
	wantOK(t, status, body, `{"presence":"offline","currently_active":false}`)
	if resp := syncOnce(t, alice, "", "", 0); len(resp.Presence.Events) != 0 {
		t.Fatalf("presence events while disabled: %d", len(resp.Presence.Events))
	}
	// The checks still apply.
	status, _, body = do(t, "GET", clientURL(s, "presence", string(bob.UserID), "status"), nil, bearer(carol)...)
	wantError(t, status, body, 403, "M_FORBIDDEN")
	status, _, body = do(t, "PUT", clientURL(s, "presence", string(bob.UserID), "status"), []byte(`{"presence":"busy"}`), bearer(bob)...)
	wantError(t, status, body, 400, "M_INVALID_PARAM")
}

// TestPresenceErrors: bad requests get the spec's errors.
func TestPresenceErrors(t *testing.T) {
	s := Start(t)
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	guest := newGuest(t, s, "guest")
	presRoom(t, alice, bob)
	status := func(u id.UserID) string { return clientURL(s, "presence", string(u), "status") }
	for _, tc := range []struct {
		name   string
		as     *mautrix.Client
		method string
		url    string
		body   string
		status int
		code   string
	}{
		{"get without token", nil, "GET", status(bob.UserID), "", 401, "M_MISSING_TOKEN"},
		{"get as a guest", guest, "GET", status(guest.UserID), "", 403, "M_GUEST_ACCESS_FORBIDDEN"},
		{"get an unknown user", alice, "GET", status("@nobody:localhost"), "", 404, "M_NOT_FOUND"},
		{"get a bad user ID", alice, "GET", status("nobody"), "", 400, "M_INVALID_PARAM"},
		{"get a remote user sharing no room", alice, "GET", status(remoteUser), "", 403, "M_FORBIDDEN"},
		{"put for another user", alice, "PUT", status(bob.UserID), `{"presence":"online"}`, 403, "M_FORBIDDEN"},
		{"put without presence", alice, "PUT", status(alice.UserID), `{"status_msg":"hi"}`, 400, "M_MISSING_PARAM"},
		{"put an unknown state", alice, "PUT", status(alice.UserID), `{"presence":"busy"}`, 400, "M_INVALID_PARAM"},
		{"put presence of the wrong type", alice, "PUT", status(alice.UserID), `{"presence":1}`, 400, "M_BAD_JSON"},
		{"put status_msg of the wrong type", alice, "PUT", status(alice.UserID), `{"presence":"online","status_msg":7}`, 400, "M_BAD_JSON"},
		{"put a long status_msg", alice, "PUT", status(alice.UserID), `{"presence":"online","status_msg":"` + strings.Repeat("x", 3000) + `"}`, 400, "M_INVALID_PARAM"},
		{"put not JSON", alice, "PUT", status(alice.UserID), `online`, 400, "M_NOT_JSON"},
		{"put null", alice, "PUT", status(alice.UserID), `null`, 400, "M_BAD_JSON"},
		{"put a bad user ID", alice, "PUT", status("@"), `{"presence":"online"}`, 400, "M_INVALID_PARAM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.as != nil {
				hdr = bearer(tc.as)
			}
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			st, _, b := do(t, tc.method, tc.url, body, hdr...)
			wantError(t, st, b, tc.status, tc.code)
		})
	}
	// A null status_msg clears the message.
	presSet(t, alice, event.PresenceOnline, "first")
	st, _, b := do(t, "PUT", status(alice.UserID), []byte(`{"presence":"online","status_msg":null}`), bearer(alice)...)
	wantOK(t, st, b, `{}`)
	if p, err := bob.GetPresence(context.Background(), alice.UserID); err != nil || p.StatusMsg != "" {
		t.Fatalf("after clearing: %+v %v", p, err)
	}
}

// TestPresenceRestart: presence set before a graceful restart is served after it, by GET and
// by an initial sync, and an incremental sync from a token of before goes on.
func TestPresenceRestart(t *testing.T) {
	s := Start(t)
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	presRoom(t, alice, bob)
	presSet(t, bob, event.PresenceUnavailable, "gone fishing")
	since := syncOnce(t, alice, "", "", 0).NextBatch
	s.Restart(t)
	if p, err := alice.GetPresence(context.Background(), bob.UserID); err != nil || p.Presence != event.PresenceUnavailable || p.StatusMsg != "gone fishing" {
		t.Fatalf("after restart: %+v %v", p, err)
	}
	if c := presEvents(t, syncOnce(t, alice, "", "", 0))[bob.UserID]; c.StatusMessage != "gone fishing" {
		t.Fatalf("initial sync after restart: %+v", c)
	}
	presSet(t, bob, event.PresenceOnline, "back")
	presSyncUntil(t, alice, since, "bob back after restart", func(m map[id.UserID]event.PresenceEventContent) bool {
		return m[bob.UserID].StatusMessage == "back"
	})
}

// TestPresenceSurvivesKill: a presence answered 200 is there after SIGKILL.
func TestPresenceSurvivesKill(t *testing.T) {
	run := binaryServer(t)
	p, base := run()
	c := registerAt(t, base, "bob")
	presSet(t, c, event.PresenceUnavailable, "killed")
	p.kill(t)

	_, base = run()
	pointAt(t, base, c)
	pr, err := c.GetPresence(context.Background(), c.UserID)
	if err != nil || pr.Presence != event.PresenceUnavailable || pr.StatusMsg != "killed" {
		t.Fatalf("after SIGKILL: %+v %v", pr, err)
	}
}
