// Exits 0 when every module package-lock.json names is installed in node_modules, 1 (naming
// the first missing ones) otherwise: install-test-deps and run-e2e.sh then run `npm ci`. A
// check of one module only would miss one added to the lock since the last install.
const fs = require('node:fs');
const path = require('node:path');

const here = __dirname;
const lock = JSON.parse(fs.readFileSync(path.join(here, 'package-lock.json'), 'utf8'));
const missing = Object.entries(lock.packages || {})
  .filter(([p, meta]) => p.startsWith('node_modules/') && !meta.optional)
  .map(([p]) => p)
  .filter((p) => !fs.existsSync(path.join(here, p, 'package.json')));
if (missing.length) {
  console.error(`modules not installed: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}`);
  process.exit(1);
}
