package search

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/notifier"
	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/storage/searchstore"
	"github.com/latticehq/lattice/storage/storagetest"
)

const server = "example.test"

var alice = id.UserID("@alice:" + server)

// env is a roomserver and a search component on one database.
type env struct {
	db    *storage.DB
	nf    *notifier.Notifier
	rooms *roomserver.Roomserver
}

func newEnv(t testing.TB, db *storage.DB) *env {
	nf := notifier.New()
	t.Cleanup(nf.Close)
	rs, err := roomserver.New(context.Background(), db, roomserver.Options{ServerName: server, SigningKey: federation.GenerateSigningKey(), Notifier: nf})
	if err != nil {
		t.Fatal(err)
	}
	return &env{db: db, nf: nf, rooms: rs}
}

func (e *env) search(t testing.TB) *Search {
	s, err := New(context.Background(), Options{DB: e.db, Rooms: e.rooms, Notifier: e.nf, ServerName: server})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func (e *env) send(t testing.TB, roomID id.RoomID, typ string, stateKey *string, content any) *roomserver.Template {
	t.Helper()
	js, _ := json.Marshal(content)
	tmpl := roomserver.Template{Type: typ, StateKey: stateKey, Sender: alice, Content: js}
	if _, err := e.rooms.Send(context.Background(), roomID, tmpl); err != nil {
		t.Fatal(err)
	}
	return &tmpl
}

func (s *Search) find(t testing.TB, word string) []searchstore.Match {
	t.Helper()
	ms, err := s.store.Matches(context.Background(), searchstore.Query{User: string(alice), Words: []string{word},
		Types: []string{"m.room.message", "m.room.name", "m.room.topic"}}, 100_000)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// indexAll indexes the whole output stream, however far behind the index is.
func (s *Search) indexAll(ctx context.Context) error {
	target, err := s.opts.Rooms.OutputPosition(ctx)
	if err != nil {
		return err
	}
	return s.indexUpTo(ctx, target)
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestConsumerCursor: the consumer is woken by the notifier, commits its cursor with the index,
// and a new instance on the same database goes on from there without indexing anything twice.
func TestConsumerCursor(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		e := newEnv(t, db)
		roomID, err := e.rooms.CreateRoom(ctx, roomserver.CreateRoomRequest{Creator: alice})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 2*batchSize + 10 {
			e.send(t, roomID, "m.room.message", nil, map[string]string{"msgtype": "m.text", "body": fmt.Sprint("counting ", i)})
		}
		s := e.search(t)
		s.Start()
		target, _ := e.rooms.OutputPosition(ctx)
		waitFor(t, "the consumer to catch up", func() bool { return s.cursor.Load() == target })
		// Woken by the notifier: no request asks it to catch up.
		e.send(t, roomID, "m.room.message", nil, map[string]string{"msgtype": "m.text", "body": "woken"})
		waitFor(t, "the consumer to index a new event", func() bool { return s.cursor.Load() == target+1 })
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if pos, err := s.store.Cursor(ctx, db, cursorName); err != nil || pos != target+1 {
			t.Fatalf("stored cursor %d %v, want %d", pos, err, target+1)
		}

		// Events sent while no consumer runs are indexed by the next, once.
		e.send(t, roomID, "m.room.message", nil, map[string]string{"msgtype": "m.text", "body": "counting offline"})
		s2 := e.search(t)
		if s2.cursor.Load() != target+1 {
			t.Fatalf("restarted cursor %d, want %d", s2.cursor.Load(), target+1)
		}
		if err := s2.indexAll(ctx); err != nil {
			t.Fatal(err)
		}
		if got := len(s2.find(t, "counting")); got != 2*batchSize+11 {
			t.Fatalf("found %d, want %d", got, 2*batchSize+11)
		}
	})
}

// TestIndexRules: encrypted rooms' messages, state keys of names and topics, and m.topic
// representations.
func TestIndexRules(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		e := newEnv(t, db)
		s := e.search(t)
		roomID, err := e.rooms.CreateRoom(ctx, roomserver.CreateRoomRequest{Creator: alice})
		if err != nil {
			t.Fatal(err)
		}
		empty, other := "", "other"
		e.send(t, roomID, "m.room.topic", &empty, map[string]any{"topic": "plain words",
			"m.topic": map[string]any{"m.text": []map[string]string{{"mimetype": "text/html", "body": "<b>htmlonly</b>"}, {"body": "richer words"}}}})
		e.send(t, roomID, "m.room.name", &other, map[string]string{"name": "notaname"})
		e.send(t, roomID, "m.room.message", nil, map[string]any{"body": 42})
		e.send(t, roomID, "m.room.message", nil, map[string]string{"body": "before encryption"})
		e.send(t, roomID, "m.room.encryption", &empty, map[string]string{"algorithm": "m.megolm.v1.aes-sha2"})
		e.send(t, roomID, "m.room.message", nil, map[string]string{"body": "unencrypted after encryption"})
		if err := s.indexAll(ctx); err != nil {
			t.Fatal(err)
		}
		for word, want := range map[string]int{"plain": 1, "richer": 1, "htmlonly": 0, "notaname": 0, "encryption": 1, "unencrypted": 0} {
			if got := len(s.find(t, word)); got != want {
				t.Errorf("%q: %d results, want %d", word, got, want)
			}
		}
	})
}

