package todevice

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"go.uber.org/goleak"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/latticehq/lattice/internal/httpapi"
	"github.com/latticehq/lattice/internal/notifier"
	"github.com/latticehq/lattice/roomserver"
	"github.com/latticehq/lattice/storage"
	"github.com/latticehq/lattice/syncapi/synctypes"
	"github.com/latticehq/lattice/userapi"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const server = "example.test"

// env is a user component, a roomserver and the to-device component on one database, with the
// consumers running.
type env struct {
	db     *storage.DB
	nf     *notifier.Notifier
	users  *userapi.Users
	rooms  *roomserver.Roomserver
	td     *API
	router *mux.Router
}

func newEnv(t testing.TB, db *storage.DB) *env {
	t.Helper()
	ctx := t.Context()
	nf := notifier.New()
	t.Cleanup(nf.Close)
	users, err := userapi.New(ctx, db, userapi.Options{ServerName: server, BcryptCost: 4, Notifier: nf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { users.Close() })
	rooms, err := roomserver.New(ctx, db, roomserver.Options{ServerName: server, SigningKey: federation.GenerateSigningKey(), Notifier: nf})
	if err != nil {
		t.Fatal(err)
	}
	td, err := New(ctx, Options{DB: db, Rooms: rooms, Users: users, Notifier: nf, ServerName: server})
	if err != nil {
		t.Fatal(err)
	}
	td.Start()
	t.Cleanup(td.Close)
	r := httpapi.NewRouter()
	td.Register(r)
	return &env{db: db, nf: nf, users: users, rooms: rooms, td: td, router: r}
}

// login is a logged-in device.
type login struct {
	user   id.UserID
	device id.DeviceID
	token  string
}

func (e *env) account(t testing.TB, localpart string) id.UserID {
	t.Helper()
	acc, err := e.users.CreateAccount(t.Context(), userapi.NewAccount{Localpart: localpart})
	if err != nil {
		t.Fatal(err)
	}
	return acc.UserID
}

func (e *env) login(t testing.TB, user id.UserID, device id.DeviceID) login {
	t.Helper()
	d, toks, err := e.users.CreateDevice(t.Context(), userapi.NewDevice{UserID: user, DeviceID: device})
	if err != nil {
		t.Fatal(err)
	}
	return login{user: user, device: d.DeviceID, token: toks.AccessToken}
}

// put sends PUT /sendToDevice and returns the status and errcode ("" on success).
func (e *env) put(t testing.TB, from login, evType, txn, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPut, "/_matrix/client/v3/sendToDevice/"+evType+"/"+txn, strings.NewReader(body))
	if from.token != "" {
		req.Header.Set("Authorization", "Bearer "+from.token)
	}
	rec := httptest.NewRecorder()
	e.router.ServeHTTP(rec, req)
	var resp struct {
		ErrCode string `json:"errcode"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatalf("answer %q: %v", rec.Body.String(), err)
	}
	return rec.Code, resp.ErrCode
}

func (e *env) mustPut(t testing.TB, from login, evType, txn, body string) {
	t.Helper()
	if code, errcode := e.put(t, from, evType, txn, body); code != http.StatusOK {
		t.Fatalf("PUT %s/%s: %d %s", evType, txn, code, errcode)
	}
}

// sync collects the to-device events of a device in (from, to] as /sync would.
func (e *env) sync(t testing.TB, l login, from, to int64, limited bool) ([]toDeviceEvent, int64) {
	t.Helper()
	resp := synctypes.NewResponse()
	req := &synctypes.Request{User: l.user, Device: l.device}
	reached := to
	var err error
	if limited {
		reached, err = e.td.Inbox().CollectLimited(t.Context(), req, from, to, resp)
	} else {
		err = e.td.Inbox().Collect(t.Context(), req, from, to, resp)
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []toDeviceEvent
	for _, raw := range resp.ToDevice.Events {
		var ev toDeviceEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out, reached
}

func (e *env) inboxPos(t testing.TB) int64 {
	p, _ := e.td.Inbox().Position(t.Context())
	return p
}

func (e *env) createRoom(t testing.TB, creator id.UserID, encrypted bool) id.RoomID {
	t.Helper()
	req := roomserver.CreateRoomRequest{Creator: creator, Preset: roomserver.PresetPublicChat}
	if encrypted {
		req.InitialState = []roomserver.StateEvent{{Type: "m.room.encryption", Content: json.RawMessage(`{"algorithm":"m.megolm.v1.aes-sha2"}`)}}
	}
	room, err := e.rooms.CreateRoom(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	return room
}

func (e *env) send(t testing.TB, room id.RoomID, sender id.UserID, typ string, stateKey *string, content string) {
	t.Helper()
	if _, err := e.rooms.Send(t.Context(), room, roomserver.Template{Type: typ, StateKey: stateKey, Sender: sender, Content: json.RawMessage(content)}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) member(t testing.TB, room id.RoomID, user id.UserID, membership string) {
	t.Helper()
	sk := string(user)
	e.send(t, room, user, "m.room.member", &sk, `{"membership":"`+membership+`"}`)
}

// caughtUp waits until both consumers have taken in everything written so far and returns the
// device_lists position then.
func (e *env) caughtUp(t testing.TB) int64 {
	t.Helper()
	ctx := t.Context()
	var pos int64
	waitFor(t, "consumers to catch up", func() bool {
		out, err := e.rooms.OutputPosition(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cur, err := e.td.store.Cursor(ctx, roomsCursor)
		if err != nil {
			t.Fatal(err)
		}
		dl, err := e.db.StreamPosition(ctx, synctypes.StreamDeviceLists)
		if err != nil {
			t.Fatal(err)
		}
		pos, _ = e.td.DeviceLists().Position(ctx)
		return cur >= out && pos >= dl
	})
	return pos
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitWoken starts a Wait on the notifier and returns a function that fails the test unless it
// has returned by the deadline.
func waitWoken(t testing.TB, nf *notifier.Notifier, since map[string]int64, keys ...string) func() {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	done := make(chan error, 1)
	go func() { done <- nf.Wait(ctx, since, keys...) }()
	return func() {
		t.Helper()
		defer cancel()
		if err := <-done; err != nil {
			t.Fatalf("not woken on %v: %v", keys, err)
		}
	}
}
