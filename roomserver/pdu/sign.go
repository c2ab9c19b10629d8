package pdu

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strings"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"
)

// KeyRing gives the public signing keys of servers.
type KeyRing interface {
	// VerifyKey returns the public key keyID of serverName that was valid at ts (milliseconds).
	//
	// From room version 5 ts is the event's origin_server_ts, and a key qualifies only if its
	// valid_until_ts, capped at 7 days after the key was fetched, is at least ts (rooms/v5.md
	// "Signing key validity period"); earlier versions pass 0, meaning any key the server has
	// published under keyID, current or old, will do. An unknown or expired key is an error.
	VerifyKey(ctx context.Context, serverName string, keyID string, ts int64) (ed25519.PublicKey, error)
}

// maxKeysPerServer bounds the key lookups one event can cause per server; honest servers
// sign with one key, or two while they rotate keys.
const maxKeysPerServer = 8

// VerifySignatures checks that every server that must sign ev did, over the redacted event
// (server-server-api.md "Validating hashes and signatures on received events"): the sender's
// server; in room versions 1 and 2 also the server of the event ID; for joins in rooms with
// restricted join rules (v8+), the server of content.join_authorised_via_users_server. As
// the spec says, a third-party invite (m.room.member invite with
// content.third_party_invite) needs no signature from the sender's server, since the server
// sending it may be another; signatures it does carry from there must still verify.
//
// For each server, signatures by unknown or expired keys are skipped, every other ed25519
// signature must verify, and at least one must. The error wraps ErrSignature, or the
// context's error if ctx ended.
func VerifySignatures(ctx context.Context, ev *Event, keys KeyRing) error {
	tree := ev.tree()
	signed := redactedSigningBytes(ev.version, &tree)
	sigs := tree.get("signatures")
	ts := int64(0)
	if ev.version.EnforceSigningKeyValidity() {
		ts = ev.ts
	}
	content := tree.get("content")
	membership := ""
	if m := content.get("membership"); m != nil && m.kind == kindString && ev.typ == event.StateMember.Type {
		membership = m.str
	}

	required := []string{}
	if origin := ev.Origin(); membership == "invite" && content.get("third_party_invite") != nil {
		if sigs.get(origin) != nil {
			if err := verifyServer(ctx, signed, sigs, origin, ts, keys); err != nil {
				return err
			}
		}
	} else {
		required = append(required, origin)
	}
	if ev.version.EventIDFormat() == id.EventIDFormatCustom {
		required = append(required, serverOf(string(ev.eventID)))
	}
	if ev.version.RestrictedJoins() && membership == "join" {
		if via := content.get("join_authorised_via_users_server"); via != nil {
			if via.kind != kindString {
				return fmt.Errorf("%w: join_authorised_via_users_server is not a string", ErrSignature)
			}
			server, err := checkUserID(via.str)
			if err != nil {
				return fmt.Errorf("%w: join_authorised_via_users_server: %w", ErrSignature, err)
			}
			required = append(required, server)
		}
	}
	for i, server := range required {
		if slices.Contains(required[:i], server) {
			continue
		}
		if err := verifyServer(ctx, signed, sigs, server, ts, keys); err != nil {
			return err
		}
	}
	return nil
}

// VerifyServerSignature checks that ev is validly signed by serverName, for auth rules that
// ask whether an event is signed by a given server (rooms/v8.md "Authorisation rules" 4.2).
func VerifyServerSignature(ctx context.Context, ev *Event, serverName string, keys KeyRing) error {
	tree := ev.tree()
	ts := int64(0)
	if ev.version.EnforceSigningKeyValidity() {
		ts = ev.ts
	}
	return verifyServer(ctx, redactedSigningBytes(ev.version, &tree), tree.get("signatures"), serverName, ts, keys)
}

