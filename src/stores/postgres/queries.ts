import type postgres from 'postgres';
import { ConflictError, ItemRejectedError } from '../../core/errors.js';
import { AUTH_PREFIX, CONFIG_KEY, authIdOf, keyProblem, validateKey, type Key } from '../../core/keys.js';
import { contentHash, toLf } from '../../core/canonical.js';
import type { DeleteOptions, Entry, Item, Listing, PutOptions, SkippedItem, Store } from '../../core/store.js';
import { CONFIG_ID, STORE, type PgContext } from './context.js';

/**
 * The store's SQL. Versions are `md5(content::text)`, computed by the server, so equal versions mean
 * equal content and a conditional UPDATE is a real compare-and-swap.
 */

interface Target {
  table: 'config' | 'auth';
  id: string;
}

/** The data operations of the Store contract, on the shared pool. */
export type PgQueries = Pick<Required<Store>, 'list' | 'get' | 'getMany' | 'put' | 'delete'>;

export function queries(ctx: PgContext): PgQueries {
  const sql = (): ReturnType<PgContext['sql']> => ctx.sql();
  const fail = ctx.fail;
  const CONFIG_TABLE = ctx.configTable;
  const AUTH_TABLE = ctx.authTable;
  const tableOf = (t: Target): string => (t.table === 'config' ? CONFIG_TABLE : AUTH_TABLE);
  const versionExpr = 'md5(content::text)';

  function target(key: Key): Target {
    validateKey(key);
    if (key === CONFIG_KEY) return { table: 'config', id: CONFIG_ID };
    return { table: 'auth', id: authIdOf(key) };
  }

  const decoder = new TextDecoder('utf-8', { fatal: true });

  function encodeContent(key: Key, t: Target, data: Uint8Array): string {
    let text: string;
    try {
      text = decoder.decode(data);
    } catch {
      throw new ItemRejectedError(STORE, 'put', key, 'content is not valid UTF-8');
    }
    if (text.includes('\u0000')) throw new ItemRejectedError(STORE, 'put', key, 'content contains a NUL character (PostgreSQL text and jsonb cannot hold it)');
    if (t.table === 'config') return toLf(text);
    try {
      JSON.parse(text);
    } catch {
      throw new ItemRejectedError(STORE, 'put', key, 'content is not valid JSON (auth_store.content is JSONB)');
    }
    return text;
  }

  async function currentVersion(t: Target): Promise<string | null> {
    const rows = await sql().unsafe(`SELECT ${versionExpr} AS v FROM ${tableOf(t)} WHERE id = $1`, [t.id]);
    return rows.length > 0 ? (rows[0]!.v as string) : null;
  }

  return {
    async list(): Promise<Listing> {
      if (ctx.tablesMissing) return { entries: [], skipped: [] };
      let rows: postgres.RowList<postgres.Row[]>;
      try {
        rows = await sql().unsafe(
          `SELECT 'config' AS t, id, md5(content) AS v FROM ${CONFIG_TABLE}
           UNION ALL
           SELECT 'auth' AS t, id, md5(content::text) AS v FROM ${AUTH_TABLE}
           ORDER BY 1, 2`,
        );
      } catch (err) {
        throw fail('list', undefined, err);
      }
      const entries: Entry[] = [];
      const skipped: SkippedItem[] = [];
      for (const r of rows) {
        const rid = r.id as string;
        if (r.t === 'config') {
          if (rid === CONFIG_ID) entries.push({ key: CONFIG_KEY, version: r.v as string });
          else skipped.push({ id: `config_store:${rid}`, reason: `config_store row other than "${CONFIG_ID}"` });
          continue;
        }
        const key = AUTH_PREFIX + rid;
        const problem = keyProblem(key);
        if (problem) skipped.push({ id: rid, reason: `auth_store id ${problem}` });
        else entries.push({ key, version: r.v as string });
      }
      return { entries, skipped };
    },

    async get(key: Key): Promise<Item | null> {
      const t = target(key);
      if (ctx.tablesMissing) return null;
      let rows: postgres.RowList<postgres.Row[]>;
      try {
        rows = await sql().unsafe(`SELECT content::text AS c, ${versionExpr} AS v FROM ${tableOf(t)} WHERE id = $1`, [t.id]);
      } catch (err) {
        throw fail('get', key, err);
      }
      if (rows.length === 0) return null;
      const data = new Uint8Array(Buffer.from(rows[0]!.c as string, 'utf8'));
      const hash = contentHash(key, data);
      const item: Item = hash ? { key, version: rows[0]!.v as string, data, hash } : { key, version: rows[0]!.v as string, data };
      return item;
    },

    /** One round trip for many keys (cold start, bursts). Missing keys are left out. */
    async getMany(keys: Key[]): Promise<Item[]> {
      if (ctx.tablesMissing) {
        for (const k of keys) target(k);
        return [];
      }
      const ids: string[] = [];
      let wantConfig = false;
      for (const key of keys) {
        const t = target(key);
        if (t.table === 'config') wantConfig = true;
        else ids.push(t.id);
      }
      let rows: postgres.RowList<postgres.Row[]>;
      try {
        rows = await sql().unsafe(
          `SELECT 'auth' AS t, id, content::text AS c, ${versionExpr} AS v FROM ${AUTH_TABLE} WHERE id IN (SELECT jsonb_array_elements_text(($1::text)::jsonb))` +
            (wantConfig ? ` UNION ALL SELECT 'config' AS t, id, content AS c, ${versionExpr} AS v FROM ${CONFIG_TABLE} WHERE id = $2` : ''),
          wantConfig ? [JSON.stringify(ids), CONFIG_ID] : [JSON.stringify(ids)],
        );
      } catch (err) {
        throw fail('getMany', undefined, err);
      }
      return rows.map((r) => {
        const key = r.t === 'config' ? CONFIG_KEY : AUTH_PREFIX + (r.id as string);
        const data = new Uint8Array(Buffer.from(r.c as string, 'utf8'));
        const hash = contentHash(key, data);
        return hash ? { key, version: r.v as string, data, hash } : { key, version: r.v as string, data };
      });
    },

    async put(key: Key, data: Uint8Array, opts?: PutOptions): Promise<Entry> {
      const t = target(key);
      const content = encodeContent(key, t, data);
      const table = tableOf(t);
      // `::text` first: postgres.js would JSON.stringify a parameter it sees typed as jsonb (double encoding).
      const cast = t.table === 'auth' ? '::text::jsonb' : '::text';
      const ifVersion = opts?.ifVersion;
      let rows: postgres.RowList<postgres.Row[]>;
      try {
        if (ifVersion === undefined) {
          rows = await sql().unsafe(
            `INSERT INTO ${table} (id, content, created_at, updated_at) VALUES ($1, $2${cast}, NOW(), NOW())
             ON CONFLICT (id) DO UPDATE SET content = EXCLUDED.content, updated_at = NOW()
             RETURNING ${versionExpr} AS v`,
            [t.id, content],
          );
        } else if (ifVersion === null) {
          rows = await sql().unsafe(
            `INSERT INTO ${table} (id, content, created_at, updated_at) VALUES ($1, $2${cast}, NOW(), NOW())
             ON CONFLICT (id) DO NOTHING RETURNING ${versionExpr} AS v`,
            [t.id, content],
          );
        } else {
          rows = await sql().unsafe(
            `UPDATE ${table} SET content = $2${cast}, updated_at = NOW()
              WHERE id = $1 AND ${versionExpr} = $3 RETURNING ${versionExpr} AS v`,
            [t.id, content, ifVersion],
          );
        }
        if (rows.length === 0) {
          const actual = await currentVersion(t);
          throw new ConflictError(STORE, 'put', key, ifVersion, actual);
        }
      } catch (err) {
        throw fail('put', key, err);
      }
      return { key, version: rows[0]!.v as string };
    },

    async delete(key: Key, opts?: DeleteOptions): Promise<void> {
      const t = target(key);
      const table = tableOf(t);
      try {
        if (opts?.ifVersion === undefined) {
          await sql().unsafe(`DELETE FROM ${table} WHERE id = $1`, [t.id]);
          return;
        }
        const rows = await sql().unsafe(`DELETE FROM ${table} WHERE id = $1 AND ${versionExpr} = $2 RETURNING 1 AS ok`, [
          t.id,
          opts.ifVersion,
        ]);
        if (rows.length > 0) return;
        const actual = await currentVersion(t);
        if (actual !== null) throw new ConflictError(STORE, 'delete', key, opts.ifVersion, actual);
      } catch (err) {
        throw fail('delete', key, err);
      }
    },
  };
}
