import { describe, it, expect } from 'vitest';
import { contentHash } from '../../src/core/canonical.js';
import type { Entry, Item } from '../../src/core/store.js';
import type { LocalState } from '../../src/mirror/mirror.js';
import { keysToFetch, keysToRead, planPushOnBase, planAll, planKey, remoteSide } from '../../src/engine/plan.js';
import { applyGuards, DeleteWindow } from '../../src/engine/guard.js';
import { emptyReport } from '../../src/engine/types.js';
import type { BaseEntry } from '../../src/engine/state.js';
import { pino } from 'pino';

// Planning is pure: snapshots in, plans out. Nothing here touches a file, a socket or a timer.
const enc = (s: string): Uint8Array => Buffer.from(s, 'utf8');
const h = (json: string): string => contentHash('auths/x.json', enc(json))!;
const valid = (json: string): LocalState => ({ present: true, valid: true, hash: h(json) });
const item = (key: string, json: string, version: string): Item => ({ key, version, data: enc(json) });
const silent = pino({ level: 'silent' });

describe('planning from snapshots', () => {
  it('plans every key of listing, mirror and base, in order, skipping invalid keys', () => {
    const base = new Map<string, BaseEntry>([['auths/gone.json', { hash: h('{"g":1}'), version: 'vg' }]]);
    const entries: Entry[] = [
      { key: 'auths/new.json', version: 'v1', hash: h('{"n":1}') },
      { key: 'auths/gone.json', version: 'vg' },
    ];
    const locals = new Map<string, LocalState>([['auths/local.json', valid('{"l":1}')]]);
    const plans = planAll({ entries, locals, baseKeys: [...base.keys(), '../evil.json'], base: (k) => base.get(k), items: new Map() });
    expect(plans.map((p) => [p.key, p.action])).toEqual([
      ['auths/gone.json', 'delete-store'],
      ['auths/local.json', 'push'],
      ['auths/new.json', 'pull'],
    ]);
  });

  it('reads only items whose hash neither the listing nor the base tells', () => {
    const base = new Map<string, BaseEntry>([['auths/a.json', { hash: 'ha', version: 'va' }]]);
    const entries: Entry[] = [
      { key: 'auths/a.json', version: 'va' },
      { key: 'auths/b.json', version: 'vb', hash: 'hb' },
      { key: 'auths/c.json', version: 'vc' },
      { key: 'auths/a2.json', version: 'vx' },
    ];
    expect(keysToFetch(entries, (k) => base.get(k))).toEqual(['auths/c.json', 'auths/a2.json']);
  });

  it('refuses to guess a store hash it was not given', () => {
    expect(() => remoteSide('auths/c.json', { entry: { key: 'auths/c.json', version: 'vc' } }, undefined)).toThrow(/must be read first/);
  });

  it('judges invalid store content as a rejection and never pulls it', () => {
    const p = planKey('auths/x.json', { present: false }, { entry: { key: 'auths/x.json', version: 'v' }, item: item('auths/x.json', '[1,2]', 'v') }, undefined);
    expect(p.action).toBe('reject-store');
    expect(p.remote).toEqual({ kind: 'invalid', reason: 'not a JSON object (found an array)' });
  });

  it('an item the store cannot hand over (problem set) is a store-side rejection, never pulled or deleted', () => {
    const it2: Item = { key: 'auths/x.json', version: 'v', data: new Uint8Array(), problem: 'encrypted with key id k2, which is not configured' };
    const p = planKey('auths/x.json', valid('{"a":1}'), { entry: { key: 'auths/x.json', version: 'v' }, item: it2 }, { hash: h('{"a":1}'), version: 'v0' });
    expect(p.action).toBe('reject-store');
    expect(p.remote).toEqual({ kind: 'invalid', reason: 'encrypted with key id k2, which is not configured' });
  });

  it('a conflict carries the version seen, the CAS precondition of the winner\'s push', () => {
    const base = { hash: h('{"v":0}'), version: 'v0' };
    const p = planKey('auths/x.json', valid('{"v":1}'), { entry: { key: 'auths/x.json', version: 'v2' }, item: item('auths/x.json', '{"v":2}', 'v2') }, base);
    expect(p.action).toBe('conflict');
    expect(p.remoteVersion).toBe('v2');
  });

  it('a targeted pass skips our own write unless the store announced a change', () => {
    const base = new Map<string, BaseEntry>([['auths/a.json', { hash: h('{"a":1}'), version: 'va' }]]);
    const locals = new Map<string, LocalState>([
      ['auths/a.json', valid('{"a":1}')],
      ['auths/ghost.json', { present: false }],
    ]);
    expect(keysToRead(['auths/a.json', 'auths/ghost.json'], locals, (k) => base.get(k), () => false)).toEqual({ read: [], unchanged: ['auths/a.json'], pushOnBase: [] });
    expect(keysToRead(['auths/a.json', 'auths/ghost.json'], locals, (k) => base.get(k), () => true).read).toEqual(['auths/a.json', 'auths/ghost.json']);
  });

  it('a local edit nobody announced is pushed on the base version without a store read, unless a push of it is unresolved', () => {
    const base = new Map<string, BaseEntry>([['auths/a.json', { hash: h('{"a":1}'), version: 'va' }]]);
    const locals = new Map<string, LocalState>([
      ['auths/a.json', valid('{"a":2}')],
      ['auths/new.json', valid('{"n":1}')],
      ['auths/bad.json', { present: true, valid: false, reason: 'not JSON' }],
    ]);
    const keys = ['auths/a.json', 'auths/new.json', 'auths/bad.json'];
    expect(keysToRead(keys, locals, (k) => base.get(k), () => false, () => true)).toEqual({ read: ['auths/bad.json'], unchanged: [], pushOnBase: ['auths/a.json', 'auths/new.json'] });
    expect(keysToRead(keys, locals, (k) => base.get(k), () => false, (k) => k !== 'auths/a.json').read).toEqual(['auths/a.json', 'auths/bad.json']);
    expect(keysToRead(keys, locals, (k) => base.get(k), (k) => k === 'auths/new.json', () => true).read).toEqual(['auths/new.json', 'auths/bad.json']);
    const edit = planPushOnBase('auths/a.json', locals.get('auths/a.json')!, base.get('auths/a.json'), undefined);
    expect({ action: edit.action, remoteVersion: edit.remoteVersion }).toEqual({ action: 'push', remoteVersion: 'va' });
    const created = planPushOnBase('auths/new.json', locals.get('auths/new.json')!, undefined, undefined);
    expect({ action: created.action, remote: created.remote.kind }).toEqual({ action: 'push', remote: 'absent' });
  });
});

