import t from 'tap';
import { detectStyle, parseJson, RawNumber, stringifyJson, type JsonObject } from '../../src/oci/json.js';

const roundTrip = (text: string) => stringifyJson(parseJson(text), detectStyle(text));

t.test('a runc-style config round-trips byte for byte', async (t) => {
  const text = '{\n\t"ociVersion": "1.0.2-dev",\n\t"process": {\n\t\t"user": {\n\t\t\t"uid": 0,\n\t\t\t"gid": 0\n\t\t},\n\t\t"args": [\n\t\t\t"sh"\n\t\t],\n\t\t"noNewPrivileges": true\n\t},\n\t"mounts": [],\n\t"annotations": {}\n}';
  t.equal(roundTrip(text), text);
});

t.test('compact documents stay compact, trailing newline kept', async (t) => {
  const text = '{"a":1,"b":[true,false,null],"c":{"d":"e"}}\n';
  t.equal(roundTrip(text), text);
});

t.test('64-bit values survive', async (t) => {
  const text = '{"limit":9223372036854775807,"swap":18446744073709551615,"neg":-9223372036854775808,"small":4096}';
  const doc = parseJson(text) as JsonObject;
  t.equal(doc.limit, 9223372036854775807n);
  t.equal(doc.small, 4096);
  t.equal(roundTrip(text), text);
});

t.test('number literals that a double would reprint differently are kept as written', async (t) => {
  const text = '{"a":1.0,"b":1e3,"c":0.10,"d":1.5,"e":-0,"f":493}';
  const doc = parseJson(text) as JsonObject;
  t.ok(doc.a instanceof RawNumber);
  t.equal(doc.d, 1.5);
  t.equal(doc.f, 0o755, 'a mode written in decimal is the same number');
  t.equal(roundTrip(text), text);
});

t.test('key order is kept, including integer-like keys JS objects would sort first', async (t) => {
  const text = '{"z":1,"10":2,"a":3,"2":4}';
  t.equal(roundTrip(text), text);
  const doc = parseJson(text) as JsonObject;
  doc.new = 5;
  delete doc.a;
  t.equal(stringifyJson(doc, detectStyle(text)), '{"z":1,"10":2,"2":4,"new":5}', 'new keys go last, deleted keys vanish');
});

t.test('unknown fields and escapes are kept', async (t) => {
  const text = '{"x-vendor":{"deep":[1,{"q":"\\"quoted\\" \\u00e9 \\n"}]},"s":"<&>"}';
  const doc = parseJson(text) as JsonObject;
  t.same(JSON.parse(stringifyJson(doc, detectStyle(text))), JSON.parse(text));
});

t.test('syntax errors say where', async (t) => {
  t.throws(() => parseJson('{\n  "a": 1,\n  "b": \n}'), /unexpected character "}" at line 4 column 1/);
  t.throws(() => parseJson('{"a":1} x'), /unexpected text after the JSON value/);
  t.throws(() => parseJson('{"a":'), /unexpected end of input/);
  t.throws(() => parseJson('{"a":"x'), /unterminated string/);
  t.throws(() => parseJson('[01]'), /expected "," or "]"/);
  t.throws(() => parseJson('{"a":"\\q"}'), /invalid string escape/);
});

t.test('deep nesting is refused, not a stack overflow', async (t) => {
  t.throws(() => parseJson('['.repeat(10000)), /nesting too deep/);
});
