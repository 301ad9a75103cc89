/** A recording fake of the addon for in-process tests of the CLI. */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Native } from '../../src/native/index.js';

/** What runc would have been handed, captured at the moment of exec. */
export interface ExecRecord {
  path: string;
  argv: string[];
  /** config.json as runc would read it (undefined when the bundle has none). */
  config: string | undefined;
  /** plan.json of the container's hyperbox state at that moment, if any. */
  plan: Record<string, unknown> | undefined;
}

/** A mount primitive the CLI called, in call order. */
export type MountRecord =
  | { op: 'mountErofs'; image: string; target: string; forceLoop: boolean }
  | { op: 'mountOverlay'; lower: string; upper: string; work: string; target: string }
  | { op: 'unmount'; target: string; detach: boolean }
  | { op: 'loopDetach'; dev: string };

/** Thrown by the fake execRunc so the CLI unwinds like a failed exec would. */
export class FakeExec extends Error {}

export function fakeNative(opts: { configDir: string; bundle?: string }) {
  const execs: ExecRecord[] = [];
  const watchers: { launcher: string; runcState: string; stateDir: string; instance: string; env: string[] }[] = [];
  const mounts: MountRecord[] = [];
  // Targets the fake has "mounted", so unmount answers like the kernel would.
  const mounted = new Set<string>();
  const nat: Native = {
    findRunc: () => '/fake/runc',
    configDir: () => opts.configDir,
    execRunc(path, argv) {
      const cfg = opts.bundle && existsSync(join(opts.bundle, 'config.json')) ? readFileSync(join(opts.bundle, 'config.json'), 'utf8') : undefined;
      const last = watchers.at(-1);
      const planPath = last && join(last.stateDir, 'plan.json');
      const plan = planPath && existsSync(planPath) ? (JSON.parse(readFileSync(planPath, 'utf8')) as Record<string, unknown>) : undefined;
      execs.push({ path, argv, config: cfg, plan });
      throw new FakeExec('exec (fake)');
    },
    spawnRestoreWatcher(launcher, runcState, stateDir, instance, env) {
      watchers.push({ launcher, runcState, stateDir, instance, env });
    },
    flock() {
      // one process: nothing to exclude
    },
    // The recorder and libseccomp are exercised for real in test/native and the integration tests.
    recorderTrack() {},
    recorderRead: () => undefined,
    recorderUntrack: () => 0,
    recorderTracked: () => [],
    recorderLatency: () => [],
    recorderNetAttach() {},
    seccompResolve: () => undefined,
    seccompNumber: () => undefined,
    seccompNativeArch: () => 'SCMP_ARCH_X86_64',
    seccompCompile: () => ({ instructions: 0 }),
    // Mounts are recorded, never made: test/native/mount.test.ts exercises the kernel.
    mountErofs(image, target, forceLoop) {
      mounts.push({ op: 'mountErofs', image, target, forceLoop });
      mounted.add(target);
      return null;
    },
    mountOverlay(lower, upper, work, target) {
      mounts.push({ op: 'mountOverlay', lower, upper, work, target });
      mounted.add(target);
    },
    unmount(target, detach) {
      mounts.push({ op: 'unmount', target, detach });
      return mounted.delete(target);
    },
    loopBackingFile: () => null,
    loopDetach(dev) {
      mounts.push({ op: 'loopDetach', dev });
    },
    // PSI triggers are exercised for real in test/native/psi.test.ts.
    psiTriggerOpen: () => -1,
    psiTriggerClose() {},
    pollPressure: async () => [],
    POLLPRI: 2,
    POLLERR: 8,
  };
  return { nat, execs, watchers, mounts };
}
