/** The Node side with the benchmark-only feature added; the benchmark points HYPERBOX_CLI here. */
import { main } from '../../src/cli/main.js';
import { builtinFeatures } from '../../src/features/index.js';
import { native } from '../../src/native/index.js';
import { benchFeature } from './bench-feature.js';

process.exitCode = await main(process.argv.slice(2), { features: [...builtinFeatures, benchFeature], native });
