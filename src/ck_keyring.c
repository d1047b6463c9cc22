/*
 * ck_keyring.c - the key hierarchy of @cache.secure (see ck_keyring.h for
 * the derivations and docs/security.md for why they are safe).
 *
 * Two caches, both ck_l1 stores so eviction, bounds and "release outside
 * the lock" come from one implementation:
 *   tenants  tenant bytes -> tenant_state (KEK + current write DEK), LRU
 *            bounded by tenant_capacity, no TTL (DEK age is checked inside).
 *   reads    fp || be16 len || tenant || wrapped DEK -> key_ref (an
 *            unwrapped DEK), LRU bounded by read_capacity, TTL read_max_age.
 * Values are reference counted; the last release wipes the key material.
 *
 * Fork safety: a pthread_atfork child handler bumps a process-wide fork
 * generation. Any entry point that sees a generation newer than the one its
 * caches were filled in first drops both caches, so a child never seals with
 * a DEK (or counter) its parent also uses. Only objects created in the child are
 * used afterwards, so a lock a parent thread held at fork time is never
 * waited on.
 */
#include "ck_keyring.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ck_bytes.h"
#include "ck_crypto.h"
#include "ck_l1.h"

/* Bumped in every child process by a pthread_atfork handler, so keyrings
   notice a fork with one atomic load instead of a getpid() system call on
   every seal and open. */
static uint64_t fork_generation;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void)
{
    __atomic_add_fetch(&fork_generation, 1, __ATOMIC_RELAXED);
}

static void register_atfork(void)
{
    /* Failure (ENOMEM) leaves only the Python-level os.register_at_fork
       reset; keyring.py registers that for every keyring too. */
    (void)pthread_atfork(NULL, NULL, on_fork_child);
}

#define KEK_SALT "cachekit/v1/kek"
#define FP_SALT "cachekit/v1/fingerprint"
#define WRAP_AAD_DOMAIN "CKWRAP1"

typedef struct {
    unsigned char key[CK_KEYRING_MAX_MASTER];
    size_t len;
    unsigned char fp[CK_SEAL_FP_LEN];
} master_key;

/* A reference-counted AES-GCM key: a write DEK, a read DEK. The last
   release wipes it. */
typedef struct {
    int refs; /* atomic */
    ck_aead *aead;
} key_ref;

/* Write state of one tenant under the current master key. */
typedef struct {
    int refs;                /* atomic */
    pthread_mutex_t lock;    /* guards everything below */
    ck_aead *kek;
    key_ref *dek;            /* NULL until the first seal */
    unsigned char wrapped[CK_KEYRING_WRAPPED_LEN];
    uint64_t counter;        /* next nonce */
    uint64_t bytes;
    uint64_t created_ns;
} tenant_state;

struct ck_keyring {
    master_key masters[1 + CK_KEYRING_MAX_PREVIOUS]; /* [0] is current */
    size_t n_masters;
    ck_keyring_limits lim;
    ck_l1 *tenants;
    ck_l1 *reads;
    ck_l1_owner tenant_owner;
    ck_l1_owner read_owner;
    uint64_t generation;       /* fork_generation when the caches were filled */
    uint64_t clock_offset_ns;  /* atomic; tests move the clock */
    ck_keyring_stats stats;    /* counters updated atomically */
};

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

    if (__atomic_sub_fetch(&ts->refs, 1, __ATOMIC_ACQ_REL) != 0) {
        return;
    }
    ck_aead_free(ts->kek);
    key_release(ts->dek);
    ck_wipe(ts->wrapped, sizeof(ts->wrapped));
    /* May fail (EBUSY) for a state a parent thread had locked at fork time;
       the memory is ours to free either way. */
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

