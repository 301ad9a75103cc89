/**
 * create/run: load config.json, plan, let the features modify it, write it
 * atomically only if it changed, and become runc with the caller's argv. If
 * runc then leaves no container, the restore watcher has `gc` put config.json
 * back; if anything fails before runc runs, it is put back here.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { isatty } from 'node:tty';
import { policySchema, type Policy } from '../../config-schema/policy.js';
import type { PlanRecord } from '../../config-schema/plan.js';
import { HyperboxError, reasonOf } from '../errors.js';
import { asksHyperbox, ANNOTATION_PREFIX, flagAnnotations, planFeatures } from '../features/registry.js';
import type { AnyFeature } from '../features/types.js';
import type { Native } from '../native/index.js';
import { loadBundle, renderBundle, validateSpec, writeConfig } from '../oci/bundle.js';
import { hyperboxEnvironment, injectHooks, launcherPath, type FeatureStage } from '../oci/hooks.js';
import { isJsonObject, type JsonObject } from '../oci/json.js';
import { claimState, containerStateDir, generatedBundlesDir, isValidContainerId, lockRoot, newInstance, rootKey, runcStatePath, writeContainerState } from '../oci/state.js';
import { flagValue, argvForRunc, type ParsedArgv } from './grammar.js';
import type { Logger } from './log.js';
import { execRunc, runcPath } from './runtime.js';

/** Reads <config dir>/policy.json when there is one. */
export function loadPolicy(configDir: string): Policy | undefined {
  const path = resolve(configDir, 'policy.json');
  if (!existsSync(path)) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new HyperboxError('E_POLICY', `${path} is not valid JSON (${reasonOf(err)}); fix or remove it`, { cause: err });
  }
  const checked = policySchema.safeParse(raw);
  if (!checked.success) {
    const issue = checked.error.issues[0]!;
    throw new HyperboxError('E_POLICY', `${path}: ${issue.path.join('.') || '(top level)'}: ${issue.message}`);
  }
  return checked.data;
}

function stringAnnotations(spec: JsonObject): Record<string, string> {
  const out: Record<string, string> = {};
  if (isJsonObject(spec.annotations)) {
    for (const [k, v] of Object.entries(spec.annotations)) if (typeof v === 'string') out[k] = v;
  }
  return out;
}

/**
 * runc's default spec in a bundle of hyperbox's own, for a request that brings
 * its rootfs (`run --image X ID` with no config.json): a terminal only when runc
 * can have one (a console socket, or a foreground run on a terminal).
 */
function generateBundle(runc: string, parsed: ParsedArgv, id: string): string {
  const dir = join(generatedBundlesDir(), `${rootKey(resolve(parsed.globals.root))}-${id}-${newInstance()}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  try {
    execFileSync(runc, ['spec', '--bundle', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
    const path = join(dir, 'config.json');
    const spec = JSON.parse(readFileSync(path, 'utf8')) as JsonObject;
    const consoleSocket = flagValue(parsed.flags, 'console-socket');
    const detach = flagValue(parsed.flags, 'detach') === true;
    const terminal = typeof consoleSocket === 'string' || (parsed.command === 'run' && !detach && isatty(0));
    if (isJsonObject(spec.process)) spec.process.terminal = terminal;
    if (isJsonObject(spec.root)) spec.root.readonly = false;
    writeFileSync(path, JSON.stringify(spec, null, '\t'), { mode: 0o600 });
    return dir;
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw new HyperboxError('E_BUNDLE', `cannot write a default bundle with \`${runc} spec\`: ${reasonOf(err)}`, { cause: err });
  }
}

