package userapi

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/notifier"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

// testDeviceKeys builds a DeviceKeys object for user's device signed with priv (nil: a new key).
func testDeviceKeys(t testing.TB, user id.UserID, device id.DeviceID, priv ed25519.PrivateKey) json.RawMessage {
	t.Helper()
	if priv == nil {
		_, priv, _ = ed25519.GenerateKey(nil)
	}
	obj := map[string]any{
		"user_id": user, "device_id": device,
		"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"keys": map[string]string{
			"curve25519:" + string(device): base64.RawStdEncoding.EncodeToString(make([]byte, 32)),
			"ed25519:" + string(device):    base64.RawStdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey)),
		},
	}
	return signTestJSON(t, obj, user, "ed25519:"+string(device), priv)
}

// signTestJSON signs obj (appendices.md "Signing JSON") and returns it with the signature.
func signTestJSON(t testing.TB, obj map[string]any, signer id.UserID, keyID string, priv ed25519.PrivateKey) json.RawMessage {
	t.Helper()
	raw, _ := json.Marshal(obj)
	var m map[string]json.RawMessage
	_ = json.Unmarshal(raw, &m)
	msg, err := signedJSON(m)
	if err != nil {
		t.Fatal(err)
	}
	obj["signatures"] = map[string]map[string]string{string(signer): {keyID: base64.RawStdEncoding.EncodeToString(ed25519.Sign(priv, msg))}}
	out, _ := json.Marshal(obj)
	return out
}

// TestUploadDeviceKeys checks the rules of device keys: they must be the caller's device's,
// well formed and signed by the device's ed25519 key; a change is a device-list change.
func TestUploadDeviceKeys(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		nf := notifier.New()
		t.Cleanup(nf.Close)
		u, clk := newUsers(t, db, Options{Notifier: nf})
		ctx := t.Context()
		alice := mustAccount(t, u, "alice", "").UserID
		mustLogin(t, u, NewDevice{UserID: alice, DeviceID: "DEV", DisplayName: "Laptop"})
		_, priv, _ := ed25519.GenerateKey(nil)

		bad := map[string]json.RawMessage{
			"other device": testDeviceKeys(t, alice, "OTHER", nil),
			"other user":   testDeviceKeys(t, "@bob:test.local", "DEV", nil),
			"not object":   json.RawMessage(`"x"`),
		}
		var wrongSig map[string]any
		_ = json.Unmarshal(testDeviceKeys(t, alice, "DEV", priv), &wrongSig)
		wrongSig["algorithms"] = []string{"changed"}
		bad["tampered"], _ = json.Marshal(wrongSig)
		var noSig map[string]any
		_ = json.Unmarshal(testDeviceKeys(t, alice, "DEV", priv), &noSig)
		delete(noSig, "signatures")
		bad["unsigned"], _ = json.Marshal(noSig)
		_, other, _ := ed25519.GenerateKey(nil)
		var otherKey map[string]any
		_ = json.Unmarshal(testDeviceKeys(t, alice, "DEV", other), &otherKey)
		otherKey["keys"].(map[string]any)["ed25519:DEV"] = base64.RawStdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))
		bad["signed by another key"], _ = json.Marshal(otherKey)
		bad["key of another device"] = signTestJSON(t, map[string]any{"user_id": alice, "device_id": "DEV", "algorithms": []string{"a"},
			"keys": map[string]string{"ed25519:DEV": base64.RawStdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey)), "curve25519:X": "AAAA"}},
			alice, "ed25519:DEV", priv)
		bad["no algorithms"] = signTestJSON(t, map[string]any{"user_id": alice, "device_id": "DEV",
			"keys": map[string]string{"ed25519:DEV": base64.RawStdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))}},
			alice, "ed25519:DEV", priv)
		for name, raw := range bad {
			if _, err := u.UploadKeys(ctx, alice, "DEV", KeyUpload{DeviceKeys: raw}); !errors.Is(err, ErrInvalidKeys) {
				t.Errorf("%s: got %v, want ErrInvalidKeys", name, err)
			}
		}
		if pos := nf.Latest(StreamDeviceLists); pos != 1 {
			t.Errorf("refused uploads moved the device lists to %d", pos)
		}

		good := testDeviceKeys(t, alice, "DEV", priv)
		if _, err := u.UploadKeys(ctx, alice, "DEV", KeyUpload{DeviceKeys: good}); err != nil {
			t.Fatal(err)
		}
		if pos := nf.Latest(StreamDeviceLists); pos != 2 {
			t.Errorf("upload: device lists at %d, want 2", pos)
		}
		if _, err := u.UploadKeys(ctx, alice, "DEV", KeyUpload{DeviceKeys: good}); err != nil {
			t.Fatal(err)
		}
		if pos := nf.Latest(StreamDeviceLists); pos != 2 {
			t.Errorf("the same keys again moved the device lists to %d", pos)
		}
		got, err := u.QueryDeviceKeys(ctx, map[id.UserID][]id.DeviceID{alice: nil, "@nobody:test.local": nil})
		if err != nil {
			t.Fatal(err)
		}
		var dk struct {
			UserID   id.UserID `json:"user_id"`
			Unsigned struct {
				Name string `json:"device_display_name"`
			} `json:"unsigned"`
		}
		if err := json.Unmarshal(got[alice]["DEV"], &dk); err != nil || dk.UserID != alice || dk.Unsigned.Name != "Laptop" {
			t.Errorf("query: %s (%v)", got[alice]["DEV"], err)
		}
		if len(got["@nobody:test.local"]) != 0 {
			t.Errorf("keys of an unknown user: %v", got)
		}
		// A deleted device's keys are no longer served.
		if err := u.DeleteDevices(ctx, alice, []id.DeviceID{"DEV"}); err != nil {
			t.Fatal(err)
		}
		got, _ = u.QueryDeviceKeys(ctx, map[id.UserID][]id.DeviceID{alice: {"DEV"}})
		if len(got[alice]) != 0 {
			t.Errorf("keys of a deleted device: %s", got[alice]["DEV"])
		}
		if _, err := u.UploadKeys(ctx, alice, "DEV", KeyUpload{DeviceKeys: good}); !errors.Is(err, ErrNotFound) {
			t.Errorf("upload for a deleted device: %v", err)
		}
		// A new device of the same ID never shows or hands out the old device's keys.
		clk.Add(time.Second)
		mustLogin(t, u, NewDevice{UserID: alice, DeviceID: "DEV"})
		got, _ = u.QueryDeviceKeys(ctx, map[id.UserID][]id.DeviceID{alice: {"DEV"}})
		if len(got[alice]) != 0 {
			t.Errorf("keys of the old device shown for the new one: %s", got[alice]["DEV"])
		}
		if _, err := u.UploadKeys(ctx, alice, "DEV", KeyUpload{DeviceKeys: testDeviceKeys(t, alice, "DEV", nil)}); err != nil {
			t.Errorf("upload for the new device: %v", err)
		}
		got, _ = u.QueryDeviceKeys(ctx, map[id.UserID][]id.DeviceID{alice: {"DEV"}})
		if string(got[alice]["DEV"]) == "" || strings.Contains(string(got[alice]["DEV"]), base64.RawStdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))) {
			t.Errorf("new device's keys: %s", got[alice]["DEV"])
		}
	})
}

