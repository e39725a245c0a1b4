#!/usr/bin/env node
/** `llm2clip` command line: dispatches to one module per stage; usage errors exit 2, failures exit 1. */
import { UsageError } from './args.js';
import { CHAT_USAGE, cmdChat } from './chat-command.js';
import { cmdConvertLlm, cmdSynthLlm } from './llm-commands.js';
import { cmdImportProjector } from './projector-commands.js';
import { cmdServe } from './serve-command.js';
import { cmdEval } from './eval-command.js';
import { cmdDemoChatWorld, cmdDemoWorld, DEMO_CHAT_WORLD_USAGE, DEMO_WORLD_USAGE } from '../demo/cli.js';
import { cmdFeaturesDataset, FEATURES_DATASET_USAGE, isDatasetFeatures } from './train-commands.js';
import { cmdAdapt, cmdConvert, cmdEmbed, cmdFeatures, cmdPreprocess, cmdSynthCheckpoint } from './vision-commands.js';

const HELP = `llm2clip — LLM2CLIP vision towers for local LLMs

Usage:
  llm2clip convert <checkpoint> --out DIR [--config JSON|MODEL-NAME] [--dtype fp32|fp16] [--resize-mode crop|pad]
  llm2clip preprocess --tower DIR IMAGE --out FILE.npy
  llm2clip features --tower DIR (IMAGE... | --pixels FILE.npy) --out FILE.npy [--batch N]
  ${FEATURES_DATASET_USAGE}
  llm2clip embed --tower DIR (IMAGE... | --pixels FILE.npy) [--batch N] [--no-normalize]
  llm2clip adapt --tower DIR --llm-embeds FILE.npy --out FILE.npy
  llm2clip synth-checkpoint --arch openai|eva02 --preset tiny|b-16|l-14-224|l-14-336 --out DIR [--seed N] [--dtype f32|f16|bf16] [--no-adapter]
  llm2clip synth-llm --preset tiny|0.5b --out FILE.gguf [--seed N] [--dtype f32|f16]
  llm2clip convert-llm <hf-llama-dir> --out FILE.gguf [--dtype f32|f16]
  ${CHAT_USAGE}
  llm2clip import-projector <llava checkpoint dir | mm_projector.bin> --out DIR
  llm2clip serve [flags]        OpenAI-compatible server (serve --help lists every flag)
  llm2clip eval run|score|export ...   VQA evaluation (eval --help)
  ${DEMO_WORLD_USAGE}
  ${DEMO_CHAT_WORLD_USAGE}

Tower commands also take --provider cpu|cuda|... and --threads N.
`;

const COMMANDS: Record<string, (argv: string[]) => Promise<void>> = {
  convert: cmdConvert,
  preprocess: cmdPreprocess,
  features: (argv) => (isDatasetFeatures(argv) ? cmdFeaturesDataset(argv) : cmdFeatures(argv)),
  embed: cmdEmbed,
  adapt: cmdAdapt,
  'synth-checkpoint': cmdSynthCheckpoint,
  'synth-llm': cmdSynthLlm,
  'convert-llm': cmdConvertLlm,
  chat: cmdChat,
  'import-projector': cmdImportProjector,
  eval: cmdEval,
  serve: cmdServe,
  'demo-world': cmdDemoWorld,
  'demo-chat-world': cmdDemoChatWorld,
};

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    process.stdout.write(HELP);
    return 0;
  }
  const run = COMMANDS[cmd];
  if (!run) {
    process.stderr.write(`llm2clip: unknown command '${cmd}'\n\n${HELP}`);
    return 2;
  }
  try {
    await run(rest);
    return 0;
  } catch (e) {
    const err = e as Error;
    process.stderr.write(`llm2clip ${cmd}: ${err.message}\n`);
    if (err instanceof UsageError) return 2;
    if (!['CheckpointError', 'ConfigError', 'ManifestError', 'ImageError', 'SessionError', 'NpyError', 'GgufError', 'ProjectorError', 'InjectionError', 'ChatError', 'ChatInputError', 'EvalInputError', 'DatasetError'].includes(err.name) && process.env.LLM2CLIP_DEBUG) {
      process.stderr.write(`${err.stack}\n`);
    }
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
