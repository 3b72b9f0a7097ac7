// Faults a gateway on the open internet meets: its PostgreSQL restarts under it, the process is
// killed with deliveries in flight, a peer hangs. A real `serve` process, a PostgreSQL cluster of
// the test's own (stopped and started for real), real sockets, aiosmtpd as the destination.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { TCPSocketListener } from "bun";
import { haveAiosmtpd, startAiosmtpd } from "../helpers/aiosmtpd.ts";
import { runCli } from "../helpers/cli.ts";
import { ADMIN_TOKEN, DOMAIN, type Gateway, PASSWORD, startGateway, USER } from "../helpers/gateway.ts";
import { haveClusters, havePostgres, startCluster, type TestCluster } from "../helpers/pg.ts";
import { freePort } from "../helpers/serve.ts";
import { waitFor } from "../helpers/server.ts";
import { ehloClient, type SmtpReply, sendOnNewSession } from "../helpers/smtp-client.ts";

const RELAYED = `relayed@${DOMAIN}`;
const MAILBOX = `box@${DOMAIN}`;

const get = (gw: Gateway, path: string) =>
  fetch(`http://127.0.0.1:${gw.server.httpPort}${path}`, {
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
  });

const message = (subject: string) =>
  `From: <s@remote.test>\r\nTo: <${MAILBOX}>\r\nSubject: ${subject}\r\n\r\nbody\r\n`;

/** "451 4.3.0" from a reply. */
const codeOf = (r: SmtpReply) => `${r.code} ${/^\d\.\d+\.\d+/.exec(r.lines.at(-1) ?? "")?.[0] ?? ""}`.trim();

/** A TCP server that accepts connections and never says a word: a destination that hangs. */
function silentServer(port: number): TCPSocketListener<undefined> {
  return Bun.listen<undefined>({ hostname: "127.0.0.1", port, socket: { data() {} } });
}

/** Routes RELAYED to 127.0.0.1:port with the CLI (through the running serve where there is one). */
async function relayRoute(gw: Gateway, port: number): Promise<void> {
  const r = await runCli(["route", "add", RELAYED, `relay:127.0.0.1:${port}`], gw.env);
  expect(r.code).toBe(0);
  await Bun.sleep(2500); // serve reads routes again after 2 s at most (domains/directory.ts)
}

const FAST_RETRIES = {
  POSTERN_RETRY_BASE_SECONDS: "1",
  POSTERN_RETRY_MAX_SECONDS: "2",
  POSTERN_LOG_LEVEL: "warn",
};

