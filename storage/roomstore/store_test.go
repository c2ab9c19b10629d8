package roomstore

import (
	"context"
	"errors"
	"testing"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

func TestRoomsEventsAndExtremities(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s, err := Open(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Room(ctx, db, "!nope:x"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown room: %v", err)
		}
		empty := ""
		var roomNID int64
		var create, msg *Event
		err = db.WithTx(ctx, func(tx *storage.Tx) error {
			if roomNID, err = s.CreateRoom(ctx, tx, "!r:x", "10"); err != nil {
				return err
			}
			keys, err := s.StateKeyNIDs(ctx, tx, []StateKey{{"m.room.create", ""}, {"m.room.member", "@a:x"}, {"m.room.create", ""}})
			if err != nil {
				return err
			}
			if keys[0] != keys[2] || keys[0] == keys[1] {
				t.Errorf("state key numbers %v", keys)
			}
			pos, err := tx.NextStreamPosition(ctx, StreamOutput)
			if err != nil {
				return err
			}
			create = &Event{EventID: "$create", RoomNID: roomNID, Type: "m.room.create", StateKey: &empty, Depth: 1, OriginServerTS: 10, JSON: []byte(`{"type":"m.room.create"}`), StreamPos: pos}
			if _, err := s.InsertEvent(ctx, tx, create); err != nil {
				return err
			}
			snap, err := AddSnapshot(ctx, tx, roomNID, 0, []Entry{{keys[0], create.NID}})
			if err != nil {
				return err
			}
			if err := s.UpdateForwardExtremities(ctx, tx, roomNID, create.NID, nil); err != nil {
				return err
			}
			msg = &Event{EventID: "$msg", RoomNID: roomNID, Type: "m.room.message", Depth: 2, OriginServerTS: 11, JSON: []byte(`{"body":"é"}`), StateBefore: snap}
			if msg.StreamPos, err = tx.NextStreamPosition(ctx, StreamOutput); err != nil {
				return err
			}
			if _, err := s.InsertEvent(ctx, tx, msg); err != nil {
				return err
			}
			if err := s.UpdateForwardExtremities(ctx, tx, roomNID, msg.NID, []int64{create.NID}); err != nil {
				return err
			}
			return s.SetCurrentState(ctx, tx, roomNID, snap)
		})
		if err != nil {
			t.Fatal(err)
		}
		room, err := s.Room(ctx, db, "!r:x")
		if err != nil || room.NID != roomNID || room.Version != "10" || room.Snapshot == 0 {
			t.Fatalf("room: %+v %v", room, err)
		}
		state, err := s.StateOf(ctx, db, room.Snapshot)
		if err != nil || len(state) != 1 || state[StateKey{"m.room.create", ""}] != create.NID {
			t.Fatalf("state: %v %v", state, err)
		}
		fresh := newStore(db, 10, 10)
		if state, err := fresh.StateOf(ctx, db, room.Snapshot); err != nil || len(state) != 1 {
			t.Fatalf("state with a cold key cache: %v %v", state, err)
		}
		ext, err := s.ForwardExtremities(ctx, db, roomNID)
		if err != nil || len(ext) != 1 || ext[0] != msg.NID {
			t.Fatalf("extremities: %v %v", ext, err)
		}
		evs, err := s.EventsByID(ctx, db, []string{"$msg", "$create", "$unknown"})
		if err != nil || len(evs) != 2 {
			t.Fatalf("events by ID: %v %v", evs, err)
		}
		for _, e := range evs {
			if e.EventID == "$msg" && (e.StateKey != nil || string(e.JSON) != `{"body":"é"}` || e.StateBefore == 0) {
				t.Errorf("message read back as %+v", e)
			}
			if e.EventID == "$create" && (e.StateKey == nil || *e.StateKey != "") {
				t.Errorf("create read back as %+v", e)
			}
		}
		out, err := s.OutputSince(ctx, db, 0, 10)
		if err != nil || len(out) != 2 || out[0].EventID != "$create" || out[1].EventID != "$msg" {
			t.Fatalf("output stream: %v %v", out, err)
		}
		if out, _ := s.OutputSince(ctx, db, out[0].StreamPos, 10); len(out) != 1 || out[0].EventID != "$msg" {
			t.Errorf("output after the first: %v", out)
		}
		// Storing an event twice keeps the first; an outlier can later join the timeline.
		err = db.WithTx(ctx, func(tx *storage.Tx) error {
			again := &Event{EventID: "$msg", RoomNID: roomNID, Type: "x", JSON: []byte(`{}`)}
			if _, err := s.InsertEvent(ctx, tx, again); !errors.Is(err, ErrExists) || again.NID != msg.NID {
				t.Errorf("second insert: %v, nid %d", err, again.NID)
			}
			out := &Event{EventID: "$out", RoomNID: roomNID, Type: "m.room.member", StateKey: &empty, JSON: []byte(`{}`), Outlier: true}
			if _, err := s.InsertEvent(ctx, tx, out); err != nil {
				return err
			}
			out.Outlier, out.StateBefore = false, room.Snapshot
			return s.UpdateEvent(ctx, tx, out)
		})
		if err != nil {
			t.Fatal(err)
		}
		if evs, _ := s.EventsByID(ctx, db, []string{"$out"}); len(evs) != 1 || evs[0].Outlier || evs[0].StateBefore != room.Snapshot {
			t.Errorf("updated outlier: %+v", evs)
		}
	})
}
