package userapi

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/notifier"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

// testCSKey is a cross-signing key pair.
type testCSKey struct {
	pub  string
	priv ed25519.PrivateKey
}

func newCSKey() testCSKey {
	pub, priv, _ := ed25519.GenerateKey(nil)
	return testCSKey{base64.RawStdEncoding.EncodeToString(pub), priv}
}

// object returns the CrossSigningKey of k for user with usage typ, signed by signer if set.
func (k testCSKey) object(t testing.TB, user id.UserID, typ string, signer *testCSKey) json.RawMessage {
	obj := map[string]any{"user_id": user, "usage": []string{typ}, "keys": map[string]string{"ed25519:" + k.pub: k.pub}}
	if signer == nil {
		raw, _ := json.Marshal(obj)
		return raw
	}
	return signTestJSON(t, obj, user, "ed25519:"+signer.pub, signer.priv)
}

// resign signs a stored key object anew with key keyID, as a client uploading a signature does.
func resign(t testing.TB, raw json.RawMessage, signer id.UserID, keyID string, priv ed25519.PrivateKey) json.RawMessage {
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		t.Fatal(err)
	}
	delete(obj, "unsigned")
	return signTestJSON(t, obj, signer, keyID, priv)
}

// TestCrossSigningKeys checks the rules of cross-signing key uploads.
func TestCrossSigningKeys(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		nf := notifier.New()
		t.Cleanup(nf.Close)
		u, _ := newUsers(t, db, Options{Notifier: nf})
		ctx := t.Context()
		alice := mustAccount(t, u, "alice", "").UserID
		mk, ssk, usk := newCSKey(), newCSKey(), newCSKey()

		if err := u.UploadCrossSigningKeys(ctx, alice, map[string]json.RawMessage{KeySelfSigning: ssk.object(t, alice, KeySelfSigning, &mk)}); !errors.Is(err, ErrNoMasterKey) {
			t.Errorf("self-signing key without a master key: %v", err)
		}
		wrongKeyID := json.RawMessage(strings.Replace(string(mk.object(t, alice, KeyMaster, nil)), `"ed25519:`, `"ed25519:X`, 1))
		for name, c := range map[string]struct {
			keys map[string]json.RawMessage
			want error
		}{
			"other user":      {map[string]json.RawMessage{KeyMaster: mk.object(t, "@bob:test.local", KeyMaster, nil)}, ErrInvalidKeys},
			"wrong usage":     {map[string]json.RawMessage{KeyMaster: mk.object(t, alice, KeySelfSigning, nil)}, ErrInvalidKeys},
			"key ID mismatch": {map[string]json.RawMessage{KeyMaster: wrongKeyID}, ErrInvalidKeys},
			"unknown type":    {map[string]json.RawMessage{"other": mk.object(t, alice, "other", nil)}, ErrInvalidKeys},
			"unsigned ssk": {map[string]json.RawMessage{KeyMaster: mk.object(t, alice, KeyMaster, nil),
				KeySelfSigning: ssk.object(t, alice, KeySelfSigning, nil)}, ErrInvalidSignature},
			"ssk signed by another key": {map[string]json.RawMessage{KeyMaster: mk.object(t, alice, KeyMaster, nil),
				KeySelfSigning: ssk.object(t, alice, KeySelfSigning, &usk)}, ErrInvalidSignature},
		} {
			if err := u.UploadCrossSigningKeys(ctx, alice, c.keys); !errors.Is(err, c.want) {
				t.Errorf("%s: got %v, want %v", name, err, c.want)
			}
		}
		// A public key equal to a device ID is refused.
		mustLogin(t, u, NewDevice{UserID: alice, DeviceID: id.DeviceID(usk.pub)})
		if err := u.UploadCrossSigningKeys(ctx, alice, map[string]json.RawMessage{KeyMaster: usk.object(t, alice, KeyMaster, nil)}); !errors.Is(err, ErrKeyIDInUse) {
			t.Errorf("key ID of a device: %v", err)
		}
		if _, has, _ := u.SameCrossSigningKeys(ctx, alice, nil); has {
			t.Fatal("refused uploads stored a master key")
		}

		usk = newCSKey()
		keys := map[string]json.RawMessage{KeyMaster: mk.object(t, alice, KeyMaster, nil),
			KeySelfSigning: ssk.object(t, alice, KeySelfSigning, &mk), KeyUserSigning: usk.object(t, alice, KeyUserSigning, &mk)}
		// Checking stores nothing.
		if err := u.CheckCrossSigningKeys(ctx, alice, keys); err != nil {
			t.Fatal(err)
		}
		if err := u.CheckCrossSigningKeys(ctx, alice, map[string]json.RawMessage{KeySelfSigning: ssk.object(t, alice, KeySelfSigning, &mk)}); !errors.Is(err, ErrNoMasterKey) {
			t.Errorf("check of a self-signing key without a master key: %v", err)
		}
		if _, has, _ := u.SameCrossSigningKeys(ctx, alice, nil); has {
			t.Fatal("a check stored the master key")
		}
		before := nf.Latest(StreamDeviceLists)
		if err := u.UploadCrossSigningKeys(ctx, alice, keys); err != nil {
			t.Fatal(err)
		}
		if nf.Latest(StreamDeviceLists) == before {
			t.Error("a cross-signing upload wrote no device-list change")
		}
		if same, has, err := u.SameCrossSigningKeys(ctx, alice, keys); !same || !has || err != nil {
			t.Errorf("SameCrossSigningKeys = %v %v %v", same, has, err)
		}
		if same, _, _ := u.SameCrossSigningKeys(ctx, alice, map[string]json.RawMessage{KeyMaster: newCSKey().object(t, alice, KeyMaster, nil)}); same {
			t.Error("another master key counted as the same")
		}
		before = nf.Latest(StreamDeviceLists)
		if err := u.UploadCrossSigningKeys(ctx, alice, keys); err != nil || nf.Latest(StreamDeviceLists) != before {
			t.Errorf("the same keys again: %v, list moved %v", err, nf.Latest(StreamDeviceLists) != before)
		}
		// A self-signing key alone must be signed by the stored master key.
		if err := u.UploadCrossSigningKeys(ctx, alice, map[string]json.RawMessage{KeySelfSigning: newCSKey().object(t, alice, KeySelfSigning, &mk)}); err != nil {
			t.Errorf("new self-signing key signed by the stored master key: %v", err)
		}
		got, err := u.QueryCrossSigningKeys(ctx, alice, []id.UserID{alice})
		if err != nil || got.Master[alice] == nil || got.SelfSigning[alice] == nil || got.UserSigning[alice] == nil {
			t.Fatalf("own keys: %+v %v", got, err)
		}
		got, _ = u.QueryCrossSigningKeys(ctx, "@bob:test.local", []id.UserID{alice})
		if got.Master[alice] == nil || got.UserSigning[alice] != nil {
			t.Errorf("another's view: %+v", got)
		}
		// A deactivated account's keys are not served.
		carol := mustAccount(t, u, "carol", "").UserID
		if err := u.UploadCrossSigningKeys(ctx, carol, map[string]json.RawMessage{KeyMaster: newCSKey().object(t, carol, KeyMaster, nil)}); err != nil {
			t.Fatal(err)
		}
		if err := u.Deactivate(ctx, carol, false); err != nil {
			t.Fatal(err)
		}
		if got, _ := u.QueryCrossSigningKeys(ctx, alice, []id.UserID{carol}); got.Master[carol] != nil {
			t.Errorf("master key of a deactivated account served")
		}
		// A new master key alone drops the keys it did not sign.
		if err := u.UploadCrossSigningKeys(ctx, alice, map[string]json.RawMessage{KeyMaster: newCSKey().object(t, alice, KeyMaster, nil)}); err != nil {
			t.Fatal(err)
		}
		got, _ = u.QueryCrossSigningKeys(ctx, alice, []id.UserID{alice})
		if got.SelfSigning[alice] != nil || got.UserSigning[alice] != nil {
			t.Errorf("keys of the old master key kept: %+v", got)
		}
	})
}

