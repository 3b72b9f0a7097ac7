// smtp-load.ts - an SMTP load generator for the loads smtp-source cannot make: a different sender
// (and sender domain) per message, and submission over STARTTLS with AUTH PLAIN. Like smtp-source
// it never pipelines and stops at the first unexpected reply (exit 1); it prints one line of JSON:
// {"messages":N,"seconds":S,"rate":R}. Bodies are lines of "X" with smtp-source's kind of headers.
//
//   bun bench/smtp-load.ts --port 2525 --messages 20000 --sessions 20 --size 10240 --mode reuse \
//       --from 'from{n}@s{n}.senders.test' --first 0
//   bun bench/smtp-load.ts --port 2587 --starttls --auth user@x.test:secret --from user@x.test \
//       --rcpt 'to{n}@remote.test' ...
//
// {n} in --from/--rcpt is the message's sequence number (--first, --first+1, ...), so
// consecutive runs given consecutive --first values never repeat a sender.
import { connect as connectTcp, isIP, type Socket } from "node:net";
import { connect as connectTls, type TLSSocket } from "node:tls";
import { parseArgs } from "node:util";

const { values: o } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string" },
    messages: { type: "string", default: "20000" },
    sessions: { type: "string", default: "20" },
    size: { type: "string", default: "10240" },
    mode: { type: "string", default: "reuse" },
    from: { type: "string", default: "from@client.test" },
    rcpt: { type: "string", default: "user@bench.test" },
    helo: { type: "string", default: "client.test" },
    first: { type: "string", default: "0" },
    starttls: { type: "boolean", default: false },
    auth: { type: "string" },
  },
});
if (o.port === undefined) throw new Error("--port is required");
if (o.mode !== "reuse" && o.mode !== "newconn") throw new Error("--mode is reuse or newconn");
const port = Number(o.port);
const total = Number(o.messages);
const first = Number(o.first);
const credentials =
  o.auth === undefined ? undefined : Buffer.from(`\0${o.auth.replace(":", "\0")}`).toString("base64");
const filler = (() => {
  const line = `${"X".repeat(78)}\r\n`;
  return line
    .repeat(Math.ceil(Number(o.size) / line.length))
    .slice(0, Number(o.size))
    .replace(/\r?\n?$/, "\r\n");
})();
const fill = (pattern: string, n: number) => pattern.replaceAll("{n}", String(n));

/** Reads SMTP replies off a socket: `next()` resolves with the next complete reply's code. */
class Replies {
  private buffered = "";
  private waiting: { resolve: (code: number) => void; reject: (e: Error) => void } | undefined;
  private codes: number[] = [];
  private failure: Error | undefined;
  attach(socket: Socket | TLSSocket) {
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => this.push(chunk));
    socket.on("error", (e) => this.fail(e));
    socket.on("close", () => this.fail(new Error("connection closed")));
  }
  private push(chunk: string) {
    this.buffered += chunk;
    for (let end = this.buffered.indexOf("\n"); end >= 0; end = this.buffered.indexOf("\n")) {
      const line = this.buffered.slice(0, end);
      this.buffered = this.buffered.slice(end + 1);
      if (line[3] !== "-") this.codes.push(Number(line.slice(0, 3)));
    }
    this.deliver();
  }
  private fail(e: Error) {
    this.failure ??= e;
    this.deliver();
  }
  private deliver() {
    const w = this.waiting;
    if (w === undefined) return;
    const code = this.codes.shift();
    if (code !== undefined) {
      this.waiting = undefined;
      w.resolve(code);
    } else if (this.failure) {
      this.waiting = undefined;
      w.reject(this.failure);
    }
  }
  next(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.deliver();
    });
  }
}

class Session {
  private socket!: Socket | TLSSocket;
  private replies!: Replies;
  private async expect(want: number, what: string, line?: string) {
    if (line !== undefined) this.socket.write(line);
    const code = await this.replies.next();
    if (code !== want) throw new Error(`${what}: got ${code}, wanted ${want}`);
  }
  async open() {
    this.socket = connectTcp({ host: o.host, port });
    this.socket.setNoDelay(true);
    this.replies = new Replies();
    this.replies.attach(this.socket);
    await this.expect(220, "greeting");
    const ehlo = o.starttls || credentials !== undefined;
    await this.expect(250, ehlo ? "EHLO" : "HELO", `${ehlo ? "EHLO" : "HELO"} ${o.helo}\r\n`);
    if (o.starttls) {
      await this.expect(220, "STARTTLS", "STARTTLS\r\n");
      this.socket.removeAllListeners();
      // SNI carries host names only (Bun refuses an IP address there)
      const servername = isIP(o.host) ? undefined : o.host;
      this.socket = connectTls({ socket: this.socket, servername, rejectUnauthorized: false });
      this.replies = new Replies();
      this.replies.attach(this.socket);
      await new Promise<void>((resolve, reject) => {
        (this.socket as TLSSocket).once("secureConnect", resolve);
        this.socket.once("error", reject);
      });
      await this.expect(250, "EHLO after STARTTLS", `EHLO ${o.helo}\r\n`);
    }
    if (credentials !== undefined) await this.expect(235, "AUTH PLAIN", `AUTH PLAIN ${credentials}\r\n`);
  }
  async send(n: number) {
    const from = fill(o.from, n);
    const to = fill(o.rcpt, n);
    await this.expect(250, "MAIL", `MAIL FROM:<${from}>\r\n`);
    await this.expect(250, "RCPT", `RCPT TO:<${to}>\r\n`);
    await this.expect(354, "DATA", "DATA\r\n");
    const head = `From: <${from}>\r\nTo: <${to}>\r\nDate: ${new Date().toUTCString()}\r\nMessage-Id: <${n}.${process.pid}@${o.helo}>\r\nSubject: load ${n}\r\n\r\n`;
    await this.expect(250, "end of data", `${head}${filler}.\r\n`);
  }
  async close() {
    await this.expect(221, "QUIT", "QUIT\r\n");
    this.socket.destroy();
  }
}

let next = 0;
const take = () => (next < total ? first + next++ : undefined);

async function worker() {
  let session: Session | undefined;
  for (let n = take(); n !== undefined; n = take()) {
    if (session === undefined) {
      session = new Session();
      await session.open();
    }
    await session.send(n);
    if (o.mode === "newconn") {
      await session.close();
      session = undefined;
    }
  }
  await session?.close();
}

const started = performance.now();
try {
  await Promise.all(Array.from({ length: Math.min(Number(o.sessions), total) }, worker));
} catch (e) {
  console.error(`smtp-load: ${(e as Error).message} (after ${next} messages started)`);
  process.exit(1);
}
const seconds = (performance.now() - started) / 1000;
console.log(
  JSON.stringify({
    messages: total,
    seconds: Number(seconds.toFixed(3)),
    rate: Number((total / seconds).toFixed(1)),
  }),
);
