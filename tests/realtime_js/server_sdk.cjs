// Pusher's official Node.js server SDK (the npm package `pusher`) publishing to and querying a
// running Spotless edge through the HTTP API, as a Node.js app server would: trigger, trigger with
// a socket excluded, triggerBatch, the channel queries, a request signed with a wrong secret, and
// terminating the presence member's connections.
// Input: EDGE_URL, APP_ID, APP_KEY, APP_SECRET, CHANNEL (a public channel with subscribers),
// PRESENCE_PREFIX and PRESENCE_CHANNEL (with one member, MEMBER_ID), EXCLUDED_SOCKET_ID. Output: one JSON result line.
'use strict';
const Pusher = require('pusher');
const { env, url, finish, run } = require('./run.cjs');

function sdk(secret) {
  return new Pusher({
    appId: env.APP_ID, key: env.APP_KEY, secret, host: url.hostname, port: url.port, useTLS: false,
  });
}

async function answer(response) {
  return { status: response.status, body: await response.json() };
}

run(async () => {
  const pusher = sdk(env.APP_SECRET);
  const result = { ok: true };
  result.trigger = await answer(await pusher.trigger(env.CHANNEL, 'node.hello', { from: 'node' }));
  result.excluded = await answer(await pusher.trigger(
    env.CHANNEL, 'node.not-for-you', { n: 0 }, { socket_id: env.EXCLUDED_SOCKET_ID }));
  result.batch = await answer(await pusher.triggerBatch([
    { channel: env.CHANNEL, name: 'node.first', data: { n: 1 } },
    { channel: env.CHANNEL, name: 'node.second', data: JSON.stringify({ n: 2 }) },
  ]));
  result.info = await answer(await pusher.trigger(
    env.CHANNEL, 'node.counted', {}, { info: 'subscription_count' }));
  result.channels = await answer(await pusher.get({
    path: '/channels', params: { filter_by_prefix: env.PRESENCE_PREFIX, info: 'user_count' } }));
  result.channel = await answer(await pusher.get({
    path: `/channels/${env.CHANNEL}`, params: { info: 'subscription_count' } }));
  result.users = await answer(await pusher.get({ path: `/channels/${env.PRESENCE_CHANNEL}/users` }));
  try {
    await sdk('not-the-secret').trigger(env.CHANNEL, 'node.forged', {});
    result.forged = { status: 'accepted' };
  } catch (error) {
    // The SDK rejects a non-2xx answer with a RequestError carrying the status and the body.
    result.forged = { status: error.status, body: JSON.parse(error.body) };
  }
  result.terminated = await answer(await pusher.terminateUserConnections(env.MEMBER_ID));
  finish(result);
});
