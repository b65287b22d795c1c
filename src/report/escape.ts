/**
 * Escaping for the report: everything LM Studio sent (model keys, names, paths, error texts,
 * answers) reaches the page only through {@linkcode escapeHtml}, so that a model named
 * `<script>` is text, not markup. The page's Content-Security-Policy forbids scripts and every
 * request besides, as a second wall.
 *
 * @module
 */

const ENTITIES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/**
 * `text` safe inside an element or a quoted attribute: the five markup characters as entities,
 * control characters (a terminal's colour codes in an error text) dropped.
 */
export function escapeHtml(text: string): string {
  return text
    // deno-lint-ignore no-control-regex
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/g, "")
    .replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

/** `text` cut to `max` characters (with "..."), then escaped. */
export function escapeShort(text: string, max: number): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return escapeHtml(flat.length > max ? `${flat.slice(0, max - 3)}...` : flat);
}