describe.skipIf(!haveClusters || !haveAiosmtpd)("PostgreSQL restarts under a running serve", () => {
  let cluster: TestCluster;
  let gw: Gateway;
  beforeAll(async () => {
    cluster = await startCluster();
    gw = await startGateway({ postgres: true, server: cluster.url, env: FAST_RETRIES });
  }, 60000);
  afterAll(async () => {
    await gw?.close();
    cluster?.destroy();
  });

  test("a session across the outage gets 4xx, the process lives, /healthz says 503 then 200, and the session goes on", async () => {
    const { client } = await ehloClient(gw.server.smtpPort);
    expect((await client.command("MAIL FROM:<s@remote.test>")).code).toBe(250);
    cluster.stop();
    try {
      await Bun.sleep(3000);
      expect(codeOf(await client.command(`RCPT TO:<${MAILBOX}>`, 15000))).toBe("451 4.3.0");
      // the next command in the same session gets its own answer
      expect((await client.command("NOOP")).code).toBe(250);
      const sub = await ehloClient(gw.server.submissionsPort, { tls: true });
      const credentials = Buffer.from(`\0${USER}\0${PASSWORD}`).toString("base64");
      expect(codeOf(await sub.client.command(`AUTH PLAIN ${credentials}`, 15000))).toBe("454 4.7.0");
      sub.client.destroy();
      expect((await fetch(`http://127.0.0.1:${gw.server.httpPort}/healthz`)).status).toBe(503);
      const api = await get(gw, "/api/queue");
      expect(api.status).toBe(503);
      expect(await api.json()).toEqual({ error: "database unavailable, try again later" });
      expect(gw.server.proc.exitCode).toBeNull();
    } finally {
      cluster.start();
    }
    await waitFor("healthz 200", async () =>
      (await fetch(`http://127.0.0.1:${gw.server.httpPort}/healthz`)).status === 200 ? true : undefined,
    );
    // Right after the restart a command may still meet a pool connection that is not back yet
    // (seen once, under load): a 451 then is a right answer; the same session must reach a 250.
    await waitFor("RCPT 250 in the same session", async () => {
      const reply = await client.command(`RCPT TO:<${MAILBOX}>`, 15000);
      if (reply.code === 250) return true;
      expect(codeOf(reply)).toBe("451 4.3.0");
      return undefined;
    });
    expect((await client.command("DATA")).code).toBe(354);
    await client.write(`${message("across the outage")}.\r\n`);
    expect((await client.readReply(10000)).code).toBe(250);
    await client.quit();
    const kept = await gw.mailbox(MAILBOX);
    expect(kept.map((m) => m.subject)).toContain("across the outage");
    // LISTEN is back on a connection of its own: new mail wakes the scheduler, not the next poll
    await waitFor("LISTEN subscribed again", async () => {
      const [row] =
        await gw.sql!`select count(*)::int as n from pg_stat_activity where query ilike 'listen%'`;
      return row!.n >= 1 ? true : undefined;
    });
  }, 60000);

  test("a load across a 6 s outage: every message acknowledged is kept once and relayed once", async () => {
    const sink = await startAiosmtpd();
    await relayRoute(gw, sink.port);
    const accepted: string[] = [];
    const TOTAL = 150;
    let next = 0;
    let loadDone = false;
    // Clients as a sender's MTA behaves: a 4xx or a broken connection means "try again shortly".
    const client = async () => {
      for (let n = next++; n < TOTAL; n = next++) {
        const subject = `load-${n}`;
        while (!(await sendPatiently(gw.server.smtpPort, [MAILBOX, RELAYED], message(subject))))
          await Bun.sleep(200);
        accepted.push(subject);
      }
    };
    const load = Promise.all(Array.from({ length: 4 }, client)).finally(() => {
      loadDone = true;
    });
    await waitFor("some load before the outage", async () => (accepted.length >= 20 ? true : undefined));
    cluster.stop();
    await Bun.sleep(6000);
    expect(loadDone).toBe(false);
    cluster.start();
    await load;
    expect(accepted.length).toBe(TOTAL);
    const want = accepted.toSorted();
    await waitFor(
      "every message relayed",
      async () => (sink.subjects().length >= TOTAL ? true : undefined),
      60000,
    ).catch(async (err) => {
      // what is left, for whoever reads a failed run
      const left =
        await gw.sql!`select status, lease_owner, lease_until, attempts, last_reply, next_attempt_at, now() from deliveries where status <> 'delivered'`;
      const workers = await gw.sql!`select *, now() from workers`;
      console.error(JSON.stringify({ relayed: sink.subjects().length, left, workers }));
      gw.server.proc.kill("SIGTERM");
      console.error((await new Response(gw.server.proc.stdout).text()).slice(-5000));
      throw err;
    });
    await Bun.sleep(2000); // a second copy would come now
    expect(sink.subjects().toSorted()).toEqual(want);
    const kept = (await gw.mailbox(MAILBOX)).map((m) => m.subject).filter((s) => s?.startsWith("load-"));
    expect(kept.toSorted()).toEqual(want);
    expect(gw.server.proc.exitCode).toBeNull();
    await sink.stop();
  }, 120000);
});

/**
 * One message on a session of its own, waiting for each reply as long as a sending MTA would
 * (RFC 5321 4.5.3.2: minutes, not seconds): a client that gives up early sends its message again
 * although we hold it. True once it is queued; false on a 4xx or a lost connection.
 */
async function sendPatiently(port: number, to: string[], content: string): Promise<boolean> {
  const { client } = await ehloClient(port).catch(() => ({ client: undefined }));
  if (!client) return false;
  try {
    const steps = [`MAIL FROM:<s@remote.test>`, ...to.map((r) => `RCPT TO:<${r}>`)];
    for (const line of steps) if ((await client.command(line, 120_000)).code !== 250) return false;
    if ((await client.command("DATA", 120_000)).code !== 354) return false;
    await client.write(`${content}.\r\n`);
    return (await client.readReply(120_000)).code === 250;
  } catch {
    return false;
  } finally {
    client.destroy();
  }
}

/** Submits `count` messages to RELAYED and waits until the gateway holds all of them leased. */
async function heldInFlight(gw: Gateway, count: number, owner: () => Promise<number>): Promise<void> {
  for (let i = 0; i < count; i++) {
    const r = await sendOnNewSession(gw.server.smtpPort, "s@remote.test", [RELAYED], message(`held-${i}`));
    expect(r.code).toBe(250);
  }
  await waitFor("deliveries claimed", async () => ((await owner()) >= count ? true : undefined));
}

