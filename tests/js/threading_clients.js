// The official JavaScript Socket.IO client (socket.io-client v4) against a cluster: websocket
// clients (polling, then the upgrade) and polling-only clients, each from its own loopback
// address (an http.Agent with localAddress), ask whoami, join one room and hear one shout;
// the polling-only ones echo, then every client asks whoami again (still on its worker?).
// Usage: node threading_clients.js URL WEBSOCKET_CLIENTS POLLING_CLIENTS [FIRST_SOURCE]
// (FIRST_SOURCE: the last octet of the first client's 127.0.0.x source address, default 2)
// Prints one JSON line of results; exits non-zero on any error or after OVERALL_MS.
"use strict";
const http = require("http");
const { io } = require("socket.io-client");

const [url, websocketCount, pollingCount] = [process.argv[2], +process.argv[3], +process.argv[4]];
const firstSource = +(process.argv[5] || 2);
const OVERALL_MS = 60000;
const ACK_MS = 15000;
const ROOM = "js-room";
const MESSAGE = "hello from the JavaScript client";
const ECHOES = 5;

const fail = (why) => {
  process.stderr.write(`js clients: ${why}\n`);
  process.exit(1);
};
setTimeout(() => fail(`not done after ${OVERALL_MS} ms`), OVERALL_MS);

const until = (what, predicate, ms = 20000) => new Promise((resolve, reject) => {
  const deadline = Date.now() + ms;
  const check = () => {
    if (predicate()) return resolve();
    if (Date.now() > deadline) return reject(new Error(`timed out waiting for ${what}`));
    setTimeout(check, 50);
  };
  check();
});

function open(index, pollingOnly) {
  const address = `127.0.0.${index + firstSource}`;
  const options = {
    agent: new http.Agent({ localAddress: address }),
    localAddress: address,  // the websocket transport (ws) takes it directly as well
    reconnection: false,
    timeout: ACK_MS,
  };
  if (pollingOnly) options.transports = ["polling"];
  const socket = io(url, options);
  const client = { index, address, pollingOnly, socket, heard: [] };
  socket.on("heard", (data) => client.heard.push(data));
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(client));
    socket.once("connect_error", (error) => reject(new Error(`client ${index}: ${error.message}`)));
  });
}

async function main() {
  const kinds = [...Array(websocketCount).fill(false), ...Array(pollingCount).fill(true)];
  const clients = await Promise.all(kinds.map((pollingOnly, index) => open(index, pollingOnly)));
  for (const client of clients) {
    client.whoami = await client.socket.timeout(ACK_MS).emitWithAck("whoami");
  }
  await until("every websocket client to upgrade", () => clients.every(
    (c) => c.pollingOnly || c.socket.io.engine.transport.name === "websocket"));
  for (const client of clients) {
    await client.socket.timeout(ACK_MS).emitWithAck("join", ROOM);
  }
  const shout = await clients[0].socket.timeout(ACK_MS).emitWithAck(
    "shout", { room: ROOM, message: MESSAGE });
  await until("every client to hear the shout", () => clients.every(
    (c) => c.heard.some((data) => data.message === MESSAGE)));
  for (const client of clients.filter((c) => c.pollingOnly)) {
    client.echoes = [];
    for (let i = 0; i < ECHOES; i++) {
      client.echoes.push(await client.socket.timeout(ACK_MS).emitWithAck("echo", `echo ${i}`));
    }
  }
  for (const client of clients) {
    client.whoamiEnd = await client.socket.timeout(ACK_MS).emitWithAck("whoami");
  }
  const results = clients.map((c) => ({
    index: c.index,
    address: c.address,
    polling_only: c.pollingOnly,
    connected: c.socket.connected,
    transport: c.socket.io.engine.transport.name,
    whoami: c.whoami,
    whoami_end: c.whoamiEnd,
    heard: c.heard.filter((data) => data.message === MESSAGE).length,
    echoes: c.echoes || null,
  }));
  for (const client of clients) client.socket.disconnect();
  process.stdout.write(JSON.stringify({ shout, clients: results }) + "\n");
  process.exit(0);
}

main().catch((error) => fail(error.stack || String(error)));
