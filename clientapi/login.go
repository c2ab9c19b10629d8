package clientapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/internal/ratelimit"
	"github.com/latticehq/lattice/userapi"
)

// Login types (client-server API, "Login").
const (
	loginPassword   = "m.login.password"
	loginToken      = "m.login.token"
	loginAppService = "m.login.application_service"
)

// errBadCredentials is the one answer for an unknown user and a wrong password alike, so a login
// form does not reveal which accounts exist.
func errBadCredentials() error { return httpapi.Forbidden("Invalid username or password") }

// limit takes a token from l for key, answering 429 M_LIMIT_EXCEEDED when none is left.
func limit(l *ratelimit.Limiter, key string) error {
	if ok, wait := l.Allow(key); !ok {
		return httpapi.LimitExceeded(wait, "Too many requests")
	}
	return nil
}

// loginFlows answers GET /login.
func (a *API) loginFlows(w http.ResponseWriter, r *http.Request) error {
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"flows": []map[string]any{
		{"type": loginPassword},
		{"type": loginToken, "get_login_token": true},
	}})
	return nil
}

type loginRequest struct {
	Type                     string          `json:"type"`
	Identifier               json.RawMessage `json:"identifier"`
	User                     string          `json:"user"`
	Password                 string          `json:"password"`
	Token                    string          `json:"token"`
	DeviceID                 id.DeviceID     `json:"device_id"`
	InitialDeviceDisplayName string          `json:"initial_device_display_name"`
	RefreshToken             bool            `json:"refresh_token"`
}

// login answers POST /login (client-server API, "POST /_matrix/client/v3/login").
func (a *API) login(w http.ResponseWriter, r *http.Request) error {
	if err := limit(a.loginIPLimit, userapi.ClientIP(r)); err != nil {
		return err
	}
	var req loginRequest
	if err := httpapi.ReadJSON(r, &req); err != nil {
		return err
	}
	var userID id.UserID
	switch req.Type {
	case loginPassword:
		u, err := a.loginUser(r, req.Identifier, req.User)
		if err != nil {
			return err
		}
		if err := limit(a.loginUserLimit, string(u)); err != nil {
			return err
		}
		if _, err := a.users.CheckPassword(r.Context(), u, req.Password); err != nil {
			switch {
			case errors.Is(err, userapi.ErrDeactivated):
				return httpapi.NewError(http.StatusForbidden, "M_USER_DEACTIVATED", "This account has been deactivated")
			case errors.Is(err, userapi.ErrWrongPassword), errors.Is(err, userapi.ErrNotFound):
				return errBadCredentials()
			}
			return err
		}
		userID = u
	case loginToken:
		if req.Token == "" {
			return httpapi.MissingParam("token is required")
		}
		u, err := a.users.ConsumeLoginToken(r.Context(), req.Token)
		if errors.Is(err, userapi.ErrUnknownToken) {
			return httpapi.Forbidden("Invalid or expired login token")
		} else if err != nil {
			return err
		}
		userID = u
	case loginAppService:
		// Application services are configured by the appservice component, which is not in
		// this build; no token can be an appservice's yet.
		return httpapi.UnknownToken(false, "No application services are registered")
	case "":
		return httpapi.MissingParam("type is required")
	default:
		return httpapi.NewError(http.StatusBadRequest, "M_UNKNOWN", "Unknown login type %s", req.Type)
	}
	acc, err := a.users.Account(r.Context(), userID)
	if err != nil {
		return err
	}
	if acc.Deactivated {
		return httpapi.NewError(http.StatusForbidden, "M_USER_DEACTIVATED", "This account has been deactivated")
	}
	return a.answerLogin(w, r, userID, req.DeviceID, req.InitialDeviceDisplayName, req.RefreshToken)
}

// answerLogin creates the device of a login or registration and answers with its credentials.
func (a *API) answerLogin(w http.ResponseWriter, r *http.Request, userID id.UserID, deviceID id.DeviceID, name string, refresh bool) error {
	dev, tokens, err := a.users.CreateDevice(r.Context(), userapi.NewDevice{
		UserID: userID, DeviceID: deviceID, DisplayName: name,
		IP: userapi.ClientIP(r), UserAgent: r.UserAgent(), WithRefresh: refresh,
	})
	if err != nil {
		return err
	}
	body := map[string]any{
		"user_id":      userID,
		"access_token": tokens.AccessToken,
		"device_id":    dev.DeviceID,
		"home_server":  a.cfg.ServerName, // deprecated, still read by older clients
	}
	if tokens.RefreshToken != "" {
		body["refresh_token"] = tokens.RefreshToken
		body["expires_in_ms"] = tokens.ExpiresIn.Milliseconds()
	}
	if a.cfg.WellKnown.ClientBaseURL != "" {
		body["well_known"] = map[string]any{"m.homeserver": map[string]string{"base_url": a.cfg.WellKnown.ClientBaseURL}}
	}
	httpapi.WriteJSON(w, http.StatusOK, body)
	return nil
}

