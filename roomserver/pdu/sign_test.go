package pdu

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"
)

// TestTamperedContent: a changed content keeps the signature (which covers the redacted
// event) but breaks the content hash, so the event must be redacted, not dropped.
func TestTamperedContent(t *testing.T) {
	for _, version := range allVersions {
		ev := message(t, version, "hello")
		raw := bytes.Replace(ev.JSON(), []byte(`"hello"`), []byte(`"HELLO"`), 1)
		tampered, err := Parse(version, raw)
		if err != nil {
			t.Fatalf("v%s: %v", version, err)
		}
		if tampered.EventID() != ev.EventID() {
			t.Errorf("v%s: content changed the event ID", version)
		}
		if err := VerifySignatures(context.Background(), tampered, defaultRing()); err != nil {
			t.Errorf("v%s: signatures of tampered content: %v", version, err)
		}
		if tampered.CheckContentHash() {
			t.Errorf("v%s: tampered content passes the hash check", version)
		}
		redacted := tampered.Redacted()
		if redacted.EventID() != ev.EventID() || string(redacted.Content()) != "{}" {
			t.Errorf("v%s: redacted copy %s has content %s", version, redacted.EventID(), redacted.Content())
		}
		if err := VerifySignatures(context.Background(), redacted, defaultRing()); err != nil {
			t.Errorf("v%s: redacted copy does not verify: %v", version, err)
		}
	}
}

func TestTamperedSignature(t *testing.T) {
	for _, version := range allVersions {
		ev := message(t, version, "hello")
		raw := string(ev.JSON())
		i := strings.Index(raw, `"ed25519:`+serverA+`":"`) + len(`"ed25519:`+serverA+`":"`)
		flip := "A"
		if raw[i] == 'A' {
			flip = "B"
		}
		tampered, err := Parse(version, []byte(raw[:i]+flip+raw[i+1:]))
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifySignatures(context.Background(), tampered, defaultRing()); !errors.Is(err, ErrSignature) {
			t.Errorf("v%s: tampered signature: %v", version, err)
		}
		// A change to a signed key other than content breaks the signature too.
		moved, err := Parse(version, bytes.Replace(ev.JSON(), []byte(`"depth":5`), []byte(`"depth":6`), 1))
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifySignatures(context.Background(), moved, defaultRing()); !errors.Is(err, ErrSignature) {
			t.Errorf("v%s: tampered depth: %v", version, err)
		}
	}
}

// TestKeyValidity: from room version 5 a key whose valid_until_ts, capped at 7 days after
// it was fetched, is before the event's origin_server_ts does not count (rooms/v5.md
// "Signing key validity period"); before v5 it does.
func TestKeyValidity(t *testing.T) {
	tests := []struct {
		name                  string
		validUntil, fetchedAt int64
		expired               bool
	}{
		{"valid", testTS + 1, testTS - 1000, false},
		{"valid until exactly the event", testTS, testTS - 1000, false},
		{"expired", testTS - 1, testTS - 1000, true},
		{"long validity capped at 7 days after fetching", testTS + 365*weekMS, testTS - weekMS - 1, true},
		{"long validity fetched recently", testTS + 365*weekMS, testTS - weekMS, false},
	}
	for _, tt := range tests {
		for _, version := range allVersions {
			ring := keyRing{}
			ring.add(serverA, testKey(serverA), tt.validUntil, tt.fetchedAt)
			err := VerifySignatures(context.Background(), message(t, version, "hi"), ring)
			wantErr := tt.expired && version.EnforceSigningKeyValidity()
			if (err != nil) != wantErr {
				t.Errorf("%s, v%s: error %v, want error %v", tt.name, version, err, wantErr)
			}
			if err != nil && !errors.Is(err, ErrSignature) {
				t.Errorf("%s, v%s: %v is not ErrSignature", tt.name, version, err)
			}
		}
	}
}

