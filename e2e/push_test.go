package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/config"
)

// gateway is a push gateway inside the test: it records every notify request and answers
// with the status the test sets.
type gateway struct {
	srv *httptest.Server

	mu       sync.Mutex
	requests []gatewayNotification
	failNext int      // answer this many requests with 500
	reject   []string // pushkeys to reject
	arrived  chan struct{}
}

// gatewayNotification is the notification of one notify request.
type gatewayNotification struct {
	EventID      string          `json:"event_id"`
	RoomID       string          `json:"room_id"`
	Type         string          `json:"type"`
	Sender       string          `json:"sender"`
	Prio         string          `json:"prio"`
	Content      json.RawMessage `json:"content"`
	RoomName     string          `json:"room_name"`
	SenderName   string          `json:"sender_display_name"`
	UserIsTarget bool            `json:"user_is_target"`
	Membership   string          `json:"membership"`
	Counts       map[string]int  `json:"counts"`
	Devices      []struct {
		AppID     string                     `json:"app_id"`
		PushKey   string                     `json:"pushkey"`
		PushKeyTS int64                      `json:"pushkey_ts"`
		Data      map[string]json.RawMessage `json:"data"`
		Tweaks    map[string]json.RawMessage `json:"tweaks"`
	} `json:"devices"`
	failed bool // answered with an error
}

func newGateway(t *testing.T) *gateway {
	g := &gateway{arrived: make(chan struct{}, 100)}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/_matrix/push/v1/notify" || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		var body struct {
			Notification gatewayNotification `json:"notification"`
		}
		raw, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Errorf("gateway: bad body %s", raw)
		}
		g.mu.Lock()
		fail := g.failNext > 0
		if fail {
			g.failNext--
		}
		body.Notification.failed = fail
		g.requests = append(g.requests, body.Notification)
		reject := g.reject
		g.mu.Unlock()
		g.arrived <- struct{}{}
		if fail {
			http.Error(w, "try later", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"rejected": append([]string{}, reject...)})
	}))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *gateway) url() string { return g.srv.URL + "/_matrix/push/v1/notify" }

// delivered returns the requests answered with success for an event.
func (g *gateway) delivered(eventID id.EventID) []gatewayNotification {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []gatewayNotification
	for _, n := range g.requests {
		if n.EventID == string(eventID) && !n.failed {
			out = append(out, n)
		}
	}
	return out
}

// attempts counts the requests for an event, failed ones included.
func (g *gateway) attempts(eventID id.EventID) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, r := range g.requests {
		if r.EventID == string(eventID) {
			n++
		}
	}
	return n
}

// waitDelivered waits until the gateway has taken a notification of the event.
func (g *gateway) waitDelivered(t *testing.T, eventID id.EventID) gatewayNotification {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		if d := g.delivered(eventID); len(d) > 0 {
			return d[0]
		}
		select {
		case <-g.arrived:
		case <-deadline:
			t.Fatalf("gateway got no notification of %s (%d attempts)", eventID, g.attempts(eventID))
		}
	}
}

// pushConfig lets pushers reach the test's gateway on loopback over http, and retries fast.
func pushConfig(c *config.Config) {
	c.Push.AllowPrivateAddresses = true
	c.Push.AllowHTTP = true
	c.Push.RetryInitial = 20 * time.Millisecond
	c.Push.RetryMax = 200 * time.Millisecond
}

func setPusher(t *testing.T, s *Server, c *mautrix.Client, body map[string]any) (int, []byte) {
	t.Helper()
	raw, _ := json.Marshal(body)
	status, _, resp := do(t, "POST", clientURL(s, "pushers", "set"), raw, bearer(c)...)
	return status, resp
}

func httpPusher(pushKey, url string) map[string]any {
	return map[string]any{"kind": "http", "app_id": "org.example.app", "pushkey": pushKey,
		"app_display_name": "Example", "device_display_name": "Phone", "lang": "en",
		"data": map[string]any{"url": url, "custom": "kept"}}
}

