/**
 * key-method 2 (OpenVPN's ssl.c key_method_2_write / key_method_2_read; openvpn-rfc §"Key method 2"): the
 * first plaintext each side writes into the TLS session once it is up.
 *
 *   uint32 0 ‖ uint8 2 (key method; the upper bits are flags)
 *   client: pre_master(48) ‖ random1(32) ‖ random2(32)        server: random1(32) ‖ random2(32)
 *   options string ‖ username string ‖ password string ‖ [peer info string]
 *
 * A string is uint16 length (counting the terminating NUL) ‖ bytes ‖ NUL; length 0 means "absent". Every
 * length is checked before it is read; what does not fit is a typed drop.
 */
import { PRE_MASTER_LENGTH, RANDOM_LENGTH } from './key-derivation.js';

/** ssl.h KEY_METHOD_2 and KEY_METHOD_MASK. */
export const KEY_METHOD_2 = 2;
export const KEY_METHOD_MASK = 0x0f;
/** ssl_common.h TLS_OPTIONS_LEN: the options string's buffer. */
export const TLS_OPTIONS_LEN = 512;
/** misc.h USER_PASS_LEN (4096 with auth tokens in 2.6). */
export const USER_PASS_LEN = 4096;

export interface KeyMethodClient {
  readonly preMaster: Uint8Array;
  readonly random1: Uint8Array;
  readonly random2: Uint8Array;
  readonly options: string;
  /** Absent when the client sent an empty string (no --auth-user-pass). */
  readonly username: string | undefined;
  readonly password: string | undefined;
  /** Absent when the message ends after the password (or the string is empty). */
  readonly peerInfo: string | undefined;
}

export interface KeyMethodServer {
  readonly random1: Uint8Array;
  readonly random2: Uint8Array;
  readonly options: string;
  readonly peerInfo: string | undefined;
}

export type KeyMethodDropReason =
  | 'truncated-header'
  | 'nonzero-prefix'
  | 'unknown-key-method'
  | 'truncated-key-source'
  | 'truncated-string-length'
  | 'truncated-string'
  | 'string-not-terminated'
  | 'missing-options'
  | 'options-too-long'
  | 'credential-too-long'
  | 'trailing-bytes';

type Read<T> = { ok: true; value: T; at: number } | { ok: false; drop: KeyMethodDropReason };

function readString(
  bytes: Uint8Array,
  at: number,
  max: number,
  tooLong: KeyMethodDropReason,
): Read<string | undefined> {
  if (at + 2 > bytes.length) return { ok: false, drop: 'truncated-string-length' };
  const length = (bytes[at]! << 8) | bytes[at + 1]!;
  at += 2;
  if (length === 0) return { ok: true, value: undefined, at };
  if (length > max) return { ok: false, drop: tooLong };
  if (at + length > bytes.length) return { ok: false, drop: 'truncated-string' };
  if (bytes[at + length - 1] !== 0) return { ok: false, drop: 'string-not-terminated' };
  let end = at;
  while (bytes[end] !== 0) end++;
  return { ok: true, value: Buffer.from(bytes.subarray(at, end)).toString('utf8'), at: at + length };
}

function readHeader(bytes: Uint8Array, sourceLength: number): Read<Uint8Array> {
  if (bytes.length < 5) return { ok: false, drop: 'truncated-header' };
  if (bytes[0] !== 0 || bytes[1] !== 0 || bytes[2] !== 0 || bytes[3] !== 0)
    return { ok: false, drop: 'nonzero-prefix' };
  if ((bytes[4]! & KEY_METHOD_MASK) !== KEY_METHOD_2) return { ok: false, drop: 'unknown-key-method' };
  if (bytes.length < 5 + sourceLength) return { ok: false, drop: 'truncated-key-source' };
  return { ok: true, value: bytes.slice(5, 5 + sourceLength), at: 5 + sourceLength };
}

interface Tail {
  options: string;
  username: string | undefined;
  password: string | undefined;
  peerInfo: string | undefined;
}

