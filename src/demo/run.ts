#!/usr/bin/env node
/**
 * Entry point for the demo recipe's TypeScript steps (models/demo/recipe/): `node dist/src/demo/run.js
 * <step> [flags]`. Kept apart from the main CLI so the recipe does not depend on how commands are wired.
 */
import { UsageError } from '../cli/args.js';
import { cmdDemoChatWorld, cmdDemoTowerSet, cmdDemoWorld } from './cli.js';
import { cmdDemoTokens, cmdDemoEval } from './recipe.js';

const STEPS: Record<string, (argv: string[]) => Promise<void>> = {
  world: cmdDemoWorld,
  'chat-world': cmdDemoChatWorld,
  'tower-set': cmdDemoTowerSet,
  tokens: cmdDemoTokens,
  eval: cmdDemoEval,
};

const [step, ...rest] = process.argv.slice(2);
const run = step === undefined ? undefined : STEPS[step];
if (!run) {
  process.stderr.write(`usage: node dist/src/demo/run.js (${Object.keys(STEPS).join('|')}) [flags]\n`);
  process.exitCode = 2;
} else {
  try {
    await run(rest);
  } catch (e) {
    process.stderr.write(`demo ${step}: ${(e as Error).message}\n`);
    if (process.env.LLM2CLIP_DEBUG) process.stderr.write(`${(e as Error).stack}\n`);
    process.exitCode = e instanceof UsageError ? 2 : 1;
  }
}
