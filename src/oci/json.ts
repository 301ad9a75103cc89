/**
 * Lossless JSON for config.json. JSON.parse would drop 64-bit values above
 * 2^53 (memory limits, device numbers), turn "1.0" into 1, and reorder
 * integer-like object keys; a runtime that rewrites the caller's config must
 * keep all of that. Objects remember their key order, integers that do not fit
 * a double become bigint, and other numbers whose text would not survive a
 * round trip become RawNumber.
 */

/** A number literal kept as written because no JS number prints back the same. */
export class RawNumber {
  constructor(readonly literal: string) {}
  valueOf(): number {
    return Number(this.literal);
  }
  toJSON(): number {
    return Number(this.literal);
  }
}

export type JsonValue = null | boolean | number | bigint | RawNumber | string | JsonValue[] | JsonObject;
export interface JsonObject {
  [key: string]: JsonValue;
}

/** Key order of parsed objects, kept off the enumerable properties. */
const KEY_ORDER = Symbol('hyperbox.keyOrder');
type Ordered = JsonObject & { [KEY_ORDER]?: string[] };

/** Where a syntax error is, as "line L column C". */
export class JsonSyntaxError extends Error {
  constructor(
    message: string,
    readonly line: number,
    readonly column: number,
  ) {
    super(`${message} at line ${line} column ${column}`);
  }
}

/** Parses JSON text without losing number precision or key order. */
export function parseJson(text: string): JsonValue {
  let pos = 0;
  const fail = (what: string): never => {
    if (pos >= text.length && what !== 'unterminated string') what = 'unexpected end of input';
    const before = text.slice(0, pos);
    const line = before.split('\n').length;
    throw new JsonSyntaxError(what, line, pos - before.lastIndexOf('\n'));
  };
  const ws = () => {
    while (pos < text.length) {
      const c = text.charCodeAt(pos);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) pos++;
      else break;
    }
  };
  const value = (depth: number): JsonValue => {
    if (depth > 512) fail('nesting too deep');
    ws();
    const c = text[pos];
    if (c === '{') return object(depth);
    if (c === '[') return array(depth);
    if (c === '"') return string();
    if (c === 't' && text.startsWith('true', pos)) return (pos += 4), true;
    if (c === 'f' && text.startsWith('false', pos)) return (pos += 5), false;
    if (c === 'n' && text.startsWith('null', pos)) return (pos += 4), null;
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return number();
    return fail(c === undefined ? 'unexpected end of input' : `unexpected character ${JSON.stringify(c)}`);
  };
  const object = (depth: number): JsonObject => {
    pos++;
    const obj: Ordered = {};
    const order: string[] = [];
    ws();
    if (text[pos] === '}') {
      pos++;
    } else {
      for (;;) {
        ws();
        if (text[pos] !== '"') fail('expected a string key');
        const key = string();
        ws();
        if (text[pos++] !== ':') (pos--, fail('expected ":"'));
        const v = value(depth + 1);
        if (!Object.prototype.hasOwnProperty.call(obj, key)) order.push(key);
        obj[key] = v;
        ws();
        const sep = text[pos++];
        if (sep === '}') break;
        if (sep !== ',') (pos--, fail('expected "," or "}"'));
      }
    }
    Object.defineProperty(obj, KEY_ORDER, { value: order, enumerable: false, writable: true });
    return obj;
  };
  const array = (depth: number): JsonValue[] => {
    pos++;
    const arr: JsonValue[] = [];
    ws();
    if (text[pos] === ']') return pos++, arr;
    for (;;) {
      arr.push(value(depth + 1));
      ws();
      const sep = text[pos++];
      if (sep === ']') return arr;
      if (sep !== ',') (pos--, fail('expected "," or "]"'));
    }
  };
  const string = (): string => {
    const start = pos;
    pos++;
    for (;;) {
      const c = text.charCodeAt(pos);
      if (Number.isNaN(c)) fail('unterminated string');
      if (c === 0x22) break;
      if (c === 0x5c) pos++;
      else if (c < 0x20) fail('control character in string');
      pos++;
    }
    pos++;
    try {
      return JSON.parse(text.slice(start, pos)) as string;
    } catch {
      pos = start;
      return fail('invalid string escape');
    }
  };
  const number = (): number | bigint | RawNumber => {
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(pos, pos + 400));
    if (!m) return fail('invalid number');
    const lit = m[0];
    pos += lit.length;
    const n = Number(lit);
    if (String(n) === lit) return n;
    if (!m[2] && !m[3] && lit !== '-0') return BigInt(lit);
    return new RawNumber(lit);
  };
  const result = value(0);
  ws();
  if (pos < text.length) fail('unexpected text after the JSON value');
  return result;
}

/** Keys of an object in their original order, then any added since. */
function orderedKeys(obj: Ordered): string[] {
  const order = obj[KEY_ORDER];
  if (!order) return Object.keys(obj);
  const present = order.filter((k) => Object.prototype.hasOwnProperty.call(obj, k) && obj[k] !== undefined);
  const known = new Set(present);
  for (const k of Object.keys(obj)) if (!known.has(k) && obj[k] !== undefined) present.push(k);
  return present;
}

/** How a document was laid out, so a rewrite looks like the original. */
export interface JsonStyle {
  indent: string;
  trailingNewline: boolean;
}

/** Reads the indentation and final newline of a JSON text (Go's MarshalIndent uses a tab). */
export function detectStyle(text: string): JsonStyle {
  const m = /^[{[]\r?\n([ \t]+)\S/.exec(text.trimStart());
  return { indent: m?.[1] ?? '', trailingNewline: text.endsWith('\n') };
}

/** Serializes a value from parseJson (or built by hand) in the given style. */
export function stringifyJson(value: JsonValue, style: JsonStyle = { indent: '\t', trailingNewline: false }): string {
  const { indent } = style;
  const out = (v: JsonValue | undefined, level: number): string => {
    if (v === null || v === undefined) return 'null';
    if (typeof v === 'bigint') return v.toString();
    if (v instanceof RawNumber) return v.literal;
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw new TypeError(`cannot write ${v} as JSON`);
      return String(v);
    }
    if (typeof v === 'boolean') return v ? 'true' : 'false';
    if (typeof v === 'string') return JSON.stringify(v);
    const inner = indent ? '\n' + indent.repeat(level + 1) : '';
    const close = indent ? '\n' + indent.repeat(level) : '';
    if (Array.isArray(v)) {
      if (v.length === 0) return '[]';
      return '[' + inner + v.map((x) => out(x, level + 1)).join(',' + inner) + close + ']';
    }
    const keys = orderedKeys(v as Ordered);
    if (keys.length === 0) return '{}';
    const colon = indent ? ': ' : ':';
    return '{' + inner + keys.map((k) => JSON.stringify(k) + colon + out(v[k], level + 1)).join(',' + inner) + close + '}';
  };
  return out(value, 0) + (style.trailingNewline ? '\n' : '');
}

/** True for a plain JSON object (not an array or null). */
export function isJsonObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof RawNumber);
}
