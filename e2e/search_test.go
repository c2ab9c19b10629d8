package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice"
	"github.com/latticehq/lattice/internal/config"
)

// srchEvent is an event in a search answer.
type srchEvent struct {
	EventID id.EventID     `json:"event_id"`
	RoomID  id.RoomID      `json:"room_id"`
	Sender  id.UserID      `json:"sender"`
	Type    string         `json:"type"`
	Content map[string]any `json:"content"`
}

type srchAnswer struct {
	SearchCategories struct {
		RoomEvents struct {
			Count      int      `json:"count"`
			Highlights []string `json:"highlights"`
			Results    []struct {
				Rank    float64   `json:"rank"`
				Result  srchEvent `json:"result"`
				Context *struct {
					Start       string `json:"start"`
					End         string `json:"end"`
					ProfileInfo map[id.UserID]struct {
						DisplayName string `json:"displayname"`
					} `json:"profile_info"`
					EventsBefore []srchEvent `json:"events_before"`
					EventsAfter  []srchEvent `json:"events_after"`
				} `json:"context"`
			} `json:"results"`
			State  map[id.RoomID][]srchEvent `json:"state"`
			Groups map[string]map[string]struct {
				NextBatch string       `json:"next_batch"`
				Order     int          `json:"order"`
				Results   []id.EventID `json:"results"`
			} `json:"groups"`
			NextBatch string `json:"next_batch"`
		} `json:"room_events"`
	} `json:"search_categories"`
}

// search posts room_events criteria to POST /search, with a next_batch token if not "".
func srchPost(c *mautrix.Client, criteria map[string]any, nextBatch string) (*srchAnswer, error) {
	u := c.BuildClientURL("v3", "search")
	if nextBatch != "" {
		u = c.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "search"}, map[string]string{"next_batch": nextBatch})
	}
	var ans srchAnswer
	_, err := c.MakeRequest(context.Background(), http.MethodPost, u, map[string]any{"search_categories": map[string]any{"room_events": criteria}}, &ans)
	return &ans, err
}

func srchMust(t *testing.T, c *mautrix.Client, criteria map[string]any, nextBatch string) *srchAnswer {
	t.Helper()
	ans, err := srchPost(c, criteria, nextBatch)
	if err != nil {
		t.Fatalf("search %v: %v", criteria, err)
	}
	return ans
}

// resultIDs lists the event IDs of an answer's results in order.
func srchIDs(ans *srchAnswer) []id.EventID {
	var out []id.EventID
	for _, r := range ans.SearchCategories.RoomEvents.Results {
		out = append(out, r.Result.EventID)
	}
	return out
}

func srchSend(t *testing.T, c *mautrix.Client, roomID id.RoomID, text string) id.EventID {
	t.Helper()
	resp, err := c.SendText(context.Background(), roomID, text)
	if err != nil {
		t.Fatalf("send %q: %v", text, err)
	}
	return resp.EventID
}

func srchJoin(t *testing.T, c *mautrix.Client, roomID id.RoomID) {
	t.Helper()
	if _, err := c.JoinRoomByID(context.Background(), roomID); err != nil {
		t.Fatalf("%s joins %s: %v", c.UserID, roomID, err)
	}
}

// allPages follows next_batch to the end and returns every result ID.
func srchPages(t *testing.T, c *mautrix.Client, criteria map[string]any) []id.EventID {
	t.Helper()
	var out []id.EventID
	next := ""
	for range 100 {
		ans := srchMust(t, c, criteria, next)
		out = append(out, srchIDs(ans)...)
		if next = ans.SearchCategories.RoomEvents.NextBatch; next == "" {
			return out
		}
	}
	t.Fatal("next_batch never ends")
	return nil
}

