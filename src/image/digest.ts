/**
 * Content digests ("sha256:<hex>") checked while bytes flow: a blob is verified
 * as it is read, never read twice, and a mismatch rejects whoever reads it.
 */
import { createHash, type Hash } from 'node:crypto';
import { HyperboxError } from '../errors.js';

/** What a blob must be, and how to name it in an error ("layer sha256:0123456789ab of /img.tar"). */
export interface Expected {
  digest: string;
  /** Byte count, when the descriptor gives one. */
  size?: number;
  label: string;
}

const HEX_LENGTH: Record<string, number> = { sha256: 64, sha512: 128 };

/** Splits and checks "alg:hex"; only sha256 and sha512 exist in OCI images. */
export function parseDigest(digest: unknown, where: string): { alg: string; hex: string } {
  const m = typeof digest === 'string' ? /^([a-z0-9]+):([0-9a-f]+)$/.exec(digest) : null;
  if (!m || HEX_LENGTH[m[1]!] === undefined || m[2]!.length !== HEX_LENGTH[m[1]!]) {
    throw new HyperboxError('E_IMAGE', `${where} has the digest ${JSON.stringify(digest)}, which is not a sha256 or sha512 digest`);
  }
  return { alg: m[1]!, hex: m[2]! };
}

/** "sha256:<hex>" of a buffer. */
export function sha256Of(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** The short form used in messages: "sha256:0123456789ab". */
export function shortDigest(digest: string): string {
  const i = digest.indexOf(':');
  return digest.slice(0, i + 13);
}

function mismatch(expected: Expected, found: string): HyperboxError {
  return new HyperboxError(
    'E_IMAGE_DIGEST',
    `${expected.label} does not match its digest (${shortDigest(expected.digest)} expected, ${shortDigest(found)} found): the image is corrupt or was altered`,
  );
}

function wrongSize(expected: Expected, size: number, atLeast: boolean): HyperboxError {
  return new HyperboxError(
    'E_IMAGE_DIGEST',
    `${expected.label} is ${atLeast ? 'more than ' : ''}${size} bytes where its descriptor says ${expected.size}: the image is corrupt or was altered`,
  );
}

function hasherFor(expected: Expected): Hash {
  return createHash(parseDigest(expected.digest, expected.label).alg);
}

/** Checks a whole buffer (manifests, configs: small blobs read at once). */
export function verifyBuffer(data: Buffer, expected: Expected): void {
  if (expected.size !== undefined && data.length !== expected.size) throw wrongSize(expected, data.length, false);
  const found = `${parseDigest(expected.digest, expected.label).alg}:${hasherFor(expected).update(data).digest('hex')}`;
  if (found !== expected.digest) throw mismatch(expected, found);
}

/**
 * Passes `input` through unchanged while hashing it; after the last chunk, throws
 * if the digest (or the byte count) is not the expected one. A stream longer than
 * the expected size fails as soon as it overruns.
 */
export async function* verifyStream(input: AsyncIterable<Buffer>, expected: Expected): AsyncGenerator<Buffer> {
  const hash = hasherFor(expected);
  const alg = parseDigest(expected.digest, expected.label).alg;
  let size = 0;
  for await (const chunk of input) {
    size += chunk.length;
    if (expected.size !== undefined && size > expected.size) throw wrongSize(expected, expected.size, true);
    hash.update(chunk);
    yield chunk;
  }
  if (expected.size !== undefined && size !== expected.size) throw wrongSize(expected, size, false);
  const found = `${alg}:${hash.digest('hex')}`;
  if (found !== expected.digest) throw mismatch(expected, found);
}

/**
 * Passes `input` through while computing its sha256; `done` receives "sha256:<hex>"
 * once the last chunk went by (not when the reader stopped early).
 */
export async function* hashStream(input: AsyncIterable<Buffer>, done: (digest: string, size: number) => void): AsyncGenerator<Buffer> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of input) {
    size += chunk.length;
    hash.update(chunk);
    yield chunk;
  }
  done(`sha256:${hash.digest('hex')}`, size);
}

/** Reads a stream to its end and checks it; used to tell corruption from a parse error after the fact. */
export async function checkStream(input: AsyncIterable<Buffer>, expected: Expected): Promise<void> {
  for await (const chunk of verifyStream(input, expected)) void chunk;
}
