package userapi

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

var (
	deviceIDPattern     = regexp.MustCompile(`^[A-Z]{10}$`)
	accessTokenPattern  = regexp.MustCompile(`^lat_[A-Za-z0-9_-]{43}$`)
	refreshTokenPattern = regexp.MustCompile(`^latr_[A-Za-z0-9_-]{43}$`)
)

func TestCreateDevice(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, clk := newUsers(t, db, Options{})
		ctx := t.Context()
		alice := mustAccount(t, u, "alice", "").UserID
		d, toks := mustLogin(t, u, NewDevice{UserID: alice, DisplayName: "Laptop", IP: "192.0.2.1", UserAgent: "curl"})
		if !deviceIDPattern.MatchString(string(d.DeviceID)) {
			t.Errorf("generated device ID %q", d.DeviceID)
		}
		if !accessTokenPattern.MatchString(toks.AccessToken) || toks.RefreshToken != "" || toks.ExpiresIn != 0 {
			t.Errorf("tokens %+v", toks)
		}
		want := Device{UserID: alice, DeviceID: d.DeviceID, DisplayName: "Laptop", LastSeenTS: clk.Now().UnixMilli(),
			LastSeenIP: "192.0.2.1", LastSeenUA: "curl"}
		if *d != want {
			t.Errorf("CreateDevice = %+v, want %+v", d, want)
		}
		got, err := u.QueryAccessToken(ctx, toks.AccessToken)
		if err != nil || *got != want {
			t.Errorf("QueryAccessToken = %+v, %v", got, err)
		}
		got, err = u.Device(ctx, alice, d.DeviceID)
		if err != nil || *got != want {
			t.Errorf("Device = %+v, %v", got, err)
		}
		d2, toks2 := mustLogin(t, u, NewDevice{UserID: alice, DeviceID: "MYPHONE"})
		if d2.DeviceID != "MYPHONE" || toks2.AccessToken == toks.AccessToken {
			t.Errorf("second login: %+v %+v", d2, toks2)
		}
		ds, err := u.Devices(ctx, alice)
		if err != nil || len(ds) != 2 {
			t.Fatalf("Devices = %+v, %v", ds, err)
		}
		// Refresh tokens are issued only when asked for and when access tokens expire.
		_, toks3 := mustLogin(t, u, NewDevice{UserID: alice, WithRefresh: true})
		if toks3.RefreshToken != "" || toks3.ExpiresIn != 0 {
			t.Errorf("refresh token without an access token lifetime: %+v", toks3)
		}

		for _, user := range []id.UserID{"@nobody:test.local", "@alice:elsewhere"} {
			_, _, err = u.CreateDevice(ctx, NewDevice{UserID: user})
			wantErr(t, "CreateDevice("+string(user)+")", err, ErrNotFound)
		}
		_, err = u.Device(ctx, alice, "NOPE")
		wantErr(t, "Device(unknown)", err, ErrNotFound)
		tokenWorks(t, u, "lat_"+strings.Repeat("A", 43), "", ErrUnknownToken)
		tokenWorks(t, u, "", "", ErrUnknownToken)
	})
}

