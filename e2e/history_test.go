package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// sendBody sends a text message and returns its event ID.
func sendBody(t *testing.T, c *mautrix.Client, roomID id.RoomID, body string) id.EventID {
	t.Helper()
	resp, err := c.SendText(context.Background(), roomID, body)
	if err != nil {
		t.Fatalf("send %q: %v", body, err)
	}
	return resp.EventID
}

// bodies returns the bodies of the text messages among evs.
func bodies(evs []*event.Event) []string {
	var out []string
	for _, e := range evs {
		if e.Type == event.EventMessage {
			var c struct {
				Body string `json:"body"`
			}
			json.Unmarshal(e.Content.VeryRaw, &c)
			out = append(out, c.Body)
		}
	}
	return out
}

// TestMessagesPaging pages backwards and forwards through a room's history.
func TestMessagesPaging(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice := s.NewUser(t, "alice")
	roomID := createRoom(t, alice, &mautrix.ReqCreateRoom{})
	for i := range 25 {
		sendBody(t, alice, roomID, fmt.Sprint("m", i))
	}
	var got []string
	from := ""
	for range 10 {
		resp, err := alice.Messages(ctx, roomID, from, "", mautrix.DirectionBackward, &mautrix.FilterPart{Types: []event.Type{event.EventMessage}}, 10)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, bodies(resp.Chunk)...)
		if resp.End == "" {
			break
		}
		from = resp.End
	}
	if len(got) != 25 || got[0] != "m24" || got[24] != "m0" {
		t.Fatalf("backwards: %v", got)
	}
	// Forwards from the start.
	resp, err := alice.Messages(ctx, roomID, "", "", mautrix.DirectionForward, nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Chunk[0].Type != event.StateCreate || bodies(resp.Chunk)[24] != "m24" {
		t.Fatalf("forwards: first %s, bodies %v", resp.Chunk[0].Type, bodies(resp.Chunk))
	}
	// The sender's own device sees its transaction ID.
	last := resp.Chunk[len(resp.Chunk)-1]
	if last.Unsigned.TransactionID == "" {
		t.Fatalf("no transaction_id on own event: %+v", last.Unsigned)
	}
	// Bad input.
	_, err = alice.Messages(ctx, roomID, "garbage", "", mautrix.DirectionBackward, nil, 10)
	wantErrCode(t, err, http.StatusBadRequest, "M_INVALID_PARAM")
	bob := s.NewUser(t, "bob")
	_, err = bob.Messages(ctx, roomID, "", "", mautrix.DirectionBackward, nil, 10)
	wantErrCode(t, err, http.StatusForbidden, "M_FORBIDDEN")
}

