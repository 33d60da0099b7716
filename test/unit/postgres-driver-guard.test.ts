import { describe, expect, it } from 'vitest';
import { isDriverWriteRace } from '../../src/store/postgres/driver-guard.js';

const withStack = (err: Error, stack: string) => Object.assign(err, { stack: `${err.name}: ${err.message}\n${stack}` });

describe('the postgres driver write race guard', () => {
  it('recognizes only the driver’s nextWrite on a closed socket', () => {
    const race = withStack(new TypeError("Cannot read properties of null (reading 'write')"), '    at Immediate.nextWrite (/app/node_modules/postgres/src/connection.js:255:22)');
    expect(isDriverWriteRace(race)).toBe(true);
    const cjs = withStack(new TypeError("Cannot read properties of null (reading 'write')"), '    at Immediate.nextWrite (/app/node_modules/postgres/cjs/src/connection.js:255:22)');
    expect(isDriverWriteRace(cjs)).toBe(true);
  });

  it('lets every other uncaught error end the process', () => {
    const elsewhere = withStack(new TypeError("Cannot read properties of null (reading 'write')"), '    at nextWrite (/app/dist/audit/sinks.js:10:3)');
    expect(isDriverWriteRace(elsewhere)).toBe(false);
    const otherMessage = withStack(new TypeError("Cannot read properties of null (reading 'end')"), '    at Immediate.nextWrite (/app/node_modules/postgres/src/connection.js:255:22)');
    expect(isDriverWriteRace(otherMessage)).toBe(false);
    expect(isDriverWriteRace(new Error("Cannot read properties of null (reading 'write')"))).toBe(false);
    expect(isDriverWriteRace('boom')).toBe(false);
  });
});
