/*
 * ck_keyring_dek.c - where the keyring's data keys come from: the
 * reference-counted keys, the two key caches, the singleflight fetches and
 * the retirement of write DEKs (dek_max_messages, dek_max_bytes,
 * dek_max_age). The entry points that use them are in ck_keyring.c.
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
 */
#include "ck_keyring_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ck_bytes.h"
#include "ck_crypto.h"
#include "ck_l1.h"

#define KEK_SALT "cachekit/v1/kek"
#define NAME_SALT "cachekit/v1/l2-name"
#define WRAP_AAD_DOMAIN "CKWRAP1"

/* ---------------------------------------------------------- ref counting */

void ck_keyring_key_retain(void *v)
{
    __atomic_add_fetch(&((key_ref *)v)->refs, 1, __ATOMIC_RELAXED);
}

void ck_keyring_key_release(void *v)
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

void ck_keyring_tenant_release(void *v)
{
    tenant_state *ts = v;

    if (ts == NULL || __atomic_sub_fetch(&ts->refs, 1, __ATOMIC_ACQ_REL) != 0) {
        return;
    }
    ck_aead_free(ts->kek);
    ck_keyring_key_release(ts->dek);
    ck_wipe(ts->wrapped, sizeof(ts->wrapped));
    ck_wipe(ts->name_key, sizeof(ts->name_key));
    /* May fail (EBUSY) for a state a parent thread had locked at fork time;
       the memory is ours to free either way. */
    (void)pthread_cond_destroy(&ts->cond);
    (void)pthread_mutex_destroy(&ts->lock);
    free(ts);
}

static void read_cache_drop(void *v);

const ck_l1_ops ck_keyring_tenant_ops = {tenant_retain, ck_keyring_tenant_release};
const ck_l1_ops ck_keyring_read_ops = {ck_keyring_key_retain, read_cache_drop};

/* -------------------------------------------------------------- helpers */

/* ------------------------------------------------------- read-key memo */

/*
 * Read-key memo. An L1 hit of @cache.secure opens an entry whose read key
 * is almost always the one the previous hit used. The reads cache finds it
 * by hashing the whole id (provider, fingerprint, tenant, the 60-byte
 * wrapped key: ~80 bytes) and probing an ck_l1 store, ~370 instructions;
 * the memo compares the id against READ_MEMO_SLOTS recent ones under one
 * mutex, ~100. It is only a front: every key in it is also in the reads
 * cache or was just unwrapped, and the same rules hold (read_max_age on
 * the keyring's clock, dropped by reset() and in a forked child). A slot
 * is valid only for the epoch it was filled in, and fills check the epoch
 * under the lock, so a fetch that began before a reset cannot bring back
 * a key the reset dropped.
 */
read_memo *ck_keyring_memo_new(void)
{
    read_memo *m = calloc(1, sizeof(*m));

    if (m != NULL && pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        m = NULL;
    }
    return m;
}

/* Empty every slot; the references go to *drop (READ_MEMO_SLOTS long) for
   release after the lock is dropped. m->lock held. */
static void memo_clear_locked(read_memo *m, key_ref **drop)
{
    unsigned i;

    for (i = 0; i < READ_MEMO_SLOTS; i++) {
        drop[i] = m->slots[i].rk;
        m->slots[i].rk = NULL;
        m->slots[i].id_len = 0;
    }
}

void ck_keyring_memo_free(read_memo *m)
{
    key_ref *drop[READ_MEMO_SLOTS];
    unsigned i;

    if (m == NULL) {
        return;
    }
    memo_clear_locked(m, drop);
    for (i = 0; i < READ_MEMO_SLOTS; i++) {
        ck_keyring_key_release(drop[i]);
    }
    (void)pthread_mutex_destroy(&m->lock);
    free(m);
}

/* The reads cache dropped k (evicted, aged out, reset): the memo forgets
   it too, so read_capacity bounds the unwrapped keys held and the last
   reference (wherever it is) wipes the key. Called with no keyring lock
   held (ck_l1 releases outside its lock). */