function readTail(
  bytes: Uint8Array,
  start: number,
): { ok: true; tail: Tail } | { ok: false; drop: KeyMethodDropReason } {
  const options = readString(bytes, start, TLS_OPTIONS_LEN, 'options-too-long');
  if (!options.ok) return options;
  if (options.value === undefined) return { ok: false, drop: 'missing-options' };
  const username = readString(bytes, options.at, USER_PASS_LEN, 'credential-too-long');
  if (!username.ok) return username;
  const password = readString(bytes, username.at, USER_PASS_LEN, 'credential-too-long');
  if (!password.ok) return password;
  let peerInfo: string | undefined;
  let at = password.at;
  if (at < bytes.length) {
    const info = readString(bytes, at, 0xffff, 'trailing-bytes');
    if (!info.ok) return info;
    peerInfo = info.value;
    at = info.at;
  }
  if (at !== bytes.length) return { ok: false, drop: 'trailing-bytes' };
  return {
    ok: true,
    tail: { options: options.value, username: username.value, password: password.value, peerInfo },
  };
}

export function parseClientKeyMethod(
  bytes: Uint8Array,
): { ok: true; message: KeyMethodClient } | { ok: false; drop: KeyMethodDropReason } {
  const head = readHeader(bytes, PRE_MASTER_LENGTH + 2 * RANDOM_LENGTH);
  if (!head.ok) return head;
  const tail = readTail(bytes, head.at);
  if (!tail.ok) return tail;
  const source = head.value;
  return {
    ok: true,
    message: {
      preMaster: source.slice(0, PRE_MASTER_LENGTH),
      random1: source.slice(PRE_MASTER_LENGTH, PRE_MASTER_LENGTH + RANDOM_LENGTH),
      random2: source.slice(PRE_MASTER_LENGTH + RANDOM_LENGTH),
      ...tail.tail,
    },
  };
}

export function parseServerKeyMethod(
  bytes: Uint8Array,
): { ok: true; message: KeyMethodServer } | { ok: false; drop: KeyMethodDropReason } {
  const head = readHeader(bytes, 2 * RANDOM_LENGTH);
  if (!head.ok) return head;
  const tail = readTail(bytes, head.at);
  if (!tail.ok) return tail;
  return {
    ok: true,
    message: {
      random1: head.value.slice(0, RANDOM_LENGTH),
      random2: head.value.slice(RANDOM_LENGTH),
      options: tail.tail.options,
      peerInfo: tail.tail.peerInfo,
    },
  };
}

function writeString(value: string | undefined, max: number): Buffer {
  if (value === undefined || value.length === 0) return Buffer.from([0, 0]);
  const text = Buffer.from(value, 'utf8');
  if (text.includes(0)) throw new RangeError('a key-method string cannot hold NUL');
  if (text.length + 1 > max) throw new RangeError(`string longer than ${max - 1} bytes`);
  const out = Buffer.alloc(2 + text.length + 1);
  out.writeUInt16BE(text.length + 1, 0);
  text.copy(out, 2);
  return out;
}

function checkLength(name: string, value: Uint8Array, length: number): void {
  if (value.length !== length) throw new RangeError(`${name} must be ${length} bytes`);
}

const HEADER = Uint8Array.of(0, 0, 0, 0, KEY_METHOD_2);

/** The client's message. Throws only on a caller's mistake (wrong lengths, NUL in a string). */
export function buildClientKeyMethod(message: KeyMethodClient): Uint8Array {
  checkLength('preMaster', message.preMaster, PRE_MASTER_LENGTH);
  checkLength('random1', message.random1, RANDOM_LENGTH);
  checkLength('random2', message.random2, RANDOM_LENGTH);
  const parts: Uint8Array[] = [
    HEADER,
    message.preMaster,
    message.random1,
    message.random2,
    writeString(message.options, TLS_OPTIONS_LEN),
    writeString(message.username, USER_PASS_LEN),
    writeString(message.password, USER_PASS_LEN),
  ];
  if (message.peerInfo !== undefined) parts.push(writeString(message.peerInfo, 0xffff));
  return new Uint8Array(Buffer.concat(parts));
}

/** The server's message: no credentials; peer info empty unless given (OpenVPN's server sends none). */
export function buildServerKeyMethod(message: KeyMethodServer): Uint8Array {
  checkLength('random1', message.random1, RANDOM_LENGTH);
  checkLength('random2', message.random2, RANDOM_LENGTH);
  return new Uint8Array(
    Buffer.concat([
      HEADER,
      message.random1,
      message.random2,
      writeString(message.options, TLS_OPTIONS_LEN),
      writeString(undefined, USER_PASS_LEN),
      writeString(undefined, USER_PASS_LEN),
      writeString(message.peerInfo, 0xffff),
    ]),
  );
}
