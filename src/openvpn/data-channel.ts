/**
 * OpenVPN's data channel with an AEAD cipher (AES-256-GCM, AES-128-GCM, CHACHA20-POLY1305), sans-IO: bytes and
 * `now` (ms) in, bytes out into the caller's buffers. No sockets, timers or clock, and no buffer allocated per
 * packet.
 *
 * Wire format (crypto.c openvpn_encrypt_aead / openvpn_decrypt_aead; ssl.c tls_prepend_opcode_v2):
 *
 *   P_DATA_V2:  opcode<<3|key_id (1) ‖ peer_id (3) ‖ packet_id (4) ‖ tag (16) ‖ ciphertext
 *               AD = the first 8 bytes (opcode, peer id, packet id)
 *   P_DATA_V1:  opcode<<3|key_id (1) ‖ packet_id (4) ‖ tag (16) ‖ ciphertext
 *               AD = the packet id alone (the opcode byte is added after encryption)
 *   nonce      = packet_id (4) ‖ implicit IV (8) of the direction's key (data-channel-keys.ts)
 *
 * Sealing (always P_DATA_V2, with the newest key):
 *   1. refuse when no key is installed, the payload is empty or the output buffer is too small;
 *   2. take the next packet id; refuse at 2^32 − 1 (the id must never wrap under one key: the session has to
 *      renegotiate; `renegotiationDue` turns true at 0xFF000000, OpenVPN's PACKET_ID_WRAP_TRIGGER);
 *   3. write the header, put the packet id into the nonce, encrypt with the header as AD, place the tag.
 *
 * Opening:
 *   1. parse the header (length, opcode, key id, peer id): typed drop on anything malformed;
 *   2. find the key slot the key id names; check the packet id against its replay window (before the
 *      cipher: a replay costs no decryption);
 *   3. authenticate and decrypt into the caller's buffer; only then commit the packet id;
 *   4. classify the plaintext: IP packet, ping or OCC message (data-channel-payload.ts).
 *
 * Key slots: a renegotiation installs a new key id while the old one is still in flight (the transition
 * window, OpenVPN's --tran-window). At most two keys are alive: installing a third retires the oldest.
 * Sealing uses the newest; opening uses whichever key id the packet names; `retireKey` ends the old one.
 */
import { inspect } from 'node:util';
import { AEAD_TAG_BYTES, createAeadKey, type AeadKey } from '../crypto/aead-evp.js';
import {
  aeadOf,
  DATA_PACKET_ID_LENGTH,
  sliceDataKeys,
  type DataCipherName,
  type DataRole,
} from './data-channel-keys.js';
import {
  classifyPayload,
  OCC_STRING_SIZE,
  type PayloadClass,
  type PayloadDrop,
} from './data-channel-payload.js';
import {
  DATA_REPLAY_BACKTRACK_MS,
  DATA_REPLAY_WINDOW,
  DataReplayWindow,
  type DataReplayMode,
} from './data-channel-replay.js';

/** ssl_pkt.h */
const P_DATA_V1 = 6;
const P_DATA_V2 = 9;
const OPCODE_SHIFT = 3;
const KEY_ID_MASK = 0x07;
const MAX_KEY_ID = 7;
/** 24-bit peer id (ssl.c); 0xFFFFFF means "none assigned". */
export const DATA_PEER_ID_UNDEFINED = 0xffffff;

/** Bytes before the ciphertext. */
export const DATA_V2_HEADER = 1 + 3 + DATA_PACKET_ID_LENGTH + AEAD_TAG_BYTES;
export const DATA_V1_HEADER = 1 + DATA_PACKET_ID_LENGTH + AEAD_TAG_BYTES;
/** AD lengths. */
const V2_AD = 8;
const V1_AD = DATA_PACKET_ID_LENGTH;
/** Where no seal has written yet (seal refuses an output this short, so it never matches a real one). */
const NO_BYTES = new Uint8Array(0);

/** packet_id.h PACKET_ID_MAX and PACKET_ID_WRAP_TRIGGER. */
export const PACKET_ID_MAX = 0xffffffff;
export const PACKET_ID_WRAP_TRIGGER = 0xff000000;

