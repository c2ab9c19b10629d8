package pdu

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/id"
)

// ContentHash computes the content hash of an event (server-server-api.md "Calculating the
// content hash for an event"): SHA-256 of its canonical JSON without unsigned, signatures and
// hashes. The room version decides how strictly the JSON is read; in room versions 3 and
// later an event_id key is removed first, as in Parse.
func ContentHash(version id.RoomVersion, raw []byte) ([]byte, error) {
	tree, err := parseEventObject(version, raw)
	if err != nil {
		return nil, err
	}
	h := contentHash(tree)
	return h[:], nil
}

// ReferenceHash computes the reference hash of an event (server-server-api.md "Calculating
// the reference hash for an event"): SHA-256 of the canonical JSON of the redacted event
// without signatures and unsigned.
func ReferenceHash(version id.RoomVersion, raw []byte) ([]byte, error) {
	tree, err := parseEventObject(version, raw)
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(redactedSigningBytes(version, tree))
	return h[:], nil
}

// EventIDFromReferenceHash encodes a reference hash as an event ID of the room version:
// unpadded base64 in version 3 (rooms/v3.md "Event IDs"), URL-safe unpadded base64 from
// version 4 (rooms/v4.md "Event IDs"). Versions 1 and 2 do not derive IDs from hashes.
func EventIDFromReferenceHash(version id.RoomVersion, hash []byte) (id.EventID, error) {
	if err := checkVersion(version); err != nil {
		return "", err
	}
	if version.EventIDFormat() == id.EventIDFormatCustom {
		return "", fmt.Errorf("room version %s does not derive event IDs from hashes", version)
	}
	if len(hash) != sha256.Size {
		return "", fmt.Errorf("reference hash is %d bytes, not %d", len(hash), sha256.Size)
	}
	return eventIDFromHash(version, hash), nil
}

// CheckContentHash reports whether the event's hashes.sha256 matches its content hash. A
// mismatch means the event must be redacted before it is processed further, not rejected
// (server-server-api.md "Validating hashes and signatures on received events").
func (e *Event) CheckContentHash() bool {
	tree := e.tree()
	h := tree.get("hashes").get("sha256")
	if h == nil || h.kind != kindString { // only a damaged stored event (ParseStored) lacks it
		return false
	}
	want, ok := decodeBase64(h.str)
	if !ok {
		return false
	}
	got := contentHash(&tree)
	return string(want) == string(got[:])
}

func parseEventObject(version id.RoomVersion, raw []byte) (*value, error) {
	if err := checkVersion(version); err != nil {
		return nil, err
	}
	tree, err := parseJSON(raw, numModeOf(version))
	if err != nil {
		return nil, err
	}
	if tree.kind != kindObject {
		return nil, fmt.Errorf("%w: not a JSON object", ErrInvalidEvent)
	}
	return normalise(version, &tree), nil
}

// contentHash is server-server-api.md "Calculating the content hash for an event".
func contentHash(tree *value) [32]byte {
	t := tree.without("unsigned", "signatures", "hashes")
	return sha256.Sum256(t.encode())
}

// redactedSigningBytes is the canonical JSON of the redacted event without signatures and
// unsigned: what the reference hash covers (server-server-api.md "Calculating the reference
// hash for an event") and what the signatures sign (server-server-api.md "Adding hashes and
// signatures to outgoing events", appendices.md "Signing Details").
func redactedSigningBytes(version id.RoomVersion, tree *value) []byte {
	r := redactTree(version, tree, true)
	return appendCanonical(make([]byte, 0, 512), &r)
}

// decodeBase64 reads unpadded base64, also accepting padding as decoders should
// (appendices.md "Unpadded Base64").
func decodeBase64(s string) ([]byte, bool) {
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
	return b, err == nil
}

// b64 encodes as unpadded base64 (appendices.md "Unpadded Base64").
func b64(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }
