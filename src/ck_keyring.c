/*
 * ck_keyring.c - the key hierarchy of @cache.secure (see ck_keyring.h for
 * the derivations and docs/security.md for why they are safe).
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
 * also uses. Details at "fork watch" below.
 */
#include "ck_keyring.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ck_bytes.h"
#include "ck_crypto.h"
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

/* ------------------------------------------------------------ fork watch */

/*
 * Every live keyring is on one registry list, so the pthread_atfork
 * handlers can reach them. Before fork() the forking thread takes the
 * registry lock and, for every keyring, its flight lock and the locks of its
 * two key caches: then no other thread is half-way through any of them when
 * the child is made, and the child inherits consistent lists. (No thread
 * ever waits for the GIL or calls a provider while holding one of these
 * locks, so taking them cannot deadlock with the Python thread that forks.)
 *
 * In the child, the threads that were unwrapping keys do not exist, so:
 *   - the flight list is emptied: a flight in it would never end, and the
 *     child's first read of that key would wait for it forever. The flights
 *     are left allocated, not freed: the forking thread itself may be the
 *     fetcher of one (a provider that forks) and will still touch it.
 *   - flight_cond is initialised afresh: it may count waiters that exist
 *     only in the parent, and glibc's broadcast waits for those.
 *   - fork_generation is bumped; the first entry point to see it drops both
 *     caches (check_fork), so a child never seals with a DEK (or counter)
 *     its parent also uses.
 * Tenant states a parent thread was using when the fork happened keep that
 * thread's reference for ever in the child, so their locks and condition
 * variables are never waited on or destroyed there.
 */
static uint64_t fork_generation;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static int atfork_rc = -1; /* pthread_atfork's result, once registered */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static ck_keyring *registry; /* guarded by registry_lock */

static void on_fork_prepare(void)
{
    ck_keyring *kr;

    pthread_mutex_lock(&registry_lock);
    for (kr = registry; kr != NULL; kr = kr->reg_next) {
        pthread_mutex_lock(&kr->flight_lock);
        ck_l1_lock_for_fork(kr->tenants);
        ck_l1_lock_for_fork(kr->reads);
        ck_mac_lock_for_fork(kr->l1_mac);
    }
}

static void on_fork_parent(void)
{
    ck_keyring *kr;

    for (kr = registry; kr != NULL; kr = kr->reg_next) {
        ck_mac_unlock_after_fork(kr->l1_mac);
        ck_l1_unlock_after_fork(kr->reads);
        ck_l1_unlock_after_fork(kr->tenants);
        pthread_mutex_unlock(&kr->flight_lock);
    }
    pthread_mutex_unlock(&registry_lock);
}

static void on_fork_child(void)
{
    ck_keyring *kr;

    __atomic_add_fetch(&fork_generation, 1, __ATOMIC_RELAXED);
    for (kr = registry; kr != NULL; kr = kr->reg_next) {
        kr->flights = NULL;
        /* Over the parent's state, deliberately; a failure would leave the
           old one, which still works when no waiter was counted. */
        (void)pthread_cond_init(&kr->flight_cond, NULL);
        ck_mac_unlock_after_fork(kr->l1_mac);
        ck_l1_unlock_after_fork(kr->reads);
        ck_l1_unlock_after_fork(kr->tenants);
        pthread_mutex_unlock(&kr->flight_lock);
    }
    pthread_mutex_unlock(&registry_lock);
}

static void register_atfork(void)
{
    atfork_rc = pthread_atfork(on_fork_prepare, on_fork_parent, on_fork_child);
}

/* Put kr on the registry (0), or -1 with err when the fork handlers could
   not be registered: without them a child could hang or reuse a nonce. */
static int registry_add(ck_keyring *kr, ck_error *err)
{
    if (pthread_once(&atfork_once, register_atfork) != 0 || atfork_rc != 0) {
        return ck_error_set(err, CK_ENOMEM, "cannot register the keyring's fork handlers");
    }
    pthread_mutex_lock(&registry_lock);
    kr->reg_next = registry;
    if (registry != NULL) {
        registry->reg_prev = kr;
    }
    registry = kr;
    kr->registered = 1;
    pthread_mutex_unlock(&registry_lock);
    return 0;
}

static void registry_remove(ck_keyring *kr)
{
    if (!kr->registered) {
        return;
    }
    pthread_mutex_lock(&registry_lock);
    if (kr->reg_prev != NULL) {
        kr->reg_prev->reg_next = kr->reg_next;
    } else {
        registry = kr->reg_next;
    }
    if (kr->reg_next != NULL) {
        kr->reg_next->reg_prev = kr->reg_prev;
    }
    kr->registered = 0;
    pthread_mutex_unlock(&registry_lock);
}

