package clientapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/gorilla/mux"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/userapi"
)

// maxPushRuleBody bounds a push rule's request body; rules clients make are well under 1 KiB.
const maxPushRuleBody = 64 << 10

// registerPushRuleRoutes adds the push rule routes (client-server API, "Push Rules: API";
// pushrules.yaml). Guests may not use them: they are not on the "Guest access" list.
func (a *API) registerPushRuleRoutes(r *mux.Router) {
	handle(r, "/pushrules/", a.authed(a.getPushRules), http.MethodGet)
	handle(r, "/pushrules/{scope}/", a.authed(a.getPushRuleset), http.MethodGet)
	handle(r, "/pushrules/{scope}/{kind}/", a.authed(a.getPushRuleKind), http.MethodGet)
	rule := "/pushrules/{scope}/{kind}/{ruleId}"
	handle(r, rule, a.authed(a.getPushRule), http.MethodGet)
	handle(r, rule, a.authed(a.putPushRule), http.MethodPut)
	handle(r, rule, a.authed(a.deletePushRule), http.MethodDelete)
	handle(r, rule+"/{attr:(?:enabled|actions)}", a.authed(a.getPushRuleAttr), http.MethodGet)
	handle(r, rule+"/{attr:(?:enabled|actions)}", a.authed(a.putPushRuleAttr), http.MethodPut)
	// Paths under /pushrules/ that name no ruleset, kind, rule or attribute are a client's
	// mistake in the parameters (400), as other servers answer, rather than unknown endpoints.
	bad := func(msg string) http.Handler {
		return a.authed(func(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
			return httpapi.InvalidParam("%s", msg)
		})
	}
	all := []string{http.MethodGet, http.MethodPut, http.MethodDelete}
	handle(r, "/pushrules/", bad("A push rule path needs a scope, a kind and a rule ID"), http.MethodPut, http.MethodDelete)
	handle(r, "/pushrules/{scope}", bad("A push rule path needs a kind after the scope (or a trailing slash for the ruleset)"), all...)
	handle(r, "/pushrules/{scope}/", bad("A push rule path needs a kind and a rule ID"), http.MethodPut, http.MethodDelete)
	handle(r, "/pushrules/{scope}/{kind}", bad("A push rule path needs a rule ID after the kind (or a trailing slash for its rules)"), all...)
	handle(r, "/pushrules/{scope}/{kind}/", bad("The rule ID must not be empty"), http.MethodPut, http.MethodDelete)
	handle(r, rule+"/{attr}", bad("Unknown push rule attribute: enabled or actions"), http.MethodGet, http.MethodPut)
}

// getPushRuleKind answers GET /pushrules/global/{kind}/: the rules of one kind.
func (a *API) getPushRuleKind(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	vars := httpapi.Vars(r)
	if err := pushScope(vars); err != nil {
		return err
	}
	kind := userapi.PushRuleKind(vars["kind"])
	if !kind.Valid() {
		return httpapi.InvalidParam("Unknown push rule kind %q: one of override, underride, sender, room, content", vars["kind"])
	}
	rs, err := a.users.PushRules(r.Context(), dev.UserID)
	if err != nil {
		return err
	}
	rules := rs.Rules(kind)
	if rules == nil {
		rules = []userapi.PushRule{}
	}
	httpapi.WriteJSON(w, http.StatusOK, rules)
	return nil
}

// getPushRules answers GET /pushrules/: every ruleset, of which global is the only one.
func (a *API) getPushRules(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	rs, err := a.users.PushRules(r.Context(), dev.UserID)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"global": rs})
	return nil
}

// getPushRuleset answers GET /pushrules/global/.
func (a *API) getPushRuleset(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	if err := pushScope(httpapi.Vars(r)); err != nil {
		return err
	}
	rs, err := a.users.PushRules(r.Context(), dev.UserID)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, rs)
	return nil
}

// pushScope checks the scope of the path. Since v1.12 the spec knows only the global ruleset
// (device-specific rules were removed), so any other scope is an invalid parameter.
func pushScope(vars map[string]string) error {
	if vars["scope"] != "global" {
		return httpapi.InvalidParam("Unknown push rule scope %q: only global exists", vars["scope"])
	}
	return nil
}

