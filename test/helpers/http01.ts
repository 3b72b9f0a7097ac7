// An HTTP-01 responder (RFC 8555 8.3) in memory, for testing src/acme/order.ts on its own; serve
// answers challenges from the database instead (src/acme/challenges.ts), so any node can.

const PREFIX = "/.well-known/acme-challenge/";

export class Http01Responder {
  private readonly keyAuthorizations = new Map<string, string>();

  set(token: string, keyAuthorization: string): void {
    this.keyAuthorizations.set(token, keyAuthorization);
  }

  remove(token: string): void {
    this.keyAuthorizations.delete(token);
  }

  /** The answer to a challenge request; undefined for any other path, so a server can serve more. */
  handle(req: Request): Response | undefined {
    const { pathname } = new URL(req.url);
    if (!pathname.startsWith(PREFIX)) return undefined;
    const keyAuthorization = this.keyAuthorizations.get(pathname.slice(PREFIX.length));
    if (req.method !== "GET" && req.method !== "HEAD") return new Response(null, { status: 405 });
    if (keyAuthorization === undefined) return new Response("unknown token\n", { status: 404 });
    return new Response(keyAuthorization, { headers: { "content-type": "text/plain" } });
  }

  /** A server answering only challenges (404 for anything else). */
  listen(hostname: string, port: number): { port: number; stop(): void } {
    const server = Bun.serve({
      hostname,
      port,
      fetch: (req) => this.handle(req) ?? new Response("not found\n", { status: 404 }),
    });
    return { port: server.port ?? port, stop: () => void server.stop(true) };
  }
}
