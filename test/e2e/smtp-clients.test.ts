// Real SMTP clients (swaks, openssl s_client) against `postern serve`: what they send must be
// accepted, and what is accepted must be in the database.
import { describe, expect, test } from "bun:test";
import {
  type Gateway,
  PASSWORD,
  type SwaksResult,
  suiteGateway,
  swaksSend,
  USER,
} from "../helpers/gateway.ts";
import { havePostgres } from "../helpers/pg.ts";
import { queuedId } from "../helpers/swaks.ts";

function queuedIdIn(out: string): string {
  const id = queuedId(out);
  if (!id) throw new Error(`no "queued as" in swaks output:\n${out}`);
  return id;
}

interface StoredMessage {
  direction: string;
  mail_from: string;
  auth_user: string | null;
  raw: Buffer;
  deliveries: { rcpt: string; target: string; status: string }[];
}

async function stored(gw: Gateway, id: string): Promise<StoredMessage | undefined> {
  const sql = gw.sql!;
  const [m] = await sql`select direction, mail_from, auth_user, raw from messages where id = ${id}`;
  if (!m) return undefined;
  const deliveries =
    await sql`select rcpt, target, status from deliveries where message_id = ${id} order by rcpt`;
  return {
    ...(m as Omit<StoredMessage, "deliveries">),
    deliveries: [...deliveries] as StoredMessage["deliveries"],
  };
}

async function messageCount(gw: Gateway): Promise<number> {
  return (await gw.sql!`select count(*)::int as n from messages`)[0]!.n;
}

/**
 * One delivery to the MX hosts, not yet done: the scheduler may already have tried it (the
 * test zone sends remote.test to 127.0.0.1, where nothing listens on POSTERN_OUTBOUND_PORT).
 */
function expectOutbound(m: StoredMessage, rcpt: string): void {
  expect(m.deliveries).toHaveLength(1);
  expect(m.deliveries[0]).toMatchObject({ rcpt, target: "mx" });
  expect(["queued", "deferred"]).toContain(m.deliveries[0]!.status);
}

/** swaks options for an authenticated submission of USER. */
const auth = (mech: string, password = PASSWORD) => [
  "--auth",
  mech,
  "--auth-user",
  USER,
  "--auth-password",
  password,
];

/** swaks on the MX port, as another mail server would send. */
function viaMx(gw: Gateway, from: string, to: string, subject?: string): Promise<SwaksResult> {
  return swaksSend({ port: gw.server.smtpPort, from, to, subject });
}

/** swaks as USER on the submission port: STARTTLS, then AUTH (PLAIN unless told). */
function submitAsUser(
  gw: Gateway,
  to: string,
  o: { mech?: string; password?: string; subject?: string } = {},
): Promise<SwaksResult> {
  return swaksSend({
    port: gw.server.submissionPort,
    extra: ["--tls", ...auth(o.mech ?? "PLAIN", o.password)],
    from: USER,
    to,
    subject: o.subject,
  });
}

