// GET/POST /admin/…: the operator console. The admin token is given once, at login (a POST body:
// never a URL, never a page); then a session cookie; every POST carries the session's CSRF token.
import { asc, desc, eq } from "drizzle-orm";
import { listKeys } from "../auth/keys.ts";
import type { Db } from "../db/open.ts";
import { DELIVERY_STATUSES, type DeliveryStatus, domains, events } from "../db/schema.ts";
import { classifyOutcome, readReply } from "../delivery/bounce-class.ts";
import { listPauses } from "../delivery/shaping.ts";
import type { Resolver } from "../dns/resolver.ts";
import { checkDomain } from "../domains/check.ts";
import { hookView, listHooks, recentHookFailures } from "../hooks/store.ts";
import { tokenMatches } from "../http/auth.ts";
import type { AuthVerdict } from "../mail/authcheck.ts";
import { hostedModeOf } from "../mta-sts/hosted.ts";
import {
  listQueue,
  oldestWaitingSeconds,
  type QueueFilter,
  removeMessage,
  retryNow,
  showMessage,
} from "../queue/inspect.ts";
import { listSuppressions } from "../queue/suppressions.ts";
import { type Html, toText } from "./html.ts";
import {
  domainsPage,
  loginPage,
  messagePage,
  overviewPage,
  queuePage,
  type StoryRecipient,
  tablePage,
} from "./pages.ts";
import { lastDay, statusCounts } from "./queries.ts";
import {
  type ConsoleSession,
  cookie,
  cookies,
  endSession,
  findSession,
  LOGIN_COOKIE,
  newSecret,
  SESSION_COOKIE,
  SESSION_SECONDS,
  startSession,
} from "./sessions.ts";

export interface ConsoleDeps {
  db: Db;
  adminToken: string | undefined;
  hostname: string;
  resolver: Resolver;
  fetchPolicy(domain: string): Promise<string>;
}

/**
 * Whether the browser reached the console over TLS: directly, or through a proxy that says so
 * (a forged header only makes the cookie stricter). Then the cookies are marked Secure.
 */
const overTls = (req: Request, url: URL) =>
  url.protocol === "https:" || req.headers.get("x-forwarded-proto")?.toLowerCase() === "https";

