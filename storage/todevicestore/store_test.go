package todevicestore

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
	"github.com/latticehq/lattice/syncapi/synctypes"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func open(t *testing.T, db *storage.DB) *Store {
	t.Helper()
	s, err := Open(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var (
	bobPhone  = Device{UserID: "@bob:x", DeviceID: "PHONE"}
	bobLaptop = Device{UserID: "@bob:x", DeviceID: "LAPTOP"}
)

func send(t *testing.T, s *Store, txn string, msgs map[Device]json.RawMessage) (int64, bool) {
	t.Helper()
	pos, dup, err := s.Send(t.Context(), Send{Sender: "@alice:x", SenderDevice: "A", TxnID: txn, Type: "m.test", CreatedTS: 1000, Messages: msgs})
	if err != nil {
		t.Fatal(err)
	}
	return pos, dup
}

func TestMessages(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := t.Context()
		s := open(t, db)
		if _, ok, err := s.Oldest(ctx, bobPhone); ok || err != nil {
			t.Fatalf("Oldest on empty store: %v %v", ok, err)
		}
		p1, dup := send(t, s, "t1", map[Device]json.RawMessage{bobPhone: json.RawMessage(`{"n":1}`), bobLaptop: json.RawMessage(`{"n":1}`)})
		if p1 != 1 || dup {
			t.Fatalf("first send at %d (duplicate %v)", p1, dup)
		}
		// The same transaction again stores nothing, even with other content.
		if p, dup := send(t, s, "t1", map[Device]json.RawMessage{bobPhone: json.RawMessage(`{"n":9}`)}); p != 0 || !dup {
			t.Fatalf("repeated transaction: pos %d duplicate %v", p, dup)
		}
		p2, _ := send(t, s, "t2", map[Device]json.RawMessage{bobPhone: json.RawMessage(`{"n":2}`)})
		p3, _ := send(t, s, "t3", map[Device]json.RawMessage{bobPhone: json.RawMessage(`{"n":3}`)})
		if p2 != 2 || p3 != 3 {
			t.Fatalf("positions %d %d", p2, p3)
		}
		// A send for nobody still records its transaction, without a position.
		if p, dup := send(t, s, "t4", nil); p != 0 || dup {
			t.Fatalf("empty send: %d %v", p, dup)
		}
		if p, dup := send(t, s, "t4", nil); p != 0 || !dup {
			t.Fatalf("empty send repeated: %d %v", p, dup)
		}
		if cur, _ := db.StreamPosition(ctx, synctypes.StreamToDevice); cur != 3 {
			t.Fatalf("stream at %d", cur)
		}

		got, err := s.Pending(ctx, bobPhone, 0, 3, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 || string(got[0].Content) != `{"n":1}` || got[2].Pos != 3 || got[0].Sender != "@alice:x" || got[0].Type != "m.test" {
			t.Fatalf("pending: %+v", got)
		}
		if got, _ := s.Pending(ctx, bobPhone, 1, 2, 100); len(got) != 1 || got[0].Pos != 2 {
			t.Fatalf("pending in (1, 2]: %+v", got)
		}
		if got, _ := s.Pending(ctx, bobPhone, 0, 3, 2); len(got) != 2 {
			t.Fatalf("limit 2: %+v", got)
		}
		if err := s.Acknowledge(ctx, bobPhone, 2); err != nil {
			t.Fatal(err)
		}
		if oldest, ok, _ := s.Oldest(ctx, bobPhone); !ok || oldest != 3 {
			t.Fatalf("oldest after acknowledging 2: %d %v", oldest, ok)
		}
		if oldest, ok, _ := s.Oldest(ctx, bobLaptop); !ok || oldest != 1 {
			t.Fatalf("the laptop's message went with the phone's: %d %v", oldest, ok)
		}

		if err := s.ForgetDevices(ctx, []Device{bobLaptop, {UserID: "@alice:x", DeviceID: "A"}}, "devices", 7); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := s.Oldest(ctx, bobLaptop); ok {
			t.Fatal("a deleted device keeps its messages")
		}
		if c, _ := s.Cursor(ctx, "devices"); c != 7 {
			t.Fatalf("cursor %d", c)
		}
		// The deleted sending device's transaction IDs went too.
		if p, dup := send(t, s, "t1", map[Device]json.RawMessage{bobPhone: json.RawMessage(`{}`)}); dup || p != 4 {
			t.Fatalf("transaction of a forgotten device: %d %v", p, dup)
		}
		if n, err := s.PruneTxns(ctx, 1001); err != nil || n != 1 {
			t.Fatalf("PruneTxns = %d, %v", n, err)
		}
	})
}

// TestSendFanOut stores more recipients than one INSERT takes.
func TestSendFanOut(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		s := open(t, db)
		msgs := map[Device]json.RawMessage{}
		for i := range 2*rowsPerInsert + 7 {
			msgs[Device{UserID: fmt.Sprintf("@u%d:x", i), DeviceID: "D"}] = json.RawMessage(`{}`)
		}
		pos, _ := send(t, s, "big", msgs)
		for d := range msgs {
			got, err := s.Pending(t.Context(), d, 0, pos, 10)
			if err != nil || len(got) != 1 {
				t.Fatalf("%v: %+v %v", d, got, err)
			}
		}
	})
}