static void drop_all(ck_keyring *kr)
{
    ck_l1_entry *detached = NULL;

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

static int wrap_aad(ck_span tenant, unsigned char *aad, size_t cap, size_t *len, ck_error *err)
{
    size_t d = sizeof(WRAP_AAD_DOMAIN) - 1;

    if (tenant.n > UINT16_MAX || d + 2 + tenant.n > cap) {
        return ck_error_set(err, CK_ELIMIT, "tenant id longer than %zu bytes", cap - d - 2);
    }
    memcpy(aad, WRAP_AAD_DOMAIN, d);
    put_be16(aad + d, (uint16_t)tenant.n);
    memcpy(aad + d + 2, tenant.p, tenant.n);
    *len = d + 2 + tenant.n;
    return 0;
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

ck_keyring *ck_keyring_new(const unsigned char *master, size_t len, const ck_keyring_limits *lim,
                           ck_error *err)
{
    ck_keyring *kr = NULL;

    if (lim->dek_max_messages == 0 || lim->dek_max_messages > CK_KEYRING_MAX_MESSAGES ||
        lim->dek_max_bytes == 0 || lim->dek_max_age_ns == 0 || lim->read_capacity == 0 ||
        lim->tenant_capacity == 0) {
        ck_error_set(err, CK_EINVAL, "keyring limits must be positive, max_messages <= 2^32");
        return NULL;
    }
    (void)pthread_once(&atfork_once, register_atfork);
    kr = calloc(1, sizeof(*kr));
    if (kr == NULL) {
        ck_error_set(err, CK_ENOMEM, "out of memory for a keyring");
        return NULL;
    }
    kr->lim = *lim;
    kr->generation = __atomic_load_n(&fork_generation, __ATOMIC_RELAXED);
    kr->tenants = ck_l1_new(lim->tenant_capacity, 0, &tenant_ops);
    kr->reads = ck_l1_new(lim->read_capacity, 0, &read_ops);
    if (kr->tenants == NULL || kr->reads == NULL) {
        ck_error_set(err, CK_ENOMEM, "out of memory for key caches");
        goto error;
    }
    if (set_master(&kr->masters[0], master, len, err) < 0) {
        goto error;
    }
    kr->n_masters = 1;
    return kr;
error:
    ck_keyring_free(kr);
    return NULL;
}

int ck_keyring_add_previous(ck_keyring *kr, const unsigned char *master, size_t len,
                            ck_error *err)
{
    master_key *m;

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
    ck_l1_free(kr->tenants);
    ck_l1_free(kr->reads);
    ck_wipe(kr->masters, sizeof(kr->masters));
    free(kr);
}

void ck_keyring_current_fp(const ck_keyring *kr, unsigned char fp[CK_SEAL_FP_LEN])
{
    ck_keyring_fp_at(kr, 0, fp);
}

size_t ck_keyring_master_count(const ck_keyring *kr)
{
    return kr->n_masters;
}

void ck_keyring_fp_at(const ck_keyring *kr, size_t i, unsigned char fp[CK_SEAL_FP_LEN])
{
    memcpy(fp, kr->masters[i].fp, CK_SEAL_FP_LEN);
}

void ck_keyring_reset(ck_keyring *kr)
{
    drop_all(kr);
}

/* --------------------------------------------------------------- writing */

/* The tenant's write state, retained; created (KEK derived) on first use. */
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
    if (derive_kek(kr, &kr->masters[0], tenant, &ts->kek, err) < 0 ||
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

/* Replace the tenant's write DEK with a fresh random one. ts->lock held. */
static int new_dek(ck_keyring *kr, tenant_state *ts, ck_span tenant, uint64_t now, ck_error *err)
{
    unsigned char dek[CK_AEAD_KEY_LEN], aad[64 + CK_KEYRING_MAX_TENANT];
    size_t aad_len;
    key_ref *fresh = NULL;
    int rc = -1;

    if (wrap_aad(tenant, aad, sizeof(aad), &aad_len, err) < 0 ||
        ck_random_bytes(dek, sizeof(dek), err) < 0 ||
        ck_random_bytes(ts->wrapped, CK_AEAD_NONCE_LEN, err) < 0) {
        goto error;
    }
    if (ck_aead_seal(ts->kek, ts->wrapped, aad, aad_len, dek, sizeof(dek),
                     ts->wrapped + CK_AEAD_NONCE_LEN,
                     ts->wrapped + CK_AEAD_NONCE_LEN + CK_AEAD_KEY_LEN, err) < 0) {
        goto error;
    }
    fresh = key_new(dek, err);
    if (fresh == NULL) {
        goto error;
    }
    /* Sealers still holding the old DEK finish with their own reference. */
    key_release(ts->dek);
    ts->dek = fresh;
    ts->counter = 0;
    ts->bytes = 0;
    ts->created_ns = now;
    count(&kr->stats.deks_created);
    rc = 0;
error:
    ck_wipe(dek, sizeof(dek));
    return rc;
}

static int dek_spent(const ck_keyring *kr, const tenant_state *ts, size_t n, uint64_t now)
{
    const ck_keyring_limits *lim = &kr->lim;

    return ts->dek == NULL || ts->counter >= lim->dek_max_messages ||
           (uint64_t)n > lim->dek_max_bytes || ts->bytes > lim->dek_max_bytes - (uint64_t)n ||
           now - ts->created_ns >= lim->dek_max_age_ns;
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
    unsigned char wrapped[CK_KEYRING_WRAPPED_LEN];
    tenant_state *ts = NULL;
    key_ref *dek = NULL;
    ck_seal_params p;
    uint64_t now;
    int rc = -1;

    if (tenant.n > CK_KEYRING_MAX_TENANT) {
        return ck_error_set(err, CK_ELIMIT, "tenant id longer than %d bytes",
                            CK_KEYRING_MAX_TENANT);
    }
    check_fork(kr);
    ts = tenant_get(kr, tenant, err);
    if (ts == NULL) {
        return -1;
    }
    now = keyring_now(kr);

    /* Lease: under the tenant lock take the DEK, its wrapped form and the
       next counter value. The nonce is the DEK's message counter, so it is
       unique per DEK by construction; the lock is not held while sealing. */
    pthread_mutex_lock(&ts->lock);
    if (dek_spent(kr, ts, n, now) && new_dek(kr, ts, tenant, now, err) < 0) {
        pthread_mutex_unlock(&ts->lock);
        goto error;
    }
    dek = ts->dek;
    key_retain(dek);
    memcpy(wrapped, ts->wrapped, sizeof(wrapped));
    memset(p.nonce, 0, 4);
    put_be64(p.nonce + 4, ts->counter);
    ts->counter++;
    ts->bytes += n;
    pthread_mutex_unlock(&ts->lock);

    ck_keyring_current_fp(kr, p.key_fp);
    p.provider = CK_PROVIDER_LOCAL;
    p.wrapped.p = wrapped;
    p.wrapped.n = sizeof(wrapped);
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

/* Unwrap the entry's DEK (a new key_ref with one reference). */
static key_ref *unwrap(ck_keyring *kr, const master_key *m, ck_span tenant, ck_span wrapped,
                        ck_error *err)
{
    unsigned char dek[CK_AEAD_KEY_LEN], aad[64 + CK_KEYRING_MAX_TENANT];
    size_t aad_len;
    ck_aead *kek = NULL;
    key_ref *rk = NULL;

    if (wrapped.n != CK_KEYRING_WRAPPED_LEN) {
        ck_error_set(err, CK_EAUTH, "wrapped data key has the wrong length");
        goto error;
    }
    if (wrap_aad(tenant, aad, sizeof(aad), &aad_len, err) < 0 ||
        derive_kek(kr, m, tenant, &kek, err) < 0) {
        goto error;
    }
    if (ck_aead_open(kek, wrapped.p, aad, aad_len, wrapped.p + CK_AEAD_NONCE_LEN, CK_AEAD_KEY_LEN,
                     wrapped.p + CK_AEAD_NONCE_LEN + CK_AEAD_KEY_LEN, dek, err) < 0) {
        goto error;
    }
    rk = key_new(dek, err);
    if (rk != NULL) {
        count(&kr->stats.deks_unwrapped);
    }
error:
    ck_wipe(dek, sizeof(dek));
    ck_aead_free(kek);
    return rk;
}

/* The read key for (fp, tenant, wrapped), retained; unwrapped on a miss. */
static key_ref *read_key_get(ck_keyring *kr, const ck_sealed *s, ck_span tenant, ck_error *err)
{
    const master_key *m = master_by_fp(kr, s->key_fp);
    ck_l1_entry *detached = NULL;
    key_ref *rk = NULL;
    void *found = NULL;
    ck_hash128 h;
    ck_buf id;

    if (m == NULL) {
        ck_error_set(err, CK_EAUTH, "entry was written under a master key this keyring lacks");
        return NULL;
    }
    ck_buf_init(&id);
    {
        unsigned char len16[2];
        put_be16(len16, (uint16_t)tenant.n);
        if (ck_buf_append(&id, s->key_fp, CK_SEAL_FP_LEN) < 0 || ck_buf_append(&id, len16, 2) < 0 ||
            ck_buf_append(&id, tenant.p, tenant.n) < 0 ||
            ck_buf_append(&id, s->wrapped.p, s->wrapped.n) < 0) {
            ck_error_set(err, CK_ENOMEM, "out of memory");
            goto done;
        }
    }
    h = ck_key_hash(id.data, id.len, 0);
    if (ck_l1_get(kr->reads, &kr->read_owner, h, id.data, id.len, &found, &detached)) {
        rk = found;
        goto done;
    }
    rk = unwrap(kr, m, tenant, s->wrapped, err);
    if (rk != NULL && ck_l1_put(kr->reads, &kr->read_owner, h, id.data, id.len, rk, 0,
                                kr->lim.read_max_age_ns, &detached, err) < 0) {
        key_release(rk);
        rk = NULL;
    }
done:
    ck_l1_release(kr->reads, detached);
    ck_buf_free(&id);
    return rk;
}

int ck_keyring_open(ck_keyring *kr, const unsigned char *entry, size_t n, size_t max_size,
                    ck_span tenant, ck_span cache_key, const ck_unlock_hooks *hooks, ck_buf *pt,
                    uint8_t *serializer, ck_error *err)
{
    key_ref *rk = NULL;
    ck_sealed s;
    int rc = -1;

    pt->len = 0;
    if (tenant.n > CK_KEYRING_MAX_TENANT) {
        return ck_error_set(err, CK_EAUTH, "tenant id too long");
    }
    if (ck_sealed_parse(entry, n, max_size, &s, err) < 0) {
        return -1;
    }
    if (s.provider != CK_PROVIDER_LOCAL) {
        return ck_error_set(err, CK_EAUTH, "entry needs key provider %u", s.provider);
    }
    check_fork(kr);
    rk = read_key_get(kr, &s, tenant, err);
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