// TestHistoryVisibility checks each history_visibility setting for a user who is invited
// late, joins, and leaves (client-server API, "History visibility").
func TestHistoryVisibility(t *testing.T) {
	for _, vis := range []string{"world_readable", "shared", "invited", "joined"} {
		t.Run(vis, func(t *testing.T) {
			s := Start(t)
			ctx := context.Background()
			alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
			roomID := createRoom(t, alice, &mautrix.ReqCreateRoom{InitialState: []*event.Event{{
				Type: event.StateHistoryVisibility, StateKey: ptr(""), Content: event.Content{Raw: map[string]any{"history_visibility": vis}},
			}}})
			sendBody(t, alice, roomID, "before invite")
			if _, err := alice.InviteUser(ctx, roomID, &mautrix.ReqInviteUser{UserID: bob.UserID}); err != nil {
				t.Fatal(err)
			}
			sendBody(t, alice, roomID, "while invited")
			if _, err := bob.JoinRoomByID(ctx, roomID); err != nil {
				t.Fatal(err)
			}
			sendBody(t, alice, roomID, "while joined")
			if _, err := bob.LeaveRoom(ctx, roomID); err != nil {
				t.Fatal(err)
			}
			sendBody(t, alice, roomID, "after leaving")
			resp, err := bob.Messages(ctx, roomID, "", "", mautrix.DirectionForward, nil, 100)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string][]string{
				"world_readable": {"before invite", "while invited", "while joined", "after leaving"},
				"shared":         {"before invite", "while invited", "while joined"},
				"invited":        {"while invited", "while joined"},
				"joined":         {"while joined"},
			}[vis]
			if got := bodies(resp.Chunk); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("bob sees %v, want %v", got, want)
			}
			// A single event follows the same rules.
			after := sendBody(t, alice, roomID, "later")
			_, err = bob.GetEvent(ctx, roomID, after)
			if vis == "world_readable" {
				if err != nil {
					t.Fatalf("world-readable event: %v", err)
				}
			} else {
				wantErrCode(t, err, http.StatusNotFound, "M_NOT_FOUND")
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestRedactionServed redacts a message and checks that readers get the redacted form, and
// that others' messages need the redact power level.
func TestRedactionServed(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	roomID := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if _, err := bob.JoinRoomByID(ctx, roomID); err != nil {
		t.Fatal(err)
	}
	msg := sendBody(t, alice, roomID, "secret")
	_, err := bob.RedactEvent(ctx, roomID, msg)
	wantErrCode(t, err, http.StatusForbidden, "M_FORBIDDEN")
	red, err := alice.RedactEvent(ctx, roomID, msg, mautrix.ReqRedact{Reason: "oops"})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := bob.GetEvent(ctx, roomID, msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.Content.VeryRaw) > 2 || ev.Unsigned.RedactedBecause == nil || ev.Unsigned.RedactedBecause.ID != red.EventID {
		t.Fatalf("redacted event: content %s, unsigned %+v", ev.Content.VeryRaw, ev.Unsigned)
	}
	_, err = alice.RedactEvent(ctx, roomID, "$unknown")
	wantErrCode(t, err, http.StatusNotFound, "M_NOT_FOUND")
}

// TestRelationsAndThreads relates replies and edits to a root and reads them back with their
// aggregations.
func TestRelationsAndThreads(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice := s.NewUser(t, "alice")
	roomID := createRoom(t, alice, &mautrix.ReqCreateRoom{})
	root := sendBody(t, alice, roomID, "root")
	for i := range 3 {
		content := map[string]any{"msgtype": "m.text", "body": fmt.Sprint("reply ", i),
			"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}}
		if _, err := alice.SendMessageEvent(ctx, roomID, event.EventMessage, content); err != nil {
			t.Fatal(err)
		}
	}
	edit := map[string]any{"msgtype": "m.text", "body": "* root!", "m.new_content": map[string]any{"msgtype": "m.text", "body": "root!"},
		"m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": root}}
	editResp, err := alice.SendMessageEvent(ctx, roomID, event.EventMessage, edit)
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Unsigned struct {
			Relations struct {
				Thread *struct {
					Count        int  `json:"count"`
					Participated bool `json:"current_user_participated"`
					Latest       struct {
						EventID id.EventID `json:"event_id"`
					} `json:"latest_event"`
				} `json:"m.thread"`
				Replace *struct {
					EventID id.EventID `json:"event_id"`
				} `json:"m.replace"`
			} `json:"m.relations"`
		} `json:"unsigned"`
	}
	if _, err := alice.MakeRequest(ctx, http.MethodGet, alice.BuildClientURL("v3", "rooms", roomID, "event", root), nil, &raw); err != nil {
		t.Fatal(err)
	}
	rel := raw.Unsigned.Relations
	if rel.Thread == nil || rel.Thread.Count != 3 || !rel.Thread.Participated || rel.Replace == nil || rel.Replace.EventID != editResp.EventID {
		t.Fatalf("aggregations: %+v", rel)
	}
	rels, err := alice.GetRelations(ctx, roomID, root, &mautrix.ReqGetRelations{RelationType: event.RelThread, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(rels.Chunk) != 2 || rels.NextBatch == "" {
		t.Fatalf("relations page: %d events, next %q", len(rels.Chunk), rels.NextBatch)
	}
	more, err := alice.GetRelations(ctx, roomID, root, &mautrix.ReqGetRelations{RelationType: event.RelThread, From: rels.NextBatch})
	if err != nil || len(more.Chunk) != 1 {
		t.Fatalf("second page: %v %v", more, err)
	}
	var threads struct {
		Chunk []json.RawMessage `json:"chunk"`
	}
	_, err = alice.MakeRequest(ctx, http.MethodGet, alice.BuildClientURL("v1", "rooms", roomID, "threads"), nil, &threads)
	if err != nil || len(threads.Chunk) != 1 {
		t.Fatalf("threads: %v %v", threads, err)
	}
}

// TestTxnIdempotentAcrossRestart retries a send after a restart and gets the first event.
func TestTxnIdempotentAcrossRestart(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice := s.NewUser(t, "alice")
	roomID := createRoom(t, alice, &mautrix.ReqCreateRoom{})
	content := map[string]any{"msgtype": "m.text", "body": "once"}
	first, err := alice.SendMessageEvent(ctx, roomID, event.EventMessage, content, mautrix.ReqSendEvent{TransactionID: "restart-txn"})
	if err != nil {
		t.Fatal(err)
	}
	s.Restart(t)
	again, err := alice.SendMessageEvent(ctx, roomID, event.EventMessage, content, mautrix.ReqSendEvent{TransactionID: "restart-txn"})
	if err != nil {
		t.Fatal(err)
	}
	if again.EventID != first.EventID {
		t.Fatalf("after restart the retry sent %s, first was %s", again.EventID, first.EventID)
	}
	resp, err := alice.Messages(ctx, roomID, "", "", mautrix.DirectionBackward, nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := bodies(resp.Chunk); len(got) != 1 {
		t.Fatalf("messages after restart: %v", got)
	}
}

// TestMessagesFilters applies RoomEventFilter fields to /messages.
func TestMessagesFilters(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	roomID := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if _, err := bob.JoinRoomByID(ctx, roomID); err != nil {
		t.Fatal(err)
	}
	sendBody(t, alice, roomID, "from alice")
	sendBody(t, bob, roomID, "from bob")
	if _, err := bob.SendMessageEvent(ctx, roomID, event.EventMessage, map[string]any{"msgtype": "m.image", "body": "pic", "url": "mxc://localhost/abc"}); err != nil {
		t.Fatal(err)
	}
	get := func(f *mautrix.FilterPart) *mautrix.RespMessages {
		t.Helper()
		resp, err := alice.Messages(ctx, roomID, "", "", mautrix.DirectionBackward, f, 50)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if got := bodies(get(&mautrix.FilterPart{Senders: []id.UserID{bob.UserID}, Types: []event.Type{event.EventMessage}}).Chunk); fmt.Sprint(got) != "[pic from bob]" {
		t.Fatalf("senders: %v", got)
	}
	yes := true
	if got := bodies(get(&mautrix.FilterPart{ContainsURL: &yes}).Chunk); fmt.Sprint(got) != "[pic]" {
		t.Fatalf("contains_url: %v", got)
	}
	resp := get(&mautrix.FilterPart{NotTypes: []event.Type{{Type: "m.room.*"}}})
	if len(resp.Chunk) != 0 {
		t.Fatalf("not_types m.room.*: %d events", len(resp.Chunk))
	}
	resp = get(&mautrix.FilterPart{Types: []event.Type{event.EventMessage}, LazyLoadMembers: true})
	if len(resp.State) != 2 {
		t.Fatalf("lazy-loaded members: %d", len(resp.State))
	}
	_, err := alice.MakeRequest(ctx, http.MethodGet, alice.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "rooms", roomID, "messages"}, map[string]string{"dir": "x"}), nil, nil)
	wantErrCode(t, err, http.StatusBadRequest, "M_INVALID_PARAM")
	_, err = alice.MakeRequest(ctx, http.MethodGet, alice.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "rooms", roomID, "messages"}, map[string]string{"dir": "b", "filter": "{"}), nil, nil)
	wantErrCode(t, err, http.StatusBadRequest, "M_INVALID_PARAM")
}
