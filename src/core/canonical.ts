import { createHash } from 'node:crypto';
import { isMap, isSeq, isPair, parseDocument, type Node as YamlNode } from 'yaml';
import { keyKind, type Key } from './keys.js';

/**
 * Canonical forms, so that representation differences never look like changes — and real changes always do:
 * - auth files: JSON with object members sorted by name (UTF-16 code units), no whitespace, strings
 *   re-escaped as `JSON.stringify` does, numbers as PostgreSQL's `jsonb` prints them (key order,
 *   whitespace, `1e3` vs `1000` and escapes are what `jsonb` normalises). Lossless: numbers keep their
 *   exact digits (integers beyond 2^53 are not rounded), `__proto__` is a member like any other, the
 *   last of duplicate names wins (as in `JSON.parse` and `jsonb`).
 * - config: the bytes with CRLF/CR turned into LF.
 * The content hash is SHA-256 (hex) of the canonical form.
 *
 * The JSON reader below works on the text, token by token, with an explicit stack: no recursion on the
 * input's depth, and content nested deeper than MAX_JSON_DEPTH levels is refused (as is YAML), never a
 * stack overflow.
 */

export type Validation =
  | { readonly ok: true; readonly hash: string; readonly canonical: Uint8Array }
  | { readonly ok: false; readonly reason: string };

/** Deepest nesting accepted (objects and arrays). Deeper content is refused, never a stack overflow. */
export const MAX_JSON_DEPTH = 512;

/**
 * Longest plain number text produced. Every spelling of a number (`1e3`, `1000`, `10E2`) becomes the text
 * PostgreSQL's `jsonb` prints for it (a `numeric`: plain digits, the scale kept: `1.50` stays `1.50`);
 * a number whose plain text would be longer than this (`1e100000`) gets a compact form instead, so
 * a few bytes of input never expand into megabytes.
 */
export const MAX_PLAIN_NUMBER = 128;

export interface JsonContainer {
  readonly obj: boolean;
  /** Object member names as their source tokens (with quotes and escapes); empty for arrays. */
  readonly keys: string[];
  /** Values: a scalar's source token, or a nested container. */
  readonly vals: JsonNode[];
}

export type JsonNode = string | JsonContainer;

export type JsonRead = { readonly ok: true; readonly root: JsonNode } | { readonly ok: false; readonly reason: string };

const SIMPLE_STRING = /"[^"\\\u0000-\u001f]*"/y;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const HEX = /^[0-9a-fA-F]{4}$/;

/** End (exclusive) of the string token starting at `i` (a `"`), or -1 when it is not a valid JSON string. */
function stringEnd(text: string, i: number): number {
  SIMPLE_STRING.lastIndex = i;
  if (SIMPLE_STRING.test(text)) return SIMPLE_STRING.lastIndex;
  const n = text.length;
  let j = i + 1;
  while (j < n) {
    const c = text.charCodeAt(j);
    if (c === 0x22) return j + 1;
    if (c < 0x20) return -1;
    if (c === 0x5c) {
      const e = text.charCodeAt(j + 1);
      if (e === 0x75) {
        if (!HEX.test(text.slice(j + 2, j + 6))) return -1;
        j += 6;
        continue;
      }
      // " \ / b f n r t
      if (e === 0x22 || e === 0x5c || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) {
        j += 2;
        continue;
      }
      return -1;
    }
    j++;
  }
  return -1;
}

const isWs = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

/**
 * Reads one JSON document (RFC 8259, as `JSON.parse` accepts it). Failure reasons name a position in
 * UTF-8 bytes, never the text around it (it may be a token).
 */
