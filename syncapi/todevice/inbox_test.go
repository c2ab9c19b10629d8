package todevice

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
	"github.com/latticehq/lattice/storage/todevicestore"
	"github.com/latticehq/lattice/syncapi/synctypes"
	"github.com/latticehq/lattice/userapi"
)

func TestStreamNames(t *testing.T) {
	if userapi.StreamDeviceLists != synctypes.StreamDeviceLists {
		t.Fatalf("userapi writes device lists to %q, sync reads %q", userapi.StreamDeviceLists, synctypes.StreamDeviceLists)
	}
}

func TestSendToDevice(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		e := newEnv(t, db)
		alice, bob := e.account(t, "alice"), e.account(t, "bob")
		a1 := e.login(t, alice, "A1")
		b1, b2 := e.login(t, bob, "B1"), e.login(t, bob, "B2")

		woken := waitWoken(t, e.nf, map[string]int64{synctypes.StreamToDevice: 0}, userapi.UserKey(bob))
		e.mustPut(t, a1, "m.test", "t1", `{"messages":{"@bob:example.test":{"B1":{"n":1}}}}`)
		woken()
		p1 := e.inboxPos(t)
		// The same transaction again is answered alike and stores nothing.
		e.mustPut(t, a1, "m.test", "t1", `{"messages":{"@bob:example.test":{"B1":{"n":1}}}}`)
		if e.inboxPos(t) != p1 {
			t.Fatal("a repeated transaction moved the stream")
		}
		// The same transaction ID from another device is another transaction.
		a2 := e.login(t, alice, "A2")
		e.mustPut(t, a2, "m.test", "t1", `{"messages":{"@bob:example.test":{"B1":{"n":2}}}}`)
		// "*" reaches every device; a device named beside it gets its own message.
		e.mustPut(t, a1, "m.other", "t2", `{"messages":{"@bob:example.test":{"*":{"all":true},"B2":{"own":true}}}}`)
		to := e.inboxPos(t)

		got, _ := e.sync(t, b1, 0, to, false)
		if len(got) != 3 || got[0].Sender != string(alice) || got[0].Type != "m.test" || string(got[0].Content) != `{"n":1}` ||
			string(got[1].Content) != `{"n":2}` || got[2].Type != "m.other" || string(got[2].Content) != `{"all":true}` {
			t.Fatalf("B1 got %+v", got)
		}
		if got, _ := e.sync(t, b2, 0, to, false); len(got) != 1 || string(got[0].Content) != `{"own":true}` {
			t.Fatalf("B2 got %+v", got)
		}
		if got, _ := e.sync(t, a1, 0, to, false); len(got) != 0 {
			t.Fatalf("the sender got %+v", got)
		}

		// Kept until acknowledged: a sync from an older token gets the messages again.
		if again, _ := e.sync(t, b1, 0, to, false); len(again) != 3 {
			t.Fatalf("second sync from 0: %+v", again)
		}
		// Presenting p1 acknowledges the first message, and only it.
		if got, _ := e.sync(t, b1, p1, to, false); len(got) != 2 {
			t.Fatalf("from %d: %+v", p1, got)
		}
		if got, _ := e.sync(t, b1, 0, to, false); len(got) != 2 {
			t.Fatalf("the acknowledged message is still there: %+v", got)
		}
		// An incremental sync with nothing new still acknowledges, through Collect or, when the
		// core collects nothing, Acknowledge; a token from the future acknowledges nothing.
		if got, _ := e.sync(t, b1, to, to, false); len(got) != 0 {
			t.Fatalf("nothing new: %+v", got)
		}
		if _, ok, _ := e.td.store.Oldest(t.Context(), todevicestore.Device{UserID: string(bob), DeviceID: "B1"}); ok {
			t.Fatal("acknowledged messages were kept")
		}
		if err := e.td.Inbox().Acknowledge(t.Context(), &synctypes.Request{User: bob, Device: "B2"}, to+1); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := e.td.store.Oldest(t.Context(), todevicestore.Device{UserID: string(bob), DeviceID: "B2"}); !ok {
			t.Fatal("a token ahead of the stream acknowledged")
		}
		if err := e.td.Inbox().Acknowledge(t.Context(), &synctypes.Request{User: bob, Device: "B2"}, to); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := e.td.store.Oldest(t.Context(), todevicestore.Device{UserID: string(bob), DeviceID: "B2"}); ok {
			t.Fatal("Acknowledge kept the messages")
		}
		// A device without messages, and a token without a device, get nothing.
		if got, _ := e.sync(t, login{user: bob}, 0, to, false); len(got) != 0 {
			t.Fatalf("deviceless: %+v", got)
		}
	})
}