// TestSendConcurrentSameTxn checks that a transaction sent twice at once is stored once.
func TestSendConcurrentSameTxn(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		s := open(t, db)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				if _, _, err := s.Send(t.Context(), Send{Sender: "@alice:x", SenderDevice: "A", TxnID: "same", Type: "m.test",
					Messages: map[Device]json.RawMessage{bobPhone: json.RawMessage(`{}`)}}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if got, _ := s.Pending(t.Context(), bobPhone, 0, 100, 100); len(got) != 1 {
			t.Fatalf("stored %d copies", len(got))
		}
	})
}

func TestApplyRooms(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := t.Context()
		s := open(t, db)
		apply := func(rc RoomChanges, out int64) (int64, []MemberChange, []string) {
			t.Helper()
			pos, ms, enc, err := s.ApplyRooms(ctx, rc, "output", out)
			if err != nil {
				t.Fatal(err)
			}
			if c, _ := s.Cursor(ctx, "output"); c != out {
				t.Fatalf("cursor %d, want %d", c, out)
			}
			return pos, ms, enc
		}
		join := func(room, user string) MemberChange { return MemberChange{RoomID: room, UserID: user, Joined: true} }
		leave := func(room, user string) MemberChange { return MemberChange{RoomID: room, UserID: user} }

		p1, ms, enc := apply(RoomChanges{Members: []MemberChange{join("!a", "@alice"), join("!a", "@bob"), leave("!a", "@carol")}, Encrypted: []string{"!a"}}, 10)
		if p1 != 1 || len(ms) != 2 || !slices.Equal(enc, []string{"!a"}) {
			t.Fatalf("first batch: %d %+v %v", p1, ms, enc)
		}
		// Joining again (a profile change), a second encryption event: nothing changes.
		if p, ms, enc := apply(RoomChanges{Members: []MemberChange{join("!a", "@bob")}, Encrypted: []string{"!a"}}, 11); p != 0 || ms != nil || enc != nil {
			t.Fatalf("no-op batch: %d %+v %v", p, ms, enc)
		}
		// Leaving and joining again in one batch is no change; leaving is.
		if p, ms, _ := apply(RoomChanges{Members: []MemberChange{leave("!a", "@bob"), join("!a", "@bob")}}, 12); p != 0 || ms != nil {
			t.Fatalf("leave and rejoin: %d %+v", p, ms)
		}
		p2, ms, _ := apply(RoomChanges{Members: []MemberChange{leave("!a", "@bob"), join("!b", "@dave"), join("!b", "@erin")}}, 13)
		if p2 != 2 || len(ms) != 3 || ms[0].Joined || ms[0].Pos != 2 {
			t.Fatalf("second batch: %d %+v", p2, ms)
		}
		// The device_lists stream is shared with userapi's device changes.
		if cur, _ := db.StreamPosition(ctx, synctypes.StreamDeviceLists); cur != 2 {
			t.Fatalf("device_lists at %d", cur)
		}

		got, err := s.MemberChanges(ctx, "@alice", 0, 2)
		if err != nil {
			t.Fatal(err)
		}
		want := []MemberChange{{"!a", "@alice", true, 1}, {"!a", "@bob", false, 2}}
		if !slices.Equal(got, want) {
			t.Fatalf("alice's changes: %+v, want %+v", got, want)
		}
		if got, _ := s.MemberChanges(ctx, "@alice", 1, 2); len(got) != 1 {
			t.Fatalf("alice's changes in (1, 2]: %+v", got)
		}
		if got, _ := s.MemberChanges(ctx, "@dave", 0, 2); len(got) != 2 {
			t.Fatalf("dave's changes: %+v", got)
		}
		// bob left !a: he still sees changes there, up to his leave.
		if got, _ := s.MemberChanges(ctx, "@bob", 0, 2); len(got) != 2 {
			t.Fatalf("bob's changes: %+v", got)
		}
		if got, _ := s.EncryptedBetween(ctx, "@alice", 0, 2); !slices.Equal(got, []string{"!a"}) {
			t.Fatalf("encrypted for alice: %v", got)
		}
		if got, _ := s.EncryptedBetween(ctx, "@alice", 1, 2); len(got) != 0 {
			t.Fatalf("encrypted for alice in (1, 2]: %v", got)
		}
		if got, _ := s.EncryptedBetween(ctx, "@dave", 0, 2); len(got) != 0 {
			t.Fatalf("encrypted for dave: %v", got)
		}
	})
}
