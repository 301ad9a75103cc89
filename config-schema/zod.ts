/**
 * zod, loaded from its CommonJS build. On Node 20 that takes about half the
 * time of its ES module graph, and every create that asks for hyperbox pays it.
 */
import { createRequire } from 'node:module';
import type * as Zod from 'zod';

export const z: typeof Zod.z = (createRequire(import.meta.url)('zod') as typeof Zod).z;
export type { TypeOf, ZodType, ZodTypeAny } from 'zod';