// loginUser resolves the local user a login or a password stage names: an m.id.user identifier
// (a localpart or a full user ID) or the deprecated top-level "user" (client-server API,
// "Identifier types").
func (a *API) loginUser(r *http.Request, identifier json.RawMessage, user string) (id.UserID, error) {
	if len(identifier) > 0 && string(identifier) != "null" {
		var ident struct {
			Type string `json:"type"`
			User string `json:"user"`
		}
		if err := json.Unmarshal(identifier, &ident); err != nil {
			return "", httpapi.BadJSON("identifier must be an object")
		}
		switch ident.Type {
		case "m.id.user":
			user = ident.User
		case "m.id.thirdparty", "m.id.phone":
			return "", httpapi.NewError(http.StatusBadRequest, "M_UNRECOGNIZED", "This server does not support logging in with a third-party identifier")
		default:
			return "", httpapi.NewError(http.StatusBadRequest, "M_UNKNOWN", "Unknown identifier type %q", ident.Type)
		}
	}
	if user == "" {
		return "", httpapi.MissingParam("identifier.user is required")
	}
	localpart := user
	if strings.HasPrefix(user, "@") {
		lp, server, err := id.UserID(user).Parse()
		if err != nil || server != a.cfg.ServerName {
			return "", errBadCredentials()
		}
		localpart = lp
	}
	acc, err := a.users.LookupLocalpart(r.Context(), localpart)
	if errors.Is(err, userapi.ErrNotFound) {
		return "", errBadCredentials()
	} else if err != nil {
		return "", err
	}
	return acc.UserID, nil
}

// getLoginToken answers POST /login/get_token (spec v1.7), behind user-interactive auth.
func (a *API) getLoginToken(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	var req struct {
		Auth json.RawMessage `json:"auth"`
	}
	if err := readOptionalJSON(r, &req); err != nil {
		return err
	}
	st, err := a.uia(w, r, req.Auth, "get_login_token", dev.UserID, [][]string{{stagePassword}})
	if st == nil {
		return err
	}
	token, ttl, err := a.users.CreateLoginToken(r.Context(), dev.UserID)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"login_token": token, "expires_in_ms": ttl.Milliseconds()})
	return nil
}

// refresh answers POST /refresh (spec v1.3, "Refreshing access tokens").
func (a *API) refresh(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := httpapi.ReadJSON(r, &req); err != nil {
		return err
	}
	if req.RefreshToken == "" {
		return httpapi.MissingParam("refresh_token is required")
	}
	tokens, err := a.users.Refresh(r.Context(), req.RefreshToken)
	if errors.Is(err, userapi.ErrUnknownToken) || errors.Is(err, userapi.ErrTokenExpired) {
		return httpapi.UnknownToken(false, "Unknown or expired refresh token")
	} else if err != nil {
		return err
	}
	body := map[string]any{"access_token": tokens.AccessToken, "refresh_token": tokens.RefreshToken}
	if tokens.ExpiresIn > 0 {
		body["expires_in_ms"] = tokens.ExpiresIn.Milliseconds()
	}
	httpapi.WriteJSON(w, http.StatusOK, body)
	return nil
}

// logout answers POST /logout: the device and its tokens go.
func (a *API) logout(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	if err := a.users.DeleteDevices(r.Context(), dev.UserID, []id.DeviceID{dev.DeviceID}); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

// logoutAll answers POST /logout/all: every device of the user goes.
func (a *API) logoutAll(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	if err := a.users.DeleteAllDevices(r.Context(), dev.UserID, ""); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

// whoami answers GET /account/whoami.
func (a *API) whoami(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"user_id": dev.UserID, "device_id": dev.DeviceID, "is_guest": dev.IsGuest})
	return nil
}

// readOptionalJSON reads a JSON body that may be absent, as for endpoints whose every field is
// optional and whose clients often send no body at all.
func readOptionalJSON(r *http.Request, dst any) error {
	if r.ContentLength == 0 {
		return nil
	}
	return httpapi.ReadJSON(r, dst)
}
