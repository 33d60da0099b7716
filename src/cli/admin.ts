/**
 * Commands that work on a data directory directly: server, account create,
 * keygen, keys rotate/rekey, offline audit verify. Everything else in the
 * CLI is an HTTP client.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigError, loadServerConfig } from '../config.js';
import { verifyChain } from '../audit/chain.js';
import { CofferError } from '../errors.js';
import { decodeMasterKey, DataKeyMismatchError, generateMasterKey } from '../secrets/barrier.js';
import { rekeyMaster, rotateDataKey } from '../secrets/rotation.js';
import { SchemaError } from '../store/db.js';
import { createAccountIn, devMasterKey, LOCK_FILE, openVault, readMasterKey, startServer } from '../server.js';
import { CliError, type Io } from './io.js';

type Flags = Record<string, string | boolean | undefined>;

function dataDirOf(flags: Flags, env: NodeJS.ProcessEnv): string {
  const dir = (typeof flags['data-dir'] === 'string' ? flags['data-dir'] : undefined) ?? env.COFFER_DATA_DIR;
  if (!dir) throw new CliError('--data-dir (or COFFER_DATA_DIR) is required', 2);
  return resolve(dir);
}

function masterKeyOf(flags: Flags, env: NodeJS.ProcessEnv, dataDir: string): Buffer {
  const file = typeof flags['data-key-file'] === 'string' ? flags['data-key-file'] : env.COFFER_DATA_KEY_FILE;
  if (env.COFFER_DATA_KEY || file) return readMasterKey(env.COFFER_DATA_KEY, file);
  if (existsSync(join(dataDir, 'dev-data-key'))) return devMasterKey(dataDir).key;
  throw new CliError('a data key is required: set COFFER_DATA_KEY or pass --data-key-file', 2);
}

/** Refuses to work on a data directory a running server holds (its keys would go stale). */
function requireServerStopped(dataDir: string): void {
  const lock = join(dataDir, LOCK_FILE);
  if (!existsSync(lock)) return;
  const pid = Number(readFileSync(lock, 'utf8').trim());
  let alive = false;
  try {
    process.kill(pid, 0);
    alive = Number.isInteger(pid) && pid > 0;
  } catch {
    alive = false;
  }
  if (alive) throw new CliError(`the server (pid ${pid}) is running on ${dataDir}; stop it before changing keys`, 1);
}

function explainOpenError(err: unknown): never {
  if (err instanceof DataKeyMismatchError || err instanceof SchemaError) throw new CliError(err.message, 1);
  if (err instanceof CofferError) throw new CliError(err.message, 1);
  throw err;
}

export async function cmdServer(flags: Flags, env: NodeJS.ProcessEnv, io: Io): Promise<number> {
  let config;
  try {
    config = loadServerConfig(flags, env);
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(err.message, 2);
    throw err;
  }
  if (config.dev) {
    io.err('');
    io.err('  ************************************************************************');
    io.err('  *  DEVELOPMENT MODE — NOT FOR PRODUCTION                               *');
    io.err(`  *  The data key is stored next to the database in ${config.dataDir}`.padEnd(74) + '*');
    io.err('  *  Anyone who can read that directory can decrypt every secret.       *');
    io.err('  ************************************************************************');
    io.err('');
  }
  let server;
  try {
    server = await startServer(config, { log: (l) => io.err(l) });
  } catch (err) {
    explainOpenError(err);
  }
  if (server.devAdmin) {
    io.out(`Created account '${server.devAdmin.account}'. Admin credentials (shown once, keep them safe):`);
    io.out(`  login:   ${server.devAdmin.login}`);
    io.out(`  api key: ${server.devAdmin.api_key}`);
    io.out(`Try: curl -s -H "Content-Type: text/plain" --data '<api key>' ${server.url}/authn/${server.devAdmin.account}/admin/authenticate`);
  }
  io.err(`coffer ${config.dev ? '(dev) ' : ''}listening on ${server.url} (data in ${resolve(config.dataDir)})`);
  await new Promise<void>((resolveStop) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      void server.close().then(resolveStop);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  return 0;
}

export async function cmdAccountCreate(name: string | undefined, flags: Flags, env: NodeJS.ProcessEnv, io: Io): Promise<number> {
  if (!name) throw new CliError('usage: coffer account create NAME --data-dir DIR [--json]', 2);
  const dataDir = dataDirOf(flags, env);
  const vault = await openVault({ dataDir, masterKey: masterKeyOf(flags, env, dataDir) }).catch(explainOpenError);
  try {
    const created = createAccountIn(vault, name);
    await vault.services.audit.drain();
    if (flags.json) io.out(JSON.stringify(created));
    else {
      io.out(`Created account '${created.account}' with user '${created.login}'.`);
      io.out(`API key for ${created.login} (shown once): ${created.api_key}`);
    }
    return 0;
  } catch (err) {
    if (err instanceof CofferError) throw new CliError(err.message, 1);
    throw err;
  } finally {
    vault.close();
  }
}

export function cmdKeygen(io: Io): number {
  io.out(generateMasterKey());
  return 0;
}

export async function cmdKeys(sub: string | undefined, flags: Flags, env: NodeJS.ProcessEnv, io: Io): Promise<number> {
  if (sub !== 'rotate' && sub !== 'rekey') throw new CliError('usage: coffer keys rotate|rekey --data-dir DIR', 2);
  const dataDir = dataDirOf(flags, env);
  requireServerStopped(dataDir);
  const vault = await openVault({ dataDir, masterKey: masterKeyOf(flags, env, dataDir) }).catch(explainOpenError);
  try {
    if (sub === 'rotate') {
      const r = rotateDataKey(vault.services);
      io.out(
        `Rotated to data key version ${r.newKeyVersion}: re-encrypted ${r.secrets} secret versions, ${r.signingKeys} signing keys, ` +
          `${r.apiKeys} API keys; retired key versions ${r.retiredKeyVersions.join(', ') || 'none'}.`,
      );
    } else {
      const file = flags['new-key-file'];
      if (typeof file !== 'string') throw new CliError('coffer keys rekey needs --new-key-file FILE', 2);
      const newKey = decodeMasterKey(readFileSync(file, 'utf8'), `new key file ${file}`);
      rekeyMaster(vault.services, newKey);
      io.out('Re-wrapped the keyring under the new master key. Start the server with the new key from now on.');
    }
    return 0;
  } finally {
    vault.close();
  }
}

export async function cmdAuditVerifyOffline(flags: Flags, env: NodeJS.ProcessEnv, io: Io): Promise<number> {
  const dataDir = dataDirOf(flags, env);
  const vault = await openVault({ dataDir, masterKey: masterKeyOf(flags, env, dataDir) }).catch(explainOpenError);
  try {
    const result = verifyChain(vault.services.store.audit.iterate());
    if (flags.json) io.out(JSON.stringify(result));
    else if (result.ok) io.out(`audit chain OK: ${result.checked} events verified (last seq ${result.lastSeq})`);
    else io.out(`audit chain BROKEN at seq ${result.firstBadSeq}: ${result.reason}`);
    return result.ok ? 0 : 3;
  } finally {
    vault.close();
  }
}
