/**
 * `hyperbox-runc tune daemon`: the host's one tuner. It tunes every
 * registered container with its own control loop (control.ts), waking at each
 * container's interval or at once when the container's PSI trigger fires, and
 * exits when nothing is registered (unless --persist, for a systemd unit).
 *
 * A crash must never leave a container squeezed: before a limit is lowered
 * the original goes to the container's state file, and a tuner that starts
 * puts back every limit such a journal names before anything else.
 */
import { totalmem } from 'node:os';
import type { Logger } from '../../cli/log.js';
import { reasonOf } from '../../errors.js';
import type { Native } from '../../native/index.js';
import { MemoryCgroup, NO_LIMIT, realIo, restore, type CgroupIo, type Lowered } from './cgroupfs.js';
import { controlStep, DEFAULT_CONTROL, effectiveStall, type ControlConfig } from './control.js';
import { appendSamples, readHistoryHeader, removeHistory, type TuneSample } from './history.js';
import {
  historyPath,
  pruneHistories,
  readRegistration,
  readTunerState,
  registeredKeys,
  registrationId,
  removeTunerState,
  stateKeys,
  tunerDaemon,
  unregister,
  writeTunerState,
  type TuneRegistration,
  type TuneState,
} from './store.js';

export interface TunerOptions {
  /** Time between two steps of one container, ms. */
  intervalMs: number;
  /** PSI trigger window, µs (the kernel takes 2 s multiples without CAP_SYS_RESOURCE). */
  windowUs: number;
  /** Keep running when nothing is registered (a systemd service). */
  persist: boolean;
  log: Logger;
  io?: CgroupIo;
  control?: Partial<Omit<ControlConfig, 'targetUs'>>;
  /** Exit after this long regardless (tests), ms. */
  lifetimeMs?: number;
  /** Hold each lowered limit this long (tests: a window in which to kill the tuner), ms. */
  holdMs?: number;
}

export const DEFAULT_WINDOW_US = 2_000_000;
/** How often the registrations are looked at, ms. */
const SYNC_MS = 250;
/** At most this many reclaims at once (each may hold a libuv thread while the kernel reclaims). */
const MAX_RECLAIMS = 2;
/** Ended histories are pruned this often, ms. */
const PRUNE_MS = 60_000;
/** A container that holds still with no stall is stepped less often, up to this many intervals (its trigger still answers at once). */
const IDLE_STRETCH = 5;
/** A container that grows fast is stepped more often, down to this interval, ms. */
const MIN_INTERVAL_MS = 50;
/** Growth within one step, as a share of the limit, that counts as fast. */
const FAST_GROWTH = 0.1;
/** Steady samples are written to the history at most this often, ms. */
const HISTORY_EVERY_MS = 5000;

interface Counters {
  at: number;
  current: number;
  budgetHits: number;
  memUs: number;
  ioUs: number;
  refaults: number;
  pagesIn: number;
}

interface Tracked {
  key: string;
  reg: TuneRegistration;
  cg: MemoryCgroup;
  /** Ancestor cgroups with a limit of their own: budgets shared with other containers. */
  budgets: string[];
  state: TuneState;
  trigger?: number;
  last?: Counters;
  due: number;
  /** This container's interval now: shorter while it grows fast. */
  intervalMs: number;
  busy: boolean;
  /** memory current right after the last reclaim: what growth is measured from. */
  afterReclaim?: number;
  triggered: boolean;
  pending: TuneSample[];
  lastHistoryAt: number;
  savedLimit?: number;
  savedGiven: number;
}

const monotonicMs = () => Number(process.hrtime.bigint() / 1_000_000n);

export class Tuner {
  private readonly tracked = new Map<string, Tracked>();
  private readonly byFd = new Map<number, Tracked>();
  private readonly io: CgroupIo;
  private readonly control: Omit<ControlConfig, 'targetUs'>;
  private reclaiming = 0;
  /** Reclaims in flight: the loop wakes when one ends rather than at its next poll. */
  private readonly inflight = new Set<Promise<void>>();
  private stopping = false;
  private nextSync = 0;
  private readonly warned = new Set<string>();
  private readonly hostMemory = totalmem();
  /** Registration files as last seen (inode and mtime): only a changed one is read again. */
  private readonly seen = new Map<string, string>();
  private nextPrune = 0;

