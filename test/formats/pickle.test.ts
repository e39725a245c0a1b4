import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { describeValue, dumpPickle, PyFloat, PyGlobal, PyPersId, PyReduce, PyTuple, unpickle, type PickleValue } from '../../src/formats/pickle.js';
import { CheckpointError } from '../../src/formats/tensor.js';
import { fixture, noTorchReason, runPython } from './helpers.js';

const none = { globals: new Map<string, unknown>() };
const load = (name: string, opts = none): unknown => unpickle(fs.readFileSync(fixture(name)), opts);

describe('unpickle: hostile pickles (made by python pickle.dump of a __reduce__ payload)', () => {
  it.each([
    ['evil_system_p2.pkl', 'GLOBAL', 'posix.system'],
    ['evil_system_p4.pkl', 'STACK_GLOBAL', 'posix.system'],
    ['evil_eval_p2.pkl', 'GLOBAL __builtin__ (mapped as python does)', 'builtins.eval'],
    ['evil_eval_p4.pkl', 'STACK_GLOBAL', 'builtins.eval'],
  ])('%s (%s) is refused, naming %s', (file, _via, global) => {
    let called = false;
    const opts = { globals: new Map<string, unknown>([['collections.OrderedDict', () => (called = true)]]) };
    expect(() => load(file, opts)).toThrow(CheckpointError);
    expect(() => load(file, opts)).toThrow(`refusing pickle global '${global}' (only state-dict types are allowed)`);
    expect(called).toBe(false);
  });

  it('an allowed global that is not callable cannot be REDUCEd', () => {
    const p = dumpPickle(new PyReduce(new PyGlobal('torch', 'FloatStorage'), []));
    expect(() => unpickle(p, { globals: new Map([['torch.FloatStorage', { tag: 1 }]]) })).toThrow(/not an allowed callable/);
  });
});

describe('unpickle: malformed input', () => {
  it('unknown opcode names the byte and offset', () => {
    expect(() => unpickle(Uint8Array.from([0x80, 2, 0xff]), none)).toThrow(/unknown or unsupported pickle opcode \(opcode 0xff at offset 2\)/);
    // INST (protocol 0 object creation) is deliberately not implemented.
    expect(() => unpickle(Buffer.from('\x80\x02iposix\nsystem\n', 'latin1'), none)).toThrow(/opcode 0x69 at offset 2/);
  });

  it('truncation, missing STOP, bad memo, stack underflow, protocol', () => {
    expect(() => unpickle(Uint8Array.from([0x80, 2, 0x58, 10, 0, 0, 0, 0x41]), none)).toThrow(/pickle truncated/);
    expect(() => unpickle(Uint8Array.from([0x80, 2, 0x4e]), none)).toThrow(/no STOP opcode/);
    expect(() => unpickle(Uint8Array.from([0x80, 2, 0x68, 5, 0x2e]), none)).toThrow(/memo key 5 was never stored/);
    expect(() => unpickle(Uint8Array.from([0x80, 2, 0x85, 0x2e]), none)).toThrow(/stack underflow/);
    expect(() => unpickle(Uint8Array.from([0x80, 9, 0x4e, 0x2e]), none)).toThrow(/unsupported pickle protocol 9/);
    expect(() => unpickle(Uint8Array.from([0x80, 2, 0x4e, 0x51, 0x2e]), none)).toThrow(/persistent ids are not allowed/);
    expect(() => unpickle(Uint8Array.from([0x80, 2, 0x4e, 0x4e, 0x2e]), none)).toThrow(/STOP with a stack that is not a single value/);
  });
});

describe('unpickle: plain values written by python at protocols 2, 4 and 5', () => {
  const want = new Map<unknown, unknown>([
    ['s', 'héllo'],
    ['i', [0, 255, 65535, -1, 2 ** 31, -(2 ** 40), 2n ** 70n]],
    ['f', 1.5],
    ['t', [1, 2, 3]],
    ['n', null],
    ['b', [true, false]],
    ['y', Uint8Array.from([0, 1])],
    ['nested', new Map([['k', [[]]]])],
  ]);
  it.each([4, 5])('protocol %i', (proto) => {
    expect(load(`plain_p${proto}.pkl`)).toEqual(want);
  });

  it('protocol 2, where bytes need an explicitly allowed _codecs.encode', () => {
    expect(() => load('plain_p2.pkl')).toThrow(/refusing pickle global '_codecs.encode'/);
    const encode = (args: unknown[]): Uint8Array => Uint8Array.from(Buffer.from(args[0] as string, 'latin1'));
    expect(load('plain_p2.pkl', { globals: new Map([['_codecs.encode', encode]]) })).toEqual(want);
  });
});