export function readJson(text: string, maxDepth = MAX_JSON_DEPTH): JsonRead {
  const n = text.length;
  const stack: JsonContainer[] = [];
  let root: JsonNode | undefined;
  let i = 0;
  const fail = (at: number, what = ''): JsonRead => ({
    ok: false,
    reason: `not valid JSON (${what}error at byte ${Buffer.byteLength(text.slice(0, Math.min(at, n)), 'utf8')})`,
  });
  // State: expecting a value (after '[', ',' in an array, ':' or at the start), or after a value.
  for (;;) {
    // ---- a value
    while (i < n && isWs(text.charCodeAt(i))) i++;
    if (i >= n) return fail(i, 'unexpected end: ');
    const c = text.charCodeAt(i);
    let value: JsonNode;
    if (c === 0x7b || c === 0x5b) {
      if (stack.length >= maxDepth) return { ok: false, reason: `nested deeper than ${maxDepth} levels` };
      const container: JsonContainer = { obj: c === 0x7b, keys: [], vals: [] };
      if (root === undefined) root = container;
      else {
        const parent = stack[stack.length - 1]!;
        parent.vals.push(container);
      }
      stack.push(container);
      i++;
      while (i < n && isWs(text.charCodeAt(i))) i++;
      const close = container.obj ? 0x7d : 0x5d;
      if (text.charCodeAt(i) === close) {
        i++;
        stack.pop();
        // fall through to "after a value"
      } else if (container.obj) {
        // first member name
        if (text.charCodeAt(i) !== 0x22) return fail(i);
        const end = stringEnd(text, i);
        if (end < 0) return fail(i);
        container.keys.push(text.slice(i, end));
        i = end;
        while (i < n && isWs(text.charCodeAt(i))) i++;
        if (text.charCodeAt(i) !== 0x3a) return fail(i);
        i++;
        continue;
      } else {
        continue;
      }
    } else {
      if (c === 0x22) {
        const end = stringEnd(text, i);
        if (end < 0) return fail(i);
        value = text.slice(i, end);
        i = end;
      } else if (c === 0x74 && text.startsWith('true', i)) {
        value = 'true';
        i += 4;
      } else if (c === 0x66 && text.startsWith('false', i)) {
        value = 'false';
        i += 5;
      } else if (c === 0x6e && text.startsWith('null', i)) {
        value = 'null';
        i += 4;
      } else {
        NUMBER.lastIndex = i;
        const m = NUMBER.exec(text);
        if (!m) return fail(i);
        value = m[0];
        i = NUMBER.lastIndex;
      }
      if (root === undefined) root = value;
      else stack[stack.length - 1]!.vals.push(value);
    }
    // ---- after a value: ',' or a closing bracket (possibly several), or the end of the document
    for (;;) {
      while (i < n && isWs(text.charCodeAt(i))) i++;
      const top = stack[stack.length - 1];
      if (!top) {
        if (i < n) return fail(i, 'unexpected text after the document: ');
        return { ok: true, root: root! };
      }
      const d = text.charCodeAt(i);
      if (d === 0x2c) {
        i++;
        if (top.obj) {
          while (i < n && isWs(text.charCodeAt(i))) i++;
          if (text.charCodeAt(i) !== 0x22) return fail(i);
          const end = stringEnd(text, i);
          if (end < 0) return fail(i);
          top.keys.push(text.slice(i, end));
          i = end;
          while (i < n && isWs(text.charCodeAt(i))) i++;
          if (text.charCodeAt(i) !== 0x3a) return fail(i);
          i++;
        }
        break; // next value
      }
      if (d === (top.obj ? 0x7d : 0x5d)) {
        i++;
        stack.pop();
        continue;
      }
      return fail(i, i >= n ? 'unexpected end: ' : '');
    }
  }
}

/** The decoded text of a string token. */
function decodeString(token: string): string {
  return token.includes('\\') ? (JSON.parse(token) as string) : token.slice(1, -1);
}

/** A string token in canonical form: the escapes `JSON.stringify` produces for the decoded string. */
function canonicalString(token: string): string {
  return token.includes('\\') ? JSON.stringify(JSON.parse(token) as string) : token;
}

const PLAIN_INT = /^-?(?:0|[1-9][0-9]*)$/;
const PLAIN_DEC = /^-?[0-9]+\.[0-9]+$/;
const NUMBER_PARTS = /^(-?)([0-9]+)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?$/;

/**
 * A number token in canonical form: what PostgreSQL's `jsonb` prints for it. `jsonb` keeps numbers as
 * `numeric`: the value exactly, with a display scale of max(0, fraction digits − exponent); zero has no
 * sign. So `1e3` → `1000`, `1.50` → `1.50`, `1.5e-3` → `0.0015`, `-0` → `0`, `12345678901234567890` unchanged.
 * Beyond MAX_PLAIN_NUMBER characters: `<sign><significant digits>e<exponent>[s<scale>]`, equally exact.
 */
