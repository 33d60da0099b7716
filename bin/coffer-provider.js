#!/usr/bin/env node
// Summon provider: `summon -p coffer-provider …` runs `coffer-provider <variable id>`.
import { cmdProvider } from '../dist/cli/commands/provider.js';
import { guardPipes, processIo } from '../dist/cli/io.js';

guardPipes();
cmdProvider(process.argv.slice(2), process.env, processIo, { name: 'coffer-provider' }).then((code) => {
  process.exitCode = code;
});
