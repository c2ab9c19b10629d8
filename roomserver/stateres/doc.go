// Package stateres resolves conflicting room states with the state resolution algorithm of the
// room version: v1 (rooms/v1.md "State resolution"), v2 (rooms/v2.md "State resolution") and
// v2.1 (rooms/v12.md "State resolution").
//
// Resolution looks at the whole of each state set only to split it into unconflicted and
// conflicted state; otherwise it works on the conflicted events and auth chains, which it asks
// of an Events implementation so that storage can answer from an index instead of walking the
// room's history.
//
// Where the spec text leaves room for reading, this package reads it as follows.
//
//   - v1: a conflict is a key for which the states hold different events; a key held by some
//     states only, all with one event, goes into R unchecked. Conflicts of m.room.member are
//     resolved one state key at a time, in state key order, each seeing R as resolved so far.
//     An ordinary conflict none of whose events R allows leaves the key out.
//   - Iterative auth checks (v2, v2.1) run the authorisation rules against the state being
//     built; a key missing there is taken from the event's auth events unless storage says that
//     auth event was rejected. The rules about the event's own auth_events list are not run
//     again. From room version 12 the create event comes from the room ID.
//   - The reverse topological power ordering respects the whole auth DAG: an event follows every
//     event of the set in its auth chain, even through auth events outside the set.
//   - v2.1 starts the checks from the empty state map, so an unconflicted m.room.power_levels
//     event is not in the partially resolved state and the mainline of step 3 is then empty.
package stateres
