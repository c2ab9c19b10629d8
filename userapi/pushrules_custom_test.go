package userapi

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

// customRules returns what CustomPushRules answers for users, failing the test on an error.
func customRules(t testing.TB, u *Users, users ...id.UserID) map[id.UserID]*PushRuleset {
	t.Helper()
	got, err := u.CustomPushRules(context.Background(), users)
	if err != nil {
		t.Fatalf("CustomPushRules: %v", err)
	}
	return got
}

func TestCustomPushRules(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{})
		ctx := t.Context()
		alice, bob := mustAccount(t, u, "alice", "").UserID, mustAccount(t, u, "bob", "").UserID
		carol := mustAccount(t, u, "carol", "").UserID
		remote := id.UserID("@alice:elsewhere.example")
		members := []id.UserID{alice, bob, carol, remote, "not a user ID"}

		if got := customRules(t, u, members...); len(got) != 0 {
			t.Fatalf("before any change: %v", got)
		}

		// alice mutes a room, watches a keyword, and turns plain group messages off.
		notifyHighlight := []PushAction{{Action: ActionNotify}, {Action: ActionSetTweak, Tweak: TweakHighlight}}
		steps := []func() error{
			func() error {
				return u.PutPushRule(ctx, alice, PushContent, PushRule{RuleID: "lunch", Pattern: "lunch", Actions: notifyHighlight}, "", "")
			},
			func() error {
				return u.PutPushRule(ctx, alice, PushRoom, PushRule{RuleID: "!muted:test.local", Actions: []PushAction{}}, "", "")
			},
			func() error { return u.SetPushRuleEnabled(ctx, alice, PushUnderride, ".m.rule.message", false) },
		}
		for i, step := range steps {
			if err := step(); err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
			// Every change is seen at once, even with the ruleset cached before it.
			got := customRules(t, u, members...)
			if len(got) != 1 || got[alice] == nil {
				t.Fatalf("after step %d: %v", i, got)
			}
			want, err := u.PushRules(ctx, alice)
			if err != nil {
				t.Fatal(err)
			}
			if g, w := mustJSON(t, got[alice]), mustJSON(t, want); string(g) != string(w) {
				t.Errorf("after step %d: cached ruleset\n%s\nwant\n%s", i, g, w)
			}
		}

		// The second lookup is answered from the cache: the same ruleset.
		first, second := customRules(t, u, alice)[alice], customRules(t, u, alice, alice)[alice]
		if first != second {
			t.Error("the ruleset was loaded again without a change")
		}

		// Evaluation follows alice's rules, and bob's are the defaults.
		pc := &PushContext{MemberCount: 5}
		rules := customRules(t, u, members...)
		msg := func(room, body string) *PushEvent {
			return pushEvent(t, `{"type": "m.room.message", "sender": "@dave:test.local", "room_id": "`+room+`",
				"content": {"msgtype": "m.text", "body": "`+body+`"}}`)
		}
		decide := func(user id.UserID, ev *PushEvent) (string, PushOutcome) {
			rs := rules[user]
			if rs == nil {
				d := DefaultPushRules(user)
				rs = &d
			}
			if r := rs.Evaluate(ev, pc); r != nil {
				return r.RuleID, OutcomeOf(r.Actions)
			}
			return "", PushOutcome{}
		}
		for _, tc := range []struct {
			user      id.UserID
			ev        *PushEvent
			rule      string
			notify    bool
			highlight bool
		}{
			{alice, msg("!room:test.local", "lunch at noon?"), "lunch", true, true},
			{alice, msg("!muted:test.local", "anyone there?"), "!muted:test.local", false, false},
			{alice, msg("!room:test.local", "anyone there?"), "", false, false}, // .m.rule.message is off
			{bob, msg("!room:test.local", "lunch at noon?"), ".m.rule.message", true, false},
			{bob, msg("!muted:test.local", "anyone there?"), ".m.rule.message", true, false},
		} {
			rule, o := decide(tc.user, tc.ev)
			if rule != tc.rule || o.Notify != tc.notify || o.Highlight != tc.highlight {
				t.Errorf("%s: rule %q notify %v highlight %v, want %q %v %v", tc.user, rule, o.Notify, o.Highlight,
					tc.rule, tc.notify, tc.highlight)
			}
		}

		// A change of a default rule's actions is a custom ruleset too.
		if err := u.SetPushRuleActions(ctx, carol, PushOverride, ".m.rule.reaction", []PushAction{{Action: ActionNotify}}); err != nil {
			t.Fatal(err)
		}
		if got := customRules(t, u, members...); len(got) != 2 || got[carol] == nil {
			t.Fatalf("after carol's change: %v", got)
		}

		// After a restart, the users with custom rules are known from the start.
		u2, _ := newUsers(t, db, Options{})
		if _, custom := u2.pushRules.len(); custom != 2 {
			t.Errorf("%d users with custom rules loaded at start, want 2", custom)
		}
		if got := customRules(t, u2, members...); len(got) != 2 || got[alice] == nil || got[carol] == nil {
			t.Fatalf("after a restart: %v", got)
		}

		// Undoing the changes: alice drops out, although a row says that .m.rule.message is
		// enabled, and so does carol once her actions are the default ones again.
		for i, step := range []struct {
			user id.UserID
			undo func() error
		}{
			{alice, func() error { return u.DeletePushRule(ctx, alice, PushContent, "lunch") }},
			{alice, func() error { return u.DeletePushRule(ctx, alice, PushRoom, "!muted:test.local") }},
			{alice, func() error { return u.SetPushRuleEnabled(ctx, alice, PushUnderride, ".m.rule.message", true) }},
			{carol, func() error {
				return u.SetPushRuleActions(ctx, carol, PushOverride, ".m.rule.reaction", []PushAction{})
			}},
		} {
			if got := customRules(t, u, members...); got[step.user] == nil {
				t.Fatalf("before undoing step %d: the rules of %s are the defaults", i, step.user)
			}
			if err := step.undo(); err != nil {
				t.Fatalf("undoing step %d: %v", i, err)
			}
		}
		if got := customRules(t, u, members...); len(got) != 0 {
			t.Errorf("after undoing every change: %v", got)
		}
		if rulesets, custom := u.pushRules.len(); rulesets != 0 || custom != 0 {
			t.Errorf("after undoing every change: %d rulesets cached, %d users marked", rulesets, custom)
		}
		// A restart loads both as having rows, and the first lookup drops them again.
		u3, _ := newUsers(t, db, Options{})
		if got := customRules(t, u3, members...); len(got) != 0 {
			t.Errorf("after a restart: %v", got)
		}
		if _, custom := u3.pushRules.len(); custom != 0 {
			t.Errorf("after a restart and a lookup: %d users marked", custom)
		}

		// A failed change leaves things as they were.
		if err := u.DeletePushRule(ctx, bob, PushContent, "nothing"); err != ErrNotFound {
			t.Errorf("deleting a missing rule: %v", err)
		}
		if got := customRules(t, u, members...); len(got) != 0 {
			t.Errorf("after a failed change: %v", got)
		}
	})
}

