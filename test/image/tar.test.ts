import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { createReadStream, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync, linkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { HyperboxError } from '../../src/errors.js';
import { readTarLayer, scanTarFile } from '../../src/image/tar.js';
import type { LayerEntry } from '../../src/image/types.js';
import { tarOf } from '../../fixtures/oci-image.js';
import { which } from '../../fixtures/tools.js';

// ---------------------------------------------------------------------------------------------
// Hand-made tar blocks, for what no tar writer would produce.

interface RawHeader {
  name: string;
  size?: number;
  typeflag?: string;
  linkname?: string;
  mode?: number;
  mtime?: number;
  /** Raw 12 bytes for the size field (base-256, garbage). */
  sizeField?: Buffer;
  devmajor?: number;
  devminor?: number;
}

function octal(n: number, len: number): string {
  return `${n.toString(8).padStart(len - 1, '0')}\0`;
}

function header(h: RawHeader): Buffer {
  const b = Buffer.alloc(512);
  b.write(h.name, 0, 100, 'latin1');
  b.write(octal(h.mode ?? 0o644, 8), 100, 'latin1');
  b.write(octal(0, 8), 108, 'latin1');
  b.write(octal(0, 8), 116, 'latin1');
  if (h.sizeField) h.sizeField.copy(b, 124);
  else b.write(octal(h.size ?? 0, 12), 124, 'latin1');
  b.write(octal(h.mtime ?? 1577836800, 12), 136, 'latin1');
  b.write(h.typeflag ?? '0', 156, 'latin1');
  if (h.linkname) b.write(h.linkname, 157, 100, 'latin1');
  b.write('ustar\0', 257, 'latin1');
  b.write('00', 263, 'latin1');
  b.write(octal(h.devmajor ?? 0, 8), 329, 'latin1');
  b.write(octal(h.devminor ?? 0, 8), 337, 'latin1');
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of b) sum += x;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return b;
}

function padded(data: Buffer): Buffer {
  return Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
}

function member(h: RawHeader, data: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([header({ ...h, size: h.size ?? data.length }), padded(data)]);
}

/** A PAX extended header ('x') with the given records (values as raw bytes). */
function pax(records: Array<[string, Buffer | string]>, typeflag = 'x'): Buffer {
  const recs = records.map(([k, v]) => {
    const body = Buffer.concat([Buffer.from(` ${k}=`), Buffer.from(v), Buffer.from('\n')]);
    let len = body.length + 1;
    while (`${len}`.length + body.length !== len) len = `${len}`.length + body.length;
    return Buffer.concat([Buffer.from(`${len}`), body]);
  });
  return member({ name: 'PaxHeader', typeflag }, Buffer.concat(recs));
}

const END = Buffer.alloc(1024);
const tarBytes = (...parts: Buffer[]) => Buffer.concat([...parts, END]);

async function* chunks(buf: Buffer, size = 700): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

interface Got {
  entry: LayerEntry;
  data: Buffer;
}

async function readAll(input: Buffer | AsyncIterable<Buffer>, what = 'test.tar'): Promise<Got[]> {
  const out: Got[] = [];
  for await (const se of readTarLayer(Buffer.isBuffer(input) ? chunks(input) : input, what)) {
    const parts: Buffer[] = [];
    for await (const c of se.body) parts.push(c);
    out.push({ entry: se.entry, data: Buffer.concat(parts) });
  }
  return out;
}

const byPath = (got: Got[]) => new Map(got.map((g) => [g.entry.path, g]));

async function rejects(t: Test, input: Buffer | AsyncIterable<Buffer>, re: RegExp, msg: string): Promise<void> {
  try {
    await readAll(input);
    t.fail(`${msg}: no error`);
  } catch (e) {
    t.ok(e instanceof HyperboxError, `${msg}: a HyperboxError (${(e as Error).message})`);
    t.match((e as Error).message, re, msg);
    t.notMatch((e as Error).message, /\n|    at /, `${msg}: one sentence, no stack`);
  }
}