  constructor(
    private readonly nat: Native,
    private readonly opts: TunerOptions,
  ) {
    this.io = opts.io ?? realIo;
    this.control = { ...DEFAULT_CONTROL, ...opts.control };
  }

  stop(): void {
    this.stopping = true;
  }

  private warnOnce(key: string, msg: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.opts.log.warn(`hyperbox-runc: tune: ${msg}`);
  }

  /** Puts back every limit a journal says is lowered (a tuner that died mid-step). */
  async restoreAll(): Promise<number> {
    let restored = 0;
    for (const key of stateKeys()) {
      const state = readTunerState(key);
      const lowered = state?.lowered;
      if (!state || !lowered) continue;
      try {
        if (await restore(this.io, lowered)) restored++;
        delete state.lowered;
        // The state of a container that is no longer registered has nothing left to say.
        if (readRegistration(key)) writeTunerState(key, state);
        else removeTunerState(key);
      } catch (err) {
        this.opts.log.warn(`hyperbox-runc: tune: cannot restore ${lowered.path} to ${lowered.original}: ${reasonOf(err)}`);
      }
    }
    return restored;
  }

  private journal(t: Tracked) {
    return {
      begin: (entry: Lowered) => {
        t.state.lowered = entry;
        writeTunerState(t.key, t.state);
      },
      end: () => {
        delete t.state.lowered;
        writeTunerState(t.key, t.state);
      },
    };
  }

  /** Starts tracking new registrations and drops the ones that went. */
  private sync(now: number): void {
    const keys = new Set(registeredKeys());
    for (const key of keys) {
      const id = registrationId(key);
      if (id !== undefined && this.seen.get(key) === id && this.tracked.has(key)) continue;
      const reg = readRegistration(key);
      if (!reg) continue;
      if (id !== undefined) this.seen.set(key, id);
      const known = this.tracked.get(key);
      if (known && known.reg.instance === reg.instance) continue;
      if (known) this.drop(known, false);
      this.track(key, reg, now);
    }
    for (const t of this.tracked.values()) if (!keys.has(t.key)) this.drop(t, false);
    for (const key of this.seen.keys()) if (!keys.has(key)) this.seen.delete(key);
    if (now >= this.nextPrune) {
      pruneHistories(new Set(this.tracked.keys()));
      this.nextPrune = now + PRUNE_MS;
    }
  }

  private track(key: string, reg: TuneRegistration, now: number): void {
    const cg = new MemoryCgroup(reg, this.io, this.opts.holdMs);
    const old = readTunerState(key);
    const resumed = old !== undefined && old.instance === reg.instance;
    const state: TuneState = resumed ? { ...old } : { instance: reg.instance, given: 0, updatedAt: Date.now() };
    // A new container with an old one's id starts a history of its own.
    if (!resumed && readHistoryHeader(historyPath(key))?.startedAt !== reg.registeredAt) removeHistory(historyPath(key));
    // A new container steps often at first: it may fill a shared budget within its first second.
    const t: Tracked = { key, reg, cg, budgets: cg.budgetAncestors(), state, due: now, intervalMs: MIN_INTERVAL_MS, busy: false, triggered: false, pending: [], lastHistoryAt: 0, savedLimit: state.limit, savedGiven: state.given };
    const stallPerWindow = Math.max(1, Math.round((reg.targetUs * this.opts.windowUs) / 1e6));
    try {
      t.trigger = this.nat.psiTriggerOpen(`${reg.pressureDir}/memory.pressure`, stallPerWindow, this.opts.windowUs);
      this.byFd.set(t.trigger, t);
    } catch (err) {
      this.warnOnce(`trigger:${key}`, `container ${reg.containerId}: no PSI trigger (${reasonOf(err)}); its pressure is read every ${this.opts.intervalMs} ms instead`);
    }
    this.tracked.set(key, t);
  }

  /** Stops tuning a container; `gone`: its cgroup no longer exists, so its registration goes too. */
  private drop(t: Tracked, gone: boolean): void {
    this.tracked.delete(t.key);
    if (t.trigger !== undefined) {
      this.byFd.delete(t.trigger);
      this.nat.psiTriggerClose(t.trigger);
    }
    this.flushHistory(t);
    if (gone) unregister(t.key, t.reg.instance);
    // A lowered limit is put back by the step that lowered it; its journal outlives it until then.
    if (!t.busy && !t.state.lowered) removeTunerState(t.key);
  }

