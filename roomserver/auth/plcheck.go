package auth

// checkPowerLevels is the m.room.power_levels rule (10 in the v1/v3/v12 texts, 9 in v6–v11):
// validation of the new content, then every change measured against the sender's current level.
func (r *rules) checkPowerLevels(ev Event, state State, create *createInfo, senderLevel int64) error {
	pr := r.powerLevels
	newC, prob := parsePowerLevels(ev.Content(), r.v, parseStrict)
	if prob != nil {
		return r.fail(n(pr, prob.sub), "%s", prob.reason)
	}
	sub := 2 // "no previous m.room.power_levels event" in the v1 text
	if r.v.ValidatePowerLevelInts() {
		sub = 4
	}
	if r.v.PrivilegedRoomCreators() {
		// v12 10.4: creators' power is fixed and may not be written down.
		for _, c := range create.creators {
			if _, ok := newC.users[string(c)]; ok {
				return r.fail(n(pr, sub), "users names room creator %s", c)
			}
		}
		sub++
	}
	oldEv := state.Get(typePowerLevels, "")
	if oldEv == nil {
		return nil
	}
	oldC, _ := parsePowerLevels(oldEv.Content(), r.v, parseFull)
	sub++ // users_default, events_default, state_default, ban, redact, kick, invite
	for i, name := range namedLevels {
		o, oOK := oldC.named[i], oldC.has[i]
		nv, nOK := newC.named[i], newC.has[i]
		if oOK == nOK && o == nv {
			continue
		}
		if oOK && o > senderLevel {
			return r.fail(n(pr, sub, 1), "current %s %d is above the sender's level %d", name, o, senderLevel)
		}
		if nOK && nv > senderLevel {
			return r.fail(n(pr, sub, 2), "new %s %d is above the sender's level %d", name, nv, senderLevel)
		}
	}
	sub++
	// events, and from v6 notifications: first entries changed or removed, then added or changed.
	tables := []struct {
		name     string
		old, new map[string]int64
	}{{"events", oldC.events, newC.events}}
	if r.v.NotificationsPowerLevels() {
		tables = append(tables, struct {
			name     string
			old, new map[string]int64
		}{"notifications", oldC.notifs, newC.notifs})
	}
	for _, t := range tables {
		if k, ok := firstBad(t.old, func(k string, o int64) bool {
			nv, ok := t.new[k]
			return (!ok || nv != o) && o > senderLevel
		}); ok {
			return r.fail(n(pr, sub, 1), "current %s level %d for %q is above the sender's level %d", t.name, t.old[k], k, senderLevel)
		}
	}
	sub++
	for _, t := range tables {
		if k, ok := firstBad(t.new, func(k string, nv int64) bool {
			o, ok := t.old[k]
			return (!ok || nv != o) && nv > senderLevel
		}); ok {
			return r.fail(n(pr, sub, 1), "new %s level %d for %q is above the sender's level %d", t.name, t.new[k], k, senderLevel)
		}
	}
	sub++
	sender := string(ev.Sender())
	if k, ok := firstBad(oldC.users, func(k string, o int64) bool {
		nv, ok := newC.users[k]
		return k != sender && (!ok || nv != o) && o >= senderLevel
	}); ok {
		return r.fail(n(pr, sub, 1), "cannot change the level %d of %s, not below the sender's level %d", oldC.users[k], k, senderLevel)
	}
	sub++
	if k, ok := firstBad(newC.users, func(k string, nv int64) bool {
		o, ok := oldC.users[k]
		return (!ok || nv != o) && nv > senderLevel
	}); ok {
		return r.fail(n(pr, sub, 1), "new level %d for %s is above the sender's level %d", newC.users[k], k, senderLevel)
	}
	return nil
}

// firstBad returns the smallest key of m whose entry is bad, so that the error names the same
// entry on every run without sorting large maps.
func firstBad(m map[string]int64, bad func(k string, v int64) bool) (string, bool) {
	var first string
	found := false
	for k, v := range m {
		if bad(k, v) && (!found || k < first) {
			first, found = k, true
		}
	}
	return first, found
}