export function canonicalNumber(token: string): string {
  if (token.length <= MAX_PLAIN_NUMBER) {
    // Already plain (no exponent): jsonb prints it unchanged, except that zero loses its sign.
    if (PLAIN_INT.test(token)) return token === '-0' ? '0' : token;
    if (PLAIN_DEC.test(token)) return token.charCodeAt(0) === 0x2d && /^-[0.]+$/.test(token) ? token.slice(1) : token;
  }
  const m = NUMBER_PARTS.exec(token);
  if (!m) throw new Error(`canonicalNumber: not a JSON number`);
  const neg = m[1] === '-';
  const int = m[2]!;
  const frac = m[3] ?? '';
  const exp = BigInt(m[4] ?? '0');
  const digits = int + frac;
  // value = digits × 10^(exp − frac.length); point position from the left of `digits`
  const scaleRaw = BigInt(frac.length) - exp;
  const dscale = scaleRaw > 0n ? scaleRaw : 0n;
  const point = BigInt(int.length) + exp;
  // significant digits (no leading or trailing zeros) and their power of ten
  const lead = digits.search(/[1-9]/);
  const sign = neg && lead >= 0 ? '-' : '';
  if (lead < 0) {
    // zero: "0" and the scale
    const plainLen = 1n + (dscale > 0n ? 1n + dscale : 0n);
    if (plainLen <= BigInt(MAX_PLAIN_NUMBER)) return dscale > 0n ? '0.' + '0'.repeat(Number(dscale)) : '0';
    return `0e0s${dscale}`;
  }
  let end = digits.length;
  while (digits.charCodeAt(end - 1) === 0x30) end--;
  const sig = digits.slice(lead, end);
  // integer part length of the plain text: digits before the point, without leading zeros (at least "0")
  const intLen = point - BigInt(lead);
  const plainLen = (intLen > 0n ? intLen : 1n) + (dscale > 0n ? 1n + dscale : 0n) + (sign ? 1n : 0n);
  if (plainLen > BigInt(MAX_PLAIN_NUMBER)) {
    // value = sig × 10^e
    const e = point - BigInt(lead) - BigInt(sig.length);
    return `${sign}${sig}e${e}${dscale > 0n ? `s${dscale}` : ''}`;
  }
  const p = Number(point);
  const sc = Number(dscale);
  let intPart: string;
  let fracPart: string;
  if (p >= digits.length) {
    intPart = digits + '0'.repeat(p - digits.length);
    fracPart = '';
  } else if (p <= 0) {
    intPart = '0';
    fracPart = '0'.repeat(-p) + digits;
  } else {
    intPart = digits.slice(0, p);
    fracPart = digits.slice(p);
  }
  intPart = intPart.replace(/^0+(?=[0-9])/, '');
  // The scale is the fraction's length already (see above), except for trailing padding never needed.
  if (fracPart.length < sc) fracPart += '0'.repeat(sc - fracPart.length);
  else if (fracPart.length > sc) fracPart = fracPart.slice(0, sc);
  return sign + intPart + (sc > 0 ? '.' + fracPart : '');
}

function canonicalScalar(token: string): string {
  const c = token.charCodeAt(0);
  if (c === 0x22) return canonicalString(token);
  if (c === 0x74 || c === 0x66 || c === 0x6e) return token; // true false null
  return canonicalNumber(token);
}

const byKey = (a: { k: string }, b: { k: string }): number => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0);

/**
 * Members of an object in canonical order: sorted by decoded name (UTF-16 code units); of duplicate
 * names only the last is kept (what `JSON.parse` and PostgreSQL's `jsonb` both do).
 */
function orderedMembers(c: JsonContainer): { keys: string[]; vals: JsonNode[] } {
  const n = c.keys.length;
  if (n === 0) return c;
  const members = new Array<{ k: string; i: number }>(n);
  for (let i = 0; i < n; i++) members[i] = { k: decodeString(c.keys[i]!), i };
  members.sort(byKey); // stable: equal names keep their input order
  const keys: string[] = [];
  const vals: JsonNode[] = [];
  for (let j = 0; j < n; j++) {
    const m = members[j]!;
    if (j + 1 < n && members[j + 1]!.k === m.k) continue; // a later duplicate wins
    keys.push(canonicalString(c.keys[m.i]!));
    vals.push(c.vals[m.i]!);
  }
  return { keys, vals };
}

/** The canonical text of a read document: keys sorted, no whitespace, strings and numbers normalised. */
export function canonicalJsonText(root: JsonNode): string {
  if (typeof root === 'string') return canonicalScalar(root);
  let out = '';
  interface Frame {
    readonly obj: boolean;
    readonly keys: string[];
    readonly vals: JsonNode[];
    i: number;
  }
  const open = (c: JsonContainer): Frame => {
    out += c.obj ? '{' : '[';
    const m = c.obj ? orderedMembers(c) : c;
    return { obj: c.obj, keys: m.keys, vals: m.vals, i: 0 };
  };
  const stack: Frame[] = [open(root)];
  while (stack.length > 0) {
    const f = stack[stack.length - 1]!;
    if (f.i === f.vals.length) {
      out += f.obj ? '}' : ']';
      stack.pop();
      continue;
    }
    if (f.i > 0) out += ',';
    if (f.obj) out += f.keys[f.i] + ':';
    const v = f.vals[f.i++]!;
    if (typeof v === 'string') out += canonicalScalar(v);
    else stack.push(open(v));
  }
  return out;
}

