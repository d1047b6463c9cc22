/*
 * ck_keyring_fork.c - fork safety of the keyring: the registry of live
 * keyrings and the pthread_atfork handlers that walk it.
 *
 * The handlers hold every keyring's flight and cache locks across fork();
 * in the child they empty the flight list (its fetchers are gone) and bump
 * a fork generation. Any entry point that sees a generation newer than the
 * one its caches were filled in first drops both caches
 * (ck_keyring_check_fork), so a child never seals with a DEK (or counter)
 * its parent also uses. Details below.
 */
#include "ck_keyring_internal.h"

#include <pthread.h>

#include "ck_crypto.h"
#include "ck_l1.h"

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
 *   - ck_keyring_fork_generation is bumped; the first entry point to see it drops both
 *     caches (ck_keyring_check_fork), so a child never seals with a DEK (or counter)
 *     its parent also uses.
 * Tenant states a parent thread was using when the fork happened keep that
 * thread's reference for ever in the child, so their locks and condition
 * variables are never waited on or destroyed there.
 */
uint64_t ck_keyring_fork_generation;
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
        pthread_mutex_lock(&kr->memo->lock);
    }
}

static void on_fork_parent(void)
{
    ck_keyring *kr;

    for (kr = registry; kr != NULL; kr = kr->reg_next) {
        pthread_mutex_unlock(&kr->memo->lock);
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

    __atomic_add_fetch(&ck_keyring_fork_generation, 1, __ATOMIC_RELAXED);
    for (kr = registry; kr != NULL; kr = kr->reg_next) {
        kr->flights = NULL;
        /* Over the parent's state, deliberately; a failure would leave the
           old one, which still works when no waiter was counted. */
        (void)pthread_cond_init(&kr->flight_cond, NULL);
        pthread_mutex_unlock(&kr->memo->lock);
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
int ck_keyring_registry_add(ck_keyring *kr, ck_error *err)
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

void ck_keyring_registry_remove(ck_keyring *kr)
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

/* After a fork the child starts over: see the file comment. */
void ck_keyring_check_fork(ck_keyring *kr)
{
    uint64_t now = __atomic_load_n(&ck_keyring_fork_generation, __ATOMIC_RELAXED);
    uint64_t seen = __atomic_load_n(&kr->generation, __ATOMIC_RELAXED);

    /* Only the first thread to see the new generation drops the caches. */
    if (seen != now && __atomic_compare_exchange_n(&kr->generation, &seen, now, 0,
                                                   __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
        count(&kr->stats.fork_resets);
        ck_keyring_drop_all(kr);
    }
}
