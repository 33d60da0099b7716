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
  /** Directory of the built console served at /ui/ (default dist/ui/). */
  uiDir?: string;
  /** Minutes without activity after which the console signs out (default 15). */
  consoleIdleMinutes?: number;
  /** Logs unexpected errors (never includes request bodies). */
  logError: (err: unknown, requestId?: string) => void;
}

export interface RouteDeps {
  app: Hono<HttpEnv>;
  services: Services;
  config: HttpConfig;
}