// verifyServer is appendices.md "Checking for a Signature" for one server, skipping unknown
// and expired keys (server-server-api.md "Validating hashes and signatures on received
// events").
func verifyServer(ctx context.Context, signed []byte, sigs *value, server string, ts int64, keys KeyRing) error {
	entry := sigs.get(server)
	if entry == nil {
		return fmt.Errorf("%w: no signature from %s", ErrSignature, server)
	}
	var skipped []error
	verified, tried := 0, 0
	for _, m := range entry.obj {
		// Only ed25519 is defined (appendices.md "Signing Details"); others are ignored.
		if !strings.HasPrefix(m.key, "ed25519:") {
			continue
		}
		if tried == maxKeysPerServer {
			break
		}
		tried++
		pub, err := keys.VerifyKey(ctx, server, m.key, ts)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("look up key %s of %s: %w", m.key, server, ctx.Err())
			}
			skipped = append(skipped, fmt.Errorf("key %s: %w", m.key, err))
			continue
		}
		if len(pub) != ed25519.PublicKeySize {
			skipped = append(skipped, fmt.Errorf("key %s: %d bytes long", m.key, len(pub)))
			continue
		}
		sig, ok := decodeBase64(m.val.str)
		if !ok || !ed25519.Verify(pub, signed, sig) {
			return fmt.Errorf("%w: signature of %s with key %s does not verify", ErrSignature, server, m.key)
		}
		verified++
	}
	if verified == 0 {
		if len(skipped) == 0 {
			return fmt.Errorf("%w: no ed25519 signature from %s", ErrSignature, server)
		}
		return fmt.Errorf("%w: no signature from %s with a known, valid key: %w", ErrSignature, server, errors.Join(skipped...))
	}
	return nil
}

// Sign returns a copy of the event with a signature of serverName added, as a resident
// server does for a restricted join and an invited server for an invite. The event ID does
// not change: signatures are not part of the reference hash.
func (e *Event) Sign(serverName string, key *federation.SigningKey) (*Event, error) {
	if err := checkSigningKey(key); err != nil {
		return nil, err
	}
	tree := e.tree()
	sig := ed25519.Sign(key.Priv, redactedSigningBytes(e.version, &tree))
	signed := addSignature(&tree, serverName, string(key.ID), sig)
	return fromTree(e.version, &signed, len(e.json)+128)
}

// SignJSON signs a JSON object as signingName (appendices.md "Signing Details"): the
// canonical JSON of the object without signatures and unsigned is signed, and the signature
// is added under signatures. The result is canonical JSON.
func SignJSON(raw []byte, signingName string, key *federation.SigningKey) ([]byte, error) {
	if err := checkSigningKey(key); err != nil {
		return nil, err
	}
	tree, err := parseJSON(raw, numCanonical)
	if err != nil {
		return nil, err
	}
	if tree.kind != kindObject {
		return nil, fmt.Errorf("%w: only JSON objects can be signed", ErrBadJSON)
	}
	bare := tree.without("signatures", "unsigned")
	sig := ed25519.Sign(key.Priv, bare.encode())
	signed := addSignature(&tree, signingName, string(key.ID), sig)
	return signed.encode(), nil
}

func checkSigningKey(key *federation.SigningKey) error {
	if key == nil || len(key.Priv) != ed25519.PrivateKeySize || !strings.HasPrefix(string(key.ID), "ed25519:") {
		return errors.New("pdu: signing key is not a complete ed25519 key")
	}
	return nil
}

// addSignature returns tree with signatures[name][keyID] set to the unpadded base64 of sig.
func addSignature(tree *value, name, keyID string, sig []byte) value {
	sigs := tree.get("signatures")
	if sigs == nil || sigs.kind != kindObject {
		sigs = &value{kind: kindObject}
	}
	server := sigs.get(name)
	if server == nil || server.kind != kindObject {
		server = &value{kind: kindObject}
	}
	s := server.with(keyID, stringValue(b64(sig)))
	ss := sigs.with(name, s)
	return tree.with("signatures", ss)
}