static void read_cache_drop(void *v)
{
    key_ref *k = v, *drop[READ_MEMO_SLOTS] = {NULL};
    read_memo *m = k->memo;
    unsigned i;

    if (m != NULL) {
        /* Before taking the lock: a memo_put racing with us then either
           sees the flag or has filled a slot we empty here. */
        __atomic_store_n(&k->dropped, 1, __ATOMIC_RELEASE);
        pthread_mutex_lock(&m->lock);
        for (i = 0; i < READ_MEMO_SLOTS; i++) {
            if (m->slots[i].rk == k) {
                drop[i] = k;
                m->slots[i].rk = NULL;
                m->slots[i].id_len = 0;
            }
        }
        pthread_mutex_unlock(&m->lock);
        for (i = 0; i < READ_MEMO_SLOTS; i++) {
            ck_keyring_key_release(drop[i]);
        }
    }
    ck_keyring_key_release(k);
}

/* The memo's key for id, retained, or NULL. */
static key_ref *memo_get(ck_keyring *kr, const unsigned char *id, size_t id_len)
{
    read_memo *m = kr->memo;
    uint64_t epoch = __atomic_load_n(&kr->epoch, __ATOMIC_ACQUIRE);
    key_ref *rk = NULL;
    unsigned i;

    pthread_mutex_lock(&m->lock);
    for (i = 0; i < READ_MEMO_SLOTS; i++) {
        read_memo_slot *sl = &m->slots[i];

        if (sl->rk != NULL && sl->id_len == id_len && sl->epoch == epoch &&
            memcmp(sl->id, id, id_len) == 0) {
            if (keyring_now(kr) - sl->rk->created_ns < kr->lim.read_max_age_ns) {
                rk = sl->rk;
                ck_keyring_key_retain(rk);
            }
            break;
        }
    }
    pthread_mutex_unlock(&m->lock);
    return rk;
}

/* Remember rk (the caller keeps its own reference) for id, if the epoch is
   still the one the caller looked the key up in. Only keys the reads cache
   holds come here (read_cache_drop takes them out again). */
static void memo_put(ck_keyring *kr, const unsigned char *id, size_t id_len, key_ref *rk,
                     uint64_t epoch)
{
    read_memo *m = kr->memo;
    key_ref *old = NULL;
    read_memo_slot *sl;

    pthread_mutex_lock(&m->lock);
    if (epoch == __atomic_load_n(&kr->epoch, __ATOMIC_ACQUIRE) &&
        !__atomic_load_n(&rk->dropped, __ATOMIC_ACQUIRE)) {
        sl = &m->slots[m->next];
        m->next = (m->next + 1) % READ_MEMO_SLOTS;
        old = sl->rk;
        ck_keyring_key_retain(rk);
        sl->rk = rk;
        sl->epoch = epoch;
        sl->id_len = id_len;
        memcpy(sl->id, id, id_len);
    }
    pthread_mutex_unlock(&m->lock);
    ck_keyring_key_release(old); /* may wipe and free: outside the lock */
}