// TestOneTimeAndFallbackKeys checks storing, counting and claiming one-time and fallback keys.
func TestOneTimeAndFallbackKeys(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		nf := notifier.New()
		t.Cleanup(nf.Close)
		u, clk := newUsers(t, db, Options{Notifier: nf})
		ctx := t.Context()
		alice := mustAccount(t, u, "alice", "").UserID
		mustLogin(t, u, NewDevice{UserID: alice, DeviceID: "DEV"})

		counts, err := u.UploadKeys(ctx, alice, "DEV", KeyUpload{
			OneTimeKeys: map[string]json.RawMessage{
				"signed_curve25519:AAAA": json.RawMessage(`{"key":"a"}`),
				"signed_curve25519:AAAB": json.RawMessage(`{"key":"b"}`),
				"curve25519:AAAC":        json.RawMessage(`"c"`),
			},
			FallbackKeys: map[string]json.RawMessage{"signed_curve25519:FFFF": json.RawMessage(`{"key":"f","fallback":true}`)},
		})
		if err != nil {
			t.Fatal(err)
		}
		if counts["signed_curve25519"] != 2 || counts["curve25519"] != 1 {
			t.Errorf("counts %v", counts)
		}
		// The same key again is fine; other content under its ID is not.
		if _, err := u.UploadKeys(ctx, alice, "DEV", KeyUpload{OneTimeKeys: map[string]json.RawMessage{"signed_curve25519:AAAA": json.RawMessage(`{ "key": "a" }`)}}); err != nil {
			t.Errorf("same key again: %v", err)
		}
		for name, up := range map[string]KeyUpload{
			"changed key":     {OneTimeKeys: map[string]json.RawMessage{"signed_curve25519:AAAA": json.RawMessage(`{"key":"z"}`)}},
			"no key ID":       {OneTimeKeys: map[string]json.RawMessage{"signed_curve25519": json.RawMessage(`{"key":"z"}`)}},
			"number":          {OneTimeKeys: map[string]json.RawMessage{"curve25519:N": json.RawMessage(`1`)}},
			"two fallbacks":   {FallbackKeys: map[string]json.RawMessage{"x:1": json.RawMessage(`"a"`), "x:2": json.RawMessage(`"b"`)}},
			"bad fallback ID": {FallbackKeys: map[string]json.RawMessage{":1": json.RawMessage(`"a"`)}},
		} {
			if _, err := u.UploadKeys(ctx, alice, "DEV", up); !errors.Is(err, ErrInvalidKeys) {
				t.Errorf("%s: got %v, want ErrInvalidKeys", name, err)
			}
		}
		counts, fallbacks, err := u.KeyCounts(ctx, alice, "DEV")
		if err != nil || counts["signed_curve25519"] != 2 || len(fallbacks) != 1 || fallbacks[0] != "signed_curve25519" {
			t.Fatalf("KeyCounts = %v %v %v", counts, fallbacks, err)
		}

		claim := func() string {
			t.Helper()
			got, err := u.ClaimKeys(ctx, map[id.UserID]map[id.DeviceID]string{alice: {"DEV": "signed_curve25519"}, "@nobody:test.local": {"X": "signed_curve25519"}})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || len(got[alice]["DEV"]) != 1 {
				t.Fatalf("claim: %v", got)
			}
			for k, v := range got[alice]["DEV"] {
				return k + "=" + string(v)
			}
			return ""
		}
		before := nf.Latest(StreamKeyCounts)
		first, second := claim(), claim()
		if first != `signed_curve25519:AAAA={"key":"a"}` || second != `signed_curve25519:AAAB={"key":"b"}` {
			t.Errorf("claims %s, %s", first, second)
		}
		if nf.Latest(StreamKeyCounts) <= before {
			t.Error("a claim did not wake the key counts stream")
		}
		if fb := claim(); fb != `signed_curve25519:FFFF={"fallback":true,"key":"f"}` {
			t.Errorf("fallback claim %s", fb)
		}
		_, fallbacks, _ = u.KeyCounts(ctx, alice, "DEV")
		if len(fallbacks) != 0 {
			t.Errorf("used fallback key still listed unused: %v", fallbacks)
		}
		if fb := claim(); fb != `signed_curve25519:FFFF={"fallback":true,"key":"f"}` {
			t.Errorf("used fallback key not handed out again: %s", fb)
		}
		// The same fallback key again stays used; a new one is unused.
		fbk := map[string]json.RawMessage{"signed_curve25519:FFFF": json.RawMessage(`{"key":"f","fallback":true}`)}
		if _, err := u.UploadKeys(ctx, alice, "DEV", KeyUpload{FallbackKeys: fbk}); err != nil {
			t.Fatal(err)
		}
		if _, fallbacks, _ = u.KeyCounts(ctx, alice, "DEV"); len(fallbacks) != 0 {
			t.Errorf("re-uploaded used fallback key listed unused")
		}
		fbk = map[string]json.RawMessage{"signed_curve25519:GGGG": json.RawMessage(`{"key":"g","fallback":true}`)}
		if _, err := u.UploadKeys(ctx, alice, "DEV", KeyUpload{FallbackKeys: fbk}); err != nil {
			t.Fatal(err)
		}
		if _, fallbacks, _ = u.KeyCounts(ctx, alice, "DEV"); len(fallbacks) != 1 {
			t.Errorf("new fallback key not listed unused")
		}
		got, err := u.ClaimKeys(ctx, map[id.UserID]map[id.DeviceID]string{alice: {"DEV": "unknown_alg"}})
		if err != nil || len(got) != 0 {
			t.Errorf("claim of an algorithm without keys: %v %v", got, err)
		}
		// A deleted device's keys are never handed out.
		if _, err := u.UploadKeys(ctx, alice, "DEV", KeyUpload{OneTimeKeys: map[string]json.RawMessage{"signed_curve25519:ZZZZ": json.RawMessage(`{"key":"z"}`)}}); err != nil {
			t.Fatal(err)
		}
		if err := u.DeleteDevices(ctx, alice, []id.DeviceID{"DEV"}); err != nil {
			t.Fatal(err)
		}
		got, err = u.ClaimKeys(ctx, map[id.UserID]map[id.DeviceID]string{alice: {"DEV": "signed_curve25519"}})
		if err != nil || len(got) != 0 {
			t.Errorf("claim from a deleted device: %v %v", got, err)
		}
		clk.Add(time.Second)
		mustLogin(t, u, NewDevice{UserID: alice, DeviceID: "DEV"})
		got, err = u.ClaimKeys(ctx, map[id.UserID]map[id.DeviceID]string{alice: {"DEV": "signed_curve25519"}})
		if err != nil || len(got) != 0 {
			t.Errorf("claim from a new device of a deleted one's ID: %v %v", got, err)
		}
		if counts, fallbacks, err := u.KeyCounts(ctx, alice, "DEV"); err != nil || counts["signed_curve25519"] != 0 || len(fallbacks) != 0 {
			t.Errorf("counts of the new device: %v %v %v", counts, fallbacks, err)
		}
	})
}

