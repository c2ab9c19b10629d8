package clientapi

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/userapi"
)

// The admin API follows Synapse's (/_synapse/admin), which admin tools and test suites use.

// nonceLifetime bounds how long a shared-secret registration nonce may be used.
const nonceLifetime = time.Minute

// maxNonces bounds the memory of unused nonces; past it the oldest are forgotten.
const maxNonces = 10_000

// nonces are the single-use nonces of shared-secret registration.
type nonces struct {
	mu   sync.Mutex
	byID map[string]time.Time
}

func (n *nonces) issue() string {
	b := make([]byte, 16)
	rand.Read(b)
	nonce := hex.EncodeToString(b)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.byID == nil {
		n.byID = map[string]time.Time{}
	}
	now := time.Now()
	if len(n.byID) >= maxNonces {
		for k, exp := range n.byID {
			if now.After(exp) || len(n.byID) >= maxNonces {
				delete(n.byID, k)
			}
		}
	}
	n.byID[nonce] = now.Add(nonceLifetime)
	return nonce
}

// take consumes a nonce, reporting whether it was issued and is still fresh.
func (n *nonces) take(nonce string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	exp, ok := n.byID[nonce]
	delete(n.byID, nonce)
	return ok && time.Now().Before(exp)
}

func (a *API) registerAdminRoutes(r *mux.Router) {
	r.Handle("/_synapse/admin/v1/register", httpapi.HandlerFunc(a.sharedSecretNonce)).Methods(get)
	r.Handle("/_synapse/admin/v1/register", httpapi.HandlerFunc(a.sharedSecretRegister)).Methods(post)
	r.Handle("/_synapse/admin/v2/users", a.admin(a.adminListUsers)).Methods(get)
	r.Handle("/_synapse/admin/v2/users/{userId}", a.admin(a.adminGetUser)).Methods(get)
	r.Handle("/_synapse/admin/v2/users/{userId}", a.admin(a.adminPutUser)).Methods(put)
	a.registerTokenAdminRoutes(r)
	handle(r, "/admin/whois/{userId}", a.authed(a.whois), get)
}

// whois answers GET /admin/whois/{userId} (client-server API, "Server administration"): the
// user's devices and where they were last seen. Only the user themself and server admins
// may ask, as the spec allows.
func (a *API) whois(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	u, err := a.adminUserID(r)
	if err != nil {
		return err
	}
	if u != dev.UserID && !dev.IsAdmin {
		return httpapi.Forbidden("Only server admins may look up other users")
	}
	devices, err := a.users.Devices(r.Context(), u)
	if err != nil {
		return err
	}
	type connection struct {
		IP        string `json:"ip"`
		LastSeen  int64  `json:"last_seen"`
		UserAgent string `json:"user_agent"`
	}
	type session struct {
		Connections []connection `json:"connections"`
	}
	type deviceInfo struct {
		Sessions []session `json:"sessions"`
	}
	out := map[id.DeviceID]deviceInfo{}
	for _, d := range devices {
		conns := []connection{}
		if d.LastSeenTS > 0 {
			conns = append(conns, connection{IP: d.LastSeenIP, LastSeen: d.LastSeenTS, UserAgent: d.LastSeenUA})
		}
		out[d.DeviceID] = deviceInfo{Sessions: []session{{Connections: conns}}}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"user_id": u, "devices": out})
	return nil
}

// admin wraps h so that only server admins may call it.
func (a *API) admin(h AuthedFunc) http.Handler {
	return a.authed(func(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
		if !dev.IsAdmin {
			return httpapi.Forbidden("You are not a server admin")
		}
		return h(w, r, dev)
	})
}

func (a *API) sharedSecretNonce(w http.ResponseWriter, r *http.Request) error {
	if a.cfg.Registration.SharedSecret == "" {
		return httpapi.NewError(http.StatusBadRequest, "M_UNKNOWN", "Shared secret registration is not enabled")
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"nonce": a.nonces.issue()})
	return nil
}

