package userapi

import (
	"encoding/json"
	"errors"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

// TestKeyBackupVersions checks creating, reading, updating and deleting backup versions.
func TestKeyBackupVersions(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{})
		ctx := t.Context()
		alice := mustAccount(t, u, "alice", "").UserID
		const alg = "m.megolm_backup.v1.curve25519-aes-sha2"

		if _, err := u.GetKeyBackup(ctx, alice, ""); !errors.Is(err, ErrNotFound) {
			t.Errorf("latest of none: %v", err)
		}
		if _, err := u.CreateKeyBackup(ctx, alice, alg, json.RawMessage(`"x"`)); !errors.Is(err, ErrInvalidKeys) {
			t.Errorf("auth_data not an object: %v", err)
		}
		v1, err := u.CreateKeyBackup(ctx, alice, alg, json.RawMessage(`{"public_key":"a"}`))
		if err != nil || v1 != "1" {
			t.Fatalf("create: %q %v", v1, err)
		}
		v2, _ := u.CreateKeyBackup(ctx, alice, alg, json.RawMessage(`{"public_key":"b"}`))
		b, err := u.GetKeyBackup(ctx, alice, "")
		if err != nil || b.Version != v2 || string(b.AuthData) != `{"public_key":"b"}` || b.Count != 0 || b.Algorithm != alg {
			t.Fatalf("latest: %+v %v", b, err)
		}
		if b, err := u.GetKeyBackup(ctx, alice, v1); err != nil || b.Version != v1 {
			t.Errorf("get v1: %+v %v", b, err)
		}
		for _, v := range []string{"x", "0", "99"} {
			if _, err := u.GetKeyBackup(ctx, alice, v); !errors.Is(err, ErrNotFound) {
				t.Errorf("get %q: %v", v, err)
			}
		}
		if err := u.UpdateKeyBackup(ctx, alice, v2, "other", json.RawMessage(`{}`)); !errors.Is(err, ErrInvalidKeys) {
			t.Errorf("algorithm change: %v", err)
		}
		if err := u.UpdateKeyBackup(ctx, alice, v2, alg, json.RawMessage(`{"public_key":"c"}`)); err != nil {
			t.Fatal(err)
		}
		if b, _ := u.GetKeyBackup(ctx, alice, v2); string(b.AuthData) != `{"public_key":"c"}` {
			t.Errorf("after update: %s", b.AuthData)
		}
		if err := u.DeleteKeyBackup(ctx, alice, v2); err != nil {
			t.Fatal(err)
		}
		if err := u.DeleteKeyBackup(ctx, alice, v2); !errors.Is(err, ErrNotFound) {
			t.Errorf("delete twice: %v", err)
		}
		if b, err := u.GetKeyBackup(ctx, alice, ""); err != nil || b.Version != v1 {
			t.Errorf("latest after deleting v2: %+v %v", b, err)
		}
		// A deleted version's number is never reused.
		if v3, _ := u.CreateKeyBackup(ctx, alice, alg, json.RawMessage(`{}`)); v3 != "3" {
			t.Errorf("new version after a deletion: %s", v3)
		}
		if _, err := u.GetKeyBackup(ctx, "@bob:test.local", v1); !errors.Is(err, ErrNotFound) {
			t.Errorf("another user's backup: %v", err)
		}
	})
}

