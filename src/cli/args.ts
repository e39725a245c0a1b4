/**
 * CLI argument handling: node's parseArgs for syntax, zod for values, one error type whose message
 * names the flag. Every command validates its own flags through here.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { z } from 'zod';

export class UsageError extends Error {
  override name = 'UsageError';
}

export type Options = NonNullable<ParseArgsConfig['options']>;

export function parse(argv: string[], options: Options): { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] } {
  try {
    const r = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
    return { values: r.values as Record<string, string | boolean | string[] | undefined>, positionals: r.positionals };
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Validates one flag's value with a zod schema; the error names the flag and the problem. */
export function flag<T>(values: Record<string, unknown>, name: string, schema: z.ZodType<T>): T {
  const r = schema.safeParse(values[name]);
  if (!r.success) {
    const v = values[name];
    throw new UsageError(`--${name}${v === undefined ? ' is required' : ` ${JSON.stringify(v)}: ${r.error.issues[0]?.message ?? 'invalid'}`}`);
  }
  return r.data;
}

export const positiveInt = z.coerce.number().int().positive();
