// Runs s3rver in its own process: `node --openssl-legacy-provider s3rver-runner.mjs DIR [PORT]`.
// (s3rver encrypts ListObjectsV2 continuation tokens with DES, which OpenSSL 3 only offers through
// its legacy provider: without the flag every paginated listing fails.)
// Prints one JSON line {"port":N} on stdout once listening; SIGTERM/SIGINT close it and exit 0.
import S3rver from 's3rver';

const [dir, portArg] = process.argv.slice(2);
if (!dir) {
  console.error('usage: node --openssl-legacy-provider s3rver-runner.mjs DIR [PORT]');
  process.exit(2);
}
const server = new S3rver({ address: '127.0.0.1', port: Number(portArg ?? 0), directory: dir, silent: true });
const { port } = await server.run();
process.stdout.write(JSON.stringify({ port }) + '\n');
let closing = false;
const stop = async () => {
  if (closing) return;
  closing = true;
  await server.close().catch(() => {});
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// Exit with the parent: a test runner that dies must not leave the server behind.
process.stdin.on('end', stop);
process.stdin.resume();
