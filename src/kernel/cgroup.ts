/** A process's cgroup in the v2 (unified) hierarchy: its path and the id BPF sees for it. */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { HyperboxError, reasonOf } from '../errors.js';
import { cgroup2Mount } from './probes.js';

/** A cgroup v2 directory and its id (the kernfs inode number, what bpf_get_current_cgroup_id returns). */
export interface Cgroup2 {
  path: string;
  dir: string;
  id: bigint;
}

/** The `0::` line of /proc/PID/cgroup (the unified hierarchy; present on hybrid machines too). */
export function cgroup2PathOf(pid: number | 'self'): string | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  } catch (err) {
    throw new HyperboxError('E_CGROUP', `cannot read the cgroups of process ${pid}: ${reasonOf(err)}`, { cause: err });
  }
  const line = text.split('\n').find((l) => l.startsWith('0::'));
  return line?.slice(3);
}

/**
 * The container's own v2 cgroup. One shared with the caller (or the root) is
 * refused: tracking it would record every process on the host, not the container.
 */
export function containerCgroup2(pid: number): Cgroup2 {
  const mount = cgroup2Mount();
  if (!mount) throw new HyperboxError('E_CGROUP', 'this host has no cgroup v2 hierarchy, which per-container BPF needs (hyperbox-runc doctor)');
  const path = cgroup2PathOf(pid);
  if (path === undefined || path === '/' || path === cgroup2PathOf('self')) {
    throw new HyperboxError('E_CGROUP', `container process ${pid} has no cgroup v2 of its own (it is in ${path ?? 'none'}); the runtime must place it in one`);
  }
  const dir = join(mount, path);
  try {
    return { path, dir, id: statSync(dir, { bigint: true }).ino };
  } catch (err) {
    throw new HyperboxError('E_CGROUP', `cannot stat the container's cgroup ${dir}: ${reasonOf(err)}`, { cause: err });
  }
}
