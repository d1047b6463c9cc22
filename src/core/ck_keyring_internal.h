/*
 * ck_keyring_internal.h - PRIVATE to the files that make up ck_keyring
 * (ck_keyring.c, ck_keyring_dek.c, ck_keyring_fork.c). Nothing else may
 * include it: the layout of struct ck_keyring and the functions here have no
 * stability promise; the public interface is ck_keyring.h.
 *
 * The keyring is split by job:
 *   ck_keyring.c       lifecycle (master keys, provider, limits), seal,
 *                      open, stats: the public entry points.
 *   ck_keyring_dek.c   where data keys come from: the reference-counted
 *                      keys, the tenant (write) and read caches, the
 *                      singleflight fetches ("flights"), DEK retirement.
 *   ck_keyring_fork.c  fork safety: the registry of live keyrings and the
 *                      pthread_atfork handlers.
 */
#ifndef CK_KEYRING_INTERNAL_H
#define CK_KEYRING_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "ck_crypto.h"
#include "ck_keyring.h"
#include "ck_l1.h"

#define READ_ID_MAX (1 + CK_SEAL_FP_LEN + 2 + CK_KEYRING_MAX_TENANT + CK_SEAL_MAX_WRAPPED)

/* ------------------------------------------------------------------ types */

typedef struct {
    unsigned char key[CK_KEYRING_MAX_MASTER];
    size_t len;
    unsigned char fp[CK_SEAL_FP_LEN];
} master_key;

/* A reference-counted AES-GCM key: a write DEK, a read DEK. The last
   release wipes it. */
struct read_memo;

typedef struct {
    int refs;            /* atomic */
    ck_aead *aead;
    uint64_t created_ns; /* keyring clock when unwrapped (read keys age out) */
    struct read_memo *memo; /* read keys: the memo to forget it in when the cache drops it */
    int dropped;            /* atomic; set once the reads cache let go of it */
} key_ref;

/* Write state of one tenant. */
typedef struct {
    int refs;              /* atomic */
    pthread_mutex_t lock;  /* guards everything below */
    pthread_cond_t cond;   /* broadcast when a DEK fetch ends */
    ck_aead *kek;          /* local provider: wraps this tenant's DEKs */
    unsigned char name_key[32]; /* local provider: keys this tenant's L2 names */
    int has_name_key;
    key_ref *dek;          /* current write DEK, NULL until the first seal */
    unsigned char wrapped[CK_SEAL_MAX_WRAPPED];
    size_t wrapped_len;
    unsigned char nonce_prefix[4]; /* random per DEK instance: see ck_keyring_ensure_dek */
    uint64_t counter;      /* next nonce: nonce_prefix || be64 counter */
    uint64_t bytes;
    uint64_t created_ns;
    int fetching;          /* a thread is making a new DEK */
    uint64_t fetch_seq;    /* fetches ended so far */
    int fetch_failed;      /* outcome of the last fetch ... */
    ck_error fetch_err;    /* ... and its error, for the callers that waited */
} tenant_state;

/* A read DEK being unwrapped; callers wanting the same one wait for it. */
typedef struct flight {
    struct flight *next;
    int refs;              /* the fetcher + waiters; under flight_lock */
    int done;
    key_ref *rk;           /* result (one reference held by the flight) */
    ck_error err;
    size_t id_len;
    unsigned char id[READ_ID_MAX];
} flight;

/*
 * The read keys used last, in front of the reads cache (ck_keyring_dek.c,
 * "Read-key memo"): a hit compares the entry's id with a few slots
 * instead of hashing it and probing the cache. Each slot holds one
 * reference; entries are valid only for the epoch they were filled in.
 */
#define READ_MEMO_SLOTS 4

typedef struct {
    key_ref *rk;    /* one reference, or NULL */
    uint64_t epoch; /* kr->epoch when filled */
    size_t id_len;
    unsigned char id[READ_ID_MAX];
} read_memo_slot;

typedef struct read_memo {
    pthread_mutex_t lock; /* guards everything below; held across fork() */
    unsigned next;        /* slot the next fill replaces */
    read_memo_slot slots[READ_MEMO_SLOTS];
} read_memo;

