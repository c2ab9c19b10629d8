// End-to-end encryption with matrix-js-sdk and its Rust crypto, as Element runs it: two users
// in an encrypted room, one sends and the other decrypts; both bootstrap cross-signing and one
// verifies the other's identity; a key backup is made, and a new login restores the room key
// from it and decrypts the message.
// Usage: node crypto.mjs BASE_URL ALICE_ID ALICE_TOKEN ALICE_DEVICE BOB_ID BOB_TOKEN BOB_DEVICE PASSWORD
import { ClientEvent, createClient, MatrixEventEvent, RoomEvent, RoomMemberEvent } from "matrix-js-sdk";
import { CryptoEvent } from "matrix-js-sdk/lib/crypto-api/index.js";

const [base, aliceID, aliceToken, aliceDevice, bobID, bobToken, bobDevice, password] = process.argv.slice(2);
if (!password) throw new Error("usage: node crypto.mjs BASE_URL ALICE_ID ALICE_TOKEN ALICE_DEVICE BOB_ID BOB_TOKEN BOB_DEVICE PASSWORD");

const quiet = { debug() {}, info() {}, log() {}, warn() {}, error() {}, trace() {}, getChild() { return quiet; } };
const logger = process.env.LATTICE_JS_DEBUG ? console : quiet;
if (process.env.LATTICE_JS_DEBUG) console.getChild = () => console;

function newClient(userId, accessToken, deviceId) {
  return createClient({ baseUrl: base, userId, accessToken, deviceId, logger });
}

// until resolves when emitter emits event with arguments that pass test, or fails after 20 s.
function until(emitter, event, test, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, handler);
      reject(new Error(`timed out waiting for ${what}`));
    }, 60_000);
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

// waitFor polls check until it returns true, or fails after 20 s.
async function waitFor(check, what) {
  const deadline = Date.now() + 60_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function start(client) {
  await client.initRustCrypto({ useIndexedDB: false });
  const ready = until(client, ClientEvent.Sync, (state) => state === "PREPARED", "the first sync");
  await client.startClient({ initialSyncLimit: 10 });
  await ready;
}

// decrypted waits until ev is decrypted and returns its clear content.
async function decrypted(client, ev) {
  if (ev.isBeingDecrypted() || ev.isEncrypted() && !ev.getClearContent()) {
    await until(ev, MatrixEventEvent.Decrypted, () => true, "decryption");
  }
  if (ev.isDecryptionFailure()) throw new Error(`decryption failed: ${ev.decryptionFailureReason}`);
  return ev.getContent();
}

const t0 = Date.now();
const step = (what) => { if (process.env.LATTICE_JS_DEBUG) console.error(`${Date.now() - t0} ms: ${what}`); };
const alice = newClient(aliceID, aliceToken, aliceDevice);
const bob = newClient(bobID, bobToken, bobDevice);
const clients = [alice, bob];
await start(alice);
await start(bob);
step("started");

try {
  // An encrypted room: alice creates it, bob joins.
  const invited = until(bob, RoomMemberEvent.Membership, (_e, m) => m.userId === bobID && m.membership === "invite", "bob's invite");
  const { room_id: roomID } = await alice.createRoom({
    name: "js crypto", invite: [bobID],
    initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
  });
  await invited;
  const joined = until(alice, RoomMemberEvent.Membership, (_e, m) => m.roomId === roomID && m.userId === bobID && m.membership === "join", "bob's join at alice");
  await bob.joinRoom(roomID);
  await joined;
  step("joined");

  // Alice sends; bob decrypts.
  const arrived = until(bob, RoomEvent.Timeline, (ev) => ev.getRoomId() === roomID && ev.getWireType() === "m.room.encrypted", "the encrypted message");
  const { event_id: sentID } = await alice.sendTextMessage(roomID, "secret from js");
  const [ev] = await arrived;
  const content = await decrypted(bob, ev);
  if (content.body !== "secret from js") throw new Error(`bob decrypted ${JSON.stringify(content)}`);
  step("decrypted");

  // Both bootstrap cross-signing; the first upload needs no user-interactive auth, later ones
  // authenticate with the password.
  const auth = (userId) => async (makeRequest) => {
    await makeRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password });
  };
  await alice.getCrypto().bootstrapCrossSigning({ authUploadDeviceSigningKeys: auth(aliceID) });
  await bob.getCrypto().bootstrapCrossSigning({ authUploadDeviceSigningKeys: auth(bobID) });
  for (const [c, id] of [[alice, aliceID], [bob, bobID]]) {
    if (!(await c.getCrypto().isCrossSigningReady())) throw new Error(`cross-signing of ${id} is not ready`);
  }
  step("cross-signing");

  // Alice learns of bob's new identity through device_lists in /sync, then verifies it with
  // emoji (SAS) verification in their room.
  await waitFor(() => alice.getCrypto().userHasCrossSigningKeys(bobID), "alice to learn bob's cross-signing keys");
  const received = until(bob, CryptoEvent.VerificationRequestReceived, () => true, "bob's verification request");
  const aliceReq = await alice.getCrypto().requestVerificationDM(bobID, roomID);
  const [bobReq] = await received;
  await bobReq.accept();
  await until(aliceReq, "change", () => aliceReq.phase === 3 /* Ready */, "the request to be ready");
  const aliceVerifier = await aliceReq.startVerification("m.sas.v1");
  await until(bobReq, "change", () => bobReq.verifier, "bob's verifier");
  const bobVerifier = bobReq.verifier;
  for (const v of [aliceVerifier, bobVerifier]) {
    v.on("show_sas", (sas) => sas.confirm());
  }
  await Promise.all([aliceVerifier.verify(), bobVerifier.verify()]);
  // Alice signs bob's master key with her user-signing key and uploads the signature.
  await waitFor(async () => (await alice.getCrypto().getUserVerificationStatus(bobID)).isCrossSigningVerified(), "bob's identity to be verified at alice");
  step("verified");

  // A key backup: alice makes one, which uploads her room key.
  await alice.getCrypto().resetKeyBackup();
  await waitFor(async () => (await alice.getCrypto().getActiveSessionBackupVersion()) !== null, "the key backup to be active");
  const backupKey = await alice.getCrypto().getSessionBackupPrivateKey();
  const backup = await alice.getCrypto().getActiveSessionBackupVersion();
  if (!backupKey || !backup) throw new Error("no active key backup");
  await waitFor(async () => (await alice.http.authedRequest("GET", "/room_keys/version")).count > 0, "the room key to reach the backup");
  step("backed up");

  // A new login restores the room key from the backup and decrypts the message.
  const login = await createClient({ baseUrl: base }).loginRequest({
    type: "m.login.password", identifier: { type: "m.id.user", user: aliceID }, password,
  });
  const alice2 = newClient(aliceID, login.access_token, login.device_id);
  clients.push(alice2);
  await start(alice2);
  await alice2.getCrypto().storeSessionBackupPrivateKey(backupKey, backup);
  const result = await alice2.getCrypto().restoreKeyBackup();
  if (result.imported < 1) throw new Error(`restored ${JSON.stringify(result)}`);
  const raw = await alice2.fetchRoomEvent(roomID, sentID);
  const { MatrixEvent } = await import("matrix-js-sdk");
  const old = new MatrixEvent(raw);
  await alice2.decryptEventIfNeeded(old);
  if (old.getContent().body !== "secret from js") throw new Error(`the new login decrypted ${JSON.stringify(old.getContent())}`);
  step("restored");
} finally {
  for (const c of clients) c.stopClient();
}
console.log(`crypto scenario passed in ${Date.now() - t0} ms`);
process.exit(0);