/** Why a datagram given to `open` delivered nothing. Every one is counted in `drops`. */
export const DATA_DROP_REASONS = [
  'empty',
  /** A control-channel or unknown opcode: not for this layer. */
  'not-data',
  /** Shorter than header, packet id and tag plus one byte of ciphertext. */
  'too-short',
  'peer-id-mismatch',
  'unknown-key-id',
  'zero-packet-id',
  'replayed',
  /** Further behind the highest packet id than the window. */
  'too-old',
  /** Inside the window, but packets after it arrived longer ago than the window's time (15 s). */
  'expired',
  /** Over TCP: not the next packet id. */
  'out-of-sequence',
  'authentication-failed',
  /** The caller's output buffer cannot hold the plaintext. */
  'buffer-too-small',
  'empty-payload',
  'malformed-occ',
  'compressed',
  'not-ip',
] as const;
export type DataDropReason = (typeof DATA_DROP_REASONS)[number];

/** What `open` found: a payload class (details in `channel.opened`) or a drop reason. */
export type OpenResult = PayloadClass | DataDropReason;

export function isDrop(result: OpenResult): result is DataDropReason {
  return result !== 'ip' && result !== 'ping' && result !== 'occ';
}

export type SealRefusal = 'no-key' | 'empty-payload' | 'buffer-too-small' | 'packet-id-exhausted';

/** The last packet `open` delivered (overwritten by the next call; no object per packet). */
export interface Opened {
  /** Plaintext length, at the start of the caller's output buffer. */
  length: number;
  keyId: number;
  packetId: number;
  /** For 'occ': the OCC opcode (OCC_EXIT when the peer leaves); -1 otherwise. */
  occOpcode: number;
}

export interface DataChannelOptions {
  readonly role: DataRole;
  /** The 24-bit peer id the server assigned to this session. */
  readonly peerId: number;
  /** 'udp' (sliding window) or 'tcp' (strictly sequential packet ids). */
  readonly transport?: DataReplayMode;
  /** --replay-window N T: N packets, T in ms. */
  readonly replayWindow?: number;
  readonly replayWindowMs?: number;
}

/** One key id's state. */
class KeySlot {
  readonly sendNonce = new Uint8Array(12);
  readonly receiveNonce = new Uint8Array(12);
  /** The last packet id sent (0 before the first). */
  sendId = 0;

  constructor(
    readonly keyId: number,
    readonly cipher: DataCipherName,
    readonly seal: AeadKey,
    readonly open: AeadKey,
    sendIv: Uint8Array,
    receiveIv: Uint8Array,
    readonly replay: DataReplayWindow,
  ) {
    this.sendNonce.set(sendIv, DATA_PACKET_ID_LENGTH);
    this.receiveNonce.set(receiveIv, DATA_PACKET_ID_LENGTH);
  }

  dispose(): void {
    this.seal.dispose();
    this.open.dispose();
    this.sendNonce.fill(0);
    this.receiveNonce.fill(0);
  }
}

function zeroCounts(): Record<DataDropReason, number> {
  const counts = {} as Record<DataDropReason, number>;
  for (const reason of DATA_DROP_REASONS) counts[reason] = 0;
  return counts;
}

export class DataChannel {
  readonly role: DataRole;
  readonly peerId: number;
  readonly transport: DataReplayMode;
  /** Drops by reason, since construction. */
  readonly drops: Record<DataDropReason, number> = zeroCounts();
  /** Details of the last successful `open`. */
  readonly opened: Opened = { length: 0, keyId: -1, packetId: 0, occOpcode: -1 };

  private readonly slots: (KeySlot | undefined)[] = new Array<KeySlot | undefined>(MAX_KEY_ID + 1).fill(
    undefined,
  );
  /** Key ids in order of installation, oldest first (at most two). */
  private readonly order: number[] = [];
  private readonly replaySize: number;
  private readonly replayMs: number;
  // Scratch, reused by every packet.
  private readonly tag = new Uint8Array(AEAD_TAG_BYTES);
  private readonly adV2 = new Uint8Array(V2_AD);
  private readonly adV1 = new Uint8Array(V1_AD);
  // Always arrays (an empty one before the first seal), never undefined: a channel's first seal then takes the
  // same optimised code as every later one instead of discarding it (a new session's first packet did).
  private sealOut: Uint8Array = NO_BYTES;
  private sealView: Uint8Array = NO_BYTES;

  constructor(options: DataChannelOptions) {
    if (!Number.isInteger(options.peerId) || options.peerId < 0 || options.peerId > DATA_PEER_ID_UNDEFINED)
      throw new RangeError('peer id is 24 bits');
    this.role = options.role;
    this.peerId = options.peerId;
    this.transport = options.transport ?? 'udp';
    this.replaySize = options.replayWindow ?? DATA_REPLAY_WINDOW;
    this.replayMs = options.replayWindowMs ?? DATA_REPLAY_BACKTRACK_MS;
  }

