/** Accounts. */
import type { Db } from './db.js';

export function createAccountsStore(db: Db) {
  const get = db.prepare<[string], { name: string }>('SELECT name FROM accounts WHERE name = ?');
  const list = db.prepare<[], { name: string }>('SELECT name FROM accounts ORDER BY name');
  const insert = db.prepare('INSERT INTO accounts (name, created_at) VALUES (?, ?)');
  return {
    exists: (name: string) => get.get(name) !== undefined,
    list: () => list.all().map((r) => r.name),
    insert: (name: string) => void insert.run(name, new Date().toISOString()),
  };
}

export type AccountsStore = ReturnType<typeof createAccountsStore>;
