package clientapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"unicode/utf8"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/userapi"
)

// Profile field names the spec defines (client-server API, "Profiles"; profile.yaml).
const (
	profileDisplayName = "displayname"
	profileAvatarURL   = "avatar_url"
	profileTimeZone    = "m.tz"
)

const (
	// maxProfileKeyLength is the longest profile field name: M_KEY_TOO_LARGE beyond it (profile.yaml).
	maxProfileKeyLength = 255
	// maxProfileSize bounds the whole profile: it "MUST be under 64 KiB" (profile.yaml).
	maxProfileSize = 64 << 10
	// maxDisplayNameLength bounds display names, in characters. The spec lets servers limit
	// single fields; display names are copied into every m.room.member event of the user, so
	// they are kept to what a person's name needs.
	maxDisplayNameLength = 256
)

// errProfileTooLarge is the answer when a profile would reach 64 KiB.
func errProfileTooLarge() *httpapi.Error {
	return httpapi.NewError(http.StatusBadRequest, "M_PROFILE_TOO_LARGE", "The profile would exceed its maximum size of 64 KiB")
}

// checkProfileKey validates a {keyName} path parameter. profile.yaml: it MUST be displayname,
// avatar_url, m.tz or a custom field in the Common Namespaced Identifier Grammar; its pattern
// further asks for at least two dot-separated parts each starting with a letter. We follow the
// pattern, also allowing the '-' that the grammar allows. Keys longer than 255 bytes are
// M_KEY_TOO_LARGE when setting a field (tooLarge) and plain invalid otherwise.
func checkProfileKey(key string, tooLarge bool) error {
	if len(key) > maxProfileKeyLength {
		if tooLarge {
			return httpapi.NewError(http.StatusBadRequest, "M_KEY_TOO_LARGE", "Profile field names are limited to %d bytes", maxProfileKeyLength)
		}
		return httpapi.InvalidParam("Profile field names are limited to %d bytes", maxProfileKeyLength)
	}
	if !validProfileKey(key) {
		return httpapi.InvalidParam("Invalid profile field name %q: use displayname, avatar_url, m.tz or a namespaced name such as com.example.field", key)
	}
	return nil
}

// validProfileKey reports whether key may name a profile field (see checkProfileKey).
func validProfileKey(key string) bool {
	if key == profileDisplayName || key == profileAvatarURL {
		return true
	}
	parts, start := 0, true
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case start:
			if c < 'a' || c > 'z' {
				return false
			}
			start = false
			parts++
		case c == '.':
			start = true
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return parts >= 2 && !start
}

// localProfileUser validates the {userId} of a profile look-up and returns it if it is a local
// user's; remote users get 404.
func (a *API) localProfileUser(r *http.Request) (id.UserID, error) {
	s := httpapi.Vars(r)["userId"]
	if !validUserID(s) {
		return "", httpapi.InvalidParam("Invalid user ID %q", s)
	}
	userID := id.UserID(s)
	if userID.Homeserver() != a.cfg.ServerName {
		// Remote profiles need the federation profile query, which is not built yet: until it
		// is, we know nothing of them.
		return "", httpapi.NotFound("Profile not found")
	}
	return userID, nil
}

// profile loads a local user's profile, 404 if there is no such user.
func (a *API) profile(r *http.Request, userID id.UserID) (map[string]json.RawMessage, error) {
	fields, err := a.users.Profile(r.Context(), userID)
	if errors.Is(err, userapi.ErrNotFound) {
		return nil, httpapi.NotFound("Profile not found")
	} else if err != nil {
		return nil, err
	}
	if fields == nil {
		fields = map[string]json.RawMessage{}
	}
	return fields, nil
}

// getProfile answers GET /profile/{userId}: every field of the profile.
func (a *API) getProfile(w http.ResponseWriter, r *http.Request) error {
	userID, err := a.localProfileUser(r)
	if err != nil {
		return err
	}
	fields, err := a.profile(r, userID)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, fields)
	return nil
}

// getProfileField answers GET /profile/{userId}/{keyName}: {keyName: value}, 404 if unset.
func (a *API) getProfileField(w http.ResponseWriter, r *http.Request) error {
	userID, err := a.localProfileUser(r)
	if err != nil {
		return err
	}
	key := httpapi.Vars(r)["keyName"]
	if err := checkProfileKey(key, false); err != nil {
		return err
	}
	fields, err := a.profile(r, userID)
	if err != nil {
		return err
	}
	value, ok := fields[key]
	if !ok {
		return httpapi.NotFound("Profile field %s is not set", key)
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]json.RawMessage{key: value})
	return nil
}

// checkProfileChange runs the checks shared by setting and deleting a field: the caller's own
// profile, a valid key, and guests only touching their display name ("Guest access").
func checkProfileChange(r *http.Request, dev *userapi.Device, tooLarge bool) (string, error) {
	if err := ownUser(r, dev); err != nil {
		return "", err
	}
	key := httpapi.Vars(r)["keyName"]
	if err := checkProfileKey(key, tooLarge); err != nil {
		return "", err
	}
	if dev.IsGuest && key != profileDisplayName {
		return "", httpapi.NewError(http.StatusForbidden, "M_GUEST_ACCESS_FORBIDDEN", "Guests may only change their display name")
	}
	return key, nil
}

