/** What every route module receives. */
import type { Hono } from 'hono';
import type { Services } from '../services.js';
import type { HttpEnv } from './request.js';

export interface HttpConfig {
  /** Default request-body limit in bytes. */
  bodyLimit: number;
  /** Policy-body limit in bytes. */
  policyBodyLimit: number;
  /** CIDRs of proxies whose X-Forwarded-For is believed. */
  trustedProxies: string[];
  version: string;
  /** Free bytes on the data directory's file system below which /health says the database is not writable. */
  healthMinFreeBytes?: number;
  /** Logs unexpected errors (never includes request bodies). */
  logError: (err: unknown, requestId?: string) => void;
}

export interface RouteDeps {
  app: Hono<HttpEnv>;
  services: Services;
  config: HttpConfig;
}
