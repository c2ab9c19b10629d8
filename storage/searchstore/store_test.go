package searchstore

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/storagetest"
)

// fixture writes events and memberships through the same calls the consumer makes.
type fixture struct {
	t   *testing.T
	s   *Store
	db  *storage.DB
	pos int64
}

func newFixture(t *testing.T, db *storage.DB) *fixture {
	s, err := Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, s: s, db: db}
}

func (f *fixture) tx(fn func(tx *storage.Tx) error) {
	f.t.Helper()
	if err := f.db.WithTx(context.Background(), fn); err != nil {
		f.t.Fatal(err)
	}
}

// event stores a searchable event at the next position and returns that position.
func (f *fixture) event(room, sender, typ, vis, text string) int64 {
	f.t.Helper()
	f.pos++
	e := &Event{Pos: f.pos, EventID: fmt.Sprintf("$e%d", f.pos), RoomID: room, Sender: sender, Type: typ, Visibility: vis, Text: text}
	f.tx(func(tx *storage.Tx) error { return f.s.InsertEvent(context.Background(), tx, e) })
	return f.pos
}

// member stores a member event and the membership change it makes.
func (f *fixture) member(room, user, membership string) int64 {
	f.t.Helper()
	f.pos++
	e := &Event{Pos: f.pos, EventID: fmt.Sprintf("$e%d", f.pos), RoomID: room, Sender: user, Type: "m.room.member", StateKey: &user, Visibility: "shared"}
	f.tx(func(tx *storage.Tx) error {
		if err := f.s.InsertEvent(context.Background(), tx, e); err != nil {
			return err
		}
		if err := f.s.SetJoined(context.Background(), tx, room, user, membership == "join"); err != nil {
			return err
		}
		return f.s.SetMembership(context.Background(), tx, user, room, membership, f.pos)
	})
	return f.pos
}

func ids(ms []Match) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.EventID)
	}
	return out
}

func TestCursorAndRooms(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		f := newFixture(t, db)
		if pos, err := f.s.Cursor(ctx, db, "search"); err != nil || pos != 0 {
			t.Fatalf("new cursor: %d %v", pos, err)
		}
		f.tx(func(tx *storage.Tx) error { return f.s.SetCursor(ctx, tx, "search", 7) })
		f.tx(func(tx *storage.Tx) error { return f.s.SetCursor(ctx, tx, "search", 9) })
		if pos, err := f.s.Cursor(ctx, db, "search"); err != nil || pos != 9 {
			t.Fatalf("cursor: %d %v", pos, err)
		}
		r, err := f.s.Room(ctx, db, "!r:x")
		if err != nil || r.Visibility != "shared" || r.Encrypted {
			t.Fatalf("unknown room: %+v %v", r, err)
		}
		r.Visibility, r.Encrypted, r.PowerEvent = "joined", true, "$pl"
		f.tx(func(tx *storage.Tx) error { return f.s.SetRoom(ctx, tx, r) })
		if got, err := f.s.Room(ctx, db, "!r:x"); err != nil || got != r {
			t.Fatalf("room: %+v %v", got, err)
		}
	})
}

