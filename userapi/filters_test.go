package userapi

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

func TestFilters(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{})
		ctx := t.Context()
		alice, bob := mustAccount(t, u, "alice", "").UserID, mustAccount(t, u, "bob", "").UserID
		create := func(f string) string {
			t.Helper()
			fid, err := u.CreateFilter(ctx, alice, json.RawMessage(f))
			if err != nil {
				t.Fatal(err)
			}
			return fid
		}
		if a, b := create(`{"room": {"timeline": {"limit": 10}}}`), create(`{"presence":{"types":[]}}`); a != "0" || b != "1" {
			t.Errorf("IDs %q, %q; want 0, 1", a, b)
		}
		// The same filter again (modulo white space) is the same filter.
		if again := create(`{"room":{"timeline":{"limit":10}}}`); again != "0" {
			t.Errorf("repeated filter got ID %q", again)
		}
		got, err := u.Filter(ctx, alice, "0")
		if err != nil || string(got) != `{"room":{"timeline":{"limit":10}}}` {
			t.Errorf("Filter(0) = %s, %v", got, err)
		}
		// Bob's IDs count on their own; Alice's filters are not his.
		if fid, _ := u.CreateFilter(ctx, bob, json.RawMessage(`{}`)); fid != "0" {
			t.Errorf("bob's first filter ID %q", fid)
		}
		_, err = u.Filter(ctx, bob, "1")
		wantErr(t, "another user's filter", err, ErrNotFound)
		for _, bad := range []string{"2", "abc", "-1", "+0", "01", "", "99999999999999999999", "{}"} {
			_, err := u.Filter(ctx, alice, bad)
			wantErr(t, "Filter("+bad+")", err, ErrNotFound)
		}
		if _, err := u.CreateFilter(ctx, alice, json.RawMessage(`{`)); err == nil {
			t.Error("invalid JSON accepted")
		}
	})
}

func TestFiltersConcurrent(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{})
		alice := mustAccount(t, u, "alice", "").UserID
		const n = 8
		ids := make([]string, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				ids[i], errs[i] = u.CreateFilter(t.Context(), alice, json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)))
			})
		}
		wg.Wait()
		seen := map[string]bool{}
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("CreateFilter %d: %v", i, errs[i])
			}
			if seen[ids[i]] {
				t.Errorf("ID %s handed out twice", ids[i])
			}
			seen[ids[i]] = true
			got, err := u.Filter(t.Context(), alice, ids[i])
			if err != nil || string(got) != fmt.Sprintf(`{"n":%d}`, i) {
				t.Errorf("Filter(%s) = %s, %v", ids[i], got, err)
			}
		}
	})
}