func TestRedactionApplies(t *testing.T) {
	target := &searchstore.Event{RoomID: "!r:x", Sender: "@a:one"}
	for _, c := range []struct {
		r    searchstore.Redaction
		want bool
	}{
		{searchstore.Redaction{RoomID: "!r:x", Sender: "@b:one"}, true},
		{searchstore.Redaction{RoomID: "!r:x", Sender: "@b:two"}, false},
		{searchstore.Redaction{RoomID: "!r:x", Sender: "@b:two", Powerful: true}, true},
		{searchstore.Redaction{RoomID: "!other:x", Sender: "@b:one", Powerful: true}, false},
	} {
		if got := redactionApplies(c.r, target); got != c.want {
			t.Errorf("%+v: %v, want %v", c.r, got, c.want)
		}
	}
}

func TestBatchToken(t *testing.T) {
	for _, tok := range []batchToken{
		{Order: orderRank, Offset: 20},
		{Order: orderRecent, Before: 99, Key: groupRoom, Value: "!r:x"},
	} {
		got, err := parseBatch(tok.String())
		if err != nil || got != tok {
			t.Errorf("%+v: %+v %v", tok, got, err)
		}
	}
	for _, bad := range []string{"", "!!", batchToken{Order: "oldest"}.String(), batchToken{Order: orderRecent}.String(),
		batchToken{Order: orderRank, Offset: -1}.String(), batchToken{Order: orderRank, Key: groupRoom}.String(),
		batchToken{Order: orderRank, Key: "type", Value: "x"}.String(), "eyJvIjoicmFuayIsIngiOjF9"} {
		if _, err := parseBatch(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseCriteriaTypes(t *testing.T) {
	term := "x"
	notName := []string{"m.room.name"}
	p, err := parseCriteria(&roomEventsCriteria{SearchTerm: &term, Filter: &roomEventFilter{NotTypes: notName}}, nil)
	if err != nil || !slices.Equal(p.q.Types, []string{"m.room.message", "m.room.topic"}) {
		t.Fatalf("not_types: %+v %v", p, err)
	}
	p, err = parseCriteria(&roomEventsCriteria{SearchTerm: &term, Keys: []string{"content.name"}, Filter: &roomEventFilter{Types: &[]string{"m.room.message"}}}, nil)
	if err != nil || len(p.q.Types) != 0 {
		t.Fatalf("keys and types disjoint: %+v %v", p, err)
	}
	tok := batchToken{Order: orderRecent, Before: 5, Key: groupSender, Value: "@b:x"}
	p, err = parseCriteria(&roomEventsCriteria{SearchTerm: &term, OrderBy: orderRecent, Filter: &roomEventFilter{Senders: &[]string{"@a:x"}}}, &tok)
	if err != nil || p.q.Senders == nil || len(p.q.Senders) != 0 || p.q.Before != 5 {
		t.Fatalf("group token outside the filter: %+v %v", p, err)
	}
}
