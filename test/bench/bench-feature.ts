/**
 * A benchmark-only feature: `io.hyperbox.bench=1` is planned, validated and
 * edits the spec (one annotation) but attaches nothing, so a create through
 * it costs exactly the Node side's own work: start, load, plan, modify, write,
 * exec - plus the poststop release every hyperbox container gets at delete.
 */
import type { Feature } from '../../src/features/types.js';
import { isJsonObject } from '../../src/oci/json.js';

export const benchFeature: Feature<true> = {
  name: 'bench',
  annotationPrefix: 'io.hyperbox.bench',
  plan: (input) => (input.annotations['io.hyperbox.bench'] === '1' ? true : undefined),
  modify(spec) {
    const annotations = isJsonObject(spec.annotations) ? spec.annotations : (spec.annotations = {});
    annotations['io.hyperbox.bench.modified'] = 'yes';
  },
};
