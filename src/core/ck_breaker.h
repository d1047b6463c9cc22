/*
 * ck_breaker.h - a circuit breaker and an in-flight bound for one backend
 * (pure C, no Python).
 *
 * Closed: operations run; failure_threshold consecutive failures open it.
 * Open: operations are skipped (the function runs without the backend)
 * until recovery_ns have passed, then it is half-open.
 * Half-open: at most half_open_max operations at a time probe the backend;
 * success_threshold successes close it, any failure opens it again.
 *
 * Independently, at most max_inflight operations run at once (0: no bound);
 * beyond that a call skips the backend instead of queueing behind it
 * (backpressure). Every function takes the breaker's own mutex, so it may be
 * used from any thread; times are passed in (monotonic nanoseconds).
 */
#ifndef CK_BREAKER_H
#define CK_BREAKER_H

#include <pthread.h>
#include <stdint.h>

enum { CK_BREAKER_CLOSED = 0, CK_BREAKER_OPEN = 1, CK_BREAKER_HALF_OPEN = 2 };

typedef struct {
    /* configuration, fixed after ck_breaker_init */
    int enabled;
    uint32_t failure_threshold;
    uint32_t success_threshold;
    uint32_t half_open_max;
    uint64_t recovery_ns;
    uint32_t max_inflight;
    /* state, guarded by lock */
    pthread_mutex_t lock;
    int state;
    uint32_t failures;   /* consecutive, while closed */
    uint32_t successes;  /* while half-open */
    uint32_t probing;    /* operations in flight while half-open */
    uint32_t inflight;
    uint64_t opened_at;
    uint64_t times_opened;
    uint64_t skipped_open;     /* calls that skipped the backend: open */
    uint64_t skipped_pressure; /* calls that skipped it: too many in flight */
} ck_breaker;

/* 0, or -1 if the mutex cannot be created. */
int ck_breaker_init(ck_breaker *b, int enabled, uint32_t failure_threshold,
                    uint32_t success_threshold, uint32_t half_open_max, uint64_t recovery_ns,
                    uint32_t max_inflight);
void ck_breaker_destroy(ck_breaker *b);

/* May an operation run now? 1: yes, and the caller must report its outcome
   with ck_breaker_done; 0: skip the backend this time. */
int ck_breaker_allow(ck_breaker *b, uint64_t now_ns);

/* The outcome of an allowed operation: ok 1 (the backend answered, a miss
   included) or 0 (error or timeout). */
void ck_breaker_done(ck_breaker *b, int ok, uint64_t now_ns);

/* The state now (an open breaker past its recovery time reads half-open). */
int ck_breaker_state(ck_breaker *b, uint64_t now_ns);

/* Re-create the mutex in a fork child (another thread may have held it). */
void ck_breaker_after_fork(ck_breaker *b);

#endif /* CK_BREAKER_H */