  /**
   * Installs the keys of `keyId` from the control channel's 256-byte key block and makes it the key that
   * seals. A third key retires the oldest. Throws RangeError on a programming error (key id out of 0..7, a
   * key id already installed, a block of the wrong length).
   */
  installKey(keyId: number, block: Uint8Array, cipher: DataCipherName): void {
    if (!Number.isInteger(keyId) || keyId < 0 || keyId > MAX_KEY_ID) throw new RangeError('key id is 0..7');
    if (this.slots[keyId]) throw new RangeError(`key id ${keyId} is already installed`);
    const sliced = sliceDataKeys(block, cipher, this.role);
    const aead = aeadOf(cipher);
    const seal = createAeadKey(aead, sliced.send.key, 'seal');
    const open = createAeadKey(aead, sliced.receive.key, 'open');
    const slot = new KeySlot(
      keyId,
      cipher,
      seal,
      open,
      sliced.send.implicitIv,
      sliced.receive.implicitIv,
      new DataReplayWindow(this.transport, this.replaySize, this.replayMs),
    );
    sliced.send.key.fill(0);
    sliced.receive.key.fill(0);
    while (this.order.length >= 2) this.retireKey(this.order[0]!);
    this.slots[keyId] = slot;
    this.order.push(keyId);
  }

  /** Ends a key id: its packets are dropped as `unknown-key-id` from now on. False if it was not installed. */
  retireKey(keyId: number): boolean {
    const slot = this.slots[keyId];
    if (!slot) return false;
    slot.dispose();
    this.slots[keyId] = undefined;
    const at = this.order.indexOf(keyId);
    if (at >= 0) this.order.splice(at, 1);
    return true;
  }

  /** Key ids alive, oldest first. */
  get keyIds(): readonly number[] {
    return [...this.order];
  }

  /** The key id that seals (the newest), if any. */
  get sendKeyId(): number | undefined {
    return this.order[this.order.length - 1];
  }

  /** The cipher of the sending key. */
  get cipher(): DataCipherName | undefined {
    const id = this.sendKeyId;
    return id === undefined ? undefined : this.slots[id]?.cipher;
  }

  /** Which AEAD implementation serves the sending key (e.g. 'libsodium-ffi+openssl-ffi'; aead-evp.ts). */
  get backend(): string | undefined {
    const id = this.sendKeyId;
    return id === undefined ? undefined : this.slots[id]?.seal.backend;
  }

  /** The last packet id sealed with the sending key. */
  get sendPacketId(): number {
    const id = this.sendKeyId;
    return id === undefined ? 0 : (this.slots[id]?.sendId ?? 0);
  }

  /**
   * True once the sending key's packet id passed PACKET_ID_WRAP_TRIGGER: the session must renegotiate
   * (ssl.c: OpenVPN starts a renegotiation there, long before the id can wrap).
   */
  get renegotiationDue(): boolean {
    return this.sendPacketId >= PACKET_ID_WRAP_TRIGGER;
  }

  /** Test hook: start the sending key's packet ids at `id` (to reach the wrap trigger without 4·10⁹ packets). */
  setSendPacketIdForTest(id: number): void {
    const keyId = this.sendKeyId;
    const slot = keyId === undefined ? undefined : this.slots[keyId];
    if (slot) slot.sendId = id >>> 0;
  }

  /**
   * Seals `payload` into `out` as a P_DATA_V2 packet; returns its length, or why nothing was sealed. `out`
   * must hold DATA_V2_HEADER + payload.length bytes and must not overlap `payload`.
   */
  seal(payload: Uint8Array, out: Uint8Array): number | SealRefusal {
    const keyId = this.order[this.order.length - 1];
    const slot = keyId === undefined ? undefined : this.slots[keyId];
    if (!slot) return 'no-key';
    if (payload.length === 0) return 'empty-payload';
    if (out.length < DATA_V2_HEADER + payload.length) return 'buffer-too-small';
    if (slot.sendId >= PACKET_ID_MAX) return 'packet-id-exhausted';
    const id = ++slot.sendId;

    out[0] = (P_DATA_V2 << OPCODE_SHIFT) | slot.keyId;
    out[1] = (this.peerId >>> 16) & 0xff;
    out[2] = (this.peerId >>> 8) & 0xff;
    out[3] = this.peerId & 0xff;
    out[4] = id >>> 24;
    out[5] = (id >>> 16) & 0xff;
    out[6] = (id >>> 8) & 0xff;
    out[7] = id & 0xff;
    const nonce = slot.sendNonce;
    nonce[0] = out[4]!;
    nonce[1] = out[5]!;
    nonce[2] = out[6]!;
    nonce[3] = out[7]!;
    const ad = this.adV2;
    for (let i = 0; i < V2_AD; i++) ad[i] = out[i]!;
    // One view of the output per output buffer: a caller that reuses its buffer allocates nothing.
    if (this.sealOut !== out) {
      this.sealOut = out;
      this.sealView = out.subarray(DATA_V2_HEADER);
    }
    slot.seal.sealInto(nonce, payload, this.sealView, this.tag, ad);
    out.set(this.tag, V2_AD);
    return DATA_V2_HEADER + payload.length;
  }

