// Hostile clients on a raw socket: SMTP smuggling, STARTTLS injection, relaying, oversized and
// malformed input, garbage instead of TLS, floods and slow drips. The server must refuse what
// the contract says, store nothing it should not, and keep serving everyone else.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import net from "node:net";
import { haveAiosmtpd, startAiosmtpd } from "../helpers/aiosmtpd.ts";
import { runCli } from "../helpers/cli.ts";
import { type Gateway, PASSWORD, startGateway, USER } from "../helpers/gateway.ts";
import { havePostgres } from "../helpers/pg.ts";
import { waitFor } from "../helpers/server.ts";
import {
  ehloClient,
  queuedId,
  SmtpClient,
  type SmtpReply,
  sendMessage,
  summary,
  withTimeout,
} from "../helpers/smtp-client.ts";

const MAX_BYTES = 100_000;

describe.skipIf(!havePostgres)("hostile SMTP clients", () => {
  let gw: Gateway;
  /** Same database, POSTERN_MAX_CONNECTIONS_PER_IP=3. */
  let limited: Gateway;
  const open: SmtpClient[] = [];

  beforeAll(async () => {
    gw = await startGateway({
      postgres: true,
      env: { POSTERN_MAX_MESSAGE_BYTES: String(MAX_BYTES), POSTERN_MAX_CONNECTIONS_PER_IP: "500" },
    });
    limited = await startGateway({
      postgres: true,
      databaseUrl: gw.env.DATABASE_URL!,
      env: { POSTERN_MAX_CONNECTIONS_PER_IP: "3" },
    });
  }, 40000);
  afterAll(async () => {
    for (const c of open) c.destroy();
    await gw?.close();
    await limited?.close();
  });

  /** A connected, EHLO'd client that afterAll closes if the test does not. */
  async function client(port = gw.server.smtpPort): Promise<SmtpClient> {
    const { client } = await ehloClient(port);
    open.push(client);
    return client;
  }

  async function countFrom(sender: string): Promise<number> {
    const [row] = await gw.sql!`select count(*)::int as n from messages where mail_from = ${sender}`;
    return row!.n;
  }

  /** The session is still in order: a whole message goes through on it. */
  async function expectUsable(c: SmtpClient, sender: string): Promise<void> {
    const r = await sendMessage(c, sender, ["ok@example.test"], "Subject: still fine\r\n\r\nbody\r\n");
    expect(queuedId(r)).toBeTruthy();
  }

  const smuggling: [string, string][] = [
    ["<LF>.<LF>", "\n.\n"],
    ["<CR><LF>.<LF>", "\r\n.\n"],
    ["<LF>.<CR><LF>", "\n.\r\n"],
    ["<CR>.<CR>", "\r.\r"],
  ];
  for (const [i, [name, seq]] of smuggling.entries()) {
    test(`SMTP smuggling with ${name}: refused with 550 5.5.0, the smuggled message never stored`, async () => {
      const c = await client();
      const real = `real${i}@remote.test`;
      const evil = `evil${i}@remote.test`;
      expect(summary(await c.command(`MAIL FROM:<${real}>`))).toBe("250 2.1.0 Ok");
      expect(summary(await c.command("RCPT TO:<victim@example.test>"))).toBe("250 2.1.5 Ok");
      expect((await c.command("DATA")).code).toBe(354);
      const fake =
        `MAIL FROM:<${evil}>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n` +
        `From: <admin@example.test>\r\nSubject: smuggled\r\n\r\nsmuggled body`;
      await c.write(`From: <${real}>\r\nSubject: real\r\n\r\nreal body${seq}${fake}${seq}\r\n.\r\n`);
      const end = await c.readReply();
      expect(end.code).toBe(550);
      expect(end.lines[0]).toStartWith("5.5.0 ");
      // Exactly one reply for all of it: the fake commands were content, never commands.
      expect(await c.quietFor(200)).toBe(false);
      expect(summary(await c.command("NOOP"))).toBe("250 2.0.0 Ok");
      expect(await countFrom(evil)).toBe(0);
      expect(await countFrom(real)).toBe(0);
      const n: number = (
        await gw.sql!`select count(*)::int as n from messages where position('smuggled' in convert_from(raw, 'UTF8')) > 0`
      )[0]!.n;
      expect(n).toBe(0);
      await expectUsable(c, `after-smuggling${i}@remote.test`);
      await c.quit();
    }, 10000);
  }

  test("STARTTLS injection: commands pipelined behind STARTTLS are never answered or run", async () => {
    const c = await client();
    await c.write("STARTTLS\r\nRSET\r\nMAIL FROM:<inject@remote.test>\r\n");
    expect(summary(await c.readReply())).toBe("220 2.0.0 Ready to start TLS");
    // Nothing more in plain text: no answer to RSET or MAIL.
    expect(await c.quietFor(300)).toBe(false);
    const { leftover } = await c.upgradeTls();
    expect(leftover).toBe("");
    // The first reply under TLS is the one to our EHLO, not a stale 250 for RSET or MAIL.
    const ehlo = await c.command("EHLO client.test");
    expect(ehlo.code).toBe(250);
    expect(ehlo.lines[0]).toBe("mx.example.test");
    expect(ehlo.lines).not.toContain("STARTTLS");
    // The injected MAIL did not open a transaction.
    expect(summary(await c.command("RCPT TO:<a@example.test>"))).toStartWith("503 5.5.1");
    await expectUsable(c, "after-injection@remote.test");
    expect(await countFrom("inject@remote.test")).toBe(0);
    await c.quit();
  }, 10000);

  test("no open relay: remote recipients without AUTH get 554 5.7.1 and nothing is stored", async () => {
    const c = await client();
    expect((await c.command("MAIL FROM:<relay@remote.test>")).code).toBe(250);
    for (const rcpt of [
      "<victim@elsewhere.test>",
      "<@example.test:victim@elsewhere.test>",
      "<victim@[127.0.0.1]>",
      "<victim@example.test.elsewhere.test>",
    ]) {
      expect(summary(await c.command(`RCPT TO:${rcpt}`))).toStartWith("554 5.7.1");
    }
    expect(summary(await c.command("DATA"))).toStartWith("503 5.5.1");
    await c.quit();
    // The same on the submission ports before AUTH: MAIL is refused already.
    const sub = await client(gw.server.submissionPort);
    expect(summary(await sub.command("MAIL FROM:<relay@remote.test>"))).toStartWith("530 5.7.0");
    expect(summary(await sub.command("RCPT TO:<victim@elsewhere.test>"))).toStartWith("503 5.5.1");
    await sub.quit();
    expect(await countFrom("relay@remote.test")).toBe(0);
    const n: number = (
      await gw.sql!`select count(*)::int as n from deliveries where rcpt like '%elsewhere.test%'`
    )[0]!.n;
    expect(n).toBe(0);
  }, 10000);

  test("submission ports: MAIL before AUTH gets 530 5.7.0, before and after TLS", async () => {
    const c = await client(gw.server.submissionPort);
    expect(summary(await c.command(`MAIL FROM:<${USER}>`))).toStartWith("530 5.7.0");
    expect(summary(await c.command("AUTH PLAIN AGFiYwBkZWY="))).toStartWith("530 5.7.0"); // no AUTH before TLS
    expect((await c.command("STARTTLS")).code).toBe(220);
    await c.upgradeTls();
    expect((await c.command("EHLO client.test")).code).toBe(250);
    expect(summary(await c.command(`MAIL FROM:<${USER}>`))).toStartWith("530 5.7.0");
    const creds = Buffer.from(`\0${USER}\0${PASSWORD}`).toString("base64");
    expect(summary(await c.command(`AUTH PLAIN ${creds}`))).toBe("235 2.7.0 Authentication successful");
    expect(summary(await c.command(`MAIL FROM:<${USER}>`))).toBe("250 2.1.0 Ok");
    await c.quit();

    const implicit = await SmtpClient.connect(gw.server.submissionsPort, { tls: true });
    open.push(implicit);
    expect((await implicit.readReply()).code).toBe(220);
    expect((await implicit.command("EHLO client.test")).code).toBe(250);
    expect(summary(await implicit.command(`MAIL FROM:<${USER}>`))).toStartWith("530 5.7.0");
    await implicit.quit();
  }, 10000);

  test("a 600-octet command gets 500 5.5.6 and the session goes on", async () => {
    const c = await client();
    const r = await c.command(`NOOP ${"x".repeat(600 - 7)}`);
    expect(summary(r)).toStartWith("500 5.5.6");
    expect(await c.quietFor(100)).toBe(false);
    // Split so the server sees 512 octets without a line end first.
    await c.write(`MAIL FROM:<${"y".repeat(520)}@remote.test>`);
    await Bun.sleep(50);
    await c.write("\r\n");
    expect(summary(await c.readReply())).toStartWith("500 5.5.6");
    expect(await c.quietFor(100)).toBe(false);
    await expectUsable(c, "after-long-line@remote.test");
    await c.quit();
  }, 10000);

  test(`messages over POSTERN_MAX_MESSAGE_BYTES (${MAX_BYTES}) get 552 5.3.4, with SIZE= and without`, async () => {
    const c = await client();
    const ehlo = await c.command("EHLO client.test");
    expect(ehlo.lines).toContain(`SIZE ${MAX_BYTES}`);
    expect(summary(await c.command(`MAIL FROM:<big@remote.test> SIZE=${MAX_BYTES + 1}`))).toStartWith(
      "552 5.3.4",
    );
    // Without SIZE=: refused at the end of DATA, after the whole message was read.
    const line = `${"z".repeat(98)}\r\n`;
    const body = `Subject: big\r\n\r\n${line.repeat(Math.ceil(MAX_BYTES / line.length) + 10)}`;
    const r = await sendMessage(c, "big@remote.test", ["a@example.test"], body);
    expect(summary(r)).toStartWith("552 5.3.4");
    // BDAT too.
    expect((await c.command("MAIL FROM:<big@remote.test>")).code).toBe(250);
    expect((await c.command("RCPT TO:<a@example.test>")).code).toBe(250);
    await c.write(`BDAT ${body.length} LAST\r\n${body}`);
    expect(summary(await c.readReply())).toStartWith("552 5.3.4");
    // Just under the cap still goes through (the Received header is not counted).
    const fits = `Subject: fits\r\n\r\n${"w".repeat(MAX_BYTES - 40)}\r\n`.replace(
      /w{998}/g,
      (m) => `${m.slice(0, 996)}\r\n`,
    );
    expect(fits.length).toBeLessThanOrEqual(MAX_BYTES);
    expect(queuedId(await sendMessage(c, "fits@remote.test", ["a@example.test"], fits))).toBeTruthy();
    expect(await countFrom("big@remote.test")).toBe(0);
    expect(await countFrom("fits@remote.test")).toBe(1);
    await c.quit();
  }, 15000);

  test("NUL: refused in a command (501), kept byte-exact in message content", async () => {
    const c = await client();
    expect(summary(await c.command("MAIL FROM:<nul\0x@remote.test>"))).toStartWith("501 5.5.4");
    expect(summary(await c.command("NO\0OP"))).toStartWith("501 5.5.4");
    const content = Buffer.concat([
      Buffer.from("From: <nul@remote.test>\r\nSubject: nul bytes\r\n\r\nbefore\0after\r\n"),
      Buffer.from([0, 0, 0, 13, 10, 0xff, 0xfe, 0x80, 0x00, 0x7f, 13, 10]),
      Buffer.from("..leading dot\r\nend\r\n"),
    ]);
    const id = queuedId(await sendMessage(c, "nul@remote.test", ["a@example.test"], content));
    const [row] = await gw.sql!`select raw, size from messages where id = ${id}`;
    const raw = row!.raw as Buffer;
    expect(raw.subarray(raw.length - content.length).equals(content)).toBe(true);
    // Before the content only the header fields we add: Received (and the authentication results).
    const added = raw.subarray(0, raw.length - content.length).toString("latin1");
    expect(added).toMatch(/(^|\r\n)Received: from [^\0]*\r\n$/);
    expect(added).not.toContain("\0");
    expect(row!.size).toBe(raw.length);
    await c.quit();
  }, 10000);

  for (const [name, port] of [
    ["after STARTTLS", "submission"],
    ["on the implicit-TLS port", "submissions"],
  ] as const) {
    test(`garbage instead of a ClientHello ${name} closes only that connection`, async () => {
      let bad: SmtpClient;
      if (port === "submission") {
        bad = await client(gw.server.submissionPort);
        expect((await bad.command("STARTTLS")).code).toBe(220);
      } else {
        bad = await SmtpClient.connect(gw.server.submissionsPort);
        open.push(bad);
      }
      const garbage = Buffer.concat([
        Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\nEHLO x\r\nMAIL FROM:<g@remote.test>\r\n"),
        Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 131 + 7) % 256)),
      ]);
      await bad.write(garbage).catch(() => {});
      // Meanwhile another client completes a transaction.
      const good = await client();
      await expectUsable(good, `beside-garbage-${port}@remote.test`);
      await good.quit();
      expect(await bad.waitClosed(5000)).toBe(true);
      // No SMTP reply ever came to the garbage: it was never read as commands.
      expect(bad.unread).not.toMatch(/^\d{3}[ -]/m);
      expect(await countFrom("g@remote.test")).toBe(0);
      bad.destroy();
    }, 10000);
  }

  test("200 connections at once are all greeted", async () => {
    const clients = await Promise.all(
      Array.from({ length: 200 }, () => SmtpClient.connect(gw.server.smtpPort, { timeoutMs: 10000 })),
    );
    open.push(...clients);
    const greetings = await Promise.all(clients.map((c) => c.readReply(10000)));
    expect(greetings.filter((g) => g.code === 220)).toHaveLength(200);
    const byes = await Promise.all(clients.map((c) => c.command("QUIT", 10000)));
    expect(byes.every((b) => b.code === 221)).toBe(true);
    for (const c of clients) c.destroy();
    // Their slots are freed: a new client is served.
    await expectUsable(await client(), "after-200@remote.test");
  }, 20000);

  test("connection slots come back after failed handshakes and abrupt closes (per-IP limit 3)", async () => {
    const { smtpPort, submissionPort, submissionsPort } = limited.server;
    const startTls = async () => {
      const { client } = await ehloClient(submissionPort);
      expect((await client.command("STARTTLS")).code).toBe(220);
      return client;
    };
    const abuses: (() => Promise<void>)[] = [
      async () => {
        const c = await startTls();
        await c.write("this is no ClientHello\r\n\0\xff\x80").catch(() => {});
        expect(await c.waitClosed(3000)).toBe(true);
        c.destroy();
      },
      async () => (await startTls()).destroy(),
      async () => {
        const c = await startTls();
        await c.upgradeTls();
        c.destroy();
      },
      async () => {
        const c = await SmtpClient.connect(submissionsPort);
        await c.write("not TLS at all\r\n").catch(() => {});
        expect(await c.waitClosed(3000)).toBe(true);
        c.destroy();
      },
      async () => (await SmtpClient.connect(submissionsPort)).destroy(),
      async () => (await SmtpClient.connect(smtpPort)).destroy(),
    ];
    for (const abuse of abuses) for (let i = 0; i < 3; i++) await abuse();
    await Bun.sleep(200);
    const three = await Promise.all([0, 1, 2].map(() => SmtpClient.connect(smtpPort)));
    open.push(...three);
    const greetings = await Promise.all(three.map((c) => c.readReply()));
    expect(greetings.map((g) => g.code)).toEqual([220, 220, 220]);
    for (const c of three) await c.quit();
    await Bun.sleep(200);
  }, 15000);

  test("per-IP limit 3: the 4th connection gets 421 4.7.0 and is closed", async () => {
    const port = limited.server.smtpPort;
    const three = await Promise.all([0, 1, 2].map(() => SmtpClient.connect(port)));
    open.push(...three);
    for (const c of three) expect((await c.readReply()).code).toBe(220);
    const fourth = await SmtpClient.connect(port);
    open.push(fourth);
    expect(summary(await fourth.readReply())).toStartWith("421 4.7.0");
    expect(await fourth.waitClosed(3000)).toBe(true);
    // A slot freed by QUIT is given to the next one.
    await three[0]!.quit();
    let again: SmtpReply | undefined;
    for (let i = 0; i < 20 && again?.code !== 220; i++) {
      await Bun.sleep(50);
      const c = await SmtpClient.connect(port);
      open.push(c);
      again = await c.readReply();
      if (again.code === 220) await c.quit();
      c.destroy();
    }
    expect(again?.code).toBe(220);
    for (const c of three) c.destroy();
  }, 10000);

  test("silent TCP connections to 465 count from accept: over the per-IP limit, port 25 says 421", async () => {
    const { smtpPort, submissionsPort } = limited.server;
    // Never a ClientHello: before, these held no slot until a handshake that never came.
    // One over the limit may be closed so fast that its own connect sees the reset: that one
    // was closed at once too.
    const tries = await Promise.allSettled(
      Array.from({ length: 6 }, () => SmtpClient.connect(submissionsPort, { timeoutMs: 5000 })),
    );
    const silent = tries.flatMap((t) => (t.status === "fulfilled" ? [t.value] : []));
    open.push(...silent);
    await Bun.sleep(200);
    const refused = await SmtpClient.connect(smtpPort);
    open.push(refused);
    expect(summary(await refused.readReply())).toStartWith("421 4.7.0");
    // Three hold the slots; the others were closed at once (no reply can precede a handshake).
    const closed = await Promise.all(silent.map((c) => c.waitClosed(1000)));
    expect(closed.filter((c) => !c)).toHaveLength(3);
    for (const c of silent) c.destroy();
    let again: SmtpReply | undefined;
    for (let i = 0; i < 40 && again?.code !== 220; i++) {
      await Bun.sleep(50);
      const c = await SmtpClient.connect(smtpPort);
      again = await c.readReply();
      await c.quit();
    }
    expect(again?.code).toBe(220);
  }, 15000);

  test.skipIf(!existsSync("/proc/self/status"))(
    "a client pipelining megabytes of commands without reading the replies is held back",
    async () => {
      const pid = gw.server.proc.pid;
      const rssMb = () =>
        Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024;
      const before = rssMb();
      const flood = net.connect({ host: "127.0.0.1", port: gw.server.smtpPort });
      flood.on("error", () => {});
      flood.pause(); // never reads a reply
      await new Promise((resolve) => flood.once("connect", resolve));
      const chunk = Buffer.from("NOOP\r\n".repeat(10_000));
      const started = Date.now();
      while (Date.now() - started < 3000) {
        if (!flood.write(chunk)) await drainOrTimeout(flood, 200);
      }
      // Unread replies are capped: the server stops reading, TCP holds the flooder back.
      // (Without that the server kept every reply: ~55 bytes of memory per byte sent.)
      expect(rssMb() - before).toBeLessThan(150);
      const other = await client();
      await expectUsable(other, "beside-flood@remote.test");
      await other.quit();
      flood.destroy();
    },
    15000,
  );

  test.skipIf(!haveAiosmtpd)(
    "backscatter: a relay route's unknown recipient is refused at RCPT with the inner server's 550, and no DSN is made",
    async () => {
      const inner = await startAiosmtpd(undefined, { refuseUnknown: true });
      try {
        for (const rcpt of ["unknown-bs@example.test", "known-bs@example.test"]) {
          const r = await runCli(["route", "add", rcpt, `relay:127.0.0.1:${inner.port}`], gw.env);
          expect(r.code).toBe(0);
        }
        await Bun.sleep(2500); // serve reads routes again after 2 s at most (domains/directory.ts)
        const c = await client();
        expect((await c.command("MAIL FROM:<forged@remote.test>")).code).toBe(250);
        const refused = summary(await c.command("RCPT TO:<unknown-bs@example.test>"));
        expect(refused).toStartWith("550 5.1.1 ");
        expect(refused).toContain("User unknown in local recipient table");
        expect(summary(await c.command("RCPT TO:<known-bs@example.test>"))).toStartWith("250 2.1.5");
        expect((await c.command("DATA")).code).toBe(354);
        expect((await c.command("Subject: backscatter\r\n\r\nbody\r\n.")).code).toBe(250);
        await c.quit();
        await waitFor("delivered to the inner server", async () =>
          inner.subjects().includes("backscatter") ? true : undefined,
        );
        expect(inner.rcpts()).toContain("unknown-bs@example.test"); // asked during RCPT
        const [row] = await gw.sql!`
          select count(*)::int as n from deliveries where rcpt = 'unknown-bs@example.test'
            or rcpt = 'forged@remote.test'`;
        expect(row!.n).toBe(0);
      } finally {
        await inner.stop();
      }
    },
    20000,
  );

  test("50 slow-drip clients do not hold up a normal one", async () => {
    const drips = await Promise.all(Array.from({ length: 50 }, () => SmtpClient.connect(gw.server.smtpPort)));
    open.push(...drips);
    for (const g of await Promise.all(drips.map((c) => c.readReply()))) expect(g.code).toBe(220);
    const line = "EHLO drip.test\r\n";
    let sent = 0;
    const timer = setInterval(() => {
      if (sent >= line.length) return;
      const byte = line[sent++]!;
      for (const c of drips) void c.write(byte).catch(() => {});
    }, 200);
    try {
      await Bun.sleep(500); // the drip is under way
      const started = performance.now();
      const normal = await client();
      await expectUsable(normal, "normal@remote.test");
      await normal.quit();
      expect(performance.now() - started).toBeLessThan(1500);
      expect(sent).toBeLessThan(line.length); // the drip was still going on meanwhile
      // Every dripping client is answered once its line is complete.
      const answers = await withTimeout(
        Promise.all(drips.map((c) => c.readReply(line.length * 200 + 3000))),
        line.length * 200 + 4000,
        "drip EHLO replies",
      );
      expect(answers.every((a) => a.code === 250)).toBe(true);
    } finally {
      clearInterval(timer);
      for (const c of drips) c.destroy();
    }
  }, 15000);
});

/** Waits for the socket's `drain`, at most `ms`, leaving no listener behind. */
function drainOrTimeout(socket: net.Socket, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      socket.off("drain", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    socket.once("drain", done);
  });
}
