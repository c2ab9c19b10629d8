package clientapi

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/userapi"
)

// Auth types of the user-interactive auth stages Lattice offers.
const (
	stageDummy             = "m.login.dummy"
	stagePassword          = "m.login.password"
	stageRegistrationToken = "m.login.registration_token"
)

// uiaSessionLifetime bounds how long a client may take between the stages of one operation.
const uiaSessionLifetime = 30 * time.Minute

// uiaState is the persisted state of one user-interactive auth session.
type uiaState struct {
	Purpose   string     `json:"purpose"` // the operation it authorises; never reusable for another
	UserID    id.UserID  `json:"user_id,omitempty"`
	Flows     [][]string `json:"flows"`
	Completed []string   `json:"completed"`
	// RegistrationToken is the token a registration used, counted when the account is made.
	RegistrationToken string `json:"registration_token,omitempty"`
	// Operation is the method and path of the request that began the session: a session
	// never authorises a different request, such as deleting another device.
	Operation string `json:"operation,omitempty"`
	// Params are the first request's parameters besides auth, for operations whose later
	// requests may carry auth alone (registration).
	Params json.RawMessage `json:"params,omitempty"`
	// Result is the user a completed registration created, so that the same request
	// repeated with the session answers for that user again instead of failing.
	Result id.UserID `json:"result,omitempty"`

	id string // the session ID
}

// stageFailure is a stage failure that ends the request with its error instead of a 401
// that invites another try, such as credentials of another user than the request's.
type stageFailure struct{ err *httpapi.Error }

func (f *stageFailure) Error() string { return f.err.Error() }

// authDict is the "auth" parameter of a request (client-server API, "User-Interactive
// Authentication API").
type authDict struct {
	Type       string          `json:"type"`
	Session    string          `json:"session"`
	Password   string          `json:"password"`
	Identifier json.RawMessage `json:"identifier"`
	User       string          `json:"user"` // deprecated form of identifier
	Token      string          `json:"token"`
}

// uia carries out one round of user-interactive auth for an operation (client-server API,
// "User-Interactive Authentication API"). userID is who must authenticate ("" for registration).
// It returns the completed session state, or nil after answering the request itself: 401 with
// the flows (and an error when a stage failed), or another Matrix error.
func (a *API) uia(w http.ResponseWriter, r *http.Request, raw json.RawMessage, purpose string, userID id.UserID, flows [][]string) (*uiaState, error) {
	return a.uiaKeep(w, r, raw, purpose, userID, flows, nil)
}

// uiaKeep is uia for an operation whose session outlives its completion (registration): it
// stores params with a new session, and the caller saves or deletes the completed session
// (saveUIA, or it expires).
func (a *API) uiaKeep(w http.ResponseWriter, r *http.Request, raw json.RawMessage, purpose string, userID id.UserID, flows [][]string, params json.RawMessage) (*uiaState, error) {
	ctx := r.Context()
	operation := r.Method + " " + r.URL.Path
	var auth authDict
	if len(raw) > 0 && string(raw) != "null" {
		if err := json.Unmarshal(raw, &auth); err != nil {
			return nil, httpapi.BadJSON("auth must be an object")
		}
	}
	var st *uiaState
	sessionID := auth.Session
	if sessionID != "" {
		data, err := a.users.UIASession(ctx, sessionID)
		if err != nil && !errors.Is(err, userapi.ErrNotFound) {
			return nil, err
		}
		if err == nil {
			st = &uiaState{}
			if err := json.Unmarshal(data, st); err != nil {
				return nil, err
			}
			// A session never authorises another operation or user (client-server API,
			// "User-interactive authentication API": the request must stay the same).
			if st.Purpose != purpose || st.UserID != userID || (st.Operation != "" && st.Operation != operation) {
				return nil, httpapi.Forbidden("The session was begun for another request")
			}
		}
	}
	if st == nil {
		sessionID = newSessionID()
		st = &uiaState{Purpose: purpose, UserID: userID, Flows: flows, Completed: []string{}, Operation: operation, Params: params}
	}
	st.id = sessionID

	var stageErr *httpapi.Error
	// A completed stage retried is not an error: the answer is the 401 with "completed" again.
	if auth.Type != "" && !slices.Contains(st.Completed, auth.Type) {
		if !st.nextStageAllowed(auth.Type) {
			stageErr = httpapi.NewError(http.StatusUnauthorized, "M_UNRECOGNIZED", "Stage %s is not the next stage of any offered flow", auth.Type)
		} else if err := a.runStage(r, st, &auth); err != nil {
			var e *httpapi.Error
			if f := (*stageFailure)(nil); errors.As(err, &f) {
				return nil, f.err
			}
			if !errors.As(err, &e) {
				return nil, err
			}
			stageErr = e
		} else {
			st.Completed = append(st.Completed, auth.Type)
		}
	}
	if st.done() {
		if params != nil {
			return st, a.saveUIA(ctx, st)
		}
		if err := a.users.DeleteUIASession(ctx, sessionID); err != nil {
			return nil, err
		}
		return st, nil
	}
	if err := a.saveUIA(ctx, st); err != nil {
		return nil, err
	}
	body := map[string]any{"flows": flowsJSON(st.Flows), "params": map[string]any{}, "session": sessionID, "completed": st.Completed}
	if stageErr != nil {
		body["errcode"], body["error"] = stageErr.Code, stageErr.Message
	}
	httpapi.WriteJSON(w, http.StatusUnauthorized, body)
	return nil, nil
}

