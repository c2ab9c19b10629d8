package pdu

import (
	"encoding/base64"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/id"
)

// maxIDSize is the byte limit on user, room and event IDs and on an event's type and
// state_key (appendices.md "Identifier Grammar"; client-server-api "Size limits").
const maxIDSize = 255

// checkUserID checks a user ID as events must accept it (appendices.md "User Identifiers",
// "Historical User IDs"): any localpart without ':' or NUL, even an empty one, and a valid
// server name, which is returned.
func checkUserID(s string) (server string, err error) {
	if len(s) > maxIDSize {
		return "", fmt.Errorf("%w: user ID is longer than %d bytes", ErrTooLarge, maxIDSize)
	}
	local, server, ok := strings.Cut(s, ":")
	if !ok || !strings.HasPrefix(local, "@") {
		return "", fmt.Errorf("%w: %q is not a user ID", ErrInvalidEvent, s)
	}
	if strings.IndexByte(local, 0) >= 0 {
		return "", fmt.Errorf("%w: user ID %q has NUL in its localpart", ErrInvalidEvent, s)
	}
	if !validServerName(server) {
		return "", fmt.Errorf("%w: user ID %q has an invalid server name", ErrInvalidEvent, s)
	}
	return server, nil
}

// checkRoomID checks a room ID (appendices.md "Room IDs"): from room version 12 it is the
// create event's ID with the sigil '!' (rooms/v12.md "Event format"), before that
// "!opaque_id:domain".
func checkRoomID(version id.RoomVersion, s string) error {
	if len(s) > maxIDSize {
		return fmt.Errorf("%w: room ID is longer than %d bytes", ErrTooLarge, maxIDSize)
	}
	if !strings.HasPrefix(s, "!") {
		return fmt.Errorf("%w: %q is not a room ID", ErrInvalidEvent, s)
	}
	if version.RoomIDIsCreateEventID() {
		if !isHashID(s[1:], base64.RawURLEncoding) {
			return fmt.Errorf("%w: %q is not a room ID of room version %s (the create event's reference hash)", ErrInvalidEvent, s, version)
		}
		return nil
	}
	local, server, ok := strings.Cut(s, ":")
	if !ok || server == "" || strings.IndexByte(local, 0) >= 0 {
		return fmt.Errorf("%w: %q is not a room ID of the form !opaque_id:domain", ErrInvalidEvent, s)
	}
	return nil
}

// isHashID reports whether s is the unpadded base64 of a SHA-256 hash in the given alphabet.
func isHashID(s string, enc *base64.Encoding) bool {
	if len(s) != 43 {
		return false
	}
	b, err := enc.Strict().DecodeString(s)
	return err == nil && len(b) == 32
}

// checkEventID checks an event ID named in an event (appendices.md "Event IDs"): '$', at most
// 255 bytes, and in room versions 1 and 2 (rooms/v1.md "Event IDs") a domain. Referenced IDs
// of later versions are not checked against the hash format: one that is not a hash can
// never be found, which the callers handle like any missing event.
func checkEventID(version id.RoomVersion, s string) error {
	if len(s) > maxIDSize {
		return fmt.Errorf("%w: event ID is longer than %d bytes", ErrTooLarge, maxIDSize)
	}
	if !strings.HasPrefix(s, "$") || len(s) < 2 {
		return fmt.Errorf("%w: %q is not an event ID", ErrInvalidEvent, s)
	}
	if version.EventIDFormat() == id.EventIDFormatCustom {
		if _, server, ok := strings.Cut(s, ":"); !ok || server == "" {
			return fmt.Errorf("%w: %q is not an event ID of the form $opaque_id:domain", ErrInvalidEvent, s)
		}
	}
	return nil
}

// serverOf returns what follows the first ':' of an identifier (appendices.md "Common
// Identifier Format").
func serverOf(s string) string {
	_, server, _ := strings.Cut(s, ":")
	return server
}

// checkVersion refuses room versions this package does not implement, including the empty
// version, which new input must never use.
func checkVersion(version id.RoomVersion) error {
	if version == id.RoomV0 || !version.IsKnown() {
		return fmt.Errorf("%w %q", id.ErrUnknownRoomVersion, string(version))
	}
	return nil
}

// eventIDFromHash encodes a reference hash as an event ID of the room version: standard
// unpadded base64 in version 3 (rooms/v3.md "Event IDs"), URL-safe from version 4
// (rooms/v4.md "Event IDs").
func eventIDFromHash(version id.RoomVersion, hash []byte) id.EventID {
	if version.EventIDFormat() == id.EventIDFormatBase64 {
		return id.EventID("$" + base64.RawStdEncoding.EncodeToString(hash))
	}
	return id.EventID("$" + base64.RawURLEncoding.EncodeToString(hash))
}

// validServerName checks the server name grammar (appendices.md "Server Name"):
// hostname [ ":" port ], where the hostname is an IPv4 literal, a bracketed IPv6 literal of
// 2 to 45 hex digits, ':' and '.', or a DNS name of 1 to 255 letters, digits, '-' and '.'.
// An IPv4 literal is also a DNS name by this grammar, so it needs no separate case.
func validServerName(s string) bool {
	if len(s) == 0 || len(s) > maxIDSize {
		return false
	}
	host := s
	if i := strings.LastIndexByte(s, ':'); i >= 0 && (s[0] != '[' || s[i-1] == ']') {
		port := s[i+1:]
		if len(port) == 0 || len(port) > 5 || strings.Trim(port, "0123456789") != "" {
			return false
		}
		host = s[:i]
	}
	if strings.HasPrefix(host, "[") {
		ip := strings.TrimSuffix(host[1:], "]")
		if len(ip) != len(host)-2 || len(ip) < 2 || len(ip) > 45 {
			return false
		}
		return strings.Trim(ip, "0123456789abcdefABCDEF:.") == ""
	}
	if len(host) == 0 {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
