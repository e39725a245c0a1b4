/**
 * A restricted unpickler (protocols 2–5) and a tiny protocol-2 pickler. Nothing in a pickle is ever
 * executed: globals resolve only through a caller-supplied allowlist of JS values (functions are what
 * REDUCE/NEWOBJ may call), so a hostile checkpoint cannot name os.system, eval or anything else.
 *
 * Python values map to JS as: None → null, bool → boolean, int → number (bigint beyond 2^53),
 * float → number, str → string, bytes → Uint8Array, tuple/list → array, dict → Map.
 */
import { CheckpointError } from './tensor.js';

export type PickleCallable = (args: unknown[]) => unknown;

export interface UnpickleOptions {
  /** 'module.name' → value. A function value may be called by REDUCE/NEWOBJ with the argument tuple. */
  globals: ReadonlyMap<string, unknown>;
  /** Resolves BINPERSID ids (torch storages); without it, persistent ids are refused. */
  persistentLoad?: (pid: unknown) => unknown;
  /** Names the pickle in error messages. */
  source?: string;
}

/** Objects may implement this to accept a BUILD (i.e. __setstate__) instead of having it refused. */
export const SETSTATE = Symbol('pickle.setstate');

const PY2_MODULES: Readonly<Record<string, string>> = { __builtin__: 'builtins', copy_reg: 'copyreg' };

