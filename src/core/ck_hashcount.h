/*
 * ck_hashcount.h - how many times each hash value was seen (pure C).
 *
 * The decoder's guard against hash flooding (docs/format.md, "Decoder
 * limits"). CPython inserts a key into a dict or set by probing
 * every entry that shares its hash and comparing with __eq__, so n keys with
 * one hash cost n*n/2 comparisons. Counting hashes as they arrive lets the
 * decoder refuse a container once more than `max_share` of its keys share
 * one, which bounds the dict's work at n * max_share comparisons.
 *
 * Open addressing at load <= 1/2. The hashes come from hostile input, so
 * they are mixed with a caller-supplied secret before choosing a slot: an
 * attacker who cannot see the seed cannot aim distinct hashes at one probe
 * chain of this table.
 */
#ifndef CK_HASHCOUNT_H
#define CK_HASHCOUNT_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t hash;
    uint32_t count; /* 0: empty slot */
} ck_hashcount_slot;

typedef struct {
    ck_hashcount_slot *slots;
    size_t mask; /* slots - 1 (a power of two minus one) */
    uint64_t seed;
    uint32_t max_share;
} ck_hashcount;

/* Room for n hashes. 0, or -1 when out of memory (nothing to free then). */
int ck_hashcount_init(ck_hashcount *t, size_t n, uint32_t max_share, uint64_t seed);

/* Count one more occurrence of h: 0, or -1 once more than max_share of the
   hashes added are equal to h. At most the n announced to init. */
int ck_hashcount_add(ck_hashcount *t, uint64_t h);

/* Safe on a table whose init failed, and twice. */
void ck_hashcount_free(ck_hashcount *t);

#endif /* CK_HASHCOUNT_H */