/**
 * A JavaScript value of a read document: objects have a null prototype (a `__proto__` member is an own
 * property, never the prototype), the last of duplicate names wins, numbers are JavaScript numbers
 * (rounded: use only for comparisons such as timestamps).
 */
export function jsonValue(root: JsonNode): unknown {
  const scalar = (t: string): unknown => {
    const c = t.charCodeAt(0);
    if (c === 0x22) return decodeString(t);
    if (c === 0x74) return true;
    if (c === 0x66) return false;
    if (c === 0x6e) return null;
    return Number(t);
  };
  if (typeof root === 'string') return scalar(root);
  const make = (c: JsonContainer): Record<string, unknown> | unknown[] => (c.obj ? (Object.create(null) as Record<string, unknown>) : []);
  const result = make(root);
  const stack: { c: JsonContainer; v: Record<string, unknown> | unknown[]; i: number }[] = [{ c: root, v: result, i: 0 }];
  while (stack.length > 0) {
    const f = stack[stack.length - 1]!;
    if (f.i === f.c.vals.length) {
      stack.pop();
      continue;
    }
    const i = f.i++;
    const node = f.c.vals[i]!;
    let v: unknown;
    if (typeof node === 'string') v = scalar(node);
    else {
      const child = make(node);
      stack.push({ c: node, v: child, i: 0 });
      v = child;
    }
    if (f.c.obj) (f.v as Record<string, unknown>)[decodeString(f.c.keys[i]!)] = v;
    else (f.v as unknown[]).push(v);
  }
  return result;
}

/**
 * Canonical JSON text of a JavaScript value (own enumerable members; `__proto__` included as a member).
 * Numbers are JavaScript numbers, so only as exact as the value given. Iterative: any depth.
 */
export function canonicalJson(value: unknown): string {
  const text = plainJson(value);
  const r = readJson(text, Number.POSITIVE_INFINITY);
  if (!r.ok) throw new Error(`canonicalJson: ${r.reason}`);
  return canonicalJsonText(r.root);
}

/** `JSON.stringify` without recursion (no toJSON, no replacer): undefined and functions are left out of objects, null in arrays. */
function plainJson(value: unknown): string {
  const scalar = (v: unknown): string | undefined => (v === null || typeof v !== 'object' ? (JSON.stringify(v) as string | undefined) : undefined);
  const top = scalar(value);
  if (top !== undefined || value === undefined || typeof value !== 'object') return top ?? 'null';
  let out = '';
  interface Frame {
    readonly arr: boolean;
    readonly obj: Record<string, unknown> | unknown[];
    readonly keys: string[];
    i: number;
    n: number;
  }
  const open = (v: object): Frame => {
    const arr = Array.isArray(v);
    out += arr ? '[' : '{';
    return { arr, obj: v as Record<string, unknown>, keys: arr ? [] : Object.keys(v), i: 0, n: 0 };
  };
  const stack: Frame[] = [open(value as object)];
  while (stack.length > 0) {
    const f = stack[stack.length - 1]!;
    const len = f.arr ? (f.obj as unknown[]).length : f.keys.length;
    if (f.i === len) {
      out += f.arr ? ']' : '}';
      stack.pop();
      continue;
    }
    const k = f.arr ? '' : f.keys[f.i]!;
    const v = f.arr ? (f.obj as unknown[])[f.i] : (f.obj as Record<string, unknown>)[k];
    f.i++;
    const s = v !== null && typeof v === 'object' ? undefined : scalar(v);
    if (!f.arr && s === undefined && (v === null || typeof v !== 'object')) continue; // undefined, function, symbol
    if (f.n++ > 0) out += ',';
    if (!f.arr) out += JSON.stringify(k) + ':';
    if (v !== null && typeof v === 'object') stack.push(open(v));
    else out += s ?? 'null';
  }
  return out;
}

