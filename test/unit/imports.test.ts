// A dependency's inner files are not its interface: a path it does not export can move or
// change in any release. Every import of a package subpath must be one its package.json exports.
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "../..");

function sourceFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".ts"))
    .map((f) => join(dir, f));
}

/** "pkg/sub/path" → ["pkg", "./sub/path"]; scoped packages keep their scope. */
function splitSpecifier(spec: string): [string, string] {
  const parts = spec.split("/");
  const n = spec.startsWith("@") ? 2 : 1;
  return [parts.slice(0, n).join("/"), `./${parts.slice(n).join("/")}`];
}

/** Inner paths a package without an exports map documents as its interface (in its README). */
const DOCUMENTED_SUBPATHS: Record<string, string[]> = {
  // "MTA-STS functions are not exported from the main module. Import them directly from 'mailauth/lib/mta-sts'."
  mailauth: ["./lib/mta-sts"],
};

function exportsSubpath(pkg: string, subpath: string): boolean {
  if (DOCUMENTED_SUBPATHS[pkg]?.includes(subpath)) return true;
  const manifest = JSON.parse(readFileSync(join(ROOT, "node_modules", pkg, "package.json"), "utf8"));
  const map = manifest.exports;
  if (!map || typeof map !== "object") return false; // no map: only the package itself is public
  return Object.keys(map).some((key) => {
    if (!key.includes("*")) return key === subpath;
    const [head, tail] = key.split("*") as [string, string];
    return subpath.startsWith(head) && subpath.endsWith(tail);
  });
}

describe("imports of dependencies", () => {
  test("the rule: a path in the package's exports map is public, any other inner path is not", () => {
    expect(exportsSubpath("nodemailer", "./lib/qp")).toBe(true);
    expect(exportsSubpath("nodemailer", "./dist/cjs/qp/index.js")).toBe(false);
    expect(exportsSubpath("mailauth", "./lib/tools.js")).toBe(false); // no exports map at all
  });

  test("only subpaths the package exports", () => {
    const offenders: string[] = [];
    for (const file of [...sourceFiles("src"), ...sourceFiles("test"), ...sourceFiles("bench")]) {
      const text = readFileSync(join(ROOT, file), "utf8");
      const specifiers = [
        ...text.matchAll(/^(?:import|export)\s[^;]*?\bfrom\s+"([^"]+)"/gms),
        ...text.matchAll(/\bimport\(\s*"([^"]+)"\s*\)/g),
      ].map((m) => m[1]!);
      for (const spec of specifiers) {
        if (spec.startsWith(".") || spec.startsWith("node:") || spec.startsWith("bun") || !spec.includes("/"))
          continue;
        const [pkg, subpath] = splitSpecifier(spec);
        if (subpath === "./") continue;
        if (!exportsSubpath(pkg, subpath)) offenders.push(`${file}: ${spec}`);
      }
    }
    expect(offenders).toEqual([]);
  });
});
