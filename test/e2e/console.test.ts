// The operator console in a real browser: Debian's Chromium driven by puppeteer-core. A message
// deferred by a receiver that is not ours (smtp-server) is found by its Message-ID, retried from
// its page and delivered; CSRF, a wrong token and logout are checked from outside too. Each page
// is photographed into test/artifacts/ (not committed) for a reviewer.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import type { RunningServer } from "../../src/serve.ts";
import { cliEnv, runCli } from "../helpers/cli.ts";
import { type DnsTestServer, startDnsServer } from "../helpers/dns.ts";
import { SmtpPeer } from "../helpers/peer.ts";
import { freshDatabaseUrl, havePostgres } from "../helpers/pg.ts";
import { startTestServer, waitFor } from "../helpers/server.ts";

const CHROMIUM = "/usr/bin/chromium";
const TOKEN = "console-admin-token-for-the-browser-test";
const ARTIFACTS = join(import.meta.dir, "..", "artifacts");

describe.skipIf(!havePostgres || !existsSync(CHROMIUM))("operator console in Chromium", () => {
  let server: RunningServer;
  let dns: DnsTestServer;
  let peer: SmtpPeer;
  let sql: postgres.Sql;
  let browser: Browser;
  let page: Page;
  let base: string;
  let messageId = "";
  let messageIdHeader = "";
  const shot = (name: string) =>
    page.screenshot({ path: join(ARTIFACTS, `console-${name}.png`), fullPage: true });

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    peer = await SmtpPeer.start({ rcptReply: () => "451 4.3.0 come back later" });
    dns = await startDnsServer({
      "remote.test": { MX: [{ exchange: "mx.remote.test", priority: 10 }] },
      "mx.remote.test": { A: ["127.0.0.1"] },
    });
    const url = await freshDatabaseUrl();
    expect((await runCli(["domain", "add", "example.test"], cliEnv({ DATABASE_URL: url }))).code).toBe(0);
    // a webhook nobody listens for: its refused events show on the Hooks page
    expect(
      (await runCli(["hook", "add", "http://127.0.0.1:9/events"], cliEnv({ DATABASE_URL: url }))).code,
    ).toBe(0);
    sql = postgres(url, { max: 2, onnotice: () => {} });
    server = await startTestServer({
      DATABASE_URL: url,
      POSTERN_ADMIN_TOKEN: TOKEN,
      POSTERN_DNS_SERVERS: dns.spec,
      POSTERN_OUTBOUND_PORT: String(peer.port),
      POSTERN_ALLOW_PRIVATE_DESTINATIONS: "on",
      POSTERN_RETRY_BASE_SECONDS: "3600",
    });
    base = `http://127.0.0.1:${server.httpPort}`;
    const sent = await fetch(`${base}/api/send`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({
        from: "app@example.test",
        to: ["bob@remote.test"],
        subject: "<b>stuck</b>",
        text: "hi",
      }),
    });
    messageId = ((await sent.json()) as { id: string }).id;
    const [row] = await waitFor("the deferral", async () => {
      const rows =
        await sql`select m.message_id_header from deliveries d join messages m on m.id = d.message_id
        where d.message_id = ${messageId} and d.status = 'deferred'`;
      return rows.length ? rows : undefined;
    });
    messageIdHeader = row!.message_id_header;
    browser = await puppeteer.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--headless=new"] });
    page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 900 });
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    await sql?.end();
    await peer?.stop();
    await dns?.close();
  });

  const login = async (token: string) => {
    await page.goto(`${base}/admin/login`);
    await page.type("#token", token);
    await Promise.all([page.waitForNavigation(), page.click("button")]);
  };
  // innerText, not textContent: the text as a reader sees it (table cells apart, no hidden parts)
  const text = () =>
    // biome-ignore lint/performance/useDomNodeTextContent: the rendered text is what is checked
    page.$eval("body", (b) => (b as unknown as { innerText: string }).innerText);

  test("a wrong token is refused; the right one logs in with an HttpOnly, SameSite=Strict cookie", async () => {
    await page.goto(`${base}/admin/queue`);
    expect(page.url()).toBe(`${base}/admin/login`);
    await shot("login");
    await login("not-the-token");
    expect(await text()).toContain("Wrong token.");
    await login(TOKEN);
    expect(page.url()).toBe(`${base}/admin/overview`);
    const cookie = (await browser.cookies()).find((c) => c.name === "postern_session")!;
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: "Strict", path: "/admin" });
    expect(await page.content()).not.toContain(TOKEN);
    expect(await text()).toContain("received: 1");
    await shot("overview");
  });

  test("find the deferred message by its Message-ID, see its attempts, retry it: delivered", async () => {
    await page.goto(`${base}/admin/queue`);
    await page.type("#f-q", messageIdHeader);
    await Promise.all([page.waitForNavigation(), page.click("form.filters button")]);
    expect(await text()).toContain("deferred: 1");
    const links = await page.$$eval("tbody a", (as) => as.map((a) => a.textContent));
    expect(links).toEqual([messageId]);
    await shot("queue");
    await Promise.all([page.waitForNavigation(), page.click(`a[href="/admin/messages/${messageId}"]`)]);
    const story = await text();
    expect(story).toContain("451 4.3.0 come back later");
    expect(story).toContain("<b>stuck</b>"); // the subject as text, not markup
    expect(story).toContain("waiting for the retry backoff");
    expect(story).toMatch(/mx\.remote\.test\s+deferred\s+soft/);
    await shot("message-deferred");
    peer.behaviour.rcptReply = undefined;
    await Promise.all([page.waitForNavigation(), page.click('form[action$="/retry"] button')]);
    await waitFor("delivered, as the page says", async () => {
      await page.reload();
      return /bob@remote\.test \(delivered\)/.test(await text()) ? true : undefined;
    });
    expect(peer.messages.map((m) => m.recipients)).toEqual([["bob@remote.test"]]);
    await shot("message-delivered");
  }, 30_000);

  test("a POST without the CSRF token is refused (403), even with the session cookie", async () => {
    const session = (await browser.cookies()).find((c) => c.name === "postern_session")!;
    const r = await fetch(`${base}/admin/messages/${messageId}/delete`, {
      method: "POST",
      headers: {
        cookie: `postern_session=${session.value}`,
        "content-type": "application/x-www-form-urlencoded",
      },
      body: "",
      redirect: "manual",
    });
    expect(r.status).toBe(403);
    expect((await sql`select count(*)::int as n from messages where id = ${messageId}`)[0]!.n).toBe(1);
  });

  test("the Domains page shows each record's state: missing ones as missing", async () => {
    await page.goto(`${base}/admin/domains`);
    const rows = await page.$$eval("tbody tr", (trs) =>
      // biome-ignore lint/performance/useDomNodeTextContent: the rendered text is what is checked
      trs.map((tr) => (tr as unknown as { innerText: string }).innerText),
    );
    expect(rows.some((r) => r.startsWith("missing") && r.includes("_dmarc.example.test"))).toBe(true);
    expect(rows.find((r) => r.includes("MX") && r.includes("example.test"))).toStartWith("missing");
    await shot("domains");
    for (const name of ["suppressions", "keys"]) {
      await page.goto(`${base}/admin/${name}`);
      expect(await page.$("table")).not.toBeNull();
      await shot(name);
    }
    await waitFor("the refused events on the Hooks page", async () => {
      await page.goto(`${base}/admin/hooks`);
      const refusedRows = await page.$$eval("table:nth-of-type(2) tbody tr", (trs) => trs.length);
      return refusedRows > 0 ? true : undefined;
    });
    expect(await text()).toContain("http://127.0.0.1:9/events");
    await shot("hooks");
  }, 30_000);

  test("cookies are Secure when the console is reached over TLS (a proxy saying so), not otherwise", async () => {
    const plain = await fetch(`${base}/admin/login`);
    expect(plain.headers.get("set-cookie")).toMatch(
      /^postern_login=[^;]+; Path=\/admin; HttpOnly; SameSite=Strict; Max-Age=600$/,
    );
    const proxied = await fetch(`${base}/admin/login`, { headers: { "x-forwarded-proto": "https" } });
    expect(proxied.headers.get("set-cookie")).toEndWith("; Secure");
  });

  test("logout ends the session: the old cookie no longer opens a page", async () => {
    const session = (await browser.cookies()).find((c) => c.name === "postern_session")!;
    await page.goto(`${base}/admin/queue`);
    await Promise.all([page.waitForNavigation(), page.click('form[action="/admin/logout"] button')]);
    expect(page.url()).toBe(`${base}/admin/login`);
    const r = await fetch(`${base}/admin/queue`, {
      headers: { cookie: `postern_session=${session.value}` },
      redirect: "manual",
    });
    expect(r.status).toBe(303);
    expect(r.headers.get("location")).toBe("/admin/login");
  });
});