// TestBackupKeys checks storing keys with the spec's replacement rules, the version checks, the
// count and etag, reading and deleting.
func TestBackupKeys(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{})
		ctx := t.Context()
		alice := mustAccount(t, u, "alice", "").UserID
		const room = id.RoomID("!r:test.local")
		key := func(verified bool, first, forwarded int64, data string) map[id.RoomID]map[string]BackupKey {
			return map[id.RoomID]map[string]BackupKey{room: {"S": {IsVerified: verified, FirstMessageIndex: first,
				ForwardedCount: forwarded, SessionData: json.RawMessage(`{"d":"` + data + `"}`)}}}
		}
		if _, _, err := u.PutBackupKeys(ctx, alice, "1", key(false, 0, 0, "a")); !errors.Is(err, ErrNotFound) {
			t.Errorf("put without a backup: %v", err)
		}
		v1, _ := u.CreateKeyBackup(ctx, alice, "alg", json.RawMessage(`{}`))
		v2, _ := u.CreateKeyBackup(ctx, alice, "alg", json.RawMessage(`{}`))
		var wrong *WrongBackupVersionError
		if _, _, err := u.PutBackupKeys(ctx, alice, v1, key(false, 0, 0, "a")); !errors.As(err, &wrong) || wrong.Current != v2 {
			t.Errorf("put to an old version: %v", err)
		}
		if _, _, err := u.PutBackupKeys(ctx, alice, v2, map[id.RoomID]map[string]BackupKey{room: {"S": {SessionData: json.RawMessage(`1`)}}}); !errors.Is(err, ErrInvalidKeys) {
			t.Errorf("session_data not an object: %v", err)
		}
		count, etag0, err := u.PutBackupKeys(ctx, alice, v2, key(false, 5, 2, "first"))
		if err != nil || count != 1 {
			t.Fatalf("put: %d %v", count, err)
		}
		data := func() string {
			t.Helper()
			keys, err := u.BackupKeys(ctx, alice, v2, room, "S")
			if err != nil {
				t.Fatal(err)
			}
			return string(keys[room]["S"].SessionData)
		}
		steps := []struct {
			verified         bool
			first, forwarded int64
			data, want       string
		}{
			{false, 6, 0, "later index", `{"d":"first"}`},    // higher first_message_index loses
			{false, 5, 3, "more forwarded", `{"d":"first"}`}, // same index, more forwards loses
			{false, 5, 1, "fewer forwarded", `{"d":"fewer forwarded"}`},
			{false, 4, 9, "lower index", `{"d":"lower index"}`},
			{true, 9, 9, "verified", `{"d":"verified"}`},    // verified beats everything
			{false, 0, 0, "unverified", `{"d":"verified"}`}, // unverified never replaces verified
			{true, 8, 9, "verified lower", `{"d":"verified lower"}`},
		}
		etag := etag0
		for _, s := range steps {
			_, e, err := u.PutBackupKeys(ctx, alice, v2, key(s.verified, s.first, s.forwarded, s.data))
			if err != nil {
				t.Fatal(err)
			}
			if got := data(); got != s.want {
				t.Errorf("after %s: %s, want %s", s.data, got, s.want)
			}
			if changed := s.want == `{"d":"`+s.data+`"}`; changed == (e == etag) {
				t.Errorf("after %s: etag %s -> %s", s.data, etag, e)
			}
			etag = e
		}
		if _, _, err := u.PutBackupKeys(ctx, alice, v2, map[id.RoomID]map[string]BackupKey{"!other:test.local": {"T": {SessionData: json.RawMessage(`{}`)}}}); err != nil {
			t.Fatal(err)
		}
		if b, _ := u.GetKeyBackup(ctx, alice, v2); b.Count != 2 {
			t.Errorf("count %d", b.Count)
		}
		all, _ := u.BackupKeys(ctx, alice, v2, "", "")
		if len(all) != 2 {
			t.Errorf("all keys: %v", all)
		}
		if _, err := u.BackupKeys(ctx, alice, "7", "", ""); !errors.Is(err, ErrNotFound) {
			t.Errorf("keys of an unknown version: %v", err)
		}
		count, _, err = u.DeleteBackupKeys(ctx, alice, v2, room, "S")
		if err != nil || count != 1 {
			t.Errorf("delete one: %d %v", count, err)
		}
		count, _, err = u.DeleteBackupKeys(ctx, alice, v2, "", "")
		if err != nil || count != 0 {
			t.Errorf("delete all: %d %v", count, err)
		}
		if err := u.DeleteKeyBackup(ctx, alice, v2); err != nil {
			t.Fatal(err)
		}
		if _, _, err := u.PutBackupKeys(ctx, alice, v2, key(false, 0, 0, "a")); !errors.As(err, &wrong) || wrong.Current != v1 {
			t.Errorf("put to a deleted version: %v", err)
		}
	})
}
