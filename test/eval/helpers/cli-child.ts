/**
 * `llm2clip eval …` as a process of its own (run with vite-node), exiting like src/cli/main.ts does:
 * 0 on success, 2 on usage errors, 1 on failures. Used to kill a run mid-way and to check exit codes.
 */
import { UsageError } from '../../../src/cli/args.js';
import { cmdEval } from '../../../src/cli/eval-command.js';

try {
  await cmdEval(process.argv.slice(2));
  process.exitCode = 0;
} catch (e) {
  process.stderr.write(`llm2clip eval: ${(e as Error).message}\n`);
  process.exitCode = e instanceof UsageError ? 2 : 1;
}