// TestSearchRankAndRecent finds messages, names and topics by word prefixes, in rank and in
// recent order, with highlights; a message sent just before the search is found.
func TestSearchRankAndRecent(t *testing.T) {
	s := Start(t)
	alice := s.NewUser(t, "alice")
	roomID := createRoom(t, alice, &mautrix.ReqCreateRoom{Name: "Martian society", Topic: "all things Mars"})
	once := srchSend(t, alice, roomID, "A martian landed in the garden")
	srchSend(t, alice, roomID, "Nothing to report today")
	thrice := srchSend(t, alice, roomID, "Martians, martians and more martians!")

	ans := srchMust(t, alice, map[string]any{"search_term": "MARTIAN"}, "")
	re := ans.SearchCategories.RoomEvents
	if re.Count != 3 || len(re.Results) != 3 || re.NextBatch != "" {
		t.Fatalf("rank: count %d, results %v, next %q", re.Count, srchIDs(ans), re.NextBatch)
	}
	if got := srchIDs(ans); slices.Index(got, thrice) > slices.Index(got, once) {
		t.Fatalf("rank order: %+v", re.Results)
	}
	ans = srchMust(t, alice, map[string]any{"search_term": "martian", "keys": []string{"content.body"}}, "")
	if r := ans.SearchCategories.RoomEvents.Results; len(r) != 2 || r[0].Result.EventID != thrice || r[0].Rank <= r[1].Rank {
		t.Fatalf("rank by body: %+v", r)
	}
	re = ans.SearchCategories.RoomEvents
	if !slices.Contains(re.Highlights, "martians") || !slices.Contains(re.Highlights, "martian") {
		t.Fatalf("highlights: %v", re.Highlights)
	}
	if r := re.Results[0].Result; r.RoomID != roomID || r.Sender != alice.UserID || r.Content["body"] != "Martians, martians and more martians!" {
		t.Fatalf("result event: %+v", r)
	}

	ans = srchMust(t, alice, map[string]any{"search_term": "martian", "order_by": "recent", "keys": []string{"content.body"}}, "")
	if got := srchIDs(ans); !slices.Equal(got, []id.EventID{thrice, once}) {
		t.Fatalf("recent: %v, want %v", got, []id.EventID{thrice, once})
	}
	ans = srchMust(t, alice, map[string]any{"search_term": "mars", "keys": []string{"content.topic"}}, "")
	if r := ans.SearchCategories.RoomEvents.Results; len(r) != 1 || r[0].Result.Type != "m.room.topic" {
		t.Fatalf("topic: %+v", r)
	}
	// Sent and searched at once: the search catches the index up first.
	fresh := srchSend(t, alice, roomID, "zeppelin sighted")
	if got := srchIDs(srchMust(t, alice, map[string]any{"search_term": "zeppelin"}, "")); !slices.Equal(got, []id.EventID{fresh}) {
		t.Fatalf("fresh message: %v", got)
	}
	if got := srchMust(t, alice, map[string]any{"search_term": "!!!"}, ""); len(got.SearchCategories.RoomEvents.Results) != 0 {
		t.Fatalf("no words: %+v", got)
	}
}

// TestSearchFiltersAndPages applies the RoomEventFilter and pages with next_batch in both orders.
func TestSearchFiltersAndPages(t *testing.T) {
	s := Start(t)
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	room1 := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	room2 := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "tea room"})
	srchJoin(t, bob, room1)
	srchJoin(t, bob, room2)
	var all, fromBob, inRoom2 []id.EventID
	for i := range 7 {
		c, room := alice, room1
		if i%2 == 1 {
			c = bob
		}
		if i%3 == 0 {
			room = room2
		}
		e := srchSend(t, c, room, "tea time")
		all = append(all, e)
		if c == bob {
			fromBob = append(fromBob, e)
		}
		if room == room2 {
			inRoom2 = append(inRoom2, e)
		}
	}
	slices.Reverse(all)
	slices.Reverse(fromBob)
	slices.Reverse(inRoom2)
	body := []string{"content.body"}

	for _, order := range []string{"recent", "rank"} {
		got := srchPages(t, alice, map[string]any{"search_term": "tea", "keys": body, "order_by": order, "filter": map[string]any{"limit": 2}})
		sorted := slices.Clone(got)
		slices.Sort(sorted)
		want := slices.Clone(all)
		slices.Sort(want)
		if !slices.Equal(sorted, want) {
			t.Fatalf("%s pages: %v, want %v", order, got, all)
		}
		if order == "recent" && !slices.Equal(got, all) {
			t.Fatalf("recent pages out of order: %v, want %v", got, all)
		}
	}
	check := func(name string, filter map[string]any, want []id.EventID) {
		t.Helper()
		got := srchPages(t, alice, map[string]any{"search_term": "tea", "order_by": "recent", "filter": filter})
		if !slices.Equal(got, want) {
			t.Fatalf("%s: %v, want %v", name, got, want)
		}
	}
	check("senders", map[string]any{"senders": []id.UserID{bob.UserID}}, fromBob)
	check("not_senders", map[string]any{"not_senders": []id.UserID{alice.UserID}}, fromBob)
	check("rooms", map[string]any{"rooms": []id.RoomID{room2}, "types": []string{"m.room.message"}}, inRoom2)
	check("not_rooms", map[string]any{"not_rooms": []id.RoomID{room1}, "not_types": []string{"m.room.name"}}, inRoom2)
	check("empty rooms", map[string]any{"rooms": []id.RoomID{}}, nil)
	check("types wildcard", map[string]any{"types": []string{"m.room.t*"}}, nil)
	if got := srchPages(t, alice, map[string]any{"search_term": "tea", "filter": map[string]any{"types": []string{"m.*.name"}}}); len(got) != 1 {
		t.Fatalf("room name by wildcard: %v", got)
	}

	// A token of one ordering does not fit the other, nor does a made-up one.
	ans := srchMust(t, alice, map[string]any{"search_term": "tea", "order_by": "recent", "filter": map[string]any{"limit": 1}}, "")
	_, err := srchPost(alice, map[string]any{"search_term": "tea", "order_by": "rank"}, ans.SearchCategories.RoomEvents.NextBatch)
	wantErrCode(t, err, http.StatusBadRequest, "M_UNKNOWN")
	_, err = srchPost(alice, map[string]any{"search_term": "tea"}, "bogus")
	wantErrCode(t, err, http.StatusBadRequest, "M_UNKNOWN")
}

