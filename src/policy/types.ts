/**
 * The resolved form of a policy document: what `parsePolicy` + `resolvePolicy`
 * produce and what the loader applies. Every id here is a full id
 * (`account:kind:identifier`).
 */

export interface SourcePosition {
  line: number;
  column: number;
}

/** A declared record: `!user`, `!host`, `!group`, `!layer`, `!policy`, `!variable`, `!webservice`, `!host-factory`, `!role`, `!resource`. */
export interface RecordStatement {
  type: 'record';
  /** Resource kind: user host group layer policy variable webservice host_factory, or any kind for !role/!resource. */
  kind: string;
  /** Full id, e.g. `acme:user:alice@ci`. */
  id: string;
  /** Full role id of the owner (after default-owner rules). */
  owner: string;
  /** Whether the record is a role (users, hosts, groups, layers, policies, host factories, `!role`). */
  hasRole: boolean;
  /** Whether the record is a resource (everything except `!role`). */
  hasResource: boolean;
  /** Annotations as strings (`kind` → `conjur/kind`, `mime_type` → `conjur/mime_type`, `uidnumber`, `gidnumber` included). */
  annotations: Record<string, string>;
  /** Normalized CIDRs (`1.2.3.4` → `1.2.3.4/32`) for users and hosts; undefined when the attribute is absent. */
  restrictedTo?: string[];
  /** For `!user`: public key lines (each becomes a `public_key` resource `user/<id>/<name>`). */
  publicKeys?: string[];
  /** For `!host-factory`: full ids of the layers. */
  layers?: string[];
  position: SourcePosition;
}

export interface GrantStatement {
  type: 'grant';
  role: string;
  member: string;
  adminOption: boolean;
  position: SourcePosition;
}

export interface RevokeStatement {
  type: 'revoke';
  role: string;
  member: string;
  position: SourcePosition;
}

export interface PermitStatement {
  type: 'permit';
  role: string;
  privilege: string;
  resource: string;
  position: SourcePosition;
}

export interface DenyStatement {
  type: 'deny';
  role: string;
  privilege: string;
  resource: string;
  position: SourcePosition;
}

export interface DeleteStatement {
  type: 'delete';
  /** Full id of the record to delete (role and/or resource). */
  id: string;
  position: SourcePosition;
}

export type Statement =
  | RecordStatement
  | GrantStatement
  | RevokeStatement
  | PermitStatement
  | DenyStatement
  | DeleteStatement;

/** Output of the resolver: records first (dependency order), then the other statements in document order. */
export interface ResolvedPolicy {
  statements: Statement[];
  /** Warnings Conjur reports (annotation names equal to policy attributes). */
  warnings: string[];
}

export interface ResolveContext {
  /** Account of the load. */
  account: string;
  /** Identifier of the policy being loaded (`root` for the root policy). */
  policyId: string;
  /** Full role id of the owner of the policy being loaded (e.g. `acme:user:admin`). */
  policyOwner: string;
}
