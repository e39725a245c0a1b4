/**
 * Opening node-llama-cpp with llama.cpp's own thread default. node-llama-cpp defaults `maxThreads` on the
 * CPU to max(cpuMathCores, 4): on a 2-core machine that is 4 threads spinning on 2 cores, and prefill of a
 * 25-token prompt took 2.5 s instead of 11 ms (measured with `llm2clip serve` on the demo model). llama.cpp
 * (and so llama-server) defaults to the physical math cores, which is what we use unless told otherwise.
 */
import { getLlama, LlamaLogLevel, type Llama } from 'node-llama-cpp';

export interface OpenLlamaOptions {
  gpu: 'auto' | 'cuda' | 'vulkan' | 'metal' | false;
  /** llama.cpp threads; 0 = no limit; default: the CPU's math cores when running on the CPU */
  maxThreads?: number | undefined;
  /** only errors from llama.cpp on stderr */
  quiet?: boolean;
}

export async function openLlama(o: OpenLlamaOptions): Promise<Llama> {
  const llama = await getLlama({
    gpu: o.gpu,
    build: 'never',
    progressLogs: false,
    ...(o.quiet ? { logLevel: LlamaLogLevel.error } : {}),
    ...(o.maxThreads !== undefined ? { maxThreads: o.maxThreads } : {}),
  });
  if (o.maxThreads === undefined && llama.gpu === false) llama.maxThreads = Math.max(1, llama.cpuMathCores);
  return llama;
}
