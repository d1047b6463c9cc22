/*
 * ck_redis_pool.c - a bounded, thread-safe pool of Redis connections, and
 * the operations that take more than one round trip (ck_redis.h).
 *
 * State (under `lock`):
 *   idle      stack of connected, unused connections (most recent on top,
 *             so a quiet pool keeps reusing the same warm few)
 *   total     connections in existence: idle + in use + being opened;
 *             never above cfg.pool_size
 *   failures, retry_at_ns, last_err
 *             reconnect backoff: after `failures` failed connects in a row
 *             nobody tries again before retry_at_ns; until then acquire
 *             fails at once with last_err, so a down server costs each
 *             caller microseconds instead of a connect timeout, and the
 *             server is not hammered when it comes back. The delay doubles
 *             from BACKOFF_BASE_MS up to BACKOFF_MAX_MS; a success resets it.
 *
 * Fork: pools are on a registry whose pthread_atfork handlers hold every
 * pool lock across fork(). The child starts with no connections: the
 * parent's idle ones move to `inherited` (their sockets are the parent's
 * and must never carry a byte from the child) and are closed, without any
 * I/O, at the child's next call; connections other threads had in use do
 * not exist in the child and are forgotten.
 *
 * Connecting, I/O and closing happen outside the lock; a thread waiting
 * for a free connection sleeps on `cond` (monotonic clock) up to
 * pool_timeout_ms. A connection that failed mid-command is broken and is
 * closed on release; an idle one the server has closed (restart, idle
 * timeout) is noticed by a zero-timeout poll at acquire and replaced.
 *
 * Sentinel (cfg.sentinel set): connections go to the master the sentinels
 * name (ck_redis_sentinel_connect), each tagged with the epoch of that
 * address; one from an older epoch is closed at acquire or release. A run
 * that fails in a way a failover explains (ck_redis_sentinel_should_
 * rediscover) forgets the address and is retried once; acquire re-asks
 * the sentinels every CK_SENTINEL_CHECK_MS (ck_redis_sentinel.h says why).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ck_redis.h"
#include "ck_redis_sentinel.h"
#include "ck_sock.h"

#define BACKOFF_BASE_MS 50
#define BACKOFF_MAX_MS 1000

typedef struct idle_node {
    struct idle_node *next;
    ck_redis_conn *conn;
    uint64_t epoch; /* Sentinel: the master address it was opened to */
} idle_node;

struct ck_redis_pool {
    ck_redis_config cfg; /* own copy; read-only after creation */
    ck_tls_ctx *tls;     /* NULL for plain text */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    idle_node *idle;
    size_t total;
    int closed;
    unsigned failures;
    int64_t retry_at_ns;
    ck_error last_err;
    idle_node *inherited; /* child after fork: the parent's idle connections */
    struct ck_redis_pool *reg_prev, *reg_next; /* registry, under registry_lock */
    int registered;
    ck_redis_sentinel_state sentinel; /* under lock; unused without cfg.sentinel */
};

/* ------------------------------------------------------------------- fork */

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static int atfork_rc = -1; /* pthread_atfork's result, once registered */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static ck_redis_pool *registry; /* guarded by registry_lock */

static void on_fork_prepare(void)
{
    ck_redis_pool *p;

    pthread_mutex_lock(&registry_lock);
    for (p = registry; p != NULL; p = p->reg_next) {
        pthread_mutex_lock(&p->lock);
    }
}

