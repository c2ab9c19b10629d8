package userapi

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/storage"
)

// Push rules (client-server API, "Push Rules"): the Go form of rules, conditions and actions that
// the /pushrules endpoints store and that push rule evaluation reads, and their storage. The
// server-default rules, and how they merge with a user's own, are in pushrules_default.go.

// PushRulesType is the global account data type that carries a user's whole push ruleset to their
// clients ("Push Rules: Events").
const PushRulesType = "m.push_rules"

// PushRuleKind is the kind of a push rule, which sets its priority and the keys it has.
type PushRuleKind string

// The kinds of push rules, most important first.
const (
	PushOverride  PushRuleKind = "override"
	PushContent   PushRuleKind = "content"
	PushRoom      PushRuleKind = "room"
	PushSender    PushRuleKind = "sender"
	PushUnderride PushRuleKind = "underride"
)

// PushRuleKinds returns the kinds in the order their rules are checked.
func PushRuleKinds() []PushRuleKind {
	return []PushRuleKind{PushOverride, PushContent, PushRoom, PushSender, PushUnderride}
}

// Valid reports whether k is one of the five kinds.
func (k PushRuleKind) Valid() bool {
	switch k {
	case PushOverride, PushContent, PushRoom, PushSender, PushUnderride:
		return true
	}
	return false
}

// hasConditions reports whether rules of kind k carry explicit conditions.
func (k PushRuleKind) hasConditions() bool { return k == PushOverride || k == PushUnderride }

// Names of the push rule conditions ("Conditions").
const (
	CondEventMatch                   = "event_match"
	CondEventPropertyIs              = "event_property_is"
	CondEventPropertyContains        = "event_property_contains"
	CondContainsDisplayName          = "contains_display_name" // deprecated since v1.17
	CondRoomMemberCount              = "room_member_count"
	CondSenderNotificationPermission = "sender_notification_permission"
)

// Names of the push rule actions ("Actions", "Historical Actions").
const (
	ActionNotify   = "notify"
	ActionSetTweak = "set_tweak"

	actionDontNotify = "dont_notify" // historical: stripped
	actionCoalesce   = "coalesce"    // historical: stripped
)

// Tweaks with a meaning defined by the spec; others pass through unchecked.
const (
	TweakSound     = "sound"
	TweakHighlight = "highlight"
)

// PushRuleset is a user's global ruleset: every kind's rules, most important first.
type PushRuleset struct {
	Override  []PushRule `json:"override"`
	Content   []PushRule `json:"content"`
	Room      []PushRule `json:"room"`
	Sender    []PushRule `json:"sender"`
	Underride []PushRule `json:"underride"`
}

// Rules returns the rules of kind k (nil for an unknown kind).
func (rs *PushRuleset) Rules(k PushRuleKind) []PushRule {
	if p := rs.kind(k); p != nil {
		return *p
	}
	return nil
}

// Rule returns the rule ruleID of kind k, or nil.
func (rs *PushRuleset) Rule(k PushRuleKind, ruleID string) *PushRule {
	rules := rs.Rules(k)
	for i := range rules {
		if rules[i].RuleID == ruleID {
			return &rules[i]
		}
	}
	return nil
}

func (rs *PushRuleset) kind(k PushRuleKind) *[]PushRule {
	switch k {
	case PushOverride:
		return &rs.Override
	case PushContent:
		return &rs.Content
	case PushRoom:
		return &rs.Room
	case PushSender:
		return &rs.Sender
	case PushUnderride:
		return &rs.Underride
	}
	return nil
}

// MarshalJSON writes every kind, an empty one as [] (clients iterate without checking for null).
func (rs PushRuleset) MarshalJSON() ([]byte, error) {
	type plain PushRuleset
	p := plain(rs)
	for _, s := range []*[]PushRule{&p.Override, &p.Content, &p.Room, &p.Sender, &p.Underride} {
		if *s == nil {
			*s = []PushRule{}
		}
	}
	return json.Marshal(p)
}

