import { describe, it, expect } from 'vitest';
import { keyProblem, validateKey, authIdOf, keyOfAuthId } from '../../src/core/keys.js';
import { InvalidKeyError } from '../../src/core/errors.js';

describe('key validation (invariant 6)', () => {
  it.each([
    'config/config.yaml',
    'auths/claude-user@example.com.json',
    'auths/team/x.json',
    'auths/a+b_c-1.json',
    'auths/x.json.json',
    // CLIProxyAPI's stores take these (any name ending in .json in any case, dot-files included):
    'auths/.hidden.json',
    'auths/team/.dot.json',
    'auths/.team/x.json',
    'auths/UPPER.JSON',
    'auths/Mixed.Json',
    'auths/.json',
    'auths/..x.json',
    'auths/credsync.json',
    'auths/x.credsync.json',
  ])('accepts %s', (k) => {
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
    ['auths/x.json.tmp', 'does not end in .json'],
    ['auths/', 'has an empty path segment'],
    ['auths/team/', 'has an empty path segment'],
    ['auths/.credsync/x.json', 'has a segment starting with ".credsync" (reserved for credsync)'],
    ['auths/team/.credsync/x.json', 'has a segment starting with ".credsync" (reserved for credsync)'],
    ['auths/.CREDSYNC/x.json', 'has a segment starting with ".credsync" (reserved for credsync)'],
    ['auths/.credsync-abc.json', 'has a segment starting with ".credsync" (reserved for credsync)'],
    ['auths/.credsync-lock/x.json', 'has a segment starting with ".credsync" (reserved for credsync)'],
    ['auths/.credsync-0a1b2c.tmp', 'does not end in .json'],
    ['auths/../../etc/x.json', 'has a ".." segment'],
    ['auths/x\u007f.json', 'contains a control character'],
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
