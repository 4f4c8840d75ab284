// CRC-32 (IEEE 802.3, reflected, as zlib's crc32) for table checksums. The
// 1 KiB lookup table is built once by `crc32Init` into static memory.
const TABLE: usize = memory.data(1024, 16);

export function crc32Init(): void {
  for (let n: u32 = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    store<u32>(TABLE + (<usize>n << 2), c);
  }
}

export function crc32(ptr: usize, len: usize): u32 {
  let c: u32 = 0xffffffff;
  const end = ptr + len;
  while (ptr < end) {
    c = load<u32>(TABLE + (<usize>((c ^ <u32>load<u8>(ptr)) & 0xff) << 2)) ^ (c >>> 8);
    ptr++;
  }
  return c ^ 0xffffffff;
}
