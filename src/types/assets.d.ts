// Files imported `with { type: "file" }` evaluate to their path (inside the binary once compiled).
declare module "*.wasm" {
  const path: string;
  export default path;
}
declare module "*.data" {
  const path: string;
  export default path;
}
declare module "*/_journal.json" {
  const path: string;
  export default path;
}

// mailauth's own header reader, so that what we key on is what mailauth reads.
declare module "mailauth/lib/tools.js" {
  export function parseHeaders(buf: Buffer): { parsed: { key: string | null; line: Buffer }[] };
}