export function unpickle(data: Uint8Array, opts: UnpickleOptions): unknown {
  const src = opts.source ?? 'pickle';
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();
  let pos = 0;
  let op = 0;
  let opPos = 0;

  function fail(msg: string): never {
    throw new CheckpointError(`${src}: ${msg} (opcode 0x${op.toString(16).padStart(2, '0')} at offset ${opPos})`);
  }
  const need = (n: number): void => {
    if (pos + n > buf.length) fail(`pickle truncated: needs ${n} more bytes at offset ${pos}`);
  };
  const u8 = (): number => (need(1), buf[pos++]);
  const u16 = (): number => (need(2), (pos += 2), buf.readUInt16LE(pos - 2));
  const u32 = (): number => (need(4), (pos += 4), buf.readUInt32LE(pos - 4));
  const u64 = (): number => {
    need(8);
    const v = buf.readBigUInt64LE(pos);
    pos += 8;
    if (v > BigInt(buf.length)) fail(`length ${v} exceeds the pickle`);
    return Number(v);
  };
  const bytes = (n: number): Buffer => (need(n), (pos += n), buf.subarray(pos - n, pos));
  const utf8 = (n: number): string => bytes(n).toString('utf8');
  const line = (): string => {
    const end = buf.indexOf(0x0a, pos);
    if (end < 0) fail('pickle truncated: unterminated text line');
    const s = buf.toString('utf8', pos, end);
    pos = end + 1;
    return s;
  };
  const pop = (): unknown => {
    if (stack.length === 0 || (marks.length && stack.length <= marks[marks.length - 1])) fail('stack underflow');
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) fail('stack underflow');
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const m = marks.pop();
    if (m === undefined) fail('no MARK on the stack');
    return stack.splice(m);
  };
  let protocol = 0;
  const resolveGlobal = (module: string, name: string): unknown => {
    // Python 3 maps Python 2 module names in protocol < 3 pickles (pickle's fix_imports); so do we.
    if (protocol < 3) module = PY2_MODULES[module] ?? module;
    const key = `${module}.${name}`;
    if (!opts.globals.has(key)) fail(`refusing pickle global '${key}' (only state-dict types are allowed)`);
    return opts.globals.get(key);
  };
  const call = (fn: unknown, args: unknown): unknown => {
    if (typeof fn !== 'function') fail('REDUCE/NEWOBJ on a value that is not an allowed callable');
    if (!Array.isArray(args)) fail('REDUCE/NEWOBJ arguments are not a tuple');
    return (fn as PickleCallable)(args as unknown[]);
  };
  const asDict = (d: unknown): Map<unknown, unknown> => {
    if (!(d instanceof Map)) fail('SETITEM(S) on something that is not a dict');
    return d as Map<unknown, unknown>;
  };
  const asList = (l: unknown): unknown[] => {
    if (!Array.isArray(l)) fail('APPEND(S) on something that is not a list');
    return l as unknown[];
  };
  const signedLong = (b: Buffer): number | bigint => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };

  for (;;) {
    opPos = pos;
    if (pos >= buf.length) {
      op = 0;
      fail('pickle truncated: no STOP opcode');
    }
    op = buf[pos++];
    switch (op) {
      case 0x80: { // PROTO
        protocol = u8();
        if (protocol < 2 || protocol > 5) fail(`unsupported pickle protocol ${protocol}`);
        break;
      }
      case 0x95: // FRAME: framing is only a buffering hint
        u64();
        break;
      case 0x2e: // STOP
        if (stack.length !== 1 || marks.length) fail('malformed pickle: STOP with a stack that is not a single value');
        return stack[0];
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x29: stack.push([]); break; // EMPTY_TUPLE
      case 0x28: marks.push(stack.length); break; // MARK
      case 0x74: stack.push(popMark()); break; // TUPLE
      case 0x6c: stack.push(popMark()); break; // LIST
      case 0x64: { // DICT
        const items = popMark();
        const d = new Map<unknown, unknown>();
        for (let i = 0; i + 1 < items.length; i += 2) d.set(items[i], items[i + 1]);
        stack.push(d);
        break;
      }
      case 0x85: stack.push([pop()]); break; // TUPLE1
      case 0x86: { const b = pop(); const a = pop(); stack.push([a, b]); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); const a = pop(); stack.push([a, b, c]); break; } // TUPLE3
      case 0x4a: need(4); stack.push(buf.readInt32LE(pos)); pos += 4; break; // BININT
      case 0x4b: stack.push(u8()); break; // BININT1
      case 0x4d: stack.push(u16()); break; // BININT2
      case 0x8a: stack.push(signedLong(bytes(u8()))); break; // LONG1
      case 0x8b: { // LONG4
        const n = u32();
        if (n > 1024) fail(`LONG4 of ${n} bytes is implausible in a state dict`);
        stack.push(signedLong(bytes(n)));
        break;
      }
      case 0x47: need(8); stack.push(buf.readDoubleBE(pos)); pos += 8; break; // BINFLOAT
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x58: stack.push(utf8(u32())); break; // BINUNICODE
      case 0x8c: stack.push(utf8(u8())); break; // SHORT_BINUNICODE
      case 0x8d: stack.push(utf8(u64())); break; // BINUNICODE8
      case 0x55: stack.push(bytes(u8()).toString('latin1')); break; // SHORT_BINSTRING (py2 str)
      case 0x54: stack.push(bytes(u32()).toString('latin1')); break; // BINSTRING
      case 0x43: stack.push(new Uint8Array(bytes(u8()))); break; // SHORT_BINBYTES
      case 0x42: stack.push(new Uint8Array(bytes(u32()))); break; // BINBYTES
      case 0x8e: stack.push(new Uint8Array(bytes(u64()))); break; // BINBYTES8
      case 0x71: memo.set(u8(), top()); break; // BINPUT
      case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x68: case 0x6a: { // BINGET, LONG_BINGET
        const k = op === 0x68 ? u8() : u32();
        if (!memo.has(k)) fail(`memo key ${k} was never stored`);
        stack.push(memo.get(k));
        break;
      }
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: stack.push(top()); break; // DUP
      case 0x63: { // GLOBAL
        const module = line();
        const name = line();
        stack.push(resolveGlobal(module, name));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        stack.push(resolveGlobal(module as string, name as string));
        break;
      }
      case 0x52: { const args = pop(); const fn = pop(); stack.push(call(fn, args)); break; } // REDUCE
      case 0x81: { const args = pop(); const cls = pop(); stack.push(call(cls, args)); break; } // NEWOBJ
      case 0x62: { // BUILD
        const state = pop();
        const obj = top();
        const hook = obj !== null && typeof obj === 'object' ? (obj as { [SETSTATE]?: unknown })[SETSTATE] : undefined;
        if (typeof hook === 'function') hook.call(obj, state);
        // A dict subclass's instance attributes (OrderedDict._metadata of state_dict()) do not matter here.
        else if (!(obj instanceof Map) && state !== null) fail('BUILD on an object that does not accept state');
        break;
      }
      case 0x51: { // BINPERSID
        const pid = pop();
        if (!opts.persistentLoad) fail('persistent ids are not allowed here');
        stack.push(opts.persistentLoad!(pid));
        break;
      }
      case 0x73: { const v = pop(); const k = pop(); asDict(top()).set(k, v); break; } // SETITEM
      case 0x75: { // SETITEMS
        const items = popMark();
        const d = asDict(top());
        if (items.length % 2) fail('SETITEMS with an odd number of items');
        for (let i = 0; i < items.length; i += 2) d.set(items[i], items[i + 1]);
        break;
      }
      case 0x61: { const v = pop(); asList(top()).push(v); break; } // APPEND
      case 0x65: { const items = popMark(); asList(top()).push(...items); break; } // APPENDS
      default:
        fail('unknown or unsupported pickle opcode');
    }
  }
}

// ---- writer ----

/**
 * A bounded description of an untrusted unpickled value for error messages: a tiny pickle can build a
 * shared-reference structure whose full printout is exponentially large, so never stringify one whole.
 */
