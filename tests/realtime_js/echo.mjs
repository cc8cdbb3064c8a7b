// Drives the real Laravel Echo (broadcaster "reverb", on pusher-js) against a running Spotless
// edge, configured as a Laravel app configures it for Reverb, with an API token as bearer.
// Input: environment variables (see tests/realtime/test_pusher_js.py). Output: "READY" when both
// users are on their channels, then one JSON result line; exit code 0 on success.
import Pusher from 'pusher-js';
import Echo from 'laravel-echo';
import { env, url, finish, run } from './run.cjs';

function echo(token) {
  return new Echo({
    broadcaster: 'reverb',
    Pusher,
    key: env.APP_KEY,
    wsHost: url.hostname,
    wsPort: Number(url.port),
    forceTLS: false,
    enabledTransports: ['ws'],
    authEndpoint: `${env.EDGE_URL}/api/v1/broadcasting/auth`,
    // Echo's default `auth` object is shared by every instance; two users in one process need their own.
    auth: { headers: {} },
    bearerToken: token,
  });
}

function once(register) {
  return new Promise((resolve) => register(resolve));
}

function subscribed(channel) {
  return new Promise((resolve, reject) => {
    channel.subscribed(resolve);
    channel.error((error) => reject(new Error(`${channel.name}: ${JSON.stringify(error)}`)));
  });
}

async function main() {
  const client = echo(env.CLIENT_TOKEN);
  const cleaner = echo(env.CLEANER_TOKEN);
  const result = { ok: true };

  // a private channel: Echo adds "private-"; a leading "." listens to the event name as sent
  const mine = client.private(`user.${env.CLIENT_ID}`);
  const serverEvent = once((resolve) => mine.listen('.server.hello', resolve));
  await subscribed(mine);

  // a presence channel: here / joining / leaving, whispers, and a server event
  const room = `conversation.${env.CONVERSATION_ID}`;
  let here = null;
  const clientRoom = client.join(room).here((members) => { here = members; });
  const joined = once((resolve) => clientRoom.joining(resolve));
  const left = once((resolve) => clientRoom.leaving(resolve));
  const whispered = once((resolve) => clientRoom.listenForWhisper('typing', resolve));
  await subscribed(clientRoom);
  result.here_alone = here;

  const cleanerRoom = cleaner.join(room);
  const cleanerHere = once((resolve) => cleanerRoom.here(resolve));
  const echoed = [];
  cleanerRoom.listenForWhisper('typing', (data) => echoed.push(data));
  const chatMessage = once((resolve) => cleanerRoom.listen('.chat.message', resolve));
  result.joining = await joined;
  result.cleaner_here = (await cleanerHere).map((member) => member.role).sort();

  cleanerRoom.whisper('typing', { typing: true });
  result.whisper = await whispered;

  result.socket_ids = [client.socketId(), cleaner.socketId()];
  console.log('READY');
  result.server_event = await serverEvent;
  result.chat_message = await chatMessage;
  result.echoed = echoed.length;

  cleaner.leave(room);
  result.leaving = await left;

  client.disconnect();
  cleaner.disconnect();
  finish(result);
}

run(main);
