import { describe, it, expect } from 'vitest';
import { validateContent, contentHash, canonicalJson, canonicalNumber, parseAuth } from '../../src/core/canonical.js';

const b = (s: string): Uint8Array => Buffer.from(s, 'utf8');

describe('canonical hashing', () => {
  it('treats key order and whitespace in auth JSON as the same content (JSONB reorders keys)', () => {
    const a = contentHash('auths/x.json', b('{"b":{"y":1,"x":[2,{"q":1,"p":0}]},"a":"s"}'));
    const c = contentHash('auths/x.json', b('{\n  "a": "s",\n  "b": { "x": [2, {"p": 0, "q": 1}], "y": 1 }\n}\n'));
    expect(a).toBe(c);
    expect(canonicalJson({ b: 1, a: [{ d: 1, c: 2 }] })).toBe('{"a":[{"c":2,"d":1}],"b":1}');
  });

  it('distinguishes real changes, including array order', () => {
    expect(contentHash('auths/x.json', b('{"a":[1,2]}'))).not.toBe(contentHash('auths/x.json', b('{"a":[2,1]}')));
    expect(contentHash('auths/x.json', b('{"a":"1"}'))).not.toBe(contentHash('auths/x.json', b('{"a":1}')));
  });

  it('hashes the config as LF bytes: CRLF and LF are the same config', () => {
    expect(contentHash('config/config.yaml', b('port: 1\r\nhost: a\r\n'))).toBe(contentHash('config/config.yaml', b('port: 1\nhost: a\n')));
    expect(contentHash('config/config.yaml', b('port: 1\n# c\n'))).not.toBe(contentHash('config/config.yaml', b('port: 1\n')));
  });

  it.each([
    ['auths/x.json', '', 'empty file'],
    ['auths/x.json', '   \n', 'empty file'],
    ['auths/x.json', '[1]', 'not a JSON object (found an array)'],
    ['auths/x.json', 'null', 'not a JSON object (found null)'],
    ['auths/x.json', '"s"', 'not a JSON object (found a string)'],
    ['config/config.yaml', '- a\n- b\n', 'not a YAML mapping'],
    ['config/config.yaml', 'just text', 'not a YAML mapping'],
    ['config/config.yaml', '', 'empty file'],
  ])('rejects %s %j: %s', (key, text, reason) => {
    const v = validateContent(key, b(text));
    expect(v.ok).toBe(false);
    if (!v.ok) expect(v.reason).toBe(reason);
  });

  it('names the parse error of truncated JSON and broken YAML', () => {
    const j = validateContent('auths/x.json', b('{"access_token": "ab'));
    expect(j.ok).toBe(false);
    if (!j.ok) expect(j.reason).toMatch(/^not valid JSON \(/);
    const y = validateContent('config/config.yaml', b('a: [1, 2\nb: :\n'));
    expect(y.ok).toBe(false);
    if (!y.ok) expect(y.reason).toMatch(/^not valid YAML \(/);
  });

  it('never quotes the content in a reason (it may be a token or an API key)', () => {
    const j = validateContent('auths/x.json', b('{"refresh_token": ya29LEAKCAFE, "a": 1}'));
    expect(j).toEqual({ ok: false, reason: 'not valid JSON (error at byte 18)' });
    for (const y of ['a: *sk-LEAKALIAS\n', 'k: !!int sk-LEAKINT\n', '%LEAKDIRECTIVE x\n---\na: 1\n', 'a: [sk-LEAK, 2\n']) {
      const v = validateContent('config/config.yaml', b(y));
      if (!v.ok) expect(v.reason).not.toMatch(/LEAK/);
    }
  });

  it('rejects bytes that are not UTF-8', () => {
    const v = validateContent('auths/x.json', new Uint8Array([0x7b, 0xff, 0x7d]));
    expect(v).toEqual({ ok: false, reason: 'not valid UTF-8' });
  });
});

describe('canonical form: lossless and prototype-safe (issue 8 item 12)', () => {
  const h = (s: string): string | null => contentHash('auths/x.json', b(s));

  it('sees a change of an integer beyond 2^53', () => {
    expect(h('{"n":9007199254740992}')).not.toBe(h('{"n":9007199254740993}'));
    expect(h('{"n":12345678901234567890123}')).not.toBe(h('{"n":12345678901234567890124}'));
    expect(h('{"n":[1.0000000000000000001]}')).not.toBe(h('{"n":[1.0000000000000000002]}'));
  });

  it('sees a change under a __proto__ member, at the top and nested', () => {
    expect(h('{"__proto__":{"a":1}}')).not.toBe(h('{"__proto__":{"a":2}}'));
    expect(h('{"__proto__":{"a":1}}')).not.toBe(h('{}'));
    expect(h('{"x":{"__proto__":[1]}}')).not.toBe(h('{"x":{"__proto__":[2]}}'));
    expect(h('{"constructor":{"prototype":1}}')).not.toBe(h('{"constructor":{"prototype":2}}'));
  });

  it('parseAuth gives prototype-free objects: __proto__ is data, never a prototype', () => {
    const p = parseAuth(b('{"__proto__":{"polluted":true},"last_refresh":"2026-01-01T00:00:00Z","n":{"__proto__":{"x":1}}}'));
    expect(p.ok).toBe(true);
    if (!p.ok) return;
    expect(Object.getPrototypeOf(p.value)).toBeNull();
    expect(Object.hasOwn(p.value, '__proto__')).toBe(true);
    expect((p.value as Record<string, unknown>)['polluted']).toBeUndefined();
    expect(p.value['last_refresh']).toBe('2026-01-01T00:00:00Z');
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    const n = p.value['n'] as Record<string, unknown>;
    expect(Object.getPrototypeOf(n)).toBeNull();
    expect(n['__proto__']).toEqual(Object.assign(Object.create(null) as object, { x: 1 }));
  });

  it('keeps the last of duplicate member names (as JSON.parse and jsonb do)', () => {
    expect(h('{"a":1,"b":2,"a":3}')).toBe(h('{"b":2,"a":3}'));
    expect(h('{"a":1,"a":3}')).not.toBe(h('{"a":1}'));
    const p = parseAuth(b('{"a":1,"a":3}'));
    expect(p.ok && p.value['a']).toBe(3);
  });

  it.each([
    ['1e3', '1000'],
    ['1E+3', '1000'],
    ['10e2', '1000'],
    ['1.50', '1.50'],
    ['1.5', '1.5'],
    ['1.0', '1.0'],
    ['1.50e1', '15.0'],
    ['1.5e-3', '0.0015'],
    ['-1.5e-3', '-0.0015'],
    ['0.00', '0.00'],
    ['-0', '0'],
    ['-0.0', '0.0'],
    ['-0e5', '0'],
    ['0e-2', '0.00'],
    ['123e-1', '12.3'],
    ['12345678901234567890', '12345678901234567890'],
    ['-12345678901234567890.000', '-12345678901234567890.000'],
    ['1e400', '1e400'],
    ['1e-400', '1e-400s400'],
    ['-25e1000', '-25e1000'],
  ])('number %s → %s', (n, want) => {
    expect(canonicalNumber(n)).toBe(want);
  });

  it('gives a long number one compact form whatever its spelling, without expanding a short exponent', () => {
    expect(canonicalNumber('1' + '0'.repeat(400))).toBe(canonicalNumber('1e400'));
    expect(canonicalNumber('0.' + '0'.repeat(399) + '1')).toBe(canonicalNumber('1e-400'));
    expect(canonicalNumber('1e999999999999999999999').length).toBeLessThan(40);
    expect(canonicalNumber('1e1000')).not.toBe(canonicalNumber('1e1001'));
  });

  it('treats every spelling of a number, string and member order as the same content', () => {
    expect(h('{"a":1e3,"s":"\\u00e9\\/"}')).toBe(h('{ "s" : "é/", "a" : 1000 }'));
    expect(h('{"a":"\\u001f\\n"}')).toBe(h('{"a":"\\u001F\\u000a"}'));
    expect(canonicalJson({ s: 'é\u001f"\\' })).toBe('{"s":"é\\u001f\\"\\\\"}');
  });

  it('sorts member names by UTF-16 code units, integer-like names included', () => {
    expect(canonicalJson({ b: 1, a: 2, '10': 3, '9': 4, Z: 5, é: 6 })).toBe('{"10":3,"9":4,"Z":5,"a":2,"b":1,"é":6}');
  });

  it('reads exactly the JSON that JSON.parse reads', () => {
    for (const good of ['{}', ' {"a":[]} ', '{"a":[1,[2,{}],{"b":null}],"c":true,"d":false,"e":-0.5E-2}', '{"":""}', '{"a":"\\ud83d\\ude00"}']) {
      expect(() => JSON.parse(good)).not.toThrow();
      expect(validateContent('auths/x.json', b(good)).ok).toBe(true);
    }
    for (const bad of ['{"a":01}', '{"a":1.}', '{"a":.5}', '{"a":+1}', '{"a":1,}', '[1,]', '{"a" 1}', '{a:1}', "{'a':1}", '{"a":"\t"}', '{"a":"\\x"}', '{"a":"\\u12"}', '{"a":1}}', '{"a":1} x', '{"a":NaN}', '{"a":tru}', '{"a":1']) {
      expect(() => JSON.parse(bad)).toThrow();
      const v = validateContent('auths/x.json', b(bad));
      expect(v.ok).toBe(false);
      if (!v.ok) expect(v.reason).toMatch(/^not valid JSON \(.*error at byte \d+\)$/);
    }
  });
});

describe('deep nesting (issue 8 item 8)', () => {
  it.each([600, 10_000, 100_000])('refuses a %i-deep JSON object or array as invalid content, never a stack overflow', (depth) => {
    const obj = '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
    const arr = '{"a":' + '['.repeat(depth) + ']'.repeat(depth) + '}';
    for (const text of [obj, arr]) {
      expect(validateContent('auths/x.json', b(text))).toEqual({ ok: false, reason: 'nested deeper than 512 levels' });
      expect(contentHash('auths/x.json', b(text))).toBeNull();
      expect(parseAuth(b(text))).toEqual({ ok: false, reason: 'nested deeper than 512 levels' });
    }
  });

  it('accepts 512 levels', () => {
    const text = '{"a":'.repeat(512) + '1' + '}'.repeat(512);
    expect(validateContent('auths/x.json', b(text)).ok).toBe(true);
    const arr = '{"a":' + '['.repeat(511) + ']'.repeat(511) + '}';
    expect(validateContent('auths/x.json', b(arr)).ok).toBe(true);
  });

  it('canonicalJson of a deep JavaScript value does not recurse', () => {
    let v: unknown = 1;
    for (let i = 0; i < 20_000; i++) v = { a: v };
    expect(canonicalJson(v)).toBe('{"a":'.repeat(20_000) + '1' + '}'.repeat(20_000));
  });

  it.each([
    ['flow sequences', (n: number) => 'a: ' + '['.repeat(n) + ']'.repeat(n) + '\n'],
    ['flow mappings', (n: number) => 'a: ' + '{b: '.repeat(n) + '1' + '}'.repeat(n) + '\n'],
    ['block mappings', (n: number) => Array.from({ length: n }, (_, i) => ' '.repeat(i) + 'k:').join('\n') + '\n' + ' '.repeat(n) + 'v\n'],
  ])('refuses a deeply nested config (%s) as invalid content', (_name, make) => {
    for (const n of [600, 10_000]) {
      expect(validateContent('config/config.yaml', b(make(n)))).toEqual({ ok: false, reason: 'nested deeper than 512 levels' });
    }
    expect(validateContent('config/config.yaml', b(make(100))).ok).toBe(true);
  });
});
