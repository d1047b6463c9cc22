/*
 * fuzz_hashcount.c - libFuzzer target for the hash-flooding guard
 * (ck_hashcount.c), checked against a naive count.
 *
 * Input: byte 0 picks max_share (1..32), bytes 1..8 the seed, the rest a
 * sequence of hashes. Each hash is 8 bytes, or 1 byte widened when the
 * first byte's top bit is set (so collisions are easy to reach). A finding
 * is a sanitizer report, or ck_hashcount_add disagreeing with the naive
 * count about when a hash passes max_share (abort()).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ck_hashcount.h"

#define MAX_HASHES 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint64_t seen[MAX_HASHES];
    static uint32_t counts[MAX_HASHES];
    uint64_t hashes[MAX_HASHES];
    size_t n = 0, distinct = 0, i, j, off;
    uint32_t max_share;
    uint64_t seed = 0;
    ck_hashcount t;

    if (size < 9) {
        return 0;
    }
    max_share = (uint32_t)(data[0] % 32) + 1;
    memcpy(&seed, data + 1, 8);
    off = 9;
    while (off < size && n < MAX_HASHES) {
        if (data[off] & 0x80 || size - off < 8) {
            hashes[n++] = data[off] & 0x7f;
            off += 1;
        } else {
            memcpy(&hashes[n++], data + off, 8);
            off += 8;
        }
    }
    if (ck_hashcount_init(&t, n, max_share, seed) < 0) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        int rc = ck_hashcount_add(&t, hashes[i]);
        uint32_t c = 0;

        for (j = 0; j < distinct; j++) {
            if (seen[j] == hashes[i]) {
                break;
            }
        }
        if (j == distinct) {
            seen[distinct] = hashes[i];
            counts[distinct++] = 0;
        }
        c = ++counts[j];
        if ((rc < 0) != (c > max_share)) {
            abort();
        }
        if (rc < 0) {
            break; /* the decoder stops at the first refusal */
        }
    }
    ck_hashcount_free(&t);
    ck_hashcount_free(&t); /* documented as safe */
    return 0;
}
