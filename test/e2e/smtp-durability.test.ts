// "250 after DATA means committed": SIGKILL the server the moment a 250 is read, start it
// again, and every acknowledged message must be there, on PostgreSQL and on PGlite.
import { describe, expect, test } from "bun:test";
import { type Gateway, suiteGateway } from "../helpers/gateway.ts";
import { havePostgres } from "../helpers/pg.ts";
import {
  ehloClient,
  queuedId,
  type SmtpClient,
  sendMessage,
  sendOnNewSession,
} from "../helpers/smtp-client.ts";

/** Several clients send as fast as they can; the server is killed mid-stream. */
async function ackedBeforeKill(gw: Gateway, clients: number, runMs: number): Promise<string[]> {
  const acked: string[] = [];
  let killed = false;
  const sessions: SmtpClient[] = [];
  const loops = Array.from({ length: clients }, async (_, n) => {
    const { client } = await ehloClient(gw.server.smtpPort);
    sessions.push(client);
    for (let i = 0; !killed; i++) {
      try {
        const r = await sendMessage(
          client,
          `stream${n}@remote.test`,
          ["stream@example.test"],
          `Subject: stream ${n}/${i}\r\n\r\nmessage ${i} of client ${n}\r\n`,
        );
        if (r.code === 250) acked.push(queuedId(r));
      } catch {
        return; // the server went away under us
      }
    }
  });
  await Bun.sleep(runMs);
  // Kill while transactions are in flight; only replies read before this point count.
  gw.server.proc.kill("SIGKILL");
  killed = true;
  const snapshot = [...acked];
  await gw.server.proc.exited;
  await Promise.all(loops);
  for (const c of sessions) c.destroy();
  return snapshot;
}

async function oneMessageThenKill(gw: Gateway, rcpt: string): Promise<string> {
  const { client } = await ehloClient(gw.server.smtpPort);
  try {
    const r = await sendMessage(
      client,
      "durable@remote.test",
      [rcpt],
      "Subject: durable\r\n\r\nsurvives\r\n",
    );
    const id = queuedId(r);
    gw.server.proc.kill("SIGKILL"); // at once: no orderly stop, no chance to flush anything
    await gw.server.proc.exited;
    return id;
  } finally {
    client.destroy();
  }
}

describe.skipIf(!havePostgres)("durability on PostgreSQL", () => {
  const gw = suiteGateway({ postgres: true });

  test("a message acknowledged with 250 survives SIGKILL right after", async () => {
    const id = await oneMessageThenKill(gw, "keep@example.test");
    await gw.restart();
    const rows = await gw.sql!`
      select m.mail_from, d.rcpt, d.target, d.status, convert_from(m.raw, 'UTF8') as raw
      from messages m join deliveries d on d.message_id = m.id where m.id = ${id}`;
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      mail_from: "durable@remote.test",
      rcpt: "keep@example.test",
      target: "mailbox",
      status: "delivered",
    });
    expect(rows[0]!.raw).toContain("\r\n\r\nsurvives\r\n");
    // The restarted server takes mail again.
    const again = await sendOnNewSession(
      gw.server.smtpPort,
      "again@remote.test",
      ["keep@example.test"],
      "Subject: x\r\n\r\ny\r\n",
    );
    expect(queuedId(again)).toBeTruthy();
  }, 30000);

  test("killed mid-stream: every acknowledged message is there, none half-written", async () => {
    const acked = await ackedBeforeKill(gw, 8, 1000);
    expect(acked.length).toBeGreaterThan(10);
    await gw.restart();
    const rows = await gw.sql!`select id from messages where id in ${gw.sql!(acked)}`;
    expect(rows.map((r) => r.id).sort()).toEqual([...acked].sort());
    // A message is written with its deliveries in one transaction.
    const n: number = (
      await gw.sql!`
      select count(*)::int as n from messages m
      where not exists (select 1 from deliveries d where d.message_id = m.id)`
    )[0]!.n;
    expect(n).toBe(0);
  }, 30000);
});

describe("durability on the embedded database (PGlite)", () => {
  const gw = suiteGateway({ postgres: false });

  test("a message acknowledged with 250 survives SIGKILL right after", async () => {
    const id = await oneMessageThenKill(gw, "keep@example.test");
    await gw.restart(); // the kernel dropped the lock with the dead process
    const box = await gw.mailbox("keep@example.test");
    expect(box.map((m) => m.id)).toEqual([id]);
    expect(box[0]!.raw).toContain("\r\n\r\nsurvives\r\n");
  }, 40000);

  test("killed mid-stream: every acknowledged message is there", async () => {
    const acked = await ackedBeforeKill(gw, 4, 1000);
    expect(acked.length).toBeGreaterThan(5);
    await gw.restart();
    const kept = new Set((await gw.mailbox("stream@example.test")).map((m) => m.id));
    expect(acked.filter((id) => !kept.has(id))).toEqual([]);
  }, 40000);
});
