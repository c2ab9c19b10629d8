package todevice

import (
	"context"
	"fmt"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
	"github.com/latticehq/lattice/syncapi/synctypes"
)

func benchEnv(b *testing.B) *env {
	db, err := storage.Open(context.Background(), storagetest.DSN(b, storage.EngineSQLite), storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return newEnv(b, db)
}

// BenchmarkInboxIdle is the to-device part of every incremental /sync of a device with nothing
// waiting: one indexed read.
func BenchmarkInboxIdle(b *testing.B) {
	e := benchEnv(b)
	bob := e.account(b, "bob")
	b1 := e.login(b, bob, "B1")
	req := &synctypes.Request{User: b1.user, Device: b1.device}
	ctx := context.Background()
	for b.Loop() {
		if err := e.td.Inbox().Collect(ctx, req, 0, 0, synctypes.NewResponse()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSendAndCollect is one message's way: PUT /sendToDevice, then the recipient's sync
// that delivers it and acknowledges the one before.
func BenchmarkSendAndCollect(b *testing.B) {
	e := benchEnv(b)
	alice, bob := e.account(b, "alice"), e.account(b, "bob")
	a1, b1 := e.login(b, alice, "A1"), e.login(b, bob, "B1")
	req := &synctypes.Request{User: b1.user, Device: b1.device}
	ctx := context.Background()
	var since int64
	i := 0
	for b.Loop() {
		i++
		e.mustPut(b, a1, "m.test", fmt.Sprint(i), `{"messages":{"@bob:example.test":{"B1":{"algorithm":"m.olm.v1.curve25519-aes-sha2","ciphertext":{}}}}}`)
		to := e.inboxPos(b)
		resp := synctypes.NewResponse()
		if _, err := e.td.Inbox().CollectLimited(ctx, req, since, to, resp); err != nil || len(resp.ToDevice.Events) != 1 {
			b.Fatalf("%d events, %v", len(resp.ToDevice.Events), err)
		}
		since = to
	}
}

// BenchmarkDeviceListChanges is the device-list part of an incremental /sync for a user in 100
// encrypted rooms of 20 members, after one co-member logged in on a new device.
func BenchmarkDeviceListChanges(b *testing.B) {
	e := benchEnv(b)
	alice := e.account(b, "alice")
	var members []id.UserID
	for i := range 19 {
		members = append(members, e.account(b, fmt.Sprint("m", i)))
	}
	for range 100 {
		room := e.createRoom(b, alice, true)
		for _, m := range members {
			e.member(b, room, m, "join")
		}
	}
	from := e.caughtUp(b)
	e.login(b, members[0], "")
	to := e.caughtUp(b)
	ctx := context.Background()
	for b.Loop() {
		changed, _, err := e.td.DeviceLists().Changes(ctx, alice, from, to)
		if err != nil || len(changed) != 1 {
			b.Fatalf("%v %v", changed, err)
		}
	}
}