// TestConcurrentClaims checks that concurrent claims never hand out one one-time key twice.
func TestConcurrentClaims(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{})
		ctx := t.Context()
		alice := mustAccount(t, u, "alice", "").UserID
		mustLogin(t, u, NewDevice{UserID: alice, DeviceID: "DEV"})
		const keys, claimers = 40, 8
		otks := map[string]json.RawMessage{}
		for i := range keys {
			otks[fmt.Sprintf("signed_curve25519:K%03d", i)] = json.RawMessage(fmt.Sprintf(`{"key":"%d"}`, i))
		}
		if _, err := u.UploadKeys(ctx, alice, "DEV", KeyUpload{OneTimeKeys: otks}); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		seen := map[string]int{}
		var wg sync.WaitGroup
		for range claimers {
			wg.Go(func() {
				for range keys/claimers + 1 {
					got, err := u.ClaimKeys(ctx, map[id.UserID]map[id.DeviceID]string{alice: {"DEV": "signed_curve25519"}})
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					for k := range got[alice]["DEV"] {
						seen[k]++
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(seen) != keys {
			t.Errorf("%d distinct keys handed out, want %d", len(seen), keys)
		}
		for k, n := range seen {
			if n != 1 {
				t.Errorf("%s handed out %d times", k, n)
			}
		}
	})
}

// TestDeletedDeviceLosesKeys: deleting a device, one by one or with all the user's devices,
// deletes its keys in the same transaction.
func TestDeletedDeviceLosesKeys(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{})
		ctx := t.Context()
		alice := mustAccount(t, u, "alice", "").UserID
		rows := func(device id.DeviceID) int {
			t.Helper()
			n := 0
			for _, table := range []string{"e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys"} {
				var c int
				if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM `+table+` WHERE user_id = $1 AND device_id = $2`, alice, device).Scan(&c); err != nil {
					t.Fatal(err)
				}
				n += c
			}
			return n
		}
		for _, d := range []id.DeviceID{"ONE", "TWO"} {
			mustLogin(t, u, NewDevice{UserID: alice, DeviceID: d})
			if _, err := u.UploadKeys(ctx, alice, d, KeyUpload{
				DeviceKeys:   testDeviceKeys(t, alice, d, nil),
				OneTimeKeys:  map[string]json.RawMessage{"signed_curve25519:AAAA": json.RawMessage(`{"key":"a"}`)},
				FallbackKeys: map[string]json.RawMessage{"signed_curve25519:FFFF": json.RawMessage(`{"key":"f","fallback":true}`)},
			}); err != nil {
				t.Fatal(err)
			}
			if got := rows(d); got != 3 {
				t.Fatalf("%s holds %d key rows, want 3", d, got)
			}
		}
		if err := u.DeleteDevices(ctx, alice, []id.DeviceID{"ONE"}); err != nil {
			t.Fatal(err)
		}
		if got := rows("ONE"); got != 0 {
			t.Errorf("a deleted device keeps %d key rows", got)
		}
		if err := u.DeleteAllDevices(ctx, alice, ""); err != nil {
			t.Fatal(err)
		}
		if got := rows("TWO"); got != 0 {
			t.Errorf("after deleting all devices %d key rows remain", got)
		}
	})
}
