/*
 * ck_l1_internal.h - the L1 store's private layout (pure C), shared by
 * ck_l1.c (lookups, puts, expiry, freshness) and ck_l1_walk.c (whole-store
 * walks: stats, GC traversal, key copies, fork locking). Not an API.
 */
#ifndef CK_L1_INTERNAL_H
#define CK_L1_INTERNAL_H

#include <sched.h>
#include <stdint.h>

#include "ck_l1.h"

/* LRU list links. The first member of every entry, so a link that is not
   the sentinel converts back to its entry with a cast. */
typedef struct ck_l1_link {
    struct ck_l1_link *prev, *next;
} ck_l1_link;

struct ck_l1_entry {
    ck_l1_link lru;              /* must stay first */
    ck_l1_entry *hnext;          /* bucket chain; reused as the detached-list link */
    ck_l1_owner *owner;
    ck_hash128 hash;
    uint64_t expires_ns;         /* 0: never */
    size_t charge;               /* bytes counted against max_bytes */
    void *value;                 /* one reference, taken with ops.retain */
    uint32_t key_len;
    uint32_t flags;              /* ENTRY_GROUPED | user flags */
    unsigned char key[];         /* full key bytes, compared on lookup; a
                                    grouped entry's ck_l1_glink follows at
                                    glink_offset(key_len) */
};

/* Store-private flags: the entry is threaded on a group's list; the entry
   has freshness (a swr_tail, see ck_l1_put_swr). */
#define ENTRY_GROUPED 0x1u
#define ENTRY_SWR 0x2u

/* What a grouped entry carries after its key: its link on the group's list
   and a pointer back to itself (a link alone cannot find its entry, whose
   key length varies). */
typedef struct {
    ck_l1_glink link; /* must stay first */
    ck_l1_entry *entry;
} group_tail;

static inline size_t group_tail_offset(size_t key_len)
{
    size_t a = _Alignof(group_tail);
    size_t end = sizeof(ck_l1_entry) + key_len;
    return (end + a - 1) / a * a;
}

static inline group_tail *group_tail_of(ck_l1_entry *e)
{
    return (group_tail *)((unsigned char *)e + group_tail_offset(e->key_len));
}

/* What an entry with freshness carries last (after its key and group
   tail). expires_ns is then the next moment a hit must look here: the
   early-refresh point, the retry after a claim, the logical expiry. The
   hot path of a fresh hit stays one compare against expires_ns. */
typedef struct {
    uint64_t fresh_at; /* logical expiry: stale from here on */
    uint64_t hard_at;  /* end of the stale window: dropped from here on */
    uint64_t retry_ns; /* between two refresh claims */
    uint64_t gen;      /* store-unique generation, for refreshes landing late */
} swr_tail;

static inline size_t swr_tail_offset(size_t key_len, int grouped)
{
    size_t a = _Alignof(swr_tail);
    size_t end = grouped ? group_tail_offset(key_len) + sizeof(group_tail)
                         : sizeof(ck_l1_entry) + key_len;
    return (end + a - 1) / a * a;
}

static inline swr_tail *swr_tail_of(ck_l1_entry *e)
{
    return (swr_tail *)((unsigned char *)e +
                        swr_tail_offset(e->key_len, (e->flags & ENTRY_GROUPED) != 0));
}

/*
 * The store lock: a test-and-set lock whose waiters yield the CPU. Every
 * call of a cached function takes it, nearly always uncontended (callers
 * hold the GIL and run no Python code under it), and an uncontended
 * pthread mutex lock + unlock cost ~55 instructions of a ~900-instruction
 * hit against a few here. Sections are short (a lookup, a put and its
 * evictions) except clear, copy_keys and a rehash, which a waiter sits out
 * in sched_yield rather than spinning hot.
 */
typedef struct {
    int held;
} store_lock;

static inline void lock_take(store_lock *l)
{
    while (__atomic_exchange_n(&l->held, 1, __ATOMIC_ACQUIRE)) {
        while (__atomic_load_n(&l->held, __ATOMIC_RELAXED)) {
            sched_yield();
        }
    }
}

static inline void lock_give(store_lock *l)
{
    __atomic_store_n(&l->held, 0, __ATOMIC_RELEASE);
}

struct ck_l1 {
    store_lock lock;
    ck_l1_entry **buckets;
    size_t mask;                 /* nbuckets - 1 */
    ck_l1_link lru;              /* sentinel: lru.next is the most recent */
    size_t count;
    size_t bytes;
    size_t max_entries;          /* SIZE_MAX when unbounded */
    size_t max_bytes;            /* SIZE_MAX when unbounded */
    uint64_t evictions;
    uint64_t expirations;
    uint64_t next_gen;           /* generations of entries with freshness */
    ck_l1_ops ops;
};

static inline ck_l1_entry *entry_of(ck_l1_link *link)
{
    return (ck_l1_entry *)link;
}

#endif /* CK_L1_INTERNAL_H */
