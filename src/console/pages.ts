// The console's pages, rendered from data (no queries here): semantic HTML that reads without
// colour or script, one small style sheet inline (the binary serves no other asset).
import type { RecordCheck } from "../domains/check.ts";
import type { QueueEntry } from "../queue/inspect.ts";
import { type Html, html, raw } from "./html.ts";
import type { HourCounts } from "./queries.ts";

const STYLE = raw(`
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}
header{display:flex;gap:1.5rem;align-items:center;padding:.6rem 1.2rem;background:#1f2d3d;color:#fff}
header a{color:#fff}header nav ul{display:flex;gap:1rem;list-style:none;margin:0;padding:0}
header form{margin-left:auto}main{padding:1rem 1.2rem;max-width:80rem}
table{border-collapse:collapse;width:100%;background:#fff}th,td{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
td.reply{font-family:monospace;font-size:13px;word-break:break-word}
.status{font-weight:600}.status-delivered{color:#1a7f37}.status-bounced{color:#b42318}.status-deferred{color:#9a6700}
form.filters{display:flex;flex-wrap:wrap;gap:.6rem;align-items:end;margin-bottom:1rem}form.filters label{display:flex;flex-direction:column;font-size:13px}
.counts{display:flex;gap:1rem;list-style:none;padding:0}.error{color:#b42318;font-weight:600}
svg text{font-size:10px}button,input,select{font:inherit}
`);

export function layout(title: string, body: Html, csrf?: string): Html {
  const nav = csrf
    ? html`<nav aria-label="Console"><ul>
        <li><a href="/admin/overview">Overview</a></li><li><a href="/admin/queue">Queue</a></li>
        <li><a href="/admin/domains">Domains</a></li><li><a href="/admin/suppressions">Suppressions</a></li>
        <li><a href="/admin/keys">Keys</a></li><li><a href="/admin/hooks">Hooks</a></li></ul></nav>
      <form method="post" action="/admin/logout"><input type="hidden" name="csrf" value="${csrf}"><button>Log out</button></form>`
    : "";
  return html`<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>${title} · Postern</title>
<style>${STYLE}</style></head><body><header><strong>Postern</strong>${nav}</header>
<main><h1>${title}</h1>${body}</main></body></html>`;
}

export function loginPage(nonce: string, problem?: string): Html {
  return layout(
    "Log in",
    html`${problem ? html`<p class="error" role="alert">${problem}</p>` : ""}
<form method="post" action="/admin/login">
<input type="hidden" name="nonce" value="${nonce}">
<p><label for="token">Admin token</label><br><input id="token" name="token" type="password" autocomplete="current-password" required autofocus></p>
<p><button>Log in</button></p></form>`,
  );
}

const when = (d: Date | string | null | undefined) =>
  d ? new Date(d).toISOString().replace("T", " ").slice(0, 19) : "";

export const STATUSES = ["queued", "deferred", "delivered", "bounced"] as const;