// ---------------------------------------------------------------------------------------------

t.test('kinds, modes, owners and normalised paths', async (t) => {
  const tar = tarBytes(
    member({ name: './', typeflag: '5', mode: 0o755 }),
    member({ name: './etc//', typeflag: '5', mode: 0o2755 }),
    member({ name: './etc/./passwd', mode: 0o4755 }, Buffer.from('root\n')),
    member({ name: 'etc/contig', typeflag: '7' }, Buffer.from('c')),
    member({ name: 'etc/link', typeflag: '1', linkname: './etc/passwd' }),
    member({ name: 'etc/sym', typeflag: '2', linkname: '/etc/passwd', mode: 0o777 }),
    member({ name: 'dev/null', typeflag: '3', devmajor: 1, devminor: 3 }),
    member({ name: 'dev/sda', typeflag: '4', devmajor: 8, devminor: 0 }),
    member({ name: 'run/fifo', typeflag: '6' }),
    member({ name: 'a/.wh.b' }),
    member({ name: 'a/.wh..wh..opq' }),
  );
  const got = byPath(await readAll(tar));
  t.same([...got.keys()], ['', 'etc', 'etc/passwd', 'etc/contig', 'etc/link', 'etc/sym', 'dev/null', 'dev/sda', 'run/fifo', 'a/.wh.b', 'a/.wh..wh..opq']);
  t.match(got.get('')!.entry, { kind: 'dir', mode: 0o755, size: 0 });
  t.match(got.get('etc')!.entry, { kind: 'dir', mode: 0o2755 });
  t.match(got.get('etc/passwd')!.entry, { kind: 'file', mode: 0o4755, size: 5, uid: 0, gid: 0, mtimeSec: 1577836800, mtimeNsec: 0 });
  t.equal(got.get('etc/passwd')!.data.toString(), 'root\n');
  t.match(got.get('etc/contig')!.entry, { kind: 'file', size: 1 });
  t.match(got.get('etc/link')!.entry, { kind: 'hardlink', linkTarget: 'etc/passwd', size: 0 });
  t.match(got.get('etc/sym')!.entry, { kind: 'symlink', linkTarget: '/etc/passwd', mode: 0o777 });
  t.match(got.get('dev/null')!.entry, { kind: 'char', devMajor: 1, devMinor: 3 });
  t.match(got.get('dev/sda')!.entry, { kind: 'block', devMajor: 8, devMinor: 0 });
  t.match(got.get('run/fifo')!.entry, { kind: 'fifo' });
  t.match(got.get('a/.wh.b')!.entry, { kind: 'file', size: 0 }, 'whiteouts pass through as entries');
});

t.test('paths that leave the image are refused', async (t) => {
  await rejects(t, tarBytes(member({ name: '/etc/passwd' }, Buffer.from('x'))), /absolute path "\/etc\/passwd"/, 'absolute');
  await rejects(t, tarBytes(member({ name: '../x' }, Buffer.from('x'))), /entry "\.\.\/x" with a '\.\.' component/, '../x');
  await rejects(t, tarBytes(member({ name: 'a/../../x' })), /'\.\.' component/, 'a/../../x');
  await rejects(t, tarBytes(member({ name: 'a/../b' })), /'\.\.' component/, 'any .. component');
  await rejects(t, tarBytes(member({ name: 'h', typeflag: '1', linkname: '../x' })), /hard link "h" to "\.\.\/x", which is outside the image/, 'hardlink to ../x');
  await rejects(t, tarBytes(member({ name: 'h', typeflag: '1', linkname: '/etc/shadow' })), /hard link "h" to "\/etc\/shadow"/, 'hardlink to an absolute path');
  await rejects(t, tarBytes(pax([['path', Buffer.from('a\0b')]]), member({ name: 'x' })), /NUL byte/, 'NUL in a PAX path');
  await rejects(t, tarBytes(member({ name: 'f\xff' })), /not valid UTF-8/, 'a name that is not UTF-8');
  // Symlinks may point anywhere: they are resolved inside the container.
  const ok = await readAll(tarBytes(member({ name: 's', typeflag: '2', linkname: '../../etc' })));
  t.equal(ok[0]!.entry.linkTarget, '../../etc');
});

