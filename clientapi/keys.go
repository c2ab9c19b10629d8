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
	handle(r, "/keys/device_signing/upload", a.authed(a.uploadCrossSigningKeys), http.MethodPost)
	handle(r, "/keys/signatures/upload", a.authed(a.uploadSignatures), http.MethodPost)
	a.registerKeyBackupRoutes(r)
}

// keyError maps the user component's refusals of keys to Matrix errors.
func keyError(err error) error {
	switch {
	case errors.Is(err, userapi.ErrInvalidKeys):
		return httpapi.InvalidParam("%s", err.Error())
	case errors.Is(err, userapi.ErrInvalidSignature):
		return httpapi.NewError(http.StatusBadRequest, "M_INVALID_SIGNATURE", "%s", err.Error())
	case errors.Is(err, userapi.ErrNoMasterKey):
		return httpapi.MissingParam("No master signing key is available")
	case errors.Is(err, userapi.ErrKeyIDInUse):
		return httpapi.Forbidden("Key ID in use")
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
	users := make([]id.UserID, 0, len(want))
	for user := range want {
		users = append(users, user)
	}
	cs, err := a.users.QueryCrossSigningKeys(r.Context(), dev.UserID, users)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{
		"device_keys": keys, "failures": failures,
		"master_keys": cs.Master, "self_signing_keys": cs.SelfSigning, "user_signing_keys": cs.UserSigning,
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

// uploadCrossSigningKeys answers POST /keys/device_signing/upload, behind user-interactive auth
// unless the user has no master key yet or uploads exactly the keys stored (spec v1.11).
func (a *API) uploadCrossSigningKeys(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	var req struct {
		Auth        json.RawMessage `json:"auth"`
		Master      json.RawMessage `json:"master_key"`
		SelfSigning json.RawMessage `json:"self_signing_key"`
		UserSigning json.RawMessage `json:"user_signing_key"`
	}
	if err := httpapi.ReadJSON(r, &req); err != nil {
		return err
	}
	keys := map[string]json.RawMessage{}
	for typ, raw := range map[string]json.RawMessage{userapi.KeyMaster: req.Master, userapi.KeySelfSigning: req.SelfSigning, userapi.KeyUserSigning: req.UserSigning} {
		if len(raw) > 0 && string(raw) != "null" {
			keys[typ] = raw
		}
	}
	// Keys that would be refused are refused before the client is asked to authenticate.
	if err := a.users.CheckCrossSigningKeys(r.Context(), dev.UserID, keys); err != nil {
		return keyError(err)
	}
	same, hasMaster, err := a.users.SameCrossSigningKeys(r.Context(), dev.UserID, keys)
	if err != nil {
		return err
	}
	if hasMaster && !same {
		st, err := a.uia(w, r, req.Auth, "device_signing_upload", dev.UserID, [][]string{{stagePassword}})
		if st == nil {
			return err
		}
	}
	if err := a.users.UploadCrossSigningKeys(r.Context(), dev.UserID, keys); err != nil {
		return keyError(err)
	}
	httpapi.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

// uploadSignatures answers POST /keys/signatures/upload: each signed key is checked on its own,
// and the refused ones are listed under failures.
func (a *API) uploadSignatures(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	var req map[id.UserID]map[string]json.RawMessage
	if err := httpapi.ReadJSON(r, &req); err != nil {
		return err
	}
	failures, err := a.users.UploadSignatures(r.Context(), dev.UserID, req)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"failures": failures})
	return nil
}
