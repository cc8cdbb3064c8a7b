// Drives the real pusher-js client (node build) against a running Spotless edge.
// Input: environment variables (see tests/realtime/test_pusher_js.py). Output: one JSON line
// "READY" when both users are subscribed, then a JSON result line; exit code 0 on success.
'use strict';
const Pusher = require('pusher-js');
const { env, url, finish, run } = require('./run.cjs');

function connect(token) {
  return new Pusher(env.APP_KEY, {
    cluster: 'local',
    wsHost: url.hostname,
    wsPort: Number(url.port),
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    channelAuthorization: {
      endpoint: `${env.EDGE_URL}/api/v1/broadcasting/auth`,
      transport: 'ajax',
      headers: { Authorization: `Bearer ${token}` },
    },
  });
}

// `early(channel)` binds what must be bound before any frame arrives: frames that come in one
// read are all dispatched before an awaiting function resumes.
function subscribed(pusher, name, early = () => {}) {
  return new Promise((resolve, reject) => {
    const channel = pusher.subscribe(name);
    early(channel);
    channel.bind('pusher:subscription_succeeded', (data) => resolve({ channel, data }));
    channel.bind('pusher:subscription_error', (error) => reject(new Error(`${name}: ${JSON.stringify(error)}`)));
  });
}

function next(channel, event) {
  return new Promise((resolve) => channel.bind(event, (data, metadata) => resolve({ data, metadata })));
}

async function main() {
  const client = connect(env.CLIENT_TOKEN);
  const cleaner = connect(env.CLEANER_TOKEN);
  const result = { ok: true };

  // PUBLIC_CHANNEL is a cache channel with nothing published yet: its miss follows the success
  let cacheMiss;
  const pub = await subscribed(client, env.PUBLIC_CHANNEL, (channel) => {
    cacheMiss = new Promise((resolve) => channel.bind('pusher:cache_miss', () => resolve(true)));
  });
  const priv = await subscribed(client, `private-user.${env.CLIENT_ID}`);
  result.private = priv.channel.name;

  const presenceName = `presence-conversation.${env.CONVERSATION_ID}`;
  const clientPresence = await subscribed(client, presenceName);
  const memberAdded = next(clientPresence.channel, 'pusher:member_added');
  const cleanerPresence = await subscribed(cleaner, presenceName);
  result.member_added = (await memberAdded).data;
  result.members_seen_by_cleaner = cleanerPresence.channel.members.count;
  result.me = cleanerPresence.channel.members.me;

  const typing = next(clientPresence.channel, 'client-typing');
  const echoed = [];
  cleanerPresence.channel.bind('client-typing', (data) => echoed.push(data));
  cleanerPresence.channel.trigger('client-typing', { typing: true });
  const typed = await typing;
  result.typing = { data: typed.data, user_id: typed.metadata && typed.metadata.user_id };

  const serverEvent = next(pub.channel, 'server.hello');
  const chatMessage = next(cleanerPresence.channel, 'chat.message');
  console.log('READY');
  result.server_event = (await serverEvent).data;
  result.cache_miss = await cacheMiss;
  // a connection that subscribes afterwards gets that event first, from the cache
  const late = connect(env.CLIENT_TOKEN);
  result.cached = (await next(late.subscribe(env.PUBLIC_CHANNEL), 'server.hello')).data;
  late.disconnect();
  result.chat_message = (await chatMessage).data;
  result.echoed = echoed.length;
  result.socket_ids = [client.connection.socket_id, cleaner.connection.socket_id];

  client.disconnect();
  cleaner.disconnect();
  finish(result);
}

run(main);