// setProfileField answers PUT /profile/{userId}/{keyName} with body {keyName: value}.
func (a *API) setProfileField(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	key, err := checkProfileChange(r, dev, true)
	if err != nil {
		return err
	}
	var body map[string]json.RawMessage
	if err := httpapi.ReadJSON(r, &body); err != nil {
		return err
	}
	raw, ok := body[key]
	if !ok {
		return httpapi.MissingParam("The request body must contain the field %q", key)
	}
	if len(body) != 1 {
		return httpapi.BadJSON("The request body must contain exactly one field, %q", key)
	}
	value, err := profileValue(key, raw)
	if err != nil {
		return err
	}
	// The whole profile is measured by the user component; a value that alone reaches the
	// limit need not get that far.
	if len(key)+len(value) >= maxProfileSize {
		return errProfileTooLarge()
	}
	err = a.users.SetProfileField(r.Context(), dev.UserID, key, value)
	switch {
	case errors.Is(err, userapi.ErrProfileTooLarge):
		return errProfileTooLarge()
	case errors.Is(err, userapi.ErrNotFound):
		return httpapi.NotFound("No such user")
	case err != nil:
		return err
	}
	if err := a.propagateProfile(r.Context(), dev, key); err != nil {
		return err
	}
	writeEmpty(w)
	return nil
}

// profileValue checks a field's value against the rules of profile.yaml and returns it as
// stored: display names and time zones are strings, avatar_url an MXC URI, custom fields any
// JSON value (null included: the spec asks servers that take null to store it).
func profileValue(key string, raw json.RawMessage) (json.RawMessage, error) {
	switch key {
	case profileDisplayName, profileAvatarURL, profileTimeZone:
		var s *string
		if err := json.Unmarshal(raw, &s); err != nil || s == nil {
			return nil, httpapi.BadJSON("%s must be a string", key)
		}
		if err := checkProfileString(key, *s); err != nil {
			return nil, err
		}
		return marshalStored(*s)
	default:
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return nil, httpapi.BadJSON("Invalid value for %s", key)
		}
		return buf.Bytes(), nil
	}
}

// checkProfileString validates the string value of a spec-defined field.
func checkProfileString(key, s string) error {
	switch key {
	case profileDisplayName:
		if utf8.RuneCountInString(s) > maxDisplayNameLength {
			return httpapi.BadJSON("displayname is longer than %d characters", maxDisplayNameLength)
		}
	case profileAvatarURL:
		// "" is what clients send to remove their avatar, so it is kept as "no avatar".
		if s == "" {
			return nil
		}
		uri, err := id.ParseContentURI(s)
		if err != nil || !id.ValidateServerName(uri.Homeserver) || !id.IsValidMediaID(uri.FileID) {
			return httpapi.BadJSON("avatar_url must be an mxc:// URI")
		}
	case profileTimeZone:
		// The spec leaves validating IANA names to servers and tells clients to expect
		// invalid ones; no time zone name is this long.
		if len(s) > maxProfileKeyLength {
			return httpapi.BadJSON("m.tz is not a time zone name")
		}
	}
	return nil
}

// deleteProfileField answers DELETE /profile/{userId}/{keyName}; deleting an unset field succeeds.
func (a *API) deleteProfileField(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	key, err := checkProfileChange(r, dev, false)
	if err != nil {
		return err
	}
	if err := a.users.DeleteProfileField(r.Context(), dev.UserID, key); err != nil && !errors.Is(err, userapi.ErrNotFound) {
		return err
	}
	if err := a.propagateProfile(r.Context(), dev, key); err != nil {
		return err
	}
	writeEmpty(w)
	return nil
}

// propagateProfile copies a displayname or avatar_url change into the user's member event in
// every room they are joined to (client-server API, "Events on Change of Profile
// Information"). A room that refuses the event is logged and skipped: the profile itself has
// changed.
func (a *API) propagateProfile(ctx context.Context, dev *userapi.Device, key string) error {
	if key != profileDisplayName && key != profileAvatarURL {
		return nil
	}
	rooms, err := a.rooms.RoomsOf(ctx, dev.UserID, "join")
	if err != nil {
		return err
	}
	content, err := a.memberContent(ctx, dev.UserID, "join", nil, nil)
	if err != nil {
		return err
	}
	sk := string(dev.UserID)
	for _, roomID := range rooms {
		// Not under the send rate limit: one profile change is one request, whatever the
		// number of rooms.
		_, err := a.rooms.Send(ctx, roomID, roomserver.Template{Type: "m.room.member", StateKey: &sk, Sender: dev.UserID, Content: content})
		if err != nil && a.log != nil {
			a.log.Warn("profile change not sent to room", "room_id", roomID, "user_id", dev.UserID, "error", err)
		}
	}
	return nil
}