// PushRule is one push rule ("Push Rules", push_rule.yaml).
type PushRule struct {
	RuleID  string `json:"rule_id"`
	Default bool   `json:"default"` // a server-default rule
	Enabled bool   `json:"enabled"`
	// Conditions of an override or underride rule, all of which must hold; nil for the other
	// kinds, whose conditions follow from the kind (see ImpliedConditions). An empty list
	// matches every event.
	Conditions []PushCondition `json:"conditions"`
	Pattern    string          `json:"pattern"` // content rules: the glob matched against content.body
	Actions    []PushAction    `json:"actions"`
}

// MarshalJSON writes conditions only when the rule has them (override and underride rules, where
// an empty list is written as []), pattern only for content rules, and actions always.
func (r PushRule) MarshalJSON() ([]byte, error) {
	w := struct {
		RuleID     string           `json:"rule_id"`
		Default    bool             `json:"default"`
		Enabled    bool             `json:"enabled"`
		Conditions *[]PushCondition `json:"conditions,omitempty"`
		Pattern    string           `json:"pattern,omitempty"`
		Actions    []PushAction     `json:"actions"`
	}{RuleID: r.RuleID, Default: r.Default, Enabled: r.Enabled, Pattern: r.Pattern, Actions: r.Actions}
	if r.Conditions != nil {
		w.Conditions = &r.Conditions
	}
	if w.Actions == nil {
		w.Actions = []PushAction{}
	}
	return json.Marshal(w)
}

// ImpliedConditions returns the conditions the rule matches with when it is of kind k: its own
// for override and underride rules; for content rules an event_match of content.body against the
// pattern; for room and sender rules an exact match of room_id or sender against the rule ID
// ("Push Rules": "the rule_id of the rule determines its behaviour").
func (r *PushRule) ImpliedConditions(k PushRuleKind) []PushCondition {
	switch k {
	case PushContent:
		return []PushCondition{{Kind: CondEventMatch, Key: "content.body", Pattern: r.Pattern}}
	case PushRoom, PushSender:
		key := "room_id"
		if k == PushSender {
			key = "sender"
		}
		value, _ := json.Marshal(r.RuleID) // a string always encodes
		return []PushCondition{{Kind: CondEventPropertyIs, Key: key, Value: value}}
	}
	return r.Conditions
}

// Normalize checks a user-defined rule of kind k as a client sent it and returns it as stored:
// conditions kept only for override and underride rules (where they must be present, possibly
// empty), pattern only for content rules (where it must not be empty), historical actions
// stripped. Errors describe the problem for the client; the rule ID is not checked here.
func (r PushRule) Normalize(k PushRuleKind) (PushRule, error) {
	if !k.Valid() {
		return PushRule{}, fmt.Errorf("unknown push rule kind %q", k)
	}
	out := PushRule{RuleID: r.RuleID, Enabled: r.Enabled}
	if k.hasConditions() {
		if r.Conditions == nil {
			return PushRule{}, fmt.Errorf("%s rules need conditions (an empty list matches every event)", k)
		}
		out.Conditions = make([]PushCondition, len(r.Conditions))
		for i, c := range r.Conditions {
			if err := c.validate(); err != nil {
				return PushRule{}, fmt.Errorf("conditions[%d]: %w", i, err)
			}
			out.Conditions[i] = c
		}
	}
	if k == PushContent {
		if r.Pattern == "" {
			return PushRule{}, errors.New("content rules need a non-empty pattern")
		}
		out.Pattern = r.Pattern
	}
	actions, err := NormalizePushActions(r.Actions)
	if err != nil {
		return PushRule{}, err
	}
	out.Actions = actions
	return out, nil
}

