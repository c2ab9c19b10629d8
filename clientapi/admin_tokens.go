package clientapi

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/userapi"
)

const tokensPath = "/_synapse/admin/v1/registration_tokens"

func (a *API) registerTokenAdminRoutes(r *mux.Router) {
	r.Handle(tokensPath, a.admin(a.listTokens)).Methods(get)
	r.Handle(tokensPath+"/new", a.admin(a.newToken)).Methods(post)
	r.Handle(tokensPath+"/{token}", a.admin(a.getToken)).Methods(get)
	r.Handle(tokensPath+"/{token}", a.admin(a.updateToken)).Methods(put)
	r.Handle(tokensPath+"/{token}", a.admin(a.deleteToken)).Methods(del)
}

func tokenJSON(t *userapi.RegistrationToken) map[string]any {
	return map[string]any{"token": t.Token, "uses_allowed": t.UsesAllowed, "pending": t.Pending, "completed": t.Completed, "expiry_time": t.ExpiryTime}
}

// validTokenString checks a registration token: 1 to 64 characters of [A-Za-z0-9._~-].
func validTokenString(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '~' || c == '-') {
			return false
		}
	}
	return true
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request, _ *userapi.Device) error {
	var valid *bool
	switch v := r.URL.Query().Get("valid"); v {
	case "":
	case "true", "false":
		b := v == "true"
		valid = &b
	default:
		return httpapi.InvalidParam("valid must be true or false")
	}
	list, err := a.users.RegistrationTokens(r.Context(), valid)
	if err != nil {
		return err
	}
	out := make([]map[string]any, len(list))
	for i := range list {
		out[i] = tokenJSON(&list[i])
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"registration_tokens": out})
	return nil
}

func (a *API) newToken(w http.ResponseWriter, r *http.Request, _ *userapi.Device) error {
	var req struct {
		Token       *string `json:"token"`
		UsesAllowed *int    `json:"uses_allowed"`
		ExpiryTime  *int64  `json:"expiry_time"`
		Length      *int    `json:"length"`
	}
	if err := readOptionalJSON(r, &req); err != nil {
		return err
	}
	t := userapi.RegistrationToken{UsesAllowed: req.UsesAllowed, ExpiryTime: req.ExpiryTime}
	if req.Token != nil {
		if !validTokenString(*req.Token) {
			return httpapi.InvalidParam("token must be 1 to 64 characters of A-Z, a-z, 0-9, ., _, ~ and -")
		}
		t.Token = *req.Token
	} else {
		n := 16
		if req.Length != nil {
			n = *req.Length
		}
		if n < 1 || n > 64 {
			return httpapi.InvalidParam("length must be between 1 and 64")
		}
		t.Token = randomToken(n)
	}
	if err := checkTokenLimits(t.UsesAllowed, t.ExpiryTime); err != nil {
		return err
	}
	created, err := a.users.CreateRegistrationToken(r.Context(), t)
	if errors.Is(err, userapi.ErrExists) {
		return httpapi.InvalidParam("Token already exists")
	} else if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, tokenJSON(created))
	return nil
}

func checkTokenLimits(uses *int, expiry *int64) error {
	if uses != nil && *uses < 0 {
		return httpapi.InvalidParam("uses_allowed must be a non-negative integer or null")
	}
	if expiry != nil && *expiry < time.Now().UnixMilli() {
		return httpapi.InvalidParam("expiry_time must not be in the past")
	}
	return nil
}

// answerToken answers with a token, or 404 when the token does not exist.
func answerToken(w http.ResponseWriter, t *userapi.RegistrationToken, err error) error {
	if errors.Is(err, userapi.ErrNotFound) {
		return httpapi.NotFound("No such registration token")
	} else if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, tokenJSON(t))
	return nil
}

func (a *API) getToken(w http.ResponseWriter, r *http.Request, _ *userapi.Device) error {
	t, err := a.users.GetRegistrationToken(r.Context(), httpapi.Vars(r)["token"])
	return answerToken(w, t, err)
}

func (a *API) updateToken(w http.ResponseWriter, r *http.Request, _ *userapi.Device) error {
	// Absent keys keep their value and null clears it, so the body is read as raw fields.
	var req map[string]json.RawMessage
	if err := httpapi.ReadJSON(r, &req); err != nil {
		return err
	}
	var uses **int
	var expiry **int64
	if raw, ok := req["uses_allowed"]; ok {
		var v *int
		if err := json.Unmarshal(raw, &v); err != nil {
			return httpapi.InvalidParam("uses_allowed must be a non-negative integer or null")
		}
		uses = &v
	}
	if raw, ok := req["expiry_time"]; ok {
		var v *int64
		if err := json.Unmarshal(raw, &v); err != nil {
			return httpapi.InvalidParam("expiry_time must be an integer or null")
		}
		expiry = &v
	}
	var u *int
	var e *int64
	if uses != nil {
		u = *uses
	}
	if expiry != nil {
		e = *expiry
	}
	if err := checkTokenLimits(u, e); err != nil {
		return err
	}
	t, err := a.users.UpdateRegistrationToken(r.Context(), httpapi.Vars(r)["token"], uses, expiry)
	return answerToken(w, t, err)
}

func (a *API) deleteToken(w http.ResponseWriter, r *http.Request, _ *userapi.Device) error {
	if err := a.users.DeleteRegistrationToken(r.Context(), httpapi.Vars(r)["token"]); errors.Is(err, userapi.ErrNotFound) {
		return httpapi.NotFound("No such registration token")
	} else if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

// randomToken makes a registration token of n characters.
func randomToken(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// queryInt parses an integer query parameter, def when absent.
func queryInt(s string, def int) (int, error) {
	if s == "" {
		return def, nil
	}
	return strconv.Atoi(s)
}

func itoa(n int) string { return strconv.Itoa(n) }
