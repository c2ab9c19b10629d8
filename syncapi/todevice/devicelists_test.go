package todevice

import (
	"fmt"
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
	"github.com/latticehq/lattice/syncapi/synctypes"
)

func TestDeviceListChanges(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		e := newEnv(t, db)
		ctx := t.Context()
		alice, bob, carol, dave := e.account(t, "alice"), e.account(t, "bob"), e.account(t, "carol"), e.account(t, "dave")
		enc := e.createRoom(t, alice, true)
		plain := e.createRoom(t, alice, false)
		e.member(t, enc, bob, "join")
		e.member(t, plain, carol, "join")
		p0 := e.caughtUp(t)

		// expect checks Changes for user over (from, to].
		expect := func(what string, user id.UserID, from, to int64, changed, left []id.UserID) {
			t.Helper()
			ch, lf, err := e.td.DeviceLists().Changes(ctx, user, from, to)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ch, changed) || !slices.Equal(lf, left) {
				t.Errorf("%s: %s sees changed %v left %v, want %v %v", what, user, ch, lf, changed, left)
			}
		}
		none := []id.UserID(nil)

		// New logins: bob's is seen by alice, with whom he shares an encrypted room; carol's is
		// not, as she shares only an unencrypted one. Each sees their own.
		woken := waitWoken(t, e.nf, map[string]int64{synctypes.StreamDeviceLists: p0}, roomserver.RoomKey(enc))
		e.login(t, bob, "")
		woken()
		e.login(t, carol, "")
		p1 := e.caughtUp(t)
		expect("new logins", alice, p0, p1, []id.UserID{bob}, none)
		expect("own login", bob, p0, p1, []id.UserID{bob}, none)
		expect("own login", carol, p0, p1, []id.UserID{carol}, none)
		expect("nothing new", alice, p1, p1, none, none)

		// dave joins the encrypted room: alice and bob now share one with him, and he with them.
		e.member(t, enc, dave, "join")
		p2 := e.caughtUp(t)
		expect("dave joins", alice, p1, p2, []id.UserID{dave}, none)
		expect("dave joins", dave, p1, p2, []id.UserID{alice, bob}, none)
		// Joins of unencrypted rooms change nothing.
		e.member(t, plain, dave, "join")
		p3 := e.caughtUp(t)
		expect("plain join", carol, p2, p3, none, none)

		// bob leaves: alice and dave no longer share an encrypted room with him.
		e.member(t, enc, bob, "leave")
		p4 := e.caughtUp(t)
		expect("bob leaves", alice, p3, p4, none, []id.UserID{bob})
		expect("bob leaves", bob, p3, p4, none, []id.UserID{alice, dave})
		// A login of bob after he left is no business of alice's.
		e.login(t, bob, "")
		p5 := e.caughtUp(t)
		expect("bob's login after leaving", alice, p4, p5, none, none)

		// The unencrypted room becomes encrypted: carol now shares an encrypted room with alice
		// and dave.
		e.send(t, plain, alice, "m.room.encryption", ptr(""), `{"algorithm":"m.megolm.v1.aes-sha2"}`)
		p6 := e.caughtUp(t)
		expect("room encrypted", carol, p5, p6, []id.UserID{alice, dave}, none)
		// dave shared a room with alice already; the spec lets him be listed again.
		expect("room encrypted", alice, p5, p6, []id.UserID{carol, dave}, none)

		// Through Collect: nothing on an initial sync, the changes on an incremental one.
		resp := synctypes.NewResponse()
		if err := e.td.DeviceLists().Collect(ctx, &synctypes.Request{User: carol, Initial: true}, 0, p6, resp); err != nil {
			t.Fatal(err)
		}
		if len(resp.DeviceLists.Changed)+len(resp.DeviceLists.Left) != 0 {
			t.Errorf("initial sync has device lists: %+v", resp.DeviceLists)
		}
		if err := e.td.DeviceLists().Collect(ctx, &synctypes.Request{User: carol}, p5, p6, resp); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(resp.DeviceLists.Changed) != fmt.Sprint([]id.UserID{alice, dave}) {
			t.Errorf("incremental sync: %+v", resp.DeviceLists)
		}

		// A device deleted, a device renamed: both are changes.
		e.login(t, dave, "DAVE")
		e.login(t, alice, "ALICE")
		p7a := e.caughtUp(t)
		if err := e.users.RenameDevice(ctx, dave, "DAVE", "Phone"); err != nil {
			t.Fatal(err)
		}
		p7 := e.caughtUp(t)
		expect("rename", alice, p7a, p7, []id.UserID{dave}, none)
		if err := e.users.DeleteAllDevices(ctx, alice, ""); err != nil {
			t.Fatal(err)
		}
		p8 := e.caughtUp(t)
		expect("deleted", dave, p7, p8, []id.UserID{alice}, none)
		expect("own deletion", alice, p7, p8, []id.UserID{alice}, none)
	})
}

// TestDeviceListsRestart checks that membership changes made while the component is down are
// taken in when it starts again, at new positions.
func TestDeviceListsRestart(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		e := newEnv(t, db)
		ctx := t.Context()
		alice, bob := e.account(t, "alice"), e.account(t, "bob")
		room := e.createRoom(t, alice, true)
		p0 := e.caughtUp(t)
		e.td.Close()
		e.member(t, room, bob, "join")
		td, err := New(ctx, Options{DB: db, Rooms: e.rooms, Users: e.users, Notifier: e.nf, ServerName: server})
		if err != nil {
			t.Fatal(err)
		}
		td.Start()
		defer td.Close()
		e.td = td
		p1 := e.caughtUp(t)
		ch, _, err := td.DeviceLists().Changes(ctx, alice, p0, p1)
		if err != nil || !slices.Equal(ch, []id.UserID{bob}) {
			t.Fatalf("after restart: %v %v", ch, err)
		}
	})
}

func ptr[T any](v T) *T { return &v }
