/*
 * ck_breaker.c - the circuit breaker state machine (see ck_breaker.h).
 */
#include "ck_breaker.h"

int ck_breaker_init(ck_breaker *b, int enabled, uint32_t failure_threshold,
                    uint32_t success_threshold, uint32_t half_open_max, uint64_t recovery_ns,
                    uint32_t max_inflight)
{
    b->enabled = enabled;
    b->failure_threshold = failure_threshold ? failure_threshold : 1;
    b->success_threshold = success_threshold ? success_threshold : 1;
    b->half_open_max = half_open_max ? half_open_max : 1;
    b->recovery_ns = recovery_ns;
    b->max_inflight = max_inflight;
    b->state = CK_BREAKER_CLOSED;
    b->failures = b->successes = b->probing = b->inflight = 0;
    b->opened_at = b->times_opened = b->skipped_open = b->skipped_pressure = 0;
    return pthread_mutex_init(&b->lock, NULL) == 0 ? 0 : -1;
}

void ck_breaker_destroy(ck_breaker *b)
{
    (void)pthread_mutex_destroy(&b->lock);
}

void ck_breaker_after_fork(ck_breaker *b)
{
    /* The child has one thread: whatever the parent's threads had in
       flight will never report back. */
    (void)pthread_mutex_init(&b->lock, NULL);
    b->inflight = 0;
    b->probing = 0;
}

/* Open past its recovery time: half-open. The caller holds the lock. */
static void advance(ck_breaker *b, uint64_t now)
{
    if (b->state == CK_BREAKER_OPEN && now - b->opened_at >= b->recovery_ns) {
        b->state = CK_BREAKER_HALF_OPEN;
        b->successes = 0;
        b->probing = 0;
    }
}

static void trip(ck_breaker *b, uint64_t now)
{
    b->state = CK_BREAKER_OPEN;
    b->opened_at = now;
    b->failures = 0;
    b->times_opened++;
}

int ck_breaker_allow(ck_breaker *b, uint64_t now)
{
    int ok = 1;

    pthread_mutex_lock(&b->lock);
    if (b->max_inflight != 0 && b->inflight >= b->max_inflight) {
        b->skipped_pressure++;
        ok = 0;
        goto done;
    }
    if (b->enabled) {
        advance(b, now);
        if (b->state == CK_BREAKER_OPEN ||
            (b->state == CK_BREAKER_HALF_OPEN && b->probing >= b->half_open_max)) {
            b->skipped_open++;
            ok = 0;
            goto done;
        }
        if (b->state == CK_BREAKER_HALF_OPEN) {
            b->probing++;
        }
    }
    b->inflight++;
done:
    pthread_mutex_unlock(&b->lock);
    return ok;
}

void ck_breaker_done(ck_breaker *b, int ok, uint64_t now)
{
    pthread_mutex_lock(&b->lock);
    if (b->inflight > 0) {
        b->inflight--;
    }
    if (b->enabled) {
        if (b->state == CK_BREAKER_HALF_OPEN) {
            if (b->probing > 0) {
                b->probing--;
            }
            if (!ok) {
                trip(b, now);
            } else if (++b->successes >= b->success_threshold) {
                b->state = CK_BREAKER_CLOSED;
                b->failures = 0;
            }
        } else if (b->state == CK_BREAKER_CLOSED) {
            if (ok) {
                b->failures = 0;
            } else if (++b->failures >= b->failure_threshold) {
                trip(b, now);
            }
        }
        /* Open: an operation allowed before it opened reports late; its
           outcome changes nothing. */
    }
    pthread_mutex_unlock(&b->lock);
}

int ck_breaker_state(ck_breaker *b, uint64_t now)
{
    int s;

    pthread_mutex_lock(&b->lock);
    advance(b, now);
    s = b->state;
    pthread_mutex_unlock(&b->lock);
    return s;
}