func TestSearchMatchesWordsByPrefix(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		f := newFixture(t, db)
		f.member("!r:x", "@a:x", "join")
		m1 := f.event("!r:x", "@a:x", "m.room.message", "shared", "The Martians have landed")
		f.event("!r:x", "@a:x", "m.room.message", "shared", "nothing to see")
		m3 := f.event("!r:x", "@b:y", "m.room.message", "shared", "martian cuisine, and martian\x00 music")
		f.event("!r:x", "@a:x", "m.room.name", "shared", "Mars base")
		q := Query{User: "@a:x", Words: Words("MART"), Types: []string{"m.room.message"}}
		got, err := f.s.Matches(ctx, q, 10)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{fmt.Sprintf("$e%d", m3), fmt.Sprintf("$e%d", m1)}; !slices.Equal(ids(got), want) {
			t.Fatalf("recent: %v, want %v", ids(got), want)
		}
		// Two words: both must match.
		q.Words = Words("martian music")
		if got, _ := f.s.Matches(ctx, q, 10); len(got) != 1 || got[0].Pos != m3 {
			t.Fatalf("two words: %v", ids(got))
		}
		// Ranked: the event with more hits ranks higher.
		q.Words = Words("martian")
		ranked, err := f.s.Matches(ctx, q, 100)
		if err != nil || len(ranked) != 2 {
			t.Fatalf("ranked: %v %v", ranked, err)
		}
		if ranked[0].Pos != m3 || ranked[0].Rank <= ranked[1].Rank || ranked[1].Rank <= 0 {
			t.Fatalf("ranks: %+v", ranked)
		}
		if n, err := f.s.Count(ctx, q); err != nil || n != 2 {
			t.Fatalf("count: %d %v", n, err)
		}
		// Types restrict the keys searched.
		q.Words, q.Types = Words("mars"), []string{"m.room.name"}
		if got, _ := f.s.Matches(ctx, q, 10); len(got) != 1 {
			t.Fatalf("name: %v", ids(got))
		}
		q.Types = []string{"m.room.message"}
		if got, _ := f.s.Matches(ctx, q, 10); len(got) != 0 {
			t.Fatalf("name searched as body: %v", ids(got))
		}
		// Filters and keyset pagination.
		q = Query{User: "@a:x", Words: Words("martian"), Types: []string{"m.room.message"}}
		q.Senders = []string{"@b:y"}
		if got, _ := f.s.Matches(ctx, q, 10); len(got) != 1 || got[0].Pos != m3 {
			t.Fatalf("senders: %v", ids(got))
		}
		q.Senders, q.NotSenders = nil, []string{"@b:y"}
		if got, _ := f.s.Matches(ctx, q, 10); len(got) != 1 || got[0].Pos != m1 {
			t.Fatalf("not_senders: %v", ids(got))
		}
		q.NotSenders, q.NotRooms = nil, []string{"!r:x"}
		if got, _ := f.s.Matches(ctx, q, 10); len(got) != 0 {
			t.Fatalf("not_rooms: %v", ids(got))
		}
		q.NotRooms, q.Rooms = nil, []string{}
		if got, _ := f.s.Matches(ctx, q, 10); len(got) != 0 {
			t.Fatalf("empty rooms: %v", ids(got))
		}
		q.Rooms, q.Before = nil, m3
		if got, _ := f.s.Matches(ctx, q, 10); len(got) != 1 || got[0].Pos != m1 {
			t.Fatalf("before: %v", ids(got))
		}
		groups, err := f.s.GroupsMatching(ctx, q, "sender", []string{"@a:x", "@b:y"})
		if err != nil || !groups["@a:x"] || groups["@b:y"] {
			t.Fatalf("groups: %v %v", groups, err)
		}
		// Words that are query syntax elsewhere are plain words here.
		q = Query{User: "@a:x", Words: Words(`"and" OR NOT near* (`), Types: []string{"m.room.message"}}
		if _, err := f.s.Matches(ctx, q, 10); err != nil {
			t.Fatalf("syntax words: %v", err)
		}
		// Diacritics (SQLite folds them; PostgreSQL's simple configuration does not).
		f.event("!r:x", "@a:x", "m.room.message", "shared", "Café Ünïcode ИСТОРИЯ")
		q.Words = Words("истор")
		if got, _ := f.s.Matches(ctx, q, 10); len(got) != 1 {
			t.Fatalf("cyrillic: %v", ids(got))
		}
	})
}