  private flushHistory(t: Tracked): void {
    if (t.pending.length === 0) return;
    try {
      appendSamples(historyPath(t.key), { containerId: t.reg.containerId, targetUs: t.reg.targetUs, startedAt: t.reg.registeredAt }, t.pending);
    } catch (err) {
      this.warnOnce('history', `cannot write the history: ${reasonOf(err)}`);
    }
    t.pending = [];
    t.lastHistoryAt = monotonicMs();
  }

  private isGone(err: unknown): boolean {
    // A HyperboxError carries the errno in its cause.
    const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
    const code = e.cause?.code ?? e.code;
    return code === 'ENOENT' || code === 'ENODEV';
  }

  /** One control step for one container. */
  private step(t: Tracked, now: number): void {
    const triggered = t.triggered;
    t.triggered = false;
    let mem, memP, ioP;
    try {
      mem = t.cg.readMemory();
      memP = t.cg.readPressure('memory');
      ioP = t.cg.readPressure('io');
    } catch (err) {
      if (this.isGone(err)) return this.drop(t, true);
      this.warnOnce(`read:${t.key}`, `cannot read container ${t.reg.containerId}'s cgroup: ${reasonOf(err)}`);
      return;
    }
    const counters: Counters = { at: now, current: mem.current, budgetHits: t.cg.budgetHits(t.budgets), memUs: memP.totalUs, ioUs: ioP.totalUs, refaults: mem.refaults, pagesIn: mem.pagesIn };
    const last = t.last;
    t.last = counters;
    let memUs = 0;
    let ioUs = 0;
    let stallUs = 0;
    if (last) {
      const secs = Math.max(0.001, (now - last.at) / 1000);
      memUs = (counters.memUs - last.memUs) / secs;
      ioUs = (counters.ioUs - last.ioUs) / secs;
      stallUs = effectiveStall(memUs, ioUs, counters.refaults - last.refaults, counters.pagesIn - last.pagesIn);
    }
    const budgetHit = last !== undefined && counters.budgetHits > last.budgetHits;
    // Page cache can fill faster than one step a second takes it back: step a fast grower (or
    // one whose shared budget is full) more often.
    const grown = last ? mem.current - (t.afterReclaim ?? last.current) : 0;
    const fast = budgetHit || (last !== undefined && t.state.limit !== undefined && grown > Math.max(this.control.floorBytes, t.state.limit * FAST_GROWTH));
    t.afterReclaim = undefined;
    const ceiling = Math.min(t.reg.max ?? NO_LIMIT, mem.limit, t.reg.callerLimit ?? NO_LIMIT, this.hostMemory);
    const cfg: ControlConfig = { ...this.control, targetUs: t.reg.targetUs };
    // The first step (and the first after a restart) only takes the counters' baseline.
    const s = controlStep(cfg, {
      stallUs,
      triggered,
      current: mem.current,
      unreclaimable: mem.unreclaimable,
      inactiveFile: mem.inactiveFile,
      limit: last ? t.state.limit : undefined,
      min: t.reg.min,
      ceiling,
      budgetHit,
    });
    t.state.limit = s.limit;
    if (last) {
      // One that holds still with no stall is stepped less often: its trigger still answers at once.
      const still = !fast && s.action === 'hold' && stallUs <= 0;
      const longest = still ? this.opts.intervalMs * IDLE_STRETCH : this.opts.intervalMs;
      t.intervalMs = fast ? Math.max(MIN_INTERVAL_MS, t.intervalMs / 2) : Math.min(longest, t.intervalMs * 2);
    }
    t.due = now + t.intervalMs;
    if (triggered) t.state.lastTrigger = Date.now();
    const sample: TuneSample = {
      t: Date.now(),
      memUs: Math.round(memUs),
      ioUs: Math.round(ioUs),
      stallUs: Math.round(stallUs),
      current: mem.current,
      limit: s.limit,
      floor: s.floor,
      ceiling: ceiling >= NO_LIMIT ? -1 : ceiling,
      given: t.state.given,
      action: last ? s.action : 'start',
      ...(triggered ? { triggered: true } : {}),
    };
    t.pending.push(sample);
    if (s.excess > 0 && last && this.reclaiming < MAX_RECLAIMS && !this.stopping) this.reclaim(t, s.limit);
    else this.save(t, sample);
  }