func TestDeviceReuse(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{AccessTokenLifetime: time.Hour})
		ctx := t.Context()
		alice := mustAccount(t, u, "alice", "").UserID
		bob := mustAccount(t, u, "bob", "").UserID
		_, old := mustLogin(t, u, NewDevice{UserID: alice, DeviceID: "PHONE", DisplayName: "Phone", WithRefresh: true})
		tokenWorks(t, u, old.AccessToken, alice, nil)
		_, bobs := mustLogin(t, u, NewDevice{UserID: bob, DeviceID: "PHONE", DisplayName: "Bob's"})

		// No name given: the device keeps its name; the old tokens stop working at once.
		d, fresh := mustLogin(t, u, NewDevice{UserID: alice, DeviceID: "PHONE", IP: "198.51.100.7"})
		if d.DisplayName != "Phone" || d.LastSeenIP != "198.51.100.7" {
			t.Errorf("reused device = %+v", d)
		}
		tokenWorks(t, u, old.AccessToken, alice, ErrUnknownToken)
		_, err := u.Refresh(ctx, old.RefreshToken)
		wantErr(t, "Refresh of the replaced refresh token", err, ErrUnknownToken)
		tokenWorks(t, u, fresh.AccessToken, alice, nil)
		tokenWorks(t, u, bobs.AccessToken, bob, nil) // same device ID, other user: untouched

		// A name given renames it.
		d, _ = mustLogin(t, u, NewDevice{UserID: alice, DeviceID: "PHONE", DisplayName: "New phone"})
		if d.DisplayName != "New phone" {
			t.Errorf("renamed device = %+v", d)
		}
		tokenWorks(t, u, fresh.AccessToken, alice, ErrUnknownToken)
		if ds, _ := u.Devices(ctx, alice); len(ds) != 1 || ds[0].DisplayName != "New phone" {
			t.Errorf("Devices = %+v", ds)
		}
	})
}

func TestDeleteDevices(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{AccessTokenLifetime: time.Hour})
		ctx := t.Context()
		alice := mustAccount(t, u, "alice", "").UserID
		bob := mustAccount(t, u, "bob", "").UserID
		toks := map[id.DeviceID]Tokens{}
		for _, d := range []id.DeviceID{"A", "B", "C", "D"} {
			_, toks[d] = mustLogin(t, u, NewDevice{UserID: alice, DeviceID: d, WithRefresh: true})
			tokenWorks(t, u, toks[d].AccessToken, alice, nil) // now cached
		}
		_, bobs := mustLogin(t, u, NewDevice{UserID: bob, DeviceID: "A"})
		tokenWorks(t, u, bobs.AccessToken, bob, nil)

		if err := u.DeleteDevices(ctx, alice, []id.DeviceID{"A", "NOPE"}); err != nil {
			t.Fatal(err)
		}
		tokenWorks(t, u, toks["A"].AccessToken, alice, ErrUnknownToken)
		_, err := u.Refresh(ctx, toks["A"].RefreshToken)
		wantErr(t, "Refresh of a deleted device", err, ErrUnknownToken)
		tokenWorks(t, u, toks["B"].AccessToken, alice, nil)
		tokenWorks(t, u, bobs.AccessToken, bob, nil)
		wantErr(t, "DeleteDevices(none)", u.DeleteDevices(ctx, alice, nil), nil)

		if err := u.DeleteAllDevices(ctx, alice, "C"); err != nil {
			t.Fatal(err)
		}
		tokenWorks(t, u, toks["B"].AccessToken, alice, ErrUnknownToken)
		tokenWorks(t, u, toks["D"].AccessToken, alice, ErrUnknownToken)
		tokenWorks(t, u, toks["C"].AccessToken, alice, nil)
		if err := u.DeleteAllDevices(ctx, alice, ""); err != nil {
			t.Fatal(err)
		}
		tokenWorks(t, u, toks["C"].AccessToken, alice, ErrUnknownToken)
		if ds, _ := u.Devices(ctx, alice); len(ds) != 0 {
			t.Errorf("Devices = %+v", ds)
		}
		tokenWorks(t, u, bobs.AccessToken, bob, nil)
	})
}

