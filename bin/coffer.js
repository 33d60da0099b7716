#!/usr/bin/env node
import { main } from '../dist/cli/main.js';
import { guardPipes } from '../dist/cli/io.js';

guardPipes();
main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
