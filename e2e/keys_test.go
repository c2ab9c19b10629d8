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
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

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

// keysCS is a cross-signing key pair.
type keysCS struct {
	pub  string
	priv ed25519.PrivateKey
}

func newKeysCS() keysCS {
	pub, priv, _ := ed25519.GenerateKey(nil)
	return keysCS{base64.RawStdEncoding.EncodeToString(pub), priv}
}

// object returns k as user's cross-signing key of usage typ, signed by signer when set.
func (k keysCS) object(t *testing.T, user id.UserID, typ string, signer *keysCS) map[string]any {
	obj := map[string]any{"user_id": user, "usage": []string{typ}, "keys": map[string]string{"ed25519:" + k.pub: k.pub}}
	if signer != nil {
		obj = keysSign(t, obj, user, "ed25519:"+signer.pub, signer.priv)
	}
	return obj
}

// keysRaw returns a JSON object of a query answer as a map, for signing it again.
func keysRaw(t *testing.T, v any) map[string]any {
	t.Helper()
	raw, _ := json.Marshal(v)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "unsigned")
	return m
}

// keysSigned converts a signed key object to mautrix's request type.
func keysSigned(t *testing.T, obj map[string]any) mautrix.ReqKeysSignatures {
	t.Helper()
	raw, _ := json.Marshal(obj)
	var out mautrix.ReqKeysSignatures
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCrossSigning uploads cross-signing keys (the first upload and an identical one without
// user-interactive auth, a new master key behind it), signs a device and another user's master
// key, and checks who sees which signature through /keys/query.
func TestCrossSigning(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	if _, err := keysUpload(alice, map[string]any{"device_keys": keysDevice(t, alice)}); err != nil {
		t.Fatal(err)
	}
	upload := func(c *mautrix.Client, body map[string]any) error {
		_, err := c.MakeRequest(ctx, http.MethodPost, c.BuildClientURL("v3", "keys", "device_signing", "upload"), body, nil)
		return err
	}
	amk, assk, ausk, bmk := newKeysCS(), newKeysCS(), newKeysCS(), newKeysCS()
	body := map[string]any{"master_key": amk.object(t, alice.UserID, "master", nil),
		"self_signing_key": assk.object(t, alice.UserID, "self_signing", &amk),
		"user_signing_key": ausk.object(t, alice.UserID, "user_signing", &amk)}
	if err := upload(alice, body); err != nil {
		t.Fatalf("first upload: %v", err)
	}
	if err := upload(alice, body); err != nil {
		t.Fatalf("the same keys again: %v", err)
	}
	if err := upload(bob, map[string]any{"master_key": bmk.object(t, bob.UserID, "master", nil)}); err != nil {
		t.Fatal(err)
	}
	bad := map[string]any{"master_key": amk.object(t, alice.UserID, "master", nil),
		"self_signing_key": newKeysCS().object(t, alice.UserID, "self_signing", &bmk)}
	var herr mautrix.HTTPError
	if err := upload(alice, bad); !errors.As(err, &herr) || herr.RespError == nil || herr.RespError.ErrCode != "M_INVALID_SIGNATURE" {
		t.Errorf("self-signing key not signed by the master key, refused before user-interactive auth: %v", err)
	}

	q, err := alice.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{alice.UserID: {}, bob.UserID: {}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := q.MasterKeys[bob.UserID]; !ok {
		t.Fatalf("no master key of bob: %+v", q.MasterKeys)
	}
	if _, ok := q.UserSigningKeys[alice.UserID]; !ok {
		t.Errorf("alice does not see her user-signing key")
	}
	sigs, err := alice.UploadSignatures(ctx, &mautrix.ReqUploadSignatures{
		alice.UserID: {string(alice.DeviceID): keysSigned(t, keysSign(t, keysRaw(t, q.DeviceKeys[alice.UserID][alice.DeviceID]), alice.UserID, "ed25519:"+assk.pub, assk.priv))},
		bob.UserID:   {bmk.pub: keysSigned(t, keysSign(t, keysRaw(t, q.MasterKeys[bob.UserID]), alice.UserID, "ed25519:"+ausk.pub, ausk.priv))},
	})
	if err != nil || len(sigs.Failures) != 0 {
		t.Fatalf("signatures upload: %v %v", sigs, err)
	}
	sigs, err = alice.UploadSignatures(ctx, &mautrix.ReqUploadSignatures{
		bob.UserID: {bmk.pub: keysSigned(t, keysSign(t, keysRaw(t, q.MasterKeys[bob.UserID]), alice.UserID, "ed25519:"+ausk.pub, newKeysCS().priv))},
	})
	if err != nil || len(sigs.Failures) != 1 {
		t.Errorf("a bad signature: %v %v", sigs, err)
	}

	byBob, err := bob.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{alice.UserID: {}, bob.UserID: {}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := byBob.UserSigningKeys[alice.UserID]; ok {
		t.Error("bob sees alice's user-signing key")
	}
	if byBob.DeviceKeys[alice.UserID][alice.DeviceID].Signatures[alice.UserID][id.KeyID("ed25519:"+assk.pub)] == "" {
		t.Errorf("bob does not see alice's self-signing signature of her device: %+v", byBob.DeviceKeys[alice.UserID][alice.DeviceID].Signatures)
	}
	if len(byBob.MasterKeys[bob.UserID].Signatures[alice.UserID]) != 0 {
		t.Error("bob sees alice's user-signing signature of his master key")
	}
	byAlice, _ := alice.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{bob.UserID: {}}})
	if byAlice.MasterKeys[bob.UserID].Signatures[alice.UserID][id.KeyID("ed25519:"+ausk.pub)] == "" {
		t.Error("alice does not see her signature of bob's master key")
	}

	// A new master key needs user-interactive auth.
	nmk := newKeysCS()
	replace := map[string]any{"master_key": nmk.object(t, alice.UserID, "master", nil)}
	if err := upload(alice, replace); !errors.As(err, &herr) || herr.Response.StatusCode != http.StatusUnauthorized {
		t.Fatalf("new master key without auth: %v", err)
	}
	var uia struct {
		Session string `json:"session"`
	}
	_ = json.Unmarshal([]byte(herr.ResponseBody), &uia)
	replace["auth"] = map[string]any{"type": "m.login.password", "session": uia.Session, "password": "password",
		"identifier": map[string]string{"type": "m.id.user", "user": string(alice.UserID)}}
	if err := upload(alice, replace); err != nil {
		t.Fatalf("new master key with auth: %v", err)
	}
}

// TestKeyBackup creates a backup, stores and reads session keys at each path, and checks that
// writing to an old version is refused with the current one.
func TestKeyBackup(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice := s.NewUser(t, "alice")
	do := func(method string, path []string, query map[string]string, body, out any) error {
		_, err := alice.MakeRequest(ctx, method, alice.BuildURLWithQuery(mautrix.ClientURLPath(append([]any{"v3"}, toAny(path)...)), query), body, out)
		return err
	}
	var herr mautrix.HTTPError
	if err := do(http.MethodGet, []string{"room_keys", "version"}, nil, nil, nil); !errors.As(err, &herr) || herr.Response.StatusCode != http.StatusNotFound {
		t.Errorf("no backup yet: %v", err)
	}
	create := map[string]any{"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": map[string]any{"public_key": "abc"}}
	var v1, v2 struct {
		Version string `json:"version"`
	}
	if err := do(http.MethodPost, []string{"room_keys", "version"}, nil, create, &v1); err != nil {
		t.Fatal(err)
	}
	if err := do(http.MethodPost, []string{"room_keys", "version"}, nil, create, &v2); err != nil {
		t.Fatal(err)
	}
	room := "!room:localhost"
	key := map[string]any{"first_message_index": 1, "forwarded_count": 0, "is_verified": false, "session_data": map[string]string{"ciphertext": "x"}}
	err := do(http.MethodPut, []string{"room_keys", "keys", room, "S1"}, map[string]string{"version": v1.Version}, key, nil)
	if !errors.As(err, &herr) || herr.RespError == nil || herr.RespError.ErrCode != "M_WRONG_ROOM_KEYS_VERSION" ||
		herr.Response.StatusCode != http.StatusForbidden || herr.RespError.ExtraData["current_version"] != v2.Version {
		t.Errorf("put to an old version: %v", err)
	}
	var upd struct {
		Count int    `json:"count"`
		ETag  string `json:"etag"`
	}
	if err := do(http.MethodPut, []string{"room_keys", "keys", room, "S1"}, map[string]string{"version": v2.Version}, key, &upd); err != nil || upd.Count != 1 {
		t.Fatalf("put one: %+v %v", upd, err)
	}
	if err := do(http.MethodPut, []string{"room_keys", "keys"}, map[string]string{"version": v2.Version},
		map[string]any{"rooms": map[string]any{room: map[string]any{"sessions": map[string]any{"S2": key}}}}, &upd); err != nil || upd.Count != 2 {
		t.Fatalf("put all: %+v %v", upd, err)
	}
	var info struct {
		Version string `json:"version"`
		Count   int    `json:"count"`
		ETag    string `json:"etag"`
	}
	if err := do(http.MethodGet, []string{"room_keys", "version"}, nil, nil, &info); err != nil || info.Version != v2.Version || info.Count != 2 || info.ETag != upd.ETag {
		t.Errorf("latest version: %+v %v", info, err)
	}
	var one struct {
		FirstMessageIndex int `json:"first_message_index"`
	}
	if err := do(http.MethodGet, []string{"room_keys", "keys", room, "S2"}, map[string]string{"version": v2.Version}, nil, &one); err != nil || one.FirstMessageIndex != 1 {
		t.Errorf("get one: %+v %v", one, err)
	}
	if err := do(http.MethodGet, []string{"room_keys", "keys", room, "NONE"}, map[string]string{"version": v2.Version}, nil, nil); !errors.As(err, &herr) || herr.Response.StatusCode != http.StatusNotFound {
		t.Errorf("get an unknown session: %v", err)
	}
	var roomKeys struct {
		Sessions map[string]any `json:"sessions"`
	}
	if err := do(http.MethodGet, []string{"room_keys", "keys", room}, map[string]string{"version": v2.Version}, nil, &roomKeys); err != nil || len(roomKeys.Sessions) != 2 {
		t.Errorf("get room: %+v %v", roomKeys, err)
	}
	if err := do(http.MethodDelete, []string{"room_keys", "keys", room}, map[string]string{"version": v2.Version}, nil, &upd); err != nil || upd.Count != 0 {
		t.Errorf("delete room: %+v %v", upd, err)
	}
	if err := do(http.MethodDelete, []string{"room_keys", "version", v2.Version}, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := do(http.MethodGet, []string{"room_keys", "version"}, nil, nil, &info); err != nil || info.Version != v1.Version {
		t.Errorf("latest after delete: %+v %v", info, err)
	}
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// TestMatrixJSSDKCrypto runs js/crypto.mjs: matrix-js-sdk with its Rust crypto sets up an
// encrypted room, cross-signing, a verification and a key backup that a new login restores.
func TestMatrixJSSDKCrypto(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is needed for the matrix-js-sdk tests (Node 20 or newer)")
	}
	if _, err := os.Stat(filepath.Join("js", "node_modules", "matrix-js-sdk")); err != nil {
		t.Fatal("matrix-js-sdk is not installed: run 'npm ci --prefix e2e/js' (make test does)")
	}
	s := Start(t)
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, filepath.Join("js", "crypto.mjs"), s.URL,
		string(alice.UserID), alice.AccessToken, string(alice.DeviceID), string(bob.UserID), bob.AccessToken, string(bob.DeviceID), "password").CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		// The script's own error line first: test summaries show only the first line.
		reason := ""
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, "Error") {
				reason = strings.TrimSpace(line)
			}
		}
		t.Fatalf("crypto.mjs: %v: %s", err, reason)
	}
}

