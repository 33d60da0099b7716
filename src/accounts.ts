/**
 * Account creation: the account row, its token signing key, the `admin`
 * user (owning itself) with an API key, and the root policy owned by admin —
 * all in one transaction, so a failure leaves nothing behind.
 */
import type { AuditLog } from './audit/log.js';
import type { Credentials } from './authn/credentials.js';
import type { TokenService } from './authn/tokens.js';
import { CofferError } from './errors.js';
import { fullId, validateAccountName } from './ids.js';
import type { Authorizer } from './rbac/authorizer.js';
import type { Store } from './store/index.js';

export interface AccountDeps {
  store: Store;
  tokens: TokenService;
  credentials: Credentials;
  audit: AuditLog;
  authorizer: Authorizer;
}

export interface CreatedAccount {
  account: string;
  login: string;
  api_key: string;
}

export async function createAccount(d: AccountDeps, name: string): Promise<CreatedAccount> {
  validateAccountName(name);
  let apiKey = '';
  // The key material made in here (an Ed25519 signing key, an API key and
  // its HMAC) takes microseconds, so it is made inside the transaction with
  // the rows it belongs to.
  const rows = await d.store.tx(async () => {
    if (await d.store.accounts.exists(name)) {
      throw new CofferError('conflict', `Account '${name}' already exists`, {
        target: 'account',
        details: { code: 'conflict', target: 'id', message: name },
      });
    }
    await d.store.accounts.insert(name);
    await d.tokens.createAccountKey(name);
    const admin = fullId(name, 'user', 'admin');
    const root = fullId(name, 'policy', 'root');
    const g = d.store.graph;
    await g.insertRole(admin, name, 'user', 'admin', null);
    await g.insertResource(admin, name, 'user', 'admin', admin, null);
    apiKey = await d.credentials.create(admin, []);
    await g.insertRole(root, name, 'policy', 'root', null);
    await g.insertResource(root, name, 'policy', 'root', admin, null);
    await g.insertMembership(root, admin, true, true, null);
    return await d.audit.recordInTransaction([
      {
        account: name,
        action: 'account',
        operation: 'create',
        result: 'success',
        resourceId: root,
        message: `account ${name} created with user ${admin} owning ${root}`,
      },
    ]);
  });
  d.authorizer.invalidate();
  d.audit.publish(rows);
  return { account: name, login: 'admin', api_key: apiKey };
}
