/**
 * Commands that work on the database directly: server, account create,
 * keygen, keys rotate/rekey, offline audit verify — on the SQLite file in a
 * data directory, or with --database (COFFER_DATABASE_URL) on PostgreSQL.
 * Everything else in the CLI is an HTTP client.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigError, loadServerConfig } from '../config.js';
import { verifyChain } from '../audit/chain.js';
import { CofferError, storageFailureOf } from '../errors.js';
import { decodeMasterKey, DataKeyMismatchError, generateMasterKey } from '../secrets/barrier.js';
import { rekeyMaster, rotateDataKey } from '../secrets/rotation.js';
import { createAuditStore } from '../store/audit.js';
import { openDatabase, SchemaError } from '../store/db.js';
import { ChainVerifier } from '../audit/chain.js';
import { createPostgresClient } from '../store/postgres/client.js';
import { migratePostgres } from '../store/postgres/migrate.js';
import { createPostgresStore } from '../store/postgres/index.js';
import { copySqliteToPostgres, CopyRefusedError } from '../store/copy.js';
import { createAccountIn, DB_FILE, devMasterKey, LOCK_FILE, openVault, readMasterKey, startServer } from '../server.js';
import { brokenSeqsLine } from './audit-report.js';
import { CliError, type Io } from './io.js';

type Flags = Record<string, string | boolean | undefined>;

function dataDirOf(flags: Flags, env: NodeJS.ProcessEnv): string {
  const dir = (typeof flags['data-dir'] === 'string' ? flags['data-dir'] : undefined) ?? env.COFFER_DATA_DIR;
  if (!dir) throw new CliError('--data-dir (or COFFER_DATA_DIR) is required', 2);
  return resolve(dir);
}

/** The PostgreSQL URL of --database or COFFER_DATABASE_URL; undefined means the SQLite file of --data-dir. */
function databaseOf(flags: Flags, env: NodeJS.ProcessEnv): string | undefined {
  const url = (typeof flags.database === 'string' ? flags.database : undefined) ?? (env.COFFER_DATABASE_URL || undefined);
  if (url !== undefined && !/^postgres(ql)?:\/\//.test(url)) throw new CliError('--database must be a postgres:// URL', 2);
  return url;
}

/** The data directory, which a PostgreSQL database does not need (it holds only the dev key then). */
function optionalDataDirOf(flags: Flags, env: NodeJS.ProcessEnv): string | undefined {
  const dir = (typeof flags['data-dir'] === 'string' ? flags['data-dir'] : undefined) ?? env.COFFER_DATA_DIR;
  return dir ? resolve(dir) : undefined;
}

function masterKeyOf(flags: Flags, env: NodeJS.ProcessEnv, dataDir: string | undefined): Buffer {
  const file = typeof flags['data-key-file'] === 'string' ? flags['data-key-file'] : env.COFFER_DATA_KEY_FILE;
  if (env.COFFER_DATA_KEY || file) return readMasterKey(env.COFFER_DATA_KEY, file);
  if (dataDir && existsSync(join(dataDir, 'dev-data-key'))) return devMasterKey(dataDir).key;
  throw new CliError('a data key is required: set COFFER_DATA_KEY or pass --data-key-file', 2);
}

/** The live process (other than this one) that holds the data directory's lock file, if any. */
function lockHolder(dataDir: string): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(join(dataDir, LOCK_FILE), 'utf8').trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else — still a holder.
    return (err as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined;
  }
}

/**
 * Refuses to work on a data directory another process holds: a running server
 * keeps the data keys in memory, so rotating or rekeying under it would make it
 * write values under a destroyed key. A lock left by a crashed process (its pid
 * is gone) is taken over.
 */
