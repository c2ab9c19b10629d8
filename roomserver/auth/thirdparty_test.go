package auth

import (
	"crypto/ed25519"
	"encoding/base64"
	"strings"
	"testing"
)

// Fixed keys of a test identity server, so failures reproduce.
var (
	isKey    = ed25519.NewKeyFromSeed([]byte("lattice-test-identity-server-k1!"))
	otherKey = ed25519.NewKeyFromSeed([]byte("lattice-test-identity-server-k2!"))
)

func pubB64(k ed25519.PrivateKey, enc *base64.Encoding) string {
	return enc.EncodeToString(k.Public().(ed25519.PublicKey))
}

// signedBlock returns content.third_party_invite.signed for mxid and token, signed by key over
// the canonical JSON written out here by hand (keys sorted, no spaces), independently of the
// canonicaliser the package uses.
func signedBlock(key ed25519.PrivateKey, mxid, token string) string {
	canonical := `{"mxid":"` + mxid + `","token":"` + token + `"}`
	sig := base64.RawStdEncoding.EncodeToString(ed25519.Sign(key, []byte(canonical)))
	return `{"token":"` + token + `","mxid":"` + mxid + `","signatures":{"id.test":{"ed25519:0":"` + sig + `"}}}`
}

func tpiInvite(sender, target, signed string) string {
	return member(sender, target, `{"membership":"invite","third_party_invite":{"display_name":"d...@example.com","signed":`+signed+`}}`)
}

func tpiState(sender, token, content string) func(r *room) {
	return func(r *room) {
		r.set(`{"type":"m.room.third_party_invite","sender":"` + sender + `","state_key":"` + token + `","content":` + content + `}`)
	}
}

// TestThirdPartyInvite covers sub-rule 1 of membership "invite" with real Ed25519 signatures.
func TestThirdPartyInvite(t *testing.T) {
	keyContent := `{"display_name":"d...@example.com","key_validity_url":"https://id.test/v","public_key":"` + pubB64(isKey, base64.RawStdEncoding) + `"}`
	withTPI := tpiState(bob, "tok", keyContent)
	valid := tpiInvite(bob, dave, signedBlock(isKey, dave, "tok"))
	rule := func(sub string) string {
		return "1:5.3.1." + sub + " 6:4.3.1." + sub + " 8:4.4.1." + sub + " 12:5.4.1." + sub
	}
	// A signature made before a field was added to signed no longer verifies.
	tampered := strings.Replace(signedBlock(isKey, dave, "tok"), `"token"`, `"extra":1,"token"`, 1)
	runCheckCases(t, []checkCase{
		{name: "valid", setup: withTPI, event: valid},
		{name: "valid without invite level", setup: both(withTPI, powerLevels(`{"users":{{alice100,}"`+bob+`":50},"invite":100}`)), event: valid},
		{name: "valid with unsigned in signed", setup: withTPI, event: tpiInvite(bob, dave, strings.Replace(signedBlock(isKey, dave, "tok"), `"token"`, `"unsigned":{"x":1},"token"`, 1))},
		{name: "key in public_keys", setup: tpiState(bob, "tok", `{"public_key":"`+pubB64(otherKey, base64.RawStdEncoding)+`","public_keys":[{"public_key":"bad"},{"public_key":"`+pubB64(isKey, base64.RawURLEncoding)+`"}]}`), event: valid},
		{name: "padded key", setup: tpiState(bob, "tok", `{"public_key":"`+pubB64(isKey, base64.StdEncoding)+`"}`), event: valid},
		{name: "target banned", setup: withTPI, event: tpiInvite(bob, eve, signedBlock(isKey, eve, "tok")), rule: rule("1")},
		{name: "no signed", setup: withTPI, event: member(bob, dave, `{"membership":"invite","third_party_invite":{"display_name":"x"}}`), rule: rule("2")},
		{name: "third_party_invite null", setup: withTPI, event: member(bob, dave, `{"membership":"invite","third_party_invite":null}`), rule: rule("2")},
		{name: "signed not an object", setup: withTPI, event: tpiInvite(bob, dave, `"x"`), rule: rule("2")},
		{name: "no token", setup: withTPI, event: tpiInvite(bob, dave, `{"mxid":"`+dave+`","signatures":{}}`), rule: rule("3")},
		{name: "no mxid", setup: withTPI, event: tpiInvite(bob, dave, `{"token":"tok","signatures":{}}`), rule: rule("3")},
		{name: "mxid of another user", setup: withTPI, event: tpiInvite(bob, dave, signedBlock(isKey, carol, "tok")), rule: rule("4")},
		{name: "unknown token", setup: withTPI, event: tpiInvite(bob, dave, signedBlock(isKey, dave, "nope")), rule: rule("5")},
		{name: "numeric token", setup: withTPI, event: tpiInvite(bob, dave, `{"mxid":"`+dave+`","token":1}`), rule: rule("5")},
		{name: "sender not the inviter", setup: both(withTPI, func(r *room) { r.set(member(alice, carol, joinC)) }), event: tpiInvite(carol, dave, signedBlock(isKey, dave, "tok")), rule: rule("6")},
		{name: "signed by another key", setup: withTPI, event: tpiInvite(bob, dave, signedBlock(otherKey, dave, "tok")), rule: rule("8")},
		{name: "tampered", setup: withTPI, event: tpiInvite(bob, dave, tampered), rule: rule("8")},
		{name: "no signatures", setup: withTPI, event: tpiInvite(bob, dave, `{"mxid":"`+dave+`","token":"tok"}`), rule: rule("8")},
		{name: "unknown algorithm", setup: withTPI, event: tpiInvite(bob, dave, strings.Replace(signedBlock(isKey, dave, "tok"), "ed25519:0", "curve25519:0", 1)), rule: rule("8")},
		{name: "no public key", setup: tpiState(bob, "tok", `{"public_key":5}`), event: valid, rule: rule("8")},
		{name: "short public key", setup: tpiState(bob, "tok", `{"public_key":"AAAA"}`), event: valid, rule: rule("8")},
		// The third-party path does not look at the sender's own membership.
		{name: "inviter has left", setup: both(withTPI, func(r *room) { r.set(member(bob, bob, leaveC)) }), event: valid},
	})
}

func TestDecodeBase64(t *testing.T) {
	raw := []byte{0xfb, 0xff, 0xfe, 0x01}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if got := decodeBase64(enc.EncodeToString(raw)); string(got) != string(raw) {
			t.Errorf("%s: got %x", enc.EncodeToString(raw), got)
		}
	}
	if decodeBase64("!!!") != nil {
		t.Error("decoded garbage")
	}
}