// TestSearchContextGroupsAndState asks for event context with profiles, groups by room and
// sender, pages inside a group, and the rooms' state.
func TestSearchContextGroupsAndState(t *testing.T) {
	s := Start(t)
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	ctx := context.Background()
	if err := bob.SetDisplayName(ctx, "Bobby"); err != nil {
		t.Fatal(err)
	}
	room1 := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "first"})
	room2 := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "second"})
	srchJoin(t, bob, room1)
	before := srchSend(t, alice, room1, "hello there")
	hit := srchSend(t, bob, room1, "the needle is here")
	after1 := srchSend(t, alice, room1, "found it?")
	after2 := srchSend(t, bob, room1, "yes")
	for range 3 {
		srchSend(t, alice, room2, "another needle")
	}

	ans := srchMust(t, alice, map[string]any{
		"search_term": "needle", "order_by": "recent", "keys": []string{"content.body"}, "filter": map[string]any{"rooms": []id.RoomID{room1}},
		"event_context": map[string]any{"before_limit": 1, "after_limit": 5, "include_profile": true}, "include_state": true,
	}, "")
	re := ans.SearchCategories.RoomEvents
	if len(re.Results) != 1 || re.Results[0].Context == nil {
		t.Fatalf("context search: %+v", re)
	}
	c := re.Results[0].Context
	if len(c.EventsBefore) != 1 || c.EventsBefore[0].EventID != before {
		t.Fatalf("events_before: %+v", c.EventsBefore)
	}
	if len(c.EventsAfter) != 2 || c.EventsAfter[0].EventID != after1 || c.EventsAfter[1].EventID != after2 {
		t.Fatalf("events_after: %+v", c.EventsAfter)
	}
	if c.Start == "" || c.End == "" || c.ProfileInfo[bob.UserID].DisplayName != "Bobby" {
		t.Fatalf("tokens %q %q, profiles %+v", c.Start, c.End, c.ProfileInfo)
	}
	st := re.State[room1]
	if !slices.ContainsFunc(st, func(e srchEvent) bool { return e.Type == "m.room.name" && e.Content["name"] == "first" }) {
		t.Fatalf("state of %s: %+v", room1, st)
	}
	if re.Results[0].Result.EventID != hit {
		t.Fatalf("result %s, want %s", re.Results[0].Result.EventID, hit)
	}

	for _, order := range []string{"recent", "rank"} {
		criteria := map[string]any{"search_term": "needle", "order_by": order, "filter": map[string]any{"limit": 2},
			"groupings": map[string]any{"group_by": []map[string]string{{"key": "room_id"}, {"key": "sender"}}}}
		ans = srchMust(t, alice, criteria, "")
		groups := ans.SearchCategories.RoomEvents.Groups
		if len(groups["room_id"]) == 0 || len(groups["sender"]) == 0 {
			t.Fatalf("%s groups: %+v", order, groups)
		}
		var inGroups int
		for _, g := range groups["room_id"] {
			inGroups += len(g.Results)
		}
		if inGroups != 2 {
			t.Fatalf("%s: %d results in room groups, want 2", order, inGroups)
		}
		// room2 has three needles: its group's token pages through the rest of them only.
		g2, ok := groups["room_id"][string(room2)]
		if !ok || g2.NextBatch == "" || g2.Order < 1 {
			t.Fatalf("%s: room2 group %+v", order, g2)
		}
		seen := slices.Clone(g2.Results)
		for next := g2.NextBatch; next != ""; {
			page := srchMust(t, alice, criteria, next)
			for _, r := range page.SearchCategories.RoomEvents.Results {
				if r.Result.RoomID != room2 {
					t.Fatalf("%s: group page left the group: %+v", order, r.Result)
				}
				seen = append(seen, r.Result.EventID)
			}
			next = page.SearchCategories.RoomEvents.NextBatch
		}
		slices.Sort(seen)
		if len(slices.Compact(seen)) != 3 {
			t.Fatalf("%s: room2 group paged to %v", order, seen)
		}
	}
}

