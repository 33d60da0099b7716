/** The client commands (HTTP clients of the server), by name, for the dispatcher in ../main.ts. */
import type { Ctx } from './context.js';
import { cmdApiKey } from './api-key.js';
import { cmdAudit } from './audit.js';
import { cmdInit, cmdLogin, cmdLogout, cmdWhoami } from './auth.js';
import { cmdExplain } from './explain.js';
import { cmdHostFactory } from './hostfactory.js';
import { cmdIssuer, cmdLeases } from './issuer.js';
import { cmdPolicy } from './policy.js';
import { cmdCheck, cmdList, cmdResource } from './resource.js';
import { cmdRole } from './role.js';
import { cmdVariable } from './variable.js';

export type ClientCommand = (args: string[], ctx: Ctx) => Promise<number>;

export const CLIENT_COMMANDS: Record<string, ClientCommand> = {
  init: cmdInit,
  login: cmdLogin,
  logout: cmdLogout,
  whoami: cmdWhoami,
  policy: cmdPolicy,
  variable: cmdVariable,
  list: cmdList,
  resource: cmdResource,
  check: cmdCheck,
  explain: cmdExplain,
  role: cmdRole,
  'api-key': cmdApiKey,
  hostfactory: cmdHostFactory,
  issuer: cmdIssuer,
  leases: cmdLeases,
  audit: cmdAudit,
};

export const CLIENT_USAGE = `Client (talks to a server; see 'Configuration' in README):
  init -u URL -a ACCOUNT [--ca-cert F] [--force]
  login -i LOGIN [--api-key-stdin]    logout    whoami
  policy load|update|replace -b BRANCH -f FILE|- [--dry-run] [--json]
  variable get -i ID[,ID…] [--version N] [--json]
  variable set -i ID (-v VALUE | --file F | stdin)
  list [--kind K] [--search S] [--limit N] [--offset N] [--inspect]
  resource show ID    resource permitted-roles ID PRIVILEGE    check ID PRIVILEGE [--role R]
  role members|memberships|all ID
  explain ROLE PRIVILEGE RESOURCE [--json]   why ROLE holds (or lacks) PRIVILEGE on RESOURCE
  api-key rotate [--role R]
  hostfactory tokens create|revoke …    hostfactory hosts create …
  issuer create -i ID -t postgresql -m MAX_TTL --data-file F|--data -    issuer list|show|update|delete …
  leases list [--json]    leases revoke LEASE_ID
  audit query [--resource R] [--role R] [--action A] [--result failure] [--since 1h] [--follow] [--json|--ndjson]
  audit verify [--json]

Exit codes: 0 ok, 1 refused by the server or failed, 2 usage, 3 audit chain broken,
            4 not found or forbidden, 5 network or TLS, 6 not authenticated.`;
