package userapi

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

// TestIgnoredBy: the index follows every write of m.ignored_user_list and is rebuilt at start.
func TestIgnoredBy(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{})
		ctx := t.Context()
		set := func(localpart, content string) {
			t.Helper()
			if err := u.SetAccountData(ctx, u.userID(localpart), "", IgnoredUserListType, json.RawMessage(content)); err != nil {
				t.Fatal(err)
			}
		}
		by := func(u *Users, sender string) string {
			t.Helper()
			got, err := u.IgnoredBy(ctx, u.userID(sender))
			if err != nil {
				t.Fatal(err)
			}
			return fmt.Sprint(got)
		}
		set("alice", `{"ignored_users":{"@spam:test.local":{},"@eve:test.local":{}}}`)
		set("bob", `{"ignored_users":{"@spam:test.local":{}}}`)
		if got := by(u, "spam"); got != "map[@alice:test.local:true @bob:test.local:true]" {
			t.Fatalf("IgnoredBy(spam) = %s", got)
		}
		set("alice", `{"ignored_users":{"@eve:test.local":{}}}`)
		if got := by(u, "spam"); got != "map[@bob:test.local:true]" {
			t.Fatalf("after alice's change: %s", got)
		}
		// Other account data and room account data leave the index alone.
		if err := u.SetAccountData(ctx, u.userID("carol"), "!r:test.local", IgnoredUserListType, json.RawMessage(`{"ignored_users":{"@eve:test.local":{}}}`)); err != nil {
			t.Fatal(err)
		}
		if got := by(u, "eve"); got != "map[@alice:test.local:true]" {
			t.Fatalf("IgnoredBy(eve) = %s", got)
		}
		again, _ := newUsers(t, db, Options{})
		if got := by(again, "spam"); got != "map[@bob:test.local:true]" {
			t.Fatalf("after a restart: %s", got)
		}
		if got := by(again, "nobody"); got != "map[]" {
			t.Fatalf("IgnoredBy(nobody) = %s", got)
		}
	})
}