func TestSearchVisibility(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		f := newFixture(t, db)
		msg := func(room, vis string) int64 { return f.event(room, "@o:x", "m.room.message", vis, "secret") }
		search := func(user string) []int64 {
			t.Helper()
			got, err := f.s.Matches(ctx, Query{User: user, Words: []string{"secret"}, Types: []string{"m.room.message"}}, 100)
			if err != nil {
				t.Fatal(err)
			}
			var out []int64
			for _, m := range got {
				out = append(out, m.Pos)
			}
			slices.Sort(out)
			return out
		}
		// Room 1, history "shared": what was sent before a join is visible once joined; what
		// is sent after leaving is not.
		f.member("!1:x", "@o:x", "join")
		s1 := msg("!1:x", "shared")
		f.member("!1:x", "@u:x", "join")
		s2 := msg("!1:x", "shared")
		f.member("!1:x", "@u:x", "leave")
		msg("!1:x", "shared")
		// Room 2, history "joined": only what is sent while joined.
		f.member("!2:x", "@o:x", "join")
		msg("!2:x", "joined")
		f.member("!2:x", "@u:x", "invite")
		msg("!2:x", "joined")
		f.member("!2:x", "@u:x", "join")
		j := msg("!2:x", "joined")
		// Room 3, history "invited": from the invite on.
		f.member("!3:x", "@o:x", "join")
		msg("!3:x", "invited")
		f.member("!3:x", "@u:x", "invite")
		i1 := msg("!3:x", "invited")
		f.member("!3:x", "@u:x", "join")
		f.member("!3:x", "@u:x", "join") // a new display name
		i2 := msg("!3:x", "invited")
		// Room 4: world_readable history of a room the user was in; room 5: never in it.
		w := msg("!4:x", "world_readable")
		f.member("!4:x", "@u:x", "join")
		f.member("!4:x", "@u:x", "leave")
		msg("!5:x", "world_readable")
		f.member("!5:x", "@o:x", "join")

		want := []int64{s1, s2, j, i1, i2, w}
		slices.Sort(want)
		if got := search("@u:x"); !slices.Equal(got, want) {
			t.Fatalf("visible to @u: %v, want %v", got, want)
		}
		if got := search("@nobody:x"); len(got) != 0 {
			t.Fatalf("visible to a stranger: %v", got)
		}
		spans, err := f.s.Spans(ctx, db, "@u:x", "!3:x")
		if err != nil || len(spans) != 2 || spans[0].Open() || !spans[1].Open() || spans[1].Membership != "join" {
			t.Fatalf("spans: %+v %v", spans, err)
		}
		// Context honours the same rules: in room 1 @u sees nothing past the leave.
		prev, next, err := f.s.Context(ctx, "@u:x", "!1:x", s2, 10, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(prev) != 3 || prev[0].Type != "m.room.member" || prev[2].Pos != 1 || len(next) != 1 || next[0].Type != "m.room.member" {
			t.Fatalf("context: %+v / %+v", prev, next)
		}
		if ev, err := f.s.MemberBefore(ctx, "!1:x", "@u:x", s2); err != nil || ev == nil || ev.Pos != s1+1 {
			t.Fatalf("member before: %+v %v", ev, err)
		}
	})
}

func TestRedaction(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		f := newFixture(t, db)
		f.member("!r:x", "@a:x", "join")
		p := f.event("!r:x", "@a:x", "m.room.message", "shared", "to be removed")
		q := Query{User: "@a:x", Words: []string{"removed"}, Types: []string{"m.room.message"}}
		if got, _ := f.s.Matches(ctx, q, 10); len(got) != 1 {
			t.Fatalf("before redaction: %v", got)
		}
		e, err := f.s.EventHeader(ctx, db, fmt.Sprintf("$e%d", p))
		if err != nil || e == nil || e.Sender != "@a:x" || e.Redacted {
			t.Fatalf("header: %+v %v", e, err)
		}
		f.tx(func(tx *storage.Tx) error {
			if err := f.s.AddRedaction(ctx, tx, Redaction{TargetID: e.EventID, RedactionID: "$r", RoomID: "!r:x", Sender: "@a:x"}); err != nil {
				return err
			}
			return f.s.Redact(ctx, tx, e)
		})
		if got, _ := f.s.Matches(ctx, q, 10); len(got) != 0 {
			t.Fatalf("after redaction: %v", got)
		}
		if n, _ := f.s.Count(ctx, q); n != 0 {
			t.Fatalf("count after redaction: %d", n)
		}
		red, err := f.s.Redacted(ctx, []string{e.EventID, "$other"})
		if err != nil || !red[e.EventID] || len(red) != 1 {
			t.Fatalf("redacted: %v %v", red, err)
		}
		rs, err := f.s.Redactions(ctx, db, e.EventID)
		if err != nil || len(rs) != 1 || rs[0].RedactionID != "$r" || rs[0].Powerful {
			t.Fatalf("redactions: %+v %v", rs, err)
		}
		// A redacted event arriving later is stored without its text.
		f.pos++
		late := &Event{Pos: f.pos, EventID: "$late", RoomID: "!r:x", Sender: "@a:x", Type: "m.room.message", Visibility: "shared", Text: "removed too", Redacted: true}
		f.tx(func(tx *storage.Tx) error { return f.s.InsertEvent(ctx, tx, late) })
		if got, _ := f.s.Matches(ctx, q, 10); len(got) != 0 {
			t.Fatalf("late redacted: %v", got)
		}
	})
}

