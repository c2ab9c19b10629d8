// Package pdu parses, builds, hashes, redacts, signs and verifies persistent data units
// (room events as they travel over federation) for room versions 1 to 12.
//
// Every algorithm follows the Matrix specification v1.19: canonical JSON (appendices.md
// "Canonical JSON"), signing JSON (appendices.md "Signing Details"), content and reference
// hashes and event signatures (server-server-api.md "Signing Events"), the event formats and
// redaction algorithms of each room version (rooms/vN.md). Room version features are taken
// from the methods of id.RoomVersion.
//
// An Event is immutable: Parse and Build check it once, and its accessors return slices that
// callers must treat as read-only.
package pdu