func TestSendToDeviceErrors(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		e := newEnv(t, db)
		alice := e.account(t, "alice")
		bob := e.account(t, "bob")
		a1, b1 := e.login(t, alice, "A1"), e.login(t, bob, "B1")
		big := `{"x":"` + strings.Repeat("a", maxContentBytes) + `"}`
		for _, c := range []struct {
			name, typ, txn, body string
			code                 int
			errcode              string
		}{
			{"not JSON", "m.t", "1", `{`, 400, "M_NOT_JSON"},
			{"array body", "m.t", "2", `[]`, 400, "M_BAD_JSON"},
			{"null body", "m.t", "3", `null`, 400, "M_BAD_JSON"},
			{"no messages", "m.t", "4", `{}`, 400, "M_MISSING_PARAM"},
			{"messages not an object", "m.t", "5", `{"messages":[]}`, 400, "M_BAD_JSON"},
			{"devices not an object", "m.t", "6", `{"messages":{"@bob:example.test":"B1"}}`, 400, "M_BAD_JSON"},
			{"content not an object", "m.t", "7", `{"messages":{"@bob:example.test":{"B1":5}}}`, 400, "M_BAD_JSON"},
			{"content an array", "m.t", "8", `{"messages":{"@bob:example.test":{"B1":[]}}}`, 400, "M_BAD_JSON"},
			{"bad user ID", "m.t", "9", `{"messages":{"bob":{"B1":{}}}}`, 400, "M_INVALID_PARAM"},
			{"user ID without server", "m.t", "10", `{"messages":{"@bob":{"B1":{}}}}`, 400, "M_INVALID_PARAM"},
			{"empty device ID", "m.t", "11", `{"messages":{"@bob:example.test":{"":{}}}}`, 400, "M_INVALID_PARAM"},
			{"long device ID", "m.t", "12", `{"messages":{"@bob:example.test":{"` + strings.Repeat("D", 256) + `":{}}}}`, 400, "M_INVALID_PARAM"},
			{"NUL", "m.t", "13", `{"messages":{"@bob:example.test":{"B1":{"a":"\u0000"}}}}`, 400, "M_BAD_JSON"},
			{"content too large", "m.t", "14", `{"messages":{"@bob:example.test":{"B1":` + big + `}}}`, 413, "M_TOO_LARGE"},
			{"long event type", strings.Repeat("t", 256), "15", `{"messages":{}}`, 400, "M_INVALID_PARAM"},
			{"long transaction ID", "m.t", strings.Repeat("9", 256), `{"messages":{}}`, 400, "M_INVALID_PARAM"},
			{"empty messages", "m.t", "16", `{"messages":{}}`, 200, ""},
			// Unknown users and devices, and remote users (not federated yet), are not errors.
			{"unknown device", "m.t", "17", `{"messages":{"@bob:example.test":{"NOPE":{}}}}`, 200, ""},
			{"unknown user", "m.t", "18", `{"messages":{"@nobody:example.test":{"*":{}}}}`, 200, ""},
			{"remote user", "m.t", "19", `{"messages":{"@bob:elsewhere.test":{"B1":{}}}}`, 200, ""},
		} {
			if code, errcode := e.put(t, a1, c.typ, c.txn, c.body); code != c.code || errcode != c.errcode {
				t.Errorf("%s: %d %s, want %d %s", c.name, code, errcode, c.code, c.errcode)
			}
		}
		if code, errcode := e.put(t, login{}, "m.t", "20", `{"messages":{}}`); code != http.StatusUnauthorized || errcode != "M_MISSING_TOKEN" {
			t.Errorf("no token: %d %s", code, errcode)
		}
		if got, _ := e.sync(t, b1, 0, e.inboxPos(t), false); len(got) != 0 {
			t.Fatalf("refused or undeliverable sends stored %+v", got)
		}
	})
}

