// Pusher's end-to-end encrypted channels through a Spotless edge, with Pusher's own libraries at
// both ends: the Node.js server SDK (with an encryption master key) authorises the socket, handing
// it the channel's shared secret, and encrypts the event it triggers; pusher-js (node build)
// subscribes and decrypts. The edge checks the subscription's signature and relays ciphertext.
// Input: EDGE_URL, APP_ID, APP_KEY, APP_SECRET, MASTER_KEY (base64 of 32 bytes), CHANNEL
// (private-encrypted-…). Output: one JSON result line.
'use strict';
const Pusher = require('pusher-js');
const PusherServer = require('pusher');
const { env, url, finish, run } = require('./run.cjs');

run(async () => {
  const server = new PusherServer({
    appId: env.APP_ID, key: env.APP_KEY, secret: env.APP_SECRET, host: url.hostname, port: url.port,
    useTLS: false, encryptionMasterKeyBase64: env.MASTER_KEY,
  });
  const client = new Pusher(env.APP_KEY, {
    cluster: 'local', wsHost: url.hostname, wsPort: Number(url.port), forceTLS: false,
    enabledTransports: ['ws'], disableStats: true,
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, callback) => callback(null, server.authorizeChannel(socketId, channelName)),
    },
  });
  const channel = client.subscribe(env.CHANNEL);
  await new Promise((resolve, reject) => {
    channel.bind('pusher:subscription_succeeded', resolve);
    channel.bind('pusher:subscription_error', (error) => reject(new Error(JSON.stringify(error))));
  });
  const received = new Promise((resolve) => channel.bind('secret.note', resolve));
  const triggered = await server.trigger(env.CHANNEL, 'secret.note', { text: 'the key is under the mat' });
  const result = { ok: true, status: triggered.status, received: await received };
  client.disconnect();
  finish(result);
});