// PushCondition is one condition of an override or underride rule ("Conditions"). The fields a
// known kind defines are parsed; every other member (and all parameters of kinds this server does
// not know, which never match) is kept in Extra so that rules read back as they were written.
type PushCondition struct {
	Kind    string          // one of the Cond* names, or another, which never matches
	Key     string          // event_match, event_property_is, event_property_contains, sender_notification_permission
	Pattern string          // event_match: a glob
	Is      string          // room_member_count: a count with an optional ==, <, >, >= or <= prefix
	Value   json.RawMessage // event_property_is, event_property_contains: a string, integer, boolean or null
	Extra   map[string]json.RawMessage
}

// conditionParams lists the parameters each known condition kind requires.
func conditionParams(kind string) []string {
	switch kind {
	case CondEventMatch:
		return []string{"key", "pattern"}
	case CondEventPropertyIs, CondEventPropertyContains:
		return []string{"key", "value"}
	case CondRoomMemberCount:
		return []string{"is"}
	case CondSenderNotificationPermission:
		return []string{"key"}
	}
	return nil
}

// MarshalJSON writes kind, the parameters of a known kind, and the extra members.
func (c PushCondition) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(c.Extra)+3)
	for k, v := range c.Extra {
		m[k] = v
	}
	m["kind"] = c.Kind
	for _, p := range conditionParams(c.Kind) {
		switch p {
		case "key":
			m[p] = c.Key
		case "pattern":
			m[p] = c.Pattern
		case "is":
			m[p] = c.Is
		case "value":
			v := c.Value
			if v == nil {
				v = json.RawMessage("null")
			}
			m[p] = v
		}
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads a condition object: kind must be a string, and a known kind's parameters
// must be present with their JSON types (value any JSON, checked by validate).
func (c *PushCondition) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return errors.New("a push condition must be a JSON object")
	}
	var out PushCondition
	if err := takeString(m, "kind", &out.Kind); err != nil {
		return fmt.Errorf("push condition: %w", err)
	}
	for _, p := range conditionParams(out.Kind) {
		var err error
		switch p {
		case "key":
			err = takeString(m, p, &out.Key)
		case "pattern":
			err = takeString(m, p, &out.Pattern)
		case "is":
			err = takeString(m, p, &out.Is)
		case "value":
			v, ok := m[p]
			if !ok {
				err = errors.New(`"value" is required`)
			}
			out.Value = v
			delete(m, p)
		}
		if err != nil {
			return fmt.Errorf("push condition %s: %w", out.Kind, err)
		}
	}
	if len(m) > 0 {
		out.Extra = m
	}
	*c = out
	return nil
}

// takeString moves the required string member name of m into dst.
func takeString(m map[string]json.RawMessage, name string, dst *string) error {
	raw, ok := m[name]
	if !ok {
		return fmt.Errorf("%q is required", name)
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("%q must be a string", name)
	}
	delete(m, name)
	return nil
}

// maxSafeInteger is the largest integer that canonical JSON allows, 2**53 - 1.
const maxSafeInteger = 1<<53 - 1

// validate checks the parameters of a known condition kind beyond their JSON types.
func (c *PushCondition) validate() error {
	if c.Kind == "" {
		return errors.New("kind must not be empty")
	}
	for _, p := range conditionParams(c.Kind) {
		switch {
		case p == "key" && c.Key == "":
			return fmt.Errorf("%s: key must not be empty", c.Kind)
		case p == "is" && !validMemberCount(c.Is):
			return fmt.Errorf("%s: is must be a count with an optional ==, <, >, >= or <= prefix, not %q", c.Kind, c.Is)
		case p == "value" && !validPropertyValue(c.Value):
			return fmt.Errorf("%s: value must be a string, an integer within ±(2**53-1), a boolean or null", c.Kind)
		}
	}
	return nil
}