export function queuePage(o: {
  csrf: string;
  filter: Record<string, string>;
  counts: Map<string, number>;
  rows: QueueEntry[];
  nextPage?: string;
}): Html {
  const f = o.filter;
  const field = (name: string, label: string) =>
    html`<label for="f-${name}">${label}<input id="f-${name}" name="${name}" value="${f[name] ?? ""}"></label>`;
  const body = html`
<ul class="counts" aria-label="Deliveries by status">${STATUSES.map(
    (s) => html`<li><a href="/admin/queue?status=${s}">${s}</a>: ${o.counts.get(s) ?? 0}</li>`,
  )}</ul>
<form class="filters" method="get" action="/admin/queue" role="search">
${field("q", "Our id or Message-ID")}
<label for="f-status">Status<select id="f-status" name="status"><option value="">any</option>${STATUSES.map(
    (s) => html`<option value="${s}"${raw(f.status === s ? " selected" : "")}>${s}</option>`,
  )}</select></label>
${field("rcpt", "Recipient")}${field("sender", "Sender")}${field("domain", "Recipient domain")}
<button>Search</button></form>
<table><caption>Recipient deliveries, newest first</caption><thead><tr>
<th scope="col">Received</th><th scope="col">Message</th><th scope="col">From</th><th scope="col">To</th>
<th scope="col">Status</th><th scope="col">Tries</th><th scope="col">Next try</th><th scope="col">Last reply</th></tr></thead>
<tbody>${o.rows.map(
    (r) => html`<tr><td>${when(r.receivedAt)}</td>
<td><a href="/admin/messages/${r.messageId}">${r.messageId}</a><br>${r.subject ?? ""}</td>
<td>${r.from || "<>"}</td><td>${r.rcpt}</td>
<td class="status status-${r.status}">${r.status}</td><td>${r.attempts}</td>
<td>${when(r.nextAttemptAt)}</td>
<td class="reply">${r.lastReply ?? ""}</td></tr>`,
  )}</tbody></table>
${o.rows.length === 0 ? html`<p>No delivery matches.</p>` : ""}
${o.nextPage ? html`<p><a href="${o.nextPage}" rel="next">Older deliveries</a></p>` : ""}`;
  return layout("Queue", body, o.csrf);
}

export interface StoryAttempt {
  at: string;
  host: string | null;
  reply: string | null;
  durationMs: number;
  outcome: string;
  class: string | null;
}

export interface StoryRecipient {
  rcpt: string;
  target: string;
  status: string;
  nextAttemptAt: string | null;
  waitingFor: string | null;
  history: StoryAttempt[];
}

export function messagePage(o: {
  csrf: string;
  id: string;
  facts: [string, string][];
  recipients: StoryRecipient[];
  events: { at: string; type: string; rcpt: string; reply: string }[];
  pending: boolean;
}): Html {
  const body = html`
<dl>${o.facts.map(([k, v]) => html`<dt>${k}</dt><dd>${v}</dd>`)}</dl>
${
  o.pending
    ? html`<form method="post" action="/admin/messages/${o.id}/retry" style="display:inline"><input type="hidden" name="csrf" value="${o.csrf}"><button>Retry now</button></form>`
    : ""
}
<form method="post" action="/admin/messages/${o.id}/delete" style="display:inline"><input type="hidden" name="csrf" value="${o.csrf}"><button>Delete</button></form>
${o.recipients.map(
  (
    r,
  ) => html`<section aria-label="${r.rcpt}"><h2>${r.rcpt} <span class="status status-${r.status}">(${r.status})</span></h2>
<p>Target: ${r.target}${r.nextAttemptAt ? html` · next try ${when(r.nextAttemptAt)}` : ""}${r.waitingFor ? html` · waiting for ${r.waitingFor}` : ""}</p>
<table><caption>Attempts</caption><thead><tr><th scope="col">When</th><th scope="col">Host</th><th scope="col">Outcome</th><th scope="col">Class</th><th scope="col">Took</th><th scope="col">Reply</th></tr></thead>
<tbody>${r.history.map(
    (a) =>
      html`<tr><td>${when(a.at)}</td><td>${a.host ?? "-"}</td><td>${a.outcome}</td><td>${a.class ?? ""}</td><td>${Math.round(a.durationMs)} ms</td><td class="reply">${a.reply ?? ""}</td></tr>`,
  )}</tbody></table>${r.history.length === 0 ? html`<p>No attempt yet.</p>` : ""}</section>`,
)}
<h2>Events</h2><table><thead><tr><th scope="col">When</th><th scope="col">Event</th><th scope="col">Recipient</th><th scope="col">Reply</th></tr></thead>
<tbody>${o.events.map((e) => html`<tr><td>${when(e.at)}</td><td>${e.type}</td><td>${e.rcpt}</td><td class="reply">${e.reply}</td></tr>`)}</tbody></table>`;
  return layout(`Message ${o.id}`, body, o.csrf);
}

