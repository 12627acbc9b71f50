/**
 * `weft up FILE.conf` and `weft down NAME`: the command-line face of src/gateway/bring-up.ts, which brings a
 * WireGuard interface up from a wg-quick style file (and is shared with `weft server run`).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { UserError } from '../control/errors.js';
import { linkExists } from '../io/linux-net.js';
import {
  bringUp,
  interfaceNameOf,
  pidFile,
  prepare,
  processAlive,
  type Running,
} from '../gateway/bring-up.js';

export const LOG_DIR = '/var/log/weft';

/** `weft up --foreground FILE`: runs until SIGTERM or SIGINT. Reports readiness over IPC when started by `up`. */
export async function upForeground(file: string): Promise<void> {
  const log = (line: string): void => void process.stderr.write(`${new Date().toISOString()} ${line}\n`);
  let running: Running;
  try {
    running = await bringUp(await prepare(file), log);
  } catch (e) {
    const message = e instanceof UserError ? e.message : `weft: ${(e as Error).message}`;
    if (process.send) {
      process.send({ error: message });
      process.disconnect();
    }
    throw e instanceof UserError ? e : new UserError(message);
  }
  if (process.send) {
    process.send({ ready: true, port: running.wg.listenPort });
    process.disconnect();
  }
  await new Promise<void>((resolve) => {
    const onSignal = (): void => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      void running.stop().then(resolve, resolve);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}

/** `weft up FILE`: checks the file, starts the daemon in the background and returns once it is up. */
export async function upBackground(file: string): Promise<string> {
  const resolved = await prepare(file); // report configuration errors here, in the operator's terminal
  mkdirSync(LOG_DIR, { recursive: true, mode: 0o750 });
  const logPath = `${LOG_DIR}/${resolved.name}.log`;
  const logFd = openSync(logPath, 'a', 0o640);
  const main = fileURLToPath(new URL('./main.js', import.meta.url));
  const child = spawn(process.execPath, [main, 'up', '--foreground', file], {
    detached: true,
    stdio: ['ignore', logFd, logFd, 'ipc'],
  });
  const outcome = await new Promise<{ ready?: boolean; port?: number; error?: string }>((resolve) => {
    const timer = setTimeout(
      () => resolve({ error: `weft: ${resolved.name} did not come up within 30 s (see ${logPath})` }),
      30_000,
    );
    child.once('message', (m) => {
      clearTimeout(timer);
      resolve(m as { ready?: boolean; error?: string });
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({
        error: `weft: the daemon for ${resolved.name} exited (${code}) before it was up (see ${logPath})`,
      });
    });
  });
  if (!outcome.ready) {
    if (child.exitCode === null) child.kill('SIGTERM');
    throw new UserError(outcome.error ?? 'weft: the daemon failed');
  }
  child.unref();
  child.channel?.unref();
  return `${resolved.name} is up (pid ${child.pid}, UDP port ${outcome.port}); log: ${logPath}`;
}

/** `weft down NAME|FILE`: stops the daemon and waits until the interface is gone. */
export async function down(nameOrFile: string): Promise<string> {
  const name = interfaceNameOf(nameOrFile);
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile(name), 'utf8'));
  } catch {
    throw new UserError(`weft: ${name} is not up (no ${pidFile(name)})`);
  }
  if (!processAlive(pid)) {
    rmSync(pidFile(name), { force: true });
    throw new UserError(`weft: ${name} is not up (stale pid file removed)`);
  }
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 15_000;
  while (processAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (processAlive(pid)) {
    process.kill(pid, 'SIGKILL');
    throw new UserError(`weft: ${name} did not stop within 15 s; killed`);
  }
  while ((await linkExists(name)) && Date.now() < deadline + 2000)
    await new Promise((r) => setTimeout(r, 50));
  return `${name} is down`;
}
