/*
 * ck_siphash.c - SipHash-2-4 with a 128-bit output (pure C, no Python;
 * interface in ck_crypto.h), the keyed PRF that indexes @cache.secure's L1
 * store (ck_mac.c, docs/security.md "L1 under @cache.secure").
 *
 * Why our own code for this one function: OpenSSL's SipHash sits behind
 * EVP_MAC, whose init/update/final protocol (a context reset, a parameter
 * read of the output size, the final copy) cost ~930 instructions per
 * secure L1 hit for a 2-byte message, against ~150 for the rounds
 * themselves. SipHash is a 40-line function over 64-bit words with no
 * tables or secret-dependent branches or memory accesses. Its output is
 * checked against OpenSSL's EVP_MAC "SIPHASH" whenever a MAC key is set
 * up (ck_mac.c: ck_mac_new_random refuses to use this code if they differ)
 * and against the reference vectors in tests/test_siphash.py.
 *
 * Algorithm (Aumasson and Bernstein, "SipHash: a fast short-input PRF",
 * 2012): four 64-bit state words seeded from the two key words; each
 * 8-byte little-endian message word is xored into v3, mixed by two
 * SipRounds (c = 2) and xored into v0; the last word carries the length
 * mod 256 in its top byte; finalisation xors a constant into v2 and runs
 * four SipRounds (d = 4) per 64-bit output half. For a 128-bit output v1
 * starts xored with 0xee, the first finalisation uses 0xee, the second
 * 0xdd.
 */
#include "ck_crypto.h"

#include <stdint.h>
#include <string.h>

static inline uint64_t rotl64(uint64_t x, unsigned b)
{
    return (x << b) | (x >> (64u - b));
}

/* Little-endian words; on a little-endian host a plain 8-byte copy, which
   the compiler turns into one move. */
static inline uint64_t load_le64(const unsigned char *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;

    memcpy(&v, p, 8);
    return v;
#else
    return (uint64_t)p[0] | ((uint64_t)p[1] << 8) | ((uint64_t)p[2] << 16) |
           ((uint64_t)p[3] << 24) | ((uint64_t)p[4] << 32) | ((uint64_t)p[5] << 40) |
           ((uint64_t)p[6] << 48) | ((uint64_t)p[7] << 56);
#endif
}

static inline void store_le64(unsigned char *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(p, &v, 8);
#else
    unsigned i;

    for (i = 0; i < 8; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
#endif
}

#define SIPROUND(v0, v1, v2, v3)                                                               \
    do {                                                                                       \
        v0 += v1;                                                                              \
        v1 = rotl64(v1, 13);                                                                   \
        v1 ^= v0;                                                                              \
        v0 = rotl64(v0, 32);                                                                   \
        v2 += v3;                                                                              \
        v3 = rotl64(v3, 16);                                                                   \
        v3 ^= v2;                                                                              \
        v0 += v3;                                                                              \
        v3 = rotl64(v3, 21);                                                                   \
        v3 ^= v0;                                                                              \
        v2 += v1;                                                                              \
        v1 = rotl64(v1, 17);                                                                   \
        v1 ^= v2;                                                                              \
        v2 = rotl64(v2, 32);                                                                   \
    } while (0)

void ck_siphash128(const uint64_t key[2], const unsigned char *msg, size_t n,
                   unsigned char out[16])
{
    uint64_t v0 = 0x736f6d6570736575ULL ^ key[0];
    uint64_t v1 = 0x646f72616e646f6dULL ^ key[1] ^ 0xee;
    uint64_t v2 = 0x6c7967656e657261ULL ^ key[0];
    uint64_t v3 = 0x7465646279746573ULL ^ key[1];
    uint64_t m, b = ((uint64_t)n) << 56;
    size_t i, full = n & ~(size_t)7;

    for (i = 0; i < full; i += 8) {
        m = load_le64(msg + i);
        v3 ^= m;
        SIPROUND(v0, v1, v2, v3);
        SIPROUND(v0, v1, v2, v3);
        v0 ^= m;
    }
    /* The last 0-7 bytes, little-endian, under the length byte; built in a
       register so no copy of message bytes is left on the stack. */
    for (i = n; i > full; i--) {
        b |= (uint64_t)msg[i - 1] << (8 * (i - 1 - full));
    }
    v3 ^= b;
    SIPROUND(v0, v1, v2, v3);
    SIPROUND(v0, v1, v2, v3);
    v0 ^= b;

    v2 ^= 0xee;
    SIPROUND(v0, v1, v2, v3);
    SIPROUND(v0, v1, v2, v3);
    SIPROUND(v0, v1, v2, v3);
    SIPROUND(v0, v1, v2, v3);
    store_le64(out, v0 ^ v1 ^ v2 ^ v3);

    v1 ^= 0xdd;
    SIPROUND(v0, v1, v2, v3);
    SIPROUND(v0, v1, v2, v3);
    SIPROUND(v0, v1, v2, v3);
    SIPROUND(v0, v1, v2, v3);
    store_le64(out + 8, v0 ^ v1 ^ v2 ^ v3);
}
