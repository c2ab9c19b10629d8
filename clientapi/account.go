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

const (
	get  = http.MethodGet
	post = http.MethodPost
	put  = http.MethodPut
	del  = http.MethodDelete
)

// registerAccountRoutes adds registration, login, logout, token, device and account routes.
func (a *API) registerAccountRoutes(r *mux.Router) {
	h := func(f httpapi.HandlerFunc) http.Handler { return f }

	handle(r, "/register", h(a.register), post)
	handle(r, "/register/available", h(a.registerAvailable), get)
	handleV1(r, "/register/m.login.registration_token/validity", h(a.tokenValidity), get)
	handle(r, "/login", h(a.loginFlows), get)
	handle(r, "/login", h(a.login), post)
	handleV1(r, "/login/get_token", a.authed(a.getLoginToken), post)
	handle(r, "/refresh", h(a.refresh), post)
	handle(r, "/logout", a.authed(a.logout, guestsAllowed), post)
	handle(r, "/logout/all", a.authed(a.logoutAll, guestsAllowed), post)
	handle(r, "/account/whoami", a.authed(a.whoami, guestsAllowed), get)
	handle(r, "/account/password", a.authed(a.changePassword), post)
	handle(r, "/account/deactivate", a.authed(a.deactivate), post)

	handle(r, "/account/3pid", a.authed(a.threepids), get)
	for _, p := range []string{"/account/3pid", "/account/3pid/add", "/account/3pid/bind"} {
		handle(r, p, a.authed(a.threepidDenied), post)
	}
	for _, p := range []string{"/account/3pid/delete", "/account/3pid/unbind"} {
		handle(r, p, a.authed(a.threepidUnbind), post)
	}
	for _, p := range []string{"/account/3pid/email/requestToken", "/account/3pid/msisdn/requestToken", "/register/email/requestToken", "/register/msisdn/requestToken"} {
		handle(r, p, h(a.requestTokenDenied), post)
	}
	for _, p := range []string{"/account/password/email/requestToken", "/account/password/msisdn/requestToken"} {
		handle(r, p, h(a.passwordResetDenied), post)
	}

	handle(r, "/devices", a.authed(a.devices, guestsAllowed), get)
	handle(r, "/devices/{deviceId}", a.authed(a.device, guestsAllowed), get)
	handle(r, "/devices/{deviceId}", a.authed(a.renameDevice, guestsAllowed), put)
	handle(r, "/devices/{deviceId}", a.authed(a.deleteDevice), del)
	handle(r, "/delete_devices", a.authed(a.deleteDevices), post)

	a.registerAdminRoutes(r)
}

// changePassword answers POST /account/password, behind user-interactive auth.
func (a *API) changePassword(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	var req struct {
		Auth          json.RawMessage `json:"auth"`
		NewPassword   string          `json:"new_password"`
		LogoutDevices *bool           `json:"logout_devices"`
	}
	if err := httpapi.ReadJSON(r, &req); err != nil {
		return err
	}
	if req.NewPassword == "" {
		return httpapi.MissingParam("new_password is required")
	}
	st, err := a.uia(w, r, req.Auth, "change_password", dev.UserID, [][]string{{stagePassword}})
	if st == nil {
		return err
	}
	logout := req.LogoutDevices == nil || *req.LogoutDevices // the spec's default is true
	if err := a.users.SetPassword(r.Context(), dev.UserID, req.NewPassword, logout, dev.DeviceID); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

// deactivate answers POST /account/deactivate, behind user-interactive auth.
func (a *API) deactivate(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	var req struct {
		Auth  json.RawMessage `json:"auth"`
		Erase bool            `json:"erase"`
	}
	if err := readOptionalJSON(r, &req); err != nil {
		return err
	}
	st, err := a.uia(w, r, req.Auth, "deactivate", dev.UserID, [][]string{{stagePassword}})
	if st == nil {
		return err
	}
	if err := a.users.Deactivate(r.Context(), dev.UserID, req.Erase); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"id_server_unbind_result": "no-support"})
	return nil
}

// Third-party identifiers need an identity server, which Lattice does not talk to: an account
// has none, and adding one is refused with the spec's error.
func (a *API) threepids(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"threepids": []any{}})
	return nil
}

func (a *API) threepidDenied(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	return httpapi.NewError(http.StatusForbidden, "M_THREEPID_DENIED", "This server does not support third-party identifiers")
}

