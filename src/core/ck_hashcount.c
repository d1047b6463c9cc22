/*
 * ck_hashcount.c - the hash-occurrence table behind the decoder's
 * hash-flooding guard (see ck_hashcount.h).
 */
#include "ck_hashcount.h"

#include <stdlib.h>

/* splitmix64's finaliser: every input bit moves every output bit, so the
   slot depends on the whole (seeded) hash, not just its low bits. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

int ck_hashcount_init(ck_hashcount *t, size_t n, uint32_t max_share, uint64_t seed)
{
    size_t slots = 8;

    t->slots = NULL;
    t->mask = 0;
    t->seed = seed;
    t->max_share = max_share;
    /* Load <= 1/2 keeps probe chains short; n is bounded by the input length
       (the decoder checked it), so this cannot overflow in practice. */
    while (slots / 2 < n) {
        if (slots > SIZE_MAX / 2 / sizeof(ck_hashcount_slot)) {
            return -1;
        }
        slots *= 2;
    }
    t->slots = calloc(slots, sizeof(ck_hashcount_slot));
    if (t->slots == NULL) {
        return -1;
    }
    t->mask = slots - 1;
    return 0;
}

int ck_hashcount_add(ck_hashcount *t, uint64_t h)
{
    size_t i = (size_t)(mix(h ^ t->seed) & t->mask);
    ck_hashcount_slot *s;

    /* Linear probing: the mixed hash already spreads the keys, and the table
       is never more than half full, so an empty slot is always found. */
    for (;;) {
        s = &t->slots[i];
        if (s->count == 0) {
            s->hash = h;
            s->count = 1;
            return 0;
        }
        if (s->hash == h) {
            if (s->count >= t->max_share) {
                return -1;
            }
            s->count++;
            return 0;
        }
        i = (i + 1) & t->mask;
    }
}

void ck_hashcount_free(ck_hashcount *t)
{
    free(t->slots);
    t->slots = NULL;
    t->mask = 0;
}
