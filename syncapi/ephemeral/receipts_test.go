package ephemeral

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/receiptstore"
	"github.com/latticehq/lattice/storage/storagetest"
	"github.com/latticehq/lattice/syncapi/synctypes"
	"github.com/latticehq/lattice/userapi"
)

func (f *fixture) receiptPath(typ string, eventID id.EventID) string {
	return "/rooms/" + url.PathEscape(string(f.room)) + "/receipt/" + typ + "/" + url.PathEscape(string(eventID))
}

// receipts returns the m.receipt contents of the room, decoded: event → type → user → receipt.
func receiptsIn(t *testing.T, got map[id.RoomID]map[string][]json.RawMessage, room id.RoomID) []map[id.EventID]map[string]map[id.UserID]receiptUser {
	t.Helper()
	var out []map[id.EventID]map[string]map[id.UserID]receiptUser
	for _, raw := range got[room]["m.receipt"] {
		var c map[id.EventID]map[string]map[id.UserID]receiptUser
		if err := json.Unmarshal(raw, &c); err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

func TestReceipts(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		f := newFixture(t, db)
		rc := f.api.Receipts()
		e1, e2 := f.message(bob), f.message(bob)
		joined := []id.RoomID{f.room}
		bobReq := &synctypes.Request{User: bob, Joined: joined}
		aliceReq := &synctypes.Request{User: alice, Joined: joined}

		p0 := pos(t, rc)
		f.ok(alice, http.MethodPost, f.receiptPath("m.read", e1), `{}`)
		p1 := pos(t, rc)
		if p1 <= p0 {
			t.Fatalf("receipt did not move the position: %d → %d", p0, p1)
		}
		got := receiptsIn(t, collect(t, rc, bobReq, p0, p1), f.room)
		if len(got) != 1 || got[0][e1]["m.read"][alice].TS == 0 || got[0][e1]["m.read"][alice].ThreadID != "" {
			t.Fatalf("bob sees %+v", got)
		}

		// The same receipt again, and one for an earlier event, change nothing.
		f.ok(alice, http.MethodPost, f.receiptPath("m.read", e1), ``)
		f.ok(alice, http.MethodPost, f.receiptPath("m.read", e2), `{}`)
		p2 := pos(t, rc)
		f.ok(alice, http.MethodPost, f.receiptPath("m.read", e1), `{}`)
		if pos(t, rc) != p2 {
			t.Fatal("a receipt moving backwards was stored")
		}

		// A private receipt reaches its owner alone.
		f.ok(alice, http.MethodPost, f.receiptPath("m.read.private", e2), `{}`)
		p3 := pos(t, rc)
		if got := collect(t, rc, bobReq, p2, p3); len(got) != 0 {
			t.Fatalf("bob sees alice's private receipt: %v", got)
		}
		got = receiptsIn(t, collect(t, rc, aliceReq, p2, p3), f.room)
		if len(got) != 1 || got[0][e2]["m.read.private"][alice].TS == 0 {
			t.Fatalf("alice sees %+v", got)
		}

		// Threaded receipts: one in the main timeline and one in a thread, each its own event.
		root := f.message(bob)
		reply := f.send(bob, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "in thread",
			"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}})
		reaction := f.send(alice, "m.reaction", nil, map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": reply, "key": "👍"}})
		f.ok(bob, http.MethodPost, f.receiptPath("m.read", root), `{"thread_id": "main"}`)
		f.ok(bob, http.MethodPost, f.receiptPath("m.read", reaction), `{"thread_id": "`+string(root)+`"}`)
		// The root is the thread's too, but it is before the reaction: the receipt stays.
		f.ok(bob, http.MethodPost, f.receiptPath("m.read", root), `{"thread_id": "`+string(root)+`"}`)
		p4 := pos(t, rc)
		got = receiptsIn(t, collect(t, rc, aliceReq, p3, p4), f.room)
		if len(got) != 2 {
			t.Fatalf("want one m.receipt per thread, got %+v", got)
		}
		threads := map[string]id.EventID{}
		for _, c := range got {
			for ev, byType := range c {
				threads[byType["m.read"][bob].ThreadID] = ev
			}
		}
		if threads["main"] != root || threads[string(root)] != reaction {
			t.Fatalf("threaded receipts %+v", threads)
		}

		// An initial sync gets every receipt there is, private ones only for their owner.
		initial := &synctypes.Request{User: bob, Joined: joined, Initial: true}
		count := 0
		for _, c := range receiptsIn(t, collect(t, rc, initial, 0, p4), f.room) {
			for _, byType := range c {
				if _, ok := byType["m.read.private"]; ok {
					t.Fatal("initial sync shows bob alice's private receipt")
				}
				for _, users := range byType {
					count += len(users)
				}
			}
		}
		if count != 3 { // alice's m.read, bob's main and thread receipts
			t.Fatalf("initial sync has %d receipts, want 3", count)
		}
		// Rooms the user is not joined to, and rooms the filter leaves out, get nothing.
		if got := collect(t, rc, &synctypes.Request{User: carol, Initial: true}, 0, p4); len(got) != 0 {
			t.Fatalf("carol sees %v", got)
		}
		noReceipts := &synctypes.Request{User: bob, Joined: joined, Initial: true,
			Filter: &synctypes.Filter{Room: &synctypes.RoomFilter{NotRooms: []string{string(f.room)}}}}
		if got := collect(t, rc, noReceipts, 0, p4); len(got) != 0 {
			t.Fatalf("filtered room got %v", got)
		}

		// After a restart the receipts and the position are still there; an old token is
		// answered from the database.
		f.stop()
		f.start()
		rc = f.api.Receipts()
		if pos(t, rc) != p4 {
			t.Fatalf("position after restart %d, want %d", pos(t, rc), p4)
		}
		if got := receiptsIn(t, collect(t, rc, bobReq, p0, p4), f.room); len(got) != 3 { // unthreaded, main, thread
			t.Fatalf("token from before the restart gets %+v", got)
		}
		if got := collect(t, rc, bobReq, p4, p4); len(got) != 0 {
			t.Fatalf("current token gets %v", got)
		}
	})
}

func TestReadMarkers(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		f := newFixture(t, db)
		ctx := context.Background()
		e1, e2 := f.message(alice), f.message(alice)
		path := "/rooms/" + url.PathEscape(string(f.room)) + "/read_markers"
		p0 := pos(t, f.api.Receipts())
		f.ok(bob, http.MethodPost, path, `{"m.fully_read": "`+string(e2)+`", "m.read": "`+string(e2)+`", "m.read.private": "`+string(e2)+`"}`)
		fullyRead := func() id.EventID {
			t.Helper()
			raw, err := f.users.GetAccountData(ctx, bob, f.room, "m.fully_read")
			if err != nil {
				t.Fatal(err)
			}
			var c struct {
				EventID id.EventID `json:"event_id"`
			}
			json.Unmarshal(raw, &c)
			return c.EventID
		}
		if got := fullyRead(); got != e2 {
			t.Fatalf("m.fully_read is %s, want %s", got, e2)
		}
		p1 := pos(t, f.api.Receipts())
		got := receiptsIn(t, collect(t, f.api.Receipts(), &synctypes.Request{User: bob, Joined: []id.RoomID{f.room}}, p0, p1), f.room)
		if len(got) != 1 || got[0][e2]["m.read"][bob].TS == 0 || got[0][e2]["m.read.private"][bob].TS == 0 {
			t.Fatalf("receipts from read_markers: %+v", got)
		}
		// The marker does not move back; the receipt endpoint moves it too.
		f.ok(bob, http.MethodPost, path, `{"m.fully_read": "`+string(e1)+`"}`)
		if got := fullyRead(); got != e2 {
			t.Fatalf("m.fully_read moved back to %s", got)
		}
		e3 := f.message(alice)
		f.ok(bob, http.MethodPost, f.receiptPath("m.fully_read", e3), `{}`)
		if got := fullyRead(); got != e3 {
			t.Fatalf("m.fully_read is %s after the receipt endpoint, want %s", got, e3)
		}
		f.ok(bob, http.MethodPost, path, `{}`)
	})
}

