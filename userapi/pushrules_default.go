package userapi

import (
	"encoding/json"

	"maunium.net/go/mautrix/id"
)

// masterRuleID is the server-default rule that comes before every other rule, the user's own
// included ("Predefined Rules", .m.rule.master).
const masterRuleID = ".m.rule.master"

// DefaultPushRules returns the server-default rules for userID, exactly as the client-server API
// v1.19 defines them ("Predefined Rules"), in its order, with the user's ID filled in. v1.17
// removed the legacy mention rules (.m.rule.contains_display_name, .m.rule.roomnotif and the
// content rule .m.rule.contains_user_name), so there are no default content rules.
func DefaultPushRules(userID id.UserID) PushRuleset {
	user, _ := json.Marshal(string(userID)) // a string always encodes
	notify := PushAction{Action: ActionNotify}
	sound := func(s string) PushAction {
		v, _ := json.Marshal(s)
		return PushAction{Action: ActionSetTweak, Tweak: TweakSound, Value: v}
	}
	highlight := PushAction{Action: ActionSetTweak, Tweak: TweakHighlight}
	match := func(key, pattern string) PushCondition {
		return PushCondition{Kind: CondEventMatch, Key: key, Pattern: pattern}
	}
	rule := func(ruleID string, conds []PushCondition, actions ...PushAction) PushRule {
		if actions == nil {
			actions = []PushAction{}
		}
		return PushRule{RuleID: ruleID, Default: true, Enabled: true, Conditions: conds, Actions: actions}
	}
	master := rule(masterRuleID, []PushCondition{})
	master.Enabled = false // "By default this rule is disabled."
	return PushRuleset{
		Override: []PushRule{
			master,
			rule(".m.rule.suppress_notices", []PushCondition{match("content.msgtype", "m.notice")}),
			rule(".m.rule.invite_for_me", []PushCondition{
				match("type", "m.room.member"),
				match("content.membership", "invite"),
				match("state_key", string(userID)),
			}, notify, sound("default")),
			rule(".m.rule.member_event", []PushCondition{match("type", "m.room.member")}),
			rule(".m.rule.is_user_mention", []PushCondition{
				{Kind: CondEventPropertyContains, Key: `content.m\.mentions.user_ids`, Value: user},
			}, notify, sound("default"), highlight),
			rule(".m.rule.is_room_mention", []PushCondition{
				{Kind: CondEventPropertyIs, Key: `content.m\.mentions.room`, Value: json.RawMessage("true")},
				{Kind: CondSenderNotificationPermission, Key: "room"},
			}, notify, highlight),
			rule(".m.rule.tombstone", []PushCondition{
				match("type", "m.room.tombstone"),
				match("state_key", ""),
			}, notify, highlight),
			rule(".m.rule.reaction", []PushCondition{match("type", "m.reaction")}),
			rule(".m.rule.room.server_acl", []PushCondition{
				match("type", "m.room.server_acl"),
				match("state_key", ""),
			}),
			rule(".m.rule.suppress_edits", []PushCondition{
				{Kind: CondEventPropertyIs, Key: `content.m\.relates_to.rel_type`, Value: json.RawMessage(`"m.replace"`)},
			}),
		},
		Underride: []PushRule{
			rule(".m.rule.call", []PushCondition{match("type", "m.call.invite")}, notify, sound("ring")),
			rule(".m.rule.encrypted_room_one_to_one", []PushCondition{
				{Kind: CondRoomMemberCount, Is: "2"},
				match("type", "m.room.encrypted"),
			}, notify, sound("default")),
			rule(".m.rule.room_one_to_one", []PushCondition{
				{Kind: CondRoomMemberCount, Is: "2"},
				match("type", "m.room.message"),
			}, notify, sound("default")),
			rule(".m.rule.message", []PushCondition{match("type", "m.room.message")}, notify),
			rule(".m.rule.encrypted", []PushCondition{match("type", "m.room.encrypted")}, notify),
		},
	}
}

// isDefaultRule reports whether ruleID names a server-default rule of kind.
func isDefaultRule(userID id.UserID, kind PushRuleKind, ruleID string) bool {
	defaults := DefaultPushRules(userID)
	return defaults.Rule(kind, ruleID) != nil
}

// ruleset merges the server-default rules, with the user's changes to their enabled state and
// actions, and the user's own rules: "server-default rules ... operate at a lower priority than
// user-defined rules, except for the .m.rule.master rule which has always a higher priority than
// any other rule" ("Predefined Rules").
func (st *pushRuleState) ruleset(userID id.UserID) PushRuleset {
	defaults := DefaultPushRules(userID)
	var rs PushRuleset
	for _, k := range PushRuleKinds() {
		d := defaults.Rules(k)
		out := make([]PushRule, 0, len(d)+len(st.user[k]))
		for len(d) > 0 && d[0].RuleID == masterRuleID {
			out = append(out, st.changed(k, d[0]))
			d = d[1:]
		}
		for _, r := range st.user[k] {
			out = append(out, r.PushRule)
		}
		for _, r := range d {
			out = append(out, st.changed(k, r))
		}
		*rs.kind(k) = out
	}
	return rs
}

// changed returns the server-default rule r of kind k with the user's changes applied.
func (st *pushRuleState) changed(k PushRuleKind, r PushRule) PushRule {
	c, ok := st.defaults[ruleKey{k, r.RuleID}]
	if !ok {
		return r
	}
	if c.enabled != nil {
		r.Enabled = *c.enabled
	}
	if c.actions != nil {
		r.Actions = c.actions
	}
	return r
}