  /**
   * Opens a P_DATA_V2 (or P_DATA_V1) datagram into `out` (from offset 0; it must not overlap `packet`).
   * Returns the payload class (details in `opened`) or the drop reason, which is also counted.
   */
  open(packet: Uint8Array, out: Uint8Array, now: number): OpenResult {
    const result = this.openInner(packet, out, now);
    if (isDrop(result)) this.drops[result]++;
    return result;
  }

  private openInner(packet: Uint8Array, out: Uint8Array, now: number): OpenResult {
    const length = packet.length;
    if (length === 0) return 'empty';
    const first = packet[0]!;
    const opcode = first >>> OPCODE_SHIFT;
    const keyId = first & KEY_ID_MASK;
    let header: number;
    let ad: Uint8Array;
    let pidAt: number;
    if (opcode === P_DATA_V2) {
      header = DATA_V2_HEADER;
      if (length <= header) return 'too-short';
      const peer = (packet[1]! << 16) | (packet[2]! << 8) | packet[3]!;
      if (peer !== this.peerId) return 'peer-id-mismatch';
      pidAt = 4;
      ad = this.adV2;
      for (let i = 0; i < V2_AD; i++) ad[i] = packet[i]!;
    } else if (opcode === P_DATA_V1) {
      header = DATA_V1_HEADER;
      if (length <= header) return 'too-short';
      pidAt = 1;
      ad = this.adV1;
      for (let i = 0; i < V1_AD; i++) ad[i] = packet[1 + i]!;
    } else {
      return 'not-data';
    }
    const slot = this.slots[keyId];
    if (!slot) return 'unknown-key-id';
    const id =
      ((packet[pidAt]! << 24) |
        (packet[pidAt + 1]! << 16) |
        (packet[pidAt + 2]! << 8) |
        packet[pidAt + 3]!) >>>
      0;
    const verdict = slot.replay.check(id, now);
    if (verdict !== 'fresh') return verdict;
    const bodyLength = length - header;
    if (out.length < bodyLength) return 'buffer-too-small';

    const nonce = slot.receiveNonce;
    nonce[0] = packet[pidAt]!;
    nonce[1] = packet[pidAt + 1]!;
    nonce[2] = packet[pidAt + 2]!;
    nonce[3] = packet[pidAt + 3]!;
    const tagAt = pidAt + DATA_PACKET_ID_LENGTH;
    const tag = this.tag;
    for (let i = 0; i < AEAD_TAG_BYTES; i++) tag[i] = packet[tagAt + i]!;
    if (!slot.open.openInto(nonce, packet.subarray(header), tag, out, ad)) return 'authentication-failed';
    slot.replay.commit(id, now);

    const kind = classifyPayload(out, bodyLength);
    const opened = this.opened;
    opened.length = bodyLength;
    opened.keyId = keyId;
    opened.packetId = id;
    opened.occOpcode = kind === 'occ' ? out[OCC_STRING_SIZE]! : -1;
    return kind satisfies OpenResult;
  }

  /** Retires every key. */
  dispose(): void {
    for (const id of [...this.order]) this.retireKey(id);
  }

  /** Never prints keys. */
  [inspect.custom](): string {
    return `DataChannel { role: ${this.role}, peerId: ${this.peerId}, keyIds: [${this.order.join(', ')}], cipher: ${this.cipher ?? 'none'} }`;
  }

  toJSON(): Record<string, unknown> {
    return { role: this.role, peerId: this.peerId, keyIds: this.keyIds, cipher: this.cipher ?? null };
  }
}

export type { PayloadClass, PayloadDrop };