// TestErrors checks every endpoint's answers to bad requests, and that they write nothing.
func TestErrors(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		f := newFixture(t, db)
		ev := f.message(alice)
		root := f.message(alice)
		reply := f.send(bob, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "in thread",
			"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}})
		other, err := f.rooms.CreateRoom(context.Background(), roomserverReq(carol))
		if err != nil {
			t.Fatal(err)
		}
		otherEv := f.sendIn(other, carol)
		room := url.PathEscape(string(f.room))
		typing := "/rooms/" + room + "/typing/" + url.PathEscape(string(bob))
		markers := "/rooms/" + room + "/read_markers"
		for _, tc := range []struct {
			name         string
			user         id.UserID
			method, path string
			body         string
			status       int
			code         string
		}{
			{"typing without token", "", http.MethodPut, typing, `{"typing": true}`, 401, "M_MISSING_TOKEN"},
			{"typing for someone else", alice, http.MethodPut, typing, `{"typing": true}`, 403, "M_FORBIDDEN"},
			{"typing outside the room", carol, http.MethodPut, "/rooms/" + room + "/typing/" + url.PathEscape(string(carol)), `{"typing": true}`, 403, "M_FORBIDDEN"},
			{"typing in an unknown room", bob, http.MethodPut, "/rooms/!nope:example.test/typing/" + url.PathEscape(string(bob)), `{"typing": true}`, 403, "M_FORBIDDEN"},
			{"typing in a bad room ID", bob, http.MethodPut, "/rooms/nope/typing/" + url.PathEscape(string(bob)), `{"typing": true}`, 400, "M_INVALID_PARAM"},
			{"typing without typing", bob, http.MethodPut, typing, `{"timeout": 1000}`, 400, "M_MISSING_PARAM"},
			{"typing not a boolean", bob, http.MethodPut, typing, `{"typing": "yes"}`, 400, "M_BAD_JSON"},
			{"typing timeout a fraction", bob, http.MethodPut, typing, `{"typing": true, "timeout": 1.5}`, 400, "M_BAD_JSON"},
			{"typing negative timeout", bob, http.MethodPut, typing, `{"typing": true, "timeout": -1}`, 400, "M_INVALID_PARAM"},
			{"typing not JSON", bob, http.MethodPut, typing, `{typing`, 400, "M_NOT_JSON"},
			{"typing no body", bob, http.MethodPut, typing, ``, 400, "M_NOT_JSON"},
			{"typing body an array", bob, http.MethodPut, typing, `[]`, 400, "M_BAD_JSON"},

			{"receipt without token", "", http.MethodPost, f.receiptPath("m.read", ev), `{}`, 401, "M_MISSING_TOKEN"},
			{"receipt of unknown type", bob, http.MethodPost, f.receiptPath("m.like", ev), `{}`, 400, "M_INVALID_PARAM"},
			{"receipt of a bad event ID", bob, http.MethodPost, f.receiptPath("m.read", "nope"), `{}`, 400, "M_INVALID_PARAM"},
			{"receipt of an unknown event", bob, http.MethodPost, f.receiptPath("m.read", "$nope"), `{}`, 404, "M_NOT_FOUND"},
			{"receipt of another room's event", bob, http.MethodPost, f.receiptPath("m.read", otherEv), `{}`, 404, "M_NOT_FOUND"},
			{"receipt outside the room", carol, http.MethodPost, f.receiptPath("m.read", ev), `{}`, 403, "M_FORBIDDEN"},
			{"receipt thread_id a number", bob, http.MethodPost, f.receiptPath("m.read", ev), `{"thread_id": 1}`, 400, "M_INVALID_PARAM"},
			{"receipt thread_id empty", bob, http.MethodPost, f.receiptPath("m.read", ev), `{"thread_id": ""}`, 400, "M_INVALID_PARAM"},
			{"receipt thread_id no event ID", bob, http.MethodPost, f.receiptPath("m.read", ev), `{"thread_id": "thread"}`, 400, "M_INVALID_PARAM"},
			{"receipt thread_id on m.fully_read", bob, http.MethodPost, f.receiptPath("m.fully_read", ev), `{"thread_id": "main"}`, 400, "M_INVALID_PARAM"},
			{"receipt in main of a thread's event", bob, http.MethodPost, f.receiptPath("m.read", reply), `{"thread_id": "main"}`, 400, "M_INVALID_PARAM"},
			{"receipt in a thread it is not in", bob, http.MethodPost, f.receiptPath("m.read", ev), `{"thread_id": "` + string(root) + `"}`, 400, "M_INVALID_PARAM"},
			{"receipt body not JSON", bob, http.MethodPost, f.receiptPath("m.read", ev), `{`, 400, "M_NOT_JSON"},

			{"read_markers without token", "", http.MethodPost, markers, `{}`, 401, "M_MISSING_TOKEN"},
			{"read_markers not JSON", bob, http.MethodPost, markers, `nope`, 400, "M_NOT_JSON"},
			{"read_markers wrong type", bob, http.MethodPost, markers, `{"m.read": 5}`, 400, "M_BAD_JSON"},
			{"read_markers bad event ID", bob, http.MethodPost, markers, `{"m.fully_read": "nope"}`, 400, "M_INVALID_PARAM"},
			{"read_markers outside the room", carol, http.MethodPost, markers, `{"m.read": "` + string(ev) + `"}`, 403, "M_FORBIDDEN"},
			// The valid m.read must not be stored when m.fully_read names an unknown event.
			{"read_markers unknown event", bob, http.MethodPost, markers, `{"m.read": "` + string(ev) + `", "m.fully_read": "$nope"}`, 404, "M_NOT_FOUND"},
			{"read_markers another room's event", bob, http.MethodPost, markers, `{"m.read.private": "` + string(otherEv) + `"}`, 404, "M_NOT_FOUND"},
		} {
			status, code := f.do(tc.user, tc.method, tc.path, tc.body)
			if status != tc.status || code != tc.code {
				t.Errorf("%s: %d %s, want %d %s", tc.name, status, code, tc.status, tc.code)
			}
		}
		if p := pos(t, f.api.Receipts()); p != 0 {
			t.Errorf("refused requests wrote receipts up to %d", p)
		}
		if typers := f.api.Typing().Typers(f.room); len(typers) != 0 {
			t.Errorf("refused requests left typers %v", typers)
		}
		if _, err := f.users.GetAccountData(context.Background(), bob, f.room, "m.fully_read"); err == nil {
			t.Error("refused requests set m.fully_read")
		}
	})
}

