import { redactUrl } from '../core/redact.js';
import { dsnLabel, dsnProblem, dsnSecrets } from './postgres/settings.js';

/** Which store, with its options. Secrets live here and only here; `describeStore` redacts them. */
export type StoreSpec =
  | { readonly kind: 'dir'; readonly path: string }
  | { readonly kind: 'postgres'; readonly dsn: string; readonly schema?: string }
  | {
      readonly kind: 's3';
      /** With its scheme: `http://` (no TLS) or `https://`. */
      readonly endpoint: string;
      readonly bucket: string;
      /** Both or neither; neither = the AWS SDK's default credential chain (env, shared config, web identity). */
      readonly accessKey?: string;
      readonly secretKey?: string;
      /** Without leading or trailing `/`. */
      readonly prefix?: string;
      /** Default `us-east-1`. */
      readonly region?: string;
      /** `OBJECTSTORE_VIRTUAL_HOSTED_STYLE=true`; path-style by default. */
      readonly virtualHostedStyle?: boolean;
      /** `OBJECTSTORE_CREATE_BUCKET=false` turns off creating a missing bucket. Default true. */
      readonly createBucket?: boolean;
      /** `OBJECTSTORE_CONDITIONAL_WRITES`: `auto` (probe, default), `require`, `off`. */
      readonly conditionalWrites?: 'auto' | 'require' | 'off';
      /** `OBJECTSTORE_POLL_INTERVAL`, default 1 s. */
      readonly pollIntervalMs?: number;
    }
  | {
      readonly kind: 'git';
      /** `https://…`, `http://…`, `file://…` or `ssh://…` (never with the token in it). */
      readonly url: string;
      /** HTTP Basic user; default `git`. */
      readonly username: string;
      readonly token?: string;
      /** Empty = the remote's default branch. */
      readonly branch?: string;
      /** `CREDSYNC_GIT_AUTHOR`, `Name <email>`; default `credsync <credsync@localhost>`. */
      readonly author?: string;
      /** `GITSTORE_POLL_INTERVAL`, default 2 s. */
      readonly pollIntervalMs?: number;
    };

/** Where the mirror goes by default for each store kind, as CLIProxyAPI names it. */
export const LOCAL_SUBDIR: Record<StoreSpec['kind'], string> = { postgres: 'pgstore', s3: 'objectstore', git: 'gitstore', dir: 'data/mirror' };

export function describeStore(spec: StoreSpec): string {
  switch (spec.kind) {
    case 'dir':
      return `file://${spec.path}`;
    case 'postgres':
      return dsnLabel(spec.dsn) + (spec.schema ? ` (schema ${spec.schema})` : '');
    case 's3':
      return `s3://${spec.bucket}/${spec.prefix ?? ''} at ${redactUrl(spec.endpoint)}`;
    case 'git':
      return redactUrl(spec.url) + (spec.branch ? `#${spec.branch}` : '');
  }
}


/** Every secret a spec carries, for the process-wide scrubber. */
export function secretsOf(spec: StoreSpec): string[] {
  switch (spec.kind) {
    case 'dir':
      return [];
    case 'postgres':
      return dsnSecrets(spec.dsn);
    case 's3':
      return [spec.secretKey, spec.accessKey].filter((x): x is string => !!x);
    case 'git':
      return spec.token ? [spec.token, `${spec.username}:${spec.token}`] : [];
  }
}

/** Why the spec cannot work, found without any I/O (e.g. a DSN that does not parse); null when none. */
export function specProblem(spec: StoreSpec): string | null {
  return spec.kind === 'postgres' ? dsnProblem(spec.dsn) : null;
}
