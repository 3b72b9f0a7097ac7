// A receiver for event webhooks in relay.sh HOOK=1: answers every POST with 200 and counts them
// (GET /count). Loopback only.
const port = Number(process.argv[2]);
let posts = 0;
Bun.serve({
  hostname: "127.0.0.1",
  port,
  async fetch(req) {
    if (req.method === "GET") return new Response(String(posts));
    await req.arrayBuffer();
    posts++;
    return new Response("ok");
  },
});
