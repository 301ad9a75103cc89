/** The Node side with the test-only probe feature added; tests point HYPERBOX_CLI here. */
import { main } from '../../src/cli/main.js';
import { builtinFeatures } from '../../src/features/index.js';
import { native } from '../../src/native/index.js';
import { probeFeature } from './probe-feature.js';

process.exitCode = await main(process.argv.slice(2), { features: [...builtinFeatures, probeFeature], native });