t.test('special entries are refused with the entry named', async (t) => {
  await rejects(t, tarBytes(member({ name: 'sparse', typeflag: 'S' }, Buffer.alloc(10))), /entry "sparse" of an unsupported kind \(a GNU sparse file/, 'GNU sparse');
  await rejects(t, tarBytes(member({ name: 'vol', typeflag: 'V' })), /entry "vol" of an unsupported kind/, 'volume label');
  await rejects(t, tarBytes(pax([['GNU.sparse.major', '1'], ['GNU.sparse.minor', '0']]), member({ name: 'GNUSparseFile.0/f' }, Buffer.alloc(10))), /a GNU sparse file/, 'PAX sparse');
  await rejects(t, tarBytes(member({ name: 'f', typeflag: '2' })), /symbolic link "f" with an empty target/, 'empty symlink');
  await rejects(t, tarBytes(member({ name: '.', typeflag: '0' })), /file entry "\." for the image root/, 'a file as the root');
});

t.test('PAX: exact mtimes, big ids, long names, binary xattrs', async (t) => {
  const capability = Buffer.from('0100000200200000000000000000000000000000', 'hex');
  const tar = tarBytes(
    pax([['mtime', '1577836800.123456789'], ['uid', '3000000000'], ['gid', '70000']]),
    member({ name: 'ns' }, Buffer.from('x')),
    pax([['mtime', '-1.25']]),
    member({ name: 'old' }),
    pax([
      ['SCHILY.xattr.user.bin', Buffer.from([0x00, 0x01, 0xff, 0x0a, 0x3d])],
      ['SCHILY.xattr.security.capability', capability],
      ['LIBARCHIVE.xattr.user.with%20space', Buffer.from([0xde, 0xad, 0xbe, 0xef]).toString('base64').replace(/=+$/, '')],
      // bsdtar writes both forms for one attribute; it is reported once.
      ['LIBARCHIVE.xattr.user.bin', Buffer.from([0x00, 0x01, 0xff, 0x0a, 0x3d]).toString('base64')],
    ]),
    member({ name: 'caps' }, Buffer.from('bin')),
    pax([['path', `${'d'.repeat(120)}/ünïcødé-😀`], ['linkpath', `${'t'.repeat(150)}`]]),
    member({ name: 'short', typeflag: '2', linkname: 'short' }),
  );
  const got = byPath(await readAll(tar));
  t.match(got.get('ns')!.entry, { mtimeSec: 1577836800, mtimeNsec: 123456789, uid: 3000000000, gid: 70000 });
  t.match(got.get('old')!.entry, { mtimeSec: -2, mtimeNsec: 750000000, uid: 0 }, 'negative PAX time, and PAX records apply to one entry only');
  const x = got.get('caps')!.entry.xattrs;
  t.same(x.map(([k]) => k), ['user.bin', 'security.capability', 'user.with space']);
  t.ok(x[0]![1].equals(Buffer.from([0x00, 0x01, 0xff, 0x0a, 0x3d])), 'binary SCHILY value byte-exact');
  t.ok(x[1]![1].equals(capability), 'security.capability byte-exact');
  t.ok(x[2]![1].equals(Buffer.from([0xde, 0xad, 0xbe, 0xef])), 'LIBARCHIVE value decoded');
  const long = got.get(`${'d'.repeat(120)}/ünïcødé-😀`);
  t.ok(long, 'PAX path');
  t.equal(long?.entry.linkTarget, 't'.repeat(150), 'PAX linkpath');
});

t.test('PAX global headers apply to every later entry', async (t) => {
  const tar = tarBytes(pax([['comment', 'git archive'], ['mtime', '5.5']], 'g'), member({ name: 'a' }), pax([['mtime', '7']]), member({ name: 'b' }), member({ name: 'c' }));
  const got = byPath(await readAll(tar));
  t.match(got.get('a')!.entry, { mtimeSec: 5, mtimeNsec: 500000000 });
  t.match(got.get('b')!.entry, { mtimeSec: 7, mtimeNsec: 0 });
  t.match(got.get('c')!.entry, { mtimeSec: 5, mtimeNsec: 500000000 });
});

t.test('tar-stream long names, unicode, gzip', async (t) => {
  const long = `${'a'.repeat(90)}/${'b'.repeat(90)}/${'c'.repeat(90)}.txt`;
  const tar = await tarOf([
    { name: long, body: 'long' },
    { name: 'ünï/😀.txt', body: 'uni' },
    { name: 'link', type: 'symlink', linkname: `${'t'.repeat(120)}` },
  ]);
  for (const [label, data] of [['plain', tar], ['gzip', gzipSync(tar)]] as const) {
    const got = byPath(await readAll(data));
    t.equal(got.get(long)?.data.toString(), 'long', `${label}: long name`);
    t.equal(got.get('ünï/😀.txt')?.data.toString(), 'uni', `${label}: unicode name`);
    t.equal(got.get('link')?.entry.linkTarget, 't'.repeat(120), `${label}: long link target`);
  }
});

t.test('GNU tar: long names (L/K records), ustar prefixes, real xattrs', async (t) => {
  if (!which('tar')) {
    t.plan(0, 'GNU tar is not installed');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'hbxt-gnutar-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const root = join(dir, 'root');
  const deep = join(root, 'p'.repeat(60), 'q'.repeat(60));
  mkdirSync(deep, { recursive: true });
  const longName = `${'n'.repeat(140)}-ünï.txt`;
  writeFileSync(join(root, longName), 'long\n');
  writeFileSync(join(deep, 'f'), 'deep\n');
  symlinkSync('x'.repeat(130), join(root, 'longlink'));
  linkSync(join(root, longName), join(root, 'hard'));
  writeFileSync(join(root, 'caps'), 'cap\n');
  utimesSync(join(root, 'caps'), 1600000000.5, 1600000000.5);
  let xattrs = false;
  let capability = false;
  try {
    execFileSync('setfattr', ['-n', 'user.bin', '-v', '0sAAH/', join(root, 'caps')], { stdio: 'ignore' });
    xattrs = true;
    execFileSync('setcap', ['cap_net_raw+ep', join(root, 'caps')], { stdio: 'ignore' });
    capability = true;
  } catch {
    t.comment(xattrs ? 'setcap failed: only user.bin is checked' : 'this filesystem does not take user xattrs: none checked');
  }

  const gnu = join(dir, 'gnu.tar');
  execFileSync('tar', ['--format=gnu', '-C', root, '-cf', gnu, '.']);
  const g = byPath(await readAll(createReadStream(gnu)));
  t.equal(g.get(longName)?.data.toString(), 'long\n', 'GNU long name');
  t.equal(g.get('longlink')?.entry.linkTarget, 'x'.repeat(130), 'GNU long link target');
  t.equal(g.get(`${'p'.repeat(60)}/${'q'.repeat(60)}/f`)?.data.toString(), 'deep\n');
  // GNU tar archives in readdir order: whichever name comes first is the file, the other the link.
  const pair = [g.get('hard')!, g.get(longName)!];
  const link = pair.find((p) => p.entry.kind === 'hardlink');
  t.equal(link?.entry.linkTarget, link === pair[0] ? longName : 'hard', 'hard link between a long and a short name');

  const ustar = join(dir, 'ustar.tar');
  execFileSync('tar', ['--format=ustar', '-C', root, '-cf', ustar, `./${'p'.repeat(60)}`]);
  const u = byPath(await readAll(createReadStream(ustar)));
  t.equal(u.get(`${'p'.repeat(60)}/${'q'.repeat(60)}/f`)?.data.toString(), 'deep\n', 'ustar prefix field');

  const paxTar = join(dir, 'pax.tar');
  execFileSync('tar', ['--format=pax', '--xattrs', '--xattrs-include=*', '-C', root, '-cf', paxTar, '.']);
  const p = byPath(await readAll(createReadStream(paxTar)));
  const caps = p.get('caps')!.entry;
  t.match(caps, { mtimeSec: 1600000000, mtimeNsec: 500000000 }, 'GNU tar PAX mtime with nanoseconds');
  if (xattrs) {
    const x = new Map(caps.xattrs);
    t.ok(x.get('user.bin')?.equals(Buffer.from([0x00, 0x01, 0xff])), 'user.bin 00 01 ff round trip');
    if (capability) {
      const real = execFileSync('getfattr', ['-n', 'security.capability', '--only-values', join(root, 'caps')], { encoding: 'latin1', stdio: ['ignore', 'pipe', 'ignore'] });
      t.equal(x.get('security.capability')?.toString('latin1'), real, 'security.capability (set by setcap) byte-exact');
    }
  }
});

t.test('absurd and garbage sizes', async (t) => {
  const base256 = Buffer.alloc(12);
  base256[0] = 0x80;
  base256.writeUIntBE(2 ** 44, 6, 6);
  await rejects(t, tarBytes(header({ name: 'huge', sizeField: base256 })), /entry "huge" with a size of 17592186044416 bytes, beyond the 8 TiB limit/, 'base-256 size above 2^43');
  const enormous = Buffer.alloc(12, 0xff);
  enormous[0] = 0x80;
  await rejects(t, tarBytes(header({ name: 'enormous', sizeField: enormous })), /entry "enormous" with a size of .* beyond the 8 TiB limit/, 'base-256 size beyond 2^53');
  await rejects(t, tarBytes(pax([['size', '99999999999999999']]), header({ name: 'paxsize' })), /entry "paxsize" with a size of .* beyond/, 'PAX size');
  await rejects(t, tarBytes(member({ name: 'ok' }, Buffer.from('x')), header({ name: 'garbage', sizeField: Buffer.from('zzzzzzzzzzz\0') })), /corrupt header after entry "ok" \(its size field is not a number\)/, 'garbage size');
  await rejects(t, tarBytes(member({ name: 'PaxHeader', typeflag: 'x' }, Buffer.from('garbage without length\n')), member({ name: 'a' })), /malformed PAX extended header/, 'malformed PAX');
});

t.test('truncated and corrupt archives', async (t) => {
  const big = Buffer.alloc(100_000, 7);
  const tar = tarBytes(member({ name: 'first' }, Buffer.from('1')), member({ name: 'big' }, big), member({ name: 'last' }, Buffer.from('2')));
  await rejects(t, tar.subarray(0, 30_000), /test\.tar ends in the middle of entry "big": the archive is truncated/, 'cut in a body');
  const atHeader = 512 + 512 + 512 + 100_352;
  await rejects(t, tar.subarray(0, atHeader + 100), /ends in the middle of a header after entry "big"/, 'cut in a header');
  await rejects(t, tar.subarray(0, atHeader + 1024), /ends without the end-of-archive marker after entry "last"/, 'cut at a header boundary');
  await rejects(t, gzipSync(tar).subarray(0, 200), /ends in the middle of its gzip data|ends in the middle of entry/, 'gzip cut short');
  await rejects(t, Buffer.alloc(0), /test\.tar is empty/, 'empty');

  const corrupt = Buffer.from(tar);
  corrupt[1024 + 10] ^= 0x20; // the name of "big"
  await rejects(t, corrupt, /test\.tar has a corrupt header after entry "first" \(bad checksum\)/, 'bad checksum');
  await rejects(t, Buffer.from('just some text, not a tar at all\n'.repeat(40)), /test\.tar is not a tar archive/, 'not a tar');
  const gz = gzipSync(tar);
  gz[gz.length - 5] ^= 0xff; // the length in the gzip trailer
  await rejects(t, gz, /test\.tar is not valid gzip data/, 'corrupt gzip');
});

t.test('zstd, xz and bzip2 layers are refused', async (t) => {
  const rest = Buffer.alloc(2000);
  await rejects(t, Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), rest]), /test\.tar is compressed with zstd, which is not supported/, 'zstd');
  await rejects(t, Buffer.concat([Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), rest]), /compressed with xz/, 'xz');
  await rejects(t, Buffer.concat([Buffer.from('BZh91AY'), rest]), /compressed with bzip2/, 'bzip2');
});

