/** A seeded pseudo-random source (xorshift128+ over 32-bit halves), so failing runs can be replayed. */
export function seededRandom(seed: number): (n: number) => Uint8Array {
  let s0 = (seed ^ 0x9e3779b9) >>> 0 || 1;
  let s1 = (seed * 0x85ebca6b) >>> 0 || 2;
  let s2 = 0xc2b2ae35;
  let s3 = 0x27d4eb2f;
  const next = (): number => {
    const t = s0 ^ (s0 << 11);
    s0 = s1;
    s1 = s2;
    s2 = s3;
    s3 = (s3 ^ (s3 >>> 19) ^ (t ^ (t >>> 8))) >>> 0;
    return s3;
  };
  return (n: number) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      const v = next();
      out[i] = v & 0xff;
      if (i + 1 < n) out[i + 1] = (v >>> 8) & 0xff;
      if (i + 2 < n) out[i + 2] = (v >>> 16) & 0xff;
      if (i + 3 < n) out[i + 3] = (v >>> 24) & 0xff;
    }
    return out;
  };
}
