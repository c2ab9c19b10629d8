package auth

import (
	"encoding/json"

	"maunium.net/go/mautrix/id"
)

// checkMember is the m.room.member rule (5 in the v1/v3/v12 texts, 4 in v6–v11). From v8 its
// sub-rules after the first are numbered one higher: join_authorised_via_users_server became 2.
func (r *rules) checkMember(ev Event, state State, create *createInfo) error {
	m := r.member
	sk := ev.StateKey()
	content := object(ev.Content())
	rawMembership, hasMembership := content["membership"]
	if sk == nil || !hasMembership {
		return r.fail(n(m, 1), "m.room.member without a state_key or content.membership")
	}
	membership, _ := str(rawMembership)
	if r.v.RestrictedJoins() {
		// v8+ rule 2: the event must be signed by the server of the authorising user. The
		// signature itself is checked with the others (see RequiredSigners); a value that is
		// not a user ID has no server that could have signed.
		if raw, ok := content[keyJoinAuthorisedVia]; ok {
			if s, ok := str(raw); !ok || !validUserID(s) {
				return r.fail(n(m, 2, 1), "%s is %s, not a user ID", keyJoinAuthorisedVia, raw)
			}
		}
	}
	target := id.UserID(*sk)
	sender := ev.Sender()
	switch membership {
	case membershipJoin:
		return r.checkJoin(ev, state, create, content)
	case membershipInvite:
		if _, ok := content[keyThirdPartyInvite]; ok {
			return r.checkThirdPartyInvite(ev, state, content[keyThirdPartyInvite])
		}
		sub := 3 + r.ms
		if sm := membershipOf(state, sender); sm != membershipJoin {
			return r.fail(n(m, sub, 2), "sender %s is not joined (membership %q)", sender, sm)
		}
		if tm := membershipOf(state, target); tm == membershipJoin || tm == membershipBan {
			return r.fail(n(m, sub, 3), "target %s is already %s", target, tm)
		}
		pl := loadPowerLevels(r.v, state, create, parseLazy, sender)
		if l := pl.User(sender); l < pl.Invite() {
			return r.fail(n(m, sub, 5), "sender's power level %d is below the invite level %d", l, pl.Invite())
		}
		return nil
	case membershipLeave:
		sub := 4 + r.ms
		sm := membershipOf(state, sender)
		if sender == target {
			if sm == membershipInvite || sm == membershipJoin || (r.v.Knocks() && sm == membershipKnock) {
				return nil
			}
			return r.fail(n(m, sub, 1), "cannot leave from membership %q", sm)
		}
		if sm != membershipJoin {
			return r.fail(n(m, sub, 2), "sender %s is not joined (membership %q)", sender, sm)
		}
		pl := loadPowerLevels(r.v, state, create, parseLazy, sender, target)
		sl := pl.User(sender)
		if membershipOf(state, target) == membershipBan && sl < pl.Ban() {
			return r.fail(n(m, sub, 3), "unbanning needs the ban level %d, sender has %d", pl.Ban(), sl)
		}
		if tl := pl.User(target); sl >= pl.Kick() && tl < sl {
			return nil
		}
		return r.fail(n(m, sub, 5), "sender's level %d is below the kick level %d or not above the target's level %d", sl, pl.Kick(), pl.User(target))
	case membershipBan:
		sub := 5 + r.ms
		if sm := membershipOf(state, sender); sm != membershipJoin {
			return r.fail(n(m, sub, 1), "sender %s is not joined (membership %q)", sender, sm)
		}
		pl := loadPowerLevels(r.v, state, create, parseLazy, sender, target)
		if sl, tl := pl.User(sender), pl.User(target); sl >= pl.Ban() && tl < sl {
			return nil
		}
		return r.fail(n(m, sub, 3), "sender's level %d is below the ban level %d or not above the target's level %d", pl.User(sender), pl.Ban(), pl.User(target))
	case membershipKnock:
		if !r.v.Knocks() {
			break
		}
		sub := 6 + r.ms
		if jr := LoadJoinRules(state).Rule; jr != joinRuleKnock && !(r.v.KnockRestricted() && jr == joinRuleKnockRestrict) {
			return r.fail(n(m, sub, 1), "join rule %q does not allow knocking", jr)
		}
		if sender != target {
			return r.fail(n(m, sub, 2), "sender %s cannot knock for %s", sender, target)
		}
		if sm := membershipOf(state, sender); sm == membershipBan || sm == membershipInvite || sm == membershipJoin {
			return r.fail(n(m, sub, 4), "cannot knock from membership %q", sm)
		}
		return nil
	}
	unknown := 6 + r.ms
	if r.v.Knocks() {
		unknown++
	}
	return r.fail(n(m, unknown), "unknown membership %s", rawMembership)
}

// checkJoin is the membership "join" sub-rule.
func (r *rules) checkJoin(ev Event, state State, create *createInfo, content map[string]json.RawMessage) error {
	m, sub := r.member, 2+r.ms
	target := id.UserID(*ev.StateKey())
	sender := ev.Sender()
	// The creator's own join right after the create event; "the creator" is content.creator up
	// to v10 and the sender of the create event from v11 (not the additional creators of v12).
	if prev := ev.PrevEventIDs(); len(prev) == 1 && prev[0] == create.ev.EventID() && create.creator != "" && target == create.creator {
		return nil
	}
	if sender != target {
		return r.fail(n(m, sub, 2), "sender %s cannot join for %s", sender, target)
	}
	tm := membershipOf(state, target)
	if tm == membershipBan {
		return r.fail(n(m, sub, 3), "sender %s is banned", sender)
	}
	jr := LoadJoinRules(state).Rule
	// Sub-rule 4 only allows; an uninvited join under these rules ends at the last sub-rule.
	if (jr == joinRuleInvite || (r.v.Knocks() && jr == joinRuleKnock)) && (tm == membershipInvite || tm == membershipJoin) {
		return nil
	}
	if (r.v.RestrictedJoins() && jr == joinRuleRestricted) || (r.v.KnockRestricted() && jr == joinRuleKnockRestrict) {
		if tm == membershipInvite || tm == membershipJoin {
			return nil
		}
		// The resident server vouches for the join: its user must be joined and able to invite.
		via, ok := str(content[keyJoinAuthorisedVia])
		if !ok {
			return r.fail(n(m, sub, 5, 2), "join rule is %q and the join has no %s", jr, keyJoinAuthorisedVia)
		}
		if vm := membershipOf(state, id.UserID(via)); vm != membershipJoin {
			return r.fail(n(m, sub, 5, 2), "authorising user %s is not joined (membership %q)", via, vm)
		}
		pl := loadPowerLevels(r.v, state, create, parseLazy, id.UserID(via))
		if l := pl.User(id.UserID(via)); l < pl.Invite() {
			return r.fail(n(m, sub, 5, 2), "authorising user %s has level %d, below the invite level %d", via, l, pl.Invite())
		}
		return nil
	}
	if jr == joinRulePublic {
		return nil
	}
	last := 6
	if r.v.RestrictedJoins() {
		last = 7
	}
	return r.fail(n(m, sub, last), "join rule %q does not let %s (membership %q) join", jr, target, tm)
}
