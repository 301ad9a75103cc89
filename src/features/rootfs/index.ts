/**
 * EROFS rootfs. `io.hyperbox.rootfs.image=NAME` (a name or ID in the image
 * cache, never a path) or `--image ARCHIVE_OR_LAYOUT[:TAG]` on run/create/spec
 * (built into the cache when it is not there) makes the container's root a
 * read-only EROFS mount of the cached image, with an overlay whose upper and
 * work dirs live in the container's hyperbox state unless root.readonly is true.
 *
 * Only the request's grammar is here; building and mounting load when needed.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { HyperboxError } from '../../errors.js';
import { native as loadNative, type Native } from '../../native/index.js';
import { isJsonObject, type JsonObject } from '../../oci/json.js';
import { checkImageRef, requireImage } from '../../store/images.js';
import type { DoctorLine, Feature } from '../types.js';
import { imageCommands } from './commands.js';

export const PREFIX = 'io.hyperbox.rootfs';
export const ANNOTATION = 'io.hyperbox.rootfs.image';
/** Set by the --image flag only: a path the caller gave on its own command line. */
export const SOURCE_KEY = 'io.hyperbox.rootfs.source';

export interface RootfsOptions {
  /** The image ID, when the request named a cached image. */
  id?: string;
  /** An absolute path (with :TAG) from --image, built into the cache at create. */
  source?: string;
  /** root.readonly: the EROFS mount itself is the root, no overlay. */
  readonly: boolean;
}

/** `PATH[:TAG]` with the path made absolute (a tag is kept only when the whole string is not a path). */
export function absoluteSource(value: string): string {
  if (existsSync(value)) return resolve(value);
  const colon = value.lastIndexOf(':');
  if (colon > 0 && !value.slice(colon + 1).includes('/') && existsSync(value.slice(0, colon))) {
    return `${resolve(value.slice(0, colon))}:${value.slice(colon + 1)}`;
  }
  throw new HyperboxError('E_IMAGE_SOURCE', `--image ${value}: no such file or directory (give an image archive, an OCI layout, a rootfs tar or a directory)`);
}

export function planRootfs(annotations: Readonly<Record<string, string>>, fromFlags: Readonly<Record<string, string>>, spec: Readonly<JsonObject>): RootfsOptions | undefined {
  for (const key of Object.keys(annotations)) {
    if (!key.startsWith(PREFIX + '.') && key !== PREFIX) continue;
    if (key === ANNOTATION) continue;
    if (key === SOURCE_KEY && fromFlags[SOURCE_KEY] === annotations[SOURCE_KEY]) continue;
    if (key === SOURCE_KEY) {
      throw new HyperboxError('E_ANNOTATION', `${SOURCE_KEY} cannot come from an annotation: name a cached image with ${ANNOTATION}=NAME, or give a path with --image on the command line`);
    }
    throw new HyperboxError('E_ANNOTATION', `unknown annotation ${key}: the rootfs takes ${ANNOTATION}=NAME`);
  }
  const ref = annotations[ANNOTATION];
  const source = fromFlags[SOURCE_KEY];
  if (ref === undefined && source === undefined) return undefined;
  if (ref !== undefined && source !== undefined) {
    throw new HyperboxError('E_ANNOTATION', `both --image and ${ANNOTATION} given: use one`);
  }
  const root = isJsonObject(spec.root) ? spec.root : undefined;
  const readonly = root?.readonly === true;
  if (source !== undefined) return { source: absoluteSource(source), readonly };
  if (ref!.trim() === '') throw new HyperboxError('E_ANNOTATION', `${ANNOTATION} is empty: give an image name from \`hyperbox-runc image ls\``);
  checkImageRef(ref!);
  return { id: requireImage(ref!).id, readonly };
}

export function rootfsFeature(deps: { native: () => Native } = { native: loadNative }): Feature<RootfsOptions> {
  return {
    name: 'rootfs',
    annotationPrefix: PREFIX,
    flags: [
      {
        names: ['image'],
        value: true,
        commands: ['run', 'create', 'spec'],
        description: 'run from this image (OCI/Docker archive, OCI layout, rootfs tar or directory; PATH[:TAG]) as a cached EROFS rootfs',
        toAnnotations: (v) => ({ [SOURCE_KEY]: String(v) }),
      },
    ],

    makesBundle: (fromFlags) => fromFlags[SOURCE_KEY] !== undefined,

    plan: (input) => planRootfs(input.annotations, input.fromFlags, input.spec),

    async modify(spec, options, ctx) {
      const { mountRootfs } = await import('./mount.js');
      await mountRootfs(deps.native(), spec, options, ctx);
    },

    stages: () => ['poststop'],

    hooks: {
      async poststop(ctx) {
        const { releaseRootfs } = await import('./mount.js');
        releaseRootfs(deps.native(), ctx.stateDir, ctx.log);
      },
    },

    commands: [imageCommands(deps)],

    async doctor(): Promise<DoctorLine[]> {
      const { readFileSync } = await import('node:fs');
      let fs = '';
      try {
        fs = readFileSync('/proc/filesystems', 'utf8');
      } catch {
        /* unreadable: reported as missing */
      }
      const erofs = /\terofs$/m.test(fs);
      const overlay = /\toverlay$/m.test(fs);
      return [
        { check: 'EROFS', ok: erofs, detail: erofs ? 'in /proc/filesystems' : 'not in /proc/filesystems (modprobe erofs?)', consequence: 'containers that ask for an image rootfs fail to create' },
        { check: 'overlayfs', ok: overlay, detail: overlay ? 'in /proc/filesystems' : 'not in /proc/filesystems (modprobe overlay?)', consequence: 'image rootfs works only with root.readonly true' },
      ];
    },
  };
}