// saveUIA stores a session's state.
func (a *API) saveUIA(ctx context.Context, st *uiaState) error {
	state, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return a.users.SaveUIASession(ctx, st.id, state, time.Now().Add(uiaSessionLifetime))
}

// loadUIA returns the state of a session, or nil when there is none.
func (a *API) loadUIA(ctx context.Context, sessionID string) (*uiaState, error) {
	if sessionID == "" {
		return nil, nil
	}
	data, err := a.users.UIASession(ctx, sessionID)
	if errors.Is(err, userapi.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	st := &uiaState{id: sessionID}
	if err := json.Unmarshal(data, st); err != nil {
		return nil, err
	}
	return st, nil
}

// runStage checks one stage's credentials.
func (a *API) runStage(r *http.Request, st *uiaState, auth *authDict) error {
	switch auth.Type {
	case stageDummy:
		return nil
	case stagePassword:
		user, err := a.loginUser(r, auth.Identifier, auth.User)
		if err != nil {
			return err
		}
		if user != st.UserID {
			return &stageFailure{httpapi.Forbidden("Authenticate as the user the request is for")}
		}
		if _, err := a.users.CheckPassword(r.Context(), user, auth.Password); err != nil {
			if errors.Is(err, userapi.ErrWrongPassword) || errors.Is(err, userapi.ErrNotFound) || errors.Is(err, userapi.ErrDeactivated) {
				return httpapi.Forbidden("Invalid password")
			}
			return err
		}
		return nil
	case stageRegistrationToken:
		if auth.Token == "" {
			return httpapi.MissingParam("token is required")
		}
		t, err := a.users.GetRegistrationToken(r.Context(), auth.Token)
		if errors.Is(err, userapi.ErrNotFound) || (err == nil && !t.Valid(time.Now())) {
			return httpapi.Forbidden("Invalid registration token")
		} else if err != nil {
			return err
		}
		st.RegistrationToken = auth.Token
		return nil
	}
	return httpapi.NewError(http.StatusUnauthorized, "M_UNRECOGNIZED", "Unknown auth type %s", auth.Type)
}

// nextStageAllowed reports whether typ continues some flow from the stages completed so far, in
// order, as the spec demands.
func (st *uiaState) nextStageAllowed(typ string) bool {
	for _, f := range st.Flows {
		n := len(st.Completed)
		if n < len(f) && slices.Equal(f[:n], st.Completed) && f[n] == typ {
			return true
		}
	}
	return false
}

func (st *uiaState) done() bool {
	for _, f := range st.Flows {
		if slices.Equal(f, st.Completed) {
			return true
		}
	}
	return false
}

func flowsJSON(flows [][]string) []map[string][]string {
	out := make([]map[string][]string, len(flows))
	for i, f := range flows {
		out[i] = map[string][]string{"stages": f}
	}
	return out
}

func newSessionID() string {
	b := make([]byte, 18)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
