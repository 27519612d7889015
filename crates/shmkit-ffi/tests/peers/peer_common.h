/* What every language's test peer shares: zlib's CRC-32 (as Python's zlib.crc32
 * and Rust's crc32fast), and the sender's random sizes (xorshift64*: 1 message in
 * 100 up to MAX bytes, the others up to 4 KiB). */
#ifndef PEER_COMMON_H
#define PEER_COMMON_H
#include <stddef.h>
#include <stdint.h>

static uint32_t crc_table[256];

static void crc_init(void) {
    uint32_t i, k, c;
    for (i = 0; i < 256; i++) {
        c = i;
        for (k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc_update(uint32_t crc, const uint8_t *p, size_t n) {
    crc = ~crc;
    while (n--) crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* The checksum of one message: its length (8 bytes, little-endian), then it. */
static uint32_t crc_message(uint32_t crc, const uint8_t *p, size_t n) {
    uint8_t len[8];
    int i;
    for (i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)n >> (8 * i));
    return crc_update(crc_update(crc, len, 8), p, n);
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}
#endif
