/**
 * Redis Cluster's key -> hash slot function, for tests that check key names without a cluster:
 * CRC16 (XMODEM: polynomial 0x1021, initial value 0) of the key, or of the text inside its
 * first `{...}` when that text is not empty, modulo 16384.
 */
export function crc16(data: Uint8Array): number {
  let crc = 0;
  for (const byte of data) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** The part of a key Redis hashes: the first non-empty `{...}` content, else the whole key. */
export function hashedPart(key: string): string {
  const open = key.indexOf("{");
  if (open === -1) return key;
  const close = key.indexOf("}", open + 1);
  if (close === -1 || close === open + 1) return key;
  return key.slice(open + 1, close);
}

export function hashSlot(key: string): number {
  return crc16(new TextEncoder().encode(hashedPart(key))) % 16384;
}
