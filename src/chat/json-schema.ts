/**
 * Checks a JSON schema against the subset node-llama-cpp's grammar builder understands
 * (GbnfJsonSchema in node-llama-cpp 3.21.1). node-llama-cpp does not validate schemas itself: an
 * unknown `type` or an ignored keyword such as `pattern` would silently give a grammar that does not
 * enforce what the caller asked for. Constraint keywords outside the subset are therefore refused;
 * pure annotations (title, $schema, $comment, examples) are allowed and have no effect.
 */
import { ChatError } from './errors.js';

const ANNOTATIONS = ['description', 'title', '$schema', '$comment', 'examples'];
const IMMUTABLE = ['string', 'number', 'integer', 'boolean', 'null'];

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const isPrimitive = (v: unknown): boolean => v === null || ['string', 'number', 'boolean'].includes(typeof v);

export function checkJsonSchema(schema: unknown): void {
  walk(schema, 'options.jsonSchema', new Set());
}

function fail(path: string, why: string): never {
  throw new ChatError('OPTIONS', `${path}: ${why}`);
}

function only(s: Obj, path: string, allowed: string[]): void {
  for (const k of Object.keys(s)) {
    if (!allowed.includes(k) && !ANNOTATIONS.includes(k)) {
      fail(path, `keyword "${k}" is not supported here (node-llama-cpp's JSON-schema grammar supports ${allowed.join(', ')})`);
    }
  }
}

function count(s: Obj, key: string, path: string): number | undefined {
  const v = s[key];
  if (v === undefined) return undefined;
  if (!Number.isSafeInteger(v) || (v as number) < 0) fail(`${path}.${key}`, 'must be a non-negative integer');
  return v as number;
}

function range(s: Obj, path: string, min: string, max: string): void {
  const [lo, hi] = [count(s, min, path), count(s, max, path)];
  if (lo !== undefined && hi !== undefined && lo > hi) fail(path, `${min} ${lo} exceeds ${max} ${hi}`);
}

function walk(s: unknown, path: string, defs: ReadonlySet<string>): void {
  if (!isObj(s)) fail(path, 'a schema must be an object');
  let scope = defs;
  if (s.$defs !== undefined) {
    if (!isObj(s.$defs)) fail(`${path}.$defs`, 'must be an object of schemas');
    scope = new Set([...defs, ...Object.keys(s.$defs)]);
    for (const [k, d] of Object.entries(s.$defs)) walk(d, `${path}.$defs.${k}`, scope);
  }
  if ('const' in s) {
    only(s, path, ['const']);
    if (!isPrimitive(s.const)) fail(`${path}.const`, 'must be a string, number, boolean or null');
  } else if ('enum' in s) {
    only(s, path, ['enum']);
    if (!Array.isArray(s.enum) || s.enum.length === 0 || !s.enum.every(isPrimitive)) fail(`${path}.enum`, 'must be a non-empty array of strings, numbers, booleans or null');
  } else if ('oneOf' in s) {
    only(s, path, ['oneOf', '$defs']);
    if (!Array.isArray(s.oneOf) || s.oneOf.length === 0) fail(`${path}.oneOf`, 'must be a non-empty array of schemas');
    s.oneOf.forEach((x, i) => walk(x, `${path}.oneOf[${i}]`, scope));
  } else if ('$ref' in s) {
    only(s, path, ['$ref', '$defs']);
    const m = typeof s.$ref === 'string' ? /^#\/\$defs\/(.+)$/.exec(s.$ref) : null;
    if (!m) fail(`${path}.$ref`, 'must look like "#/$defs/<name>"');
    if (!scope.has(m[1]!)) fail(`${path}.$ref`, `no $defs entry named "${m[1]}" is in scope`);
  } else if ('type' in s) {
    walkTyped(s, path, scope);
  } else {
    fail(path, 'a schema needs one of type, const, enum, oneOf or $ref');
  }
}

function walkTyped(s: Obj, path: string, scope: ReadonlySet<string>): void {
  const t = s.type;
  if (Array.isArray(t)) {
    only(s, path, ['type']);
    if (t.length === 0 || !t.every((x) => IMMUTABLE.includes(x as string))) fail(`${path}.type`, `a type list may hold only ${IMMUTABLE.join(', ')}`);
    return;
  }
  switch (t) {
    case 'string':
      only(s, path, ['type', 'minLength', 'maxLength', 'format']);
      if (s.format !== undefined) {
        if (!['date-time', 'time', 'date'].includes(s.format as string)) fail(`${path}.format`, 'must be date-time, time or date');
        if (s.minLength !== undefined || s.maxLength !== undefined) fail(path, 'format cannot be combined with minLength/maxLength');
      }
      range(s, path, 'minLength', 'maxLength');
      return;
    case 'number':
    case 'integer':
    case 'boolean':
    case 'null':
      only(s, path, ['type']);
      return;
    case 'object': {
      only(s, path, ['type', 'properties', 'additionalProperties', 'minProperties', 'maxProperties', 'required', '$defs']);
      const props = s.properties ?? {};
      if (!isObj(props)) fail(`${path}.properties`, 'must be an object of schemas');
      for (const [k, p] of Object.entries(props)) walk(p, `${path}.properties.${k}`, scope);
      const ap = s.additionalProperties;
      if (ap !== undefined && typeof ap !== 'boolean') walk(ap, `${path}.additionalProperties`, scope);
      if (s.required !== undefined) {
        if (!Array.isArray(s.required) || !s.required.every((r) => typeof r === 'string' && r in props)) {
          fail(`${path}.required`, 'must list names from properties');
        }
      }
      range(s, path, 'minProperties', 'maxProperties');
      return;
    }
    case 'array':
      only(s, path, ['type', 'items', 'prefixItems', 'minItems', 'maxItems', '$defs']);
      if (s.items !== undefined) walk(s.items, `${path}.items`, scope);
      if (s.prefixItems !== undefined) {
        if (!Array.isArray(s.prefixItems)) fail(`${path}.prefixItems`, 'must be an array of schemas');
        s.prefixItems.forEach((x, i) => walk(x, `${path}.prefixItems[${i}]`, scope));
      }
      range(s, path, 'minItems', 'maxItems');
      return;
    default:
      fail(`${path}.type`, `${JSON.stringify(t)} is not one of ${[...IMMUTABLE, 'object', 'array'].join(', ')}`);
  }
}
