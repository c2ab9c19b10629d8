package presence

import (
	"errors"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/gorilla/mux"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/userapi"
)

// maxStatusBytes bounds a status message: it is copied into the syncs of everyone who shares a
// room with the user.
const maxStatusBytes = 2048

// Register adds the presence routes. Guests may not use them: presence is not among the
// endpoints of "Guest access".
func (t *Tracker) Register(r *mux.Router) {
	path := "/_matrix/client/{version:(?:r0|v3)}/presence/{userId}/status"
	r.Handle(path, t.authed(t.getStatus)).Methods(http.MethodGet)
	r.Handle(path, t.authed(t.putStatus)).Methods(http.MethodPut)
}

func (t *Tracker) authed(h func(http.ResponseWriter, *http.Request, *userapi.Device) error) http.Handler {
	return httpapi.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		dev, err := userapi.Authenticate(r, t.opts.Users, false)
		if err != nil {
			return err
		}
		return h(w, r, dev)
	})
}

// userParam returns the path's user ID, M_INVALID_PARAM when it is not one.
func userParam(r *http.Request) (id.UserID, error) {
	s := httpapi.Vars(r)["userId"]
	if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
		return "", httpapi.InvalidParam("Invalid user ID")
	}
	if _, _, err := id.UserID(s).ParseAndValidateRelaxed(); err != nil {
		return "", httpapi.InvalidParam("Invalid user ID %q", s)
	}
	return id.UserID(s), nil
}

// getStatus answers GET /presence/{userId}/status: 404 for an unknown local user, 403 for a
// user who shares no room with the caller. With presence disabled everyone is offline.
func (t *Tracker) getStatus(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	ctx := r.Context()
	target, err := userParam(r)
	if err != nil {
		return err
	}
	if target != dev.UserID {
		if t.isLocal(target) {
			if _, err := t.opts.Users.Account(ctx, target); errors.Is(err, userapi.ErrNotFound) {
				return httpapi.NotFound("Unknown user")
			} else if err != nil {
				return err
			}
		}
		shared, err := t.sharesRoom(ctx, dev.UserID, target)
		if err != nil {
			return err
		}
		if !shared {
			return httpapi.Forbidden("You are not allowed to see their presence")
		}
	}
	// Presence of remote users would come over federation, which does not carry it yet.
	if !t.opts.Enabled || !t.isLocal(target) {
		httpapi.WriteJSON(w, http.StatusOK, content{Presence: Offline})
		return nil
	}
	rec, err := t.peek(ctx, target)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, rec.content(t.nowMS()))
	return nil
}

// putStatus answers PUT /presence/{userId}/status, for the caller's own presence only.
func (t *Tracker) putStatus(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	target, err := userParam(r)
	if err != nil {
		return err
	}
	if target != dev.UserID {
		return httpapi.Forbidden("You cannot set the presence of another user")
	}
	var body struct {
		Presence  *string `json:"presence"`
		StatusMsg *string `json:"status_msg"`
	}
	if err := httpapi.ReadJSON(r, &body); err != nil {
		return err
	}
	switch {
	case body.Presence == nil:
		return httpapi.MissingParam("presence is required")
	case *body.Presence != Online && *body.Presence != Unavailable && *body.Presence != Offline:
		return httpapi.InvalidParam("presence must be online, unavailable or offline")
	case body.StatusMsg != nil && len(*body.StatusMsg) > maxStatusBytes:
		return httpapi.InvalidParam("status_msg is longer than %d bytes", maxStatusBytes)
	}
	if t.opts.Enabled {
		if err := t.set(r.Context(), dev.UserID, *body.Presence, body.StatusMsg); err != nil {
			return err
		}
	}
	httpapi.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}
