// HTML for the console: a tagged template that escapes every value put into it, so a subject
// line or a reply text can never become markup. Fragments made with `html` (or `raw`, for text
// we wrote ourselves) go in as they are. Small enough not to need a template engine.

const SAFE = Symbol("safe html");
export interface Html {
  readonly [SAFE]: string;
}

const ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/** Markup we wrote ourselves (the style sheet): taken as it is. */
export function raw(markup: string): Html {
  return { [SAFE]: markup };
}

type Value = Html | string | number | null | undefined | false | readonly Value[];

function render(v: Value): string {
  if (v === null || v === undefined || v === false) return "";
  if (Array.isArray(v)) return v.map(render).join("");
  if (typeof v === "object") return (v as Html)[SAFE];
  return escapeHtml(String(v));
}

export function html(strings: TemplateStringsArray, ...values: Value[]): Html {
  let out = strings[0]!;
  values.forEach((v, i) => {
    out += render(v) + strings[i + 1]!;
  });
  return { [SAFE]: out };
}

export function toText(h: Html): string {
  return h[SAFE];
}
