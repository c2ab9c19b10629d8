package ephemeral

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/internal/notifier"
	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/userapi"
)

// fixture is the component on a real database with real room and user components, served
// over HTTP, and a public room that alice created and bob joined; carol is in no room.
type fixture struct {
	t     *testing.T
	db    *storage.DB
	nf    *notifier.Notifier
	rooms *roomserver.Roomserver
	users *userapi.Users
	api   *API
	srv   *httptest.Server
	room  id.RoomID
	token map[id.UserID]string
}

const (
	alice = id.UserID("@alice:example.test")
	bob   = id.UserID("@bob:example.test")
	carol = id.UserID("@carol:example.test")
)

func newFixture(t *testing.T, db *storage.DB) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{t: t, db: db, nf: notifier.New(), token: map[id.UserID]string{}}
	t.Cleanup(f.nf.Close)
	var err error
	f.users, err = userapi.New(ctx, db, userapi.Options{ServerName: "example.test", BcryptCost: 4, Notifier: f.nf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.users.Close() })
	f.rooms, err = roomserver.New(ctx, db, roomserver.Options{ServerName: "example.test", SigningKey: federation.GenerateSigningKey(), Notifier: f.nf})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []id.UserID{alice, bob, carol} {
		if _, err := f.users.CreateAccount(ctx, userapi.NewAccount{Localpart: u.Localpart()}); err != nil {
			t.Fatal(err)
		}
		_, tokens, err := f.users.CreateDevice(ctx, userapi.NewDevice{UserID: u})
		if err != nil {
			t.Fatal(err)
		}
		f.token[u] = tokens.AccessToken
	}
	f.room, err = f.rooms.CreateRoom(ctx, roomserver.CreateRoomRequest{Creator: alice, Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	f.send(bob, "m.room.member", ptr(string(bob)), map[string]any{"membership": "join"})
	f.start()
	return f
}

func ptr[T any](v T) *T { return &v }

// start builds the component and its HTTP server, as a (re)started process does.
func (f *fixture) start() {
	f.t.Helper()
	api, err := New(context.Background(), Options{DB: f.db, Rooms: f.rooms, Users: f.users, Notifier: f.nf})
	if err != nil {
		f.t.Fatal(err)
	}
	r := httpapi.NewRouter()
	api.Register(r)
	f.api, f.srv = api, httptest.NewServer(r)
	f.t.Cleanup(f.stop)
}

func (f *fixture) stop() {
	if f.srv != nil {
		f.srv.Close()
		f.api.Close()
		f.srv = nil
	}
}

// send places an event in the fixture's room.
func (f *fixture) send(sender id.UserID, typ string, stateKey *string, content any) id.EventID {
	f.t.Helper()
	raw, _ := json.Marshal(content)
	ev, err := f.rooms.Send(context.Background(), f.room, roomserver.Template{Type: typ, StateKey: stateKey, Sender: sender, Content: raw})
	if err != nil {
		f.t.Fatal(err)
	}
	return ev.EventID()
}

func (f *fixture) message(sender id.UserID) id.EventID {
	f.t.Helper()
	return f.send(sender, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "hi"})
}

// do sends a request as user ("" for none) and returns the status and the errcode ("" when the
// answer is no error).
func (f *fixture) do(user id.UserID, method, path, body string) (int, string) {
	f.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewBufferString(body)
	}
	req, err := http.NewRequest(method, f.srv.URL+"/_matrix/client/v3"+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+f.token[user])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct {
		Errcode string `json:"errcode"`
	}
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, &e); err != nil {
		f.t.Fatalf("%s %s answered %d with %q, not JSON", method, path, resp.StatusCode, data)
	}
	return resp.StatusCode, e.Errcode
}

// ok sends a request that must succeed.
func (f *fixture) ok(user id.UserID, method, path, body string) {
	f.t.Helper()
	if status, code := f.do(user, method, path, body); status != http.StatusOK {
		f.t.Fatalf("%s %s: %d %s", method, path, status, code)
	}
}

func roomserverReq(creator id.UserID) roomserver.CreateRoomRequest {
	return roomserver.CreateRoomRequest{Creator: creator, Preset: "public_chat"}
}

// sendIn places a message in another room.
func (f *fixture) sendIn(room id.RoomID, sender id.UserID) id.EventID {
	f.t.Helper()
	ev, err := f.rooms.Send(context.Background(), room, roomserver.Template{Type: "m.room.message", Sender: sender, Content: json.RawMessage(`{"msgtype":"m.text","body":"x"}`)})
	if err != nil {
		f.t.Fatal(err)
	}
	return ev.EventID()
}