// TestKeysBadInput checks the errors of the key endpoints for malformed or impossible requests.
func TestKeysBadInput(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice := s.NewUser(t, "alice")
	if _, err := alice.MakeRequest(ctx, http.MethodPost, alice.BuildClientURL("v3", "room_keys", "version"), map[string]any{
		"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": map[string]any{}}, nil); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, method string
		path         []string
		query        map[string]string
		body         any
		status       int
		code         string
	}{
		{"query without device_keys", http.MethodPost, []string{"keys", "query"}, nil, map[string]any{}, 400, "M_MISSING_PARAM"},
		{"query of an invalid user ID", http.MethodPost, []string{"keys", "query"}, nil, map[string]any{"device_keys": map[string]any{"alice": []string{}}}, 400, "M_INVALID_PARAM"},
		{"claim without one_time_keys", http.MethodPost, []string{"keys", "claim"}, nil, map[string]any{}, 400, "M_MISSING_PARAM"},
		{"one-time key without an ID", http.MethodPost, []string{"keys", "upload"}, nil, map[string]any{"one_time_keys": map[string]any{"signed_curve25519": "x"}}, 400, "M_INVALID_PARAM"},
		{"device keys not an object", http.MethodPost, []string{"keys", "upload"}, nil, map[string]any{"device_keys": "x"}, 400, "M_INVALID_PARAM"},
		{"self-signing key without a master key", http.MethodPost, []string{"keys", "device_signing", "upload"}, nil,
			map[string]any{"self_signing_key": newKeysCS().object(t, alice.UserID, "self_signing", nil)}, 400, "M_MISSING_PARAM"},
		{"signatures not an object", http.MethodPost, []string{"keys", "signatures", "upload"}, nil, []int{1}, 400, "M_BAD_JSON"},
		{"backup keys without version", http.MethodPut, []string{"room_keys", "keys"}, nil, map[string]any{"rooms": map[string]any{}}, 400, "M_MISSING_PARAM"},
		{"backup update with another version", http.MethodPut, []string{"room_keys", "version", "1"}, nil,
			map[string]any{"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": map[string]any{}, "version": "2"}, 400, "M_INVALID_PARAM"},
		{"backup update of the algorithm", http.MethodPut, []string{"room_keys", "version", "1"}, nil,
			map[string]any{"algorithm": "other", "auth_data": map[string]any{}}, 400, "M_INVALID_PARAM"},
		{"unknown backup version", http.MethodGet, []string{"room_keys", "version", "abc"}, nil, nil, 404, "M_NOT_FOUND"},
		{"keys of an unknown backup version", http.MethodGet, []string{"room_keys", "keys"}, map[string]string{"version": "9"}, nil, 404, "M_NOT_FOUND"},
		{"session_data not an object", http.MethodPut, []string{"room_keys", "keys", "!r:localhost", "S"}, map[string]string{"version": "1"},
			map[string]any{"first_message_index": 0, "forwarded_count": 0, "is_verified": false, "session_data": 1}, 400, "M_INVALID_PARAM"},
		{"changes without tokens", http.MethodGet, []string{"keys", "changes"}, nil, nil, 400, "M_MISSING_PARAM"},
	}
	for _, c := range cases {
		_, err := alice.MakeRequest(ctx, c.method, alice.BuildURLWithQuery(mautrix.ClientURLPath(append([]any{"v3"}, toAny(c.path)...)), c.query), c.body, nil)
		var herr mautrix.HTTPError
		if !errors.As(err, &herr) || herr.Response.StatusCode != c.status || herr.RespError == nil || herr.RespError.ErrCode != c.code {
			t.Errorf("%s: got %v, want %d %s", c.name, err, c.status, c.code)
		}
	}
	// Remote users are reported under failures until federation exists.
	var claim struct {
		Failures map[string]any `json:"failures"`
	}
	if _, err := alice.MakeRequest(ctx, http.MethodPost, alice.BuildClientURL("v3", "keys", "claim"),
		map[string]any{"one_time_keys": map[string]any{"@bob:elsewhere.example": map[string]string{"D": "signed_curve25519"}}}, &claim); err != nil || claim.Failures["elsewhere.example"] == nil {
		t.Errorf("claim of a remote user: %+v %v", claim, err)
	}
	// Without an access token.
	anon, _ := mautrix.NewClient(s.URL, "", "")
	if _, err := anon.MakeRequest(ctx, http.MethodGet, anon.BuildClientURL("v3", "keys", "changes")+"?from=s0&to=s0", nil, nil); err == nil {
		t.Error("/keys/changes without a token answered")
	}
}