  private save(t: Tracked, sample: TuneSample): void {
    const changed = t.savedLimit === undefined || Math.abs((t.state.limit ?? 0) - t.savedLimit) > t.savedLimit * 0.01 || t.state.given !== t.savedGiven;
    if (changed || sample.triggered) {
      t.state.updatedAt = Date.now();
      writeTunerState(t.key, t.state);
      t.savedLimit = t.state.limit;
      t.savedGiven = t.state.given;
    }
    if (sample.action === 'backoff' || sample.triggered || monotonicMs() - t.lastHistoryAt >= HISTORY_EVERY_MS) this.flushHistory(t);
  }

  private reclaim(t: Tracked, target: number): void {
    t.busy = true;
    this.reclaiming++;
    const done: Promise<void> = t.cg
      .reclaimTo(target, this.journal(t))
      .then((r) => {
        t.state.given += r.reclaimed;
        t.afterReclaim = r.after;
        const last = t.pending.at(-1);
        if (last) last.given = t.state.given;
      })
      .catch((err) => {
        if (this.isGone(err)) return this.drop(t, true);
        this.warnOnce(`reclaim:${t.key}`, `cannot reclaim from container ${t.reg.containerId}: ${reasonOf(err)}`);
      })
      .finally(() => {
        t.busy = false;
        this.reclaiming--;
        this.inflight.delete(done);
        if (this.tracked.get(t.key) === t) {
          const last = t.pending.at(-1);
          if (last) this.save(t, last);
        } else if (!t.state.lowered) removeTunerState(t.key);
      });
    this.inflight.add(done);
  }

  private idle(): boolean {
    return this.tracked.size === 0 && this.reclaiming === 0 && registeredKeys().length === 0;
  }

  async run(): Promise<number> {
    const started = monotonicMs();
    const restored = await this.restoreAll();
    if (restored > 0) this.opts.log.warn(`hyperbox-runc: tune: put back ${restored} limit(s) a previous tuner had lowered`);
    for (;;) {
      const now = monotonicMs();
      if (this.opts.lifetimeMs !== undefined && now - started >= this.opts.lifetimeMs) this.stopping = true;
      if (this.stopping) {
        if (this.reclaiming === 0) break;
      } else {
        if (now >= this.nextSync) {
          this.sync(now);
          this.nextSync = now + SYNC_MS;
        }
        for (const t of this.tracked.values()) if (!t.busy && t.due <= now) this.step(t, now);
        if (!this.opts.persist && this.idle() && tunerDaemon().exitIfIdle(this.nat, () => this.idle())) return 0;
      }
      let wake = this.nextSync;
      for (const t of this.tracked.values()) if (!t.busy) wake = Math.min(wake, t.due);
      const timeout = Math.max(0, Math.min(SYNC_MS, wake - monotonicMs()));
      // A trigger stays pending until polled, so while a reclaim runs the loop waits for it
      // (or the timeout) and then only looks at the triggers.
      const waitForReclaim = this.inflight.size > 0;
      if (waitForReclaim && timeout > 0) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([...this.inflight, new Promise((r) => (timer = setTimeout(r, timeout)))]);
        clearTimeout(timer);
      }
      const events = await this.nat.pollPressure([...this.byFd.keys()], waitForReclaim ? 0 : timeout);
      for (const ev of events) {
        const t = this.byFd.get(ev.fd);
        if (!t) continue;
        if (ev.events & this.nat.POLLERR) {
          // The trigger's cgroup is gone; the next step finds out and drops the container.
          this.byFd.delete(ev.fd);
          this.nat.psiTriggerClose(ev.fd);
          t.trigger = undefined;
          t.due = 0;
        } else if (ev.events & this.nat.POLLPRI) {
          t.triggered = true;
          t.due = 0;
        }
      }
    }
    for (const t of [...this.tracked.values()]) {
      this.flushHistory(t);
      if (t.trigger !== undefined) this.nat.psiTriggerClose(t.trigger);
    }
    this.tracked.clear();
    tunerDaemon().release();
    return 0;
  }
}
