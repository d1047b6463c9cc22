/*
 * ck_keyring_open.c - reading: finding or unwrapping the data key an entry
 * names (read cache, one unwrap per wrapped key in flight) and opening the
 * entry (structures in ck_keyring_int.h).
 */
#include "ck_keyring_int.h"

#include <stdlib.h>
#include <string.h>

#include "ck_bytes.h"

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

    if (ckr_is_external(kr)) {
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
        aad_len = ckr_wrap_aad(tenant, aad);
        if (ckr_derive_kek(kr, m, tenant, &kek, err) < 0 ||
            ck_aead_open(kek, s->wrapped.p, aad, aad_len, s->wrapped.p + CK_AEAD_NONCE_LEN,
                         CK_AEAD_KEY_LEN, s->wrapped.p + CK_AEAD_NONCE_LEN + CK_AEAD_KEY_LEN,
                         dek, err) < 0) {
            goto error;
        }
    }
    rk = ckr_key_new(dek, err);
    if (rk != NULL) {
        rk->created_ns = ckr_now(kr);
        ckr_count(&kr->stats.deks_unwrapped);
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
        ckr_key_release(f->rk);
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
        if (ckr_now(kr) - rk->created_ns < kr->lim.read_max_age_ns) {
            ck_l1_release(kr->reads, detached);
            return rk;
        }
        ckr_key_release(rk);
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
        ckr_wait_released(&kr->flight_lock, &kr->flight_cond, hooks, flight_done, f);
        if (f->rk != NULL) {
            rk = f->rk;
            ckr_key_retain(rk);
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
        ckr_key_release(rk);
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
        ckr_key_retain(rk);
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
    if (s.provider != (ckr_is_external(kr) ? kr->ext.id : CK_PROVIDER_LOCAL) ||
        (ckr_is_external(kr) && memcmp(s.key_fp, kr->ext_fp, CK_SEAL_FP_LEN) != 0)) {
        return ck_error_set(err, CK_EAUTH, "entry was written by another key provider or key");
    }
    ckr_check_fork(kr);
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
    ckr_key_release(rk);
    return rc;
}