function requireServerStopped(dataDir: string, doing: string): void {
  const pid = lockHolder(dataDir);
  if (pid !== undefined) {
    throw new CliError(
      `a Coffer process (pid ${pid}) holds ${dataDir} (${LOCK_FILE}); stop it before ${doing}. ` +
        `If no Coffer process runs there, delete ${join(dataDir, LOCK_FILE)}.`,
      1,
    );
  }
}

/** Holds the data directory for a key command, so that a server started meanwhile refuses to start. */
function claimDataDir(dataDir: string, doing: string): () => void {
  requireServerStopped(dataDir, doing);
  const lock = join(dataDir, LOCK_FILE);
  rmSync(lock, { force: true }); // a stale lock (its process is gone)
  try {
    writeFileSync(lock, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
  } catch (err) {
    // Only EEXIST means someone else got there first; anything else (ENOSPC, EROFS, EACCES…) is reported as itself.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new CliError(`another Coffer process claimed ${dataDir} at the same moment; try again`, 1);
    }
    // `wx` created the file before the write failed (a full disk leaves it empty): it is ours, and must not stay.
    rmSync(lock, { force: true });
    throw new CliError(`cannot claim ${dataDir}: writing ${lock} failed: ${(err as Error).message}`, 1);
  }
  return () => {
    try {
      if (readFileSync(lock, 'utf8').trim() === String(process.pid)) rmSync(lock, { force: true });
    } catch {
      // already gone
    }
  };
}

/** Key and audit commands work on an existing database only; a mistyped directory must not become a new vault. */
function requireDatabase(dataDir: string): string {
  const file = join(dataDir, DB_FILE);
  if (!existsSync(file)) throw new CliError(`no Coffer database at ${file} (check --data-dir)`, 1);
  return file;
}

/** The SQLite file, read-only (no migration applied: an outdated schema is refused with what to do). */
function openReadOnly(file: string) {
  try {
    return openDatabase(file, { readonly: true });
  } catch (err) {
    if (err instanceof SchemaError) throw new CliError(err.message, 1);
    throw new CliError(`cannot open ${file}: ${(err as Error).message}`, 1);
  }
}

function explainOpenError(err: unknown, dataDir?: string): never {
  if (err instanceof DataKeyMismatchError || err instanceof SchemaError) throw new CliError(err.message, 1);
  const storage = storageFailureOf(err);
  if (storage) throw new CliError(`cannot open the data directory${dataDir ? ` ${dataDir}` : ''}: ${storage.message} (${storage.code})`, 1);
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
    if (config.dataKey || config.dataKeyFile) {
      // The given key is used; nothing is written next to the database.
      io.err(`  *  Account '${config.devAccount}' is created on first start, its key printed once`.padEnd(74) + '*');
    } else {
      io.err(`  *  The data key is stored next to the database in ${config.dataDir}`.padEnd(74) + '*');
      io.err('  *  Anyone who can read that directory can decrypt every secret.       *');
    }
    io.err('  ************************************************************************');
    io.err('');
  }
  // Claimed (O_EXCL) before anything is opened, so a key command started at the same moment cannot slip in;
  // the running server keeps the same pid in the file and removes it when it stops.
  const dataDir = resolve(config.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const release = claimDataDir(dataDir, 'starting another server on it');
  let server;
  try {
    server = await startServer(config, { log: (l) => io.err(l) });
  } catch (err) {
    release();
    explainOpenError(err, dataDir);
  }
  if (server.devAdmin) {
    io.out(`Created account '${server.devAdmin.account}'. Admin credentials (shown once, keep them safe):`);
    io.out(`  login:   ${server.devAdmin.login}`);
    io.out(`  api key: ${server.devAdmin.api_key}`);
    io.out(`Try: curl -s -H "Content-Type: text/plain" --data '<api key>' ${server.url}/authn/${server.devAdmin.account}/admin/authenticate`);
  }
  io.err(`coffer ${config.dev ? '(dev) ' : ''}listening on ${server.url} (data in ${config.database ? `PostgreSQL ${config.database.replace(/\/\/[^@/]*@/, '//')}` : resolve(config.dataDir)})`);
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
  if (!name) throw new CliError('usage: coffer account create NAME (--data-dir DIR | --database URL) [--json]', 2);
  const database = databaseOf(flags, env);
  const dataDir = database ? optionalDataDirOf(flags, env) : dataDirOf(flags, env);
  const vault = await openVault({ dataDir: dataDir ?? '', database, masterKey: masterKeyOf(flags, env, dataDir) }).catch(explainOpenError);
  try {
    const created = await createAccountIn(vault, name);
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
    await vault.close();
  }
}

