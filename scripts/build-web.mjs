// Copies the console's static files (HTML, CSS, icons) next to its compiled scripts in dist/web.
import { cpSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const from = 'web/static';
const to = 'dist/web';
mkdirSync(to, { recursive: true });
for (const f of readdirSync(from)) cpSync(join(from, f), join(to, f), { recursive: true });
