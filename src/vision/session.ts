/**
 * onnxruntime-node session creation shared by the tower and the adapter. The execution provider is
 * explicit: asking for CUDA on a machine or build without it is an error, never a quiet CPU fallback.
 */
import * as ort from 'onnxruntime-node';

export type ExecutionProvider = 'cpu' | 'cuda' | 'tensorrt' | 'dml' | 'coreml' | 'webgpu';

export interface SessionOptions {
  readonly executionProvider?: ExecutionProvider;
  /** Intra-op threads for the CPU provider (default: onnxruntime's choice, one per core). */
  readonly threads?: number;
}

export class SessionError extends Error {
  override name = 'SessionError';
}

export async function createSession(path: string, opts: SessionOptions = {}): Promise<ort.InferenceSession> {
  const ep = opts.executionProvider ?? 'cpu';
  const supported = ort.listSupportedBackends().map((b) => b.name);
  if (!supported.includes(ep)) {
    throw new SessionError(
      `execution provider '${ep}' is not available in this onnxruntime-node build (available: ${supported.join(', ')}); ` +
        (ep === 'cuda' ? "reinstall with the CUDA parts, see README 'GPU'" : 'choose another'),
    );
  }
  try {
    return await ort.InferenceSession.create(path, {
      executionProviders: [ep],
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      interOpNumThreads: 1,
      ...(opts.threads ? { intraOpNumThreads: opts.threads } : {}),
      enableCpuMemArena: true,
    });
  } catch (e) {
    throw new SessionError(`${path}: onnxruntime could not load the model with provider '${ep}': ${(e as Error).message}`);
  }
}

export function outputData(out: ort.InferenceSession.OnnxValueMapType, name: string): Float32Array {
  const t = out[name];
  if (!t || t.type !== 'float32') throw new SessionError(`model output '${name}' missing or not float32`);
  return t.data as Float32Array;
}
