// Two matrix-js-sdk clients with startClient(), as Element runs them: a room is created and
// joined, and a message, typing, a read receipt and a to-device message each reach the other
// client through /sync.
// Usage: node sync.mjs BASE_URL ALICE_ID ALICE_TOKEN ALICE_DEVICE BOB_ID BOB_TOKEN BOB_DEVICE
import { ClientEvent, createClient, RoomEvent, RoomMemberEvent } from "matrix-js-sdk";

const [base, aliceID, aliceToken, aliceDevice, bobID, bobToken, bobDevice] = process.argv.slice(2);
if (!bobDevice) throw new Error("usage: node sync.mjs BASE_URL ALICE_ID ALICE_TOKEN ALICE_DEVICE BOB_ID BOB_TOKEN BOB_DEVICE");

const quiet = { debug() {}, info() {}, log() {}, warn() {}, error: console.error, trace() {}, getChild() { return quiet; } };
const alice = createClient({ baseUrl: base, userId: aliceID, accessToken: aliceToken, deviceId: aliceDevice, logger: quiet });
const bob = createClient({ baseUrl: base, userId: bobID, accessToken: bobToken, deviceId: bobDevice, logger: quiet });

// until resolves when emitter emits event with arguments that pass test, or fails after 10 s.
function until(emitter, event, test, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, handler);
      reject(new Error(`timed out waiting for ${what}`));
    }, 10_000);
    function handler(...args) {
      if (test(...args)) {
        clearTimeout(timer);
        emitter.off(event, handler);
        resolve(args);
      }
    }
    emitter.on(event, handler);
  });
}

function prepared(client) {
  return until(client, ClientEvent.Sync, (state) => state === "PREPARED", "the first sync");
}

const t0 = Date.now();
const ready = Promise.all([prepared(alice), prepared(bob)]);
await alice.startClient({ initialSyncLimit: 10 });
await bob.startClient({ initialSyncLimit: 10 });
await ready;

try {
  // An invite reaches bob, who joins.
  const invited = until(bob, RoomMemberEvent.Membership, (_e, m) => m.userId === bobID && m.membership === "invite", "bob's invite");
  const { room_id: roomID } = await alice.createRoom({ name: "js sync", invite: [bobID] });
  await invited;
  const joined = until(alice, RoomMemberEvent.Membership, (_e, m) => m.roomId === roomID && m.userId === bobID && m.membership === "join", "bob's join at alice");
  await bob.joinRoom(roomID);
  await joined;

  // A message.
  const message = until(bob, RoomEvent.Timeline, (ev) => ev.getRoomId() === roomID && ev.getContent().body === "hello from js", "the message");
  await alice.sendTextMessage(roomID, "hello from js");
  const [msgEvent] = await message;

  // Typing.
  const typing = until(bob, RoomMemberEvent.Typing, (_e, m) => m.roomId === roomID && m.userId === aliceID && m.typing, "alice typing");
  await alice.sendTyping(roomID, true, 10_000);
  await typing;

  // A read receipt.
  const receipt = until(alice, RoomEvent.Receipt, (ev) => JSON.stringify(ev.getContent()).includes(bobID), "bob's receipt");
  await bob.sendReadReceipt(msgEvent);
  await receipt;

  // A to-device message.
  const toDevice = until(bob, ClientEvent.ToDeviceEvent, (ev) => ev.getType() === "com.example.ping", "the to-device message");
  await alice.sendToDevice("com.example.ping", new Map([[bobID, new Map([[bobDevice, { n: 1 }]])]]));
  const [td] = await toDevice;
  if (td.getSender() !== aliceID || td.getContent().n !== 1) throw new Error(`to-device message: ${JSON.stringify(td.event)}`);
} finally {
  alice.stopClient();
  bob.stopClient();
}
console.log(`sync scenario passed in ${Date.now() - t0} ms`);
// The SDK leaves timers and aborted long-polls behind that would keep Node alive for minutes.
process.exit(0);