func (a *API) threepidUnbind(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	var req struct {
		Medium  string `json:"medium"`
		Address string `json:"address"`
	}
	if err := httpapi.ReadJSON(r, &req); err != nil {
		return err
	}
	if req.Medium == "" || req.Address == "" {
		return httpapi.MissingParam("medium and address are required")
	}
	// No account has a third-party identifier, so there is nothing to remove.
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"id_server_unbind_result": "no-support"})
	return nil
}

func (a *API) requestTokenDenied(w http.ResponseWriter, r *http.Request) error {
	return httpapi.NewError(http.StatusForbidden, "M_THREEPID_DENIED", "This server does not support third-party identifiers")
}

func (a *API) passwordResetDenied(w http.ResponseWriter, r *http.Request) error {
	return httpapi.NewError(http.StatusBadRequest, "M_THREEPID_NOT_FOUND", "No account has that third-party identifier")
}

// deviceJSON is a device as GET /devices shows it.
func deviceJSON(d *userapi.Device) map[string]any {
	out := map[string]any{"device_id": d.DeviceID}
	if d.DisplayName != "" {
		out["display_name"] = d.DisplayName
	}
	if d.LastSeenTS != 0 {
		out["last_seen_ts"] = d.LastSeenTS
		out["last_seen_ip"] = d.LastSeenIP
	}
	return out
}

// devices answers GET /devices.
func (a *API) devices(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	list, err := a.users.Devices(r.Context(), dev.UserID)
	if err != nil {
		return err
	}
	out := make([]map[string]any, len(list))
	for i := range list {
		out[i] = deviceJSON(&list[i])
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"devices": out})
	return nil
}

// device answers GET /devices/{deviceId}.
func (a *API) device(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	d, err := a.users.Device(r.Context(), dev.UserID, id.DeviceID(httpapi.Vars(r)["deviceId"]))
	if errors.Is(err, userapi.ErrNotFound) {
		return httpapi.NotFound("Unknown device")
	} else if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, deviceJSON(d))
	return nil
}

// renameDevice answers PUT /devices/{deviceId}.
func (a *API) renameDevice(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	var req struct {
		DisplayName *string `json:"display_name"`
	}
	if err := httpapi.ReadJSON(r, &req); err != nil {
		return err
	}
	deviceID := id.DeviceID(httpapi.Vars(r)["deviceId"])
	if req.DisplayName == nil {
		// Nothing to change, but an unknown device is still an error.
		if _, err := a.users.Device(r.Context(), dev.UserID, deviceID); errors.Is(err, userapi.ErrNotFound) {
			return httpapi.NotFound("Unknown device")
		} else if err != nil {
			return err
		}
	} else if err := a.users.RenameDevice(r.Context(), dev.UserID, deviceID, *req.DisplayName); errors.Is(err, userapi.ErrNotFound) {
		return httpapi.NotFound("Unknown device")
	} else if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

// deleteDevice answers DELETE /devices/{deviceId}, behind user-interactive auth.
func (a *API) deleteDevice(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	var req struct {
		Auth json.RawMessage `json:"auth"`
	}
	if err := readOptionalJSON(r, &req); err != nil {
		return err
	}
	return a.deleteDevicesUIA(w, r, dev, req.Auth, []id.DeviceID{id.DeviceID(httpapi.Vars(r)["deviceId"])})
}

// deleteDevices answers POST /delete_devices, behind user-interactive auth.
func (a *API) deleteDevices(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	var req struct {
		Auth    json.RawMessage `json:"auth"`
		Devices []id.DeviceID   `json:"devices"`
	}
	if err := httpapi.ReadJSON(r, &req); err != nil {
		return err
	}
	if req.Devices == nil {
		return httpapi.MissingParam("devices is required")
	}
	return a.deleteDevicesUIA(w, r, dev, req.Auth, req.Devices)
}

func (a *API) deleteDevicesUIA(w http.ResponseWriter, r *http.Request, dev *userapi.Device, auth json.RawMessage, ids []id.DeviceID) error {
	st, err := a.uia(w, r, auth, "delete_devices", dev.UserID, [][]string{{stagePassword}})
	if st == nil {
		return err
	}
	if err := a.users.DeleteDevices(r.Context(), dev.UserID, ids); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}