// pushRuleTarget checks the scope and kind of a rule's path and returns the kind and rule ID.
func pushRuleTarget(r *http.Request) (userapi.PushRuleKind, string, error) {
	vars := httpapi.Vars(r)
	if err := pushScope(vars); err != nil {
		return "", "", err
	}
	kind := userapi.PushRuleKind(vars["kind"])
	if !kind.Valid() {
		return "", "", httpapi.InvalidParam("Unknown push rule kind %q: one of override, underride, sender, room, content", vars["kind"])
	}
	return kind, vars["ruleId"], nil
}

// pushRuleError maps the user component's push rule errors to answers.
func pushRuleError(err error) error {
	switch {
	case errors.Is(err, userapi.ErrNotFound):
		return httpapi.NotFound("The push rule was not found.")
	case errors.Is(err, userapi.ErrPushRuleDefault):
		return httpapi.InvalidParam("Server-default push rules (IDs starting with '.') cannot be added, replaced or deleted; their enabled and actions can be changed")
	case errors.Is(err, userapi.ErrPushRulesTooLarge):
		return httpapi.TooLarge("The push ruleset would be too large")
	case errors.Is(err, userapi.ErrInvalidPushRule):
		return httpapi.BadJSON("Invalid push rule") // the handlers check rules first and say why
	}
	return err
}

// getPushRule answers GET /pushrules/global/{kind}/{ruleId}.
func (a *API) getPushRule(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	kind, ruleID, err := pushRuleTarget(r)
	if err != nil {
		return err
	}
	rule, err := a.users.PushRule(r.Context(), dev.UserID, kind, ruleID)
	if err != nil {
		return pushRuleError(err)
	}
	httpapi.WriteJSON(w, http.StatusOK, rule)
	return nil
}

// putPushRule answers PUT /pushrules/global/{kind}/{ruleId}: add or replace a user-defined rule.
func (a *API) putPushRule(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	kind, ruleID, err := pushRuleTarget(r)
	if err != nil {
		return err
	}
	if err := validNewRuleID(kind, ruleID); err != nil {
		return err
	}
	q := r.URL.Query()
	before, after := q.Get("before"), q.Get("after")
	for _, anchor := range []string{before, after} {
		if strings.HasPrefix(anchor, ".") {
			// "It is not possible to add a rule relative to a predefined server rule."
			return httpapi.InvalidParam("before and after cannot name a server-default rule")
		}
	}
	// The kind decides which keys matter: clients such as mautrix send "conditions": null and
	// "pattern": "" with every rule, so keys a kind does not use are not looked at.
	var body struct {
		Actions    json.RawMessage `json:"actions"`
		Conditions json.RawMessage `json:"conditions"`
		Pattern    json.RawMessage `json:"pattern"`
	}
	if err := httpapi.ReadJSONLimit(r, &body, maxPushRuleBody); err != nil {
		return err
	}
	rule := userapi.PushRule{RuleID: ruleID}
	if rule.Actions, err = pushActions(body.Actions); err != nil {
		return err
	}
	switch kind {
	case userapi.PushOverride, userapi.PushUnderride:
		if isAbsent(body.Conditions) {
			return httpapi.BadJSON("%s rules need conditions (an empty list matches every event)", kind)
		}
		if err := json.Unmarshal(body.Conditions, &rule.Conditions); err != nil {
			return httpapi.BadJSON("Invalid conditions: %v", err)
		}
	case userapi.PushContent:
		if isAbsent(body.Pattern) || json.Unmarshal(body.Pattern, &rule.Pattern) != nil {
			return httpapi.BadJSON("content rules need a pattern, a string")
		}
	}
	if _, err := rule.Normalize(kind); err != nil {
		return httpapi.BadJSON("%v", err)
	}
	err = a.users.PutPushRule(r.Context(), dev.UserID, kind, rule, before, after)
	if errors.Is(err, userapi.ErrPushRuleAnchor) {
		// The spec's own example of this answer is 400 M_UNKNOWN (pushrules.yaml).
		return httpapi.NewError(http.StatusBadRequest, "M_UNKNOWN", "before/after rule not found: %s", firstOf(before, after))
	}
	if err != nil {
		return pushRuleError(err)
	}
	writeEmpty(w)
	return nil
}

