#!/usr/bin/env node
/** Entry point of the Node side; the launcher (addon/src/launcher.c) starts it only when hyperbox is needed. */
import { main } from './cli/main.js';
import { builtinFeatures } from './features/index.js';
import { native } from './native/index.js';

process.exitCode = await main(process.argv.slice(2), { features: builtinFeatures, native });