func TestRenameDevice(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{})
		ctx := t.Context()
		alice := mustAccount(t, u, "alice", "").UserID
		d, toks := mustLogin(t, u, NewDevice{UserID: alice, DisplayName: "old"})
		tokenWorks(t, u, toks.AccessToken, alice, nil)
		if err := u.RenameDevice(ctx, alice, d.DeviceID, "new"); err != nil {
			t.Fatal(err)
		}
		if got, err := u.QueryAccessToken(ctx, toks.AccessToken); err != nil || got.DisplayName != "new" {
			t.Errorf("QueryAccessToken after rename = %+v, %v", got, err)
		}
		if got, err := u.Device(ctx, alice, d.DeviceID); err != nil || got.DisplayName != "new" {
			t.Errorf("Device after rename = %+v, %v", got, err)
		}
		wantErr(t, "RenameDevice(unknown)", u.RenameDevice(ctx, alice, "NOPE", "x"), ErrNotFound)
		wantErr(t, "RenameDevice(other user)", u.RenameDevice(ctx, "@bob:test.local", d.DeviceID, "x"), ErrNotFound)
	})
}

func TestQueryAccessTokenReturnsCopies(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{})
		alice := mustAccount(t, u, "alice", "").UserID
		_, toks := mustLogin(t, u, NewDevice{UserID: alice, DisplayName: "mine"})
		for range 3 {
			d, err := u.QueryAccessToken(t.Context(), toks.AccessToken)
			if err != nil || d.DisplayName != "mine" || d.IsAdmin {
				t.Fatalf("QueryAccessToken = %+v, %v", d, err)
			}
			d.DisplayName, d.IsAdmin, d.UserID = "changed", true, "@mallory:test.local"
		}
		if u.cache.len() != 1 {
			t.Errorf("cache holds %d entries, want 1", u.cache.len())
		}
	})
}

func TestRecordSeen(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, clk := newUsers(t, db, Options{})
		ctx := t.Context()
		alice := mustAccount(t, u, "alice", "").UserID
		d, toks := mustLogin(t, u, NewDevice{UserID: alice, IP: "192.0.2.1", UserAgent: "one"})
		seen := func(what string, ip, ua string, ts time.Time) {
			t.Helper()
			for _, src := range []string{"Device", "Devices", "QueryAccessToken"} {
				var got *Device
				var err error
				switch src {
				case "Device":
					got, err = u.Device(ctx, alice, d.DeviceID)
				case "Devices":
					var ds []Device
					if ds, err = u.Devices(ctx, alice); err == nil {
						got = &ds[0]
					}
				default:
					got, err = u.QueryAccessToken(ctx, toks.AccessToken)
				}
				if err != nil || got.LastSeenIP != ip || got.LastSeenUA != ua || got.LastSeenTS != ts.UnixMilli() {
					t.Errorf("%s: %s = %+v, %v; want %s %s %d", what, src, got, err, ip, ua, ts.UnixMilli())
				}
			}
		}
		login := clk.Now()
		seen("at login", "192.0.2.1", "one", login)

		// The first sighting after login is throttled: login counts as one.
		clk.Add(time.Second)
		u.RecordSeen(ctx, d, "192.0.2.2", "two")
		t1 := clk.Now()
		seen("pending", "192.0.2.2", "two", t1)
		u.seen.flush(ctx)
		seen("flushed", "192.0.2.2", "two", t1)

		clk.Add(30 * time.Second)
		u.RecordSeen(ctx, d, "192.0.2.3", "three")
		u.seen.flush(ctx)
		seen("throttled", "192.0.2.2", "two", t1)

		clk.Add(31 * time.Second)
		u.RecordSeen(ctx, d, "192.0.2.4", "four")
		t2 := clk.Now()
		seen("after a minute", "192.0.2.4", "four", t2)

		// Close writes what is pending; a fresh component reads it from the database.
		if err := u.Close(); err != nil {
			t.Fatal(err)
		}
		u2, _ := newUsers(t, db, Options{})
		got, err := u2.Device(ctx, alice, d.DeviceID)
		if err != nil || got.LastSeenIP != "192.0.2.4" || got.LastSeenTS != t2.UnixMilli() {
			t.Errorf("after Close: %+v, %v", got, err)
		}
		u.RecordSeen(ctx, nil, "", "") // ignored
	})
}

