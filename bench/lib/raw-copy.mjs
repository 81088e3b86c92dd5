// Floor for the operator-command benchmarks: the raw store read/write of the same items through the
// same store modules (dist/), with the same batch size and parallelism as the commands, and nothing
// else (no validation, no hashing, no conditional writes, no re-read).
//   node bench/lib/raw-copy.mjs copy FROM_URL TO_URL     list FROM, read in batches of 256 (getMany, else 16 parallel get), put into TO (8 parallel)
//   node bench/lib/raw-copy.mjs read FROM_URL FILE       list FROM, read in batches of 256 (getMany, else 16 parallel get), append the bytes to FILE
import { open } from 'node:fs/promises';
import { parseStoreUrl } from '../../dist/config/store-spec.js';
import { openStore } from '../../dist/stores/registry.js';

const [mode, from, to] = process.argv.slice(2);
const spec = (u) => parseStoreUrl(u, (name) => process.env[name], process.cwd());
const src = await openStore(spec(from));
await src.init();
const { entries } = await src.list();
const keys = entries.map((e) => e.key);
let dst;
let fh;
if (mode === 'copy') {
  dst = await openStore(spec(to));
  await dst.init();
} else fh = await open(to, 'w', 0o600);
let n = 0;
for (let i = 0; i < keys.length; i += 256) {
  const group = keys.slice(i, i + 256);
  let items = [];
  if (src.getMany) items = await src.getMany(group);
  else {
    let k = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (k < group.length) {
          const it = await src.get(group[k++]);
          if (it) items.push(it);
        }
      }),
    );
  }
  if (dst) {
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < items.length) {
          const it = items[next++];
          await dst.put(it.key, it.data);
        }
      }),
    );
  } else for (const it of items) await fh.write(it.data);
  n += items.length;
}
if (fh) {
  await fh.sync();
  await fh.close();
}
await dst?.close();
await src.close();
process.stdout.write(`${n}\n`);