/* ---------------------------------------------------------- ref counting */

static void key_retain(void *v)
{
    __atomic_add_fetch(&((key_ref *)v)->refs, 1, __ATOMIC_RELAXED);
}

static void key_release(void *v)
{
    key_ref *k = v;

    if (k == NULL || __atomic_sub_fetch(&k->refs, 1, __ATOMIC_ACQ_REL) != 0) {
        return;
    }
    ck_aead_free(k->aead);
    free(k);
}

/* A new key_ref holding one reference to an AES-GCM context for key. */
static key_ref *key_new(const unsigned char key[CK_AEAD_KEY_LEN], ck_error *err)
{
    key_ref *k = calloc(1, sizeof(*k));

    if (k == NULL) {
        ck_error_set(err, CK_ENOMEM, "out of memory for a data key");
        return NULL;
    }
    k->refs = 1;
    k->aead = ck_aead_new(key, err);
    if (k->aead == NULL) {
        free(k);
        return NULL;
    }
    return k;
}

static void tenant_retain(void *v)
{
    __atomic_add_fetch(&((tenant_state *)v)->refs, 1, __ATOMIC_RELAXED);
}

static void tenant_release(void *v)
{
    tenant_state *ts = v;

    if (ts == NULL || __atomic_sub_fetch(&ts->refs, 1, __ATOMIC_ACQ_REL) != 0) {
        return;
    }
    ck_aead_free(ts->kek);
    key_release(ts->dek);
    ck_wipe(ts->wrapped, sizeof(ts->wrapped));
    /* May fail (EBUSY) for a state a parent thread had locked at fork time;
       the memory is ours to free either way. */
    (void)pthread_cond_destroy(&ts->cond);
    (void)pthread_mutex_destroy(&ts->lock);
    free(ts);
}

static const ck_l1_ops tenant_ops = {tenant_retain, tenant_release};
static const ck_l1_ops read_ops = {key_retain, key_release};

/* -------------------------------------------------------------- helpers */

static uint64_t keyring_now(ck_keyring *kr)
{
    return ck_l1_now_ns() + __atomic_load_n(&kr->clock_offset_ns, __ATOMIC_RELAXED);
}

static void count(uint64_t *field)
{
    __atomic_add_fetch(field, 1, __ATOMIC_RELAXED);
}

static int is_external(const ck_keyring *kr)
{
    return kr->ext.id != 0;
}

static void drop_all(ck_keyring *kr)
{
    ck_l1_entry *detached = NULL;

    __atomic_add_fetch(&kr->epoch, 1, __ATOMIC_ACQ_REL);
    ck_l1_clear(kr->tenants, NULL, &detached);
    ck_l1_release(kr->tenants, detached);
    detached = NULL;
    ck_l1_clear(kr->reads, NULL, &detached);
    ck_l1_release(kr->reads, detached);
}