// TestCustomPushRulesConcurrent changes rules while others look them up: the answer after the
// last change is that change, whatever loads raced with it.
func TestCustomPushRulesConcurrent(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		u, _ := newUsers(t, db, Options{})
		ctx := t.Context()
		alice := mustAccount(t, u, "alice", "").UserID
		const changes = 20
		done := make(chan struct{})
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				for {
					select {
					case <-done:
						return
					default:
					}
					if _, err := u.CustomPushRules(ctx, []id.UserID{alice, "@bob:test.local"}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		for i := range changes {
			r := PushRule{RuleID: fmt.Sprint("k", i), Pattern: fmt.Sprint("word", i), Actions: []PushAction{}}
			if err := u.PutPushRule(ctx, alice, PushContent, r, "", ""); err != nil {
				t.Fatal(err)
			}
		}
		close(done)
		wg.Wait()
		rs := customRules(t, u, alice)[alice]
		if rs == nil || len(rs.Content) != changes {
			t.Fatalf("after %d changes: %v", changes, rs)
		}
	})
}

func TestPushRulesCacheBounds(t *testing.T) {
	c := newPushRulesCache(2)
	var users []id.UserID
	for i := range 5 {
		user := id.UserID(fmt.Sprintf("@u%d:test.local", i))
		users = append(users, user)
		c.changed(user)
		_, misses, epoch := c.lookup([]id.UserID{user})
		if len(misses) != 1 {
			t.Fatalf("%s: misses %v", user, misses)
		}
		c.fill(user, &PushRuleset{}, true, epoch)
		if rulesets, _ := c.len(); rulesets > 2*c.size {
			t.Fatalf("%d rulesets cached, bound %d", rulesets, 2*c.size)
		}
	}
	// The latest ones are cached, the first ones must be loaded again.
	found, misses, _ := c.lookup(users)
	if len(found) != 3 || len(misses) != 2 {
		t.Errorf("found %d, misses %v", len(found), misses)
	}

	// A load that raced with a change is not stored.
	user := users[0]
	_, _, epoch := c.lookup([]id.UserID{user})
	c.changed(user)
	c.fill(user, &PushRuleset{}, true, epoch)
	if found, _, _ := c.lookup([]id.UserID{user}); len(found) != 0 {
		t.Error("a stale load was stored")
	}
	c.fill(user, nil, false, epoch)
	if _, misses, _ := c.lookup([]id.UserID{user}); len(misses) != 1 {
		t.Error("a stale load removed the user from those with custom rules")
	}

	// A user found to have the default rules leaves the set (and the filter); the others stay.
	_, _, epoch = c.lookup(nil)
	c.fill(user, nil, false, epoch)
	found, misses, _ = c.lookup(users)
	if len(found)+len(misses) != len(users)-1 || slices.Contains(misses, user) || found[user] != nil {
		t.Errorf("after %s left: found %d, misses %v", user, len(found), misses)
	}
	if _, custom := c.len(); custom != len(users)-1 {
		t.Errorf("%d users marked, want %d", custom, len(users)-1)
	}
	// The filter holds exactly the bits of the users left.
	want := make([]uint64, len(c.filter))
	for _, other := range users[1:] {
		w, b := c.bit(other)
		want[w] |= b
	}
	if !slices.Equal(c.filter, want) {
		t.Error("the filter does not hold exactly the bits of the users left")
	}
}

// BenchmarkCustomPushRules is the lookup done for every new event in a room of 10 000 local
// members of whom 100 have custom rules, all cached.
func BenchmarkCustomPushRules(b *testing.B) {
	db, err := storage.Open(context.Background(), storagetest.DSN(b, storage.EngineSQLite), storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	u, _ := newUsers(b, db, Options{})
	ctx := context.Background()
	members := make([]id.UserID, 10000)
	for i := range members {
		members[i] = id.NewUserID(fmt.Sprintf("member%05d", i), testServer)
	}
	for i := 0; i < len(members); i += 100 {
		user := mustAccount(b, u, fmt.Sprintf("member%05d", i), "").UserID
		if err := u.PutPushRule(ctx, user, PushContent, PushRule{RuleID: "lunch", Pattern: "lunch", Actions: []PushAction{}}, "", ""); err != nil {
			b.Fatal(err)
		}
	}
	if got := customRules(b, u, members...); len(got) != 100 {
		b.Fatalf("%d users with custom rules, want 100", len(got))
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := u.CustomPushRules(ctx, members); err != nil {
			b.Fatal(err)
		}
	}
}
