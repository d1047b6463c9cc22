/*
 * ck_l1.h - the in-process L1 store (pure C): hash table + LRU + TTL.
 *
 * Values are opaque pointers; the store never interprets them. It takes a
 * reference through ops.retain when a value goes in or is handed out, and
 * drops one through ops.release. retain runs under the store lock and must
 * not re-enter the store; release can run arbitrary code (a Python __del__),
 * so the store never calls it itself while locked: every operation that
 * drops entries hands them back as a "detached" list, and the caller passes
 * that list to ck_l1_release() after the lock is gone.
 *
 * Several owners (decorated functions) may share one store and its bounds.
 * An entry belongs to one owner; lookups match owner, 128-bit hash and the
 * full key bytes, so even a hash collision cannot return another key's value.
 */
#ifndef CK_L1_H
#define CK_L1_H

#include <stddef.h>
#include <stdint.h>

#include "ck_buf.h"
#include "ck_error.h"

typedef struct ck_l1 ck_l1;
typedef struct ck_l1_entry ck_l1_entry;

typedef struct {
    uint64_t lo;
    uint64_t hi;
} ck_hash128;

typedef struct {
    void (*retain)(void *value);
    void (*release)(void *value);
} ck_l1_ops;

/* Per-owner accounting, maintained by the store under its lock. The owner
   must outlive its entries: call ck_l1_clear(store, owner, ...) before
   freeing it. */
typedef struct {
    size_t count;
    size_t bytes;
} ck_l1_owner;

/* Group links: an entry put with a group is also threaded on the group's
   list, so every entry of the group can be dropped at once without scanning
   the store (the entries of one method instance, dropped when it dies). */
typedef struct ck_l1_glink {
    struct ck_l1_glink *prev, *next;
} ck_l1_glink;

/* A group must outlive its entries: call ck_l1_clear_group() before freeing
   it. Initialise with ck_l1_group_init(). Guarded by the store's lock. */
typedef struct {
    ck_l1_glink head;
} ck_l1_group;

/* Flags a caller may attach to an entry (returned by ck_l1_get_ex). The
   store keeps them and never interprets them. */
#define CK_L1_USER_FLAGS_MASK 0xffff0000u

/* Flags the store reports about a hit of an entry put with freshness
   (ck_l1_put_swr): STALE, the value is past its logical expiry (served in
   its stale window); REFRESH, this caller claimed the entry's refresh (one
   claim per retry interval; the generation comes back with it). */
#define CK_L1_STALE 0x00000100u
#define CK_L1_REFRESH 0x00000200u

/* Freshness of an entry (stale-while-revalidate, docs/freshness.md). The
   entry is fresh for fresh_ns, then stale for stale_ns more, then gone.
   From early_ns on (early_ns <= fresh_ns) a hit claims a refresh; after a
   claim the next one comes retry_ns later (or at the logical expiry). With
   expect_gen non-zero the put replaces only the entry of that generation
   (a refresh that must not land on an entry invalidated since). */
typedef struct {
    uint64_t fresh_ns;
    uint64_t stale_ns;
    uint64_t early_ns;
    uint64_t retry_ns;
    uint64_t expect_gen;
} ck_l1_swr;

typedef struct {
    size_t count;
    size_t bytes;
    size_t max_entries;
    size_t max_bytes;
    uint64_t evictions;   /* dropped to respect a bound */
    uint64_t expirations; /* dropped because their TTL passed */
} ck_l1_stats;

/* XXH3-128 of key bytes with a seed: the hash every lookup uses. */
ck_hash128 ck_key_hash(const unsigned char *key, size_t len, uint64_t seed);

/* Fixed cost charged per entry on top of the value and key sizes: the
   entry header (80 bytes), its allocator header and its bucket slot. */
#define CK_L1_ENTRY_OVERHEAD 96

/* max_entries / max_bytes of 0 mean "no bound". Returns NULL on ENOMEM. */
ck_l1 *ck_l1_new(size_t max_entries, size_t max_bytes, const ck_l1_ops *ops);
/* Free the store; every value still held is released (no lock held then). */
void ck_l1_free(ck_l1 *s);

/* The byte bound given at creation (0: none). Fixed, so read without the lock. */
size_t ck_l1_max_bytes(const ck_l1 *s);

/* Monotonic clock in nanoseconds, the time base of every TTL. */
uint64_t ck_l1_now_ns(void);

/*
 * Look up (owner, hash, key). On a live hit, retains the value, stores it in
 * *value, marks the entry most recently used and returns 1. Returns 0 on a
 * miss; an expired entry found on the way is unlinked onto *detached.
 */