static void on_fork_parent(void)
{
    ck_redis_pool *p;

    for (p = registry; p != NULL; p = p->reg_next) {
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_unlock(&registry_lock);
}

static void on_fork_child(void)
{
    ck_redis_pool *p;

    for (p = registry; p != NULL; p = p->reg_next) {
        idle_node *tail = p->idle;

        /* Append the idle list to what an earlier fork left (rare). */
        if (tail != NULL) {
            while (tail->next != NULL) {
                tail = tail->next;
            }
            tail->next = p->inherited;
            p->inherited = p->idle;
        }
        p->idle = NULL;
        p->total = 0;
        /* No waiter survives fork, but the cond may still count the
           parent's: initialise it again over the old state, on purpose
           without pthread_cond_destroy, which in glibc waits for those
           waiters to leave and would hang the child. A failure keeps the
           old one, which works when no waiter was counted. */
        {
            pthread_condattr_t attr;
            if (pthread_condattr_init(&attr) == 0) {
                (void)pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
                (void)pthread_cond_init(&p->cond, &attr);
                pthread_condattr_destroy(&attr);
            }
        }
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_unlock(&registry_lock);
}

static void register_atfork(void)
{
    atfork_rc = pthread_atfork(on_fork_prepare, on_fork_parent, on_fork_child);
}

static int registry_add(ck_redis_pool *p, ck_error *err)
{
    if (pthread_once(&atfork_once, register_atfork) != 0 || atfork_rc != 0) {
        return ck_error_set(err, CK_ENOMEM, "cannot register the pool's fork handlers");
    }
    pthread_mutex_lock(&registry_lock);
    p->reg_next = registry;
    if (registry != NULL) {
        registry->reg_prev = p;
    }
    registry = p;
    p->registered = 1;
    pthread_mutex_unlock(&registry_lock);
    return 0;
}

static void registry_remove(ck_redis_pool *p)
{
    if (!p->registered) {
        return;
    }
    pthread_mutex_lock(&registry_lock);
    if (p->reg_prev != NULL) {
        p->reg_prev->reg_next = p->reg_next;
    } else {
        registry = p->reg_next;
    }
    if (p->reg_next != NULL) {
        p->reg_next->reg_prev = p->reg_prev;
    }
    p->registered = 0;
    pthread_mutex_unlock(&registry_lock);
}

/* ---------------------------------------------------------------- create */

ck_redis_pool *ck_redis_pool_new(const ck_redis_config *cfg, ck_error *err)
{
    ck_redis_pool *p = calloc(1, sizeof(*p));
    pthread_condattr_t attr;
    int have_lock = 0, have_cond = 0;

    if (p == NULL) {
        ck_error_set(err, CK_ENOMEM, "out of memory");
        return NULL;
    }
    if (cfg->pool_size == 0 || cfg->max_reply_bytes == 0 || cfg->max_elements == 0 ||
        cfg->max_depth < 1 || cfg->socket_timeout_ms <= 0 || cfg->connect_timeout_ms <= 0 ||
        cfg->pool_timeout_ms <= 0) {
        ck_error_set(err, CK_EINVAL, "pool size, bounds and timeouts must be positive");
        free(p);
        return NULL;
    }
    if (ck_redis_config_copy(&p->cfg, cfg, err) < 0) {
        free(p);
        return NULL;
    }
    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        goto error;
    }
    have_lock = 1;
    if (pthread_condattr_init(&attr) != 0) {
        goto error;
    }
    /* Timed waits on the monotonic clock: a wall-clock step must not turn
       a 5 s wait into an hour or into nothing. */
    if (pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&p->cond, &attr) != 0) {
        pthread_condattr_destroy(&attr);
        goto error;
    }
    pthread_condattr_destroy(&attr);
    have_cond = 1;
    if (p->cfg.tls) {
        p->tls = ck_tls_ctx_new(p->cfg.ca_file, p->cfg.cert_file, p->cfg.key_file, err);
        if (p->tls == NULL) {
            goto error_set;
        }
    }
    if (registry_add(p, err) < 0) {
        goto error_set;
    }
    return p;
error:
    ck_error_set(err, CK_ENOMEM, "cannot create the pool's lock");
error_set:
    ck_tls_ctx_free(p->tls);
    if (have_cond) {
        pthread_cond_destroy(&p->cond);
    }
    if (have_lock) {
        pthread_mutex_destroy(&p->lock);
    }
    ck_redis_config_free(&p->cfg);
    free(p);
    return NULL;
}

/* Detach the idle list under the lock; the caller frees it unlocked. */
static idle_node *take_idle(ck_redis_pool *p)
{
    idle_node *list = p->idle;
    idle_node *n;

    p->idle = NULL;
    for (n = list; n != NULL; n = n->next) {
        p->total--;
    }
    return list;
}

/* After fork, in the child: the parent's connections, to close unlocked.
   Closing sends nothing (no TLS close_notify), so the parent's sessions
   on the same sockets are unaffected. */
static idle_node *take_inherited(ck_redis_pool *p)
{
    idle_node *list = p->inherited;

    p->inherited = NULL;
    return list;
}

static void free_idle(idle_node *list)
{
    while (list != NULL) {
        idle_node *next = list->next;
        ck_redis_conn_free(list->conn);
        free(list);
        list = next;
    }
}

