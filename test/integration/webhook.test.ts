import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHmac } from "node:crypto";
import { eq } from "drizzle-orm";
import { migrate } from "../../src/db/migrate.ts";
import { type Database, openDatabase } from "../../src/db/open.ts";
import { attempts, deliveries, routes } from "../../src/db/schema.ts";
import { WebhookCourier } from "../../src/delivery/webhook.ts";
import { Directory } from "../../src/domains/directory.ts";
import { parseTarget } from "../../src/domains/targets.ts";
import { createLogger } from "../../src/log.ts";
import { Enqueuer } from "../../src/queue/enqueue.ts";
import { newMessageId } from "../../src/queue/ids.ts";
import { Scheduler } from "../../src/queue/scheduler.ts";
import { tempDir } from "../helpers/cli.ts";

const SECRET = "route-secret-for-the-test";
const MESSAGE = [
  "From: Sender <s@remote.test>",
  "To: hook@example.test",
  "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=",
  "MIME-Version: 1.0",
  'Content-Type: multipart/alternative; boundary="b"',
  "",
  "--b",
  "Content-Type: text/plain; charset=utf-8",
  "",
  "plain part",
  "--b",
  "Content-Type: text/html; charset=utf-8",
  "",
  "<p>html part</p>",
  "--b--",
  "",
].join("\r\n");

describe("webhook targets", () => {
  let database: Database;
  let server: ReturnType<typeof Bun.serve>;
  const received: { body: string; signature: string | null }[] = [];
  let answers: number[] = [];

  beforeAll(async () => {
    database = await openDatabase({ databaseUrl: undefined, dataDir: tempDir() });
    await migrate(database);
    server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(req) {
        received.push({ body: await req.text(), signature: req.headers.get("x-postern-signature") });
        return new Response("", { status: answers.shift() ?? 200 });
      },
    });
  });
  afterAll(async () => {
    server?.stop(true);
    await database?.close();
  });

  /** Runs a scheduler over `target` while `until` is false (10 s at most); returns the message id. */
  async function deliverTo(target: string, until: () => boolean): Promise<string> {
    const directory = new Directory(database.db);
    const courier = new WebhookCourier((rcpt, t) => directory.secretFor(rcpt, t));
    const scheduler = new Scheduler({
      db: database.db,
      owner: "w",
      courierFor: () => courier,
      policy: { baseSeconds: 0.2, maxSeconds: 1, lifetimeSeconds: 3600, delayWarningSeconds: 3600 },
      dsns: async () => [],
      log: createLogger("error"),
      concurrency: 4,
      perDestination: 2,
      initialPerDestination: 1,
      jobsPerGroup: 10,
      maxGroupBytes: 1 << 20,
      maxBytesInFlight: 1 << 22,
      leaseSeconds: 30,
      pollMs: 100,
      stopGraceMs: 1000,
      listen: (fn) => database.listen("postern_queue", fn),
    });
    await scheduler.start();
    const id = newMessageId();
    try {
      await new Enqueuer(database.db, createLogger("error")).enqueue({
        id,
        direction: "inbound",
        mailFrom: "bounces+1234@remote.test",
        raw: new TextEncoder().encode(MESSAGE),
        authResults: { spf: "pass" },
        deliveries: [{ rcpt: "hook@example.test", target: parseTarget(target) }],
      });
      const deadline = Date.now() + 10000;
      while (!until() && Date.now() < deadline) await Bun.sleep(50);
    } finally {
      await scheduler.stop();
    }
    return id;
  }

  async function attemptsOf(id: string) {
    const [d] = await database.db.select().from(deliveries).where(eq(deliveries.messageId, id));
    const tries = await database.db.select().from(attempts).where(eq(attempts.deliveryId, d!.id));
    return { status: d!.status, tries: tries.map((t) => [t.outcome, t.reply]) };
  }

  test("a 500 is retried, then a 200 delivers; every POST carries a valid signature and the message", async () => {
    const target = `webhook:http://127.0.0.1:${server.port}/hook`;
    await database.db.insert(routes).values({ pattern: "hook@example.test", target, secret: SECRET });
    answers = [500];
    const id = await deliverTo(target, () => received.length >= 2);
    expect(received).toHaveLength(2);
    for (const r of received) {
      expect(r.signature).toBe(createHmac("sha256", SECRET).update(r.body).digest("hex"));
    }
    const payload = JSON.parse(received[1]!.body);
    expect(payload).toMatchObject({
      id,
      from: "s@remote.test",
      mailFrom: "bounces+1234@remote.test",
      to: ["hook@example.test"],
      subject: "Grüße",
      text: "plain part\n",
      html: "<p>html part</p>\n",
      authResults: { spf: "pass" },
      raw: MESSAGE,
    });
    expect(payload.headers).toContainEqual({ key: "to", value: "hook@example.test" });
    expect(await attemptsOf(id)).toEqual({
      status: "delivered",
      tries: [
        ["deferred", "HTTP 500 Internal Server Error"],
        ["delivered", "HTTP 200 OK"],
      ],
    });
  });

  test("a redirect is not followed: the attempt is deferred, the internal URL receives nothing", async () => {
    const internal: string[] = [];
    const inner = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: async (req) => {
        internal.push(await req.text());
        return new Response("", { status: 200 });
      },
    });
    const location = `http://127.0.0.1:${inner.port}/internal/admin`;
    let asked = 0;
    const redirecting = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: () => {
        asked++;
        return new Response("", { status: 307, headers: { location } });
      },
    });
    try {
      const target = `webhook:http://127.0.0.1:${redirecting.port}/hook`;
      await database.db
        .insert(routes)
        .values({ pattern: "hook@example.test", target, secret: SECRET })
        .onConflictDoUpdate({ target: routes.pattern, set: { target } });
      const id = await deliverTo(target, () => asked >= 2);
      // A retry came too: the redirect was an ordinary failed attempt.
      expect(asked).toBeGreaterThanOrEqual(2);
      const story = await attemptsOf(id);
      expect(story.tries.length).toBeGreaterThanOrEqual(2);
      expect(story.status).toBe("deferred");
      for (const t of story.tries) {
        expect(t).toEqual([
          "deferred",
          `HTTP 307 Temporary Redirect: redirect not followed (Location: ${location})`,
        ]);
      }
      expect(internal).toEqual([]);
    } finally {
      redirecting.stop(true);
      inner.stop(true);
    }
  });
});
