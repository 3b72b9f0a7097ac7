// A receiving MTA for delivery tests that is not ours: nodemailer's smtp-server (in process, on
// loopback), so a misreading of the RFC shared by our client and our own parser cannot pass
// unseen. It records what it received and answers as the test scripts it:
//
//   const peer = await SmtpPeer.start({ starttls: true, rcptReply: (a) => a.startsWith("no") ? "550 5.1.1 no" : undefined });
//   ... deliver to 127.0.0.1:peer.port ...
//   expect(peer.messages[0]!.tls).toBe(true);
//
// `peer.behaviour` may be changed between transactions (e.g. hang first, then answer). Replies
// are given as "550 5.1.1 text": the code, then the words the peer says (enhanced code first).
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from "smtp-server";
import type { TlsMaterial } from "../../src/net/tls.ts";
import { sinkTlsMaterial } from "./sink.ts";

export interface PeerBehaviour {
  /** Offer STARTTLS (a self-signed certificate). */
  starttls: boolean;
  /** LMTP: LHLO, and one reply per recipient after the data. */
  lmtp: boolean;
  /** Require AUTH (PLAIN, LOGIN; only under TLS): wrong credentials get 535. */
  auth: { username: string; password: string } | undefined;
  /** The reply to one RCPT; undefined: 250. */
  rcptReply: ((address: string) => string | undefined) | undefined;
  /** The reply after the data (for LMTP, each recipient's); undefined: 250. */
  dataReply: ((message: PeerMessage, recipient: string | undefined) => string | undefined) | undefined;
  /** Never answer the end of the data (the connection stays open). */
  hangAfterData: boolean;
}

export interface PeerMessage {
  /** Which connection (1 for the first). */
  connection: number;
  tls: boolean;
  authUser: string | undefined;
  mailFrom: string;
  /** The accepted recipients. */
  recipients: string[];
  /** MAIL and RCPT parameters as the peer read them, e.g. { NOTIFY: "SUCCESS" }. */
  mailParams: Record<string, string | boolean>;
  rcptParams: Record<string, string | boolean>[];
  data: Uint8Array;
  /** When its data ended (ms since epoch). */
  at: number;
}

export interface PeerConnection {
  id: number;
  tls: boolean;
  /** When it opened and closed (ms since epoch). */
  openedAt: number;
  closedAt: number | undefined;
  /** Every RCPT address it was asked about, refused ones too. */
  rcpts: string[];
}

const DEFAULTS: PeerBehaviour = {
  starttls: false,
  lmtp: false,
  auth: undefined,
  rcptReply: undefined,
  dataReply: undefined,
  hangAfterData: false,
};

/** "550 5.1.1 text" → an error smtp-server sends as that reply. */
function refusal(reply: string): Error & { responseCode: number } {
  const m = /^(\d{3})[ -]?(.*)$/.exec(reply);
  if (!m) throw new Error(`not a reply: ${reply}`);
  return Object.assign(new Error(m[2]!), { responseCode: Number(m[1]) });
}

export class SmtpPeer {
  readonly behaviour: PeerBehaviour;
  readonly connections: PeerConnection[] = [];
  /** Messages whose data got a 2xx (for LMTP: for at least one recipient). */
  readonly messages: PeerMessage[] = [];
  /** Messages whose data arrived, answered or not. */
  readonly received: PeerMessage[] = [];
  private readonly ids = new Map<string, PeerConnection>();

  private constructor(
    behaviour: PeerBehaviour,
    private readonly server: SMTPServer,
    readonly port: number,
  ) {
    this.behaviour = behaviour;
  }

