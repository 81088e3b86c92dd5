import { redactUrl } from '../core/redact.js';

/** Which store, with its options. Secrets live here and only here; `describeStore` redacts them. */
export type StoreSpec =
  | { readonly kind: 'dir'; readonly path: string }
  | { readonly kind: 'postgres'; readonly dsn: string; readonly schema?: string }
  | {
      readonly kind: 's3';
      readonly endpoint: string;
      readonly bucket: string;
      readonly accessKey?: string;
      readonly secretKey?: string;
      readonly prefix?: string;
      readonly region?: string;
    }
  | { readonly kind: 'git'; readonly url: string; readonly username: string; readonly token?: string; readonly branch?: string };

/** Where the mirror goes by default for each store kind, as CLIProxyAPI names it. */
export const LOCAL_SUBDIR: Record<StoreSpec['kind'], string> = { postgres: 'pgstore', s3: 'objectstore', git: 'gitstore', dir: 'data/mirror' };

export function describeStore(spec: StoreSpec): string {
  switch (spec.kind) {
    case 'dir':
      return `file://${spec.path}`;
    case 'postgres':
      return redactUrl(spec.dsn) + (spec.schema ? ` (schema ${spec.schema})` : '');
    case 's3':
      return `s3://${spec.bucket}/${spec.prefix ?? ''} at ${redactUrl(spec.endpoint)}`;
    case 'git':
      return redactUrl(spec.url) + (spec.branch ? `#${spec.branch}` : '');
  }
}

