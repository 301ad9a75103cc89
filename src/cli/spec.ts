/**
 * `spec` with hyperbox flags (`hyperbox-runc spec --image app.tar`): runc's own
 * default spec, then each flag's request written in as annotations, and what
 * the image says about its process filled in where runc left defaults.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { HyperboxError, reasonOf } from '../errors.js';
import { flagAnnotations } from '../features/registry.js';
import type { AnyFeature } from '../features/types.js';
import type { Native } from '../native/index.js';
import { isJsonObject, type JsonObject } from '../oci/json.js';
import { writeFileAtomic } from '../store/atomic.js';
import { argvForRunc, flagValue, type ParsedArgv } from './grammar.js';
import { runcPath } from './runtime.js';

export async function specCommand(parsed: ParsedArgv, features: readonly AnyFeature[], nat: Native): Promise<number> {
  const bundleFlag = flagValue(parsed.flags, 'bundle');
  const bundleDir = resolve(typeof bundleFlag === 'string' && bundleFlag ? bundleFlag : '.');
  const configPath = join(bundleDir, 'config.json');
  if (existsSync(configPath)) throw new HyperboxError('E_BUNDLE', `${configPath} exists: remove it first (as runc spec asks)`);

  // The image first: a bad source leaves no config.json behind.
  const { SOURCE_KEY, ANNOTATION, absoluteSource } = await import('../features/rootfs/index.js');
  const extra = flagAnnotations(parsed.flags, features);
  const annotations: Record<string, string> = { ...extra };
  let imageConfig;
  if (extra[SOURCE_KEY] !== undefined) {
    const { ensureImage } = await import('../store/images.js');
    const { meta } = await ensureImage(nat, absoluteSource(extra[SOURCE_KEY]!));
    delete annotations[SOURCE_KEY];
    annotations[ANNOTATION] = meta.id;
    imageConfig = meta.config;
  }

  try {
    execFileSync(runcPath(nat), argvForRunc(parsed), { stdio: ['ignore', 'inherit', 'pipe'] });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    throw new HyperboxError('E_BUNDLE', `runc spec failed: ${stderr || reasonOf(err)}`, { cause: err });
  }
  const spec = JSON.parse(readFileSync(configPath, 'utf8')) as JsonObject;
  spec.annotations = { ...(isJsonObject(spec.annotations) ? spec.annotations : {}), ...annotations };
  if (imageConfig) {
    // An image is writable as every engine runs one (through the overlay); the user is resolved at create, inside the image.
    if (isJsonObject(spec.root)) spec.root.readonly = false;
    const { fillProcess } = await import('../features/rootfs/mount.js');
    fillProcess(spec, { ...imageConfig, user: undefined }, '/nonexistent');
  }
  const st = statSync(configPath);
  writeFileAtomic(configPath, JSON.stringify(spec, null, '\t'), { mode: st.mode & 0o7777 });
  return 0;
}
