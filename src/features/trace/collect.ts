/**
 * The hooks' side of tracing: createRuntime has the recorder track the
 * container's cgroup v2 (and attaches the network counters to it); poststop
 * takes the final reading, stops tracking, writes the JSON summary and hands
 * the final OTLP to the exporter. Neither ever fails the container: what
 * cannot be traced is said once, in a warning.
 */
import { hostname } from 'node:os';
import { reasonOf } from '../../errors.js';
import { containerCgroup2 } from '../../kernel/cgroup.js';
import { netAttach, recorderPinDir, trackCgroup, untrackCgroup } from '../../kernel/recorder.js';
import { RECORDER_FLAGS, type Native } from '../../native/index.js';
import { readFeatureState, writeFeatureState } from '../../oci/state.js';
import type { HookContext } from '../types.js';
import { enqueueFinal, ensureExporter, registerExport, unregisterExport } from './exporter.js';
import type { TraceKind, TraceOptions } from './index.js';
import { metricsRequest, tracesRequest } from './otlp.js';
import { nowUnixNano, summarize, takeSample, type TracedContainer } from './sample.js';
import { writeSummary } from './store.js';

/** What createRuntime leaves for poststop (and for `trace ID`) in the container's state dir. */
export type TraceState = TracedContainer;
const TRACE_STATE = 'trace.json';

export function readTraceState(stateDir: string): TraceState | undefined {
  return readFeatureState<TraceState>(stateDir, TRACE_STATE);
}

/** The recorder flags a request needs. */
export function flagsOf(what: readonly TraceKind[]): number {
  let flags = 0;
  if (what.includes('syscalls')) flags |= RECORDER_FLAGS.syscalls;
  if (what.includes('net')) flags |= RECORDER_FLAGS.net;
  if (what.includes('exec')) flags |= RECORDER_FLAGS.exec;
  return flags;
}

/** createRuntime: start recording the container's own cgroup v2. */
export function startTracing(nat: Native, ctx: HookContext<TraceOptions>): void {
  const id = ctx.plan.id;
  const untraced = (why: unknown) => ctx.log.warn(`hyperbox-runc: trace: container ${id} runs untraced: ${reasonOf(why)}`);
  const pid = ctx.state?.pid;
  if (!pid) return untraced('runc gave no container pid at createRuntime');
  let cgroup;
  try {
    cgroup = containerCgroup2(pid);
  } catch (err) {
    return untraced(err);
  }
  const what = ctx.options.what;
  const state: TraceState = { containerId: id, cgroupId: cgroup.id.toString(), what, startUnixNano: nowUnixNano().toString() };
  // Written before tracking: a poststop after a failure here must find what to untrack.
  writeFeatureState(ctx.stateDir, TRACE_STATE, state);
  try {
    trackCgroup(nat, cgroup.id, flagsOf(what));
  } catch (err) {
    return untraced(err);
  }
  if (what.includes('net')) {
    try {
      netAttach(nat, cgroup.id, cgroup.dir);
    } catch (err) {
      ctx.log.warn(`hyperbox-runc: trace: container ${id} is traced without network counters: ${reasonOf(err)}`);
    }
  }
  if (ctx.options.otlp) {
    try {
      registerExport({ ...state, otlp: ctx.options.otlp, intervalMs: ctx.options.intervalMs, hostName: hostname() });
      ensureExporter(nat);
    } catch (err) {
      ctx.log.warn(`hyperbox-runc: trace: container ${id} is traced without OTLP export: ${reasonOf(err)}`);
    }
  }
}

/** poststop (or gc): the final reading, then the recorder lets go of the cgroup. */
export function finishTracing(nat: Native, ctx: HookContext<TraceOptions>): void {
  const state = readTraceState(ctx.stateDir);
  if (!state) return; // never got as far as being tracked
  let sample;
  try {
    sample = takeSample(nat, recorderPinDir(), state, true);
  } finally {
    unregisterExport(state.cgroupId);
    untrackCgroup(nat, BigInt(state.cgroupId), flagsOf(state.what));
  }
  if (!sample) return; // tracking had failed at createRuntime, and said so then
  const host = hostname();
  if (ctx.options.otlp) {
    enqueueFinal({
      containerId: state.containerId,
      otlp: ctx.options.otlp,
      metrics: JSON.stringify(metricsRequest(sample, host)),
      traces: JSON.stringify(tracesRequest(sample, host)),
    });
    ensureExporter(nat);
  }
  // Last: a store that cannot be written must not cost the collector its report.
  writeSummary(summarize(sample, host));
}
