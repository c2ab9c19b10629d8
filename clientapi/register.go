package clientapi

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/userapi"
)

type registerRequest struct {
	Auth                     json.RawMessage `json:"auth"`
	Username                 string          `json:"username"`
	Password                 string          `json:"password"`
	DeviceID                 id.DeviceID     `json:"device_id"`
	InitialDeviceDisplayName string          `json:"initial_device_display_name"`
	InhibitLogin             bool            `json:"inhibit_login"`
	GuestAccessToken         string          `json:"guest_access_token"`
	RefreshToken             bool            `json:"refresh_token"`
}

// registrationFlows are the UIA flows of POST /register: the dummy stage while registration is
// open, else an admin-issued registration token (spec v1.2).
func (a *API) registrationFlows() [][]string {
	if a.cfg.OpenRegistration() {
		return [][]string{{stageDummy}}
	}
	return [][]string{{stageRegistrationToken}}
}

// register answers POST /register (client-server API, "Account registration").
func (a *API) register(w http.ResponseWriter, r *http.Request) error {
	kind := r.URL.Query().Get("kind")
	if kind != "" && kind != "user" && kind != "guest" {
		return httpapi.InvalidParam("kind must be user or guest")
	}
	var body map[string]json.RawMessage
	if err := httpapi.ReadJSON(r, &body); err != nil {
		return err
	}
	var req registerRequest
	if err := remarshal(body, &req); err != nil {
		return err
	}
	if kind == "guest" {
		return a.registerGuest(w, r, req.InitialDeviceDisplayName)
	}
	var auth struct {
		Type    string `json:"type"`
		Session string `json:"session"`
	}
	_ = json.Unmarshal(req.Auth, &auth)
	if auth.Type == loginAppService {
		return httpapi.UnknownToken(false, "No application services are registered")
	}
	delete(body, "auth")
	params, err := json.Marshal(body)
	if err != nil {
		return err
	}
	// Later requests of a session may carry auth alone: the session remembers the first
	// request's parameters (as Synapse does, and clients rely on).
	prev, err := a.loadUIA(r.Context(), auth.Session)
	if err != nil {
		return err
	}
	if prev != nil && prev.Purpose == "register" {
		if len(body) == 0 && len(prev.Params) > 0 {
			var stored map[string]json.RawMessage
			if err := json.Unmarshal(prev.Params, &stored); err != nil {
				return err
			}
			stored["auth"] = req.Auth
			if err := remarshal(stored, &req); err != nil {
				return err
			}
			params = prev.Params
		}
		if prev.Result != "" {
			// The request repeated after it succeeded: the same account again.
			return a.answerRegistered(w, r, prev.Result, &req)
		}
	}
	// User IDs are lower-case; a wanted name in capitals gets its lower-case form (as
	// Synapse does), which clients see in the returned user_id.
	req.Username = strings.ToLower(req.Username)
	// The spec wants these checks before user-interactive auth, so a client learns early.
	guest, err := a.upgradingGuest(r, &req)
	if err != nil {
		return err
	}
	if req.Username != "" && guest == "" {
		if err := a.checkLocalpart(r, req.Username); err != nil {
			return err
		}
	}
	st, err := a.uiaKeep(w, r, req.Auth, "register", "", a.registrationFlows(), params)
	if st == nil {
		return err
	}
	if err := limit(a.registerLimit, userapi.ClientIP(r)); err != nil {
		return err
	}
	if st.RegistrationToken != "" {
		if err := a.users.UseRegistrationToken(r.Context(), st.RegistrationToken); errors.Is(err, userapi.ErrTokenExhausted) || errors.Is(err, userapi.ErrNotFound) {
			return httpapi.Forbidden("The registration token is no longer valid")
		} else if err != nil {
			return err
		}
	}
	if guest != "" {
		if err := a.users.UpgradeGuest(r.Context(), guest, req.Password); errors.Is(err, userapi.ErrNotFound) {
			return httpapi.Forbidden("The guest account can no longer be upgraded")
		} else if err != nil {
			return err
		}
		st.Result = guest
		if err := a.saveUIA(r.Context(), st); err != nil {
			return err
		}
		return a.answerRegistered(w, r, guest, &req)
	}
	localpart := req.Username
	if localpart == "" {
		localpart = randomLocalpart()
	}
	acc, err := a.users.CreateAccount(r.Context(), userapi.NewAccount{Localpart: localpart, Password: req.Password})
	if errors.Is(err, userapi.ErrUserInUse) {
		return userInUse()
	} else if err != nil {
		return err
	}
	st.Result = acc.UserID
	if err := a.saveUIA(r.Context(), st); err != nil {
		return err
	}
	return a.answerRegistered(w, r, acc.UserID, &req)
}

