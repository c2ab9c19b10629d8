package auth

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"strings"

	"maunium.net/go/mautrix/crypto/canonicaljson"
	"maunium.net/go/mautrix/id"
)

// checkThirdPartyInvite is sub-rule 1 of membership "invite": an invite that redeems an
// m.room.third_party_invite, proven by the identity server's signature over content.signed.
func (r *rules) checkThirdPartyInvite(ev Event, state State, raw json.RawMessage) error {
	m, sub := r.member, 3+r.ms
	target := id.UserID(*ev.StateKey())
	if tm := membershipOf(state, target); tm == membershipBan {
		return r.fail(n(m, sub, 1, 1), "target %s is banned", target)
	}
	signedRaw, ok := object(raw)["signed"]
	signed := object(signedRaw)
	if !ok || signed == nil {
		return r.fail(n(m, sub, 1, 2), "third_party_invite has no signed object")
	}
	mxidRaw, hasMXID := signed["mxid"]
	tokenRaw, hasToken := signed["token"]
	if !hasMXID || !hasToken {
		return r.fail(n(m, sub, 1, 3), "third_party_invite.signed lacks mxid or token")
	}
	if mxid, ok := str(mxidRaw); !ok || mxid != string(target) {
		return r.fail(n(m, sub, 1, 4), "signed mxid %s is not the state_key %s", mxidRaw, target)
	}
	token, _ := str(tokenRaw)
	tpi := state.Get(typeThirdPartyInvite, token)
	if _, isStr := str(tokenRaw); !isStr || tpi == nil {
		return r.fail(n(m, sub, 1, 5), "no m.room.third_party_invite for token %s", tokenRaw)
	}
	if tpi.Sender() != ev.Sender() {
		return r.fail(n(m, sub, 1, 6), "sender %s did not send the third-party invite (%s did)", ev.Sender(), tpi.Sender())
	}
	if verifySigned(signed, thirdPartyKeys(tpi)) {
		return nil
	}
	return r.fail(n(m, sub, 1, 8), "no signature in signed matches a public key of the third-party invite")
}

// thirdPartyKeys returns the Ed25519 public keys of an m.room.third_party_invite: content.public_key
// and every content.public_keys[].public_key, in unpadded standard or URL-safe base64.
func thirdPartyKeys(tpi Event) []ed25519.PublicKey {
	content := object(tpi.Content())
	var keys []ed25519.PublicKey
	add := func(raw json.RawMessage) {
		s, ok := str(raw)
		if !ok {
			return
		}
		if b := decodeBase64(s); len(b) == ed25519.PublicKeySize {
			keys = append(keys, ed25519.PublicKey(b))
		}
	}
	add(content["public_key"])
	var list []json.RawMessage
	if json.Unmarshal(content["public_keys"], &list) == nil {
		for _, e := range list {
			add(object(e)["public_key"])
		}
	}
	return keys
}

// decodeBase64 accepts unpadded base64 in the standard or URL-safe alphabet, and padded input
// too (appendices, "Unpadded Base64": decoders should accept both).
func decodeBase64(s string) []byte {
	s = strings.TrimRight(s, "=")
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b
		}
	}
	return nil
}

// verifySigned reports whether any Ed25519 signature in signed.signatures (under any entity) is
// valid for any of keys, following "Checking for a Signature" (appendices): the signatures and
// unsigned members are removed and the rest is encoded as canonical JSON.
func verifySigned(signed map[string]json.RawMessage, keys []ed25519.PublicKey) bool {
	if len(keys) == 0 {
		return false
	}
	var sigs []([]byte)
	for _, entity := range object(signed["signatures"]) {
		for keyID, raw := range object(entity) {
			if !strings.HasPrefix(keyID, "ed25519:") {
				continue // algorithms we do not understand
			}
			s, ok := str(raw)
			if !ok {
				continue
			}
			if b := decodeBase64(s); len(b) == ed25519.SignatureSize {
				sigs = append(sigs, b)
			}
		}
	}
	if len(sigs) == 0 {
		return false
	}
	rest := make(map[string]json.RawMessage, len(signed))
	for k, v := range signed {
		if k != "signatures" && k != "unsigned" {
			rest[k] = v
		}
	}
	msg, err := canonicaljson.Marshal(rest)
	if err != nil {
		return false
	}
	for _, sig := range sigs {
		for _, key := range keys {
			if ed25519.Verify(key, msg, sig) {
				return true
			}
		}
	}
	return false
}
