/** The capabilities built into hyperbox-runc. Each issue's capability adds itself here. */
import { rootfsFeature } from './rootfs/index.js';
import { seccompFeature } from './seccomp/index.js';
import { traceFeature } from './trace/index.js';
import { tuneFeature } from './tune/index.js';
import type { AnyFeature } from './types.js';

export const builtinFeatures: readonly AnyFeature[] = [seccompFeature(), traceFeature(), rootfsFeature(), tuneFeature()];
