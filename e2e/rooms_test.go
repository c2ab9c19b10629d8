package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// createRoom creates a room through the client API and returns its ID.
func createRoom(t *testing.T, c *mautrix.Client, req *mautrix.ReqCreateRoom) id.RoomID {
	t.Helper()
	resp, err := c.CreateRoom(context.Background(), req)
	if err != nil {
		t.Fatalf("create room: %v", err)
	}
	return resp.RoomID
}

// TestCreateRoomEveryVersion creates, joins and uses a room of every supported room version.
func TestCreateRoomEveryVersion(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	for v := 1; v <= 12; v++ {
		version := id.RoomVersion(json.Number(rune('0' + v)).String())
		if v >= 10 {
			version = id.RoomVersion([]string{"10", "11", "12"}[v-10])
		}
		t.Run("v"+string(version), func(t *testing.T) {
			roomID := createRoom(t, alice, &mautrix.ReqCreateRoom{RoomVersion: version, Preset: "public_chat", Name: "room " + string(version)})
			if _, err := bob.JoinRoomByID(ctx, roomID); err != nil {
				t.Fatalf("join: %v", err)
			}
			resp, err := bob.SendText(ctx, roomID, "hello")
			if err != nil {
				t.Fatalf("send: %v", err)
			}
			if resp.EventID == "" {
				t.Fatal("no event ID")
			}
			var create event.CreateEventContent
			if err := alice.StateEvent(ctx, roomID, event.StateCreate, "", &create); err != nil {
				t.Fatalf("create event: %v", err)
			}
			if create.RoomVersion != version {
				t.Fatalf("room version %q, want %q", create.RoomVersion, version)
			}
			members, err := alice.JoinedMembers(ctx, roomID)
			if err != nil || len(members.Joined) != 2 {
				t.Fatalf("joined members: %v %v", members, err)
			}
		})
	}
}

// TestSendIdempotent sends with one transaction ID twice and gets one event.
func TestSendIdempotent(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice := s.NewUser(t, "alice")
	roomID := createRoom(t, alice, &mautrix.ReqCreateRoom{})
	content := map[string]any{"msgtype": "m.text", "body": "once"}
	first, err := alice.SendMessageEvent(ctx, roomID, event.EventMessage, content, mautrix.ReqSendEvent{TransactionID: "txn1"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := alice.SendMessageEvent(ctx, roomID, event.EventMessage, content, mautrix.ReqSendEvent{TransactionID: "txn1"})
	if err != nil {
		t.Fatal(err)
	}
	if first.EventID != second.EventID {
		t.Fatalf("same transaction gave %s and %s", first.EventID, second.EventID)
	}
	third, err := alice.SendMessageEvent(ctx, roomID, event.EventMessage, content, mautrix.ReqSendEvent{TransactionID: "txn2"})
	if err != nil || third.EventID == first.EventID {
		t.Fatalf("new transaction: %v %v", third, err)
	}
}

// TestMembership walks a user through invite, join, kick, ban and unban, with the errors of
// each step.
func TestMembership(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	alice, bob := s.NewUser(t, "alice"), s.NewUser(t, "bob")
	roomID := createRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})

	_, err := bob.JoinRoomByID(ctx, roomID)
	wantErrCode(t, err, http.StatusForbidden, "M_FORBIDDEN")
	if _, err := alice.InviteUser(ctx, roomID, &mautrix.ReqInviteUser{UserID: bob.UserID}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoomByID(ctx, roomID); err != nil {
		t.Fatal(err)
	}
	rooms, err := bob.JoinedRooms(ctx)
	if err != nil || len(rooms.JoinedRooms) != 1 || rooms.JoinedRooms[0] != roomID {
		t.Fatalf("joined rooms: %v %v", rooms, err)
	}
	// bob (power 0) cannot kick alice.
	_, err = bob.KickUser(ctx, roomID, &mautrix.ReqKickUser{UserID: alice.UserID})
	wantErrCode(t, err, http.StatusForbidden, "M_FORBIDDEN")
	if _, err := alice.KickUser(ctx, roomID, &mautrix.ReqKickUser{UserID: bob.UserID, Reason: "bye"}); err != nil {
		t.Fatal(err)
	}
	var member event.MemberEventContent
	if err := alice.StateEvent(ctx, roomID, event.StateMember, string(bob.UserID), &member); err != nil || member.Membership != event.MembershipLeave || member.Reason != "bye" {
		t.Fatalf("after kick: %+v %v", member, err)
	}
	if _, err := alice.BanUser(ctx, roomID, &mautrix.ReqBanUser{UserID: bob.UserID}); err != nil {
		t.Fatal(err)
	}
	_, err = bob.JoinRoomByID(ctx, roomID)
	wantErrCode(t, err, http.StatusForbidden, "M_FORBIDDEN")
	if _, err := alice.UnbanUser(ctx, roomID, &mautrix.ReqUnbanUser{UserID: bob.UserID}); err != nil {
		t.Fatal(err)
	}
	// bob left: he still sees the state as it was when he left.
	_, err = bob.State(ctx, roomID)
	if err != nil {
		t.Fatalf("state after leaving: %v", err)
	}
	_, err = alice.JoinRoomByID(ctx, "!unknown:localhost")
	wantErrCode(t, err, http.StatusNotFound, "M_NOT_FOUND")
}