describe('guards on plans', () => {
  const ctx = (over: Partial<Parameters<typeof applyGuards>[1]> = {}): Parameters<typeof applyGuards>[1] => ({
    mode: 'sync',
    limit: { percent: 50 },
    storeCount: 10,
    baseCount: 10,
    countLocalAuths: async () => 5,
    storeDeletes: new DeleteWindow(),
    localDeletes: new DeleteWindow(),
    mirrorRoot: '/m',
    storeId: 's',
    log: silent,
    ...over,
  });
  const del = (key: string, action: 'delete-store' | 'delete-local') => planKey(key, action === 'delete-store' ? { present: false } : valid('{"a":1}'), action === 'delete-store' ? { entry: { key, version: 'v', hash: h('{"a":1}') } } : { entry: null }, { hash: h('{"a":1}'), version: 'v' });

  it('turns store deletions beyond --max-delete into restores, and names the limit', async () => {
    const plans = Array.from({ length: 6 }, (_, i) => del(`auths/k${i}.json`, 'delete-store'));
    expect(plans.every((p) => p.action === 'delete-store')).toBe(true);
    const report = emptyReport();
    await applyGuards(plans, ctx(), report);
    expect(plans.every((p) => p.action === 'pull')).toBe(true);
    expect(report.held[0]!.reason).toMatch(/exceeds --max-delete 50%/);
  });

  it('never deletes the config from the store', async () => {
    const plans = [del('config/config.yaml', 'delete-store')];
    const report = emptyReport();
    await applyGuards(plans, ctx(), report);
    expect(plans[0]!.action).toBe('pull');
  });

  it('holds local deletions when the store lost more than the limit', async () => {
    const plans = Array.from({ length: 6 }, (_, i) => del(`auths/k${i}.json`, 'delete-local'));
    await applyGuards(plans, ctx({ storeCount: 4 }), emptyReport());
    expect(plans.every((p) => p.action === 'held')).toBe(true);
  });

  it('pull mode holds pushes; push mode holds pulls', async () => {
    const push = [planKey('auths/n.json', valid('{"n":1}'), { entry: null }, undefined)];
    await applyGuards(push, ctx({ mode: 'pull' }), emptyReport());
    expect(push[0]!.action).toBe('held');
    const pull = [planKey('auths/n.json', { present: false }, { entry: { key: 'auths/n.json', version: 'v', hash: h('{"n":1}') } }, undefined)];
    await applyGuards(pull, ctx({ mode: 'push' }), emptyReport());
    expect(pull[0]!.action).toBe('held');
  });
});
