/*
 * ck_keyring_seal.c - writing: per-tenant write state, making data keys
 * (local or through a provider) with singleflight, and sealing under them
 * with prefix || counter nonces (structures in ck_keyring_int.h).
 */
#include "ck_keyring_int.h"

#include <stdlib.h>
#include <string.h>

#include "ck_bytes.h"

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
    if ((!ckr_is_external(kr) &&
         ckr_derive_kek(kr, &kr->masters[0], tenant, &ts->kek, err) < 0) ||
        ck_l1_put(kr->tenants, &kr->tenant_owner, h, tenant.p, tenant.n, ts, 0, 0, &detached,
                  err) < 0) {
        ck_l1_release(kr->tenants, detached);
        ckr_tenant_release(ts);
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

    if (ckr_is_external(kr)) {
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
        aad_len = ckr_wrap_aad(tenant, aad);
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
    fresh = ckr_key_new(dek, err);
    if (fresh != NULL) {
        ckr_count(&kr->stats.deks_created);
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
        if (!dek_spent(kr, ts, n, ckr_now(kr))) {
            return 0;
        }
        if (ts->fetching) {
            fetch_wait w = {ts, ts->fetch_seq};
            ckr_wait_released(&ts->lock, &ts->cond, hooks, fetch_ended, &w);
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
            ckr_key_release(ts->dek);
            ts->dek = fresh;
            memcpy(ts->wrapped, wrapped, wrapped_len);
            ts->wrapped_len = wrapped_len;
            memcpy(ts->nonce_prefix, prefix, sizeof(prefix));
            ts->counter = 0;
            ts->bytes = 0;
            ts->created_ns = ckr_now(kr);
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
    ckr_check_fork(kr);
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
    ckr_key_retain(dek);
    p.wrapped.n = ts->wrapped_len;
    memcpy(wrapped, ts->wrapped, ts->wrapped_len);
    memcpy(p.nonce, ts->nonce_prefix, 4);
    put_be64(p.nonce + 4, ts->counter);
    ts->counter++;
    ts->bytes += n;
    pthread_mutex_unlock(&ts->lock);

    ck_keyring_current_fp(kr, p.key_fp);
    p.provider = ckr_is_external(kr) ? kr->ext.id : CK_PROVIDER_LOCAL;
    p.wrapped.p = wrapped;
    WITH_HOOKS(hooks, n, ck_seal(dek->aead, &p, serializer, pt, n, tenant, cache_key, out, err));
    if (rc == 0) {
        ckr_count(&kr->stats.messages);
    }
error:
    ckr_key_release(dek);
    ckr_tenant_release(ts);
    return rc;
}