/** Runs create or run; returns only by throwing (success is an exec into runc). */
export async function createOrRun(parsed: ParsedArgv, features: readonly AnyFeature[], nat: Native, log: Logger): Promise<never> {
  const runc = runcPath(nat);
  let runcArgv = argvForRunc(parsed);
  let generated: string | undefined;
  const passThrough = (): never => {
    if (generated) rmSync(generated, { recursive: true, force: true });
    return execRunc(nat, runc, runcArgv);
  };
  const id = parsed.positionals[0];
  // Anything runc itself will refuse (no id, a bad id, a flag it does not know) is runc's to report.
  const hasExtraFlags = parsed.flags.some((f) => f.extra);
  if (id === undefined || !isValidContainerId(id) || (parsed.unknown.length > 0 && !hasExtraFlags)) return passThrough();

  const bundleFlag = flagValue(parsed.flags, 'bundle');
  let bundleDir = resolve(typeof bundleFlag === 'string' && bundleFlag ? bundleFlag : '.');
  const policy = loadPolicy(nat.configDir());
  if (!existsSync(resolve(bundleDir, 'config.json')) && !hasExtraFlags) return passThrough();
  const fromFlags = flagAnnotations(parsed.flags, features);
  if (!existsSync(resolve(bundleDir, 'config.json')) && features.some((f) => f.makesBundle?.(fromFlags))) {
    generated = generateBundle(runc, parsed, id);
    bundleDir = generated;
    runcArgv = [...runcArgv.slice(0, parsed.commandIndex + 1), '--bundle', generated, ...runcArgv.slice(parsed.commandIndex + 1)];
  }
  let bundle;
  try {
    bundle = loadBundle(bundleDir);
  } catch (err) {
    if (generated) rmSync(generated, { recursive: true, force: true });
    throw err;
  }
  const annotations = { ...(policy?.defaults ?? {}), ...stringAnnotations(bundle.spec), ...fromFlags };
  if (!asksHyperbox(annotations)) return passThrough();

  const command = parsed.command === 'run' ? 'run' : 'create';
  let planned;
  try {
    planned = planFeatures(features, { command, id, bundleDir, annotations, fromFlags, spec: bundle.spec });
  } catch (err) {
    if (generated) rmSync(generated, { recursive: true, force: true });
    throw err;
  }
  if (planned.size === 0) return passThrough();

  const runcRoot = resolve(parsed.globals.root);
  const stateDir = containerStateDir(runcRoot, id);
  const record: PlanRecord = {
    version: 1,
    id,
    instance: newInstance(),
    runcRoot,
    bundle: bundleDir,
    configPath: bundle.configPath,
    createdAt: new Date().toISOString(),
    features: Object.fromEntries([...planned].map(([f, o]) => [f.name, o])),
  };
  // Under the root lock: is the id free, and is there state left by a crash to claim?
  let stale: string | undefined;
  const unlock = lockRoot(nat, stateDir);
  try {
    if (existsSync(runcStatePath(runcRoot, id))) return passThrough(); // runc will say the id is taken
    stale = claimState(stateDir);
    writeContainerState(stateDir, record, bundle.original, undefined);
  } finally {
    unlock();
  }
  if (stale) {
    const { releaseClaimed } = await import('./release.js'); // rare: loaded only then
    await releaseClaimed(stale, features, log, undefined);
  }

  // The whole request is written into the spec, so hooks and anyone reading the
  // container's annotations later see what was asked, whichever channel it came by.
  const hyperboxKeys = Object.fromEntries(Object.entries(annotations).filter(([k]) => k.startsWith(ANNOTATION_PREFIX)));
  bundle.spec.annotations = { ...(isJsonObject(bundle.spec.annotations) ? bundle.spec.annotations : {}), ...hyperboxKeys };

  let wroteConfig = false;
  try {
    for (const [feature, options] of planned) {
      await feature.modify?.(bundle.spec, options, { id, bundleDir, runcRoot, stateDir, log });
    }
    const stages = new Set<FeatureStage>(['poststop']);
    for (const [feature, options] of planned) {
      for (const stage of feature.stages?.(options) ?? (Object.keys(feature.hooks ?? {}) as FeatureStage[])) stages.add(stage);
    }
    injectHooks(bundle.spec, [...stages], stateDir);
    validateSpec(bundle);
    const bytes = renderBundle(bundle);
    writeContainerState(stateDir, record, bundle.original, bytes);
    if (!bytes.equals(bundle.original)) {
      writeConfig(bundle, bytes);
      wroteConfig = true;
    }
    nat.spawnRestoreWatcher(launcherPath(), runcStatePath(runcRoot, id), stateDir, record.instance, hyperboxEnvironment());
    log.debug(`hyperbox-runc: ${command} ${id} with ${[...planned.keys()].map((f) => f.name).join(', ')}`);
    return execRunc(nat, runc, runcArgv);
  } catch (err) {
    if (wroteConfig) writeConfig(bundle, bundle.original);
    // The features' own release too: a modify may have attached something (a mount) before the failure.
    const { releaseContainer } = await import('./release.js');
    await releaseContainer(nat, stateDir, features, log, undefined, record.instance);
    throw err;
  }
}