// unreadIn returns a joined room's counts from a raw sync body.
func unreadIn(t *testing.T, body []byte, room id.RoomID) (notes, highlights int, threads map[string][2]int) {
	t.Helper()
	var resp struct {
		Rooms struct {
			Join map[id.RoomID]struct {
				Unread struct {
					N int `json:"notification_count"`
					H int `json:"highlight_count"`
				} `json:"unread_notifications"`
				Threads map[string]struct {
					N int `json:"notification_count"`
					H int `json:"highlight_count"`
				} `json:"unread_thread_notifications"`
			} `json:"join"`
		} `json:"rooms"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatalf("sync body: %v", err)
	}
	jr, ok := resp.Rooms.Join[room]
	if !ok {
		return -1, -1, nil
	}
	threads = map[string][2]int{}
	for k, v := range jr.Threads {
		threads[k] = [2]int{v.N, v.H}
	}
	return jr.Unread.N, jr.Unread.H, threads
}

// syncRaw runs one /sync and returns its body and next_batch.
func syncRaw(t *testing.T, s *Server, c *mautrix.Client, since, filter string) ([]byte, string) {
	t.Helper()
	u := clientURL(s, "sync") + "?timeout=0"
	if since != "" {
		u += "&since=" + since
	}
	if filter != "" {
		u += "&filter=" + filter
	}
	status, _, body := do(t, "GET", u, nil, bearer(c)...)
	if status != 200 {
		t.Fatalf("sync: %d %s", status, body)
	}
	var nb struct {
		NextBatch string `json:"next_batch"`
	}
	json.Unmarshal(body, &nb)
	return body, nb.NextBatch
}

// pushRoom makes a room of alice, bob and carol: three members, so plain messages fall to
// .m.rule.message (notify, no sound) rather than the one-to-one rules.
func pushRoom(t *testing.T, s *Server) (alice, bob, carol *mautrix.Client, room id.RoomID) {
	t.Helper()
	alice, bob, carol = s.NewUser(t, "alice"), s.NewUser(t, "bob"), s.NewUser(t, "carol")
	room = createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Push room"})
	for _, c := range []*mautrix.Client{bob, carol} {
		if _, err := c.JoinRoomByID(ctx(t), room); err != nil {
			t.Fatal(err)
		}
	}
	return
}

func mention(t *testing.T, from *mautrix.Client, room id.RoomID, to id.UserID) id.EventID {
	t.Helper()
	resp, err := from.SendMessageEvent(ctx(t), room, event.EventMessage, map[string]any{
		"msgtype": "m.text", "body": "hello " + string(to), "m.mentions": map[string]any{"user_ids": []string{string(to)}}})
	if err != nil {
		t.Fatal(err)
	}
	return resp.EventID
}

func sendText(t *testing.T, from *mautrix.Client, room id.RoomID, body string, extra ...map[string]any) id.EventID {
	t.Helper()
	content := map[string]any{"msgtype": "m.text", "body": body}
	for _, e := range extra {
		for k, v := range e {
			content[k] = v
		}
	}
	resp, err := from.SendMessageEvent(ctx(t), room, event.EventMessage, content)
	if err != nil {
		t.Fatal(err)
	}
	return resp.EventID
}

// TestPushMentionToGateway: a mention produces one notify request with the counts and tweaks of
// .m.rule.is_user_mention, /sync shows the counts, and a read receipt zeroes them.
func TestPushMentionToGateway(t *testing.T) {
	g := newGateway(t)
	s := Start(t, pushConfig)
	alice, bob, _, room := pushRoom(t, s)
	if status, body := setPusher(t, s, bob, httpPusher("bob-key", g.url())); status != 200 {
		t.Fatalf("set pusher: %d %s", status, body)
	}
	_, since := syncRaw(t, s, bob, "", "")

	ev := mention(t, alice, room, bob.UserID)
	n := g.waitDelivered(t, ev)
	if n.RoomID != string(room) || n.Type != "m.room.message" || n.Sender != string(alice.UserID) || n.Prio != "high" ||
		n.RoomName != "Push room" || n.Counts["unread"] != 1 || len(n.Devices) != 1 {
		t.Fatalf("notification = %+v", n)
	}
	d := n.Devices[0]
	if d.PushKey != "bob-key" || d.AppID != "org.example.app" || string(d.Tweaks["sound"]) != `"default"` ||
		(d.Tweaks["highlight"] != nil && string(d.Tweaks["highlight"]) != "true") || d.PushKeyTS == 0 {
		t.Fatalf("device = %+v", d)
	}
	if _, ok := d.Tweaks["highlight"]; !ok {
		t.Fatalf("no highlight tweak: %+v", d.Tweaks)
	}
	if _, hasURL := d.Data["url"]; hasURL || string(d.Data["custom"]) != `"kept"` {
		t.Fatalf("data = %v, want custom keys without url", d.Data)
	}

	body, since := syncRaw(t, s, bob, since, "")
	if notes, hl, _ := unreadIn(t, body, room); notes != 1 || hl != 1 {
		t.Fatalf("counts after the mention = %d/%d, want 1/1", notes, hl)
	}
	// A plain message notifies without highlight: 2 notifications, 1 highlight.
	plain := sendText(t, alice, room, "no mention here")
	g.waitDelivered(t, plain)
	body, since = syncRaw(t, s, bob, since, "")
	if notes, hl, _ := unreadIn(t, body, room); notes != 2 || hl != 1 {
		t.Fatalf("counts after a plain message = %d/%d, want 2/1", notes, hl)
	}
	// Alice's own messages never notify her.
	if body, _ := syncRaw(t, s, alice, "", ""); true {
		if notes, _, _ := unreadIn(t, body, room); notes != 0 {
			t.Fatalf("alice has %d notifications of her own messages", notes)
		}
	}

	if err := bob.SendReceipt(ctx(t), room, plain, event.ReceiptTypeRead, nil); err != nil {
		t.Fatal(err)
	}
	body, _ = syncRaw(t, s, bob, since, "")
	if notes, hl, _ := unreadIn(t, body, room); notes != 0 || hl != 0 {
		t.Fatalf("counts after the receipt = %d/%d, want 0/0", notes, hl)
	}
	// The phone's badge is cleared by a counts-only request.
	waitFor(t, "the badge update", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, n := range g.requests {
			if unread, ok := n.Counts["unread"]; ok && n.EventID == "" && unread == 0 && len(n.Devices) == 1 && n.Devices[0].PushKey == "bob-key" {
				return true
			}
		}
		return false
	})
	if got := len(g.delivered(ev)); got != 1 {
		t.Fatalf("gateway got %d notifications of the mention, want 1", got)
	}

	// GET /notifications lists both, newest first, read; only=highlight keeps the mention.
	status, _, list := do(t, "GET", clientURL(s, "notifications"), nil, bearer(bob)...)
	var ns struct {
		Notifications []struct {
			Event struct {
				EventID id.EventID `json:"event_id"`
			} `json:"event"`
			Read    bool            `json:"read"`
			RoomID  id.RoomID       `json:"room_id"`
			Actions json.RawMessage `json:"actions"`
			TS      int64           `json:"ts"`
		} `json:"notifications"`
		NextToken string `json:"next_token"`
	}
	if err := json.Unmarshal(list, &ns); status != 200 || err != nil || len(ns.Notifications) != 2 ||
		ns.Notifications[0].Event.EventID != plain || ns.Notifications[1].Event.EventID != ev ||
		!ns.Notifications[0].Read || ns.Notifications[0].RoomID != room || ns.Notifications[0].TS == 0 {
		t.Fatalf("GET /notifications: %d %s", status, list)
	}
	status, _, list = do(t, "GET", clientURL(s, "notifications")+"?only=highlight", nil, bearer(bob)...)
	if err := json.Unmarshal(list, &ns); status != 200 || err != nil || len(ns.Notifications) != 1 || ns.Notifications[0].Event.EventID != ev {
		t.Fatalf("GET /notifications?only=highlight: %d %s", status, list)
	}
	status, _, list = do(t, "GET", clientURL(s, "notifications")+"?limit=1", nil, bearer(bob)...)
	if err := json.Unmarshal(list, &ns); status != 200 || err != nil || len(ns.Notifications) != 1 || ns.NextToken == "" {
		t.Fatalf("GET /notifications?limit=1: %d %s", status, list)
	}
	status, _, list = do(t, "GET", clientURL(s, "notifications")+"?limit=1&from="+ns.NextToken, nil, bearer(bob)...)
	if err := json.Unmarshal(list, &ns); status != 200 || err != nil || len(ns.Notifications) != 1 || ns.Notifications[0].Event.EventID != ev {
		t.Fatalf("second page: %d %s", status, list)
	}
	for _, q := range []string{"?from=x", "?limit=-1", "?only=everything"} {
		status, _, body := do(t, "GET", clientURL(s, "notifications")+q, nil, bearer(bob)...)
		if status != 400 || !json.Valid(body) {
			t.Errorf("GET /notifications%s: %d %s", q, status, body)
		}
	}
}

// TestPushRetryAndRestart: a gateway that fails twice still gets the notification after
// backoff; one that fails until the server restarts gets it from the restarted server; a
// rejected pushkey deletes the pusher.
func TestPushRetryAndRestart(t *testing.T) {
	g := newGateway(t)
	s := Start(t, pushConfig)
	alice, bob, _, room := pushRoom(t, s)
	if status, body := setPusher(t, s, bob, httpPusher("bob-key", g.url())); status != 200 {
		t.Fatalf("set pusher: %d %s", status, body)
	}

	g.mu.Lock()
	g.failNext = 2
	g.mu.Unlock()
	ev := mention(t, alice, room, bob.UserID)
	g.waitDelivered(t, ev)
	if n := g.attempts(ev); n != 3 {
		t.Fatalf("attempts = %d, want 2 failures and 1 success", n)
	}

	// The gateway is down across a restart: the notification waits in the database.
	g.mu.Lock()
	g.failNext = 1 << 30
	g.mu.Unlock()
	ev2 := sendText(t, alice, room, "while the gateway is down")
	deadline := time.Now().Add(20 * time.Second)
	for g.attempts(ev2) == 0 && time.Now().Before(deadline) {
		<-g.arrived
	}
	s.Restart(t)
	g.mu.Lock()
	g.failNext = 0
	g.mu.Unlock()
	n := g.waitDelivered(t, ev2)
	if n.Counts["unread"] != 2 || len(g.delivered(ev)) != 1 {
		t.Fatalf("after restart: %+v, mention delivered %d times", n, len(g.delivered(ev)))
	}

	// A rejected pushkey deletes the pusher.
	g.mu.Lock()
	g.reject = []string{"bob-key"}
	g.mu.Unlock()
	ev3 := sendText(t, alice, room, "to be rejected")
	g.waitDelivered(t, ev3)
	waitFor(t, "the rejected pusher to go", func() bool {
		_, _, body := do(t, "GET", clientURL(s, "pushers"), nil, bearer(bob)...)
		return string(body) == `{"pushers":[]}`
	})
}

// waitFor polls cond until it holds or 20 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPushEventIDOnlyAndInvites: the event_id_only format carries no content; an invite of a
// local user notifies them (.m.rule.invite_for_me) with user_is_target.
func TestPushEventIDOnlyAndInvites(t *testing.T) {
	g := newGateway(t)
	s := Start(t, pushConfig)
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	p := httpPusher("bob-key", g.url())
	if status, body := setPusher(t, s, bob, p); status != 200 {
		t.Fatalf("set pusher: %d %s", status, body)
	}
	room := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{bob.UserID}})
	invites := func() []gatewayNotification {
		g.mu.Lock()
		defer g.mu.Unlock()
		var out []gatewayNotification
		for _, n := range g.requests {
			if n.Type == "m.room.member" {
				out = append(out, n)
			}
		}
		return out
	}
	waitFor(t, "the invite's notification", func() bool { return len(invites()) > 0 })
	if n := invites()[0]; !n.UserIsTarget || n.Membership != "invite" || n.RoomID != string(room) || string(n.Devices[0].Tweaks["sound"]) != `"default"` {
		t.Fatalf("invite notification = %+v", n)
	}
	if _, err := bob.JoinRoomByID(ctx(t), room); err != nil {
		t.Fatal(err)
	}

	p["data"] = map[string]any{"url": g.url(), "format": "event_id_only"}
	if status, body := setPusher(t, s, bob, p); status != 200 {
		t.Fatalf("replace pusher: %d %s", status, body)
	}
	// Two members: .m.rule.room_one_to_one notifies with sound.
	ev := sendText(t, alice, room, "secret")
	n := g.waitDelivered(t, ev)
	if n.Type != "" || n.Content != nil || n.Sender != "" || n.RoomID != string(room) || string(n.Devices[0].Tweaks["sound"]) != `"default"` {
		t.Fatalf("event_id_only notification = %+v", n)
	}
}

// TestPushThreadCounts: with unread_thread_notifications, threads are counted apart and a
// threaded receipt reads its thread only.
func TestPushThreadCounts(t *testing.T) {
	s := Start(t)
	alice, bob, _, room := pushRoom(t, s)
	filter := `{"room":{"timeline":{"unread_thread_notifications":true}}}`
	_, since := syncRaw(t, s, bob, "", filter)

	root := sendText(t, alice, room, "root")
	inThread := sendText(t, alice, room, "in the thread", map[string]any{
		"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}})
	sendText(t, alice, room, "main again")

	body, since := syncRaw(t, s, bob, since, filter)
	notes, _, threads := unreadIn(t, body, room)
	if notes != 2 || threads[string(root)] != [2]int{1, 0} {
		t.Fatalf("counts = %d, threads %v; want 2 in the main timeline and 1 in the thread", notes, threads)
	}
	// Without the filter option everything counts in the room.
	if body, _ := syncRaw(t, s, bob, "", ""); true {
		if notes, _, _ := unreadIn(t, body, room); notes != 3 {
			t.Fatalf("room count without threads = %d, want 3", notes)
		}
	}

	if err := bob.SendReceipt(ctx(t), room, inThread, event.ReceiptTypeRead, map[string]any{"thread_id": string(root)}); err != nil {
		t.Fatal(err)
	}
	body, since = syncRaw(t, s, bob, since, filter)
	notes, _, threads = unreadIn(t, body, room)
	if notes != 2 || len(threads) != 0 {
		t.Fatalf("after the threaded receipt: %d, threads %v; want the main timeline's 2 left", notes, threads)
	}
	// Bob writing in the room reads the main timeline up to there.
	sendText(t, bob, room, "my answer")
	body, _ = syncRaw(t, s, bob, since, filter)
	if notes, _, _ := unreadIn(t, body, room); notes != 0 {
		t.Fatalf("after bob's own message: %d, want 0", notes)
	}
}

// TestPushersAPI: the pusher endpoints and their errors.
func TestPushersAPI(t *testing.T) {
	s := Start(t, func(c *config.Config) { c.Push.AllowPrivateAddresses = true })
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	url := "https://127.0.0.1:1/_matrix/push/v1/notify"

	for name, tc := range map[string]struct {
		body map[string]any
		code string
	}{
		"no kind":     {map[string]any{"app_id": "a", "pushkey": "k"}, "M_MISSING_PARAM"},
		"no app_id":   {map[string]any{"kind": "http", "pushkey": "k"}, "M_MISSING_PARAM"},
		"no lang":     {map[string]any{"kind": "http", "app_id": "a", "pushkey": "k", "app_display_name": "A", "device_display_name": "D", "data": map[string]any{"url": url}}, "M_MISSING_PARAM"},
		"no url":      {map[string]any{"kind": "http", "app_id": "a", "pushkey": "k", "app_display_name": "A", "device_display_name": "D", "lang": "en", "data": map[string]any{}}, "M_MISSING_PARAM"},
		"http url":    {httpPusher("k", "http://127.0.0.1:1/_matrix/push/v1/notify"), "M_INVALID_PARAM"},
		"wrong path":  {httpPusher("k", "https://127.0.0.1:1/notify"), "M_INVALID_PARAM"},
		"email kind":  {map[string]any{"kind": "email", "app_id": "m.email", "pushkey": "a@example.org", "app_display_name": "A", "device_display_name": "D", "lang": "en", "data": map[string]any{}}, "M_INVALID_PARAM"},
		"long app_id": {map[string]any{"kind": nil, "app_id": fmt.Sprintf("%065d", 0), "pushkey": "k"}, "M_INVALID_PARAM"},
		"bad format": {func() map[string]any {
			p := httpPusher("k", url)
			p["data"] = map[string]any{"url": url, "format": 5}
			return p
		}(), "M_BAD_JSON"},
		"data not dict":  {func() map[string]any { p := httpPusher("k", url); p["data"] = "x"; return p }(), "M_BAD_JSON"},
		"kind not a str": {map[string]any{"kind": 5, "app_id": "a", "pushkey": "k"}, "M_BAD_JSON"},
	} {
		status, body := setPusher(t, s, alice, tc.body)
		var e struct {
			ErrCode string `json:"errcode"`
		}
		json.Unmarshal(body, &e)
		if status != 400 || e.ErrCode != tc.code {
			t.Errorf("%s: %d %s, want 400 %s", name, status, body, tc.code)
		}
	}
	status, _, body := do(t, "POST", clientURL(s, "pushers", "set"), []byte("not json"), bearer(alice)...)
	if status != 400 || !json.Valid(body) {
		t.Errorf("not JSON: %d %s", status, body)
	}
	// Private gateways are refused unless allowed.
	s2 := Start(t)
	carol := s2.NewUser(t, "carol")
	if status, body := setPusher(t, s2, carol, httpPusher("k", url)); status != 400 {
		t.Errorf("loopback gateway without allow_private_addresses: %d %s", status, body)
	}

	if status, body := setPusher(t, s, alice, httpPusher("shared", url)); status != 200 {
		t.Fatalf("set: %d %s", status, body)
	}
	status, _, body = do(t, "GET", clientURL(s, "pushers"), nil, bearer(alice)...)
	wantOK(t, status, body, `{"pushers":[{"pushkey":"shared","kind":"http","app_id":"org.example.app","app_display_name":"Example",
		"device_display_name":"Phone","lang":"en","data":{"url":"`+url+`","custom":"kept"}}]}`)

	// Bob takes the same app ID and pushkey with append: both keep it; without append, alice's goes.
	p := httpPusher("shared", url)
	p["append"] = true
	if status, body := setPusher(t, s, bob, p); status != 200 {
		t.Fatalf("append: %d %s", status, body)
	}
	if _, _, body := do(t, "GET", clientURL(s, "pushers"), nil, bearer(alice)...); string(body) == `{"pushers":[]}` {
		t.Fatal("append removed alice's pusher")
	}
	if status, body := setPusher(t, s, bob, httpPusher("shared", url)); status != 200 {
		t.Fatalf("set without append: %d %s", status, body)
	}
	if _, _, body := do(t, "GET", clientURL(s, "pushers"), nil, bearer(alice)...); string(body) != `{"pushers":[]}` {
		t.Fatalf("alice's pusher survived a set without append: %s", body)
	}
	// kind null deletes; deleting again succeeds.
	for range 2 {
		if status, body := setPusher(t, s, bob, map[string]any{"kind": nil, "app_id": "org.example.app", "pushkey": "shared"}); status != 200 {
			t.Fatalf("delete: %d %s", status, body)
		}
	}
	if _, _, body := do(t, "GET", clientURL(s, "pushers"), nil, bearer(bob)...); string(body) != `{"pushers":[]}` {
		t.Fatalf("after delete: %s", body)
	}
	// Logging out a device deletes its pushers.
	if status, body := setPusher(t, s, bob, httpPusher("phone", url)); status != 200 {
		t.Fatalf("set: %d %s", status, body)
	}
	if _, err := bob.Logout(ctx(t)); err != nil {
		t.Fatal(err)
	}
	bob2, err := login(t, s, "bob", "password")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, body := do(t, "GET", clientURL(s, "pushers"), nil, bearer(bob2)...); string(body) != `{"pushers":[]}` {
		t.Fatalf("pusher survived its device's logout: %s", body)
	}
}

// TestPushCustomRules: members with their own rules get their own outcome (a muted room, a
// keyword that highlights) while the others share the default one.
func TestPushCustomRules(t *testing.T) {
	s := Start(t)
	alice, bob, carol, room := pushRoom(t, s)
	dave := s.NewUser(t, "dave")
	if _, err := dave.JoinRoomByID(ctx(t), room); err != nil {
		t.Fatal(err)
	}
	put := func(c *mautrix.Client, kind, ruleID, body string) {
		t.Helper()
		status, _, resp := do(t, "PUT", pushURL(s, "global", kind, ruleID), []byte(body), bearer(c)...)
		if status != 200 {
			t.Fatalf("PUT %s rule: %d %s", kind, status, resp)
		}
	}
	put(bob, "room", string(room), `{"actions":[]}`)
	put(carol, "content", "pizza", `{"pattern":"pizza","actions":["notify",{"set_tweak":"highlight"}]}`)
	// erin ignores alice: none of alice's messages notify her.
	erin := s.NewUser(t, "erin")
	if _, err := erin.JoinRoomByID(ctx(t), room); err != nil {
		t.Fatal(err)
	}
	if err := erin.SetAccountData(ctx(t), "m.ignored_user_list", map[string]any{"ignored_users": map[string]any{string(alice.UserID): map[string]any{}}}); err != nil {
		t.Fatal(err)
	}

	ev := sendText(t, alice, room, "pizza time")
	counts := func(c *mautrix.Client) [2]int {
		body, _ := syncRaw(t, s, c, "", "")
		n, h, _ := unreadIn(t, body, room)
		return [2]int{n, h}
	}
	if got := counts(bob); got != [2]int{0, 0} {
		t.Errorf("bob muted the room but has %v", got)
	}
	if got := counts(carol); got != [2]int{1, 1} {
		t.Errorf("carol's keyword: %v, want 1 highlighted", got)
	}
	if got := counts(dave); got != [2]int{1, 0} {
		t.Errorf("dave with the default rules: %v, want 1", got)
	}
	if got := counts(alice); got != [2]int{0, 0} {
		t.Errorf("the sender: %v", got)
	}
	if got := counts(erin); got != [2]int{0, 0} {
		t.Errorf("erin ignores alice but has %v", got)
	}
	list := func(c *mautrix.Client) []string {
		_, _, body := do(t, "GET", clientURL(s, "notifications"), nil, bearer(c)...)
		var ns struct {
			Notifications []struct {
				Event struct {
					EventID string `json:"event_id"`
				} `json:"event"`
				Actions json.RawMessage `json:"actions"`
			} `json:"notifications"`
		}
		json.Unmarshal(body, &ns)
		var out []string
		for _, n := range ns.Notifications {
			out = append(out, n.Event.EventID+" "+string(n.Actions))
		}
		return out
	}
	if got := list(bob); len(got) != 0 {
		t.Errorf("bob's notifications: %v", got)
	}
	if got := list(carol); len(got) != 1 || got[0] != string(ev)+` ["notify",{"set_tweak":"highlight"}]` {
		t.Errorf("carol's notifications: %v", got)
	}
	if got := list(dave); len(got) != 1 || got[0] != string(ev)+` ["notify"]` {
		t.Errorf("dave's notifications: %v", got)
	}

	// Bob unmutes: the next message counts for him again; dave leaves and counts nothing more.
	status, _, body := do(t, "DELETE", pushURL(s, "global", "room", string(room)), nil, bearer(bob)...)
	if status != 200 {
		t.Fatalf("delete rule: %d %s", status, body)
	}
	if _, err := dave.LeaveRoom(ctx(t), room); err != nil {
		t.Fatal(err)
	}
	sendText(t, alice, room, "again")
	if got := counts(bob); got != [2]int{1, 0} {
		t.Errorf("bob after unmuting: %v, want 1", got)
	}
	if got := list(dave); len(got) != 0 {
		t.Errorf("dave after leaving lists %v (notifications of rooms left are not listed)", got)
	}
}

// TestPushSurvivesKill kills the server (SIGKILL) while the gateway is down: after the restart
// the notification still reaches the gateway, once.
func TestPushSurvivesKill(t *testing.T) {
	g := newGateway(t)
	g.mu.Lock()
	g.failNext = 1 << 30
	g.mu.Unlock()
	run := binaryServer(t, pushConfig)
	p, base := run()
	alice, bob, carol := registerAt(t, base, "alice"), registerAt(t, base, "bob"), registerAt(t, base, "carol")
	room := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	for _, c := range []*mautrix.Client{bob, carol} {
		if _, err := c.JoinRoomByID(ctx(t), room); err != nil {
			t.Fatal(err)
		}
	}
	body, _ := json.Marshal(httpPusher("bob-key", g.url()))
	if status, _, resp := do(t, "POST", base+"/_matrix/client/v3/pushers/set", body, bearer(bob)...); status != 200 {
		t.Fatalf("set pusher: %d %s", status, resp)
	}
	ev := mention(t, alice, room, bob.UserID)
	waitFor(t, "a first delivery attempt", func() bool { return g.attempts(ev) > 0 })
	p.kill(t)

	g.mu.Lock()
	g.failNext = 0
	g.mu.Unlock()
	_, base = run()
	pointAt(t, base, alice, bob, carol)
	n := g.waitDelivered(t, ev)
	if n.Counts["unread"] != 1 || len(g.delivered(ev)) != 1 {
		t.Fatalf("after the kill: %+v, delivered %d times", n, len(g.delivered(ev)))
	}
}
