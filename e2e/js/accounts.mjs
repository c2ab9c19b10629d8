// Drives a Lattice server with matrix-js-sdk the way Element does: registration and device
// deletion through InteractiveAuth, password login, whoami, devices, capabilities, logout.
// Usage: node accounts.mjs BASE_URL. Exits non-zero with a message on the first failure.
import { AuthType, createClient, InteractiveAuth } from "matrix-js-sdk";

const base = process.argv[2];
if (!base) throw new Error("usage: node accounts.mjs BASE_URL");

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

async function expectError(promise, status, errcode, what) {
  try {
    await promise;
  } catch (e) {
    check(e.httpStatus === status && e.errcode === errcode, `${what}: got ${e.httpStatus} ${e.errcode}`);
    return;
  }
  throw new Error(`${what}: succeeded`);
}

function noEmail() {
  throw new Error("no email stage expected");
}

// Registration: InteractiveAuth reads the flows and completes the dummy stage by itself.
const anon = createClient({ baseUrl: base });
const register = new InteractiveAuth({
  matrixClient: anon,
  doRequest: (auth) =>
    anon.registerRequest({ username: "jsuser", password: "pw-js", initial_device_display_name: "js device", auth: auth ?? undefined }),
  stateUpdated: (stage) => {
    throw new Error(`registration asked for stage ${stage}`);
  },
  requestEmailToken: noEmail,
});
const reg = await register.attemptAuth();
check(reg.user_id === "@jsuser:localhost" && reg.access_token && reg.device_id, "registration answer");

const client = createClient({ baseUrl: base, accessToken: reg.access_token, userId: reg.user_id, deviceId: reg.device_id });
const who = await client.whoami();
check(who.user_id === reg.user_id && who.device_id === reg.device_id, "whoami");

// A second device through password login (the SDK sends the deprecated top-level "user").
const login = await createClient({ baseUrl: base }).loginWithPassword("jsuser", "pw-js");
check(login.user_id === reg.user_id && login.device_id !== reg.device_id, "password login");
const devices = await client.getDevices();
check(devices.devices.length === 2, `two devices, got ${devices.devices.length}`);
check(devices.devices.some((d) => d.display_name === "js device"), "initial device name kept");

// Deleting it asks for the password stage, as Element's device manager handles it.
const remove = new InteractiveAuth({
  matrixClient: client,
  doRequest: (auth) => client.deleteDevice(login.device_id, auth ?? undefined),
  stateUpdated: (stage) => {
    check(stage === AuthType.Password, `delete device asked for ${stage}`);
    remove.submitAuthDict({
      type: AuthType.Password,
      identifier: { type: "m.id.user", user: reg.user_id },
      password: "pw-js",
    });
  },
  requestEmailToken: noEmail,
});
await remove.attemptAuth();
const removed = createClient({ baseUrl: base, accessToken: login.access_token });
await expectError(removed.whoami(), 401, "M_UNKNOWN_TOKEN", "token of the deleted device");

await expectError(createClient({ baseUrl: base }).loginWithPassword("jsuser", "wrong"), 403, "M_FORBIDDEN", "wrong password");
await expectError(anon.registerRequest({ username: "jsuser", password: "x" }), 400, "M_USER_IN_USE", "taken username");

const caps = await client.getCapabilities();
check(caps["m.room_versions"]?.default === "10" && caps["m.change_password"]?.enabled === true, "capabilities");

await client.logout();
await expectError(client.whoami(), 401, "M_UNKNOWN_TOKEN", "token after logout");
console.log("matrix-js-sdk: all checks passed");