// TestUploadSignatures checks which signatures are accepted and who sees them.
func TestUploadSignatures(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{})
		ctx := t.Context()
		alice := mustAccount(t, u, "alice", "").UserID
		bob := mustAccount(t, u, "bob", "").UserID
		mustLogin(t, u, NewDevice{UserID: alice, DeviceID: "DEV"})
		_, devPriv, _ := ed25519.GenerateKey(nil)
		if _, err := u.UploadKeys(ctx, alice, "DEV", KeyUpload{DeviceKeys: testDeviceKeys(t, alice, "DEV", devPriv)}); err != nil {
			t.Fatal(err)
		}
		amk, assk, ausk, bmk := newCSKey(), newCSKey(), newCSKey(), newCSKey()
		if err := u.UploadCrossSigningKeys(ctx, alice, map[string]json.RawMessage{KeyMaster: amk.object(t, alice, KeyMaster, nil),
			KeySelfSigning: assk.object(t, alice, KeySelfSigning, &amk), KeyUserSigning: ausk.object(t, alice, KeyUserSigning, &amk)}); err != nil {
			t.Fatal(err)
		}
		if err := u.UploadCrossSigningKeys(ctx, bob, map[string]json.RawMessage{KeyMaster: bmk.object(t, bob, KeyMaster, nil)}); err != nil {
			t.Fatal(err)
		}
		dk, _ := u.QueryDeviceKeys(ctx, map[id.UserID][]id.DeviceID{alice: {"DEV"}})
		cs, _ := u.QueryCrossSigningKeys(ctx, alice, []id.UserID{alice, bob})
		_, otherPriv, _ := ed25519.GenerateKey(nil)
		failures, err := u.UploadSignatures(ctx, alice, map[id.UserID]map[string]json.RawMessage{
			alice: {
				"DEV":    resign(t, dk[alice]["DEV"], alice, "ed25519:"+assk.pub, assk.priv),
				amk.pub:  resign(t, cs.Master[alice], alice, "ed25519:DEV", devPriv),
				"NODEV":  resign(t, dk[alice]["DEV"], alice, "ed25519:"+assk.pub, assk.priv),
				"BADSIG": json.RawMessage(`{}`),
			},
			bob: {
				bmk.pub:    resign(t, cs.Master[bob], alice, "ed25519:"+ausk.pub, ausk.priv),
				"whatever": resign(t, cs.Master[bob], alice, "ed25519:"+ausk.pub, otherPriv),
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(failures[alice]) != 2 || failures[alice]["NODEV"].ErrCode == "" || failures[alice]["BADSIG"].ErrCode == "" || len(failures[bob]) != 1 {
			t.Errorf("failures %+v", failures)
		}
		// A signature that does not verify is refused.
		failures, _ = u.UploadSignatures(ctx, alice, map[id.UserID]map[string]json.RawMessage{
			alice: {"DEV": resign(t, dk[alice]["DEV"], alice, "ed25519:"+assk.pub, otherPriv)}})
		if failures[alice]["DEV"].ErrCode != "M_INVALID_SIGNATURE" {
			t.Errorf("bad signature: %+v", failures)
		}
		// Bob may not sign alice's device.
		failures, _ = u.UploadSignatures(ctx, bob, map[id.UserID]map[string]json.RawMessage{
			alice: {"DEV": resign(t, dk[alice]["DEV"], bob, "ed25519:"+bmk.pub, bmk.priv)}})
		if failures[alice]["DEV"].ErrCode == "" {
			t.Errorf("bob signed alice's device: %+v", failures)
		}

		hasSig := func(raw json.RawMessage, signer id.UserID, keyID string) bool {
			var obj struct {
				Signatures map[id.UserID]map[string]string `json:"signatures"`
			}
			_ = json.Unmarshal(raw, &obj)
			return obj.Signatures[signer][keyID] != ""
		}
		dk, _ = u.QueryDeviceKeys(ctx, map[id.UserID][]id.DeviceID{alice: {"DEV"}})
		if !hasSig(dk[alice]["DEV"], alice, "ed25519:"+assk.pub) || !hasSig(dk[alice]["DEV"], alice, "ed25519:DEV") {
			t.Errorf("device keys lack the self-signing signature: %s", dk[alice]["DEV"])
		}
		cs, _ = u.QueryCrossSigningKeys(ctx, alice, []id.UserID{alice, bob})
		if !hasSig(cs.Master[alice], alice, "ed25519:DEV") {
			t.Errorf("master key lacks the device's signature: %s", cs.Master[alice])
		}
		if !hasSig(cs.Master[bob], alice, "ed25519:"+ausk.pub) {
			t.Errorf("alice does not see her signature of bob's master key: %s", cs.Master[bob])
		}
		cs, _ = u.QueryCrossSigningKeys(ctx, bob, []id.UserID{bob})
		if hasSig(cs.Master[bob], alice, "ed25519:"+ausk.pub) {
			t.Errorf("bob sees alice's user-signing signature: %s", cs.Master[bob])
		}
		// New device keys drop the signatures of the old ones.
		if _, err := u.UploadKeys(ctx, alice, "DEV", KeyUpload{DeviceKeys: testDeviceKeys(t, alice, "DEV", nil)}); err != nil {
			t.Fatal(err)
		}
		dk, _ = u.QueryDeviceKeys(ctx, map[id.UserID][]id.DeviceID{alice: {"DEV"}})
		if hasSig(dk[alice]["DEV"], alice, "ed25519:"+assk.pub) {
			t.Errorf("a signature of old device keys kept on new ones: %s", dk[alice]["DEV"])
		}
	})
}