// sharedSecretRegister creates an account whose request carries an HMAC-SHA1, keyed with the
// registration shared secret, of nonce, username, password, "admin"/"notadmin" and an optional
// user type, separated by NUL bytes.
func (a *API) sharedSecretRegister(w http.ResponseWriter, r *http.Request) error {
	secret := a.cfg.Registration.SharedSecret
	if secret == "" {
		return httpapi.NewError(http.StatusBadRequest, "M_UNKNOWN", "Shared secret registration is not enabled")
	}
	if err := limit(a.registerLimit, userapi.ClientIP(r)); err != nil {
		return err
	}
	var req struct {
		Nonce       string  `json:"nonce"`
		Username    string  `json:"username"`
		Password    string  `json:"password"`
		DisplayName string  `json:"displayname"`
		Admin       bool    `json:"admin"`
		UserType    *string `json:"user_type"`
		MAC         string  `json:"mac"`
	}
	if err := httpapi.ReadJSON(r, &req); err != nil {
		return err
	}
	if req.Nonce == "" || req.Username == "" || req.Password == "" || req.MAC == "" {
		return httpapi.MissingParam("nonce, username, password and mac are required")
	}
	if !a.nonces.take(req.Nonce) {
		return httpapi.NewError(http.StatusBadRequest, "M_UNKNOWN", "Unrecognised or expired nonce")
	}
	mac := hmac.New(sha1.New, []byte(secret))
	role := "notadmin"
	if req.Admin {
		role = "admin"
	}
	mac.Write([]byte(req.Nonce + "\x00" + req.Username + "\x00" + req.Password + "\x00" + role))
	if req.UserType != nil {
		mac.Write([]byte("\x00" + *req.UserType))
	}
	want := hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(want), []byte(req.MAC)) {
		return httpapi.Forbidden("HMAC incorrect")
	}
	// The MAC covers the name as sent; the account gets its lower-case form.
	localpart := strings.ToLower(req.Username)
	if err := validLocalpart(localpart, a.cfg.ServerName); err != nil {
		return err
	}
	acc, err := a.users.CreateAccount(r.Context(), userapi.NewAccount{
		Localpart: localpart, Password: req.Password, Admin: req.Admin, DisplayName: req.DisplayName,
	})
	if errors.Is(err, userapi.ErrUserInUse) {
		return userInUse()
	} else if err != nil {
		return err
	}
	return a.answerLogin(w, r, acc.UserID, "", "", false)
}

// adminUserJSON is a user as Synapse's admin API shows it.
func (a *API) adminUserJSON(r *http.Request, acc *userapi.Account) (map[string]any, error) {
	out := map[string]any{
		"name":          acc.UserID,
		"admin":         acc.IsAdmin,
		"deactivated":   acc.Deactivated,
		"is_guest":      acc.IsGuest,
		"creation_ts":   acc.CreatedAt.UnixMilli(),
		"user_type":     nil,
		"threepids":     []any{},
		"appservice_id": nil,
		"displayname":   nil,
		"avatar_url":    nil,
	}
	if acc.AppServiceID != "" {
		out["appservice_id"] = acc.AppServiceID
	}
	profile, err := a.users.Profile(r.Context(), acc.UserID)
	if err != nil && !errors.Is(err, userapi.ErrNotFound) {
		return nil, err
	}
	for _, k := range []string{"displayname", "avatar_url"} {
		if v, ok := profile[k]; ok {
			out[k] = v
		}
	}
	return out, nil
}

// adminUserID parses the {userId} of an admin path; it must be a local user.
func (a *API) adminUserID(r *http.Request) (id.UserID, error) {
	u := id.UserID(httpapi.Vars(r)["userId"])
	_, server, err := u.Parse()
	if err != nil {
		return "", httpapi.InvalidParam("Invalid user ID")
	}
	if server != a.cfg.ServerName {
		return "", httpapi.InvalidParam("Can only manage local users")
	}
	return u, nil
}

