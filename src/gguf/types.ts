/**
 * GGUF v3 vocabulary shared by the writer and reader: value-type and ggml tensor-type codes (from ggml's
 * gguf.h / ggml.h), llama.cpp's token types, and the error type every src/gguf module throws.
 */

/** Any problem with a GGUF file or with what was asked to be written; the message names the file and the problem. */
export class GgufError extends Error {
  override name = 'GgufError';
}

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
export const DEFAULT_ALIGNMENT = 32;
/** ggml's GGML_MAX_NAME is 64 including the terminating NUL. */
export const MAX_TENSOR_NAME_BYTES = 63;
export const MAX_DIMS = 4;

export type GgufScalarType = 'uint8' | 'int8' | 'uint16' | 'int16' | 'uint32' | 'int32' | 'float32' | 'bool' | 'string' | 'uint64' | 'int64' | 'float64';

/** Wire codes of the value types (gguf_type). ARRAY is 9. */
export const VALUE_TYPE_CODE: Readonly<Record<GgufScalarType | 'array', number>> = {
  uint8: 0, int8: 1, uint16: 2, int16: 3, uint32: 4, int32: 5, float32: 6, bool: 7, string: 8, array: 9, uint64: 10, int64: 11, float64: 12,
};

export const VALUE_TYPE_BY_CODE: ReadonlyMap<number, GgufScalarType | 'array'> = new Map(
  Object.entries(VALUE_TYPE_CODE).map(([k, v]) => [v, k as GgufScalarType | 'array']),
);

export type GgufScalar = number | bigint | boolean | string;

export type GgufValue =
  | { readonly type: GgufScalarType; readonly value: GgufScalar }
  | { readonly type: 'array'; readonly itemType: GgufScalarType; readonly value: readonly GgufScalar[] };

/** Tensor element types this project writes and reads (ggml_type codes). */
export type GgufTensorType = 'F32' | 'F16' | 'BF16';
export const TENSOR_TYPE_CODE: Readonly<Record<GgufTensorType, number>> = { F32: 0, F16: 1, BF16: 30 };
export const TENSOR_TYPE_ITEMSIZE: Readonly<Record<GgufTensorType, number>> = { F32: 4, F16: 2, BF16: 2 };

/** llama.cpp's llama_token_type (what tokenizer.ggml.token_type holds). */
export const TokenType = {
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;

/** general.file_type values (llama_ftype) for unquantised files. */
export const FileType = { ALL_F32: 0, MOSTLY_F16: 1, MOSTLY_BF16: 32 } as const;