const HEADERS = {
  "content-type": "text/html; charset=utf-8",
  // no script, no outside resource, no framing: the pages are plain forms and links
  "content-security-policy":
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

const page = (status: number, body: Html, extra: Record<string, string> | [string, string][] = {}) => {
  const headers = new Headers(HEADERS);
  for (const [k, v] of Array.isArray(extra) ? extra : Object.entries(extra)) headers.append(k, v);
  return new Response(toText(body), { status, headers });
};
const redirect = (to: string, cookiesToSet: string[] = []) =>
  new Response(null, {
    status: 303,
    headers: [["location", to], ...cookiesToSet.map((c): [string, string] => ["set-cookie", c])],
  });
const refused = (why: string) =>
  new Response(`${why}\n`, { status: 403, headers: { "content-type": "text/plain" } });

const PAGE_SIZE = 50;
const MESSAGE = /^\/admin\/messages\/([A-Za-z0-9]+)(?:\/(retry|delete))?$/;

export function consoleHandler(deps: ConsoleDeps): (req: Request, url: URL) => Promise<Response> {
  const { db } = deps;

  async function loginForm(secure: boolean, status: number, problem?: string): Promise<Response> {
    const nonce = newSecret();
    return page(status, loginPage(nonce, problem), {
      "set-cookie": cookie(LOGIN_COOKIE, nonce, 600, secure),
    });
  }

  async function login(req: Request, secure: boolean): Promise<Response> {
    const form = await req.formData();
    const nonce = form.get("nonce");
    const expected = cookies(req).get(LOGIN_COOKIE);
    if (typeof nonce !== "string" || !expected || !tokenMatches(nonce, expected))
      return refused("the login form has expired or did not come from this console: load it again");
    if (!deps.adminToken) return loginForm(secure, 403, "The console is off: set POSTERN_ADMIN_TOKEN.");
    const token = form.get("token");
    if (typeof token !== "string" || !tokenMatches(token, deps.adminToken))
      return loginForm(secure, 401, "Wrong token.");
    const { secret } = await startSession(db);
    return redirect("/admin/overview", [
      cookie(SESSION_COOKIE, secret, SESSION_SECONDS, secure),
      cookie(LOGIN_COOKIE, "", 0, secure),
    ]);
  }

  return async (req, url) => {
    const path = url.pathname.replace(/\/$/, "");
    const secure = overTls(req, url);
    if (path === "/admin/login") {
      if (req.method === "GET") return loginForm(secure, 200);
      if (req.method === "POST") return login(req, secure);
      return new Response(null, { status: 405, headers: { allow: "GET, POST" } });
    }
    const secret = cookies(req).get(SESSION_COOKIE);
    const session = await findSession(db, secret);
    if (!session) return req.method === "GET" ? redirect("/admin/login") : refused("not logged in");
    if (req.method === "POST") {
      const form = await req.formData();
      const csrf = form.get("csrf");
      if (typeof csrf !== "string" || !tokenMatches(csrf, session.csrf))
        return refused("missing or wrong CSRF token");
      return post(path, secret!, secure);
    }
    if (req.method !== "GET") return new Response(null, { status: 405, headers: { allow: "GET, POST" } });
    return get(path, url.searchParams, session);
  };

  async function post(path: string, secret: string, secure: boolean): Promise<Response> {
    if (path === "/admin/logout") {
      await endSession(db, secret);
      return redirect("/admin/login", [cookie(SESSION_COOKIE, "", 0, secure)]);
    }
    const m = MESSAGE.exec(path);
    if (m?.[2] === "retry") {
      await retryNow(db, m[1]!);
      return redirect(`/admin/messages/${m[1]}`);
    }
    if (m?.[2] === "delete") {
      await removeMessage(db, m[1]!);
      return redirect("/admin/queue");
    }
    return refused("no such action");
  }

  async function get(path: string, params: URLSearchParams, session: ConsoleSession): Promise<Response> {
    const { csrf } = session;
    if (path === "/admin" || path === "/admin/overview")
      return page(
        200,
        overviewPage({
          csrf,
          hours: await lastDay(db),
          oldestQueuedSeconds: await oldestWaitingSeconds(db),
          paused: (await listPauses(db))
            .filter((p) => p.pausedUntil.getTime() > Date.now())
            .map((p) => ({ key: p.key, until: p.pausedUntil, reason: p.reason })),
        }),
      );
    if (path === "/admin/queue") return queue(params, csrf);
    const m = MESSAGE.exec(path);
    if (m && !m[2]) return message(m[1]!, csrf);
    if (path === "/admin/domains") {
      const rows = await db.select().from(domains).orderBy(asc(domains.name));
      const checked = await Promise.all(
        rows.map(async (d) => ({
          name: d.name,
          checks: await checkDomain(
            deps.resolver,
            { ...d, mtaStsMode: hostedModeOf(d.mtaStsMode) },
            deps.hostname,
            deps.fetchPolicy,
          ),
        })),
      );
      return page(200, domainsPage(csrf, checked));
    }
    if (path === "/admin/suppressions")
      return page(
        200,
        tablePage(csrf, "Suppressions", [
          {
            caption: "Recipients not sent to, per sending domain",
            columns: ["Address", "Sending domain", "Reason", "Reply", "Since"],
            rows: (await listSuppressions(db)).map((s) => [
              s.address,
              s.domain,
              s.reason,
              s.code ?? "",
              s.at.toISOString(),
            ]),
          },
        ]),
      );
    if (path === "/admin/keys")
      return page(
        200,
        tablePage(csrf, "API keys", [
          {
            caption: "Application keys (their secrets are not kept)",
            columns: ["Name", "Domains", "Per hour", "Created"],
            rows: (await listKeys(db)).map((k) => [
              k.name,
              k.domains.join(", "),
              k.limitPerHour ?? "default",
              k.createdAt.toISOString(),
            ]),
          },
        ]),
      );
    if (path === "/admin/hooks") {
      const hookList = (await listHooks(db)).map(hookView);
      const urls = new Map(hookList.map((h) => [h.id, h.url]));
      return page(
        200,
        tablePage(csrf, "Event webhooks", [
          {
            caption: "Webhooks",
            columns: ["URL", "Events", "Domain", "Last delivered", "Last failed", "Last failure"],
            rows: hookList.map((h) => [
              h.url,
              h.events?.join(", ") ?? "all",
              h.domain ?? "all",
              h.lastDeliveredAt ?? "",
              h.lastFailedAt ?? "",
              h.lastFailure ?? "",
            ]),
          },
          {
            caption: "Events refused by their receiver, being retried or given up (newest first)",
            columns: ["Webhook", "Event", "Status", "Tries", "Next try", "Last answer"],
            rows: (await recentHookFailures(db, 100)).map((d) => [
              urls.get(d.hookId) ?? String(d.hookId),
              d.eventId,
              d.status,
              d.attempts,
              d.status === "pending" ? d.nextAttemptAt.toISOString() : "",
              d.lastReply ?? "",
            ]),
          },
        ]),
      );
    }
    return new Response("not found\n", { status: 404, headers: { "content-type": "text/plain" } });
  }

  async function queue(params: URLSearchParams, csrf: string): Promise<Response> {
    const text = (k: string) => params.get(k)?.trim() || undefined;
    const status = text("status");
    const before = Number(params.get("before"));
    const filter: QueueFilter = {
      status:
        status && (DELIVERY_STATUSES as readonly string[]).includes(status)
          ? (status as DeliveryStatus)
          : undefined,
      q: text("q"),
      rcpt: text("rcpt"),
      sender: text("sender"),
      domain: text("domain"),
    };
    const [found, counts] = await Promise.all([
      listQueue(db, {
        ...filter,
        limit: PAGE_SIZE,
        cursor: Number.isSafeInteger(before) && before > 0 ? before : undefined,
      }),
      statusCounts(db),
    ]);
    const shown: Record<string, string> = {};
    for (const k of ["q", "status", "rcpt", "sender", "domain"]) {
      const v = text(k);
      if (v) shown[k] = v;
    }
    const next =
      found.nextCursor === undefined
        ? undefined
        : `/admin/queue?${new URLSearchParams({ ...shown, before: String(found.nextCursor) })}`;
    return page(200, queuePage({ csrf, filter: shown, counts, rows: found.entries, nextPage: next }));
  }

  async function message(id: string, csrf: string): Promise<Response> {
    const m = await showMessage(db, id);
    if (!m)
      return new Response("no such message\n", { status: 404, headers: { "content-type": "text/plain" } });
    const evs = await db
      .select()
      .from(events)
      .where(eq(events.messageId, id))
      .orderBy(desc(events.id))
      .limit(200);
    const recipients: StoryRecipient[] = m.recipients.map((r) => ({
      rcpt: r.rcpt,
      target: r.target,
      status: r.status,
      nextAttemptAt: r.nextAttemptAt,
      waitingFor: r.nextAttemptAt ? waitingFor(r.lastReply) : null,
      history: r.history.map((a) => {
        const reply = readReply(a.reply ?? "");
        return {
          ...a,
          class:
            a.outcome === "delivered"
              ? null
              : classifyOutcome({
                  from: a.host ? "remote" : "local",
                  code: reply.code,
                  enhanced: reply.enhanced,
                  text: reply.text,
                }),
        };
      }),
    }));
    const auth = m.authResults as AuthVerdict | null;
    return page(
      200,
      messagePage({
        csrf,
        id,
        facts: [
          ["Received", m.receivedAt],
          ["Direction", m.direction],
          ["From (envelope)", m.from || "<>"],
          ["Subject", m.subject ?? ""],
          ["Message-ID", m.messageId ?? ""],
          [
            "Came from",
            `${m.clientIp ?? "-"} (HELO ${m.helo ?? "-"})${m.authUser ? `, AUTH as ${m.authUser}` : ""}`,
          ],
          [
            "Authentication",
            auth
              ? `SPF ${auth.spf ?? "-"}, DKIM ${auth.dkim ?? "-"}, DMARC ${auth.dmarc ?? "-"}`
              : "not checked",
          ],
          ["Size", `${m.size} octets`],
        ],
        recipients,
        events: evs.map((e) => ({
          at: e.at.toISOString(),
          type: e.type,
          rcpt: e.rcpt,
          reply: [e.replyCode, e.replyEnhanced, e.replyText].filter(Boolean).join(" "),
        })),
        pending: m.recipients.some((r) => r.nextAttemptAt !== null),
      }),
    );
  }
}

/** Why a pending delivery waits, read from the last reply it got. */
function waitingFor(lastReply: string | null): string {
  if (!lastReply) return "its first try";
  if (/budget is used up/.test(lastReply)) return "a shape's budget";
  if (/paused/i.test(lastReply)) return "a paused destination";
  if (/quota/i.test(lastReply)) return "a send quota";
  if (/MTA-STS/.test(lastReply)) return "the receiver's MTA-STS policy to be met";
  return "the retry backoff after the last failure";
}
