/*
 * ck_l1.c - the L1 store: a chained hash table threaded on an LRU list.
 *
 * Data structure
 *   buckets[]  power-of-two array of singly linked chains (entry->hnext),
 *              indexed by the low bits of the key's 128-bit hash; doubled
 *              when the load factor passes 1.
 *   lru        circular doubly linked list through a sentinel; the entry
 *              after the sentinel is the most recently used, the one before
 *              it the least. A hit moves its entry to the front: O(1).
 *
 * Eviction is exact LRU: while a bound is exceeded the least recently used
 * entry goes. Expiry is lazy (a get that finds an expired entry drops it and
 * reports a miss, so an expired value is never served), plus a bounded sweep
 * of the LRU tail on every put so expired entries do not linger until they
 * are pushed out, plus ck_l1_purge_expired() for a full pass.
 *
 * Locking: one mutex per store guards everything above. No callback that can
 * run user code is called while it is held (see ck_l1.h, "detached").
 */
#include "ck_l1.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "ck_bytes.h"
#include "ck_l1_internal.h"


/* How many LRU-tail entries a put inspects for expiry. */
#define CK_L1_EXPIRY_SWEEP 4
#define CK_L1_INITIAL_BUCKETS 64

ck_hash128 ck_key_hash(const unsigned char *key, size_t len, uint64_t seed)
{
    XXH128_hash_t h = XXH3_128bits_withSeed(key, len, seed);
    ck_hash128 out = {h.low64, h.high64};
    return out;
}

/* ------------------------------------------------------------------ clock */