// validMemberCount checks room_member_count's is: a decimal integer optionally prefixed by one
// of ==, <, >, >= or <=.
func validMemberCount(is string) bool {
	for _, op := range []string{"==", "<=", ">=", "<", ">"} {
		if rest, ok := strings.CutPrefix(is, op); ok {
			is = rest
			break
		}
	}
	if is == "" || strings.TrimLeft(is, "0123456789") != "" {
		return false
	}
	_, err := strconv.ParseUint(is, 10, 63)
	return err == nil
}

// validPropertyValue checks a value of event_property_is and event_property_contains: a
// non-compound canonical JSON value (string, integer in range, boolean or null).
func validPropertyValue(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || !json.Valid(v) {
		return false
	}
	switch v[0] {
	case '"':
		return true
	case 't', 'f', 'n':
		return true // true, false or null: json.Valid allows no other words
	case '{', '[':
		return false
	}
	if bytes.ContainsAny(v, ".eE") {
		return false // a fraction or exponent is not canonical JSON
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	return err == nil && n >= -maxSafeInteger && n <= maxSafeInteger
}

// PushAction is one action of a push rule ("Actions"): notify, or set_tweak with a tweak name and
// an optional value.
type PushAction struct {
	Action string          // ActionNotify, ActionSetTweak, or a historical action before NormalizePushActions
	Tweak  string          // set_tweak: the tweak's name
	Value  json.RawMessage // set_tweak: its value, nil when absent
}

// MarshalJSON writes a parameterless action as a string and set_tweak as an object.
func (a PushAction) MarshalJSON() ([]byte, error) {
	if a.Action != ActionSetTweak {
		return json.Marshal(a.Action)
	}
	return json.Marshal(struct {
		SetTweak string          `json:"set_tweak"`
		Value    json.RawMessage `json:"value,omitempty"`
	}{a.Tweak, a.Value})
}

// UnmarshalJSON reads a string action, or an object with a string set_tweak and an optional
// value; any other object is refused.
func (a *PushAction) UnmarshalJSON(b []byte) error {
	var s *string
	if err := json.Unmarshal(b, &s); err == nil && s != nil {
		*a = PushAction{Action: *s}
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return errors.New("a push action must be a string or an object")
	}
	raw, ok := m[ActionSetTweak]
	if !ok {
		return errors.New("a push action object must have set_tweak")
	}
	var tweak string
	if err := json.Unmarshal(raw, &tweak); err != nil || tweak == "" {
		return errors.New("set_tweak must be a non-empty string")
	}
	*a = PushAction{Action: ActionSetTweak, Tweak: tweak, Value: m["value"]}
	return nil
}

// NormalizePushActions checks actions and returns them without the historical dont_notify and
// coalesce, which "Clients and homeservers MUST ignore ... by stripping them" ("Historical
// Actions"). Unknown actions and tweak values of the wrong type (highlight a boolean, sound a
// string) are refused. The result is never nil.
func NormalizePushActions(actions []PushAction) ([]PushAction, error) {
	out := make([]PushAction, 0, len(actions))
	for i, a := range actions {
		switch a.Action {
		case ActionNotify:
			out = append(out, PushAction{Action: ActionNotify})
		case actionDontNotify, actionCoalesce:
		case ActionSetTweak:
			if err := validTweak(a); err != nil {
				return nil, fmt.Errorf("actions[%d]: %w", i, err)
			}
			out = append(out, a)
		default:
			return nil, fmt.Errorf("actions[%d]: unknown action %q", i, a.Action)
		}
	}
	return out, nil
}

// validTweak checks the value of the tweaks the spec defines; others pass through.
func validTweak(a PushAction) error {
	if a.Tweak == "" {
		return errors.New("set_tweak must be a non-empty string")
	}
	v := bytes.TrimSpace(a.Value)
	if a.Value != nil && !json.Valid(v) {
		return fmt.Errorf("the value of tweak %s is not JSON", a.Tweak)
	}
	switch a.Tweak {
	case TweakHighlight:
		// "If a highlight tweak is given with no value, its value is defined to be true."
		if a.Value != nil && string(v) != "true" && string(v) != "false" {
			return errors.New("the highlight tweak's value must be a boolean")
		}
	case TweakSound:
		if len(v) == 0 || v[0] != '"' {
			return errors.New("the sound tweak's value must be a string")
		}
	}
	return nil
}

// Errors of the push rule methods, besides ErrNotFound for an unknown rule.
var (
	ErrPushRuleAnchor    = errors.New("userapi: the before/after rule is not one of the user's rules of the kind")
	ErrPushRuleDefault   = errors.New("userapi: server-default push rules cannot be replaced or deleted")
	ErrPushRulesTooLarge = errors.New("userapi: push ruleset over its size limit")
	ErrInvalidPushRule   = errors.New("userapi: invalid push rule")
)

// maxPushRulesSize bounds the encoded ruleset, which every change writes whole to the account
// data stream and every initial /sync carries: some thousands of rules, where clients make tens.
const maxPushRulesSize = 512 << 10

// pushRulesContent is the content of the m.push_rules account data event (m.push_rules.yaml).
type pushRulesContent struct {
	Global PushRuleset `json:"global"`
}

// storedRule is a user-defined rule with its row's priority: higher is more important.
type storedRule struct {
	PushRule
	priority int64
}

// ruleKey names a rule: rule IDs are unique within their kind.
type ruleKey struct {
	kind PushRuleKind
	id   string
}

// defaultChange is a user's change to a server-default rule; nil fields keep the default.
type defaultChange struct {
	enabled *bool
	actions []PushAction
}

// pushRuleState is what the push rule tables hold for one user.
type pushRuleState struct {
	user     map[PushRuleKind][]storedRule // most important first
	defaults map[ruleKey]defaultChange
}

// loadPushRules reads a user's rules and their changes to the server-default rules.
func loadPushRules(ctx context.Context, q storage.Querier, userID id.UserID) (*pushRuleState, error) {
	st := &pushRuleState{user: map[PushRuleKind][]storedRule{}, defaults: map[ruleKey]defaultChange{}}
	rows, err := q.Query(ctx, `SELECT kind, rule_id, priority, conditions, pattern, actions, enabled
		FROM push_rules WHERE user_id = $1 ORDER BY kind, priority DESC, rule_id`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var r storedRule
		var kind PushRuleKind
		var conds sql.NullString
		var actions string
		if err := rows.Scan(&kind, &r.RuleID, &r.priority, &conds, &r.Pattern, &actions, &r.Enabled); err != nil {
			return nil, err
		}
		if conds.Valid {
			if err := json.Unmarshal([]byte(conds.String), &r.Conditions); err != nil {
				return nil, fmt.Errorf("conditions of %s rule %q: %w", kind, r.RuleID, err)
			}
			if r.Conditions == nil {
				r.Conditions = []PushCondition{}
			}
		}
		if err := json.Unmarshal([]byte(actions), &r.Actions); err != nil {
			return nil, fmt.Errorf("actions of %s rule %q: %w", kind, r.RuleID, err)
		}
		st.user[kind] = append(st.user[kind], r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()

	rows, err = q.Query(ctx, `SELECT kind, rule_id, enabled, actions FROM push_rule_defaults WHERE user_id = $1`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var k ruleKey
		var enabled sql.NullBool
		var actions sql.NullString
		if err := rows.Scan(&k.kind, &k.id, &enabled, &actions); err != nil {
			return nil, err
		}
		var c defaultChange
		if enabled.Valid {
			c.enabled = &enabled.Bool
		}
		if actions.Valid {
			if err := json.Unmarshal([]byte(actions.String), &c.actions); err != nil {
				return nil, fmt.Errorf("actions of %s rule %q: %w", k.kind, k.id, err)
			}
			if c.actions == nil {
				c.actions = []PushAction{}
			}
		}
		st.defaults[k] = c
	}
	return st, rows.Err()
}

// index returns the position of ruleID in rules, -1 if absent.
func index(rules []storedRule, ruleID string) int {
	for i := range rules {
		if rules[i].RuleID == ruleID {
			return i
		}
	}
	return -1
}

// PushRules returns userID's global ruleset: the server-default rules with the user's changes,
// and the user's own rules, in priority order. ErrNotFound for a user of another server.
func (u *Users) PushRules(ctx context.Context, userID id.UserID) (*PushRuleset, error) {
	if !u.isLocal(userID) {
		return nil, ErrNotFound
	}
	st, err := loadPushRules(ctx, u.db, userID)
	if err != nil {
		return nil, fmt.Errorf("userapi: push rules of %s: %w", userID, err)
	}
	rs := st.ruleset(userID)
	return &rs, nil
}

// PushRule returns one rule of userID's ruleset, ErrNotFound if there is none.
func (u *Users) PushRule(ctx context.Context, userID id.UserID, kind PushRuleKind, ruleID string) (*PushRule, error) {
	rs, err := u.PushRules(ctx, userID)
	if err != nil {
		return nil, err
	}
	r := rs.Rule(kind, ruleID)
	if r == nil {
		return nil, ErrNotFound
	}
	return r, nil
}

// PutPushRule adds or replaces a user-defined rule (client-server API, PUT
// /pushrules/global/{kind}/{ruleId}). A new rule is enabled and, without before or after, the
// most important of the user's rules of its kind; a replaced one keeps its enabled state and,
// without before or after, its place. before (which wins over after) or after place it just above
// or below another of the user's rules of the kind: ErrPushRuleAnchor if there is none.
// ErrPushRuleDefault for a rule ID starting with '.', ErrInvalidPushRule for a rule Normalize
// refuses, ErrPushRulesTooLarge if the ruleset would outgrow its limit.
func (u *Users) PutPushRule(ctx context.Context, userID id.UserID, kind PushRuleKind, rule PushRule, before, after string) error {
	if strings.HasPrefix(rule.RuleID, ".") {
		return ErrPushRuleDefault
	}
	if rule.RuleID == "" {
		return fmt.Errorf("%w: empty rule ID", ErrInvalidPushRule)
	}
	norm, err := rule.Normalize(kind)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidPushRule, err)
	}
	var conds sql.NullString
	if norm.Conditions != nil {
		b, err := json.Marshal(norm.Conditions)
		if err != nil {
			return fmt.Errorf("userapi: put push rule %q: %w", rule.RuleID, err)
		}
		conds = sql.NullString{String: string(b), Valid: true}
	}
	actions, err := json.Marshal(norm.Actions)
	if err != nil {
		return fmt.Errorf("userapi: put push rule %q: %w", rule.RuleID, err)
	}
	return u.changePushRules(ctx, userID, func(tx *storage.Tx, st *pushRuleState) error {
		rules := st.user[kind]
		old := index(rules, norm.RuleID)
		at := 0 // a new rule goes first
		rest := make([]storedRule, 0, len(rules)+1)
		for i, r := range rules {
			if i != old {
				rest = append(rest, r)
			}
		}
		r := storedRule{PushRule: norm}
		r.Enabled = true // "When creating push rules, they MUST be enabled by default."
		if old >= 0 {
			r.Enabled = rules[old].Enabled
			at = old
		}
		anchor, below := before, false
		if anchor == "" {
			anchor, below = after, true
		}
		// A replaced rule named as its own anchor stays where it is.
		if anchor != "" && (old < 0 || anchor != norm.RuleID) {
			a := index(rest, anchor)
			if a < 0 {
				return ErrPushRuleAnchor
			}
			at = a
			if below {
				at++
			}
		}
		rules = slices.Insert(rest, at, r)
		// Priorities run from len(rules) down to 1, so that a rule added first leaves the others'
		// rows untouched.
		for i := range rules {
			want := int64(len(rules) - i)
			if rules[i].RuleID != norm.RuleID && rules[i].priority != want {
				if _, err := tx.Exec(ctx, `UPDATE push_rules SET priority = $4 WHERE user_id = $1 AND kind = $2 AND rule_id = $3`,
					userID, kind, rules[i].RuleID, want); err != nil {
					return err
				}
			}
			rules[i].priority = want
		}
		st.user[kind] = rules
		_, err := tx.Exec(ctx, `INSERT INTO push_rules (user_id, kind, rule_id, priority, conditions, pattern, actions, enabled)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (user_id, kind, rule_id) DO UPDATE SET priority = excluded.priority,
				conditions = excluded.conditions, pattern = excluded.pattern, actions = excluded.actions`,
			userID, kind, norm.RuleID, rules[at].priority, conds, norm.Pattern, string(actions), r.Enabled)
		return err
	})
}

// DeletePushRule deletes a user-defined rule: ErrNotFound if there is none, ErrPushRuleDefault
// for a server-default rule.
func (u *Users) DeletePushRule(ctx context.Context, userID id.UserID, kind PushRuleKind, ruleID string) error {
	return u.changePushRules(ctx, userID, func(tx *storage.Tx, st *pushRuleState) error {
		if isDefaultRule(userID, kind, ruleID) {
			return ErrPushRuleDefault
		}
		i := index(st.user[kind], ruleID)
		if i < 0 {
			return ErrNotFound
		}
		st.user[kind] = slices.Delete(st.user[kind], i, i+1)
		_, err := tx.Exec(ctx, `DELETE FROM push_rules WHERE user_id = $1 AND kind = $2 AND rule_id = $3`, userID, kind, ruleID)
		return err
	})
}

// SetPushRuleEnabled enables or disables a rule, the user's own or a server-default one;
// ErrNotFound if there is none.
func (u *Users) SetPushRuleEnabled(ctx context.Context, userID id.UserID, kind PushRuleKind, ruleID string, enabled bool) error {
	return u.changePushRules(ctx, userID, func(tx *storage.Tx, st *pushRuleState) error {
		if isDefaultRule(userID, kind, ruleID) {
			k := ruleKey{kind, ruleID}
			c := st.defaults[k]
			c.enabled = &enabled
			st.defaults[k] = c
			_, err := tx.Exec(ctx, `INSERT INTO push_rule_defaults (user_id, kind, rule_id, enabled) VALUES ($1, $2, $3, $4)
				ON CONFLICT (user_id, kind, rule_id) DO UPDATE SET enabled = excluded.enabled`, userID, kind, ruleID, enabled)
			return err
		}
		i := index(st.user[kind], ruleID)
		if i < 0 {
			return ErrNotFound
		}
		st.user[kind][i].Enabled = enabled
		_, err := tx.Exec(ctx, `UPDATE push_rules SET enabled = $4 WHERE user_id = $1 AND kind = $2 AND rule_id = $3`,
			userID, kind, ruleID, enabled)
		return err
	})
}

// SetPushRuleActions replaces the actions of a rule, the user's own or a server-default one:
// ErrNotFound if there is none, ErrInvalidPushRule for actions NormalizePushActions refuses.
func (u *Users) SetPushRuleActions(ctx context.Context, userID id.UserID, kind PushRuleKind, ruleID string, actions []PushAction) error {
	actions, err := NormalizePushActions(actions)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidPushRule, err)
	}
	enc, err := json.Marshal(actions)
	if err != nil {
		return fmt.Errorf("userapi: set actions of push rule %q: %w", ruleID, err)
	}
	return u.changePushRules(ctx, userID, func(tx *storage.Tx, st *pushRuleState) error {
		if isDefaultRule(userID, kind, ruleID) {
			k := ruleKey{kind, ruleID}
			c := st.defaults[k]
			c.actions = actions
			st.defaults[k] = c
			_, err := tx.Exec(ctx, `INSERT INTO push_rule_defaults (user_id, kind, rule_id, actions) VALUES ($1, $2, $3, $4)
				ON CONFLICT (user_id, kind, rule_id) DO UPDATE SET actions = excluded.actions`, userID, kind, ruleID, string(enc))
			return err
		}
		i := index(st.user[kind], ruleID)
		if i < 0 {
			return ErrNotFound
		}
		st.user[kind][i].Actions = actions
		_, err := tx.Exec(ctx, `UPDATE push_rules SET actions = $4 WHERE user_id = $1 AND kind = $2 AND rule_id = $3`,
			userID, kind, ruleID, string(enc))
		return err
	})
}