// TestWakeUps: a public receipt wakes the room's members, a private one its owner, typing the
// room's members.
func TestWakeUps(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		f := newFixture(t, db)
		ev := f.message(alice)
		wait := func(stream string, since int64, key string) {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := f.nf.Wait(ctx, map[string]int64{stream: since}, key); err != nil {
				t.Fatalf("no wake-up of %s on %s: %v", key, stream, err)
			}
		}
		p := pos(t, f.api.Receipts())
		f.ok(bob, http.MethodPost, f.receiptPath("m.read", ev), `{}`)
		wait(synctypes.StreamReceipts, p, roomserver.RoomKey(f.room))
		p = pos(t, f.api.Receipts())
		f.ok(bob, http.MethodPost, f.receiptPath("m.read.private", ev), `{}`)
		wait(synctypes.StreamReceipts, p, userapi.UserKey(bob))

		typingPath := "/rooms/" + url.PathEscape(string(f.room)) + "/typing/" + url.PathEscape(string(bob))
		p = pos(t, f.api.Typing())
		f.ok(bob, http.MethodPut, typingPath, `{"typing": true, "timeout": 30000}`)
		wait(synctypes.StreamTyping, p, roomserver.RoomKey(f.room))
		if got := f.api.Typing().Typers(f.room); len(got) != 1 || got[0] != bob {
			t.Fatalf("typers %v", got)
		}
		p = pos(t, f.api.Typing())
		f.ok(bob, http.MethodPut, typingPath, `{"typing": false}`)
		wait(synctypes.StreamTyping, p, roomserver.RoomKey(f.room))
		if got := f.api.Typing().Typers(f.room); len(got) != 0 {
			t.Fatalf("typers after stop %v", got)
		}
		// A huge timeout is capped rather than refused.
		f.ok(bob, http.MethodPut, typingPath, `{"typing": true, "timeout": 9007199254740991}`)
	})
}

// TestReceiptsResync: after a write whose outcome the component did not learn (a commit whose
// answer was lost), it takes the position from the database and answers windows spanning it
// from there.
func TestReceiptsResync(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		f := newFixture(t, db)
		rc := f.api.Receipts()
		ev := f.message(alice)
		f.ok(bob, http.MethodPost, f.receiptPath("m.read", ev), `{}`)
		p1 := pos(t, rc)
		// Committed behind the component's back.
		if _, _, err := rc.store.Put(context.Background(), []receiptstore.Receipt{{RoomID: string(f.room), UserID: string(alice),
			Type: "m.read", EventID: string(ev), TS: 1}}); err != nil {
			t.Fatal(err)
		}
		rc.wmu.Lock()
		rc.resync()
		rc.wmu.Unlock()
		p2 := pos(t, rc)
		if p2 != p1+1 {
			t.Fatalf("position after resync %d, want %d", p2, p1+1)
		}
		got := receiptsIn(t, collect(t, rc, &synctypes.Request{User: bob, Joined: []id.RoomID{f.room}}, p1, p2), f.room)
		if len(got) != 1 || got[0][ev]["m.read"][alice].TS != 1 {
			t.Fatalf("window over the unseen write: %+v", got)
		}
	})
}