// validNewRuleID checks the rule ID of a PUT: not reserved for server-default rules ('.'), no
// slash or backslash (pushrules.yaml), and for sender rules the user they are about ("Push
// Rules"). Room rules are taken as given (clients have used aliases); one whose ID is no room's
// matches nothing.
func validNewRuleID(kind userapi.PushRuleKind, ruleID string) error {
	switch {
	case strings.HasPrefix(ruleID, "."):
		return httpapi.InvalidParam("Rule IDs starting with '.' are reserved for server-default rules")
	case strings.ContainsAny(ruleID, `/\`):
		return httpapi.InvalidParam("Rule IDs cannot contain '/' or '\\'")
	case !validPathString(ruleID):
		return httpapi.InvalidParam("Rule IDs are at most %d bytes of UTF-8 text", maxIDLength)
	case kind == userapi.PushSender && !validUserID(ruleID):
		return httpapi.InvalidParam("The rule ID of a sender rule is the ID of its user")
	}
	return nil
}

// isAbsent reports whether a body member was left out or null.
func isAbsent(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// pushActions decodes a required actions member.
func pushActions(raw json.RawMessage) ([]userapi.PushAction, error) {
	if isAbsent(raw) {
		return nil, httpapi.BadJSON("actions is required")
	}
	var actions []userapi.PushAction
	if err := json.Unmarshal(raw, &actions); err != nil {
		return nil, httpapi.BadJSON("Invalid actions: %v", err)
	}
	actions, err := userapi.NormalizePushActions(actions)
	if err != nil {
		return nil, httpapi.BadJSON("%v", err)
	}
	return actions, nil
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// deletePushRule answers DELETE /pushrules/global/{kind}/{ruleId}.
func (a *API) deletePushRule(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	kind, ruleID, err := pushRuleTarget(r)
	if err != nil {
		return err
	}
	if err := a.users.DeletePushRule(r.Context(), dev.UserID, kind, ruleID); err != nil {
		return pushRuleError(err)
	}
	writeEmpty(w)
	return nil
}

// getPushRuleAttr answers GET /pushrules/global/{kind}/{ruleId}/enabled and .../actions.
func (a *API) getPushRuleAttr(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	kind, ruleID, err := pushRuleTarget(r)
	if err != nil {
		return err
	}
	rule, err := a.users.PushRule(r.Context(), dev.UserID, kind, ruleID)
	if err != nil {
		return pushRuleError(err)
	}
	if httpapi.Vars(r)["attr"] == "enabled" {
		httpapi.WriteJSON(w, http.StatusOK, map[string]bool{"enabled": rule.Enabled})
		return nil
	}
	actions := rule.Actions
	if actions == nil {
		actions = []userapi.PushAction{}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"actions": actions})
	return nil
}

// putPushRuleAttr answers PUT /pushrules/global/{kind}/{ruleId}/enabled and .../actions, which
// also work on server-default rules ("This can be used to change the actions of builtin rules").
func (a *API) putPushRuleAttr(w http.ResponseWriter, r *http.Request, dev *userapi.Device) error {
	kind, ruleID, err := pushRuleTarget(r)
	if err != nil {
		return err
	}
	if httpapi.Vars(r)["attr"] == "enabled" {
		var body struct {
			Enabled *bool `json:"enabled"`
		}
		if err := httpapi.ReadJSONLimit(r, &body, maxPushRuleBody); err != nil {
			return err
		}
		if body.Enabled == nil {
			return httpapi.BadJSON("enabled is required, a boolean")
		}
		err = a.users.SetPushRuleEnabled(r.Context(), dev.UserID, kind, ruleID, *body.Enabled)
	} else {
		var body struct {
			Actions json.RawMessage `json:"actions"`
		}
		if err := httpapi.ReadJSONLimit(r, &body, maxPushRuleBody); err != nil {
			return err
		}
		actions, aerr := pushActions(body.Actions)
		if aerr != nil {
			return aerr
		}
		err = a.users.SetPushRuleActions(r.Context(), dev.UserID, kind, ruleID, actions)
	}
	if err != nil {
		return pushRuleError(err)
	}
	writeEmpty(w)
	return nil
}