// changePushRules runs change on the user's stored rules in one transaction that also writes the
// resulting ruleset as the user's m.push_rules account data, at a new position of the
// account_data stream ("Push Rules: Events"; design principle 2), and then wakes the user's
// waiters as SetAccountData does. change must update st to match what it writes.
func (u *Users) changePushRules(ctx context.Context, userID id.UserID, change func(tx *storage.Tx, st *pushRuleState) error) error {
	if !u.isLocal(userID) {
		return ErrNotFound
	}
	var pos int64
	err := u.db.WithTx(ctx, func(tx *storage.Tx) error {
		// The account row's lock makes a user's changes take turns on PostgreSQL, so none is
		// lost from the ruleset written last; SQLite runs one writer at a time anyway.
		lock := ""
		if tx.Engine() == storage.EnginePostgres {
			lock = " FOR UPDATE"
		}
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM accounts WHERE user_id = $1`+lock, userID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		st, err := loadPushRules(ctx, tx, userID)
		if err != nil {
			return err
		}
		if err := change(tx, st); err != nil {
			return err
		}
		content, err := json.Marshal(pushRulesContent{Global: st.ruleset(userID)})
		if err != nil {
			return err
		}
		if len(content) > maxPushRulesSize {
			return ErrPushRulesTooLarge
		}
		// The same row and stream as SetAccountData, drawn last but one for the same reason.
		if pos, err = tx.NextStreamPosition(ctx, StreamAccountData); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO account_data (user_id, room_id, type, content, position)
			VALUES ($1, '', $2, $3, $4)
			ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content, position = excluded.position`,
			userID, PushRulesType, string(content), pos)
		return err
	})
	// Also after an error: a commit that reported one may still have happened.
	u.pushRules.changed(userID)
	for _, known := range []error{ErrNotFound, ErrPushRuleAnchor, ErrPushRuleDefault, ErrPushRulesTooLarge} {
		if errors.Is(err, known) {
			return known
		}
	}
	if err != nil {
		return fmt.Errorf("userapi: change push rules of %s: %w", userID, err)
	}
	u.notify(StreamAccountData, pos, UserKey(userID))
	return nil
}

// withCurrentPushRules completes a user's whole account data (AccountDataSince from 0, which an
// initial /sync reads) with an m.push_rules entry built from the rules stored now: it replaces
// the content of the stored entry, so that server-default rules added since the user's last change
// reach clients too, or, for a user who never changed a rule, is added at position 0.
func (u *Users) withCurrentPushRules(ctx context.Context, userID id.UserID, entries []AccountData) ([]AccountData, error) {
	if !u.isLocal(userID) {
		return entries, nil
	}
	st, err := loadPushRules(ctx, u.db, userID)
	if err != nil {
		return nil, err
	}
	content, err := json.Marshal(pushRulesContent{Global: st.ruleset(userID)})
	if err != nil {
		return nil, err
	}
	for i := range entries {
		if entries[i].RoomID == "" && entries[i].Type == PushRulesType {
			entries[i].Content = content
			return entries, nil
		}
	}
	return append([]AccountData{{Type: PushRulesType, Content: content}}, entries...), nil
}