struct ck_keyring {
    master_key masters[1 + CK_KEYRING_MAX_PREVIOUS]; /* [0] is current */
    size_t n_masters;
    ck_key_provider ext;  /* external provider; ext.id == 0 when local */
    unsigned char ext_fp[CK_SEAL_FP_LEN];
    ck_keyring_limits lim;
    ck_l1 *tenants;
    ck_l1 *reads;
    ck_l1_owner tenant_owner;
    ck_l1_owner read_owner;
    pthread_mutex_t flight_lock;
    pthread_cond_t flight_cond;
    flight *flights;
    uint64_t generation;      /* ck_keyring_fork_generation when the caches were filled */
    uint64_t epoch;           /* atomic; bumped by reset */
    uint64_t clock_offset_ns; /* atomic; tests move the clock */
    ck_keyring_stats stats;   /* counters updated atomically */
    ck_mac *l1_mac;           /* keys @cache.secure's L1 entries (ck_keyring_l1_key) */
    read_memo *memo;          /* ordinary heap: ids are not secret, and the secure heap is small */
    ck_keyring *reg_prev;     /* registry links, under registry_lock */
    ck_keyring *reg_next;
    int registered;
};

/* ------------------------------------------------------- shared helpers */

/* Used by all three files, several times on the seal and open paths; each
   is a load or an atomic add, so they are inlined rather than called. */
static inline uint64_t keyring_now(ck_keyring *kr)
{
    return ck_l1_now_ns() + __atomic_load_n(&kr->clock_offset_ns, __ATOMIC_RELAXED);
}

static inline void count(uint64_t *field)
{
    __atomic_add_fetch(field, 1, __ATOMIC_RELAXED);
}

static inline int is_external(const ck_keyring *kr)
{
    return kr->ext.id != 0;
}

/* ----------------------------------------------- ck_keyring_dek.c: keys */

/* Reference counting of key_ref (a write or read DEK) and tenant_state;
   the last release wipes the key material. void * so they serve as ck_l1
   ops. NULL is accepted by the releases. */
void ck_keyring_key_retain(void *v);
void ck_keyring_key_release(void *v);
void ck_keyring_tenant_release(void *v);

/* The ck_l1 ops of the two caches (kr->tenants, kr->reads). */
extern const ck_l1_ops ck_keyring_tenant_ops;
extern const ck_l1_ops ck_keyring_read_ops;

/* Bump the epoch and empty both caches and the read-key memo (reset, and a
   child after fork). */
void ck_keyring_drop_all(ck_keyring *kr);

/* The read-key memo's lifetime (ck_keyring_dek.c). */
read_memo *ck_keyring_memo_new(void);
void ck_keyring_memo_free(read_memo *m);

/* The tenant's write state, retained; created on first use (deriving its
   KEK with the local provider). NULL with err. */
tenant_state *ck_keyring_tenant_get(ck_keyring *kr, ck_span tenant, ck_error *err);

/* Make sure ts has a usable write DEK for n more bytes (fetching one, or
   waiting for another thread's fetch, with the GIL released through
   hooks). Called and returns holding ts->lock. 0, or -1 with err. */
int ck_keyring_ensure_dek(ck_keyring *kr, tenant_state *ts, ck_span tenant, size_t n,
                          const ck_unlock_hooks *hooks, ck_error *err);

/* The read key for the entry s, retained: from the cache, from a fetch
   already in flight, or unwrapped here. NULL with err. */
key_ref *ck_keyring_read_key_get(ck_keyring *kr, const ck_sealed *s, ck_span tenant,
                                 const ck_unlock_hooks *hooks, ck_error *err);

/* ---------------------------------------------- ck_keyring_fork.c: fork */

/* Bumped in every forked child; kr->generation records the value the
   caches were filled under. Atomic. */
extern uint64_t ck_keyring_fork_generation;

/* Put kr on the registry the fork handlers walk (registering them on first
   use): 0, or -1 with err when they could not be registered. */
int ck_keyring_registry_add(ck_keyring *kr, ck_error *err);
/* Take kr off the registry (no-op when it never got on). */
void ck_keyring_registry_remove(ck_keyring *kr);

/* Called by every entry point: in a child forked since the caches were
   filled, drop them, so the child never reuses its parent's DEKs. */
void ck_keyring_check_fork(ck_keyring *kr);

#endif /* CK_KEYRING_INTERNAL_H */
