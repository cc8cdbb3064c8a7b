// What the scripts here share: the edge they drive (EDGE_URL and the rest from the environment,
// set by tests/realtime/test_pusher_js.py), and how they end: one JSON result line, exit code 0
// on success, or {"ok": false, "reason"} and 1 on an error or after 20 s.
'use strict';

const env = process.env;
const url = new URL(env.EDGE_URL);

function fail(reason) {
  console.log(JSON.stringify({ ok: false, reason }));
  process.exit(1);
}

const deadline = setTimeout(() => fail('timed out'), 20000);

function finish(result) {
  clearTimeout(deadline);
  console.log(JSON.stringify(result));
  process.exit(0);
}

function run(main) {
  main().catch((error) => fail(String(error && error.stack || error)));
}

module.exports = { env, url, fail, finish, run };
