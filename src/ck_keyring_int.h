/*
 * ck_keyring_int.h - the keyring's data structures and the helpers its
 * three files share (private to ck_keyring.c, ck_keyring_seal.c and
 * ck_keyring_open.c; the interface is ck_keyring.h).
 *
 * Two caches, both ck_l1 stores so eviction, bounds and "release outside
 * the lock" come from one implementation:
 *   tenants  tenant bytes -> tenant_state (KEK + current write DEK), LRU
 *            bounded by tenant_capacity, no TTL (DEK age is checked inside).
 *   reads    provider || fp || be16 len || tenant || wrapped DEK -> key_ref
 *            (an unwrapped DEK), LRU bounded by read_capacity; a key older
 *            than read_max_age on the keyring's clock is dropped on lookup.
 * Values are reference counted; the last release wipes the key material.
 *
 * Singleflight. A write DEK is fetched by one thread per tenant state
 * (ts->fetching); a read DEK by one thread per wrapped key (a "flight").
 * Others wait on a condition variable with the GIL released (hooks->leave),
 * because the fetch may be Python code (a KMS call) that needs the GIL. The
 * rule that keeps this deadlock-free: no thread ever waits for the GIL while
 * holding a keyring lock, and no lock is held while a provider runs. A
 * failed fetch is reported to the callers that waited for it and then
 * forgotten. reset() bumps an epoch; a read fetch that started before does
 * not fill the cache, and a write fetch lands in a tenant state that the
 * reset already detached, so new callers fetch afresh.
 *
 * Fork safety: pthread_atfork handlers hold every keyring's flight and
 * cache locks across fork(); in the child they empty the flight list (its
 * fetchers are gone) and bump a fork generation. Any entry point that sees
 * a generation newer than the one its caches were filled in first drops
 * both caches, so a child never seals with a DEK (or counter) its parent
 * also uses. Details at "fork watch" in ck_keyring.c.
 */
#ifndef CK_KEYRING_INT_H
#define CK_KEYRING_INT_H

#include <pthread.h>
#include <stdint.h>

#include "ck_crypto.h"
#include "ck_keyring.h"
#include "ck_l1.h"

#define KEK_SALT "cachekit/v1/kek"
#define FP_SALT "cachekit/v1/fingerprint"
#define PROVIDER_FP_SALT "cachekit/v1/provider-fingerprint"
#define WRAP_AAD_DOMAIN "CKWRAP1"
#define READ_ID_MAX (1 + CK_SEAL_FP_LEN + 2 + CK_KEYRING_MAX_TENANT + CK_SEAL_MAX_WRAPPED)

/* ------------------------------------------------------------------ types */

typedef struct {
    unsigned char key[CK_KEYRING_MAX_MASTER];
    size_t len;
    unsigned char fp[CK_SEAL_FP_LEN];
} master_key;

/* A reference-counted AES-GCM key: a write DEK, a read DEK. The last
   release wipes it. */
typedef struct {
    int refs;            /* atomic */
    ck_aead *aead;
    uint64_t created_ns; /* keyring clock when unwrapped (read keys age out) */
} key_ref;

/* Write state of one tenant. */
typedef struct {
    int refs;              /* atomic */
    pthread_mutex_t lock;  /* guards everything below */
    pthread_cond_t cond;   /* broadcast when a DEK fetch ends */
    ck_aead *kek;          /* local provider: wraps this tenant's DEKs */
    key_ref *dek;          /* current write DEK, NULL until the first seal */
    unsigned char wrapped[CK_SEAL_MAX_WRAPPED];
    size_t wrapped_len;
    unsigned char nonce_prefix[4]; /* random per DEK instance: see ensure_dek */
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
    uint64_t generation;      /* fork_generation when the caches were filled */
    uint64_t epoch;           /* atomic; bumped by reset */
    uint64_t clock_offset_ns; /* atomic; tests move the clock */
    ck_keyring_stats stats;   /* counters updated atomically */
    ck_mac *l1_mac;           /* keys @cache.secure's L1 entries (ck_keyring_l1_key) */
    ck_keyring *reg_prev;     /* registry links, under registry_lock */
    ck_keyring *reg_next;
    int registered;
};

/* ---------------------------------------------------- shared helpers */

static inline uint64_t ckr_now(ck_keyring *kr)
{
    return ck_l1_now_ns() + __atomic_load_n(&kr->clock_offset_ns, __ATOMIC_RELAXED);
}

static inline void ckr_count(uint64_t *field)
{
    __atomic_add_fetch(field, 1, __ATOMIC_RELAXED);
}

static inline int ckr_is_external(const ck_keyring *kr)
{
    return kr->ext.id != 0;
}

/* key_ref: a new one holding one reference; retain; release (the last
   release wipes the key). */
key_ref *ckr_key_new(const unsigned char key[CK_AEAD_KEY_LEN], ck_error *err);
void ckr_key_retain(void *v);
void ckr_key_release(void *v);
/* Drop one reference to a tenant state (the last frees and wipes it). */
void ckr_tenant_release(void *v);
/* Entry points call this first: after a fork the child starts over. */
void ckr_check_fork(ck_keyring *kr);
/*
 * Wait on cond until ready(arg), with the GIL released. Called holding
 * *mutex (and the GIL); returns holding both. The GIL is re-taken only
 * after *mutex is dropped, so no thread ever holds a keyring lock while
 * waiting for the GIL. Callers re-check their state afterwards.
 */
void ckr_wait_released(pthread_mutex_t *mutex, pthread_cond_t *cond, const ck_unlock_hooks *hooks,
                       int (*ready)(const void *), const void *arg);
/* KEK(m, tenant) as a new ck_aead in *out. */
int ckr_derive_kek(ck_keyring *kr, const master_key *m, ck_span tenant, ck_aead **out,
                   ck_error *err);
/* The wrap AAD ("CKWRAP1" || be16 len || tenant) into aad; its length. */
size_t ckr_wrap_aad(ck_span tenant, unsigned char *aad);

/* Run one AES-GCM pass, inside the unlock hooks when the value is large. */
#define WITH_HOOKS(hooks, n, call)                                                             \
    do {                                                                                       \
        if ((hooks) != NULL && (n) >= (hooks)->threshold) {                                    \
            void *saved_ = (hooks)->leave();                                                   \
            rc = (call);                                                                       \
            (hooks)->enter(saved_);                                                            \
        } else {                                                                               \
            rc = (call);                                                                       \
        }                                                                                      \
    } while (0)

#endif /* CK_KEYRING_INT_H */