void ck_keyring_drop_all(ck_keyring *kr)
{
    key_ref *drop[READ_MEMO_SLOTS];
    ck_l1_entry *detached = NULL;
    unsigned i;

    __atomic_add_fetch(&kr->epoch, 1, __ATOMIC_ACQ_REL);
    pthread_mutex_lock(&kr->memo->lock);
    memo_clear_locked(kr->memo, drop);
    pthread_mutex_unlock(&kr->memo->lock);
    for (i = 0; i < READ_MEMO_SLOTS; i++) {
        ck_keyring_key_release(drop[i]);
    }
    ck_l1_clear(kr->tenants, NULL, &detached);
    ck_l1_release(kr->tenants, detached);
    detached = NULL;
    ck_l1_clear(kr->reads, NULL, &detached);
    ck_l1_release(kr->reads, detached);
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

/* The key of the tenant's L2 names: a separate HKDF output of the same
   master key, so knowing names (or breaking one MAC) says nothing of the
   KEK, and each tenant's names are unrelated to another's. */
static int derive_name_key(const master_key *m, ck_span tenant, tenant_state *ts, ck_error *err)
{
    if (ck_hkdf_sha256(m->key, m->len, (const unsigned char *)NAME_SALT, sizeof(NAME_SALT) - 1,
                       tenant.p, tenant.n, ts->name_key, sizeof(ts->name_key), err) < 0) {
        return -1;
    }
    ts->has_name_key = 1;
    return 0;
}

static size_t wrap_aad(ck_span tenant, unsigned char *aad)
{
    size_t d = sizeof(WRAP_AAD_DOMAIN) - 1;

    memcpy(aad, WRAP_AAD_DOMAIN, d);
    put_be16(aad + d, (uint16_t)tenant.n);
    memcpy(aad + d + 2, tenant.p, tenant.n);
    return d + 2 + tenant.n;
}

/* --------------------------------------------------------------- writing */

/* The tenant's write state, retained; created on first use (deriving its
   KEK with the local provider). */
tenant_state *ck_keyring_tenant_get(ck_keyring *kr, ck_span tenant, ck_error *err)
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
    if ((!is_external(kr) && (derive_kek(kr, &kr->masters[0], tenant, &ts->kek, err) < 0 ||
                              derive_name_key(&kr->masters[0], tenant, ts, err) < 0)) ||
        ck_l1_put(kr->tenants, &kr->tenant_owner, h, tenant.p, tenant.n, ts, 0, 0, &detached,
                  err) < 0) {
        ck_l1_release(kr->tenants, detached);
        ck_keyring_tenant_release(ts);
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
int ck_keyring_ensure_dek(ck_keyring *kr, tenant_state *ts, ck_span tenant, size_t n,
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
            ck_keyring_key_release(ts->dek);
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
        rk->memo = kr->memo;
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
        ck_keyring_key_release(f->rk);
        free(f);
    }
}

/* The read key for the entry s, retained: from the cache, from a fetch
   already in flight, or unwrapped here. */
key_ref *ck_keyring_read_key_get(ck_keyring *kr, const ck_sealed *s, ck_span tenant,
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

    rk = memo_get(kr, id, id_len);
    if (rk != NULL) {
        return rk;
    }
    epoch = __atomic_load_n(&kr->epoch, __ATOMIC_ACQUIRE);
    h = ck_key_hash(id, id_len, 0);
    if (ck_l1_get(kr->reads, &kr->read_owner, h, id, id_len, &found, &detached)) {
        rk = found;
        /* Aged out on the keyring's clock (which tests can move): drop it
           and unwrap afresh. */
        if (keyring_now(kr) - rk->created_ns < kr->lim.read_max_age_ns) {
            ck_l1_release(kr->reads, detached);
            memo_put(kr, id, id_len, rk, epoch);
            return rk;
        }
        ck_keyring_key_release(rk);
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
            ck_keyring_key_retain(rk);
        } else if (err != NULL) {
            *err = f->err;
        }
        flight_unref(f);
        pthread_mutex_unlock(&kr->flight_lock);
        /* rk holds the reference retained above; flight_unref dropped only
           the flight's own (an atomic count the analyzer cannot follow). */
        return rk; /* NOLINT(clang-analyzer-unix.Malloc) */
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
        ck_keyring_key_release(rk);
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
        ck_keyring_key_retain(rk);
        f->rk = rk;
    } else if (err != NULL) {
        *err = f->err;
    }
    f->done = 1;
    pthread_cond_broadcast(&kr->flight_cond);
    flight_unref(f);
    pthread_mutex_unlock(&kr->flight_lock);
    /* The memo takes its own lock, so only after flight_lock is dropped; the
       epoch of the unwrap decides, as for the cache. */
    if (rk != NULL) {
        memo_put(kr, id, id_len, rk, epoch); /* NOLINT(clang-analyzer-unix.Malloc): retained above */
    }
    return rk; /* NOLINT(clang-analyzer-unix.Malloc): our own reference, as above */
}