t.test('bodies: exact sizes, skip, unread bodies, reads out of turn', async (t) => {
  const big = Buffer.alloc(3 * 1024 * 1024 + 17);
  for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff;
  const tar = tarBytes(member({ name: 'a' }, big), member({ name: 'b' }, Buffer.from('bee')), member({ name: 'c' }, big), member({ name: 'd' }, Buffer.from('dee')));
  const it = readTarLayer(chunks(tar, 65536), 'bodies.tar');
  const seen: string[] = [];
  let stale: AsyncIterable<Buffer> | undefined;
  for await (const se of it) {
    seen.push(se.entry.path);
    if (se.entry.path === 'a') {
      let n = 0;
      const h: Buffer[] = [];
      for await (const c of se.body) {
        n += c.length;
        h.push(c);
      }
      t.equal(n, big.length, 'a: exactly size bytes');
      t.ok(Buffer.concat(h).equals(big), 'a: the data');
    } else if (se.entry.path === 'b') {
      await se.skip();
    } else if (se.entry.path === 'c') {
      stale = se.body; // never read: skipped when the next entry is asked for
    } else {
      const parts: Buffer[] = [];
      for await (const c of se.body) parts.push(c);
      t.equal(Buffer.concat(parts).toString(), 'dee', 'the entry after an unread one is intact');
    }
  }
  t.same(seen, ['a', 'b', 'c', 'd']);
  await t.rejects(
    (async () => {
      for await (const c of stale!) void c;
    })(),
    /read after the next entry/,
    'a body read after the next entry was requested fails',
  );
});