// TestToDeviceLimit checks that a long queue comes 100 messages per sync, in order, and that the
// position given back makes the next sync continue where this one stopped.
func TestToDeviceLimit(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		e := newEnv(t, db)
		alice, bob := e.account(t, "alice"), e.account(t, "bob")
		a1, b1 := e.login(t, alice, "A1"), e.login(t, bob, "B1")
		const n = MaxPerSync + 50
		for i := range n {
			e.mustPut(t, a1, "m.test", fmt.Sprint(i), fmt.Sprintf(`{"messages":{"@bob:example.test":{"B1":{"i":%d}}}}`, i))
		}
		to := e.inboxPos(t)
		first, reached := e.sync(t, b1, 0, to, true)
		if len(first) != MaxPerSync || reached >= to || string(first[0].Content) != `{"i":0}` || string(first[99].Content) != `{"i":99}` {
			t.Fatalf("first sync: %d events, reached %d of %d", len(first), reached, to)
		}
		rest, reached2 := e.sync(t, b1, reached, to, true)
		if len(rest) != n-MaxPerSync || reached2 != to || string(rest[0].Content) != `{"i":100}` {
			t.Fatalf("second sync: %d events, reached %d", len(rest), reached2)
		}
		if again, _ := e.sync(t, b1, reached, to, true); len(again) != n-MaxPerSync {
			t.Fatalf("retrying the second sync got %d", len(again))
		}
		if done, _ := e.sync(t, b1, to, to, true); len(done) != 0 {
			t.Fatalf("after all: %d", len(done))
		}
	})
}

// TestDeletedDeviceForgetsMessages checks that deleting a device deletes what waited for it.
func TestDeletedDeviceForgetsMessages(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		e := newEnv(t, db)
		ctx := t.Context()
		alice, bob := e.account(t, "alice"), e.account(t, "bob")
		a1 := e.login(t, alice, "A1")
		e.login(t, bob, "B1")
		e.login(t, bob, "B2")
		e.mustPut(t, a1, "m.test", "1", `{"messages":{"@bob:example.test":{"*":{}}}}`)
		if err := e.users.DeleteDevices(ctx, bob, []id.DeviceID{"B2"}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "B2's messages to go", func() bool {
			_, ok, err := e.td.store.Oldest(ctx, todevicestore.Device{UserID: string(bob), DeviceID: "B2"})
			return err == nil && !ok
		})
		if _, ok, _ := e.td.store.Oldest(ctx, todevicestore.Device{UserID: string(bob), DeviceID: "B1"}); !ok {
			t.Fatal("B1's message went with B2")
		}
		// A device deleted while the server was down is forgotten when it starts again.
		e.td.Close()
		e.mustPut(t, a1, "m.test", "2", `{"messages":{"@bob:example.test":{"B1":{}}}}`)
		if err := e.users.DeleteAllDevices(ctx, bob, ""); err != nil {
			t.Fatal(err)
		}
		td, err := New(ctx, Options{DB: db, Rooms: e.rooms, Users: e.users, Notifier: e.nf, ServerName: server})
		if err != nil {
			t.Fatal(err)
		}
		td.Start()
		defer td.Close()
		waitFor(t, "B1's messages to go", func() bool {
			_, ok, err := td.store.Oldest(ctx, todevicestore.Device{UserID: string(bob), DeviceID: "B1"})
			return err == nil && !ok
		})
	})
}
