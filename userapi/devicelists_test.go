package userapi

import (
	"context"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/notifier"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

// TestDeviceListChanges checks that every device creation, rename and deletion writes its change
// with the device change and wakes the stream, and that a device keeps only its latest change.
func TestDeviceListChanges(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		nf := notifier.New()
		t.Cleanup(nf.Close)
		u, _ := newUsers(t, db, Options{Notifier: nf})
		ctx := t.Context()
		alice := mustAccount(t, u, "alice", "pw").UserID
		bob := mustAccount(t, u, "bob", "").UserID

		last := int64(0)
		// step runs fn and returns the changes it wrote, checking the notifier heard of them.
		step := func(what string, fn func()) []DeviceListChange {
			t.Helper()
			fn()
			now, err := db.StreamPosition(ctx, StreamDeviceLists)
			if err != nil {
				t.Fatal(err)
			}
			if nf.Latest(StreamDeviceLists) != now {
				t.Errorf("%s: notified %d, stream at %d", what, nf.Latest(StreamDeviceLists), now)
			}
			cs, err := u.DeviceListChanges(ctx, last, now, 100)
			if err != nil {
				t.Fatal(err)
			}
			last = now
			return cs
		}
		var d1, d2 *Device
		cs := step("login", func() { d1, _ = mustLogin(t, u, NewDevice{UserID: alice, DisplayName: "Laptop"}) })
		if len(cs) != 1 || cs[0].UserID != alice || cs[0].DeviceID != d1.DeviceID || cs[0].Deleted {
			t.Fatalf("after login: %+v", cs)
		}
		cs = step("second login", func() { d2, _ = mustLogin(t, u, NewDevice{UserID: alice, DeviceID: "PHONE"}) })
		if len(cs) != 1 || cs[0].DeviceID != "PHONE" {
			t.Fatalf("after second login: %+v", cs)
		}
		// Logging in again on a device without renaming it changes nothing others see.
		if cs := step("re-login", func() { mustLogin(t, u, NewDevice{UserID: alice, DeviceID: "PHONE"}) }); len(cs) != 0 {
			t.Errorf("re-login without a name wrote %+v", cs)
		}
		if cs := step("re-login renamed", func() { mustLogin(t, u, NewDevice{UserID: alice, DeviceID: "PHONE", DisplayName: "Phone"}) }); len(cs) != 1 {
			t.Errorf("re-login with a name wrote %+v", cs)
		}
		cs = step("rename", func() {
			if err := u.RenameDevice(ctx, alice, d1.DeviceID, "Work laptop"); err != nil {
				t.Fatal(err)
			}
			if err := u.RenameDevice(ctx, alice, "NOSUCH", "x"); err == nil {
				t.Fatal("renamed an unknown device")
			}
		})
		if len(cs) != 1 || cs[0].DeviceID != d1.DeviceID || cs[0].Deleted {
			t.Fatalf("after rename: %+v", cs)
		}
		cs = step("delete", func() {
			if err := u.DeleteDevices(ctx, alice, []id.DeviceID{d2.DeviceID, "NOSUCH"}); err != nil {
				t.Fatal(err)
			}
		})
		if len(cs) != 1 || cs[0].DeviceID != d2.DeviceID || !cs[0].Deleted {
			t.Fatalf("after delete: %+v", cs)
		}
		if cs := step("delete nothing", func() { _ = u.DeleteDevices(ctx, alice, []id.DeviceID{"NOSUCH"}) }); len(cs) != 0 {
			t.Errorf("deleting an unknown device wrote %+v", cs)
		}
		b1, _ := mustLogin(t, u, NewDevice{UserID: bob})
		b2, _ := mustLogin(t, u, NewDevice{UserID: bob})
		b3, _ := mustLogin(t, u, NewDevice{UserID: bob})
		step("bob logins", func() {})
		cs = step("delete all but one", func() {
			if err := u.DeleteAllDevices(ctx, bob, b1.DeviceID); err != nil {
				t.Fatal(err)
			}
		})
		got := []id.DeviceID{}
		for _, c := range cs {
			if c.UserID != bob || !c.Deleted || c.Pos != cs[0].Pos {
				t.Errorf("delete all: %+v", c)
			}
			got = append(got, c.DeviceID)
		}
		want := []id.DeviceID{b2.DeviceID, b3.DeviceID}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("delete all deleted %v, want %v", got, want)
		}
		cs = step("password change", func() {
			if err := u.SetPassword(ctx, alice, "new", true, ""); err != nil {
				t.Fatal(err)
			}
		})
		if len(cs) != 1 || cs[0].DeviceID != d1.DeviceID || !cs[0].Deleted {
			t.Errorf("password change with logout: %+v", cs)
		}
		cs = step("deactivate", func() {
			if err := u.Deactivate(ctx, bob, false); err != nil {
				t.Fatal(err)
			}
		})
		if len(cs) != 1 || cs[0].DeviceID != b1.DeviceID || !cs[0].Deleted {
			t.Errorf("deactivate: %+v", cs)
		}

		// One row per device: the whole history reads as the latest change of each.
		all, err := u.DeviceListChanges(ctx, 0, last, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 5 {
			t.Errorf("%d rows, want one per device (5): %+v", len(all), all)
		}
		for i := 1; i < len(all); i++ {
			if all[i].Pos < all[i-1].Pos {
				t.Errorf("not in position order: %+v", all)
			}
		}
		if cut, _ := u.DeviceListChanges(ctx, 0, last, 2); len(cut) != 2 {
			t.Errorf("limit 2 gave %d", len(cut))
		}
		users, err := u.DeviceListsChanged(ctx, 0, last)
		slices.Sort(users)
		if err != nil || !slices.Equal(users, []id.UserID{alice, bob}) {
			t.Errorf("DeviceListsChanged = %v, %v", users, err)
		}
		if users, _ := u.DeviceListsChanged(ctx, last, last); len(users) != 0 {
			t.Errorf("empty interval gave %v", users)
		}
	})
}

// TestDeviceListChangeWakes checks that a waiter on the stream's key wakes on a new login.
func TestDeviceListChangeWakes(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		nf := notifier.New()
		t.Cleanup(nf.Close)
		u, _ := newUsers(t, db, Options{Notifier: nf})
		alice := mustAccount(t, u, "alice", "").UserID
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		woke := make(chan error, 1)
		go func() { woke <- nf.Wait(ctx, map[string]int64{StreamDeviceLists: 0}, DeviceListsKey) }()
		mustLogin(t, u, NewDevice{UserID: alice})
		if err := <-woke; err != nil {
			t.Fatalf("waiter on %s: %v", DeviceListsKey, err)
		}
	})
}
