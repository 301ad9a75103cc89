/** The hook entries hyperbox puts in config.json so runc calls it back at createRuntime/poststart/poststop. */
import { fileURLToPath } from 'node:url';
import { isJsonObject, type JsonObject, type JsonValue } from './json.js';

/** Stages a feature can act in. */
export const FEATURE_STAGES = ['createRuntime', 'poststart', 'poststop'] as const;
export type FeatureStage = (typeof FEATURE_STAGES)[number];

/** The launcher's absolute path: runc runs hooks with no PATH. */
export function launcherPath(): string {
  return process.env.HYPERBOX_LAUNCHER_EXE || fileURLToPath(new URL('../../../build/hyperbox-runc', import.meta.url));
}

/** hyperbox's HYPERBOX_* settings travel into hooks, whose environment runc empties. */
export function hyperboxEnvironment(): string[] {
  return Object.entries(process.env)
    .filter(([k, v]) => k.startsWith('HYPERBOX_') && !k.startsWith('HYPERBOX_LAUNCHER_') && v !== undefined)
    .map(([k, v]) => `${k}=${v}`);
}

function isOurs(entry: JsonValue): boolean {
  if (!isJsonObject(entry)) return false;
  const args = entry.args;
  return Array.isArray(args) && args[0] === 'hyperbox-runc' && args[1] === 'hook';
}

/**
 * Adds one hyperbox entry per stage after the caller's own (dropping any left
 * by an earlier hyperbox create of the same bundle, so re-creating is idempotent).
 */
export function injectHooks(spec: JsonObject, stages: readonly FeatureStage[], stateDir: string): void {
  if (!isJsonObject(spec.hooks)) spec.hooks = {};
  const hooks = spec.hooks as JsonObject;
  for (const stage of stages) {
    const existing = Array.isArray(hooks[stage]) ? (hooks[stage] as JsonValue[]).filter((e) => !isOurs(e)) : [];
    const entry: JsonObject = { path: launcherPath(), args: ['hyperbox-runc', 'hook', stage, '--state-dir', stateDir] };
    const env = hyperboxEnvironment();
    if (env.length) entry.env = env;
    existing.push(entry);
    hooks[stage] = existing;
  }
}
