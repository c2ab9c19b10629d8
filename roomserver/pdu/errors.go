package pdu

import "errors"

// The errors below are wrapped with a message saying what exactly is wrong, so that a
// federation peer's log shows it; match them with errors.Is. Unknown room versions are
// reported by wrapping id.ErrUnknownRoomVersion.
var (
	// ErrNotJSON means the input is not JSON at all (syntax error, invalid UTF-8): M_NOT_JSON.
	ErrNotJSON = errors.New("not JSON")
	// ErrBadJSON means the JSON breaks the canonical JSON rules the room version enforces
	// (floats, integers out of range, duplicate keys, lone surrogates): M_BAD_JSON.
	ErrBadJSON = errors.New("bad JSON")
	// ErrInvalidEvent means the event does not match its room version's event format: M_BAD_JSON.
	ErrInvalidEvent = errors.New("invalid event")
	// ErrTooLarge means the event or one of its fields is over its size limit: M_TOO_LARGE.
	ErrTooLarge = errors.New("event too large")
	// ErrSignature means a required signature is missing or does not verify.
	ErrSignature = errors.New("bad signature")
)
