package roomserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/roomserver/pdu"
	"github.com/latticehq/lattice/storage/roomstore"
)

// TestResolveReducedMatchesWhole checks that resolving only the conflicted keys and those the
// checks consult gives the same state as resolving the whole states, on rooms whose branches
// are made of random power levels changes, kicks, bans, joins, leaves, join rules, names and
// messages from users of different power, many of them rejected or soft-failed on the way in.
func TestResolveReducedMatchesWhole(t *testing.T) {
	forVersions(t, func(t *testing.T, f *fed) {
		seeds := uint64(8)
		if testing.Short() {
			seeds = 2
		}
		for seed := range seeds {
			if seed > 0 {
				f = newFed(t, f.db, f.version)
			}
			rng := rand.New(rand.NewPCG(seed, 42))
			members := []id.UserID{bob, carol, dave}
			var watchers []id.UserID
			for _, u := range members {
				f.joinNow(u)
			}
			// Members who only watch: what the reduction leaves out, unless they are targeted.
			for i := range 40 {
				u := id.UserID(fmt.Sprintf("@watcher%d:example.test", i))
				if _, err := f.rs.Send(f.ctx, f.roomID, Template{Type: "m.room.member", StateKey: ptr(string(u)), Sender: u, Content: json.RawMessage(`{"membership":"join"}`)}); err != nil {
					t.Fatal(err)
				}
				if i%10 == 0 {
					watchers = append(watchers, u) // targets of kicks and bans
				}
			}
			if _, err := f.rs.Send(f.ctx, f.roomID, Template{Type: "m.room.power_levels", StateKey: ptr(""), Sender: alice,
				Content: randomPowerLevels(f.version, rng, members)}); err != nil {
				t.Fatal(err)
			}
			base := f.extremities()[0]
			tips := []*pdu.Event{base, base, base}
			var snaps []int64
			rejectedOrSoftFailed := 0
			for i := range 60 {
				b := rng.IntN(len(tips))
				prevs := []*pdu.Event{tips[b]}
				if o := rng.IntN(len(tips)); o != b && tips[o] != tips[b] && rng.IntN(4) == 0 {
					prevs = append(prevs, tips[o]) // a merge
				}
				ev := f.randomEvent(rng, i, prevs, &members, watchers)
				err := f.rs.InputRemote(f.ctx, ev, nil)
				if err != nil && !errors.Is(err, ErrRejected) {
					t.Fatalf("event %d: %v", i, err)
				}
				if h := f.header(ev.EventID()); h.Rejected || h.SoftFailed {
					rejectedOrSoftFailed++
				}
				tips[b] = ev
				snaps = append(snaps, f.header(ev.EventID()).StateBefore)
			}
			merged, keptKeys, allKeys := 0, 0, 0
			for range 30 {
				n := 2 + rng.IntN(2)
				inputs := make([]*numState, n)
				for i := range inputs {
					var err error
					if inputs[i], err = f.rs.loadNumState(f.ctx, snaps[rng.IntN(len(snaps))]); err != nil {
						t.Fatal(err)
					}
				}
				whole, err := f.rs.resolve(f.ctx, f.version, inputs, nil, nil, false)
				if err != nil {
					t.Fatal(err)
				}
				reduced, err := f.rs.resolve(f.ctx, f.version, inputs, nil, nil, true)
				if err != nil {
					t.Fatal(err)
				}
				if !maps.Equal(whole.state, reduced.state) {
					t.Fatalf("seed %d: reduced resolution differs:\nwhole   %v\nreduced %v", seed, whole.state, reduced.state)
				}
				if len(diffStates(inputs[0].state, whole.state)) > 0 && len(diffStates(inputs[1].state, whole.state)) > 0 {
					merged++
				}
				states := make([]roomstore.State, n)
				for i, in := range inputs {
					states[i] = in.state
				}
				if _, kept, err := newStoreEvents(f.rs, nil, nil).reduceStates(f.ctx, f.version, states); err == nil {
					keptKeys, allKeys = keptKeys+len(kept), allKeys+len(whole.state)
				}
			}
			if merged == 0 {
				t.Errorf("seed %d: no resolution differed from its inputs", seed)
			}
			if keptKeys*2 > allKeys {
				t.Errorf("seed %d: stateres saw %d of %d keys", seed, keptKeys, allKeys)
			}
			t.Logf("seed %d: %d of 30 resolutions differ from their first two inputs; stateres saw %d of %d keys", seed, merged, keptKeys, allKeys)
			t.Logf("seed %d: %d of 60 events rejected or soft-failed", seed, rejectedOrSoftFailed)
		}
	})
}

func randomPowerLevels(version id.RoomVersion, rng *rand.Rand, members []id.UserID) json.RawMessage {
	users := map[id.UserID]int{}
	if !version.PrivilegedRoomCreators() {
		users[alice] = 100
	}
	levels := []int{0, 50, 100}
	for _, u := range members {
		users[u] = levels[rng.IntN(len(levels))]
	}
	users[bob] = 100 // someone remote can always act
	b, _ := json.Marshal(map[string]any{"users": users, "state_default": levels[rng.IntN(2)+1], "ban": 50, "kick": 50,
		"events": map[string]int{"m.room.power_levels": 100, "m.room.join_rules": 50}})
	return b
}

// randomEvent builds a random event of a remote user on prev, authorised by the state after it.
func (f *fed) randomEvent(rng *rand.Rand, i int, prevs []*pdu.Event, members *[]id.UserID, watchers []id.UserID) *pdu.Event {
	st := f.stateAfter(prevs[0])
	ms := *members
	sender := ms[rng.IntN(len(ms))]
	target := ms[rng.IntN(len(ms))]
	if rng.IntN(3) == 0 {
		target = watchers[rng.IntN(len(watchers))]
	}
	switch rng.IntN(9) {
	case 0:
		u := id.UserID(fmt.Sprintf("@new%d:remote.test", i))
		*members = append(*members, u)
		return f.join(u, prevs, st)
	case 1:
		return f.build(sender, "m.room.member", ptr(string(target)), `{"membership":"leave"}`, prevs, st)
	case 2:
		return f.build(sender, "m.room.member", ptr(string(target)), `{"membership":"ban"}`, prevs, st)
	case 3:
		return f.join(sender, prevs, st)
	case 4:
		return f.build(sender, "m.room.power_levels", ptr(""), string(randomPowerLevels(f.version, rng, ms)), prevs, st)
	case 5:
		rule := []string{"public", "invite"}[rng.IntN(2)]
		return f.build(sender, "m.room.join_rules", ptr(""), `{"join_rule":"`+rule+`"}`, prevs, st)
	case 7:
		return f.build(sender, "m.room.member", ptr(string(target)), `{"membership":"ban"}`, prevs, st)
	case 6:
		return f.build(sender, "m.room.name", ptr(""), fmt.Sprintf(`{"name":"n%d"}`, i), prevs, st)
	}
	return f.message(sender, "hi", prevs, st)
}
