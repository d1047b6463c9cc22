/*
 * py_cached_flight.c - concurrent misses of one key run the function once.
 *
 * When threads miss the same key of a function at once, the first becomes
 * the leader: it runs the function and stores the result; the others wait
 * (without the GIL) for it to finish, then look the key up again, so a
 * stampede on a cold or expired key costs one call of the function, not one
 * per thread. The async path has its own singleflight per event loop
 * (cachekit/decorators/async_path.py); this one serves synchronous calls.
 *
 * A waiter never waits for itself (a function that calls itself with the
 * same arguments, through the cache, runs uncached in the inner call), and
 * never waits long: past CK_FLIGHT_WAIT_S it runs the function itself. If
 * the leader failed (an exception, or a result that could not be stored),
 * the waiters find nothing and each runs the function, which gives every
 * caller its own exception as without a cache.
 *
 * Flights live in a short list on the function, touched only with the GIL
 * held. The lock waiters block on is created by the first waiter, already
 * held (on the leader's behalf: a PyThread lock has no owner), and released
 * by the leader when it is done; a miss nobody waits for allocates no lock.
 * Under the GIL, "no lock yet" and "the leader is not done" are one state.
 */
#include "py_cached.h"

#include <pythread.h>
#include <string.h>

/* Longest wait for another thread's computation, in seconds. */
#define CK_FLIGHT_WAIT_S 60

/* Key room of a new flight: one this size is kept for reuse when it ends
   (self->spare_flight), so a miss of a short key allocates nothing here. */
#define CK_FLIGHT_SPARE_KEY 64

struct ck_flight {
    struct ck_flight *next;
    ck_hash128 hash;
    unsigned long leader;     /* thread id of the leader */
    PyThread_type_lock done;  /* NULL until a waiter comes; then held until
                                 the leader finishes */
    int waiters;
    int finished;
    size_t key_len;
    size_t key_cap;           /* room in key[] */
    unsigned char key[];
};

static ck_flight *find(ck_cached *self, ck_hash128 h, const unsigned char *key, size_t n)
{
    ck_flight *f;

    for (f = self->flights; f != NULL; f = f->next) {
        if (f->hash.lo == h.lo && f->hash.hi == h.hi && f->key_len == n &&
            memcmp(f->key, key, n) == 0) {
            return f;
        }
    }
    return NULL;
}

static void unlink_flight(ck_cached *self, ck_flight *f)
{
    ck_flight **pp = &self->flights;

    while (*pp != NULL && *pp != f) {
        pp = &(*pp)->next;
    }
    if (*pp == f) {
        *pp = f->next;
    }
}

static void free_flight(ck_cached *self, ck_flight *f)
{
    if (f->done != NULL) {
        PyThread_free_lock(f->done);
        f->done = NULL;
    }
    if (self->spare_flight == NULL && f->key_cap == CK_FLIGHT_SPARE_KEY) {
        self->spare_flight = f;
        return;
    }
    PyMem_Free(f);
}

void ck_flight_clear_spare(ck_cached *self)
{
    PyMem_Free(self->spare_flight);
    self->spare_flight = NULL;
}

int ck_flight_join(ck_cached *self, ck_hash128 h, const unsigned char *key, size_t n,
                   ck_flight **leader)
{
    unsigned long me = PyThread_get_thread_ident();
    ck_flight *f = find(self, h, key, n);
    PyLockStatus got;

    *leader = NULL;
    if (f == NULL) {
        if (n <= CK_FLIGHT_SPARE_KEY && self->spare_flight != NULL) {
            f = self->spare_flight;
            self->spare_flight = NULL;
        } else {
            size_t cap = n <= CK_FLIGHT_SPARE_KEY ? CK_FLIGHT_SPARE_KEY : n;
            f = PyMem_Malloc(sizeof(*f) + cap);
            if (f == NULL) {
                return CK_FLIGHT_ALONE; /* run without a flight: correct, just not shared */
            }
            f->key_cap = cap;
        }
        f->done = NULL;
        f->hash = h;
        f->leader = me;
        f->waiters = 0;
        f->finished = 0;
        f->key_len = n;
        memcpy(f->key, key, n);
        f->next = self->flights;
        self->flights = f;
        *leader = f;
        return CK_FLIGHT_LEADER;
    }
    if (f->leader == me) {
        return CK_FLIGHT_ALONE; /* a recursive call: waiting would deadlock */
    }
    if (f->done == NULL) {
        f->done = PyThread_allocate_lock();
        if (f->done == NULL) {
            return CK_FLIGHT_ALONE;
        }
        (void)PyThread_acquire_lock(f->done, NOWAIT_LOCK); /* free: cannot fail */
    }
    f->waiters++;
    Py_BEGIN_ALLOW_THREADS
    got = PyThread_acquire_lock_timed(f->done, (PY_TIMEOUT_T)CK_FLIGHT_WAIT_S * 1000000, 0);
    if (got == PY_LOCK_ACQUIRED) {
        PyThread_release_lock(f->done); /* let the other waiters through */
    }
    Py_END_ALLOW_THREADS
    /* The leader unlinked the flight when it finished; the last one out
       frees it. A timed-out waiter leaves it to the leader. */
    if (--f->waiters == 0 && f->finished) {
        free_flight(self, f);
    }
    return CK_FLIGHT_WAITED;
}

void ck_flight_done(ck_cached *self, ck_flight *f)
{
    if (f == NULL) {
        return;
    }
    unlink_flight(self, f);
    f->finished = 1;
    if (f->done != NULL) {
        PyThread_release_lock(f->done);
    }
    if (f->waiters == 0) {
        free_flight(self, f);
    }
}
