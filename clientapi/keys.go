package clientapi

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/gorilla/mux"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/userapi"
)

// registerKeyRoutes adds the end-to-end encryption key endpoints (end-to-end encryption module,
// "Key management API").
func (a *API) registerKeyRoutes(r *mux.Router) {
	handle(r, "/keys/upload", a.authed(a.uploadKeys), http.MethodPost)
	handle(r, "/keys/query", a.authed(a.queryKeys), http.MethodPost)
	handle(r, "/keys/claim", a.authed(a.claimKeys), http.MethodPost)
}

// keyError maps the user component's refusals of keys to Matrix errors.
func keyError(err error) error {
	switch {
	case errors.Is(err, userapi.ErrInvalidKeys):
		return httpapi.InvalidParam("%s", err.Error())
	case errors.Is(err, userapi.ErrNotFound):
		return httpapi.NotFound("Unknown device")
	}
	return err
}

// uploadKeys answers POST /keys/upload.
func (a *API) uploadKeys(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	var req struct {
		DeviceKeys   json.RawMessage            `json:"device_keys"`
		OneTimeKeys  map[string]json.RawMessage `json:"one_time_keys"`
		FallbackKeys map[string]json.RawMessage `json:"fallback_keys"`
	}
	if err := httpapi.ReadJSON(r, &req); err != nil {
		return err
	}
	counts, err := a.users.UploadKeys(r.Context(), dev.UserID, dev.DeviceID, userapi.KeyUpload{
		DeviceKeys: req.DeviceKeys, OneTimeKeys: req.OneTimeKeys, FallbackKeys: req.FallbackKeys,
	})
	if err != nil {
		return keyError(err)
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"one_time_key_counts": counts})
	return nil
}

// remoteFailure is the failures entry of a server Lattice cannot reach: it does not federate yet.
var remoteFailure = map[string]string{"errcode": "M_UNKNOWN", "error": "Federation is not available"}

// localUser reports whether user is a valid ID of this server; a remote server's name goes to
// failures, and an invalid ID is refused.
func (a *API) localUser(user id.UserID, failures map[string]any) (bool, error) {
	_, server, err := user.Parse()
	if err != nil {
		return false, httpapi.InvalidParam("Invalid user ID %q", user)
	}
	if server != a.cfg.ServerName {
		failures[server] = remoteFailure
		return false, nil
	}
	return true, nil
}

// queryKeys answers POST /keys/query: the device keys of local users. Keys of users on other
// servers are reported under failures until federation exists.
func (a *API) queryKeys(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	var req struct {
		DeviceKeys map[id.UserID][]id.DeviceID `json:"device_keys"`
	}
	if err := httpapi.ReadJSON(r, &req); err != nil {
		return err
	}
	if req.DeviceKeys == nil {
		return httpapi.MissingParam("device_keys is required")
	}
	failures := map[string]any{}
	want := map[id.UserID][]id.DeviceID{}
	for user, devices := range req.DeviceKeys {
		local, err := a.localUser(user, failures)
		if err != nil {
			return err
		}
		if local {
			want[user] = devices
		}
	}
	keys, err := a.users.QueryDeviceKeys(r.Context(), want)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{
		"device_keys": keys, "failures": failures,
		"master_keys": map[string]any{}, "self_signing_keys": map[string]any{}, "user_signing_keys": map[string]any{},
	})
	return nil
}

// claimKeys answers POST /keys/claim: a one-time key, else the fallback key, per device asked.
func (a *API) claimKeys(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	var req struct {
		OneTimeKeys map[id.UserID]map[id.DeviceID]string `json:"one_time_keys"`
	}
	if err := httpapi.ReadJSON(r, &req); err != nil {
		return err
	}
	if req.OneTimeKeys == nil {
		return httpapi.MissingParam("one_time_keys is required")
	}
	failures := map[string]any{}
	want := map[id.UserID]map[id.DeviceID]string{}
	for user, devices := range req.OneTimeKeys {
		local, err := a.localUser(user, failures)
		if err != nil {
			return err
		}
		if local {
			want[user] = devices
		}
	}
	keys, err := a.users.ClaimKeys(r.Context(), want)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"one_time_keys": keys, "failures": failures})
	return nil
}
