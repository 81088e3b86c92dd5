/** A fresh PostgreSQL store schema seeded with credentials, for the benchmarks that start daemons on it. */
import { credId, makeCred, SAMPLE_CONFIG, type Cred } from './creds.js';
import { createStoreSchema, putConfig, quoteIdent, uniqueName, upsertAuths } from './pg.js';
import type { BenchContext } from './report.js';

/**
 * Creates a schema (dropped at cleanup) holding credentials 0..n-1 (`credId(i)`, `makeCred(i)`) and the
 * config, vacuumed and analysed. Returns the schema and the credentials as stored.
 */
export async function seedStore(ctx: BenchContext, prefix: string, n: number): Promise<{ schema: string; creds: Cred[] }> {
  const schema = uniqueName(prefix);
  await createStoreSchema(ctx.admin, ctx.pg.url, schema);
  const creds: Cred[] = [];
  for (let i = 0; i < n; i += 1000) {
    const part = Array.from({ length: Math.min(1000, n - i) }, (_, k) => makeCred(i + k));
    await upsertAuths(ctx.admin, schema, part.map((c, k) => ({ id: credId(i + k), content: JSON.stringify(c) })));
    creds.push(...part);
  }
  await putConfig(ctx.admin, schema, SAMPLE_CONFIG);
  await ctx.admin.unsafe(`VACUUM ANALYZE ${quoteIdent(schema)}.auth_store`);
  return { schema, creds };
}
