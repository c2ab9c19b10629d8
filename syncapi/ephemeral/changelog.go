package ephemeral

import (
	"sort"

	"maunium.net/go/mautrix/id"
)

// change is one position of a stream and the room it touched.
type change struct {
	pos  int64
	room id.RoomID
	// only is set when the change concerns one user alone (a private receipt).
	only id.UserID
}

type changeKey struct {
	room id.RoomID
	only id.UserID
}

// changeLog remembers which rooms recent positions of a stream touched, so that a sync learns
// whether one of its rooms changed since its token with a map lookup per room, without reading
// the database. It forgets its oldest entries; floor is the highest position forgotten (or the
// stream's position when the process started), and a token below it must be answered some
// other way. Callers serialise access.
type changeLog struct {
	entries []change // ascending pos
	// last is each room's (and private change's) latest position among entries.
	last  map[changeKey]int64
	floor int64
	limit int // entries kept at most
}

func newChangeLog(floor int64, limit int) *changeLog {
	return &changeLog{floor: floor, limit: limit, last: map[changeKey]int64{}}
}

// add appends a change; its position must not be below the last one's.
func (l *changeLog) add(c change) {
	l.entries = append(l.entries, c)
	l.last[changeKey{c.room, c.only}] = c.pos
	if len(l.entries) > l.limit {
		l.forget(len(l.entries) - l.limit*3/4)
	}
}

// forgetBefore forgets the entries at positions below pos.
func (l *changeLog) forgetBefore(pos int64) {
	l.forget(sort.Search(len(l.entries), func(i int) bool { return l.entries[i].pos >= pos }))
}

// forget drops the n oldest entries.
func (l *changeLog) forget(n int) {
	if n <= 0 {
		return
	}
	for _, c := range l.entries[:n] {
		if k := (changeKey{c.room, c.only}); l.last[k] == c.pos {
			delete(l.last, k)
		}
	}
	l.floor = max(l.floor, l.entries[n-1].pos)
	// Reslicing is O(1); the forgotten front of the array is released when add next outgrows
	// the shrunken capacity and append copies only the live entries.
	clear(l.entries[:n]) // drop the room IDs it holds
	l.entries = l.entries[n:]
}

// covers reports whether every change after from is remembered.
func (l *changeLog) covers(from int64) bool { return from >= l.floor }

// any reports whether some change has a position in (from, to].
func (l *changeLog) any(from, to int64) bool {
	i := sort.Search(len(l.entries), func(i int) bool { return l.entries[i].pos > from })
	return i < len(l.entries) && l.entries[i].pos <= to
}

// changedAfter reports whether the room changed after from for user (pass "" to leave private
// changes out); from must be covered. A change after the caller's upper bound also counts, which
// costs that caller a look at the room, never a miss.
func (l *changeLog) changedAfter(room id.RoomID, user id.UserID, from int64) bool {
	if l.last[changeKey{room, ""}] > from {
		return true
	}
	return user != "" && l.last[changeKey{room, user}] > from
}
