import { describe, it, expect } from 'vitest';
import { keyProblem, validateKey, authIdOf, keyOfAuthId } from '../../src/core/keys.js';
import { InvalidKeyError } from '../../src/core/errors.js';

describe('key validation (invariant 6)', () => {
  it.each(['config/config.yaml', 'auths/claude-user@example.com.json', 'auths/team/x.json', 'auths/a+b_c-1.json', 'auths/..json.json'.replace('..', 'x.')])('accepts %s', (k) => {
    expect(keyProblem(k)).toBeNull();
  });

  it.each([
    ['', 'empty key'],
    ['/auths/x.json', 'is absolute (leading "/")'],
    ['auths/../x.json', 'has a ".." segment'],
    ['auths/./x.json', 'has a "." segment'],
    ['auths//x.json', 'has an empty path segment'],
    ['auths/x\\y.json', 'contains a backslash'],
    ['auths/x\u0000.json', 'contains a control character'],
    ['auths/x\n.json', 'contains a control character'],
    ['auths/x.txt', 'does not end in .json'],
    ['auths/.json', 'does not end in .json'],
    ['auths/.hidden.json', 'has a hidden (dot-prefixed) segment'],
    ['config/other.yaml', 'is neither config/config.yaml nor under auths/'],
    ['C:/auths/x.json', 'has a drive letter'],
    ['auths/' + 'a'.repeat(250) + '.json', 'longer than 255 bytes'],
  ])('rejects %j: %s', (k, reason) => {
    expect(keyProblem(k)).toBe(reason);
    expect(() => validateKey(k)).toThrow(InvalidKeyError);
  });

  it('counts bytes, not characters, against the 255 limit', () => {
    const k = 'auths/' + 'é'.repeat(123) + '.json'; // 6 + 246 + 5 = 257 bytes, 134 characters
    expect(keyProblem(k)).toBe('longer than 255 bytes');
  });

  it('maps CLIProxyAPI auth ids both ways', () => {
    expect(authIdOf('auths/team/x.json')).toBe('team/x.json');
    expect(keyOfAuthId('claude-a@b.com.json')).toBe('auths/claude-a@b.com.json');
    expect(() => keyOfAuthId('../x.json')).toThrow(/\.\./);
  });
});
