/**
 * `llm2clip serve`: the OpenAI-compatible server (server/). Flags and LLM2CLIP_* environment variables
 * are documented by `llm2clip serve --help`. With no model flags it serves the bundled demo model
 * (models/demo). SIGTERM / SIGINT drain: new requests are refused, running chats may finish until
 * --drain-timeout-ms, then the rest are aborted; a second signal exits at once.
 */
import { checkModelPaths, ConfigError, parseServeConfig, serveHelp } from '../../server/config.js';
import { startServer } from '../../server/server.js';
import { UsageError } from './args.js';

export async function cmdServe(argv: string[]): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(serveHelp());
    return;
  }
  let config;
  try {
    config = parseServeConfig(argv);
    checkModelPaths(config);
  } catch (e) {
    if (e instanceof ConfigError) throw new UsageError(e.message);
    throw e;
  }
  const server = await startServer(config);
  if (!['127.0.0.1', '::1', 'localhost'].includes(config.host) && config.apiKey === undefined) {
    process.stderr.write(`llm2clip serve: warning: listening on ${config.host} without --api-key; anyone who can reach it can use the model\n`);
  }
  let signals = 0;
  const stopped = new Promise<void>((resolve) => {
    const onSignal = (sig: NodeJS.Signals): void => {
      if (++signals > 1) {
        process.stderr.write(`llm2clip serve: ${sig} again, exiting now\n`);
        process.exit(130);
      }
      process.stderr.write(`llm2clip serve: ${sig}, draining (up to ${config.drainTimeoutMs} ms)\n`);
      void server.drain().then(({ finished, aborted }) => {
        process.stderr.write(`llm2clip serve: stopped (${finished} request(s) finished, ${aborted} aborted)\n`);
        resolve();
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  // a model that fails to load ends the process with the error (health said "failed" meanwhile)
  await Promise.race([server.ready.then(() => stopped), stopped]).catch(async (e: unknown) => {
    await server.drain(0);
    throw e;
  });
}