func (a *API) adminGetUser(w http.ResponseWriter, r *http.Request, _ *userapi.Device) error {
	u, err := a.adminUserID(r)
	if err != nil {
		return err
	}
	acc, err := a.users.Account(r.Context(), u)
	if errors.Is(err, userapi.ErrNotFound) {
		return httpapi.NotFound("User not found")
	} else if err != nil {
		return err
	}
	out, err := a.adminUserJSON(r, acc)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// adminPutUser creates or changes an account: 201 when created, 200 when changed.
func (a *API) adminPutUser(w http.ResponseWriter, r *http.Request, self *userapi.Device) error {
	u, err := a.adminUserID(r)
	if err != nil {
		return err
	}
	var req struct {
		Password      *string `json:"password"`
		LogoutDevices *bool   `json:"logout_devices"`
		DisplayName   *string `json:"displayname"`
		AvatarURL     *string `json:"avatar_url"`
		Admin         *bool   `json:"admin"`
		Deactivated   *bool   `json:"deactivated"`
	}
	if err := httpapi.ReadJSON(r, &req); err != nil {
		return err
	}
	ctx := r.Context()
	status := http.StatusOK
	acc, err := a.users.Account(ctx, u)
	switch {
	case errors.Is(err, userapi.ErrNotFound):
		localpart, _, _ := u.Parse()
		if err := validLocalpart(localpart, a.cfg.ServerName); err != nil {
			return err
		}
		na := userapi.NewAccount{Localpart: localpart}
		if req.Password != nil {
			na.Password = *req.Password
		}
		if req.Admin != nil {
			na.Admin = *req.Admin
		}
		if req.DisplayName != nil {
			na.DisplayName = *req.DisplayName
		}
		if acc, err = a.users.CreateAccount(ctx, na); errors.Is(err, userapi.ErrUserInUse) {
			return userInUse()
		} else if err != nil {
			return err
		}
		status = http.StatusCreated
	case err != nil:
		return err
	default:
		if req.Deactivated != nil && !*req.Deactivated && acc.Deactivated {
			return httpapi.InvalidParam("Reactivating accounts is not supported")
		}
		if req.Password != nil {
			logout := req.LogoutDevices == nil || *req.LogoutDevices
			if err := a.users.SetPassword(ctx, u, *req.Password, logout, ""); err != nil {
				return err
			}
		}
		if req.Admin != nil && *req.Admin != acc.IsAdmin {
			if u == self.UserID && !*req.Admin {
				return httpapi.InvalidParam("You may not demote yourself")
			}
			if err := a.users.SetAdmin(ctx, u, *req.Admin); err != nil {
				return err
			}
		}
		if req.DisplayName != nil {
			if err := a.users.SetProfileField(ctx, u, "displayname", jsonString(*req.DisplayName)); err != nil {
				return err
			}
		}
	}
	if req.AvatarURL != nil {
		if err := a.users.SetProfileField(ctx, u, "avatar_url", jsonString(*req.AvatarURL)); err != nil {
			return err
		}
	}
	if req.Deactivated != nil && *req.Deactivated && !acc.Deactivated {
		if err := a.users.Deactivate(ctx, u, false); err != nil {
			return err
		}
	}
	if acc, err = a.users.Account(ctx, u); err != nil {
		return err
	}
	out, err := a.adminUserJSON(r, acc)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, status, out)
	return nil
}

func (a *API) adminListUsers(w http.ResponseWriter, r *http.Request, _ *userapi.Device) error {
	q := r.URL.Query()
	from, err := queryInt(q.Get("from"), 0)
	if err != nil || from < 0 {
		return httpapi.InvalidParam("from must be a non-negative integer")
	}
	limit, err := queryInt(q.Get("limit"), 100)
	if err != nil || limit < 1 || limit > 1000 {
		return httpapi.InvalidParam("limit must be between 1 and 1000")
	}
	f := userapi.AccountFilter{From: from, Limit: limit, Name: q.Get("name"), Guests: q.Get("guests") != "false", Deactivated: q.Get("deactivated") == "true"}
	list, total, err := a.users.Accounts(r.Context(), f)
	if err != nil {
		return err
	}
	users := make([]map[string]any, len(list))
	for i := range list {
		if users[i], err = a.adminUserJSON(r, &list[i]); err != nil {
			return err
		}
	}
	out := map[string]any{"users": users, "total": total}
	if from+len(list) < total {
		out["next_token"] = itoa(from + len(list))
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}