t.test('errors of the input reject the iteration; stopping early closes the input', async (t) => {
  const tar = tarBytes(member({ name: 'a' }, Buffer.from('x')));
  async function* failing(): AsyncGenerator<Buffer> {
    yield* chunks(tar);
    throw new HyperboxError('E_IMAGE_DIGEST', 'layer sha256:0 of x does not match its digest');
  }
  await rejects(t, failing(), /does not match its digest/, 'input error after the last entry');

  let closed = false;
  async function* endless(): AsyncGenerator<Buffer> {
    try {
      yield header({ name: 'a', size: 10 * 1024 * 1024 });
      for (;;) yield Buffer.alloc(65536);
    } finally {
      closed = true;
    }
  }
  for await (const se of readTarLayer(endless(), 'endless.tar')) {
    t.equal(se.entry.path, 'a');
    break;
  }
  t.ok(closed, 'the input was closed');
});

t.test('a file on disk read as a stream, and indexed by its headers', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hbxt-scan-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const long = `${'m'.repeat(120)}.json`;
  const tar = await tarOf([
    { name: 'dir', type: 'directory' },
    { name: 'dir/a', body: 'A'.repeat(1000) },
    { name: long, body: '{}' },
    { name: 'dir/link', type: 'symlink', linkname: 'a' },
  ]);
  const path = join(dir, 'x.tar');
  writeFileSync(path, tar);
  const members = await scanTarFile(path, path);
  t.same(
    members.map((m) => [m.name, m.type, m.size, m.linkName]),
    [
      ['dir', 'dir', 0, undefined],
      ['dir/a', 'file', 1000, undefined],
      [long, 'file', 2, undefined],
      ['dir/link', 'symlink', 0, 'a'],
    ],
  );
  const a = members[1]!;
  t.equal(readFileSync(path).subarray(a.offset, a.offset + a.size).toString(), 'A'.repeat(1000), 'offset of the data');
  writeFileSync(path, tar.subarray(0, 1500));
  await t.rejects(scanTarFile(path, path), /ends in the middle of member "dir\/a": the archive is truncated/);
});
