/** Policy versions: the text of each successful load, newest 20 kept. */
import type { Db } from './db.js';

export interface PolicyVersionRow {
  resource_id: string;
  version: number;
  role_id: string;
  client_ip: string | null;
  policy_text: string;
  policy_sha256: string;
  created_at: string;
  finished_at: string | null;
}

export function createPolicyVersionsStore(db: Db) {
  const next = db.prepare<[string], { v: number | null }>(
    'SELECT max(version) AS v FROM policy_versions WHERE resource_id = ?',
  );
  const insert = db.prepare(
    'INSERT INTO policy_versions (resource_id, version, role_id, client_ip, policy_text, policy_sha256, created_at, finished_at) ' +
      'VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
  );
  const prune = db.prepare(
    'DELETE FROM policy_versions WHERE resource_id = ? AND version <= (SELECT max(version) FROM policy_versions WHERE resource_id = ?) - ?',
  );
  const list = db.prepare<[string], PolicyVersionRow>(
    'SELECT * FROM policy_versions WHERE resource_id = ? ORDER BY version',
  );
  return {
    nextVersion: (resourceId: string) => (next.get(resourceId)?.v ?? 0) + 1,
    insert(row: PolicyVersionRow): void {
      insert.run(row.resource_id, row.version, row.role_id, row.client_ip, row.policy_text, row.policy_sha256, row.created_at, row.finished_at);
    },
    prune: (resourceId: string, keep: number) => void prune.run(resourceId, resourceId, keep),
    list: (resourceId: string) => list.all(resourceId),
  };
}

export type PolicyVersionsStore = ReturnType<typeof createPolicyVersionsStore>;