export function domainsPage(csrf: string, domains: { name: string; checks: RecordCheck[] }[]): Html {
  const body = domains.map(
    (d) => html`<section aria-label="${d.name}"><h2>${d.name}</h2><table><thead><tr>
<th scope="col">State</th><th scope="col">Record</th><th scope="col">Name</th><th scope="col">Value to publish</th><th scope="col">Published now</th></tr></thead>
<tbody>${d.checks.map(
      (
        c,
      ) => html`<tr><td class="status">${c.status}</td><td>${c.record.type}</td><td>${c.record.name}<br><small>${c.record.purpose}</small></td>
<td class="reply"><code>${c.record.value}</code></td><td class="reply">${c.published.join(" | ")}</td></tr>`,
    )}</tbody></table></section>`,
  );
  return layout(
    "Domains",
    html`${body}${domains.length === 0 ? html`<p>No local domain yet.</p>` : ""}`,
    csrf,
  );
}

export interface PlainTable {
  caption: string;
  columns: string[];
  rows: (string | number)[][];
}

/** A page of plain tables (suppressions, keys, hooks). */
export function tablePage(csrf: string, title: string, tables: PlainTable[]): Html {
  return layout(
    title,
    html`${tables.map(
      (
        t,
      ) => html`<table><caption>${t.caption}</caption><thead><tr>${t.columns.map((c) => html`<th scope="col">${c}</th>`)}</tr></thead>
<tbody>${t.rows.map((r) => html`<tr>${r.map((v) => html`<td>${v}</td>`)}</tr>`)}</tbody></table>
${t.rows.length === 0 ? html`<p>None.</p>` : ""}`,
    )}`,
    csrf,
  );
}

function waited(seconds: number): string {
  if (seconds <= 0) return "none waiting";
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

export function overviewPage(o: {
  csrf: string;
  hours: HourCounts[];
  oldestQueuedSeconds: number;
  paused: { key: string; until: Date; reason: string }[];
}): Html {
  const series = ["received", "delivered", "deferred", "bounced"] as const;
  const totals = series.map((s) => [s, o.hours.reduce((n, h) => n + h[s], 0)] as const);
  const max = Math.max(1, ...o.hours.flatMap((h) => series.map((s) => h[s])));
  const bar = 6;
  const chart = html`<svg role="img" aria-labelledby="chart-title" width="${24 * 4 * (bar + 1) + 40}" height="140" viewBox="0 0 ${24 * 4 * (bar + 1) + 40} 140">
<title id="chart-title">Messages per hour over the last 24 hours: ${totals.map(([s, n]) => `${s} ${n}`).join(", ")}</title>
${o.hours.map((h, i) =>
  series.map((s, j) => {
    const height = Math.round((h[s] / max) * 110);
    const x = 30 + i * 4 * (bar + 1) + j * (bar + 1);
    return html`<rect x="${x}" y="${120 - height}" width="${bar}" height="${height}" fill="${["#1f6feb", "#1a7f37", "#9a6700", "#b42318"][j]!}"><title>${h.hour.toISOString().slice(11, 16)} ${s}: ${h[s]}</title></rect>`;
  }),
)}<text x="0" y="135">24 h ago</text><text x="${24 * 4 * (bar + 1)}" y="135">now</text></svg>`;
  const body = html`<h2>Last 24 hours</h2>
<ul class="counts">${totals.map(([s, n]) => html`<li>${s}: <strong>${n}</strong></li>`)}</ul>
<p>Bars per hour, in this order: received (blue), delivered (green), deferred (amber), bounced (red).</p>
${chart}
<h2>Queue</h2><p>Oldest message waiting: ${waited(o.oldestQueuedSeconds)}</p>
<h2>Paused destinations</h2>${
    o.paused.length === 0
      ? html`<p>None.</p>`
      : html`<ul>${o.paused.map((p) => html`<li>${p.key} until ${when(p.until)}: ${p.reason}</li>`)}</ul>`
  }`;
  return layout("Overview", body, o.csrf);
}
