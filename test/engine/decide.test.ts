import { describe, it, expect } from 'vitest';
import { decide, type Side } from '../../src/engine/decide.js';

const v = (hash: string): Side => ({ kind: 'valid', hash });
const absent: Side = { kind: 'absent' };
const bad: Side = { kind: 'invalid', reason: 'not a JSON object' };
const base = (hash: string) => ({ hash, version: `v-${hash}` });

// One row per line of the design's table, plus the rows for invalid content.
describe('three-way decision table', () => {
  it.each([
    ['L = R, no base', v('a'), v('a'), undefined, 'in-sync'],
    ['L = R, stale base', v('a'), v('a'), base('z'), 'in-sync'],
    ['L missing, R present, no base: new remote item', absent, v('a'), undefined, 'pull'],
    ['L missing, R present, B = R: deleted locally', absent, v('a'), base('a'), 'delete-store'],
    ['L missing, R changed since B: edit beats delete', absent, v('b'), base('a'), 'pull'],
    ['L present, R missing, no base: new local item', v('a'), absent, undefined, 'push'],
    ['L present, R missing, B = L: deleted in store', v('a'), absent, base('a'), 'delete-local'],
    ['L changed, R missing: edit beats delete', v('b'), absent, base('a'), 'push'],
    ['L = B, R changed: store changed', v('a'), v('b'), base('a'), 'pull'],
    ['R = B, L changed: local changed', v('b'), v('a'), base('a'), 'push'],
    ['both changed differently: conflict', v('b'), v('c'), base('a'), 'conflict'],
    ['both present and different, no base: conflict', v('b'), v('c'), undefined, 'conflict'],
    ['both missing: forget base', absent, absent, base('a'), 'forget'],
    ['invalid local never pushed', bad, v('a'), base('a'), 'reject-local'],
    ['invalid local never pushed (no store copy)', bad, absent, undefined, 'reject-local'],
    ['invalid store item never pulled', absent, bad, undefined, 'reject-store'],
    ['invalid store item, unchanged local: left alone', v('a'), bad, base('a'), 'reject-store'],
    ['invalid store item, local edited: push repairs', v('b'), bad, base('a'), 'push'],
  ] as const)('%s', (_name, l, r, b, action) => {
    expect(decide(l, r, b)).toBe(action);
  });
});
