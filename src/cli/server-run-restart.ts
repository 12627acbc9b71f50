/**
 * Imported first by main.ts, before the modules of every command load: `weft server run` restarts with its
 * young-generation bound (../server/young-generation.ts) at once, so the modules load only in the process
 * that keeps running. The command line is `weft server run [options]`: the program takes no options before
 * its commands.
 */
import { ensureBoundedYoungGeneration } from '../server/young-generation.js';

if (process.argv[2] === 'server' && process.argv[3] === 'run') ensureBoundedYoungGeneration();
