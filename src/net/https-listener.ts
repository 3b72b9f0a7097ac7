// The HTTPS listener (MTA-STS policies on POSTERN_HTTPS_PORT). Bun.serve cannot change its
// certificate in place, so a new certificate means a new server on the same port (SO_REUSEPORT)
// before the old one stops taking connections: no gap, and requests in progress finish on the
// old one with the certificate they began with.
import type { TlsMaterial } from "./tls.ts";

export class HttpsListener {
  private server: ReturnType<typeof Bun.serve>;
  readonly port: number;

  constructor(
    private readonly o: {
      hostname: string;
      port: number;
      fetch: (req: Request) => Response | Promise<Response>;
      error: (err: Error) => Response;
    },
    tls: TlsMaterial,
  ) {
    this.server = this.open(o.port, tls);
    this.port = this.server.port!;
  }

  /** New connections get `tls` from now on. */
  reload(tls: TlsMaterial): void {
    const next = this.open(this.port, tls);
    // lets requests in progress finish; nothing to do if that fails, the new server is up
    this.server.stop(false).catch(() => {});
    this.server = next;
  }

  async stop(): Promise<void> {
    await this.server.stop(true);
  }

  private open(port: number, tls: TlsMaterial): ReturnType<typeof Bun.serve> {
    return Bun.serve({
      hostname: this.o.hostname,
      port,
      reusePort: true,
      tls: { cert: tls.cert, key: tls.key },
      fetch: this.o.fetch,
      error: this.o.error,
    });
  }
}
