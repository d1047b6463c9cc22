/*
 * ck_keyring.c - the key hierarchy of @cache.secure: lifecycle, fork
 * handling, reference counting and the helpers sealing (ck_keyring_seal.c)
 * and opening (ck_keyring_open.c) share. The data structures and the
 * design (caches, singleflight, fork safety) are described in
 * ck_keyring_int.h; the derivations in ck_keyring.h; why they are safe in
 * docs/security.md.
 */
#include "ck_keyring_int.h"

#include <stdlib.h>
#include <string.h>

#include "ck_bytes.h"

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
 *     caches (ckr_check_fork), so a child never seals with a DEK (or counter)
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

void ckr_key_retain(void *v)
{
    __atomic_add_fetch(&((key_ref *)v)->refs, 1, __ATOMIC_RELAXED);
}

void ckr_key_release(void *v)
{
    key_ref *k = v;

    if (k == NULL || __atomic_sub_fetch(&k->refs, 1, __ATOMIC_ACQ_REL) != 0) {
        return;
    }
    ck_aead_free(k->aead);
    free(k);
}

/* A new key_ref holding one reference to an AES-GCM context for key. */
key_ref *ckr_key_new(const unsigned char key[CK_AEAD_KEY_LEN], ck_error *err)
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

void ckr_tenant_release(void *v)
{
    tenant_state *ts = v;

    if (ts == NULL || __atomic_sub_fetch(&ts->refs, 1, __ATOMIC_ACQ_REL) != 0) {
        return;
    }
    ck_aead_free(ts->kek);
    ckr_key_release(ts->dek);
    ck_wipe(ts->wrapped, sizeof(ts->wrapped));
    /* May fail (EBUSY) for a state a parent thread had locked at fork time;
       the memory is ours to free either way. */
    (void)pthread_cond_destroy(&ts->cond);
    (void)pthread_mutex_destroy(&ts->lock);
    free(ts);
}

static const ck_l1_ops tenant_ops = {tenant_retain, ckr_tenant_release};
static const ck_l1_ops read_ops = {ckr_key_retain, ckr_key_release};

/* -------------------------------------------------------------- helpers */

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

/* After a fork the child starts over: see "fork watch" above. */
void ckr_check_fork(ck_keyring *kr)
{
    uint64_t now = __atomic_load_n(&fork_generation, __ATOMIC_RELAXED);
    uint64_t seen = __atomic_load_n(&kr->generation, __ATOMIC_RELAXED);

    /* Only the first thread to see the new generation drops the caches. */
    if (seen != now && __atomic_compare_exchange_n(&kr->generation, &seen, now, 0,
                                                   __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
        ckr_count(&kr->stats.fork_resets);
        drop_all(kr);
    }
}

void ckr_wait_released(pthread_mutex_t *mutex, pthread_cond_t *cond, const ck_unlock_hooks *hooks,
                       int (*ready)(const void *), const void *arg)
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

int ckr_derive_kek(ck_keyring *kr, const master_key *m, ck_span tenant, ck_aead **out,
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
        ckr_count(&kr->stats.kek_derivations);
    }
    return rc;
}

size_t ckr_wrap_aad(ck_span tenant, unsigned char *aad)
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

    if (ckr_is_external(kr)) {
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
    return ckr_is_external(kr) ? 1 : kr->n_masters;
}

void ck_keyring_fp_at(const ck_keyring *kr, size_t i, unsigned char fp[CK_SEAL_FP_LEN])
{
    memcpy(fp, ckr_is_external(kr) ? kr->ext_fp : kr->masters[i].fp, CK_SEAL_FP_LEN);
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

