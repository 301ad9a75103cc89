/**
 * The host-wide syscall recorder (addon/bpf/recorder.bpf.c), pinned under
 * /sys/fs/bpf/hyperbox and shared by every container that asks for it
 * (seccomp learning and telemetry). Tracking and untracking go through one
 * flock so that the last container to leave detaches it without racing a new
 * one attaching.
 */
import { join } from 'node:path';
import { RECORDER_FLAGS, type Native, type RecorderSnapshot } from '../native/index.js';
import { stateBase } from '../oci/state.js';
import { withLock } from '../store/lock.js';

/** Entry flag: learn this cgroup's syscalls (for a seccomp profile). */
export const TRACK_LEARN = RECORDER_FLAGS.learn;

/** $HYPERBOX_BPF_PIN or /sys/fs/bpf/hyperbox. */
export function recorderPinDir(): string {
  return process.env.HYPERBOX_BPF_PIN || '/sys/fs/bpf/hyperbox';
}

function withRecorderLock<T>(nat: Native, fn: () => T): T {
  return withLock(nat, join(stateBase(), 'recorder.lock'), fn);
}

/** Starts recording a cgroup, or adds flags to it (attaching the recorder if nothing else is using it). */
export function trackCgroup(nat: Native, cgroupId: bigint, flags: number): void {
  withRecorderLock(nat, () => nat.recorderTrack(recorderPinDir(), cgroupId, flags));
}

/** Counts the tracked cgroup's network traffic (it must be tracked with the net flag). */
export function netAttach(nat: Native, cgroupId: bigint, cgroupDir: string): void {
  withRecorderLock(nat, () => nat.recorderNetAttach(recorderPinDir(), cgroupId, cgroupDir));
}

/**
 * Takes what was recorded for a cgroup and clears `flags` of its entry; the
 * entry goes when no flag is left, the recorder when no entry is.
 */
export function untrackCgroup(nat: Native, cgroupId: bigint, flags: number): RecorderSnapshot | undefined {
  return withRecorderLock(nat, () => {
    const snapshot = nat.recorderRead(recorderPinDir(), cgroupId);
    nat.recorderUntrack(recorderPinDir(), cgroupId, flags);
    return snapshot;
  });
}