// TestSearchRedaction: a redacted message is no longer found, and shows redacted in context.
func TestSearchRedaction(t *testing.T) {
	s := Start(t)
	alice := s.NewUser(t, "alice")
	roomID := createRoom(t, alice, &mautrix.ReqCreateRoom{})
	gone := srchSend(t, alice, roomID, "embarrassing typo")
	srchSend(t, alice, roomID, "a typo fixed")
	if got := srchIDs(srchMust(t, alice, map[string]any{"search_term": "embarrassing"}, "")); len(got) != 1 {
		t.Fatalf("before redaction: %v", got)
	}
	if _, err := alice.RedactEvent(context.Background(), roomID, gone); err != nil {
		t.Fatal(err)
	}
	if got := srchMust(t, alice, map[string]any{"search_term": "embarrassing"}, ""); len(got.SearchCategories.RoomEvents.Results) != 0 || got.SearchCategories.RoomEvents.Count != 0 {
		t.Fatalf("after redaction: %+v", got.SearchCategories.RoomEvents)
	}
	ans := srchMust(t, alice, map[string]any{"search_term": "fixed", "event_context": map[string]any{"before_limit": 1, "after_limit": 0}}, "")
	if r := ans.SearchCategories.RoomEvents.Results; len(r) != 1 || len(r[0].Context.EventsBefore) != 1 ||
		r[0].Context.EventsBefore[0].EventID != gone || len(r[0].Context.EventsBefore[0].Content) != 0 {
		t.Fatalf("redacted event in context: %+v", r)
	}
}

// TestSearchPermissions: users find only what history visibility lets them see.
func TestSearchPermissions(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice, bob, carol := s.NewUser(t, "alice"), s.NewUser(t, "bob"), s.NewUser(t, "carol")

	// bob's room only shows members what was sent while they were joined.
	joined := createRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if _, err := bob.SendStateEvent(ctx, joined, event.StateHistoryVisibility, "", map[string]string{"history_visibility": "joined"}); err != nil {
		t.Fatal(err)
	}
	srchSend(t, bob, joined, "secret before")
	srchJoin(t, alice, joined)
	during := srchSend(t, bob, joined, "secret during")
	if _, err := alice.LeaveRoom(ctx, joined); err != nil {
		t.Fatal(err)
	}
	srchSend(t, bob, joined, "secret after")
	// A shared-history room shows what came before the join too.
	shared := createRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	early := srchSend(t, bob, shared, "secret early")
	srchJoin(t, alice, shared)
	// A private room of bob alone.
	private := createRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	srchSend(t, bob, private, "secret private")

	got := srchIDs(srchMust(t, alice, map[string]any{"search_term": "secret", "order_by": "recent"}, ""))
	if !slices.Equal(got, []id.EventID{early, during}) {
		t.Fatalf("alice finds %v, want %v", got, []id.EventID{early, during})
	}
	if got := srchIDs(srchMust(t, bob, map[string]any{"search_term": "secret"}, "")); len(got) != 5 {
		t.Fatalf("bob finds %d, want 5", len(got))
	}
	if got := srchMust(t, carol, map[string]any{"search_term": "secret"}, ""); len(got.SearchCategories.RoomEvents.Results) != 0 {
		t.Fatalf("carol finds %v", srchIDs(got))
	}
	// Even a filter naming the room shows carol nothing.
	if got := srchMust(t, carol, map[string]any{"search_term": "secret", "filter": map[string]any{"rooms": []id.RoomID{private}}}, ""); len(got.SearchCategories.RoomEvents.Results) != 0 {
		t.Fatalf("carol finds by room filter: %v", srchIDs(got))
	}
	// The context of alice's result holds nothing from before she joined or after she left.
	ans := srchMust(t, alice, map[string]any{"search_term": "during", "event_context": map[string]any{"before_limit": 10, "after_limit": 10}, "include_state": true}, "")
	r := ans.SearchCategories.RoomEvents.Results
	if len(r) != 1 {
		t.Fatalf("during: %v", srchIDs(ans))
	}
	for _, e := range append(r[0].Context.EventsBefore, r[0].Context.EventsAfter...) {
		if e.Type == "m.room.message" {
			t.Fatalf("alice sees %q in context", e.Content["body"])
		}
	}
	// The state shown is the one at her leave, not newer.
	if st := ans.SearchCategories.RoomEvents.State[joined]; !slices.ContainsFunc(st, func(e srchEvent) bool {
		return e.Type == "m.room.member" && e.Content["membership"] == "leave" && e.Sender == alice.UserID
	}) {
		t.Fatalf("state at leave: %+v", st)
	}
}

