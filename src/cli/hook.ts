/** `hyperbox-runc hook <stage> --state-dir DIR`: runc calls this with the OCI state on stdin. */
import { readFileSync } from 'node:fs';
import { ociStateSchema, type OciState } from '../../config-schema/state.js';
import { HyperboxError, reasonOf } from '../errors.js';
import type { AnyFeature } from '../features/types.js';
import type { Native } from '../native/index.js';
import { FEATURE_STAGES, type FeatureStage } from '../oci/hooks.js';
import { readPlan } from '../oci/state.js';
import type { Logger } from './log.js';
import { releaseContainer } from './release.js';

function readState(): OciState {
  let text: string;
  try {
    text = readFileSync(0, 'utf8');
  } catch (err) {
    throw new HyperboxError('E_HOOK', `cannot read the OCI state on stdin: ${reasonOf(err)}`, { cause: err });
  }
  try {
    return ociStateSchema.parse(JSON.parse(text));
  } catch (err) {
    throw new HyperboxError('E_HOOK', 'stdin does not hold an OCI state (hooks are run by runc, not by hand)', { cause: err });
  }
}

/** Dispatches one hook stage to the features in the container's plan. */
export async function runHook(nat: Native, stage: string, stateDir: string, features: readonly AnyFeature[], log: Logger): Promise<number> {
  if (!(FEATURE_STAGES as readonly string[]).includes(stage)) {
    throw new HyperboxError('E_USAGE', `unknown hook stage ${stage}: expected ${FEATURE_STAGES.join(', ')}`);
  }
  const state = readState();
  if (stage === 'poststop') return (await releaseContainer(nat, stateDir, features, log, state)) ? 0 : 1;
  const plan = readPlan(stateDir);
  if (plan.id !== state.id) throw new HyperboxError('E_HOOK', `state dir ${stateDir} belongs to ${plan.id}, not ${state.id}`);
  for (const [name, options] of Object.entries(plan.features)) {
    const feature = features.find((f) => f.name === name);
    if (!feature) throw new HyperboxError('E_HOOK', `container ${plan.id} was planned with feature ${name}, which this hyperbox-runc does not have`);
    const handler = feature.hooks?.[stage as FeatureStage];
    if (!handler) continue;
    try {
      await handler({ stage: stage as FeatureStage, state, options, plan, stateDir, log });
    } catch (err) {
      throw new HyperboxError('E_HOOK', `${name} (${stage}): ${reasonOf(err)}`, { cause: err });
    }
  }
  return 0;
}
