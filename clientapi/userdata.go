package clientapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/gorilla/mux"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
)

// registerUserDataRoutes adds profile, account data, tag, filter and capabilities routes.
func (a *API) registerUserDataRoutes(r *mux.Router) {
	// Profiles (client-server API, "Profiles"). Look-ups need no access token (profile.yaml
	// declares no security for the GETs); changes do, and guests may change only their
	// display name ("Guest access"), which the handlers enforce.
	handle(r, "/profile/{userId}", httpapi.HandlerFunc(a.getProfile), http.MethodGet)
	handle(r, "/profile/{userId}/{keyName}", httpapi.HandlerFunc(a.getProfileField), http.MethodGet)
	handle(r, "/profile/{userId}/{keyName}", a.authed(a.setProfileField, guestsAllowed), http.MethodPut)
	handle(r, "/profile/{userId}/{keyName}", a.authed(a.deleteProfileField, guestsAllowed), http.MethodDelete)

	// Account data ("Client Config" module). Not on the guest list of the "Guest access" module.
	handle(r, "/user/{userId}/account_data/{type}", a.authed(a.getAccountData), http.MethodGet)
	handle(r, "/user/{userId}/account_data/{type}", a.authed(a.setAccountData), http.MethodPut)
	handle(r, "/user/{userId}/rooms/{roomId}/account_data/{type}", a.authed(a.getAccountData), http.MethodGet)
	handle(r, "/user/{userId}/rooms/{roomId}/account_data/{type}", a.authed(a.setAccountData), http.MethodPut)

	// Room tags ("Room Tagging" module), kept in the room account data event m.tag.
	handle(r, "/user/{userId}/rooms/{roomId}/tags", a.authed(a.getTags), http.MethodGet)
	handle(r, "/user/{userId}/rooms/{roomId}/tags/{tag}", a.authed(a.setTag), http.MethodPut)
	handle(r, "/user/{userId}/rooms/{roomId}/tags/{tag}", a.authed(a.deleteTag), http.MethodDelete)

	// Filters ("Filtering").
	handle(r, "/user/{userId}/filter", a.authed(a.createFilter), http.MethodPost)
	handle(r, "/user/{userId}/filter/{filterId}", a.authed(a.getFilter), http.MethodGet)

	// Capabilities ("Capabilities negotiation"). Guests may ask: the answer tells them what
	// they may not do.
	handle(r, "/capabilities", a.authed(a.capabilities, guestsAllowed), http.MethodGet)
}

// maxIDLength is the longest user ID, room ID, event type or tag name we accept, in bytes: the
// spec's limit for identifiers (appendices, "Identifier Grammar") and tag names ("Room Tagging").
// It also keeps path parameters within what database indexes take.
const maxIDLength = 255

// validPathString reports whether a path parameter can be stored and compared as text: valid
// UTF-8 without NUL (PostgreSQL refuses both in text columns), at most maxIDLength bytes.
func validPathString(s string) bool {
	return s != "" && len(s) <= maxIDLength && utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// validUserID reports whether s is a user ID (appendices, "User Identifiers"), accepting the
// historical localparts that servers MUST still accept: "@", a localpart without ':' or NUL,
// ':' and a valid server name, at most 255 bytes.
func validUserID(s string) bool {
	if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
		return false
	}
	_, _, err := id.UserID(s).ParseAndValidateRelaxed()
	return err == nil
}

// validRoomID reports whether s is a room ID (appendices, "Room IDs"): "!opaque:server" for room
// versions with a domain, or "!" followed by the 43-character URL-safe unpadded base64 hash of
// the create event for versions without one (room version 12). At most 255 bytes.
func validRoomID(s string) bool {
	if !validPathString(s) || s[0] != '!' {
		return false
	}
	local, server, hasDomain := strings.Cut(s[1:], ":")
	if hasDomain {
		return local != "" && id.ValidateServerName(server)
	}
	if len(local) != 43 {
		return false
	}
	for _, c := range []byte(local) {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// readObject reads a request body that must be a JSON object and returns it compacted, with
// M_NOT_JSON, M_BAD_JSON or M_TOO_LARGE for anything else.
func readObject(r *http.Request) (json.RawMessage, error) {
	var raw json.RawMessage
	if err := httpapi.ReadJSON(r, &raw); err != nil {
		return nil, err
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, httpapi.BadJSON("Request body must be a JSON object")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, httpapi.NotJSON("Request body is not valid JSON")
	}
	return buf.Bytes(), nil
}

// marshalStored encodes v for storage, without the HTML escaping of json.Marshal, so stored
// strings read back as the client sent them.
func marshalStored(v any) (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// writeEmpty answers 200 with an empty JSON object, the reply of most writes.
func writeEmpty(w http.ResponseWriter) {
	httpapi.WriteJSON(w, http.StatusOK, struct{}{})
}