int ck_l1_get(ck_l1 *s, ck_l1_owner *owner, ck_hash128 h, const unsigned char *key,
              size_t key_len, void **value, ck_l1_entry **detached);

/* ck_l1_get that also returns the entry's user flags (see ck_l1_put_ex). */
int ck_l1_get_ex(ck_l1 *s, ck_l1_owner *owner, ck_hash128 h, const unsigned char *key,
                 size_t key_len, void **value, uint32_t *flags, ck_l1_entry **detached);

/*
 * Insert or replace (owner, hash, key) -> value, retaining value. ttl_ns of 0
 * means no expiry. charge is the value's size in bytes. Evicts least recently
 * used entries (and a few expired ones) onto *detached to respect the bounds.
 * Returns 1 if stored, 0 if the entry alone exceeds max_bytes (nothing
 * stored; an older entry of the same key is removed, so a value that can no
 * longer be stored is never answered by the one it replaces), -1 with err
 * on allocation failure (the old entry is removed then too).
 */
int ck_l1_put(ck_l1 *s, ck_l1_owner *owner, ck_hash128 h, const unsigned char *key,
              size_t key_len, void *value, size_t charge, uint64_t ttl_ns,
              ck_l1_entry **detached, ck_error *err);

/* ck_l1_put with a group (NULL: none) and user flags (within
   CK_L1_USER_FLAGS_MASK) kept with the entry. */
int ck_l1_put_ex(ck_l1 *s, ck_l1_owner *owner, ck_l1_group *group, ck_hash128 h,
                 const unsigned char *key, size_t key_len, void *value, size_t charge,
                 uint64_t ttl_ns, uint32_t flags, ck_l1_entry **detached, ck_error *err);

/* ck_l1_put_ex with freshness (swr not NULL; ttl comes from it). Returns as
   ck_l1_put_ex, and 2 when swr->expect_gen did not match: nothing stored. */
int ck_l1_put_swr(ck_l1 *s, ck_l1_owner *owner, ck_l1_group *group, ck_hash128 h,
                  const unsigned char *key, size_t key_len, void *value, size_t charge,
                  const ck_l1_swr *swr, uint32_t flags, ck_l1_entry **detached, ck_error *err);

/* ck_l1_get_ex that also reports, with CK_L1_REFRESH, the generation of the
   entry whose refresh this caller claimed (*gen; untouched otherwise). */
int ck_l1_get_gen(ck_l1 *s, ck_l1_owner *owner, ck_hash128 h, const unsigned char *key,
                  size_t key_len, void **value, uint32_t *flags, uint64_t *gen,
                  ck_l1_entry **detached);

void ck_l1_group_init(ck_l1_group *g);

/* Remove every entry of a group. */
void ck_l1_clear_group(ck_l1 *s, ck_l1_group *g, ck_l1_entry **detached);

/* Remove one key. Returns 1 if it was present. */
int ck_l1_remove(ck_l1 *s, ck_l1_owner *owner, ck_hash128 h, const unsigned char *key,
                 size_t key_len, ck_l1_entry **detached);

/* Remove every entry of owner, or of all owners when owner is NULL. */
void ck_l1_clear(ck_l1 *s, ck_l1_owner *owner, ck_l1_entry **detached);

/* Remove every expired entry. Returns how many. */
size_t ck_l1_purge_expired(ck_l1 *s, ck_l1_entry **detached);

/* Release the values of a detached list and free its entries. Call with no
   store lock held; release callbacks may re-enter any store. */
void ck_l1_release(ck_l1 *s, ck_l1_entry *detached);

void ck_l1_get_stats(ck_l1 *s, ck_l1_stats *out);

/* Tests: append every entry's key bytes to out as le32 length || key, most
   recent first. Copied under the lock into C memory only (so no Python
   allocation, which could run the collector, happens while it is held).
   0, or -1 when out cannot grow. */
int ck_l1_copy_keys(ck_l1 *s, ck_buf *out);

/* fork() support for an owner that registers pthread_atfork handlers: take
   the store lock before fork (so no other thread is inside the store when
   the child is made) and give it back afterwards, in the parent and in the
   child alike (the child's only thread is the one that took it). */
void ck_l1_lock_for_fork(ck_l1 *s);
void ck_l1_unlock_after_fork(ck_l1 *s);

/* Call visit(value, arg) for every value held, under the lock, stopping at
   the first non-zero result, which is returned. For the garbage collector's
   traversal: visit must not run user code or touch the store. */
int ck_l1_visit(ck_l1 *s, int (*visit)(void *value, void *arg), void *arg);

#endif /* CK_L1_H */