func TestSeenThrottleIsBounded(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, clk := newUsers(t, db, Options{})
		u.seen.tracked = 64
		dev := func(i int) *Device { return &Device{UserID: "@a:test.local", DeviceID: id.DeviceID(fmt.Sprint(i))} }
		for i := range 1000 {
			u.RecordSeen(t.Context(), dev(i), "", "")
			if i == 500 {
				clk.Add(2 * time.Minute) // everything before is prunable
			}
			u.seen.mu.Lock()
			n := len(u.seen.last)
			u.seen.mu.Unlock()
			if n > 64 {
				t.Fatalf("throttle map holds %d entries, bound 64", n)
			}
		}
		// A device still tracked stays throttled.
		u.seen.mu.Lock()
		var tracked deviceKey
		for k := range u.seen.last {
			tracked = k
			break
		}
		u.seen.mu.Unlock()
		if u.seen.record(tracked, sighting{ts: clk.Now().UnixMilli()}) {
			t.Error("a tracked device was not throttled")
		}
		u.seen.flush(t.Context()) // updates of unknown devices are harmless
	})
}

func TestTokenCache(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newTokenCache(8)
	dev := func(u string) Device { return Device{UserID: id.UserID(u), DeviceID: "D"} }
	h := func(i int) tokenHash { return hashToken(string(rune('a' + i))) }

	// An invalidation between reading the epoch and putting keeps the answer out.
	e := c.currentEpoch()
	c.invalidateUser("@other:x")
	c.put(h(0), dev("@a:x"), time.Time{}, e, now)
	if _, ok := c.get(h(0), now); ok {
		t.Error("put after an invalidation was cached")
	}

	// Entries expire with their token, and after cacheMaxAge at the latest.
	e = c.currentEpoch()
	c.put(h(1), dev("@a:x"), now.Add(time.Second), e, now)
	c.put(h(2), dev("@a:x"), time.Time{}, e, now)
	if _, ok := c.get(h(1), now.Add(time.Second)); ok {
		t.Error("expired entry returned")
	}
	if _, ok := c.get(h(2), now.Add(cacheMaxAge-time.Second)); !ok {
		t.Error("live entry missing")
	}
	if _, ok := c.get(h(2), now.Add(cacheMaxAge)); ok {
		t.Error("entry outlived cacheMaxAge")
	}

	// The bound holds.
	for i := range 40 {
		c.put(h(i), dev("@u"+string(rune('a'+i%3))+":x"), time.Time{}, e, now)
		if c.len() > 8 {
			t.Fatalf("cache holds %d entries, bound 8", c.len())
		}
	}
	c.invalidateUser("@ua:x")
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, ent := range c.entries {
		if ent.dev.UserID == "@ua:x" {
			t.Error("invalidated user still cached")
		}
	}
	for u, set := range c.byUser {
		for hh := range set {
			if c.entries[hh] == nil || c.entries[hh].dev.UserID != u {
				t.Errorf("index of %s points at a missing entry", u)
			}
		}
	}
}

// TestRevocationRacesQuery runs token checks while the device is deleted: once the deletion has
// returned, the token must fail, even if a check that started earlier fills the cache late.
func TestRevocationRacesQuery(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{})
		ctx := t.Context()
		alice := mustAccount(t, u, "alice", "").UserID
		for round := range 20 {
			d, toks := mustLogin(t, u, NewDevice{UserID: alice})
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					select {
					case <-stop:
						return
					default:
						u.cache.invalidateUser("@someone:else") // keep the epoch moving too
						_, _ = u.QueryAccessToken(context.Background(), toks.AccessToken)
					}
				}
			}()
			if err := u.DeleteDevices(ctx, alice, []id.DeviceID{d.DeviceID}); err != nil {
				t.Fatal(err)
			}
			for range 20 {
				if _, err := u.QueryAccessToken(ctx, toks.AccessToken); err == nil {
					t.Fatalf("round %d: token of a deleted device still works", round)
				}
			}
			close(stop)
			<-done
		}
	})
}
