// A closed-loop gRPC load driver over Node's built-in HTTP/2 client, for cases whose
// every request must differ (writes), which h2load cannot send: h2load posts one body.
//
// Usage: node h2post.js CONFIG.json
// CONFIG: {"authority": "127.0.0.1:PORT", "path": "/pkg.Service/Method",
//          "headers": {"authorization": "Bearer ..."}, "frames": "FILE",
//          "connections": 2, "streams": 8, "duration": 10, "warmUp": 1}
// FILE holds the requests as consecutive gRPC frames (flag byte, big-endian length,
// message); request i is frame i, each sent once. Prints one JSON object: requests and
// latencies (microseconds) of the calls started in the measured window that ended with
// grpc-status 0, failures by status and message, and whether the frames ran out.
"use strict";

const fs = require("node:fs");
const http2 = require("node:http2");

const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const data = fs.readFileSync(config.frames);
const frames = [];
for (let at = 0; at < data.length; ) {
  const end = at + 5 + data.readUInt32BE(at + 1);
  frames.push(data.subarray(at, end));
  at = end;
}

const now = () => Number(process.hrtime.bigint() / 1000n); // microseconds
const begin = now();
const measuredStart = begin + Math.round(config.warmUp * 1e6);
const end = measuredStart + Math.round(config.duration * 1e6);
const headers = {
  ":method": "POST",
  ":path": config.path,
  "content-type": "application/grpc",
  te: "trailers",
  ...config.headers,
};
const latencies = [];
const errors = {};
let next = 0;
let exhausted = false;
let stoppedAt = null;

function call(session, frame) {
  return new Promise((resolve) => {
    const stream = session.request(headers);
    let status = null;
    let message = "";
    const take = (h) => {
      if (h["grpc-status"] !== undefined) {
        status = Number(h["grpc-status"]);
        message = decodeURIComponent(h["grpc-message"] || "");
      }
    };
    stream.on("response", take); // a trailers-only reply carries the status here
    stream.on("trailers", take);
    stream.on("data", () => {});
    stream.on("close", () => {
      if (status === null) {
        status = -1;
        message = `stream closed (code ${stream.rstCode})`;
      }
      resolve([status, message]);
    });
    stream.on("error", () => {});
    stream.end(frame);
  });
}

async function lane(session) {
  while (now() < end) {
    const i = next++;
    if (i >= frames.length) {
      exhausted = true;
      stoppedAt = stoppedAt || now();
      return;
    }
    const started = now();
    const [status, message] = await call(session, frames[i]);
    if (started < measuredStart || started >= end) continue;
    if (status === 0) {
      latencies.push(now() - started);
    } else {
      const key = `${status}: ${message}`.slice(0, 160);
      errors[key] = (errors[key] || 0) + 1;
    }
  }
}

async function main() {
  const sessions = [];
  for (let c = 0; c < config.connections; c++) {
    const session = http2.connect(`http://${config.authority}`);
    session.on("error", (err) => {
      errors[`connection: ${err.message}`] = (errors[`connection: ${err.message}`] || 0) + 1;
    });
    await new Promise((resolve, reject) => {
      session.once("connect", resolve);
      session.once("error", reject);
    });
    sessions.push(session);
  }
  const lanes = [];
  for (const session of sessions) {
    for (let s = 0; s < config.streams; s++) lanes.push(lane(session));
  }
  await Promise.all(lanes);
  for (const session of sessions) session.close();
  const seconds = Math.max(1e-6, (Math.min(now(), stoppedAt || end) - measuredStart) / 1e6);
  process.stdout.write(
    JSON.stringify({ requests: latencies.length, seconds, latencies_us: latencies, errors, exhausted }),
  );
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
