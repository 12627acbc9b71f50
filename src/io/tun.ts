/**
 * The TUN side of the I/O shell: where plaintext IP packets enter and leave the gateway. Narrow on purpose
 * (like wireguard-go's tun.Device): batches in, batches out. Implementations: LinuxTun (tun-linux.ts, the
 * kernel's /dev/net/tun through an FFI) and MemoryTun (memory.ts, for tests without root).
 */
export interface TunDevice {
  /** Interface name as the kernel knows it. */
  readonly name: string;
  /**
   * Starts reading; `onPackets` receives every packet the kernel routes into the device, in batches. The
   * packets are the callback's until it returns: it must copy what it keeps longer, since the device may reuse
   * their memory for the next batch.
   */
  start(onPackets: (packets: Uint8Array[]) => void): void;
  /** Writes packets to the kernel, as if they arrived on this interface; returns how many were accepted. */
  write(packets: readonly Uint8Array[]): number;
  /** Stops reading and closes the device (a non-persistent TUN interface disappears with its routes). */
  close(): Promise<void>;
}
