/**
 * Mounting a cached image as a container's root, and taking it down.
 *
 *   <state>/rootfs/lower    the EROFS image, read-only (file-backed; a loop device on older kernels)
 *   <state>/rootfs/upper    overlay upper and work: the container's writes, gone with the container
 *   <state>/rootfs/work
 *   <state>/rootfs/merged   the overlay: root.path
 *
 * The paths are fixed under the state dir, so release needs nothing but the
 * state dir: it works after a failed create and after a killed hyperbox-runc.
 */
import { lstatSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { HyperboxError, reasonOf } from '../../errors.js';
import type { Native } from '../../native/index.js';
import { isJsonObject, type JsonObject } from '../../oci/json.js';
import { readFeatureState, writeFeatureState } from '../../oci/state.js';
import { ensureImage, imageFile, readImageMeta, requireImage, type ImageMeta } from '../../store/images.js';
import type { Logger } from '../../cli/log.js';
import type { ImageConfig } from '../../image/types.js';
import type { ModifyContext } from '../types.js';
import { ANNOTATION, type RootfsOptions } from './index.js';

const STATE_FILE = 'rootfs.json';

interface RootfsState {
  id: string;
  loop: string | null;
}

export function rootfsDirs(stateDir: string): { base: string; lower: string; upper: string; work: string; merged: string } {
  const base = join(stateDir, 'rootfs');
  return { base, lower: join(base, 'lower'), upper: join(base, 'upper'), work: join(base, 'work'), merged: join(base, 'merged') };
}

/** Finds (or builds) the image, mounts it, points root.path at it and fills process defaults from its config. */
export async function mountRootfs(nat: Native, spec: JsonObject, options: RootfsOptions, ctx: ModifyContext): Promise<void> {
  let meta: ImageMeta;
  if (options.source) {
    const ensured = await ensureImage(nat, options.source);
    meta = ensured.meta;
    ctx.log.debug(`hyperbox-runc: image ${meta.id} ${ensured.built ? 'built' : 'found in the cache'} for ${options.source}`);
    spec.annotations = { ...(isJsonObject(spec.annotations) ? spec.annotations : {}), [ANNOTATION]: meta.id };
  } else {
    meta = readImageMeta(options.id!) ?? requireImage(options.id!);
  }
  const dirs = rootfsDirs(ctx.stateDir);
  for (const d of options.readonly ? [dirs.lower] : [dirs.lower, dirs.upper, dirs.work, dirs.merged]) mkdirSync(d, { recursive: true, mode: 0o755 });
  writeFeatureState(ctx.stateDir, STATE_FILE, { id: meta.id, loop: null } satisfies RootfsState);
  let loop: string | null;
  try {
    loop = nat.mountErofs(imageFile(meta.id), dirs.lower, false);
  } catch (err) {
    throw new HyperboxError('E_MOUNT', `cannot mount image ${meta.names[0] ?? meta.id} (${imageFile(meta.id)}): ${reasonOf(err)}; \`hyperbox-runc doctor\` shows what the kernel supports`, { cause: err });
  }
  if (loop) writeFeatureState(ctx.stateDir, STATE_FILE, { id: meta.id, loop } satisfies RootfsState);
  if (!options.readonly) {
    try {
      nat.mountOverlay(dirs.lower, dirs.upper, dirs.work, dirs.merged);
    } catch (err) {
      throw new HyperboxError('E_MOUNT', `cannot mount the overlay over image ${meta.names[0] ?? meta.id}: ${reasonOf(err)}; set root.readonly to run from the image without one`, { cause: err });
    }
  }
  const root = isJsonObject(spec.root) ? spec.root : {};
  spec.root = { ...root, path: options.readonly ? dirs.lower : dirs.merged };
  fillProcess(spec, meta.config, dirs.lower);
}

/** Unmounts the overlay and the image (detaching what is still busy) and frees a loop device left attached. */
export function releaseRootfs(nat: Native, stateDir: string, log: Logger): void {
  const dirs = rootfsDirs(stateDir);
  const failures: string[] = [];
  for (const target of [dirs.merged, dirs.lower]) {
    try {
      nat.unmount(target, false);
    } catch (err) {
      try {
        nat.unmount(target, true); // busy (a process still holds it): detach, the kernel frees it when released
      } catch (err2) {
        failures.push(`${target}: ${reasonOf(err2)} (after ${reasonOf(err)})`);
      }
    }
  }
  const state = readFeatureState<RootfsState>(stateDir, STATE_FILE);
  if (state?.loop && nat.loopBackingFile(state.loop) === imageFile(state.id)) {
    try {
      nat.loopDetach(state.loop);
    } catch (err) {
      failures.push(`${state.loop}: ${reasonOf(err)}`);
    }
  }
  if (failures.length) {
    log.warn(`hyperbox-runc: rootfs: cannot unmount ${failures.join('; ')}`);
    throw new HyperboxError('E_MOUNT', `rootfs mounts left in ${dirs.base}`);
  }
}

const RUNC_DEFAULT_ARGS = '["sh"]';
const RUNC_DEFAULT_ENV = new Map([
  ['PATH', '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
  ['TERM', 'xterm'],
]);

/**
 * The image's config fills what the bundle leaves at runc spec's defaults:
 * args ["sh"], cwd "/", user 0:0, the default PATH; image variables the
 * bundle does not set are added.
 */
export function fillProcess(spec: JsonObject, config: ImageConfig, root: string): void {
  if (!isJsonObject(spec.process)) return;
  const p = spec.process;
  const args = [...(config.entrypoint ?? []), ...(config.cmd ?? [])];
  if (args.length && (!Array.isArray(p.args) || p.args.length === 0 || JSON.stringify(p.args) === RUNC_DEFAULT_ARGS)) p.args = args;
  if (config.env?.length) {
    const env = Array.isArray(p.env) ? p.env.filter((e): e is string => typeof e === 'string') : [];
    const index = new Map(env.map((e, i) => [e.slice(0, e.indexOf('=') >>> 0), i]));
    for (const entry of config.env) {
      const name = entry.slice(0, entry.indexOf('=') >>> 0);
      const at = index.get(name);
      if (at === undefined) {
        index.set(name, env.length);
        env.push(entry);
      } else if (env[at] === `${name}=${RUNC_DEFAULT_ENV.get(name)}`) {
        env[at] = entry;
      }
    }
    p.env = env;
  }
  if (config.workingDir && (p.cwd === undefined || p.cwd === '/')) p.cwd = config.workingDir;
  const user = isJsonObject(p.user) ? p.user : undefined;
  if (config.user && (!user || (user.uid === 0 && user.gid === 0 && user.additionalGids === undefined))) {
    p.user = resolveUser(config.user, root);
  }
}

/** Reads a file of the image itself, refusing symlinks (they would resolve against the host). */
function imageEtc(root: string, name: string): string[][] {
  try {
    for (const path of [join(root, 'etc'), join(root, 'etc', name)]) if (lstatSync(path).isSymbolicLink()) return [];
    return readFileSync(join(root, 'etc', name), 'utf8').split('\n').map((l) => l.split(':'));
  } catch {
    return [];
  }
}

/** The image's User ("uid", "uid:gid", "name", "name:group") as an OCI user, names looked up in the image. */
export function resolveUser(spec: string, root: string): { uid: number; gid: number } {
  const [u, g] = spec.split(':', 2) as [string, string | undefined];
  const passwd = imageEtc(root, 'passwd');
  let uid: number;
  let gid: number | undefined;
  if (/^\d+$/.test(u)) {
    uid = Number(u);
    const row = passwd.find((r) => r[2] === u);
    if (row && /^\d+$/.test(row[3] ?? '')) gid = Number(row[3]);
  } else {
    const row = passwd.find((r) => r[0] === u);
    if (!row || !/^\d+$/.test(row[2] ?? '')) throw new HyperboxError('E_IMAGE_USER', `the image's user ${JSON.stringify(u)} is not in its /etc/passwd`);
    uid = Number(row[2]);
    gid = Number(row[3]);
  }
  if (g !== undefined) {
    if (/^\d+$/.test(g)) gid = Number(g);
    else {
      const row = imageEtc(root, 'group').find((r) => r[0] === g);
      if (!row || !/^\d+$/.test(row[2] ?? '')) throw new HyperboxError('E_IMAGE_USER', `the image's group ${JSON.stringify(g)} is not in its /etc/group`);
      gid = Number(row[2]);
    }
  }
  return { uid, gid: gid ?? 0 };
}
