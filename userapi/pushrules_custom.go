package userapi

import (
	"context"
	"fmt"

	"maunium.net/go/mautrix/id"
)

// CustomPushRules returns the rulesets of those of users whose stored rules differ from the
// server defaults.
func (u *Users) CustomPushRules(ctx context.Context, users []id.UserID) (map[id.UserID]*PushRuleset, error) {
	out := map[id.UserID]*PushRuleset{}
	for _, user := range users {
		if !u.isLocal(user) {
			continue
		}
		st, err := loadPushRules(ctx, u.db, user)
		if err != nil {
			return nil, fmt.Errorf("userapi: push rules of %s: %w", user, err)
		}
		if len(st.user) == 0 && len(st.defaults) == 0 {
			continue
		}
		rs := st.ruleset(user)
		out[user] = &rs
	}
	return out, nil
}
