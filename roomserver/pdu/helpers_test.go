package pdu

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"
)

const (
	testTS  = int64(1_700_000_000_000)
	weekMS  = int64(7 * 24 * 60 * 60 * 1000)
	serverA = "a.example"
	serverB = "b.example"
)

// testKey makes a deterministic signing key.
func testKey(name string) *federation.SigningKey {
	seed := sha256.Sum256([]byte(name))
	priv := ed25519.NewKeyFromSeed(seed[:])
	return &federation.SigningKey{ID: id.KeyID("ed25519:" + name), Priv: priv}
}

// keyRing is an in-memory KeyRing that models rooms/v5.md "Signing key validity period": a
// key is valid until the lesser of its valid_until_ts and 7 days after it was fetched.
type keyRing map[string]map[string]ringKey

type ringKey struct {
	pub        ed25519.PublicKey
	validUntil int64
	fetchedAt  int64
}

var errUnknownKey = errors.New("unknown key")

func (r keyRing) add(server string, key *federation.SigningKey, validUntil, fetchedAt int64) {
	if r[server] == nil {
		r[server] = map[string]ringKey{}
	}
	r[server][string(key.ID)] = ringKey{pub: key.Priv.Public().(ed25519.PublicKey), validUntil: validUntil, fetchedAt: fetchedAt}
}

func (r keyRing) VerifyKey(ctx context.Context, server, keyID string, ts int64) (ed25519.PublicKey, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	k, ok := r[server][keyID]
	if !ok {
		return nil, fmt.Errorf("%w %s of %s", errUnknownKey, keyID, server)
	}
	if ts != 0 && min(k.validUntil, k.fetchedAt+weekMS) < ts {
		return nil, fmt.Errorf("key %s of %s expired before %d", keyID, server, ts)
	}
	return k.pub, nil
}

// defaultRing knows the keys of serverA and serverB, fetched just before testTS and valid
// for a day after it.
func defaultRing() keyRing {
	r := keyRing{}
	r.add(serverA, testKey(serverA), testTS+weekMS/7, testTS-1000)
	r.add(serverB, testKey(serverB), testTS+weekMS/7, testTS-1000)
	return r
}

func strPtr(s string) *string { return &s }

// roomFor returns a room ID of the right format for the version.
func roomFor(version id.RoomVersion) id.RoomID {
	if version.RoomIDIsCreateEventID() {
		return "!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ"
	}
	return "!room:" + serverA
}

// prevFor returns an event ID of the right format for the version.
func prevFor(version id.RoomVersion, n int) id.EventID {
	if version.EventIDFormat() == id.EventIDFormatCustom {
		return id.EventID(fmt.Sprintf("$prev%d:%s", n, serverA))
	}
	h := sha256.Sum256(fmt.Appendf(nil, "prev%d", n))
	return eventIDFromHash(version, h[:])
}

// message builds a signed m.room.message event from serverA.
func message(t testing.TB, version id.RoomVersion, body string) *Event {
	t.Helper()
	ev, err := Build(version, Template{
		Type:           "m.room.message",
		Sender:         "@alice:" + serverA,
		Content:        json.RawMessage(fmt.Sprintf(`{"msgtype":"m.text","body":%q}`, body)),
		RoomID:         roomFor(version),
		PrevEvents:     []id.EventID{prevFor(version, 1)},
		AuthEvents:     []id.EventID{prevFor(version, 2), prevFor(version, 3)},
		Depth:          5,
		OriginServerTS: testTS,
	}, serverA, testKey(serverA))
	if err != nil {
		t.Fatalf("build v%s message: %v", version, err)
	}
	return ev
}

// resign recomputes the content hash of a hand-made event tree and signs it with each
// server's test key, for events Build would not make.
func resign(t testing.TB, version id.RoomVersion, raw string, servers ...string) []byte {
	t.Helper()
	tree, err := parseJSON([]byte(raw), numModeOf(version))
	if err != nil {
		t.Fatalf("resign: %v", err)
	}
	h := contentHash(&tree)
	tree = tree.with("hashes", objectOf(member{key: "sha256", val: stringValue(b64(h[:]))}))
	tree = tree.with("signatures", value{kind: kindObject})
	for _, s := range servers {
		key := testKey(s)
		sig := ed25519.Sign(key.Priv, redactedSigningBytes(version, &tree))
		tree = addSignature(&tree, s, string(key.ID), sig)
	}
	return tree.encode()
}