uint64_t ck_l1_now_ns(void)
{
    struct timespec ts;

    /* CLOCK_MONOTONIC cannot fail on Linux with a valid pointer; it is a
       vDSO call, about 20 ns, and only taken for entries that have a TTL. */
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The time base of entry expiry: the coarse monotonic clock, a vDSO read of
   the last kernel tick (a few ns; CLOCK_MONOTONIC's TSC read costs more than
   the rest of a TTL hit). Stamps and checks both use it, so an entry lives
   its TTL to within one tick either way (1-10 ms with HZ 1000-100). */
static inline uint64_t expiry_now(void)
{
    struct timespec ts;

    (void)clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------ list helpers */

static inline void lru_unlink(ck_l1_entry *e)
{
    e->lru.prev->next = e->lru.next;
    e->lru.next->prev = e->lru.prev;
}

static inline void lru_push_front(ck_l1 *s, ck_l1_entry *e)
{
    e->lru.next = s->lru.next;
    e->lru.prev = &s->lru;
    s->lru.next->prev = &e->lru;
    s->lru.next = &e->lru;
}

/* The least recently used entry; the list must not be empty. */
static inline ck_l1_entry *lru_tail(ck_l1 *s)
{
    return entry_of(s->lru.prev);
}

static inline ck_l1_entry **bucket_of(ck_l1 *s, ck_hash128 h)
{
    return &s->buckets[h.lo & s->mask];
}

static inline int entry_matches(const ck_l1_entry *e, const ck_l1_owner *owner, ck_hash128 h,
                                const unsigned char *key, size_t key_len)
{
    size_t i;

    if (e->hash.lo != h.lo || e->hash.hi != h.hi || e->owner != owner || e->key_len != key_len) {
        return 0;
    }
    /* Keys of one or two scalars are a few bytes: a loop beats the call. */
    if (key_len <= 16) {
        for (i = 0; i < key_len; i++) {
            if (e->key[i] != key[i]) {
                return 0;
            }
        }
        return 1;
    }
    return memcmp(e->key, key, key_len) == 0;
}

/* Unlink e from its chain and the LRU list, fix the accounting and push it
   onto the detached list. The caller holds the lock. */
static void detach(ck_l1 *s, ck_l1_entry *e, ck_l1_entry **detached)
{
    ck_l1_entry **pp = bucket_of(s, e->hash);

    while (*pp != e) {
        pp = &(*pp)->hnext;
    }
    *pp = e->hnext;
    lru_unlink(e);
    if (e->flags & ENTRY_GROUPED) {
        ck_l1_glink *g = &group_tail_of(e)->link;
        g->prev->next = g->next;
        g->next->prev = g->prev;
    }
    s->count--;
    s->bytes -= e->charge;
    e->owner->count--;
    e->owner->bytes -= e->charge;
    e->hnext = *detached;
    *detached = e;
}

static inline int expired(const ck_l1_entry *e, uint64_t now)
{
    return e->expires_ns != 0 && now >= e->expires_ns;
}

/* Past its deadline for good: an entry with freshness lives until the end
   of its stale window, whatever expires_ns says. */
static inline int dead(ck_l1_entry *e, uint64_t now)
{
    return expired(e, now) && ((e->flags & ENTRY_SWR) == 0 || now >= swr_tail_of(e)->hard_at);
}

/* A hit of an entry with freshness at or past expires_ns: -1 when its stale
   window is over (drop it). Else claim its refresh for this caller (*extra,
   *gen), mark it stale past its logical expiry, and move expires_ns on to
   the next claim: retry_ns later, but no later than the logical expiry
   (from there on hits must be counted stale) or the end of the window. */
static int swr_claim(ck_l1_entry *e, uint64_t now, uint64_t *gen, uint32_t *extra)
{
    swr_tail *t = swr_tail_of(e);
    uint64_t bound, next;

    if (now >= t->hard_at) {
        return -1;
    }
    if (now >= t->fresh_at) {
        e->flags |= CK_L1_STALE;
        bound = t->hard_at;
    } else {
        bound = t->fresh_at;
    }
    next = t->retry_ns > UINT64_MAX - now ? UINT64_MAX : now + t->retry_ns;
    e->expires_ns = next < bound ? next : bound;
    *gen = t->gen;
    *extra = CK_L1_REFRESH;
    return 0;
}

/* Double the bucket array. Failure is harmless (chains just get longer), so
   it is not reported. The caller holds the lock. */
static void maybe_grow(ck_l1 *s)
{
    size_t n = s->mask + 1, i;
    ck_l1_entry **nb;

    if (s->count <= n || n > SIZE_MAX / (2 * sizeof(*nb))) {
        return;
    }
    nb = calloc(2 * n, sizeof(*nb));
    if (nb == NULL) {
        return;
    }
    for (i = 0; i < n; i++) {
        ck_l1_entry *e = s->buckets[i], *next;
        for (; e != NULL; e = next) {
            next = e->hnext;
            e->hnext = nb[e->hash.lo & (2 * n - 1)];
            nb[e->hash.lo & (2 * n - 1)] = e;
        }
    }
    free(s->buckets);
    s->buckets = nb;
    s->mask = 2 * n - 1;
}

/* ------------------------------------------------------------- public API */

ck_l1 *ck_l1_new(size_t max_entries, size_t max_bytes, const ck_l1_ops *ops)
{
    ck_l1 *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        return NULL;
    }
    /* calloc: the lock starts free (held == 0). */
    s->buckets = calloc(CK_L1_INITIAL_BUCKETS, sizeof(*s->buckets));
    if (s->buckets == NULL) {
        free(s->buckets);
        free(s);
        return NULL;
    }
    s->mask = CK_L1_INITIAL_BUCKETS - 1;
    s->lru.next = s->lru.prev = &s->lru;
    s->max_entries = max_entries ? max_entries : SIZE_MAX;
    s->max_bytes = max_bytes ? max_bytes : SIZE_MAX;
    s->ops = *ops;
    return s;
}

size_t ck_l1_max_bytes(const ck_l1 *s)
{
    return s->max_bytes == SIZE_MAX ? 0 : s->max_bytes;
}

void ck_l1_free(ck_l1 *s)
{
    ck_l1_entry *detached = NULL;

    if (s == NULL) {
        return;
    }
    ck_l1_clear(s, NULL, &detached);
    ck_l1_release(s, detached);
    free(s->buckets);
    free(s);
}

int ck_l1_get(ck_l1 *s, ck_l1_owner *owner, ck_hash128 h, const unsigned char *key,
              size_t key_len, void **value, ck_l1_entry **detached)
{
    uint32_t flags;

    return ck_l1_get_ex(s, owner, h, key, key_len, value, &flags, detached);
}

int ck_l1_get_ex(ck_l1 *s, ck_l1_owner *owner, ck_hash128 h, const unsigned char *key,
                 size_t key_len, void **value, uint32_t *flags, ck_l1_entry **detached)
{
    uint64_t gen;

    return ck_l1_get_gen(s, owner, h, key, key_len, value, flags, &gen, detached);
}

int ck_l1_get_gen(ck_l1 *s, ck_l1_owner *owner, ck_hash128 h, const unsigned char *key,
                  size_t key_len, void **value, uint32_t *flags, uint64_t *gen,
                  ck_l1_entry **detached)
{
    ck_l1_entry *e;
    uint32_t extra = 0;
    uint64_t now;
    int hit = 0;

    lock_take(&s->lock);
    for (e = *bucket_of(s, h); e != NULL; e = e->hnext) {
        if (entry_matches(e, owner, h, key, key_len)) {
            break;
        }
    }
    if (e == NULL && s->count >= s->max_entries && s->lru.prev != &s->lru) {
        /* A miss of a full store is usually followed by a put that evicts
           the LRU tail: start loading it (cold in a large store) while the
           caller computes the value. */
        __builtin_prefetch(lru_tail(s));
    }
    if (e != NULL) {
        now = e->expires_ns ? expiry_now() : 0;
        if (expired(e, now) &&
            ((e->flags & ENTRY_SWR) == 0 || swr_claim(e, now, gen, &extra) < 0)) {
            detach(s, e, detached);
            s->expirations++;
        } else {
            if (s->lru.next != &e->lru) {
                lru_unlink(e);
                lru_push_front(s, e);
            }
            s->ops.retain(e->value);
            *value = e->value;
            *flags = (e->flags & (CK_L1_USER_FLAGS_MASK | CK_L1_STALE)) | extra;
            hit = 1;
        }
    }
    lock_give(&s->lock);
    return hit;
}

int ck_l1_put(ck_l1 *s, ck_l1_owner *owner, ck_hash128 h, const unsigned char *key,
              size_t key_len, void *value, size_t charge, uint64_t ttl_ns,
              ck_l1_entry **detached, ck_error *err)
{
    return ck_l1_put_ex(s, owner, NULL, h, key, key_len, value, charge, ttl_ns, 0, detached, err);
}

/* Drop (owner, h, key) if present: a put that cannot store its value must
   not leave the value it was meant to replace answering for the key. */
static void remove_stale(ck_l1 *s, ck_l1_owner *owner, ck_hash128 h, const unsigned char *key,
                         size_t key_len, ck_l1_entry **detached)
{
    (void)ck_l1_remove(s, owner, h, key, key_len, detached);
}

static int put_impl(ck_l1 *s, ck_l1_owner *owner, ck_l1_group *group, ck_hash128 h,
                    const unsigned char *key, size_t key_len, void *value, size_t charge,
                    uint64_t ttl_ns, const ck_l1_swr *swr, uint32_t flags,
                    ck_l1_entry **detached, ck_error *err);

int ck_l1_put_ex(ck_l1 *s, ck_l1_owner *owner, ck_l1_group *group, ck_hash128 h,
                 const unsigned char *key, size_t key_len, void *value, size_t charge,
                 uint64_t ttl_ns, uint32_t flags, ck_l1_entry **detached, ck_error *err)
{
    return put_impl(s, owner, group, h, key, key_len, value, charge, ttl_ns, NULL, flags,
                    detached, err);
}

int ck_l1_put_swr(ck_l1 *s, ck_l1_owner *owner, ck_l1_group *group, ck_hash128 h,
                  const unsigned char *key, size_t key_len, void *value, size_t charge,
                  const ck_l1_swr *swr, uint32_t flags, ck_l1_entry **detached, ck_error *err)
{
    return put_impl(s, owner, group, h, key, key_len, value, charge, 0, swr, flags, detached,
                    err);
}

static inline uint64_t add_sat(uint64_t a, uint64_t b)
{
    return b > UINT64_MAX - a ? UINT64_MAX : a + b;
}

/* The deadlines of a new entry with freshness (see swr_tail). */
static void swr_stamp(ck_l1_entry *e, const ck_l1_swr *swr, uint64_t now)
{
    swr_tail *t = swr_tail_of(e);
    uint64_t early = swr->early_ns < swr->fresh_ns ? swr->early_ns : swr->fresh_ns;

    t->fresh_at = add_sat(now, swr->fresh_ns);
    t->hard_at = add_sat(t->fresh_at, swr->stale_ns);
    t->retry_ns = swr->retry_ns;
    e->expires_ns = add_sat(now, early);
    if (e->expires_ns > t->hard_at) {
        e->expires_ns = t->hard_at;
    }
}

/* 1 when a put expecting generation gen may replace old (NULL: none). */
static int gen_matches(ck_l1_entry *old, uint64_t gen)
{
    return gen == 0 || (old != NULL && (old->flags & ENTRY_SWR) && swr_tail_of(old)->gen == gen);
}

static int put_impl(ck_l1 *s, ck_l1_owner *owner, ck_l1_group *group, ck_hash128 h,
                    const unsigned char *key, size_t key_len, void *value, size_t charge,
                    uint64_t ttl_ns, const ck_l1_swr *swr, uint32_t flags,
                    ck_l1_entry **detached, ck_error *err)
{
    ck_l1_entry *e, *old;
    size_t alloc;
    uint64_t now = 0;
    int i;

    if (key_len > UINT32_MAX || charge > SIZE_MAX / 2) {
        remove_stale(s, owner, h, key, key_len, detached);
        return ck_error_set(err, CK_ELIMIT, "cache entry too large");
    }
    alloc = group != NULL ? group_tail_offset(key_len) + sizeof(group_tail)
                          : sizeof(*e) + key_len;
    if (swr != NULL) {
        alloc = swr_tail_offset(key_len, group != NULL) + sizeof(swr_tail);
        charge += sizeof(swr_tail);
        ttl_ns = 1; /* read the clock; the deadlines come from swr */
    }
    charge += key_len + CK_L1_ENTRY_OVERHEAD + (group != NULL ? sizeof(group_tail) : 0);
    if (charge > s->max_bytes) {
        remove_stale(s, owner, h, key, key_len, detached);
        return 0;
    }
    e = malloc(alloc);
    if (e == NULL) {
        remove_stale(s, owner, h, key, key_len, detached);
        return ck_error_set(err, CK_ENOMEM, "out of memory for a cache entry");
    }
    if (ttl_ns != 0) {
        now = expiry_now();
    }
    e->owner = owner;
    e->hash = h;
    e->expires_ns = ttl_ns == 0 ? 0 : (ttl_ns > UINT64_MAX - now ? UINT64_MAX : now + ttl_ns);
    e->charge = charge;
    e->value = value;
    e->key_len = (uint32_t)key_len;
    e->flags = (flags & CK_L1_USER_FLAGS_MASK) | (group != NULL ? ENTRY_GROUPED : 0) |
               (swr != NULL ? ENTRY_SWR : 0);
    memcpy(e->key, key, key_len);
    if (swr != NULL) {
        swr_stamp(e, swr, now);
    }

    lock_take(&s->lock);
    for (old = *bucket_of(s, h); old != NULL; old = old->hnext) {
        if (entry_matches(old, owner, h, key, key_len)) {
            break;
        }
    }
    if (swr != NULL && !gen_matches(old, swr->expect_gen)) {
        /* Invalidated, replaced or evicted since the refresh was claimed. */
        lock_give(&s->lock);
        free(e);
        return 2;
    }
    s->ops.retain(value);
    if (old != NULL) {
        detach(s, old, detached);
    }
    if (swr != NULL) {
        swr_tail_of(e)->gen = ++s->next_gen;
    }
    e->hnext = *bucket_of(s, h);
    *bucket_of(s, h) = e;
    lru_push_front(s, e);
    if (group != NULL) {
        group_tail *t = group_tail_of(e);
        t->entry = e;
        t->link.next = group->head.next;
        t->link.prev = &group->head;
        group->head.next->prev = &t->link;
        group->head.next = &t->link;
    }
    s->count++;
    s->bytes += charge;
    owner->count++;
    owner->bytes += charge;

    /* Drop a few expired entries from the cold end first, so a bound is not
       met by evicting live entries while dead ones remain. The clock is read
       only once a tail entry can expire at all. */
    for (i = 0; i < CK_L1_EXPIRY_SWEEP && s->lru.prev != &e->lru; i++) {
        ck_l1_entry *tail = lru_tail(s);
        if (tail->expires_ns == 0) {
            break;
        }
        if (now == 0) {
            now = expiry_now();
        }
        if (!dead(tail, now)) {
            break;
        }
        detach(s, tail, detached);
        s->expirations++;
    }
    /* e itself fits (checked above), so this stops before reaching it. */
    while ((s->count > s->max_entries || s->bytes > s->max_bytes) && s->lru.prev != &e->lru) {
        detach(s, lru_tail(s), detached);
        s->evictions++;
    }
    maybe_grow(s);
    lock_give(&s->lock);
    return 1;
}

int ck_l1_remove(ck_l1 *s, ck_l1_owner *owner, ck_hash128 h, const unsigned char *key,
                 size_t key_len, ck_l1_entry **detached)
{
    ck_l1_entry *e;

    lock_take(&s->lock);
    for (e = *bucket_of(s, h); e != NULL; e = e->hnext) {
        if (entry_matches(e, owner, h, key, key_len)) {
            detach(s, e, detached);
            break;
        }
    }
    lock_give(&s->lock);
    return e != NULL;
}

void ck_l1_clear(ck_l1 *s, ck_l1_owner *owner, ck_l1_entry **detached)
{
    ck_l1_link *link, *prev;

    lock_take(&s->lock);
    for (link = s->lru.prev; link != &s->lru; link = prev) {
        ck_l1_entry *e = entry_of(link);
        prev = link->prev;
        if (owner == NULL || e->owner == owner) {
            detach(s, e, detached);
        }
    }
    lock_give(&s->lock);
}

void ck_l1_group_init(ck_l1_group *g)
{
    g->head.next = g->head.prev = &g->head;
}

void ck_l1_clear_group(ck_l1 *s, ck_l1_group *g, ck_l1_entry **detached)
{
    lock_take(&s->lock);
    while (g->head.next != &g->head) {
        /* detach() unlinks the entry from g, so the loop advances. */
        detach(s, ((group_tail *)g->head.next)->entry, detached);
    }
    lock_give(&s->lock);
}

size_t ck_l1_purge_expired(ck_l1 *s, ck_l1_entry **detached)
{
    ck_l1_link *link, *prev;
    uint64_t now = expiry_now();
    size_t n = 0;

    lock_take(&s->lock);
    for (link = s->lru.prev; link != &s->lru; link = prev) {
        ck_l1_entry *e = entry_of(link);
        prev = link->prev;
        if (dead(e, now)) {
            detach(s, e, detached);
            s->expirations++;
            n++;
        }
    }
    lock_give(&s->lock);
    return n;
}

void ck_l1_release(ck_l1 *s, ck_l1_entry *detached)
{
    while (detached != NULL) {
        ck_l1_entry *next = detached->hnext;
        s->ops.release(detached->value);
        free(detached);
        detached = next;
    }
}