export function describeValue(v: unknown, depth = 2): string {
  if (v === null || v === undefined) return String(v);
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) {
    if (depth <= 0) return `[…${v.length} items]`;
    const items = v.slice(0, 6).map((x) => describeValue(x, depth - 1));
    return `[${items.join(', ')}${v.length > 6 ? `, …${v.length - 6} more` : ''}]`;
  }
  if (v instanceof Map) return `dict(${v.size} items)`;
  return typeof v === 'object' ? `<${(v as object).constructor?.name ?? 'object'}>` : typeof v;
}

export class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
}
export class PyTuple {
  constructor(readonly items: readonly PickleValue[]) {}
}
/** callable(*args), then `items` set on the result (how an OrderedDict pickles): GLOBAL, args, REDUCE, SETITEMS. */
export class PyReduce {
  constructor(
    readonly callable: PyGlobal,
    readonly args: readonly PickleValue[],
    readonly items?: ReadonlyMap<PickleValue, PickleValue>,
  ) {}
}
/** A persistent id (torch storages): pickled as the id value + BINPERSID. */
export class PyPersId {
  constructor(readonly id: PickleValue) {}
}
/** Forces a Python float for an integral number. */
export class PyFloat {
  constructor(readonly value: number) {}
}

export type PickleValue =
  | null
  | boolean
  | number
  | string
  | Uint8Array
  | PickleValue[]
  | Map<PickleValue, PickleValue>
  | PyGlobal
  | PyTuple
  | PyReduce
  | PyPersId
  | PyFloat;

/** Protocol-2 pickle of `value`; lists are written as lists, PyTuple as tuples, Maps as dicts. */
export function dumpPickle(value: PickleValue): Uint8Array {
  const out: Buffer[] = [Buffer.from([0x80, 2])];
  const globalMemo = new Map<string, number>();
  const op = (...b: number[]): void => void out.push(Buffer.from(b));
  const u32le = (n: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n, 0);
    return b;
  };
  const float = (x: number): void => {
    const b = Buffer.alloc(9);
    b[0] = 0x47;
    b.writeDoubleBE(x, 1);
    out.push(b);
  };
  const emit = (v: PickleValue): void => {
    if (v === null) op(0x4e);
    else if (v === true) op(0x88);
    else if (v === false) op(0x89);
    else if (typeof v === 'number') {
      if (!Number.isInteger(v)) float(v);
      else if (v >= 0 && v < 256) op(0x4b, v);
      else if (v >= 0 && v < 65536) op(0x4d, v & 0xff, v >>> 8);
      else if (v >= -(2 ** 31) && v < 2 ** 31) {
        const b = Buffer.alloc(5);
        b[0] = 0x4a;
        b.writeInt32LE(v, 1);
        out.push(b);
      } else {
        if (!Number.isSafeInteger(v)) throw new RangeError(`cannot pickle integer ${v} exactly`);
        const b = Buffer.alloc(10);
        b[0] = 0x8a;
        b[1] = 8;
        b.writeBigInt64LE(BigInt(v), 2);
        out.push(b);
      }
    } else if (typeof v === 'string') {
      const s = Buffer.from(v, 'utf8');
      op(0x58);
      out.push(u32le(s.length), s);
    } else if (v instanceof Uint8Array) {
      op(0x42);
      out.push(u32le(v.length), Buffer.from(v));
    } else if (Array.isArray(v)) {
      op(0x5d, 0x28);
      v.forEach(emit);
      op(0x65);
    } else if (v instanceof Map) {
      op(0x7d, 0x28);
      for (const [k, x] of v) {
        emit(k);
        emit(x);
      }
      op(0x75);
    } else if (v instanceof PyFloat) float(v.value);
    else if (v instanceof PyTuple) {
      op(0x28);
      v.items.forEach(emit);
      op(0x74);
    } else if (v instanceof PyGlobal) {
      const key = `${v.module}\n${v.name}\n`;
      const memoIdx = globalMemo.get(key);
      if (memoIdx !== undefined) {
        op(0x6a);
        out.push(u32le(memoIdx));
      } else {
        op(0x63);
        out.push(Buffer.from(key, 'utf8'));
        globalMemo.set(key, globalMemo.size);
        op(0x72);
        out.push(u32le(globalMemo.size - 1));
      }
    } else if (v instanceof PyReduce) {
      emit(v.callable);
      emit(new PyTuple(v.args));
      op(0x52);
      if (v.items?.size) {
        op(0x28);
        for (const [k, x] of v.items) {
          emit(k);
          emit(x);
        }
        op(0x75);
      }
    } else if (v instanceof PyPersId) {
      emit(v.id);
      op(0x51);
    } else throw new TypeError(`cannot pickle ${String(v)}`);
  };
  emit(value);
  op(0x2e);
  return Buffer.concat(out);
}