// TestSearchAfterRestart: the index and its cursor survive a restart, and what was sent while
// the server was down to the search consumer is indexed once.
func TestSearchAfterRestart(t *testing.T) {
	s := Start(t)
	alice := s.NewUser(t, "alice")
	roomID := createRoom(t, alice, &mautrix.ReqCreateRoom{})
	first := srchSend(t, alice, roomID, "persistent one")
	if got := srchIDs(srchMust(t, alice, map[string]any{"search_term": "persistent"}, "")); len(got) != 1 {
		t.Fatalf("before restart: %v", got)
	}
	second := srchSend(t, alice, roomID, "persistent two")

	s2 := srchRestart(t, s)
	u, _ := url.Parse(s2.URL(config.ResourceClient))
	alice.HomeserverURL = u
	third := srchSend(t, alice, roomID, "persistent three")
	ans := srchMust(t, alice, map[string]any{"search_term": "persistent", "order_by": "recent"}, "")
	if got := srchIDs(ans); !slices.Equal(got, []id.EventID{third, second, first}) || ans.SearchCategories.RoomEvents.Count != 3 {
		t.Fatalf("after restart: %v (count %d)", got, ans.SearchCategories.RoomEvents.Count)
	}
}

// restart shuts s down and starts a server on the same configuration and database.
func srchRestart(t *testing.T, s *Server) *lattice.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("shut down: %v", err)
	}
	logs := &testLog{t: t}
	t.Cleanup(logs.stop)
	s2, err := lattice.New(ctx, s.Config, lattice.NewLogger(s.Config.Log, logs))
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	if err := s2.Start(); err != nil {
		t.Fatalf("restart: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s2.Shutdown(ctx); err != nil {
			t.Errorf("shut down: %v", err)
		}
	})
	return s2
}

// TestSearchBadInput answers malformed searches with the spec's errors.
func TestSearchBadInput(t *testing.T) {
	s := Start(t)
	alice := s.NewUser(t, "alice")
	post := func(body string) (int, map[string]any) {
		t.Helper()
		status, _, resp := do(t, "POST", s.URL+"/_matrix/client/v3/search", []byte(body), "Authorization", "Bearer "+alice.AccessToken)
		var m map[string]any
		json.Unmarshal(resp, &m)
		return status, m
	}
	for body, code := range map[string]string{
		`not json`: "M_NOT_JSON",
		`{}`:       "M_BAD_JSON",
		`{"search_categories":{"room_events":{}}}`:                                                            "M_BAD_JSON",
		`{"search_categories":{"room_events":{"search_term":5}}}`:                                             "M_BAD_JSON",
		`{"search_categories":{"room_events":{"search_term":"x","order_by":"oldest"}}}`:                       "M_INVALID_PARAM",
		`{"search_categories":{"room_events":{"search_term":"x","keys":["content.url"]}}}`:                    "M_INVALID_PARAM",
		`{"search_categories":{"room_events":{"search_term":"x","filter":{"limit":0}}}}`:                      "M_INVALID_PARAM",
		`{"search_categories":{"room_events":{"search_term":"x","filter":{"rooms":"!a:b"}}}}`:                 "M_BAD_JSON",
		`{"search_categories":{"room_events":{"search_term":"x","event_context":{"after_limit":-1}}}}`:        "M_INVALID_PARAM",
		`{"search_categories":{"room_events":{"search_term":"x","groupings":{"group_by":[{"key":"type"}]}}}}`: "M_INVALID_PARAM",
	} {
		if status, m := post(body); status != http.StatusBadRequest || m["errcode"] != code {
			t.Errorf("%s: %d %v, want 400 %s", body, status, m, code)
		}
	}
	if status, m := post(`{"search_categories":{}}`); status != http.StatusOK || len(m["search_categories"].(map[string]any)) != 0 {
		t.Errorf("no categories: %d %v", status, m)
	}
	status, _, _ := do(t, "POST", s.URL+"/_matrix/client/v3/search", []byte(`{"search_categories":{}}`))
	if status != http.StatusUnauthorized {
		t.Errorf("without a token: %d", status)
	}
}
