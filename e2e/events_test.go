package e2e

import (
	"encoding/json"
	"net/url"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

type legacyEvents struct {
	Start string `json:"start"`
	End   string `json:"end"`
	Chunk []struct {
		Type    string          `json:"type"`
		RoomID  id.RoomID       `json:"room_id"`
		EventID id.EventID      `json:"event_id"`
		Content json.RawMessage `json:"content"`
	} `json:"chunk"`
}

// TestLegacyEventStream drives the deprecated GET /events: it starts at the present, carries
// the events of the user's rooms with their room_id, typing notices, and waits for news.
func TestLegacyEventStream(t *testing.T) {
	s := Start(t)
	alice := register(t, s, "alice", "pw")
	bob := register(t, s, "bob", "pw")
	room, err := alice.CreateRoom(ctx(t), &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoomByID(ctx(t), room.RoomID); err != nil {
		t.Fatal(err)
	}
	get := func(cli *mautrix.Client, q url.Values) legacyEvents {
		t.Helper()
		var out legacyEvents
		u := s.URL + "/_matrix/client/r0/events?" + q.Encode()
		if _, err := cli.MakeRequest(ctx(t), "GET", u, nil, &out); err != nil {
			t.Fatalf("GET /events: %v", err)
		}
		if out.Start == "" || out.End == "" || out.Chunk == nil {
			t.Fatalf("GET /events: %+v", out)
		}
		return out
	}
	first := get(bob, url.Values{"timeout": {"0"}})
	if len(first.Chunk) != 0 {
		t.Errorf("the stream starts at the present, got %+v", first.Chunk)
	}

	sent, err := alice.SendMessageEvent(ctx(t), room.RoomID, event.EventMessage, map[string]string{"msgtype": "m.text", "body": "hi"})
	if err != nil {
		t.Fatal(err)
	}
	next := get(bob, url.Values{"from": {first.End}, "timeout": {"10000"}})
	found := false
	for _, e := range next.Chunk {
		if e.EventID == sent.EventID {
			found = e.RoomID == room.RoomID && e.Type == "m.room.message"
		}
	}
	if !found || next.Start != first.End {
		t.Fatalf("message not in the stream: %+v", next)
	}

	if _, err := alice.UserTyping(ctx(t), room.RoomID, true, 10000); err != nil {
		t.Fatal(err)
	}
	typing := get(bob, url.Values{"from": {next.End}, "timeout": {"10000"}})
	found = false
	for _, e := range typing.Chunk {
		found = found || e.Type == "m.typing" && e.RoomID == room.RoomID
	}
	if !found {
		t.Fatalf("typing not in the stream: %+v", typing)
	}
	// Nothing new: an empty chunk after the timeout, with the same position.
	if idle := get(bob, url.Values{"from": {typing.End}, "timeout": {"50"}}); len(idle.Chunk) != 0 {
		t.Errorf("idle stream: %+v", idle)
	}
	status, _, body := do(t, "GET", s.URL+"/_matrix/client/v3/events?from=nonsense&access_token="+bob.AccessToken, nil)
	wantError(t, status, body, 400, "M_INVALID_PARAM")
}