export function sha256(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export function toLf(text: string): string {
  return text.replace(/\r\n?/g, '\n');
}

const decoder = new TextDecoder('utf-8', { fatal: true });

function decode(data: Uint8Array): string | null {
  try {
    return decoder.decode(data);
  } catch {
    return null;
  }
}

/** Reads an auth file's text: a JSON object, or the reason it is not acceptable. */
function readAuth(data: Uint8Array): { ok: true; root: JsonContainer } | { ok: false; reason: string } {
  const text = decode(data);
  if (text === null) return { ok: false, reason: 'not valid UTF-8' };
  if (text.trim() === '') return { ok: false, reason: 'empty file' };
  const r = readJson(text);
  if (!r.ok) return r;
  const root = r.root;
  if (typeof root === 'string' || !root.obj) {
    const c = typeof root === 'string' ? root.charCodeAt(0) : 0x5b;
    const what = c === 0x5b ? 'an array' : c === 0x22 ? 'a string' : c === 0x6e ? 'null' : c === 0x74 || c === 0x66 ? 'a boolean' : 'a number';
    return { ok: false, reason: `not a JSON object (found ${what})` };
  }
  return { ok: true, root };
}

/**
 * Parses an auth file. Returns the object — with a null prototype at every level, so a `__proto__`
 * member is data, never a prototype — or the reason it is not acceptable.
 */
export function parseAuth(data: Uint8Array): { ok: true; value: Record<string, unknown> } | { ok: false; reason: string } {
  const r = readAuth(data);
  if (!r.ok) return r;
  return { ok: true, value: jsonValue(r.root) as Record<string, unknown> };
}

/** Nesting depth of a YAML document's node tree (collections only), counted without recursion. */
function yamlDepthExceeds(root: unknown, max: number): boolean {
  const stack: { node: unknown; depth: number }[] = [{ node: root, depth: 0 }];
  while (stack.length > 0) {
    const { node, depth } = stack.pop()!;
    if (isMap(node) || isSeq(node)) {
      if (depth + 1 > max) return true;
      for (const item of node.items as unknown[]) {
        if (isPair(item)) {
          stack.push({ node: item.key, depth: depth + 1 });
          stack.push({ node: item.value, depth: depth + 1 });
        } else stack.push({ node: item, depth: depth + 1 });
      }
    }
  }
  return false;
}

function validateConfig(data: Uint8Array): Validation {
  const text = decode(data);
  if (text === null) return { ok: false, reason: 'not valid UTF-8' };
  if (text.trim() === '') return { ok: false, reason: 'empty file' };
  // parseDocument collects errors and warnings instead of printing them: the yaml library's warnings
  // and messages quote source lines, which may hold API keys. Reasons carry codes and positions only;
  // logLevel 'silent' keeps toJS from emitting a process warning that quotes a key.
  const parsed = parseDocument(text, { uniqueKeys: false, prettyErrors: false, logLevel: 'silent' });
  const first = parsed.errors[0];
  if (first) {
    // The library catches its own stack overflow on deep nesting and reports RESOURCE_EXHAUSTION.
    if (parsed.errors.some((e) => e.code === 'RESOURCE_EXHAUSTION')) return { ok: false, reason: `nested deeper than ${MAX_JSON_DEPTH} levels` };
    const pos = first.linePos?.[0];
    return { ok: false, reason: `not valid YAML (${first.code}${pos ? ` at line ${pos.line}, column ${pos.col}` : ''})` };
  }
  if (yamlDepthExceeds(parsed.contents as YamlNode | null, MAX_JSON_DEPTH)) return { ok: false, reason: `nested deeper than ${MAX_JSON_DEPTH} levels` };
  if (!isMap(parsed.contents)) return { ok: false, reason: 'not a YAML mapping' };
  try {
    // Resolves aliases (an unresolved one, or more than 1000 expansions, is refused). mapAsMap: keys that
    // are collections stay keys (no stringification, no warning quoting them).
    parsed.toJS({ maxAliasCount: 1000, mapAsMap: true });
  } catch {
    return { ok: false, reason: 'not valid YAML (unresolved or excessive aliases)' };
  }
  const canonical = Buffer.from(toLf(text), 'utf8');
  return { ok: true, hash: sha256(canonical), canonical };
}

/**
 * The validation gate: is `data` acceptable content for `key`, and what is its canonical hash?
 * Pure; the same function judges local files and items arriving from a store.
 */
export function validateContent(key: Key, data: Uint8Array): Validation {
  if (keyKind(key) === 'config') return validateConfig(data);
  const r = readAuth(data);
  if (!r.ok) return r;
  const canonical = Buffer.from(canonicalJsonText(r.root), 'utf8');
  return { ok: true, hash: sha256(canonical), canonical };
}

/** Canonical hash of valid content; null when the content is not acceptable. */
export function contentHash(key: Key, data: Uint8Array): string | null {
  const v = validateContent(key, data);
  return v.ok ? v.hash : null;
}