func TestUserDirectory(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		f := newFixture(t, db)
		profile := func(user, name string, local bool) {
			f.tx(func(tx *storage.Tx) error {
				return f.s.SetProfile(ctx, tx, DirUser{UserID: user, DisplayName: name, AvatarURL: "mxc://x/" + name}, local)
			})
		}
		f.member("!private:x", "@me:x", "join")
		f.member("!private:x", "@alice.smith:x", "join")
		profile("@alice.smith:x", "Alice Smith", true)
		f.member("!public:x", "@alicia:y", "join")
		profile("@alicia:y", "Alicia Keys", false)
		f.member("!hidden:x", "@alina:x", "join")
		profile("@alina:x", "", true)
		f.member("!published:x", "@alfred:y", "join")
		profile("@alfred:y", "Alfred", false)
		f.member("!private:x", "@left:x", "join")
		profile("@left:x", "Ali Left", true)
		f.member("!private:x", "@left:x", "leave")
		f.tx(func(tx *storage.Tx) error {
			return f.s.SetRoom(ctx, tx, Room{ID: "!public:x", Visibility: "shared", JoinRule: "public"})
		})
		search := func(q DirQuery) []string {
			t.Helper()
			q.Searcher = "@me:x"
			if q.Limit == 0 {
				q.Limit = 10
			}
			us, err := f.s.SearchUsers(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, u := range us {
				out = append(out, u.UserID)
			}
			return out
		}
		if got := search(DirQuery{Words: Words("ali")}); !slices.Equal(got, []string{"@alice.smith:x", "@alicia:y"}) {
			t.Fatalf("ali: %v", got)
		}
		if got := search(DirQuery{Words: Words("ali"), Published: []string{"!published:x"}}); len(got) != 2 {
			t.Fatalf("ali with a published room: %v", got)
		}
		if got := search(DirQuery{Words: Words("alf"), Published: []string{"!published:x"}}); !slices.Equal(got, []string{"@alfred:y"}) {
			t.Fatalf("alf published: %v", got)
		}
		if got := search(DirQuery{Words: Words("SMI")}); !slices.Equal(got, []string{"@alice.smith:x"}) {
			t.Fatalf("smi: %v", got)
		}
		if got := search(DirQuery{Words: Words("keys alicia")}); !slices.Equal(got, []string{"@alicia:y"}) {
			t.Fatalf("two words: %v", got)
		}
		if got := search(DirQuery{Words: Words("lice")}); len(got) != 0 {
			t.Fatalf("inside a word: %v", got)
		}
		// Every local user the directory knows, and exact matches first.
		if got := search(DirQuery{Words: Words("ali"), AllLocal: true}); !slices.Equal(got, []string{"@alice.smith:x", "@alicia:y", "@left:x", "@alina:x"}) {
			t.Fatalf("all local: %v", got)
		}
		if got := search(DirQuery{Words: Words("alina"), Term: "alina", AllLocal: true}); !slices.Equal(got, []string{"@alina:x"}) {
			t.Fatalf("exact: %v", got)
		}
		if got := search(DirQuery{Words: Words("ali"), AllLocal: true, Limit: 1}); len(got) != 1 {
			t.Fatalf("limit: %v", got)
		}
		// The searcher finds themself only through a public room.
		profile("@me:x", "Me Myself", true)
		if got := search(DirQuery{Words: Words("myself")}); len(got) != 0 {
			t.Fatalf("self through a private room: %v", got)
		}
		f.member("!public:x", "@me:x", "join")
		if got := search(DirQuery{Words: Words("myself")}); !slices.Equal(got, []string{"@me:x"}) {
			t.Fatalf("self through a public room: %v", got)
		}
		known, err := f.s.KnownUsers(ctx, []string{"@alina:x", "@zed:x"})
		if err != nil || !known["@alina:x"] || known["@zed:x"] {
			t.Fatalf("known: %v %v", known, err)
		}
	})
}

func TestWords(t *testing.T) {
	for in, want := range map[string][]string{
		"Hello, World! hello":    {"hello", "world"},
		"@alice.smith:example":   {"alice", "smith", "example"},
		"  ":                     nil,
		"e\u0301t\u00e9 \u0301":  {"e\u0301t\u00e9"},
		"user_name 42x":          {"user", "name", "42x"},
		"\"and\" OR NOT near* (": {"and", "or", "not", "near"},
	} {
		if got := Words(in); !slices.Equal(got, want) {
			t.Errorf("Words(%q) = %q, want %q", in, got, want)
		}
	}
}
