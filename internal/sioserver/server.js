// The reference Socket.IO v4 server wsx's tests run against.
//
//   PORT=0 PING_INTERVAL=25000 PING_TIMEOUT=20000 node server.js
//
// prints "listening PORT" once it accepts connections and exits when its
// stdin closes (so a test that dies leaves no server behind).
//
// Namespace "/": on connection it emits what the handshake query's
// "scenario" asks for:
//   events (default)  hello "world"; obj {...}; multi "first", 2, {c: 3};
//                     num 42; quoted a string with quotes; none (no args);
//                     bin a Buffer; nested an object holding a Buffer;
//                     query the handshake's ?token= value; done "end"
//   kick              hello "world", then the server disconnects the socket
//   tick              tick N every 50 ms
//   quiet             nothing: the socket only gets what POST /emit sends
// Namespace "/private": middleware admits only auth {token: "s3cret"};
// others get a connect error "not authorized". Admitted sockets get
// welcome <token>.
//
// POST /emit?event=NAME with a body emits NAME with the body (one string
// argument) to every socket of "/": a test relays Redis messages this way.
const { Server } = require("socket.io");
const http = require("http");

const httpServer = http.createServer((req, res) => {
  const u = new URL(req.url, "http://x");
  if (req.method !== "POST" || u.pathname !== "/emit") {
    return; // socket.io answers its own paths; anything else is left open
  }
  let body = "";
  req.setEncoding("utf8");
  req.on("data", (c) => (body += c));
  req.on("end", () => {
    io.of("/").emit(u.searchParams.get("event") || "message", body);
    res.end("ok");
  });
});
const io = new Server(httpServer, {
  pingInterval: Number(process.env.PING_INTERVAL || 25000),
  pingTimeout: Number(process.env.PING_TIMEOUT || 20000),
  transports: ["websocket", "polling"],
});

io.on("connection", (socket) => {
  const q = socket.handshake.query;
  switch (q.scenario || "events") {
    case "events":
      socket.emit("hello", "world");
      socket.emit("obj", { a: 1, b: [1, 2], s: "x" });
      socket.emit("multi", "first", 2, { c: 3 });
      socket.emit("num", 42);
      socket.emit("quoted", 'he said "hi"\n');
      socket.emit("none");
      socket.emit("bin", Buffer.from([0xff, 0x00, 0x01]));
      socket.emit("nested", { file: Buffer.from("abc") });
      socket.emit("query", q.token || "");
      socket.emit("done", "end");
      break;
    case "kick":
      socket.emit("hello", "world");
      setTimeout(() => socket.disconnect(true), 20);
      break;
    case "quiet":
      break;
    case "tick": {
      let n = 0;
      const t = setInterval(() => socket.emit("tick", ++n), 50);
      socket.on("disconnect", () => clearInterval(t));
      break;
    }
  }
});

const priv = io.of("/private");
priv.use((socket, next) => {
  if (socket.handshake.auth && socket.handshake.auth.token === "s3cret") {
    return next();
  }
  const err = new Error("not authorized");
  err.data = { reason: "bad token" };
  next(err);
});
priv.on("connection", (socket) => {
  socket.emit("welcome", socket.handshake.auth.token);
});

httpServer.listen(Number(process.env.PORT || 0), "127.0.0.1", () => {
  console.log("listening " + httpServer.address().port);
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