export function cmdKeygen(io: Io): number {
  io.out(generateMasterKey());
  return 0;
}

/** Reads and checks the new master key before anything is opened, so a bad file changes nothing. */
function newMasterKeyOf(flags: Flags): Buffer {
  const file = flags['new-key-file'];
  if (typeof file !== 'string') throw new CliError('coffer keys rekey needs --new-key-file FILE (generate the key with `coffer keygen`)', 2);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read the new key file: ${(err as Error).message}`, 1);
  }
  try {
    return decodeMasterKey(text, `new key file ${file}`);
  } catch (err) {
    throw new CliError((err as Error).message, 1);
  }
}

export async function cmdKeys(sub: string | undefined, flags: Flags, env: NodeJS.ProcessEnv, io: Io): Promise<number> {
  if (sub !== 'rotate' && sub !== 'rekey') throw new CliError('usage: coffer keys rotate|rekey (--data-dir DIR | --database URL)', 2);
  const database = databaseOf(flags, env);
  const dataDir = database ? optionalDataDirOf(flags, env) : dataDirOf(flags, env);
  if (!database) requireDatabase(dataDir!);
  const masterKey = masterKeyOf(flags, env, dataDir);
  const newKey = sub === 'rekey' ? newMasterKeyOf(flags) : undefined;
  // SQLite: the file's one server must be stopped. PostgreSQL: nodes keep serving; the rotation holds the
  // cluster-wide write lock while it runs and every node reloads the keyring from the change feed.
  const release = database ? () => undefined : claimDataDir(dataDir!, sub === 'rotate' ? 'rotating the data key' : 'rekeying');
  try {
    const vault = await openVault({ dataDir: dataDir ?? '', database, masterKey }).catch(explainOpenError);
    try {
      if (newKey) {
        await rekeyMaster(vault.services, newKey);
        io.out('Re-wrapped the keyring under the new master key. Start the server with the new key from now on; the old key no longer opens this database.');
      } else {
        // Progress goes to stderr as each batch is done: a long rotation shows it is alive.
        const r = await rotateDataKey(vault.services, (done, total) => io.err(`re-encrypted ${done}/${total} secret versions`));
        io.out(
          `Rotated to data key version ${r.newKeyVersion}: re-encrypted ${r.secrets} secret versions, ${r.signingKeys} signing keys, ` +
            `${r.apiKeys} API keys, ${r.hostFactoryTokens} host-factory tokens, ${r.issuers} issuers; retired key versions ${r.retiredKeyVersions.join(', ') || 'none'}.`,
        );
      }
      return 0;
    } finally {
      await vault.close();
    }
  } finally {
    release();
  }
}

/**
 * Walks the server-wide chain, read-only and without the data key (the chain
 * holds no ciphertext), so it may run on a copy of the database, or beside a
 * running server. Exit 0 when intact, 3 when broken.
 */
export async function cmdAuditVerifyOffline(flags: Flags, env: NodeJS.ProcessEnv, io: Io): Promise<number> {
  const database = databaseOf(flags, env);
  if (database) return verifyPostgresChain(database, flags, io);
  const dataDir = dataDirOf(flags, env);
  const db = openReadOnly(requireDatabase(dataDir));
  try {
    return reportChain(verifyChain(createAuditStore(db).iterate()), flags, io);
  } finally {
    db.close();
  }
}

/** The same walk on PostgreSQL: read-only (no migration is applied), page by page. */
async function verifyPostgresChain(url: string, flags: Flags, io: Io): Promise<number> {
  const sql = createPostgresClient(url, { max: 1 });
  try {
    try {
      await migratePostgres(sql, { readonly: true });
    } catch (err) {
      if (err instanceof SchemaError) throw new CliError(err.message, 1);
      const storage = storageFailureOf(err);
      throw new CliError(`cannot open the database: ${storage ? `${storage.message} (${storage.code})` : (err as Error).message}`, 1);
    }
    const audit = createPostgresStore(sql).audit;
    const verifier = new ChainVerifier();
    for (let after = 0; ; ) {
      const rows = await audit.page(after, 5000);
      if (rows.length === 0) break;
      for (const row of rows) verifier.push(row);
      after = rows[rows.length - 1]!.seq;
    }
    return reportChain(verifier.result(), flags, io);
  } finally {
    await sql.end({ timeout: 1 });
  }
}

function reportChain(r: ReturnType<typeof verifyChain>, flags: Flags, io: Io): number {
  if (flags.json) {
    io.out(JSON.stringify({
      ok: r.ok,
      events: r.checked,
      last_seq: r.lastSeq,
      ...(r.ok ? {} : { first_bad_seq: r.firstBadSeq, reason: r.reason, bad_seqs: r.badSeqs, bad_count: r.badCount }),
    }));
  } else if (r.ok) {
    io.out(`audit chain OK: ${r.checked} events verified (last seq ${r.lastSeq})`);
  } else {
    io.out(`audit chain BROKEN at seq ${r.firstBadSeq}: ${r.reason}`);
    io.out(brokenSeqsLine(r.badSeqs, r.badCount, r.checked));
  }
  return r.ok ? 0 : 3;
}

/**
 * `coffer store copy --from DIR --to URL`: the data directory's SQLite
 * database, whole, into an empty PostgreSQL database (src/store/copy.ts).
 * The directory is claimed while it runs (no server may write to it), the
 * SQLite file is opened read-only, and no data key is needed: values are
 * copied sealed.
 */
export async function cmdStoreCopy(flags: Flags, env: NodeJS.ProcessEnv, io: Io): Promise<number> {
  const from = typeof flags.from === 'string' ? resolve(flags.from) : undefined;
  const to = typeof flags.to === 'string' ? flags.to : undefined;
  if (!from || !to) throw new CliError('usage: coffer store copy --from DIR --to postgres://…', 2);
  if (!/^postgres(ql)?:\/\//.test(to)) throw new CliError('--to must be a postgres:// URL', 2);
  const file = requireDatabase(from);
  const release = claimDataDir(from, 'copying it');
  try {
    const lite = openReadOnly(file);
    const sql = createPostgresClient(to, { max: 1 });
    try {
      await migratePostgres(sql);
      const report = await copySqliteToPostgres(lite, sql, (table, rows) => {
        if (rows % 100_000 === 0) io.err(`copied ${rows} rows of ${table}`);
      });
      const total = Object.values(report.rows).reduce((a, b) => a + b, 0);
      io.out(
        `Copied ${total} rows (${Object.entries(report.rows).filter(([, n]) => n > 0).map(([t, n]) => `${t} ${n}`).join(', ')}); ` +
          `row counts match, and the audit chain verifies to seq ${report.chain.lastSeq}.`,
      );
      return 0;
    } catch (err) {
      if (err instanceof CopyRefusedError || err instanceof SchemaError) throw new CliError(err.message, 1);
      const storage = storageFailureOf(err);
      throw new CliError(`the copy failed and no rows were copied: ${storage ? `${storage.message} (${storage.code})` : (err as Error).message}`, 1);
    } finally {
      lite.close();
      await sql.end({ timeout: 1 });
    }
  } finally {
    release();
  }
}
