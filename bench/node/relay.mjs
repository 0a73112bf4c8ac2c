// The Node.js baseline relay of scripts/bench: Node's http server and the
// better-sse package, fed by ioredis. It does what fanscope's relay does on
// its hot path: every message on the channel becomes one SSE event (type =
// channel with ':' -> '-', increasing ids) broadcast to every session; plus
// GET /healthz and GET /stats ({"connections": N}) for the bench.
// usage: node relay.mjs PORT REDIS_URL CHANNEL PATH
import http from "node:http";
import { createSession, createChannel } from "better-sse";
import Redis from "ioredis";

const [port, redisURL, channelName, path] = process.argv.slice(2);
const channel = createChannel();
let id = 0;
let subscribed = false;

const sub = new Redis(redisURL);
sub.subscribe(channelName).then(() => { subscribed = true; });
sub.on("message", (ch, msg) => {
  id++;
  // The payload is sent as it is (better-sse would JSON-encode it).
  channel.broadcast(msg, ch.replaceAll(":", "-"), { eventId: String(id) });
});

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, "http://relay");
  if (url.pathname === "/healthz") {
    res.writeHead(subscribed ? 200 : 503).end(subscribed ? "ok\n" : "not subscribed\n");
    return;
  }
  if (url.pathname === "/stats") {
    res.writeHead(200, { "Content-Type": "application/json" })
      .end(JSON.stringify({ connections: channel.sessionCount }));
    return;
  }
  if (url.pathname !== path) {
    res.writeHead(404).end();
    return;
  }
  const session = await createSession(req, res, { serializer: (d) => d, keepAlive: 15000 });
  channel.register(session);
});
server.listen({ port: Number(port), host: "127.0.0.1", backlog: 4096 });
process.on("SIGINT", () => process.exit(0));
process.on("SIGTERM", () => process.exit(0));