func TestVerifySignaturesRequiredServers(t *testing.T) {
	ctx := context.Background()
	ring := defaultRing()
	base := func(version id.RoomVersion, typ, stateKey, content string, extra string) string {
		sk := ""
		if stateKey != "" {
			sk = fmt.Sprintf(`"state_key":%q,`, stateKey)
		}
		refs := `[]`
		return fmt.Sprintf(`{"type":%q,%s"sender":"@alice:a.example","room_id":%q,"content":%s,"depth":3,"origin_server_ts":%d,"prev_events":%s,"auth_events":%s%s}`,
			typ, sk, roomFor(version), content, testTS, refs, refs, extra)
	}
	tests := []struct {
		name    string
		version id.RoomVersion
		raw     string
		signers []string
		ok      bool
	}{
		{"sender signed", id.RoomV10, base(id.RoomV10, "m.room.message", "", `{}`, ""), []string{serverA}, true},
		{"sender missing", id.RoomV10, base(id.RoomV10, "m.room.message", "", `{}`, ""), []string{serverB}, false},
		{"no signatures", id.RoomV10, base(id.RoomV10, "m.room.message", "", `{}`, ""), []string{}, false},
		{"v1 event ID server signed", id.RoomV1, base(id.RoomV1, "m.room.message", "", `{}`, `,"event_id":"$x:b.example"`), []string{serverA, serverB}, true},
		{"v1 event ID server missing", id.RoomV1, base(id.RoomV1, "m.room.message", "", `{}`, `,"event_id":"$x:b.example"`), []string{serverA}, false},
		{"v2 event ID server missing", id.RoomV2, base(id.RoomV2, "m.room.message", "", `{}`, `,"event_id":"$x:b.example"`), []string{serverA}, false},
		{"restricted join authorised", id.RoomV9, base(id.RoomV9, "m.room.member", "@alice:a.example", `{"membership":"join","join_authorised_via_users_server":"@bob:b.example"}`, ""), []string{serverA, serverB}, true},
		{"restricted join unauthorised", id.RoomV9, base(id.RoomV9, "m.room.member", "@alice:a.example", `{"membership":"join","join_authorised_via_users_server":"@bob:b.example"}`, ""), []string{serverA}, false},
		{"restricted join v8", id.RoomV8, base(id.RoomV8, "m.room.member", "@alice:a.example", `{"membership":"join","join_authorised_via_users_server":"@bob:b.example"}`, ""), []string{serverA}, false},
		{"restricted join v12", id.RoomV12, base(id.RoomV12, "m.room.member", "@alice:a.example", `{"membership":"join","join_authorised_via_users_server":"@bob:b.example"}`, ""), []string{serverA}, false},
		{"no restricted joins in v7", id.RoomV7, base(id.RoomV7, "m.room.member", "@alice:a.example", `{"membership":"join","join_authorised_via_users_server":"@bob:b.example"}`, ""), []string{serverA}, true},
		{"authorising user not a user ID", id.RoomV9, base(id.RoomV9, "m.room.member", "@alice:a.example", `{"membership":"join","join_authorised_via_users_server":"bob"}`, ""), []string{serverA}, false},
		{"third-party invite from another server", id.RoomV10, base(id.RoomV10, "m.room.member", "@carol:b.example", `{"membership":"invite","third_party_invite":{"signed":{}}}`, ""), []string{serverB}, true},
		{"plain invite from another server", id.RoomV10, base(id.RoomV10, "m.room.member", "@carol:b.example", `{"membership":"invite"}`, ""), []string{serverB}, false},
	}
	// An event_id added in transit to an event of room version 3+ is dropped, not checked.
	signed := string(resign(t, id.RoomV3, base(id.RoomV3, "m.room.message", "", `{}`, ""), serverA))
	withID := strings.Replace(signed, `{`, `{"event_id":"$x:b.example",`, 1)
	tests = append(tests, struct {
		name    string
		version id.RoomVersion
		raw     string
		signers []string
		ok      bool
	}{"v3 ignores event_id", id.RoomV3, withID, nil, true})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := []byte(tt.raw)
			if tt.signers != nil {
				raw = resign(t, tt.version, tt.raw, tt.signers...)
			}
			ev, err := Parse(tt.version, raw)
			if err != nil {
				t.Fatal(err)
			}
			err = VerifySignatures(ctx, ev, ring)
			if tt.ok && err != nil {
				t.Errorf("VerifySignatures: %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrSignature) {
				t.Errorf("VerifySignatures = %v, want ErrSignature", err)
			}
		})
	}
}

func TestVerifySignaturesKeys(t *testing.T) {
	ctx := context.Background()
	ev := message(t, id.RoomV10, "hi")

	if err := VerifySignatures(ctx, ev, keyRing{}); !errors.Is(err, ErrSignature) || !errors.Is(err, errUnknownKey) {
		t.Errorf("unknown key: %v", err)
	}
	// A signature with an unknown extra key is skipped; one with a known wrong key is not.
	ring := defaultRing()
	other := testKey("other")
	extra, err := ev.Sign(serverA, other)
	if err != nil {
		t.Fatal(err)
	}
	if extra.EventID() != ev.EventID() {
		t.Error("Sign changed the event ID")
	}
	if err := VerifySignatures(ctx, extra, ring); err != nil {
		t.Errorf("extra signature by an unknown key: %v", err)
	}
	ring[serverA][string(other.ID)] = ringKey{pub: testKey("wrong").Priv.Public().(ed25519.PublicKey), validUntil: testTS + 1, fetchedAt: testTS}
	if err := VerifySignatures(ctx, extra, ring); !errors.Is(err, ErrSignature) {
		t.Errorf("signature by a known key that does not match: %v", err)
	}
	// Non-ed25519 algorithms are ignored.
	raw := strings.Replace(string(ev.JSON()), `"signatures":{"a.example":{`, `"signatures":{"a.example":{"curve25519:x":"AAAA",`, 1)
	odd, err := Parse(id.RoomV10, []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifySignatures(ctx, odd, defaultRing()); err != nil {
		t.Errorf("unknown algorithm not ignored: %v", err)
	}
	// A cancelled context is not a bad signature.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := VerifySignatures(cctx, ev, defaultRing()); err == nil || errors.Is(err, ErrSignature) || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
	// VerifyServerSignature checks one server.
	if err := VerifyServerSignature(ctx, ev, serverA, defaultRing()); err != nil {
		t.Errorf("VerifyServerSignature(a): %v", err)
	}
	if err := VerifyServerSignature(ctx, ev, serverB, defaultRing()); !errors.Is(err, ErrSignature) {
		t.Errorf("VerifyServerSignature(b): %v", err)
	}
	both, err := ev.Sign(serverB, testKey(serverB))
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyServerSignature(ctx, both, serverB, defaultRing()); err != nil {
		t.Errorf("VerifyServerSignature(b) after Sign: %v", err)
	}
}