  /**
   * `listen`: where (default 127.0.0.1, a free port); `tls`: the certificate STARTTLS presents
   * (default a self-signed one for sink.test).
   */
  static async start(
    opts: Partial<PeerBehaviour> & { listen?: { host: string; port: number }; tls?: TlsMaterial } = {},
  ): Promise<SmtpPeer> {
    const { listen = { host: "127.0.0.1", port: 0 }, tls: material, ...rest } = opts;
    const behaviour: PeerBehaviour = { ...DEFAULTS, ...rest };
    const tls = material ?? (await sinkTlsMaterial());
    let peer: SmtpPeer | undefined;
    const connectionOf = (session: SMTPServerSession) => {
      let c = peer!.ids.get(session.id);
      if (!c) {
        c = {
          id: peer!.connections.length + 1,
          tls: false,
          rcpts: [],
          openedAt: Date.now(),
          closedAt: undefined,
        };
        peer!.ids.set(session.id, c);
        peer!.connections.push(c);
      }
      c.tls ||= Boolean(session.secure);
      return c;
    };
    const server = new SMTPServer({
      key: tls.key,
      cert: tls.cert,
      lmtp: behaviour.lmtp,
      hideSTARTTLS: !behaviour.starttls,
      // DSN offered: the client then sends NOTIFY and ORCPT, which tests look at
      hideDSN: false,
      authOptional: !behaviour.auth,
      authMethods: ["PLAIN", "LOGIN"],
      allowInsecureAuth: false,
      logger: false,
      banner: "test peer",
      onConnect(session, callback) {
        connectionOf(session);
        callback();
      },
      onClose(session) {
        connectionOf(session).closedAt = Date.now();
      },
      onAuth(auth, _session, callback) {
        const want = peer!.behaviour.auth;
        if (want && auth.username === want.username && auth.password === want.password) {
          return callback(null, { user: auth.username });
        }
        callback(refusal("535 5.7.8 authentication failed"));
      },
      onRcptTo(address, session, callback) {
        connectionOf(session).rcpts.push(address.address);
        const reply = peer!.behaviour.rcptReply?.(address.address);
        callback(reply && !reply.startsWith("2") ? refusal(reply) : undefined);
      },
      onData(stream: SMTPServerDataStream, session, callback) {
        const chunks: Buffer[] = [];
        stream.on("data", (chunk: Buffer) => chunks.push(chunk));
        stream.on("end", () => {
          const envelope = session.envelope;
          const message: PeerMessage = {
            connection: connectionOf(session).id,
            tls: Boolean(session.secure),
            authUser: typeof session.user === "string" ? session.user : undefined,
            mailFrom: envelope.mailFrom ? envelope.mailFrom.address : "",
            recipients: envelope.rcptTo.map((r) => r.address),
            mailParams: (envelope.mailFrom ? envelope.mailFrom.args : {}) || {},
            rcptParams: envelope.rcptTo.map((r) => r.args || {}),
            data: new Uint8Array(Buffer.concat(chunks)),
            at: Date.now(),
          };
          peer!.received.push(message);
          const b = peer!.behaviour;
          if (b.hangAfterData) return; // the client waits for a reply that never comes
          if (b.lmtp) {
            const replies = message.recipients.map((r) => b.dataReply?.(message, r));
            if (replies.some((r) => !r || r.startsWith("2"))) peer!.messages.push(message);
            return callback(
              null,
              replies.map((r) => (r && !r.startsWith("2") ? refusal(r) : "2.0.0 OK")),
            );
          }
          const reply = b.dataReply?.(message, undefined);
          if (reply && !reply.startsWith("2")) return callback(refusal(reply));
          peer!.messages.push(message);
          callback(null, "2.0.0 OK: message queued");
        });
      },
    });
    const port = await new Promise<number>((resolve, reject) => {
      server.once("error", reject);
      server.listen(listen.port, listen.host, () => {
        const address = server.server.address();
        resolve(typeof address === "object" && address ? address.port : 0);
      });
    });
    // A client that drops its connection mid-way is the test's business, not a crash.
    server.on("error", () => {});
    peer = new SmtpPeer(behaviour, server, port);
    return peer;
  }

  /** Stops listening and drops every connection. */
  stop(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
