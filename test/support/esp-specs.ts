/**
 * Mirror-image CHILD SA specs for two ESP endpoints, as the IKE core would hand them to each side: what one
 * seals with, the other opens with, and each side's local selectors are the other's remote ones.
 */
import { randomBytes } from 'node:crypto';
import {
  ESP_ENCR,
  type ChildSaSpec,
  type EspEncryptionId,
  type EspIntegrityId,
  type IpsecMode,
  type TrafficSelector,
} from '../../src/ipsec/child-sa.js';

export function selector(start: string, end: string): TrafficSelector {
  return {
    family: start.includes(':') ? 6 : 4,
    protocol: 0,
    startPort: 0,
    endPort: 65535,
    startAddress: start,
    endAddress: end,
  };
}

export interface MirrorOptions {
  mode?: IpsecMode;
  esn?: boolean;
  encryption?: EspEncryptionId;
  bits?: number;
  integrity?: EspIntegrityId | null;
  spiA?: number;
  spiB?: number;
  /** Hex keys, when the two processes must agree (otherwise random). */
  keys?: { ab: string; ba: string; abInteg?: string; baInteg?: string };
}

const INTEG_KEY_BYTES: Record<number, number> = { 2: 20, 12: 32, 13: 48, 14: 64 };

/** Random key material for a pair (hex), to pass to two processes. */
export function mirrorKeys(options: MirrorOptions = {}): NonNullable<MirrorOptions['keys']> {
  const encryption = options.encryption ?? ESP_ENCR.AES_GCM_16;
  const bits = options.bits ?? 256;
  const salt = encryption === ESP_ENCR.AES_CBC ? 0 : 4;
  const integ = options.integrity ? INTEG_KEY_BYTES[options.integrity]! : 0;
  const k = (n: number): string => randomBytes(n).toString('hex');
  return {
    ab: k(bits / 8 + salt),
    ba: k(bits / 8 + salt),
    ...(integ ? { abInteg: k(integ), baInteg: k(integ) } : {}),
  };
}

/** The specs of side A (local `netA`) and side B (local `netB`). */
export function mirrorSpecs(
  netA: readonly TrafficSelector[],
  netB: readonly TrafficSelector[],
  options: MirrorOptions = {},
): { a: ChildSaSpec; b: ChildSaSpec } {
  const keys = options.keys ?? mirrorKeys(options);
  const h = (s: string | undefined): Uint8Array | null => (s ? new Uint8Array(Buffer.from(s, 'hex')) : null);
  const ab = { encryptionKey: h(keys.ab)!, integrityKey: h(keys.abInteg) };
  const ba = { encryptionKey: h(keys.ba)!, integrityKey: h(keys.baInteg) };
  const spiA = options.spiA ?? 0xc0a00001;
  const spiB = options.spiB ?? 0xc0b00001;
  const common = {
    mode: options.mode ?? ('tunnel' as IpsecMode),
    encryption: options.encryption ?? ESP_ENCR.AES_GCM_16,
    encryptionKeyBits: options.bits ?? 256,
    integrity: options.integrity ?? null,
    esn: options.esn ?? false,
  };
  return {
    a: {
      ...common,
      inboundSpi: spiA,
      outboundSpi: spiB,
      inbound: ba,
      outbound: ab,
      localSelectors: netA,
      remoteSelectors: netB,
    },
    b: {
      ...common,
      inboundSpi: spiB,
      outboundSpi: spiA,
      inbound: ab,
      outbound: ba,
      localSelectors: netB,
      remoteSelectors: netA,
    },
  };
}