/* After a fork the child starts over: see the file comment. */
static void check_fork(ck_keyring *kr)
{
    uint64_t now = __atomic_load_n(&fork_generation, __ATOMIC_RELAXED);
    uint64_t seen = __atomic_load_n(&kr->generation, __ATOMIC_RELAXED);

    /* Only the first thread to see the new generation drops the caches. */
    if (seen != now && __atomic_compare_exchange_n(&kr->generation, &seen, now, 0,
                                                   __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
        count(&kr->stats.fork_resets);
        drop_all(kr);
    }
}

/*
 * Wait on cond until ready(arg), with the GIL released. Called holding
 * *mutex (and the GIL); returns holding both. The GIL is re-taken only
 * after *mutex is dropped, so no thread ever holds a keyring lock while
 * waiting for the GIL. Callers re-check their state afterwards.
 */
static void wait_released(pthread_mutex_t *mutex, pthread_cond_t *cond,
                          const ck_unlock_hooks *hooks, int (*ready)(const void *),
                          const void *arg)
{
    void *saved;

    if (hooks == NULL) {
        while (!ready(arg)) {
            pthread_cond_wait(cond, mutex);
        }
        return;
    }
    pthread_mutex_unlock(mutex);
    saved = hooks->leave();
    pthread_mutex_lock(mutex);
    while (!ready(arg)) {
        pthread_cond_wait(cond, mutex);
    }
    pthread_mutex_unlock(mutex);
    hooks->enter(saved);
    pthread_mutex_lock(mutex);
}

static int derive_kek(ck_keyring *kr, const master_key *m, ck_span tenant, ck_aead **out,
                      ck_error *err)
{
    unsigned char kek[CK_AEAD_KEY_LEN];
    int rc;

    rc = ck_hkdf_sha256(m->key, m->len, (const unsigned char *)KEK_SALT, sizeof(KEK_SALT) - 1,
                        tenant.p, tenant.n, kek, sizeof(kek), err);
    if (rc == 0) {
        *out = ck_aead_new(kek, err);
        rc = *out == NULL ? -1 : 0;
    }
    ck_wipe(kek, sizeof(kek));
    if (rc == 0) {
        count(&kr->stats.kek_derivations);
    }
    return rc;
}

static size_t wrap_aad(ck_span tenant, unsigned char *aad)
{
    size_t d = sizeof(WRAP_AAD_DOMAIN) - 1;

    memcpy(aad, WRAP_AAD_DOMAIN, d);
    put_be16(aad + d, (uint16_t)tenant.n);
    memcpy(aad + d + 2, tenant.p, tenant.n);
    return d + 2 + tenant.n;
}

/* ------------------------------------------------------------- lifecycle */

int ck_keyring_fingerprint(const unsigned char *master, size_t len,
                           unsigned char fp[CK_SEAL_FP_LEN], ck_error *err)
{
    return ck_hkdf_sha256(master, len, (const unsigned char *)FP_SALT, sizeof(FP_SALT) - 1, NULL,
                          0, fp, CK_SEAL_FP_LEN, err);
}

static int set_master(master_key *m, const unsigned char *key, size_t len, ck_error *err)
{
    if (len < CK_KEYRING_MIN_MASTER || len > CK_KEYRING_MAX_MASTER) {
        return ck_error_set(err, CK_EINVAL, "master key must be %d to %d bytes",
                            CK_KEYRING_MIN_MASTER, CK_KEYRING_MAX_MASTER);
    }
    memcpy(m->key, key, len);
    m->len = len;
    return ck_keyring_fingerprint(key, len, m->fp, err);
}

static ck_keyring *keyring_alloc(const ck_keyring_limits *lim, ck_error *err)
{
    ck_keyring *kr;

    if (lim->dek_max_messages == 0 || lim->dek_max_messages > CK_KEYRING_MAX_MESSAGES ||
        lim->dek_max_bytes == 0 || lim->dek_max_age_ns == 0 || lim->read_capacity == 0 ||
        lim->tenant_capacity == 0) {
        ck_error_set(err, CK_EINVAL, "keyring limits must be positive, max_messages <= 2^32");
        return NULL;
    }
    /* Follow a provider configuration changed since the last keyring (FIPS
       properties enabled later), or refuse clearly when it cannot be met:
       docs/security.md, "Which code does the cryptography". */
    if (ck_aead_recheck(0, err) < 0) {
        return NULL;
    }
    /* The keyring holds the master keys. */
    kr = ck_secure_zalloc(sizeof(*kr));
    if (kr == NULL) {
        ck_error_set(err, CK_ENOMEM, "out of memory for a keyring");
        return NULL;
    }
    if (pthread_mutex_init(&kr->flight_lock, NULL) != 0) {
        ck_secure_free(kr, sizeof(*kr));
        ck_error_set(err, CK_ENOMEM, "cannot create a mutex");
        return NULL;
    }
    if (pthread_cond_init(&kr->flight_cond, NULL) != 0) {
        pthread_mutex_destroy(&kr->flight_lock);
        ck_secure_free(kr, sizeof(*kr));
        ck_error_set(err, CK_ENOMEM, "cannot create a condition variable");
        return NULL;
    }
    kr->lim = *lim;
    kr->generation = __atomic_load_n(&fork_generation, __ATOMIC_RELAXED);
    kr->tenants = ck_l1_new(lim->tenant_capacity, 0, &tenant_ops);
    kr->reads = ck_l1_new(lim->read_capacity, 0, &read_ops);
    if (kr->tenants == NULL || kr->reads == NULL) {
        ck_error_set(err, CK_ENOMEM, "out of memory for key caches");
        ck_keyring_free(kr);
        return NULL;
    }
    kr->l1_mac = ck_mac_new_random(err);
    if (kr->l1_mac == NULL || registry_add(kr, err) < 0) {
        ck_keyring_free(kr);
        return NULL;
    }
    return kr;
}

ck_keyring *ck_keyring_new(const unsigned char *master, size_t len, const ck_keyring_limits *lim,
                           ck_error *err)
{
    ck_keyring *kr = keyring_alloc(lim, err);

    if (kr == NULL) {
        return NULL;
    }
    if (set_master(&kr->masters[0], master, len, err) < 0) {
        ck_keyring_free(kr);
        return NULL;
    }
    kr->n_masters = 1;
    return kr;
}

ck_keyring *ck_keyring_new_external(const ck_key_provider *provider, ck_span key_id,
                                    const ck_keyring_limits *lim, ck_error *err)
{
    ck_keyring *kr;

    if (provider->id == 0 || provider->id == CK_PROVIDER_LOCAL || provider->generate == NULL ||
        provider->unwrap == NULL || key_id.n == 0) {
        ck_error_set(err, CK_EINVAL, "an external provider needs an id other than 0 and 1, "
                                     "both callbacks and a key id");
        return NULL;
    }
    kr = keyring_alloc(lim, err);
    if (kr == NULL) {
        return NULL;
    }
    kr->ext = *provider;
    if (ck_hkdf_sha256(key_id.p, key_id.n, (const unsigned char *)PROVIDER_FP_SALT,
                       sizeof(PROVIDER_FP_SALT) - 1, &provider->id, 1, kr->ext_fp,
                       CK_SEAL_FP_LEN, err) < 0) {
        ck_keyring_free(kr);
        return NULL;
    }
    return kr;
}

int ck_keyring_add_previous(ck_keyring *kr, const unsigned char *master, size_t len,
                            ck_error *err)
{
    master_key *m;

    if (is_external(kr)) {
        return ck_error_set(err, CK_EINVAL, "previous master keys need the local provider");
    }
    if (kr->n_masters >= 1 + CK_KEYRING_MAX_PREVIOUS) {
        return ck_error_set(err, CK_ELIMIT, "at most %d previous master keys",
                            CK_KEYRING_MAX_PREVIOUS);
    }
    m = &kr->masters[kr->n_masters];
    if (set_master(m, master, len, err) < 0) {
        ck_wipe(m, sizeof(*m));
        return -1;
    }
    kr->n_masters++;
    return 0;
}

void ck_keyring_free(ck_keyring *kr)
{
    if (kr == NULL) {
        return;
    }
    /* Off the registry first: the fork handlers must not see it half freed. */
    registry_remove(kr);
    ck_l1_free(kr->tenants);
    ck_l1_free(kr->reads);
    ck_mac_free(kr->l1_mac);
    (void)pthread_cond_destroy(&kr->flight_cond);
    (void)pthread_mutex_destroy(&kr->flight_lock);
    ck_secure_free(kr, sizeof(*kr)); /* wipes the master keys */
}

void ck_keyring_current_fp(const ck_keyring *kr, unsigned char fp[CK_SEAL_FP_LEN])
{
    ck_keyring_fp_at(kr, 0, fp);
}

size_t ck_keyring_master_count(const ck_keyring *kr)
{
    return is_external(kr) ? 1 : kr->n_masters;
}

void ck_keyring_fp_at(const ck_keyring *kr, size_t i, unsigned char fp[CK_SEAL_FP_LEN])
{
    memcpy(fp, is_external(kr) ? kr->ext_fp : kr->masters[i].fp, CK_SEAL_FP_LEN);
}

void ck_keyring_reset(ck_keyring *kr)
{
    drop_all(kr);
}

int ck_keyring_l1_key(ck_keyring *kr, const unsigned char *key, size_t n,
                      unsigned char out[CK_KEYRING_L1_KEY_LEN], ck_error *err)
{
    return ck_mac_compute(kr->l1_mac, key, n, out, err);
}

/* --------------------------------------------------------------- writing */

/* The tenant's write state, retained; created on first use (deriving its
   KEK with the local provider). */
static tenant_state *tenant_get(ck_keyring *kr, ck_span tenant, ck_error *err)
{
    ck_hash128 h = ck_key_hash(tenant.p, tenant.n, 0);
    ck_l1_entry *detached = NULL;
    tenant_state *ts = NULL;
    void *found = NULL;

    if (ck_l1_get(kr->tenants, &kr->tenant_owner, h, tenant.p, tenant.n, &found, &detached)) {
        ck_l1_release(kr->tenants, detached);
        return found;
    }
    ck_l1_release(kr->tenants, detached);
    detached = NULL;
    ts = calloc(1, sizeof(*ts));
    if (ts == NULL) {
        ck_error_set(err, CK_ENOMEM, "out of memory for tenant keys");
        return NULL;
    }
    ts->refs = 1;
    if (pthread_mutex_init(&ts->lock, NULL) != 0) {
        free(ts);
        ck_error_set(err, CK_ENOMEM, "cannot create a mutex");
        return NULL;
    }
    if (pthread_cond_init(&ts->cond, NULL) != 0) {
        pthread_mutex_destroy(&ts->lock);
        free(ts);
        ck_error_set(err, CK_ENOMEM, "cannot create a condition variable");
        return NULL;
    }
    if ((!is_external(kr) && derive_kek(kr, &kr->masters[0], tenant, &ts->kek, err) < 0) ||
        ck_l1_put(kr->tenants, &kr->tenant_owner, h, tenant.p, tenant.n, ts, 0, 0, &detached,
                  err) < 0) {
        ck_l1_release(kr->tenants, detached);
        tenant_release(ts);
        return NULL;
    }
    /* Two threads may both create a state; the later put replaces the
       earlier, whose users finish with their own reference. */
    ck_l1_release(kr->tenants, detached);
    return ts;
}

/* Make a new write DEK for tenant: a key_ref, its wrapped form in wrapped.
   Runs with no lock held (an external provider may be slow Python). */
static key_ref *make_dek(ck_keyring *kr, tenant_state *ts, ck_span tenant,
                         unsigned char *wrapped, size_t *wrapped_len,
                         unsigned char prefix[4], ck_error *err)
{
    unsigned char dek[CK_AEAD_KEY_LEN], aad[sizeof(WRAP_AAD_DOMAIN) + 2 + CK_KEYRING_MAX_TENANT];
    key_ref *fresh = NULL;
    size_t aad_len;

    if (is_external(kr)) {
        *wrapped_len = CK_SEAL_MAX_WRAPPED;
        if (kr->ext.generate(kr->ext.ctx, tenant, dek, wrapped, wrapped_len, err) < 0) {
            goto error;
        }
        if (*wrapped_len == 0 || *wrapped_len > CK_SEAL_MAX_WRAPPED) {
            ck_error_set(err, CK_ELIMIT, "provider's wrapped data key has %zu bytes (1..%d fit)",
                         *wrapped_len, CK_SEAL_MAX_WRAPPED);
            goto error;
        }
    } else {
        /* Local: random DEK wrapped under the tenant's KEK, random nonce. */
        aad_len = wrap_aad(tenant, aad);
        if (ck_random_bytes(dek, sizeof(dek), err) < 0 ||
            ck_random_bytes(wrapped, CK_AEAD_NONCE_LEN, err) < 0 ||
            ck_aead_seal(ts->kek, wrapped, aad, aad_len, dek, sizeof(dek),
                         wrapped + CK_AEAD_NONCE_LEN,
                         wrapped + CK_AEAD_NONCE_LEN + CK_AEAD_KEY_LEN, err) < 0) {
            goto error;
        }
        *wrapped_len = CK_KEYRING_WRAPPED_LEN;
    }
    /* The counter alone makes nonces unique only if this key is new. A
       provider that hands the same data key to two keyrings (a cached
       GenerateDataKey result) would have both count from 0; the random
       prefix makes their nonces collide only with probability 2^-32 a pair. */
    if (ck_random_bytes(prefix, 4, err) < 0) {
        goto error;
    }
    fresh = key_new(dek, err);
    if (fresh != NULL) {
        count(&kr->stats.deks_created);
    }
error:
    ck_wipe(dek, sizeof(dek));
    return fresh;
}

static int dek_spent(const ck_keyring *kr, const tenant_state *ts, size_t n, uint64_t now)
{
    const ck_keyring_limits *lim = &kr->lim;

    return ts->dek == NULL || ts->counter >= lim->dek_max_messages ||
           ts->bytes > lim->dek_max_bytes - (uint64_t)n ||
           now - ts->created_ns >= lim->dek_max_age_ns;
}

typedef struct {
    const tenant_state *ts;
    uint64_t seq;
} fetch_wait;

static int fetch_ended(const void *arg)
{
    const fetch_wait *w = arg;
    return w->ts->fetch_seq != w->seq;
}

/*
 * Make sure ts has a usable write DEK for n more bytes: use it, wait for
 * another thread's fetch, or fetch one. Called and returns holding ts->lock.
 */
static int ensure_dek(ck_keyring *kr, tenant_state *ts, ck_span tenant, size_t n,
                      const ck_unlock_hooks *hooks, ck_error *err)
{
    unsigned char wrapped[CK_SEAL_MAX_WRAPPED], prefix[4];
    size_t wrapped_len = 0;
    key_ref *fresh;
    ck_error ferr = {CK_OK, ""};

    for (;;) {
        if (!dek_spent(kr, ts, n, keyring_now(kr))) {
            return 0;
        }
        if (ts->fetching) {
            fetch_wait w = {ts, ts->fetch_seq};
            wait_released(&ts->lock, &ts->cond, hooks, fetch_ended, &w);
            if (ts->fetch_seq == w.seq + 1 && ts->fetch_failed) {
                /* The fetch we waited for failed: report it, do not retry. */
                if (err != NULL) {
                    *err = ts->fetch_err;
                }
                return -1;
            }
            continue;
        }
        ts->fetching = 1;
        pthread_mutex_unlock(&ts->lock);
        fresh = make_dek(kr, ts, tenant, wrapped, &wrapped_len, prefix, &ferr);
        pthread_mutex_lock(&ts->lock);
        ts->fetching = 0;
        ts->fetch_seq++;
        ts->fetch_failed = fresh == NULL;
        ts->fetch_err = ferr;
        if (fresh != NULL) {
            /* Sealers still holding the old DEK finish with their reference. */
            key_release(ts->dek);
            ts->dek = fresh;
            memcpy(ts->wrapped, wrapped, wrapped_len);
            ts->wrapped_len = wrapped_len;
            memcpy(ts->nonce_prefix, prefix, sizeof(prefix));
            ts->counter = 0;
            ts->bytes = 0;
            ts->created_ns = keyring_now(kr);
        }
        ck_wipe(wrapped, sizeof(wrapped));
        pthread_cond_broadcast(&ts->cond);
        if (fresh == NULL) {
            if (err != NULL) {
                *err = ferr;
            }
            return -1;
        }
    }
}

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

int ck_keyring_seal(ck_keyring *kr, ck_span tenant, ck_span cache_key, uint8_t serializer,
                    const unsigned char *pt, size_t n, const ck_unlock_hooks *hooks, ck_buf *out,
                    ck_error *err)
{
    unsigned char wrapped[CK_SEAL_MAX_WRAPPED];
    tenant_state *ts = NULL;
    key_ref *dek = NULL;
    ck_seal_params p;
    int rc = -1;

    if (tenant.n > CK_KEYRING_MAX_TENANT) {
        return ck_error_set(err, CK_ELIMIT, "tenant id longer than %d bytes",
                            CK_KEYRING_MAX_TENANT);
    }
    if ((uint64_t)n > kr->lim.dek_max_bytes) {
        return ck_error_set(err, CK_ELIMIT, "value of %zu bytes exceeds dek_max_bytes", n);
    }
    check_fork(kr);
    ts = tenant_get(kr, tenant, err);
    if (ts == NULL) {
        return -1;
    }
    /* Lease: under the tenant lock take the DEK, its wrapped form and the
       next counter value. The nonce is the DEK instance's random prefix and
       message counter, so it is unique per DEK instance by construction;
       the lock is not held while sealing. */
    pthread_mutex_lock(&ts->lock);
    if (ensure_dek(kr, ts, tenant, n, hooks, err) < 0) {
        pthread_mutex_unlock(&ts->lock);
        goto error;
    }
    dek = ts->dek;
    key_retain(dek);
    p.wrapped.n = ts->wrapped_len;
    memcpy(wrapped, ts->wrapped, ts->wrapped_len);
    memcpy(p.nonce, ts->nonce_prefix, 4);
    put_be64(p.nonce + 4, ts->counter);
    ts->counter++;
    ts->bytes += n;
    pthread_mutex_unlock(&ts->lock);

    ck_keyring_current_fp(kr, p.key_fp);
    p.provider = is_external(kr) ? kr->ext.id : CK_PROVIDER_LOCAL;
    p.wrapped.p = wrapped;
    WITH_HOOKS(hooks, n, ck_seal(dek->aead, &p, serializer, pt, n, tenant, cache_key, out, err));
    if (rc == 0) {
        count(&kr->stats.messages);
    }
error:
    key_release(dek);
    tenant_release(ts);
    return rc;
}

/* --------------------------------------------------------------- reading */

static const master_key *master_by_fp(const ck_keyring *kr, const unsigned char *fp)
{
    size_t i;

    for (i = 0; i < kr->n_masters; i++) {
        if (memcmp(kr->masters[i].fp, fp, CK_SEAL_FP_LEN) == 0) {
            return &kr->masters[i];
        }
    }
    return NULL;
}

/* Unwrap the entry's DEK (a new key_ref with one reference). No lock held. */
static key_ref *unwrap(ck_keyring *kr, const ck_sealed *s, ck_span tenant, ck_error *err)
{
    unsigned char dek[CK_AEAD_KEY_LEN], aad[sizeof(WRAP_AAD_DOMAIN) + 2 + CK_KEYRING_MAX_TENANT];
    const master_key *m;
    ck_aead *kek = NULL;
    key_ref *rk = NULL;
    size_t aad_len;

    if (is_external(kr)) {
        if (kr->ext.unwrap(kr->ext.ctx, tenant, s->wrapped, dek, err) < 0) {
            goto error;
        }
    } else {
        m = master_by_fp(kr, s->key_fp);
        if (m == NULL) {
            ck_error_set(err, CK_EAUTH, "entry was written under a master key this keyring lacks");
            goto error;
        }
        if (s->wrapped.n != CK_KEYRING_WRAPPED_LEN) {
            ck_error_set(err, CK_EAUTH, "wrapped data key has the wrong length");
            goto error;
        }
        aad_len = wrap_aad(tenant, aad);
        if (derive_kek(kr, m, tenant, &kek, err) < 0 ||
            ck_aead_open(kek, s->wrapped.p, aad, aad_len, s->wrapped.p + CK_AEAD_NONCE_LEN,
                         CK_AEAD_KEY_LEN, s->wrapped.p + CK_AEAD_NONCE_LEN + CK_AEAD_KEY_LEN,
                         dek, err) < 0) {
            goto error;
        }
    }
    rk = key_new(dek, err);
    if (rk != NULL) {
        rk->created_ns = keyring_now(kr);
        count(&kr->stats.deks_unwrapped);
    }
error:
    ck_wipe(dek, sizeof(dek));
    ck_aead_free(kek);
    return rk;
}

static int flight_done(const void *arg)
{
    return ((const flight *)arg)->done;
}

/* Drop one reference to a flight; flight_lock held. */
static void flight_unref(flight *f)
{
    if (--f->refs == 0) {
        key_release(f->rk);
        free(f);
    }
}

/* The read key for the entry s, retained: from the cache, from a fetch
   already in flight, or unwrapped here. */
static key_ref *read_key_get(ck_keyring *kr, const ck_sealed *s, ck_span tenant,
                             const ck_unlock_hooks *hooks, ck_error *err)
{
    unsigned char id[READ_ID_MAX];
    ck_l1_entry *detached = NULL;
    key_ref *rk = NULL;
    void *found = NULL;
    flight *f;
    uint64_t epoch;
    size_t id_len = 0;
    ck_hash128 h;

    id[id_len++] = s->provider;
    memcpy(id + id_len, s->key_fp, CK_SEAL_FP_LEN);
    id_len += CK_SEAL_FP_LEN;
    put_be16(id + id_len, (uint16_t)tenant.n);
    id_len += 2;
    memcpy(id + id_len, tenant.p, tenant.n);
    id_len += tenant.n;
    memcpy(id + id_len, s->wrapped.p, s->wrapped.n);
    id_len += s->wrapped.n;

    h = ck_key_hash(id, id_len, 0);
    if (ck_l1_get(kr->reads, &kr->read_owner, h, id, id_len, &found, &detached)) {
        rk = found;
        /* Aged out on the keyring's clock (which tests can move): drop it
           and unwrap afresh. */
        if (keyring_now(kr) - rk->created_ns < kr->lim.read_max_age_ns) {
            ck_l1_release(kr->reads, detached);
            return rk;
        }
        key_release(rk);
        rk = NULL;
        (void)ck_l1_remove(kr->reads, &kr->read_owner, h, id, id_len, &detached);
    }
    ck_l1_release(kr->reads, detached);
    detached = NULL;

    pthread_mutex_lock(&kr->flight_lock);
    for (f = kr->flights; f != NULL; f = f->next) {
        if (f->id_len == id_len && memcmp(f->id, id, id_len) == 0) {
            break;
        }
    }
    if (f != NULL) {
        /* Someone is unwrapping this DEK: wait for their result. */
        f->refs++;
        wait_released(&kr->flight_lock, &kr->flight_cond, hooks, flight_done, f);
        if (f->rk != NULL) {
            rk = f->rk;
            key_retain(rk);
        } else if (err != NULL) {
            *err = f->err;
        }
        flight_unref(f);
        pthread_mutex_unlock(&kr->flight_lock);
        return rk;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL) {
        pthread_mutex_unlock(&kr->flight_lock);
        ck_error_set(err, CK_ENOMEM, "out of memory");
        return NULL;
    }
    f->refs = 1;
    f->id_len = id_len;
    memcpy(f->id, id, id_len);
    f->next = kr->flights;
    kr->flights = f;
    epoch = __atomic_load_n(&kr->epoch, __ATOMIC_ACQUIRE);
    pthread_mutex_unlock(&kr->flight_lock);

    rk = unwrap(kr, s, tenant, &f->err);
    /* A reset while we were unwrapping must not be undone by our result. */
    if (rk != NULL && epoch == __atomic_load_n(&kr->epoch, __ATOMIC_ACQUIRE) &&
        ck_l1_put(kr->reads, &kr->read_owner, h, id, id_len, rk, 0, 0, &detached, &f->err) < 0) {
        key_release(rk);
        rk = NULL;
    }
    ck_l1_release(kr->reads, detached);

    pthread_mutex_lock(&kr->flight_lock);
    {
        /* Not found only in a child forked during the unwrap, whose list
           the fork handler emptied. */
        flight **pp = &kr->flights;
        while (*pp != NULL && *pp != f) {
            pp = &(*pp)->next;
        }
        if (*pp == f) {
            *pp = f->next;
        }
    }
    if (rk != NULL) {
        key_retain(rk);
        f->rk = rk;
    } else if (err != NULL) {
        *err = f->err;
    }
    f->done = 1;
    pthread_cond_broadcast(&kr->flight_cond);
    flight_unref(f);
    pthread_mutex_unlock(&kr->flight_lock);
    return rk;
}

int ck_keyring_open(ck_keyring *kr, const unsigned char *entry, size_t n, size_t max_size,
                    ck_span tenant, ck_span cache_key, const ck_unlock_hooks *hooks, ck_buf *pt,
                    uint8_t *serializer, ck_error *err)
{
    key_ref *rk = NULL;
    ck_sealed s;
    int rc = -1;

    ck_buf_clear(pt);
    if (tenant.n > CK_KEYRING_MAX_TENANT) {
        return ck_error_set(err, CK_EAUTH, "tenant id too long");
    }
    if (ck_sealed_parse(entry, n, max_size, &s, err) < 0) {
        return -1;
    }
    if (s.provider != (is_external(kr) ? kr->ext.id : CK_PROVIDER_LOCAL) ||
        (is_external(kr) && memcmp(s.key_fp, kr->ext_fp, CK_SEAL_FP_LEN) != 0)) {
        return ck_error_set(err, CK_EAUTH, "entry was written by another key provider or key");
    }
    check_fork(kr);
    rk = read_key_get(kr, &s, tenant, hooks, err);
    if (rk == NULL) {
        return -1;
    }
    if (ck_buf_reserve(pt, s.ciphertext.n) < 0) {
        ck_error_set(err, CK_ENOMEM, "out of memory for %zu bytes", s.ciphertext.n);
        goto error;
    }
    WITH_HOOKS(hooks, s.ciphertext.n, ck_sealed_open(rk->aead, &s, tenant, cache_key, pt->data, err));
    if (rc == 0) {
        pt->len = s.ciphertext.n;
        *serializer = s.h.serializer;
    }
error:
    key_release(rk);
    return rc;
}

/* ----------------------------------------------------------------- stats */

void ck_keyring_get_stats(ck_keyring *kr, ck_keyring_stats *out)
{
    ck_l1_stats t, r;

    ck_l1_get_stats(kr->tenants, &t);
    ck_l1_get_stats(kr->reads, &r);
    out->deks_created = __atomic_load_n(&kr->stats.deks_created, __ATOMIC_RELAXED);
    out->deks_unwrapped = __atomic_load_n(&kr->stats.deks_unwrapped, __ATOMIC_RELAXED);
    out->kek_derivations = __atomic_load_n(&kr->stats.kek_derivations, __ATOMIC_RELAXED);
    out->fork_resets = __atomic_load_n(&kr->stats.fork_resets, __ATOMIC_RELAXED);
    out->messages = __atomic_load_n(&kr->stats.messages, __ATOMIC_RELAXED);
    out->tenants = t.count;
    out->read_keys = r.count;
}

void ck_keyring_advance_clock(ck_keyring *kr, uint64_t ns)
{
    __atomic_add_fetch(&kr->clock_offset_ns, ns, __ATOMIC_RELAXED);
}