/** openssl s_client with these arguments and this input; what it printed and its exit status. */
async function sClient(args: string[], input = ""): Promise<{ out: string; err: string; code: number }> {
  const proc = Bun.spawn(["openssl", "s_client", ...args], {
    stdin: new TextEncoder().encode(input),
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), 15000);
  try {
    const [out, err, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    return { out, err, code };
  } finally {
    clearTimeout(timer);
  }
}

describe.skipIf(!havePostgres)("real SMTP clients on PostgreSQL", () => {
  const gw = suiteGateway({ postgres: true });

  test("swaks: plain delivery on the MX port, kept in the mailbox", async () => {
    const r = await viaMx(gw, "sender@remote.test", "alice@example.test", "swaks on the MX port");
    expect(r.code).toBe(0);
    for (const ext of [
      "PIPELINING",
      "SIZE 26214400",
      "8BITMIME",
      "SMTPUTF8",
      "ENHANCEDSTATUSCODES",
      "CHUNKING",
      "DSN",
      "STARTTLS",
    ]) {
      expect(r.out).toMatch(new RegExp(`<- {2}250[- ]${ext}\\r?\\n`));
    }
    expect(r.out).not.toContain("AUTH");
    expect(r.out).toContain("<-  250 2.1.0 Ok");
    expect(r.out).toContain("<-  250 2.1.5 Ok");
    const m = await stored(gw, queuedIdIn(r.out));
    expect(m).toMatchObject({ direction: "inbound", mail_from: "sender@remote.test", auth_user: null });
    expect(m!.deliveries).toEqual([{ rcpt: "alice@example.test", target: "mailbox", status: "delivered" }]);
    const raw = m!.raw.toString("utf8");
    expect(raw).toMatch(/^Received: from /m);
    expect(raw).toContain("Subject: swaks on the MX port\r\n");
  }, 20000);

  for (const mech of ["PLAIN", "LOGIN"]) {
    test(`swaks: STARTTLS + AUTH ${mech} on the submission port to a remote recipient`, async () => {
      const r = await submitAsUser(gw, "friend@remote.test", { mech, subject: `submitted with ${mech}` });
      expect(r.code).toBe(0);
      // AUTH only after TLS: "<-" is swaks' plain-text side, "<~" its TLS side.
      expect(r.out).not.toMatch(/<- +250[- ]AUTH/);
      expect(r.out).toMatch(/<~ +250[- ]AUTH PLAIN LOGIN/);
      expect(r.out).not.toMatch(/<~ +250[- ]STARTTLS/);
      expect(r.out).toContain("<~  235 2.7.0 Authentication successful");
      const m = await stored(gw, queuedIdIn(r.out));
      expect(m).toMatchObject({ direction: "outbound", mail_from: USER, auth_user: USER });
      expectOutbound(m!, "friend@remote.test");
      expect(m!.raw.toString("utf8")).toContain(`Subject: submitted with ${mech}\r\n`);
    }, 20000);
  }

  test.each([
    "ceo@other.test (<u@example.test>)",
    "<u@example.test>, ceo@other.test",
    '"u@example.test" <ceo@other.test>',
  ])(
    "swaks: a header From %p hiding another address is refused with 553 5.7.1, nothing queued",
    async (from) => {
      const before = await messageCount(gw);
      const r = await swaksSend({
        port: gw.server.submissionPort,
        extra: ["--tls", ...auth("PLAIN"), "--header", `From: ${from}`],
        from: USER,
        to: "friend@remote.test",
      });
      expect(r.out).toContain("<~* 553 5.7.1 Error: sender <ceo@other.test> not owned by authenticated user");
      expect(await messageCount(gw)).toBe(before);
    },
    20000,
  );

  test("swaks --pipeline: a pipelined transaction with two recipients", async () => {
    const r = await swaksSend({
      port: gw.server.smtpPort,
      extra: ["--pipeline"],
      from: "pipe@remote.test",
      to: "a@example.test,b@example.test",
    });
    expect(r.code).toBe(0);
    // swaks sends MAIL, both RCPTs and DATA in one go and reads the replies after.
    expect(r.out).toMatch(/-> MAIL FROM:<pipe@remote\.test>\r?\n -> RCPT TO:<a@example\.test>/);
    const m = await stored(gw, queuedIdIn(r.out));
    expect(m!.deliveries.map((d) => [d.rcpt, d.target])).toEqual([
      ["a@example.test", "mailbox"],
      ["b@example.test", "mailbox"],
    ]);
  }, 20000);

  test("swaks --tlsc: implicit TLS on the submissions port", async () => {
    const r = await swaksSend({
      port: gw.server.submissionsPort,
      extra: ["--tlsc", ...auth("PLAIN")],
      from: "other-name@example.test",
      to: "friend@remote.test",
    });
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/<~ +220 mx\.example\.test ESMTP/);
    expect(r.out).toMatch(/<~ +250[- ]AUTH PLAIN LOGIN/);
    const m = await stored(gw, queuedIdIn(r.out));
    expect(m).toMatchObject({ direction: "outbound", mail_from: "other-name@example.test", auth_user: USER });
    expectOutbound(m!, "friend@remote.test");
  }, 20000);

  test("swaks: a wrong password gets 535 5.7.8 and nothing is queued", async () => {
    const before = await messageCount(gw);
    const r = await submitAsUser(gw, "friend@remote.test", { mech: "LOGIN", password: "not the password" });
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(/<~\* +535 5\.7\.8 /);
    expect(r.out).not.toContain("queued as");
    expect(await messageCount(gw)).toBe(before);
  }, 20000);

  test("openssl s_client -starttls smtp: EHLO again after TLS, a message accepted", async () => {
    const script = [
      "EHLO openssl.test",
      "MAIL FROM:<tls@remote.test>",
      "RCPT TO:<carol@example.test>",
      "DATA",
      "Subject: through openssl",
      "",
      "sent over STARTTLS by openssl",
      ".",
      "QUIT",
      "",
    ].join("\n");
    const { out, err } = await sClient(
      ["-starttls", "smtp", "-connect", `127.0.0.1:${gw.server.smtpPort}`, "-quiet", "-crlf"],
      script,
    );
    // Only the TLS side of the dialogue is printed: first the answer to our EHLO.
    expect(out).toStartWith("250-mx.example.test\r\n");
    const ehlo = out.slice(0, out.indexOf("250 "));
    expect(ehlo).toContain("250-PIPELINING");
    expect(ehlo).not.toContain("STARTTLS");
    expect(out).toContain("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 ");
    expect(out).toContain("221 2.0.0 Bye");
    const m = await stored(gw, queuedIdIn(out));
    expect(m).toMatchObject({ direction: "inbound", mail_from: "tls@remote.test" });
    expect(m!.deliveries).toEqual([{ rcpt: "carol@example.test", target: "mailbox", status: "delivered" }]);
    const raw = m!.raw.toString("utf8");
    expect(raw).toContain("sent over STARTTLS by openssl\r\n");
    expect(raw).toMatch(/with ESMTPS/);
    // The generated self-signed certificate, named for POSTERN_HOSTNAME.
    expect(err).toContain("CN = mx.example.test");
  }, 20000);

  test("TLS on 25, 587 and 465: TLS 1.2 only with ECDHE and AEAD ciphers; TLS 1.3 as is", async () => {
    const ports: [string, string[]][] = [
      ["25", ["-starttls", "smtp", "-connect", `127.0.0.1:${gw.server.smtpPort}`]],
      ["587", ["-starttls", "smtp", "-connect", `127.0.0.1:${gw.server.submissionPort}`]],
      ["465", ["-connect", `127.0.0.1:${gw.server.submissionsPort}`]],
    ];
    const negotiated = (out: string) => /Cipher is (\S+)/.exec(out)?.[1];
    for (const [name, target] of ports) {
      for (const weak of ["AES128-SHA", "AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA", "AES256-SHA"]) {
        const r = await sClient([...target, "-tls1_2", "-cipher", weak]);
        expect({ port: name, cipher: weak, got: negotiated(r.out) }).toEqual({
          port: name,
          cipher: weak,
          got: "(NONE)",
        });
        expect(r.err).toMatch(/handshake failure|no shared cipher/);
      }
      for (const good of ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-CHACHA20-POLY1305"]) {
        const r = await sClient([...target, "-tls1_2", "-cipher", good]);
        expect({ port: name, got: negotiated(r.out) }).toEqual({ port: name, got: good });
      }
      const old = await sClient([...target, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
      expect({ port: name, got: negotiated(old.out) }).toEqual({ port: name, got: "(NONE)" });
      const v13 = await sClient([...target, "-tls1_3"]);
      expect(v13.out).toMatch(/New, TLSv1\.3, Cipher is TLS_/);
    }
  }, 60000);
});

describe("real SMTP clients on the embedded database", () => {
  const gw = suiteGateway({ postgres: false });

  test("swaks: plain delivery on the MX port, read back from the mailbox API", async () => {
    const r = await viaMx(gw, "sender@remote.test", "dave@example.test", "embedded MX");
    expect(r.code).toBe(0);
    const id = queuedIdIn(r.out);
    const box = await gw.mailbox("dave@example.test");
    expect(box.map((m) => m.id)).toEqual([id]);
    expect(box[0]).toMatchObject({ from: "sender@remote.test", subject: "embedded MX" });
  }, 20000);

  test("swaks: STARTTLS + AUTH PLAIN on the submission port", async () => {
    const r = await submitAsUser(gw, "erin@example.test", { subject: "embedded submission" });
    expect(r.code).toBe(0);
    const id = queuedIdIn(r.out);
    const box = await gw.mailbox("erin@example.test");
    expect(box.map((m) => m.id)).toEqual([id]);
    expect(box[0]!.raw).toContain("Subject: embedded submission\r\n");
  }, 20000);
});
