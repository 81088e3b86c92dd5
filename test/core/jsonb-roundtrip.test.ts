/**
 * The canonical form against the real thing: every document is sent through a PostgreSQL `jsonb` column
 * (`$1::text::jsonb::text`, what the store reads back) and must hash the same before and after — while
 * documents that differ only in a big integer, a `__proto__` member or a number's scale still differ
 * after the round trip. Real server only (`inject('pgUrl')`, see test/support/global-setup.ts).
 */
import { describe, it, expect, inject, beforeAll, afterAll } from 'vitest';
import { adminSql, type AdminSql } from '../support/pg-server.js';
import { canonicalNumber, contentHash, MAX_PLAIN_NUMBER } from '../../src/core/canonical.js';

const pgUrl = inject('pgUrl');
const skipReason = inject('pgSkipReason');
const h = (s: string): string | null => contentHash('auths/x.json', Buffer.from(s, 'utf8'));

/** Documents that JSONB normalises (order, whitespace, duplicates, number spellings, escapes) or that are hard to keep. */
const corpus: string[] = [
  '{"type":"claude","email":"a@b.com","expired":"2026-01-01T00:00:00Z","access_token":"sk-ant-xyz","n":1}',
  '{ "b" : { "y" : 1 , "x" : [ 2 , { "q" : 1 , "p" : 0 } ] } ,\n\t"a" : "s" }\r\n',
  '{"a":1,"b":2,"a":3}',
  '{"aa":1,"b":2,"ccc":3,"":4,"B":5,"é":6,"10":7,"9":8,"😀":9,"ｚ":10}',
  '{"n":9007199254740993,"m":-9007199254740993,"big":123456789012345678901234567890}',
  '{"n":1e3,"m":1E+3,"k":10e2,"j":1000.0,"i":1.50,"h":1.5e-3,"g":-0,"f":-0.0,"e":0e-2,"d":1.0E-10,"c":12.3e-1,"b":5e-324,"a":1.7976931348623157e308}',
  '{"x":123456789.123456789e5,"y":-1.000000000000000000001,"z":0.1,"w":100e-2,"v":3.14159265358979323846264338327950288}',
  '{"s":"\\u00e9\\/\\b\\f\\n\\r\\t\\"\\\\","t":"é/","u":"\\u001f\\u007f\\u2028\\u2029","v":"\\ud83d\\ude00","w":"😀","x":"<>&\'"}',
  '{"__proto__":{"a":1},"constructor":{"prototype":{"b":2}},"toString":3,"hasOwnProperty":4}',
  '{"deep":' + '{"a":'.repeat(100) + '[1,[2,[3]]]' + '}'.repeat(100) + '}',
  '{"arr":[],"obj":{},"t":true,"f":false,"z":null,"mixed":[1,"1",true,null,{},[],1.0,-1e-7]}',
  '{"key with spaces":1,"key\\nnewline":2,"key\\"quote":3,"\\u0041":4,"A":5}',
];

/** Pairs that must stay different after the round trip. */
const distinct: [string, string][] = [
  ['{"n":9007199254740992}', '{"n":9007199254740993}'],
  ['{"n":12345678901234567890}', '{"n":12345678901234567891}'],
  ['{"__proto__":{"a":1}}', '{"__proto__":{"a":2}}'],
  ['{"__proto__":{"a":1}}', '{}'],
  ['{"n":1.5}', '{"n":1.50}'],
  ['{"n":0.1}', '{"n":0.10000000000000001}'],
  ['{"a":[1,2]}', '{"a":[2,1]}'],
];

/** Numbers whose printed form must be exactly PostgreSQL's. */
const numbers = [
  '0', '-0', '0.0', '-0.000', '0e5', '0e-5', '1', '-1', '1e0', '1e3', '1E+3', '1e-3', '1.5e-3', '-1.5e-3', '1.50', '1.50e1', '1.50e2',
  '1.50e-2', '123e-1', '12.30e-5', '9007199254740993', '-12345678901234567890.000', '1.7976931348623157e308', '5e-324', '2.5e-50',
  '1e100', '1e127', '-1e126', '0.0000000000000000000000000001', '123456789.987654321e-20', '1e-120',
];

describe.skipIf(!pgUrl)(`canonical form across a real jsonb round trip${pgUrl ? '' : ` (skipped: ${skipReason})`}`, () => {
  let sql: AdminSql;
  beforeAll(() => {
    sql = adminSql(pgUrl);
  });
  afterAll(async () => {
    await sql?.end({ timeout: 5 });
  });
  const roundTrip = async (text: string): Promise<string> => {
    const rows = await sql.unsafe('SELECT $1::text::jsonb::text AS t', [text]);
    return rows[0]!.t as string;
  };

  it('hashes every document of the corpus the same before and after jsonb', async () => {
    for (const doc of corpus) {
      const back = await roundTrip(doc);
      expect(h(back), `${doc} → ${back}`).not.toBeNull();
      expect(h(back), `${doc} → ${back}`).toBe(h(doc));
      // and jsonb's own output is a fixed point
      expect(h(await roundTrip(back))).toBe(h(doc));
    }
  });

  it('keeps documents that differ only in a big integer, a __proto__ member or a scale different after jsonb', async () => {
    for (const [a, b] of distinct) {
      const [ra, rb] = [await roundTrip(a), await roundTrip(b)];
      expect(ra).not.toBe(rb); // jsonb itself keeps them apart …
      expect(h(ra), `${a} vs ${b}`).not.toBe(h(rb)); // … and so must the hash
      expect(h(a)).not.toBe(h(b));
    }
  });

  it('prints every number exactly as jsonb does (up to MAX_PLAIN_NUMBER characters)', async () => {
    for (const n of numbers) {
      const back = await roundTrip(`[${n}]`);
      const printed = back.slice(1, -1);
      if (printed.length <= MAX_PLAIN_NUMBER) expect(canonicalNumber(n), `${n}: jsonb prints ${printed}`).toBe(printed);
      expect(h(`{"n":${n}}`)).toBe(h(`{"n":${printed}}`));
    }
  });
});