void ck_redis_pool_close(ck_redis_pool *p)
{
    idle_node *list, *inherited;

    pthread_mutex_lock(&p->lock);
    p->closed = 1;
    list = take_idle(p);
    inherited = take_inherited(p);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    free_idle(list);
    free_idle(inherited);
}

void ck_redis_pool_free(ck_redis_pool *p)
{
    if (p == NULL) {
        return;
    }
    registry_remove(p);
    ck_redis_pool_close(p);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    ck_tls_ctx_free(p->tls);
    ck_redis_sentinel_state_free(&p->sentinel);
    ck_redis_config_free(&p->cfg);
    free(p);
}

/* ------------------------------------------------------- acquire / release */

static void abs_deadline(int64_t deadline_ns, struct timespec *ts)
{
    ts->tv_sec = deadline_ns / 1000000000;
    ts->tv_nsec = deadline_ns % 1000000000;
}

/* Open a connection for a slot already counted in total. */
static ck_redis_conn *open_conn(ck_redis_pool *p, uint64_t *epoch, ck_error *err)
{
    ck_redis_conn *c = p->cfg.sentinel == NULL
                           ? ck_redis_conn_new(&p->cfg, p->tls, err)
                           : ck_redis_sentinel_connect(&p->cfg, p->tls, &p->lock, &p->sentinel,
                                                       epoch, err);
    int64_t delay_ms;

    pthread_mutex_lock(&p->lock);
    if (c != NULL) {
        p->failures = 0;
        p->retry_at_ns = 0;
        pthread_mutex_unlock(&p->lock);
        return c;
    }
    p->total--;
    /* Attempts that were already under way when another one failed and
       set the backoff do not double it again: one step per round, not per
       thread, or a burst of ten callers would jump straight to the cap. */
    if (ck_now_ns() >= p->retry_at_ns) {
        p->failures++;
        delay_ms = BACKOFF_BASE_MS;
        for (unsigned i = 1; i < p->failures && delay_ms < BACKOFF_MAX_MS; i++) {
            delay_ms *= 2;
        }
        if (delay_ms > BACKOFF_MAX_MS) {
            delay_ms = BACKOFF_MAX_MS;
        }
        p->retry_at_ns = ck_deadline_ms(delay_ms);
    }
    if (err != NULL) {
        p->last_err = *err;
    }
    /* A waiter may now open a connection in the freed slot. */
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static ck_redis_conn *acquire(ck_redis_pool *p, uint64_t *epoch, ck_error *err)
{
    int64_t deadline = ck_deadline_ms(p->cfg.pool_timeout_ms);
    struct timespec ts;

    abs_deadline(deadline, &ts);
    pthread_mutex_lock(&p->lock);
    if (p->inherited != NULL) {
        idle_node *inherited = take_inherited(p);
        pthread_mutex_unlock(&p->lock);
        free_idle(inherited);
        pthread_mutex_lock(&p->lock);
    }
    if (p->cfg.sentinel != NULL) {
        ck_redis_sentinel_maybe_recheck(&p->cfg, &p->lock, &p->sentinel);
    }
    for (;;) {
        if (p->closed) {
            pthread_mutex_unlock(&p->lock);
            ck_error_set(err, CK_ECONN, "client is closed");
            return NULL;
        }
        if (p->idle != NULL) {
            idle_node *n = p->idle;
            ck_redis_conn *c = n->conn;
            int current = n->epoch == p->sentinel.epoch;

            *epoch = n->epoch;
            p->idle = n->next;
            free(n);
            pthread_mutex_unlock(&p->lock);
            if (current && !ck_redis_conn_stale(c)) {
                return c;
            }
            ck_redis_conn_free(c);
            pthread_mutex_lock(&p->lock);
            p->total--;
            continue;
        }
        if (p->total < p->cfg.pool_size) {
            int64_t now = ck_now_ns();

            if (p->failures > 0 && now < p->retry_at_ns) {
                ck_error e = p->last_err;
                int64_t wait_ms = (p->retry_at_ns - now + 999999) / 1000000;

                pthread_mutex_unlock(&p->lock);
                ck_error_set(err, e.code, "%.100s (next attempt in %lld ms)", e.msg,
                             (long long)wait_ms);
                return NULL;
            }
            p->total++;
            pthread_mutex_unlock(&p->lock);
            *epoch = 0;
            return open_conn(p, epoch, err);
        }
        if (pthread_cond_timedwait(&p->cond, &p->lock, &ts) != 0 && ck_now_ns() >= deadline) {
            pthread_mutex_unlock(&p->lock);
            ck_error_set(err, CK_ETIMEOUT, "timed out waiting for a free connection (pool of "
                                           "%zu)", p->cfg.pool_size);
            return NULL;
        }
    }
}

static void release(ck_redis_pool *p, ck_redis_conn *c, uint64_t epoch)
{
    idle_node *n = NULL;

    if (!ck_redis_conn_broken(c)) {
        n = malloc(sizeof(*n)); /* NULL: the connection is closed instead */
    }
    pthread_mutex_lock(&p->lock);
    if (n != NULL && !p->closed && epoch == p->sentinel.epoch) {
        n->conn = c;
        n->epoch = epoch;
        n->next = p->idle;
        p->idle = n;
        c = NULL;
        n = NULL;
    } else {
        p->total--;
    }
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    free(n);
    ck_redis_conn_free(c);
}

/* Exported for the cluster router, whose node pools never use Sentinel:
   their connections all carry epoch 0, the epoch of a pool without one. */
ck_redis_conn *ck_redis_pool_acquire(ck_redis_pool *p, ck_error *err)
{
    uint64_t epoch = 0;

    return acquire(p, &epoch, err);
}

void ck_redis_pool_release(ck_redis_pool *p, ck_redis_conn *c)
{
    release(p, c, 0);
}

/* -------------------------------------------------------------- operations */

static int pool_run(ck_redis_pool *p, const ck_redis_req *req, redisReply **replies, int keep,
                    ck_error *err)
{
    ck_redis_conn *c;
    uint64_t epoch = 0;
    int rc = -1, attempt;
    ck_error local;

    if (req->n == 0) {
        return 0;
    }
    if (err == NULL) {
        err = &local;
    }
    /* A second attempt only for Sentinel, after a failure a failover
       explains, on a fresh connection to the rediscovered master; not
       after a timeout, so one call waits at most one socket timeout. */
    for (attempt = 0; attempt < 2; attempt++) {
        int broken;

        c = acquire(p, &epoch, err);
        if (c == NULL) {
            memset(replies, 0, req->n * sizeof(*replies));
            return -1;
        }
        rc = keep ? ck_redis_conn_run_keep(c, req, replies, err)
                  : ck_redis_conn_run(c, req, replies, err);
        broken = ck_redis_conn_broken(c);
        release(p, c, epoch);
        if (rc == 0 || p->cfg.sentinel == NULL ||
            !ck_redis_sentinel_should_rediscover(err, broken)) {
            break;
        }
        ck_redis_sentinel_forget(&p->lock, &p->sentinel, epoch);
        if (err->code == CK_ETIMEOUT) {
            break;
        }
    }
    return rc;
}

int ck_redis_pool_run(ck_redis_pool *p, const ck_redis_req *req, redisReply **replies,
                      ck_error *err)
{
    return pool_run(p, req, replies, 0, err);
}

int ck_redis_pool_run_keep(ck_redis_pool *p, const ck_redis_req *req, redisReply **replies,
                           ck_error *err)
{
    return pool_run(p, req, replies, 1, err);
}

/* One command on connection c; *reply is the single reply. */
static int run_one(ck_redis_conn *c, int argc, const char **argv, const size_t *argvlen,
                   redisReply **reply, ck_error *err)
{
    ck_redis_req req;
    int rc = -1;

    ck_redis_req_init(&req);
    *reply = NULL;
    if (ck_redis_req_add(&req, argc, argv, argvlen, err) == 0) {
        rc = ck_redis_conn_run(c, &req, reply, err);
    }
    ck_redis_req_free(&req);
    return rc;
}

int ck_redis_pool_ping(ck_redis_pool *p, ck_error *err)
{
    const char *argv[1] = {"PING"};
    size_t argvlen[1] = {4};
    redisReply *r = NULL;
    uint64_t epoch = 0;
    ck_redis_conn *c = acquire(p, &epoch, err);
    int rc = -1;

    if (c == NULL) {
        return -1;
    }
    if (run_one(c, 1, argv, argvlen, &r, err) < 0) {
        goto done;
    }
    if (r->type != REDIS_REPLY_STATUS || r->len != 4 || memcmp(r->str, "PONG", 4) != 0) {
        ck_error_set(err, CK_EPROTO, "unexpected reply to PING");
        goto done;
    }
    rc = 0;
done:
    ck_redis_reply_free(r);
    release(p, c, epoch);
    return rc;
}

/* prefix with the glob metacharacters of SCAN MATCH escaped, then '*'. */
static char *match_pattern(const char *prefix, size_t n, size_t *len)
{
    char *pat = malloc(2 * n + 2);
    size_t i, o = 0;

    if (pat == NULL) {
        return NULL;
    }
    for (i = 0; i < n; i++) {
        if (strchr("*?[]\\", prefix[i]) != NULL && prefix[i] != '\0') {
            pat[o++] = '\\';
        }
        pat[o++] = prefix[i];
    }
    pat[o++] = '*';
    pat[o] = '\0';
    *len = o;
    return pat;
}

/* UNLINK the keys of one SCAN page; adds the count to *unlinked. */
static int unlink_page(ck_redis_conn *c, const redisReply *keys, long long *unlinked,
                       ck_error *err)
{
    const char **argv = NULL;
    size_t *argvlen = NULL, i;
    redisReply *r = NULL;
    int rc = -1;

    if (keys->elements == 0) {
        return 0;
    }
    if (keys->elements >= (size_t)0x7fffffff) {
        return ck_error_set(err, CK_EPROTO, "SCAN returned too many keys");
    }
    argv = malloc((keys->elements + 1) * sizeof(*argv));
    argvlen = malloc((keys->elements + 1) * sizeof(*argvlen));
    if (argv == NULL || argvlen == NULL) {
        ck_error_set(err, CK_ENOMEM, "out of memory");
        goto done;
    }
    argv[0] = "UNLINK";
    argvlen[0] = 6;
    for (i = 0; i < keys->elements; i++) {
        if (keys->element[i]->type != REDIS_REPLY_STRING) {
            ck_error_set(err, CK_EPROTO, "unexpected reply to SCAN");
            goto done;
        }
        argv[i + 1] = keys->element[i]->str;
        argvlen[i + 1] = keys->element[i]->len;
    }
    if (run_one(c, (int)keys->elements + 1, argv, argvlen, &r, err) < 0) {
        goto done;
    }
    if (r->type != REDIS_REPLY_INTEGER) {
        ck_error_set(err, CK_EPROTO, "unexpected reply to UNLINK");
        goto done;
    }
    *unlinked += r->integer;
    rc = 0;
done:
    ck_redis_reply_free(r);
    free(argv);
    free(argvlen);
    return rc;
}

int ck_redis_pool_clear_prefix(ck_redis_pool *p, const char *prefix, size_t n, size_t count,
                               long long *unlinked, ck_error *err)
{
    char cursor[32] = "0", countstr[24];
    size_t patlen = 0;
    char *pat = match_pattern(prefix, n, &patlen);
    ck_redis_conn *c = NULL;
    redisReply *r = NULL;
    uint64_t epoch = 0;
    int rc = -1;

    *unlinked = 0;
    if (pat == NULL) {
        return ck_error_set(err, CK_ENOMEM, "out of memory");
    }
    snprintf(countstr, sizeof(countstr), "%zu", count == 0 ? (size_t)100 : count);
    c = acquire(p, &epoch, err);
    if (c == NULL) {
        goto done;
    }
    do {
        const char *argv[6] = {"SCAN", cursor, "MATCH", pat, "COUNT", countstr};
        size_t argvlen[6] = {4, strlen(cursor), 5, patlen, 5, strlen(countstr)};

        if (run_one(c, 6, argv, argvlen, &r, err) < 0) {
            goto done;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len == 0 ||
            r->element[0]->len >= sizeof(cursor) || r->element[1]->type != REDIS_REPLY_ARRAY) {
            ck_error_set(err, CK_EPROTO, "unexpected reply to SCAN");
            goto done;
        }
        memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
        if (unlink_page(c, r->element[1], unlinked, err) < 0) {
            goto done;
        }
        ck_redis_reply_free(r);
        r = NULL;
    } while (strcmp(cursor, "0") != 0);
    rc = 0;
done:
    ck_redis_reply_free(r);
    if (c != NULL) {
        release(p, c, epoch);
    }
    free(pat);
    return rc;
}
