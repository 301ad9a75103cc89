import t from 'tap';
import { chmodSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadBundle, renderBundle, writeConfig } from '../../src/oci/bundle.js';

function bundleWith(text: string, mode = 0o600): string {
  const dir = mkdtempSync(join(tmpdir(), 'hbx-bundle-'));
  writeFileSync(join(dir, 'config.json'), text);
  chmodSync(join(dir, 'config.json'), mode);
  return dir;
}

const minimal = '{\n\t"ociVersion": "1.0.2",\n\t"x-unknown": {"keep": [1, 2]},\n\t"linux": {"resources": {"memory": {"limit": 18446744073709551615}}}\n}\n';

t.test('an unmodified bundle renders to the bytes it was read from', async (t) => {
  const text = '{\n\t"ociVersion": "1.0.2",\n\t"x-unknown": {\n\t\t"keep": [\n\t\t\t1,\n\t\t\t2\n\t\t]\n\t}\n}\n';
  const b = loadBundle(bundleWith(text));
  t.equal(renderBundle(b).toString(), text);
});

t.test('a modification keeps unknown fields, 64-bit values, mode and owner', async (t) => {
  const dir = bundleWith(minimal, 0o640);
  const b = loadBundle(dir);
  b.spec.annotations = { 'io.hyperbox.x': 'y' };
  writeConfig(b, renderBundle(b));
  const after = readFileSync(join(dir, 'config.json'), 'utf8');
  t.match(after, /"limit": 18446744073709551615/);
  t.match(after, /"x-unknown"/);
  t.match(after, /"annotations": \{\n\t\t"io.hyperbox.x": "y"\n\t\}\n\}\n$/);
  t.equal(statSync(join(dir, 'config.json')).mode & 0o777, 0o640);
});

t.test('bad config.json is one clear sentence naming the file', async (t) => {
  t.throws(() => loadBundle(bundleWith('{"ociVersion": "1.0.2",')), /config\.json is not valid JSON: unexpected end of input at line 1/);
  t.throws(() => loadBundle(bundleWith('[1]')), /config\.json must hold a JSON object/);
  t.throws(() => loadBundle(bundleWith('{"process": {}}')), /config\.json: ociVersion: ociVersion is required/);
  t.throws(() => loadBundle(bundleWith('{"ociVersion": "1", "annotations": {"a": 1}}')), /annotations\.a: annotation values must be strings/);
  t.throws(() => loadBundle(bundleWith('{"ociVersion": "1", "hooks": {"poststop": [{"path": "rel"}]}}')), /hooks\.poststop\.0\.path: a hook path must be absolute/);
  t.throws(() => loadBundle(join(tmpdir(), 'hbx-no-such-bundle')), /cannot read .*config\.json: no such file or directory/);
});
