package userapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/notifier"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

func TestAccountData(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{})
		ctx := t.Context()
		alice, bob := mustAccount(t, u, "alice", "").UserID, mustAccount(t, u, "bob", "").UserID
		set := func(localpart, room, typ, content string) {
			t.Helper()
			if err := u.SetAccountData(ctx, u.userID(localpart), idRoom(room), typ, json.RawMessage(content)); err != nil {
				t.Fatalf("SetAccountData(%s, %s): %v", room, typ, err)
			}
		}
		set("alice", "", "m.direct", `{"a":1}`)
		set("alice", "!r:test.local", "m.direct", `{"room":true}`)
		set("bob", "", "m.direct", `{"bob":1}`)
		for _, tc := range []struct{ room, typ, want string }{
			{"", "m.direct", `{"a":1}`},
			{"!r:test.local", "m.direct", `{"room":true}`},
		} {
			got, err := u.GetAccountData(ctx, alice, idRoom(tc.room), tc.typ)
			if err != nil || string(got) != tc.want {
				t.Errorf("GetAccountData(%q, %s) = %s, %v", tc.room, tc.typ, got, err)
			}
		}
		for _, tc := range []struct{ room, typ string }{{"", "m.other"}, {"!other:test.local", "m.direct"}} {
			_, err := u.GetAccountData(ctx, alice, idRoom(tc.room), tc.typ)
			wantErr(t, "GetAccountData(missing)", err, ErrNotFound)
		}
		if err := u.SetAccountData(ctx, alice, "", "bad", json.RawMessage(`{`)); err == nil {
			t.Error("invalid JSON accepted")
		}

		all, next, err := u.AccountDataSince(ctx, alice, 0)
		// From 0, the whole account data starts with the current push rules (pushrules.go).
		if err != nil || len(all) != 3 || all[0].Type != PushRulesType || all[0].Position != 0 {
			t.Fatalf("AccountDataSince(0) = %+v, %d, %v", all, next, err)
		}
		all = all[1:]
		if all[0].Position >= all[1].Position || next != 3 {
			t.Fatalf("AccountDataSince(0) = %+v, %d, %v", all, next, err)
		}
		if all[0].RoomID != "" || all[1].RoomID != "!r:test.local" {
			t.Errorf("order: %+v", all)
		}
		// Bob's change moved the stream, so Alice's token moves too, with nothing new for her.
		none, next2, err := u.AccountDataSince(ctx, alice, next)
		if err != nil || len(none) != 0 || next2 != next {
			t.Errorf("AccountDataSince(%d) = %+v, %d, %v", next, none, next2, err)
		}
		// An overwrite moves the entry to a new position; it is listed once.
		set("alice", "", "m.direct", `{"a":2}`)
		set("alice", "", "m.push_rules", `{}`)
		later, next3, err := u.AccountDataSince(ctx, alice, next)
		if err != nil || len(later) != 2 || string(later[0].Content) != `{"a":2}` || later[1].Type != "m.push_rules" || next3 != later[1].Position {
			t.Errorf("AccountDataSince(%d) = %+v, %d, %v", next, later, next3, err)
		}
		all, _, _ = u.AccountDataSince(ctx, alice, 0)
		if len(all) != 3 {
			t.Errorf("after overwrite: %+v", all)
		}
		if bobs, _, _ := u.AccountDataSince(ctx, bob, 0); len(bobs) != 2 || string(bobs[1].Content) != `{"bob":1}` {
			t.Errorf("bob's account data: %+v", bobs)
		}
		if pos, _ := db.StreamPosition(ctx, StreamAccountData); pos != next3 {
			t.Errorf("stream position %d, last entry %d", pos, next3)
		}
	})
}

func TestAccountDataWakesWaiters(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		n := notifier.New()
		defer n.Close()
		u, _ := newUsers(t, db, Options{Notifier: n})
		alice, bob := mustAccount(t, u, "alice", "").UserID, mustAccount(t, u, "bob", "").UserID
		_, since, err := u.AccountDataSince(t.Context(), alice, 0)
		if err != nil {
			t.Fatal(err)
		}
		woken := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			woken <- n.Wait(ctx, map[string]int64{StreamAccountData: since}, UserKey(alice))
		}()
		if err := u.SetAccountData(t.Context(), alice, "", "m.test", json.RawMessage(`{}`)); err != nil {
			t.Fatal(err)
		}
		if err := <-woken; err != nil {
			t.Fatalf("Wait: %v", err)
		}
		// Bob was not concerned.
		_, since, _ = u.AccountDataSince(t.Context(), bob, 0)
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		if err := n.Wait(ctx, map[string]int64{StreamAccountData: since}, UserKey(bob)); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("bob's Wait = %v, want the deadline", err)
		}
	})
}

// TestAccountDataPositionsUnderConcurrency checks that concurrent writers get distinct positions
// and that a reader following the stream sees every change exactly once.
func TestAccountDataPositionsUnderConcurrency(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{})
		ctx := t.Context()
		alice := mustAccount(t, u, "alice", "").UserID
		const writers, each = 4, 10
		errs := make(chan error, writers)
		for w := range writers {
			go func() {
				for i := range each {
					if err := u.SetAccountData(ctx, alice, "", fmt.Sprintf("t.%d.%d", w, i), json.RawMessage(`{}`)); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		seen := map[string]bool{}
		var from int64
		for done := 0; done < writers; {
			select {
			case err := <-errs:
				if err != nil {
					t.Fatal(err)
				}
				done++
			default:
			}
			got, next, err := u.AccountDataSince(ctx, alice, from)
			if err != nil {
				t.Fatal(err)
			}
			for _, ad := range got {
				if ad.Type == PushRulesType {
					continue // the current push rules, part of every read from 0, are no change
				}
				if seen[ad.Type] {
					t.Errorf("%s seen twice", ad.Type)
				}
				seen[ad.Type] = true
			}
			from = next
		}
		got, _, _ := u.AccountDataSince(ctx, alice, from)
		for _, ad := range got {
			if ad.Type != PushRulesType {
				seen[ad.Type] = true
			}
		}
		if len(seen) != writers*each {
			t.Errorf("reader saw %d of %d changes", len(seen), writers*each)
		}
	})
}

func idRoom(s string) id.RoomID { return id.RoomID(s) }
