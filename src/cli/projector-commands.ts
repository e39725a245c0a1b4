/** CLI commands of the projector stage. */
import { z } from 'zod';
import { importLlavaProjector } from '../../projector/import.js';
import { flag, parse, UsageError } from './args.js';

export async function cmdImportProjector(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, { out: { type: 'string' } });
  if (positionals.length !== 1) throw new UsageError('import-projector takes exactly one source (a LLaVA checkpoint folder or an mm_projector.bin)');
  const out = flag(values, 'out', z.string().min(1));
  const m = await importLlavaProjector(positionals[0]!, out);
  process.stdout.write(`wrote ${out}: ${m.type} ${m.inputDim}→${m.hiddenDim ? `${m.hiddenDim}→` : ''}${m.outputDim}\n`);
}