describe.skipIf(!haveAiosmtpd)("kill -9 with deliveries in flight", () => {
  const COUNT = 12;
  for (const kind of ["embedded", "postgres"] as const) {
    test.skipIf(kind === "postgres" && !haveClusters)(
      `${kind}: restarted, everything is delivered within 30 s of the destination being up`,
      async () => {
        const cluster = kind === "postgres" ? await startCluster() : undefined;
        const gw = await startGateway({
          postgres: kind === "postgres",
          server: cluster?.url,
          env: FAST_RETRIES,
        });
        const port = await freePort();
        const hung = silentServer(port);
        try {
          await relayRoute(gw, port);
          await heldInFlight(gw, COUNT, async () => {
            const res = await get(gw, "/api/queue?status=queued");
            return ((await res.json()) as unknown[]).length;
          });
          await Bun.sleep(1000); // the group is connected to the silent server now
          await gw.kill();
          hung.stop(true);
          const sink = await startAiosmtpd(port);
          const upAt = Date.now();
          try {
            await gw.restart();
            await waitFor(
              "all delivered",
              async () => (sink.subjects().length >= COUNT ? true : undefined),
              30000,
            );
            expect(Date.now() - upAt).toBeLessThan(30000);
            expect(sink.subjects().toSorted()).toEqual(
              Array.from({ length: COUNT }, (_, i) => `held-${i}`).toSorted(),
            );
          } finally {
            await sink.stop();
          }
        } finally {
          hung.stop(true);
          await gw.close();
          cluster?.destroy();
        }
      },
      90000,
    );
  }

  test.skipIf(!haveClusters)(
    "two nodes: the survivor takes over what the killed one held, within 30 s",
    async () => {
      const cluster = await startCluster();
      const a = await startGateway({ postgres: true, server: cluster.url, env: FAST_RETRIES });
      const port = await freePort();
      const hung = silentServer(port);
      let b: Gateway | undefined;
      try {
        await relayRoute(a, port);
        await heldInFlight(a, COUNT, async () => {
          const [row] = await a.sql!`select count(*)::int as n from deliveries where lease_owner is not null`;
          return row!.n as number;
        });
        // B starts once A holds everything: what B delivers, it took over from A
        b = await startGateway({ postgres: true, databaseUrl: a.env.DATABASE_URL, env: FAST_RETRIES });
        await Bun.sleep(1000);
        await a.kill();
        hung.stop(true);
        const sink = await startAiosmtpd(port);
        const upAt = Date.now();
        try {
          await waitFor(
            "all delivered by B",
            async () => (sink.subjects().length >= COUNT ? true : undefined),
            30000,
          );
          expect(Date.now() - upAt).toBeLessThan(30000);
          await Bun.sleep(1000);
          expect(sink.subjects()).toHaveLength(COUNT);
        } finally {
          await sink.stop();
        }
      } finally {
        hung.stop(true);
        await b?.close();
        await a.close();
        cluster.destroy();
      }
    },
    90000,
  );
});

describe.skipIf(!havePostgres)("the DNS server goes away", () => {
  let gw: Gateway;
  beforeAll(async () => {
    gw = await startGateway({ postgres: true });
    await gw.dns.close();
  }, 60000);
  afterAll(async () => {
    await gw?.close();
  });

  test("each step that needs DNS answers 4xx (4.1.8, 4.1.2, 4.4.3); the session and the process go on", async () => {
    const { client } = await ehloClient(gw.server.smtpPort);
    // a sender domain never looked up before: nothing cached to fall back on
    expect(codeOf(await client.command("MAIL FROM:<s@elsewhere.test>", 20000))).toBe("451 4.1.8");
    expect((await client.command("NOOP")).code).toBe(250);
    // the null sender needs no look-up; the From domain's DMARC policy does
    expect((await client.command("MAIL FROM:<>")).code).toBe(250);
    expect((await client.command(`RCPT TO:<${MAILBOX}>`)).code).toBe(250);
    expect((await client.command("DATA")).code).toBe(354);
    await client.write("From: <a@unresolvable.test>\r\nSubject: no dns\r\n\r\nbody\r\n.\r\n");
    expect(codeOf(await client.readReply(20000))).toBe("451 4.4.3");
    expect((await client.command("NOOP")).code).toBe(250);
    await client.quit();

    const sub = await ehloClient(gw.server.submissionsPort, { tls: true });
    const credentials = Buffer.from(`\0${USER}\0${PASSWORD}`).toString("base64");
    expect((await sub.client.command(`AUTH PLAIN ${credentials}`)).code).toBe(235);
    expect((await sub.client.command(`MAIL FROM:<${USER}>`)).code).toBe(250);
    expect(codeOf(await sub.client.command("RCPT TO:<x@unresolvable.test>", 20000))).toBe("450 4.1.2");
    await sub.client.quit();
    expect(gw.server.proc.exitCode).toBeNull();
    expect((await fetch(`http://127.0.0.1:${gw.server.httpPort}/healthz`)).status).toBe(200);
  }, 60000);
});
