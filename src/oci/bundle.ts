/** A bundle's config.json: loaded losslessly, validated, and written back only when it changed. */
import { readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { specSchema } from '../../config-schema/oci.js';
import { HyperboxError, reasonOf } from '../errors.js';
import { writeFileAtomic } from '../store/atomic.js';
import { detectStyle, isJsonObject, JsonSyntaxError, parseJson, stringifyJson, type JsonObject, type JsonStyle } from './json.js';

/** A loaded bundle: the parsed document to modify plus what is needed to write it back faithfully. */
export interface Bundle {
  dir: string;
  configPath: string;
  /** The bytes as the caller wrote them. */
  original: Buffer;
  /** The document; features edit it in place. */
  spec: JsonObject;
  style: JsonStyle;
  mode: number;
  uid: number;
  gid: number;
}

/** Loads <dir>/config.json; every failure is one sentence naming the file. */
export function loadBundle(dir: string): Bundle {
  const absDir = resolve(dir);
  const configPath = join(absDir, 'config.json');
  let original: Buffer;
  let st;
  try {
    st = statSync(configPath);
    original = readFileSync(configPath);
  } catch (err) {
    throw new HyperboxError('E_BUNDLE', `cannot read ${configPath}: ${reasonOf(err)}`, { cause: err });
  }
  const text = original.toString('utf8');
  let doc;
  try {
    doc = parseJson(text);
  } catch (err) {
    const where = err instanceof JsonSyntaxError ? err.message : reasonOf(err);
    throw new HyperboxError('E_CONFIG', `${configPath} is not valid JSON: ${where}`, { cause: err });
  }
  if (!isJsonObject(doc)) throw new HyperboxError('E_CONFIG', `${configPath} must hold a JSON object`);
  const checked = specSchema.safeParse(doc);
  if (!checked.success) {
    const issue = checked.error.issues[0]!;
    const at = issue.path.length ? issue.path.join('.') : '(top level)';
    throw new HyperboxError('E_CONFIG', `${configPath}: ${at}: ${issue.message}`);
  }
  return { dir: absDir, configPath, original, spec: doc, style: detectStyle(text), mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
}

/** The bytes config.json would hold now. */
export function renderBundle(bundle: Bundle): Buffer {
  return Buffer.from(stringifyJson(bundle.spec, bundle.style));
}

/** Re-validates the modified document (a feature must not produce an invalid spec). */
export function validateSpec(bundle: Bundle): void {
  const checked = specSchema.safeParse(bundle.spec);
  if (!checked.success) {
    const issue = checked.error.issues[0]!;
    throw new HyperboxError('E_INTERNAL', `hyperbox produced an invalid config.json at ${issue.path.join('.')}: ${issue.message}`);
  }
}

/** Writes bytes over config.json atomically with the original mode and owner. */
export function writeConfig(bundle: Bundle, bytes: Buffer): void {
  try {
    writeFileAtomic(bundle.configPath, bytes, { mode: bundle.mode, uid: bundle.uid, gid: bundle.gid });
  } catch (err) {
    throw new HyperboxError('E_BUNDLE', `cannot write ${bundle.configPath}: ${reasonOf(err)}`, { cause: err });
  }
}