// upgradingGuest checks a registration's guest_access_token (client-server API, "Guest
// access": a guest upgrades their account through the ordinary registration, naming their
// own localpart) and returns the guest's user ID, or "" without a token.
func (a *API) upgradingGuest(r *http.Request, req *registerRequest) (id.UserID, error) {
	if req.GuestAccessToken == "" {
		return "", nil
	}
	dev, err := a.users.QueryAccessToken(r.Context(), req.GuestAccessToken)
	if errors.Is(err, userapi.ErrUnknownToken) || errors.Is(err, userapi.ErrTokenExpired) || (err == nil && !dev.IsGuest) {
		return "", httpapi.Forbidden("guest_access_token is not the access token of a guest")
	} else if err != nil {
		return "", err
	}
	if localpart, _, _ := dev.UserID.Parse(); localpart != req.Username {
		return "", httpapi.Forbidden("A guest can only upgrade their own account: username must be %q", localpart)
	}
	return dev.UserID, nil
}

// answerRegistered answers a successful registration: the user ID, and a login unless the
// client asked for none.
func (a *API) answerRegistered(w http.ResponseWriter, r *http.Request, user id.UserID, req *registerRequest) error {
	if req.InhibitLogin {
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"user_id": user, "home_server": a.cfg.ServerName})
		return nil
	}
	return a.answerLogin(w, r, user, req.DeviceID, req.InitialDeviceDisplayName, req.RefreshToken)
}

// remarshal decodes the fields of a JSON object into dst, as ReadJSON would.
func remarshal(fields map[string]json.RawMessage, dst any) error {
	data, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, dst); err != nil {
		return httpapi.BadJSON("Invalid request body: %v", err)
	}
	return nil
}

// registerGuest creates a guest account (client-server API, "Guest access"). Every body field
// but the device's display name is ignored, as the spec demands.
func (a *API) registerGuest(w http.ResponseWriter, r *http.Request, displayName string) error {
	if !a.cfg.Registration.Guests {
		return httpapi.Forbidden("Guest access is disabled on this server")
	}
	if err := limit(a.registerLimit, userapi.ClientIP(r)); err != nil {
		return err
	}
	for range 5 {
		acc, err := a.users.CreateAccount(r.Context(), userapi.NewAccount{Localpart: guestLocalpart(), Guest: true})
		if errors.Is(err, userapi.ErrUserInUse) {
			continue
		} else if err != nil {
			return err
		}
		return a.answerLogin(w, r, acc.UserID, "", displayName, false)
	}
	return fmt.Errorf("no free guest localpart after 5 tries")
}

// registerAvailable answers GET /register/available.
func (a *API) registerAvailable(w http.ResponseWriter, r *http.Request) error {
	username := r.URL.Query().Get("username")
	if username == "" {
		return httpapi.MissingParam("username is required")
	}
	if err := a.checkLocalpart(r, strings.ToLower(username)); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]bool{"available": true})
	return nil
}

// tokenValidity answers GET /register/m.login.registration_token/validity (spec v1.2).
func (a *API) tokenValidity(w http.ResponseWriter, r *http.Request) error {
	if err := limit(a.registerLimit, userapi.ClientIP(r)); err != nil {
		return err
	}
	token := r.URL.Query().Get("token")
	if token == "" {
		return httpapi.MissingParam("token is required")
	}
	t, err := a.users.GetRegistrationToken(r.Context(), token)
	if err != nil && !errors.Is(err, userapi.ErrNotFound) {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]bool{"valid": err == nil && t.Valid(time.Now())})
	return nil
}

// checkLocalpart refuses a wanted localpart that breaks the user ID grammar, is reserved or is
// taken (client-server API, "POST /register" errors; appendices, "User Identifiers").
func (a *API) checkLocalpart(r *http.Request, localpart string) error {
	if err := validLocalpart(localpart, a.cfg.ServerName); err != nil {
		return err
	}
	if _, err := a.users.LookupLocalpart(r.Context(), localpart); err == nil {
		return userInUse()
	} else if !errors.Is(err, userapi.ErrNotFound) {
		return err
	}
	return nil
}

func userInUse() error {
	return httpapi.NewError(http.StatusBadRequest, "M_USER_IN_USE", "That user ID is already taken")
}

// validLocalpart checks a localpart for a new account: the user ID grammar without the
// historical characters, at most 255 bytes as a full user ID, and not all digits, which are
// kept for guests.
func validLocalpart(localpart, serverName string) error {
	bad := func(format string, args ...any) error {
		return httpapi.NewError(http.StatusBadRequest, "M_INVALID_USERNAME", format, args...)
	}
	if localpart == "" {
		return bad("The username is empty")
	}
	if len("@"+localpart+":"+serverName) > 255 {
		return bad("The user ID would be longer than 255 bytes")
	}
	digits := true
	for _, c := range []byte(localpart) {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '=' || c == '_' || c == '/' || c == '+'
		if !ok {
			return bad("User IDs may only contain a-z, 0-9 and -.=_/+")
		}
		digits = digits && c >= '0' && c <= '9'
	}
	if digits {
		return bad("Numeric user IDs are reserved for guest accounts")
	}
	return nil
}

// guestLocalpart picks a random numeric localpart; numeric names are reserved for guests.
func guestLocalpart() string {
	n, _ := rand.Int(rand.Reader, big.NewInt(1e12))
	return fmt.Sprintf("%012d", n)
}

// randomLocalpart names an account registered without a username.
func randomLocalpart() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 12)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	b[0] = 'u' // never all digits
	return string(b)
}
