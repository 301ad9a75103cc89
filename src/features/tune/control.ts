/**
 * The control law, Senpai-style and free of I/O: from the stall a container
 * suffered over the last period, the next limit the tuner steers it to.
 *
 * Under the target the limit is probed down by a step that shrinks with the
 * square of how close the stall is to the target (at no stall, the full
 * probe step); over it the limit backs off by a step that grows with the
 * square of the overshoot, ten times the probe's gain, so giving room back is
 * always much faster than taking it. A PSI trigger that fired counts as being
 * over the target at least by half.
 *
 * The law assumes the stall is the tuner's doing. It is not while a memory
 * budget the container shares (an ancestor cgroup's limit) is full: then the
 * kernel reclaims from every container under it whatever the tuner does, and
 * backing off would only let a page-cache streamer keep the budget full. So
 * while the budget is hit the tuner takes each container's inactive page
 * cache, pages read once and not since, at once: the cold pages go before the
 * kernel has to take anyone's hot ones.
 */

export interface ControlConfig {
  /** The stall the loop steers to, µs per second. */
  targetUs: number;
  /** Largest share of the limit one probe step takes (at no stall at all). */
  probeStep: number;
  /** Backoff share at the target; grows with the square of stall/target. */
  backoffGain: number;
  /** Largest share one backoff step adds (1 = the limit may double). */
  maxBackoff: number;
  /** Bytes kept above the unreclaimable memory. */
  floorBytes: number;
}

export const DEFAULT_CONTROL: Omit<ControlConfig, 'targetUs'> = {
  probeStep: 0.05,
  backoffGain: 0.25,
  maxBackoff: 1,
  floorBytes: 16 * 1024 * 1024,
};

export interface ControlInput {
  /** The stall over the last period, µs per second. */
  stallUs: number;
  triggered: boolean;
  current: number;
  unreclaimable: number;
  /** The previous limit; undefined at the first step. */
  limit: number | undefined;
  /** tune.min (0 when not given). */
  min: number;
  /** min(tune.max, the caller's own limit, the host's memory). */
  ceiling: number;
  /** A shared budget (an ancestor's limit) was hit during the period: the stall is not the tuner's. */
  budgetHit?: boolean;
  /** Page cache on the inactive list, bytes (what a full budget makes the tuner take). */
  inactiveFile?: number;
}

export interface ControlStep {
  limit: number;
  floor: number;
  /** Bytes above the new limit: what to reclaim now (0: nothing). */
  excess: number;
  action: 'start' | 'probe' | 'backoff' | 'hold';
}

/** Reclaims smaller than this are not worth a write. */
export const MIN_RECLAIM = 256 * 1024;

export function controlStep(cfg: ControlConfig, input: ControlInput): ControlStep {
  const ceiling = Math.max(1, input.ceiling);
  const floor = Math.min(ceiling, Math.max(input.min, input.unreclaimable + cfg.floorBytes));
  const clamp = (n: number) => Math.round(Math.min(ceiling, Math.max(floor, n)));
  const excessOver = (limit: number) => (input.current - limit >= MIN_RECLAIM ? input.current - limit : 0);

  if (input.limit === undefined) {
    const limit = clamp(input.current);
    return { limit, floor, excess: excessOver(limit), action: 'start' };
  }
  if (input.budgetHit) {
    const limit = clamp(input.current - (input.inactiveFile ?? 0));
    const excess = excessOver(limit);
    return { limit, floor, excess, action: excess > 0 ? 'probe' : 'hold' };
  }
  // Counters that went backwards (a cgroup re-created at the same path) say nothing: no stall.
  const ratio = Math.max(0, input.stallUs) / cfg.targetUs;
  if (ratio > 1 || input.triggered) {
    const over = Math.max(ratio, input.triggered ? 1.5 : 0);
    const share = Math.min(cfg.maxBackoff, cfg.backoffGain * over * over);
    const limit = clamp(Math.max(input.limit, input.current) * (1 + share));
    return { limit, floor, excess: excessOver(limit), action: 'backoff' };
  }
  const under = 1 - ratio;
  const share = cfg.probeStep * under * under;
  const limit = clamp(Math.min(input.limit, input.current) * (1 - share));
  const excess = excessOver(limit);
  return { limit, floor, excess, action: excess > 0 ? 'probe' : 'hold' };
}

/**
 * The stall that counts, µs per second: all of the memory stall and, while
 * it shows thrashing, the share of the io stall that was refaults (pages read
 * back after reclaim took them). A streamer's refaults of pages it would not
 * have kept anyway cost no memory stall, and its io stall is its own reading.
 */
export function effectiveStall(memUs: number, ioUs: number, refaultPages: number, pagesIn: number): number {
  if (memUs <= 0) return 0;
  if (refaultPages <= 0) return memUs;
  const share = pagesIn > 0 ? Math.min(1, refaultPages / pagesIn) : 1;
  // Both count the same waits at times: never more than all of the time.
  return Math.min(1e6, memUs + Math.max(0, ioUs) * share);
}
