// Runs `llm2clip serve` from the built dist/ for the SIGTERM test (main.ts wiring aside): node serve-child.mjs [serve flags]
import { cmdServe } from '../../dist/src/cli/serve-command.js';

try {
  await cmdServe(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`llm2clip serve: ${e.message}\n`);
  process.exitCode = 1;
}