// TestKeysSurviveRestart checks that keys, claims, counts and backups are kept across a restart,
// and that a sync token from before it gets the counts after it.
func TestKeysSurviveRestart(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	if _, err := keysUpload(alice, map[string]any{"device_keys": keysDevice(t, alice), "one_time_keys": map[string]any{
		"signed_curve25519:A": map[string]string{"key": "a"}, "signed_curve25519:B": map[string]string{"key": "b"}}}); err != nil {
		t.Fatal(err)
	}
	claim := func() int {
		t.Helper()
		resp, err := bob.ClaimKeys(ctx, &mautrix.ReqClaimKeys{OneTimeKeys: mautrix.OneTimeKeysRequest{alice.UserID: {alice.DeviceID: id.KeyAlgorithmSignedCurve25519}}})
		if err != nil {
			t.Fatal(err)
		}
		return len(resp.OneTimeKeys[alice.UserID][alice.DeviceID])
	}
	if claim() != 1 {
		t.Fatal("no key claimed")
	}
	since := syncOnce(t, alice, "", "", 0).NextBatch
	if _, err := alice.MakeRequest(ctx, http.MethodPost, alice.BuildClientURL("v3", "room_keys", "version"), map[string]any{
		"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": map[string]any{}}, nil); err != nil {
		t.Fatal(err)
	}
	s.Restart(t)

	q, err := bob.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{alice.UserID: {}}})
	if err != nil || len(q.DeviceKeys[alice.UserID]) != 1 {
		t.Fatalf("query after restart: %+v %v", q, err)
	}
	if claim() != 1 || claim() != 0 {
		t.Error("after restart: the remaining key was not handed out exactly once")
	}
	if got := syncOnce(t, alice, since, "", 0); got.DeviceOTKCount.SignedCurve25519 != 0 {
		t.Errorf("counts after the claims: %+v", got.DeviceOTKCount)
	}
	var info struct {
		Version string `json:"version"`
	}
	if _, err := alice.MakeRequest(ctx, http.MethodGet, alice.BuildClientURL("v3", "room_keys", "version"), nil, &info); err != nil || info.Version != "1" {
		t.Errorf("backup after restart: %+v %v", info, err)
	}
}
