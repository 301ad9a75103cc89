/** Turns one request (policy + annotations + flags) into each feature's validated options. */
import { HyperboxError } from '../errors.js';
import type { FlagUse } from '../cli/grammar.js';
import type { AnyFeature, PlanInput } from './types.js';

export const ANNOTATION_PREFIX = 'io.hyperbox.';

/** Which feature owns an annotation key, if any. */
export function ownerOf(features: readonly AnyFeature[], key: string): AnyFeature | undefined {
  return features.find((f) => key === f.annotationPrefix || key.startsWith(f.annotationPrefix + '.'));
}

/** True when any io.hyperbox. key is present: the request asks for something. */
export function asksHyperbox(annotations: Readonly<Record<string, string>>): boolean {
  return Object.keys(annotations).some((k) => k.startsWith(ANNOTATION_PREFIX));
}

/** Plans every feature; an io.hyperbox. key no feature owns is refused rather than ignored. */
export function planFeatures(features: readonly AnyFeature[], input: PlanInput): Map<AnyFeature, unknown> {
  for (const key of Object.keys(input.annotations)) {
    if (key.startsWith(ANNOTATION_PREFIX) && !ownerOf(features, key)) {
      const known = features.map((f) => f.annotationPrefix).join(', ') || 'none in this build';
      throw new HyperboxError('E_ANNOTATION', `unknown annotation ${key}: hyperbox annotations are ${known}`);
    }
  }
  const planned = new Map<AnyFeature, unknown>();
  for (const feature of features) {
    const options = feature.plan(input);
    if (options !== undefined) planned.set(feature, options);
  }
  return planned;
}

/** Annotations that the hyperbox flags on a command line stand for. */
export function flagAnnotations(uses: readonly FlagUse[], features: readonly AnyFeature[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const use of uses.filter((f) => f.extra)) {
    const flag = features.flatMap((f) => f.flags ?? []).find((fl) => fl.names[0] === use.name);
    if (flag) Object.assign(out, flag.toAnnotations(use.value));
  }
  return out;
}
