package e2e

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver/pdu"
)

// keysSign signs obj as the spec's "Signing JSON" says, with signer's key keyID.
func keysSign(t *testing.T, obj map[string]any, signer id.UserID, keyID string, priv ed25519.PrivateKey) map[string]any {
	t.Helper()
	delete(obj, "signatures")
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := pdu.CanonicalJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	obj["signatures"] = map[string]map[string]string{string(signer): {keyID: base64.RawStdEncoding.EncodeToString(ed25519.Sign(priv, msg))}}
	return obj
}

// keysDevice returns the device keys of c's device, signed with a new ed25519 key.
func keysDevice(t *testing.T, c *mautrix.Client) map[string]any {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(nil)
	return keysSign(t, map[string]any{
		"user_id": c.UserID, "device_id": c.DeviceID,
		"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"keys": map[string]string{
			"ed25519:" + string(c.DeviceID):    base64.RawStdEncoding.EncodeToString(pub),
			"curve25519:" + string(c.DeviceID): base64.RawStdEncoding.EncodeToString(make([]byte, 32)),
		},
	}, c.UserID, "ed25519:"+string(c.DeviceID), priv)
}

// keysUpload posts a raw /keys/upload body and returns the one-time key counts.
func keysUpload(c *mautrix.Client, body map[string]any) (map[string]int, error) {
	var resp struct {
		Counts map[string]int `json:"one_time_key_counts"`
	}
	_, err := c.MakeRequest(context.Background(), http.MethodPost, c.BuildClientURL("v3", "keys", "upload"), body, &resp)
	return resp.Counts, err
}

// TestKeysUploadQueryClaim uploads device, one-time and fallback keys, queries them as another
// user, claims them concurrently (each one-time key once, then the fallback key), and checks the
// counts in /sync and GET /keys/changes.
func TestKeysUploadQueryClaim(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	since := syncOnce(t, alice, "", "", 0).NextBatch

	// Keys of another device, or tampered with after signing, are refused.
	forged := keysDevice(t, alice)
	forged["device_id"] = "OTHER"
	tampered := keysDevice(t, alice)
	tampered["algorithms"] = []string{"m.megolm.v1.aes-sha2"}
	for name, dk := range map[string]map[string]any{"other device": forged, "tampered": tampered} {
		_, err := keysUpload(alice, map[string]any{"device_keys": dk})
		var herr mautrix.HTTPError
		if !errors.As(err, &herr) || herr.RespError == nil || herr.RespError.ErrCode != "M_INVALID_PARAM" || herr.Response.StatusCode != 400 {
			t.Errorf("%s: got %v, want 400 M_INVALID_PARAM", name, err)
		}
	}

	const n = 20
	otks := map[string]any{}
	for i := range n {
		otks[fmt.Sprintf("signed_curve25519:K%02d", i)] = map[string]any{"key": fmt.Sprintf("key%02d", i)}
	}
	counts, err := keysUpload(alice, map[string]any{
		"device_keys":   keysDevice(t, alice),
		"one_time_keys": otks,
		"fallback_keys": map[string]any{"signed_curve25519:FB": map[string]any{"key": "fallback", "fallback": true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if counts["signed_curve25519"] != n {
		t.Fatalf("one_time_key_counts %v", counts)
	}

	q, err := bob.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{alice.UserID: {}, "@carol:elsewhere.example": {}}})
	if err != nil {
		t.Fatal(err)
	}
	dk, ok := q.DeviceKeys[alice.UserID][alice.DeviceID]
	if !ok || dk.UserID != alice.UserID || dk.Keys[id.NewDeviceKeyID(id.KeyAlgorithmEd25519, alice.DeviceID)] == "" {
		t.Fatalf("query: %+v", q.DeviceKeys)
	}
	if _, ok := q.Failures["elsewhere.example"]; !ok {
		t.Errorf("a remote user is not under failures: %v", q.Failures)
	}

	sync1 := syncOnce(t, alice, since, "", 0)
	if sync1.DeviceOTKCount.SignedCurve25519 != n || !slices.Equal(sync1.FallbackKeys, []id.KeyAlgorithm{"signed_curve25519"}) {
		t.Errorf("sync counts %+v, fallbacks %v", sync1.DeviceOTKCount, sync1.FallbackKeys)
	}
	// Alice's own device-list change shows in /keys/changes between the tokens.
	var changes struct {
		Changed []id.UserID `json:"changed"`
	}
	u := bob.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "keys", "changes"}, map[string]string{"from": since, "to": sync1.NextBatch})
	if _, err := alice.MakeRequest(ctx, http.MethodGet, u, nil, &changes); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(changes.Changed, alice.UserID) {
		t.Errorf("/keys/changes: %v", changes.Changed)
	}
	if _, err := alice.MakeRequest(ctx, http.MethodGet, bob.BuildClientURL("v3", "keys", "changes")+"?from=x&to="+url.QueryEscape(sync1.NextBatch), nil, nil); err == nil {
		t.Error("/keys/changes took an invalid token")
	}

	// Concurrent claims get every one-time key once, then the fallback key.
	var mu sync.Mutex
	seen := map[id.KeyID]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range n/4 + 1 {
				resp, err := bob.ClaimKeys(ctx, &mautrix.ReqClaimKeys{OneTimeKeys: mautrix.OneTimeKeysRequest{alice.UserID: {alice.DeviceID: id.KeyAlgorithmSignedCurve25519}}})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for k := range resp.OneTimeKeys[alice.UserID][alice.DeviceID] {
					seen[k]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if seen["signed_curve25519:FB"] < 1 || len(seen) != n+1 {
		t.Errorf("claimed %d distinct keys (%v), want %d and the fallback key", len(seen), seen, n)
	}
	for k, c := range seen {
		if c != 1 && k != "signed_curve25519:FB" {
			t.Errorf("%s handed out %d times", k, c)
		}
	}
	sync2 := syncOnce(t, alice, sync1.NextBatch, "", 0)
	if sync2.DeviceOTKCount.SignedCurve25519 != 0 || len(sync2.FallbackKeys) != 0 {
		t.Errorf("after the claims: counts %+v, fallbacks %v", sync2.DeviceOTKCount, sync2.FallbackKeys)
	}
}
