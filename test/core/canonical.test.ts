import { describe, it, expect } from 'vitest';
import { validateContent, contentHash, canonicalJson } from '../../src/core/canonical.js';

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
    expect(j).toEqual({ ok: false, reason: 'not valid JSON' });
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