describe('dumpPickle', () => {
  it('round-trips through unpickle with allowlisted globals and persistent ids', () => {
    const od = new PyGlobal('collections', 'OrderedDict');
    const value = new PyReduce(od, [], new Map<PickleValue, PickleValue>([
      ['a', new PyTuple([1, -7, 300, 70000, -(2 ** 33), new PyFloat(2), 0.25, 'x', null, true])],
      ['p', new PyPersId(new PyTuple(['storage', 'k', 3]))],
      ['l', [1, [2]]],
    ]));
    const ids: unknown[] = [];
    const out = unpickle(dumpPickle(value), {
      globals: new Map([['collections.OrderedDict', () => new Map([['created', true]])]]),
      persistentLoad: (pid) => (ids.push(pid), `storage#${ids.length}`),
    });
    expect(out).toEqual(new Map<unknown, unknown>([
      ['created', true],
      ['a', [1, -7, 300, 70000, -(2 ** 33), 2, 0.25, 'x', null, true]],
      ['p', 'storage#1'],
      ['l', [1, [2]]],
    ]));
    expect(ids).toEqual([['storage', 'k', 3]]);
  });

  it.skipIf(noTorchReason)(`python's pickle reads what we write${noTorchReason ? ` [skipped: ${noTorchReason}]` : ''}`, () => {
    const bytes = dumpPickle(new Map<PickleValue, PickleValue>([
      ['t', new PyTuple([1, new PyFloat(2), 'ü', null, false, -(2 ** 40)])],
      ['d', new PyReduce(new PyGlobal('collections', 'OrderedDict'), [], new Map([['k', [1, 2]]]))],
    ]));
    const out = runPython(
      `import sys, pickle, json, collections
v = pickle.loads(bytes.fromhex(sys.argv[1]))
print(json.dumps({'t': repr(v['t']), 'd': repr(v['d'])}))`,
      [Buffer.from(bytes).toString('hex')],
    );
    expect(out).toEqual({ t: "(1, 2.0, 'ü', None, False, -1099511627776)", d: "OrderedDict([('k', [1, 2])])" });
  });
});

describe('describeValue (error messages about untrusted values)', () => {
  it('stays short on a shared-reference structure whose full printout would be exponential', () => {
    // A 250-byte pickle can build this: each level holds the previous level twice (2^40 leaves if printed).
    let v: unknown = [1];
    for (let i = 0; i < 40; i++) v = [v, v];
    const t0 = performance.now();
    const s = describeValue(v);
    expect(performance.now() - t0).toBeLessThan(50);
    expect(s).toBe('[[[…2 items], […2 items]], [[…2 items], […2 items]]]');
    expect(describeValue('x'.repeat(1000))).toHaveLength(43);
    expect(describeValue(new Map([[1, 2]]))).toBe('dict(1 items)');
  });

  it('a pickle bomb in a persistent id is reported quickly, not printed', () => {
    // PROTO 2, [1] memoised, then 40 levels of MARK BINGET i BINGET i LIST BINPUT i+1, then BINPERSID.
    const ops: number[] = [0x80, 2, 0x5d, 0x4b, 1, 0x61, 0x71, 0];
    for (let i = 0; i < 40; i++) ops.push(0x28, 0x68, i, 0x68, i, 0x6c, 0x71, i + 1);
    ops.push(0x51, 0x2e);
    const t0 = performance.now();
    expect(() => unpickle(Uint8Array.from(ops), { globals: new Map(), persistentLoad: (pid) => { throw new CheckpointError(`unsupported persistent id ${describeValue(pid)}`); } })).toThrow(
      /unsupported persistent id \[\[\[…2 items\]/,
    );
    expect(performance.now() - t0).toBeLessThan(500);
  });
});
