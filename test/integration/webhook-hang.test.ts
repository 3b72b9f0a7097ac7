// A webhook endpoint that takes the request and never answers: each POST has its own deadline,
// after which the delivery is deferred (and retried like a 4xx), and the next job still goes.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Job } from "../../src/delivery/courier.ts";
import { WebhookCourier } from "../../src/delivery/webhook.ts";

const job = (id: number, url: string): Job => ({
  delivery: {
    id,
    messageId: `M${id}`,
    rcpt: "hook@example.test",
    orcpt: null,
    notify: null,
    target: { kind: "webhook", url },
    attempts: 0,
    createdAt: new Date(),
    warnedAt: null,
    size: 100,
  },
  message: {
    id: `M${id}`,
    mailFrom: "s@remote.test",
    raw: new TextEncoder().encode("Subject: hi\r\n\r\nbody\r\n"),
    envid: null,
    ret: null,
    receivedAt: new Date(),
    direction: "inbound",
    subject: "hi",
    authResults: null,
    messageIdHeader: null,
  },
});

describe("a webhook endpoint that never answers", () => {
  let hanging: ReturnType<typeof Bun.serve>;
  let answering: ReturnType<typeof Bun.serve>;
  let requests = 0;
  beforeAll(() => {
    hanging = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: () => {
        requests++;
        return new Promise<Response>(() => {}); // never
      },
    });
    answering = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("ok") });
  });
  afterAll(() => {
    hanging.stop(true);
    answering.stop(true);
  });

  test("is given up after the per-request timeout: deferred, saying so; the next job is delivered", async () => {
    const courier = new WebhookCourier(async () => "secret", 300);
    const started = Date.now();
    const [late, next] = await courier.deliver([
      job(1, `http://127.0.0.1:${hanging.port}/hook`),
      job(2, `http://127.0.0.1:${answering.port}/hook`),
    ]);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(requests).toBe(1);
    expect(late).toMatchObject({ deliveryId: 1, outcome: "deferred", status: "4.4.1" });
    expect(late!.reply).toContain("timed out");
    expect(next).toMatchObject({ deliveryId: 2, outcome: "delivered" });
  });
});
