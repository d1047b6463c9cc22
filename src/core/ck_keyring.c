/*
 * ck_keyring.c - the key hierarchy of @cache.secure: keyring lifecycle
 * (master keys or an external provider, limits), seal, open and stats (see
 * ck_keyring.h for the derivations and docs/security.md for why they are
 * safe).
 *
 * This file owns the public entry points. Where their data keys come from
 * (the key caches, singleflight fetches, DEK retirement) is
 * ck_keyring_dek.c; what happens across fork() is ck_keyring_fork.c; the
 * shared types are in the private ck_keyring_internal.h.
 */
#include "ck_keyring.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "ck_bytes.h"
#include "ck_crypto.h"
#include "ck_keyring_internal.h"
#include "ck_l1.h"

#define FP_SALT "cachekit/v1/fingerprint"
#define PROVIDER_FP_SALT "cachekit/v1/provider-fingerprint"

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
    kr->generation = __atomic_load_n(&ck_keyring_fork_generation, __ATOMIC_RELAXED);
    kr->tenants = ck_l1_new(lim->tenant_capacity, 0, &ck_keyring_tenant_ops);
    kr->reads = ck_l1_new(lim->read_capacity, 0, &ck_keyring_read_ops);
    if (kr->tenants == NULL || kr->reads == NULL) {
        ck_error_set(err, CK_ENOMEM, "out of memory for key caches");
        ck_keyring_free(kr);
        return NULL;
    }
    kr->memo = ck_keyring_memo_new();
    if (kr->memo == NULL) {
        ck_error_set(err, CK_ENOMEM, "out of memory for key caches");
        ck_keyring_free(kr);
        return NULL;
    }
    kr->l1_mac = ck_mac_new_random(err);
    if (kr->l1_mac == NULL || ck_keyring_registry_add(kr, err) < 0) {
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
    ck_keyring_registry_remove(kr);
    ck_l1_free(kr->tenants);
    ck_l1_free(kr->reads);
    ck_keyring_memo_free(kr->memo);
    ck_mac_free(kr->l1_mac);
    (void)pthread_cond_destroy(&kr->flight_cond);
    (void)pthread_mutex_destroy(&kr->flight_lock);
    ck_secure_free(kr, sizeof(*kr)); /* wipes the master keys */
}

void ck_keyring_current_fp(const ck_keyring *kr, unsigned char fp[CK_SEAL_FP_LEN])
{
    ck_keyring_fp_at(kr, 0, fp);
}

int ck_keyring_sign_key(ck_keyring *kr, unsigned char out[32], ck_error *err)
{
    static const char salt[] = "cachekit/v1/sign";
    const master_key *m = &kr->masters[0];

    if (is_external(kr)) {
        return ck_error_set(err, CK_EINVAL, "an external key provider holds no master key to sign with");
    }
    return ck_hkdf_sha256(m->key, m->len, (const unsigned char *)salt, sizeof(salt) - 1, NULL, 0,
                          out, 32, err);
}

int ck_keyring_has_master(const ck_keyring *kr)
{
    return !is_external(kr);
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
    ck_keyring_drop_all(kr);
}

int ck_keyring_l2_name(ck_keyring *kr, ck_span tenant, const unsigned char *key, size_t n,
                       unsigned char out[CK_KEYRING_L2_NAME_LEN], ck_error *err)
{
    tenant_state *ts;
    unsigned int len = 0;
    int rc = -1;

    if (is_external(kr)) {
        return ck_error_set(err, CK_EINVAL,
                            "a keyring with an external key provider has no master key to name "
                            "shared entries with");
    }
    ts = ck_keyring_tenant_get(kr, tenant, err);
    if (ts == NULL) {
        return -1;
    }
    if (!ts->has_name_key) {
        ck_error_set(err, CK_EINVAL, "no L2 name key for this tenant");
    } else if (HMAC(EVP_sha256(), ts->name_key, (int)sizeof(ts->name_key), key, n, out, &len) ==
                   NULL ||
               len != CK_KEYRING_L2_NAME_LEN) {
        ck_crypto_error(err, "HMAC-SHA256 (L2 name)");
    } else {
        rc = 0;
    }
    ck_keyring_tenant_release(ts);
    return rc;
}

int ck_keyring_l1_key(ck_keyring *kr, const unsigned char *key, size_t n,
                      unsigned char out[CK_KEYRING_L1_KEY_LEN], ck_error *err)
{
    return ck_mac_compute(kr->l1_mac, key, n, out, err);
}

/* --------------------------------------------------------- seal and open */

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

uint64_t ck_keyring_now_ms(void)
{
    struct timespec ts;

    (void)clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int ck_keyring_seal(ck_keyring *kr, ck_span tenant, ck_span cache_key, uint8_t serializer,
                    const unsigned char *pt, size_t n, const ck_unlock_hooks *hooks, ck_buf *out,
                    ck_error *err)
{
    return ck_keyring_seal_until(kr, tenant, cache_key, serializer, pt, n, 0, hooks, out, err);
}

int ck_keyring_seal_until(ck_keyring *kr, ck_span tenant, ck_span cache_key, uint8_t serializer,
                          const unsigned char *pt, size_t n, uint64_t expires_at_ms,
                          const ck_unlock_hooks *hooks, ck_buf *out, ck_error *err)
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
    ck_keyring_check_fork(kr);
    ts = ck_keyring_tenant_get(kr, tenant, err);
    if (ts == NULL) {
        return -1;
    }
    /* Lease: under the tenant lock take the DEK, its wrapped form and the
       next counter value. The nonce is the DEK instance's random prefix and
       message counter, so it is unique per DEK instance by construction;
       the lock is not held while sealing. */
    pthread_mutex_lock(&ts->lock);
    if (ck_keyring_ensure_dek(kr, ts, tenant, n, hooks, err) < 0) {
        pthread_mutex_unlock(&ts->lock);
        goto error;
    }
    dek = ts->dek;
    ck_keyring_key_retain(dek);
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
    p.expires_at_ms = expires_at_ms;
    p.compress_min = kr->lim.compress_min;
    WITH_HOOKS(hooks, n, ck_seal(dek->aead, &p, serializer, pt, n, tenant, cache_key, out, err));
    if (rc == 0) {
        count(&kr->stats.messages);
    }
error:
    ck_keyring_key_release(dek);
    ck_keyring_tenant_release(ts);
    return rc;
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
    ck_keyring_check_fork(kr);
    rk = ck_keyring_read_key_get(kr, &s, tenant, hooks, err);
    if (rk == NULL) {
        return -1;
    }
    if (ck_buf_reserve(pt, s.plaintext_len) < 0) {
        ck_error_set(err, CK_ENOMEM, "out of memory for %zu bytes", s.plaintext_len);
        goto error;
    }
    WITH_HOOKS(hooks, s.plaintext_len, ck_sealed_open(rk->aead, &s, tenant, cache_key, pt->data, err));
    if (rc == 0 && s.expires_at_ms != 0 && ck_keyring_now_ms() >= s.expires_at_ms) {
        /* Authentic but expired: an older entry put back, or one whose TTL
           was stripped in the store. Its plaintext never leaves here. */
        ck_wipe(pt->data, s.plaintext_len);
        rc = ck_error_set(err, CK_ESTALE, "entry expired %llu ms ago",
                          (unsigned long long)(ck_keyring_now_ms() - s.expires_at_ms));
    }
    if (rc == 0) {
        pt->len = s.plaintext_len;
        *serializer = s.h.serializer;
    }
error:
    ck_keyring_key_release(rk);
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
