/*
 * ck_redis_track.c - see ck_redis_track.h.
 *
 * The thread: connect, CLIENT ID, CLIENT TRACKING ... BCAST, SUBSCRIBE;
 * flush; then wait for bytes in slices of POLL_MS (so stop is seen within
 * one slice), dispatching each pushed message. Idle for PING_IDLE_MS, it
 * sends a PING (allowed while subscribed; the reply is ["pong", ""]); no
 * pong within the socket timeout means the server is gone. Any failure:
 * flush, close, back off, start again.
 */
#include "ck_redis_track.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ck_sock.h"

#define POLL_MS 100
#define PING_IDLE_MS 1000
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 5000
#define CHANNEL "__redis__:invalidate"

struct ck_redis_track {
    ck_redis_config cfg;
    ck_tls_ctx *tls;
    char **prefixes;
    size_t *prefix_lens;
    size_t n_prefixes;
    ck_redis_track_fn fn;
    void *ctx;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    long long id;
    uint64_t connects;
};

static int stopping(ck_redis_track *t)
{
    int s;

    pthread_mutex_lock(&t->mu);
    s = t->stop;
    pthread_mutex_unlock(&t->mu);
    return s;
}

/* Sleep ms unless stopped first; returns the stop flag. */
static int nap(ck_redis_track *t, int ms)
{
    struct timespec ts;
    int s;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&t->mu);
    while (!t->stop) {
        if (pthread_cond_timedwait(&t->cv, &t->mu, &ts) == ETIMEDOUT) {
            break;
        }
    }
    s = t->stop;
    pthread_mutex_unlock(&t->mu);
    return s;
}

static void set_id(ck_redis_track *t, long long id)
{
    pthread_mutex_lock(&t->mu);
    t->id = id;
    if (id != 0) {
        t->connects++;
    }
    pthread_mutex_unlock(&t->mu);
}

/* CLIENT ID, CLIENT TRACKING, SUBSCRIBE. The id, or 0 on failure. */
static long long subscribe(ck_redis_track *t, ck_redis_conn *c)
{
    ck_redis_req req;
    redisReply *reply = NULL;
    const char *argv[2] = {"CLIENT", "ID"};
    size_t lens[2] = {6, 2};
    const char **targv = NULL;
    size_t *tlens = NULL;
    char idbuf[32];
    long long id = 0;
    size_t i, argc = 6 + 2 * t->n_prefixes;
    ck_error err;

    ck_redis_req_init(&req);
    if (ck_redis_req_add(&req, 2, argv, lens, &err) < 0 ||
        ck_redis_conn_run(c, &req, &reply, &err) < 0 || reply->type != REDIS_REPLY_INTEGER ||
        reply->integer <= 0) {
        goto error;
    }
    id = reply->integer;
    ck_redis_reply_free(reply);
    reply = NULL;
    ck_redis_req_free(&req);
    ck_redis_req_init(&req);
    targv = malloc(argc * sizeof(*targv));
    tlens = malloc(argc * sizeof(*tlens));
    if (targv == NULL || tlens == NULL) {
        goto error;
    }
    snprintf(idbuf, sizeof(idbuf), "%lld", id);
    targv[0] = "CLIENT";
    targv[1] = "TRACKING";
    targv[2] = "on";
    targv[3] = "REDIRECT";
    targv[4] = idbuf;
    targv[5] = "BCAST";
    for (i = 0; i < t->n_prefixes; i++) {
        targv[6 + 2 * i] = "PREFIX";
        targv[7 + 2 * i] = t->prefixes[i];
        tlens[6 + 2 * i] = 6;
        tlens[7 + 2 * i] = t->prefix_lens[i];
    }
    for (i = 0; i < 6; i++) {
        tlens[i] = strlen(targv[i]);
    }
    if (ck_redis_req_add(&req, (int)argc, targv, tlens, &err) < 0 ||
        ck_redis_conn_run(c, &req, &reply, &err) < 0 || reply->type != REDIS_REPLY_STATUS) {
        goto error;
    }
    ck_redis_reply_free(reply);
    reply = NULL;
    ck_redis_req_free(&req);
    ck_redis_req_init(&req);
    argv[0] = "SUBSCRIBE";
    argv[1] = CHANNEL;
    lens[0] = 9;
    lens[1] = sizeof(CHANNEL) - 1;
    if (ck_redis_req_add(&req, 2, argv, lens, &err) < 0 ||
        ck_redis_conn_run(c, &req, &reply, &err) < 0 || reply->type != REDIS_REPLY_ARRAY ||
        reply->elements != 3) {
        goto error;
    }
    ck_redis_reply_free(reply);
    ck_redis_req_free(&req);
    free(targv);
    free(tlens);
    return id;
error:
    ck_redis_reply_free(reply);
    ck_redis_req_free(&req);
    free(targv);
    free(tlens);
    return 0;
}

static int is_str(const redisReply *r, const char *s)
{
    size_t n = strlen(s);

    return r != NULL && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) &&
           r->len == n && memcmp(r->str, s, n) == 0;
}

/* One pushed message. 1 it was a pong, 0 otherwise, -1 not ours. */
static int dispatch(ck_redis_track *t, const redisReply *r)
{
    const redisReply *keys;
    size_t i;

    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2) {
        return -1;
    }
    if (is_str(r->element[0], "pong")) {
        return 1;
    }
    if (r->elements != 3 || !is_str(r->element[0], "message") ||
        !is_str(r->element[1], CHANNEL)) {
        return 0; /* (un)subscribe confirmations and the like */
    }
    keys = r->element[2];
    if (keys->type == REDIS_REPLY_NIL) {
        t->fn(t->ctx, NULL, 0);
    } else if (keys->type == REDIS_REPLY_ARRAY) {
        for (i = 0; i < keys->elements; i++) {
            if (keys->element[i]->type == REDIS_REPLY_STRING) {
                t->fn(t->ctx, keys->element[i]->str, keys->element[i]->len);
            }
        }
    } else if (keys->type == REDIS_REPLY_STRING) {
        t->fn(t->ctx, keys->str, keys->len);
    } else {
        return -1;
    }
    return 0;
}

/* Serve one subscribed connection until it fails or stop is set. */
static void serve(ck_redis_track *t, ck_redis_conn *c)
{
    ck_redis_req ping;
    const char *argv[1] = {"PING"};
    size_t lens[1] = {4};
    int64_t idle_since = ck_now_ns(), ping_sent = 0;
    int64_t timeout_ns = t->cfg.socket_timeout_ms * 1000000LL;
    ck_error err;

    ck_redis_req_init(&ping);
    if (ck_redis_req_add(&ping, 1, argv, lens, &err) < 0) {
        goto done;
    }
    while (!stopping(t)) {
        redisReply *r = NULL;
        int rc = ck_redis_conn_wait(c, POLL_MS), kind;
        int64_t now = ck_now_ns();

        if (rc < 0) {
            break;
        }
        if (rc == 0) {
            if (ping_sent != 0 && now - ping_sent > timeout_ns) {
                break; /* no pong: the server or the path is gone */
            }
            if (ping_sent == 0 && now - idle_since > PING_IDLE_MS * 1000000LL) {
                if (ck_redis_conn_send(c, &ping, &err) < 0) {
                    break;
                }
                ping_sent = now;
            }
            continue;
        }
        if (ck_redis_conn_read(c, &r, &err) < 0) {
            break;
        }
        kind = dispatch(t, r);
        ck_redis_reply_free(r);
        if (kind < 0) {
            break;
        }
        if (kind == 1) {
            ping_sent = 0;
        }
        idle_since = ck_now_ns();
    }
done:
    ck_redis_req_free(&ping);
}

static void *run(void *arg)
{
    ck_redis_track *t = arg;
    int backoff = BACKOFF_MIN_MS;

    while (!stopping(t)) {
        ck_error err;
        ck_redis_conn *c = ck_redis_conn_new(&t->cfg, t->tls, &err);
        long long id = c != NULL ? subscribe(t, c) : 0;

        if (id != 0) {
            set_id(t, id);
            /* Anything cached before now may have missed an invalidation. */
            t->fn(t->ctx, NULL, 0);
            backoff = BACKOFF_MIN_MS;
            serve(t, c);
            set_id(t, 0);
            t->fn(t->ctx, NULL, 0);
        }
        if (c != NULL) {
            ck_redis_conn_free(c);
        }
        if (nap(t, backoff)) {
            break;
        }
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
    return NULL;
}

static void track_free_fields(ck_redis_track *t)
{
    size_t i;

    for (i = 0; i < t->n_prefixes; i++) {
        free(t->prefixes[i]);
    }
    free(t->prefixes);
    free(t->prefix_lens);
    ck_tls_ctx_free(t->tls);
    ck_redis_config_free(&t->cfg);
}

ck_redis_track *ck_redis_track_new(const ck_redis_config *cfg, const char *const *prefixes,
                                   const size_t *prefix_lens, size_t n_prefixes,
                                   ck_redis_track_fn fn, void *ctx, ck_error *err)
{
    ck_redis_track *t = calloc(1, sizeof(*t));
    size_t i;

    if (t == NULL) {
        ck_error_set(err, CK_ENOMEM, "out of memory");
        return NULL;
    }
    ck_redis_config_init(&t->cfg);
    if (ck_redis_config_copy(&t->cfg, cfg, err) < 0) {
        goto error;
    }
    if (t->cfg.tls) {
        t->tls = ck_tls_ctx_new(t->cfg.ca_file, t->cfg.cert_file, t->cfg.key_file, err);
        if (t->tls == NULL) {
            goto error;
        }
    }
    if (n_prefixes > 0) {
        t->prefixes = calloc(n_prefixes, sizeof(*t->prefixes));
        t->prefix_lens = calloc(n_prefixes, sizeof(*t->prefix_lens));
        if (t->prefixes == NULL || t->prefix_lens == NULL) {
            ck_error_set(err, CK_ENOMEM, "out of memory");
            goto error;
        }
        for (i = 0; i < n_prefixes; i++) {
            t->prefixes[i] = malloc(prefix_lens[i] + 1);
            if (t->prefixes[i] == NULL) {
                ck_error_set(err, CK_ENOMEM, "out of memory");
                goto error;
            }
            memcpy(t->prefixes[i], prefixes[i], prefix_lens[i]);
            t->prefixes[i][prefix_lens[i]] = '\0';
            t->prefix_lens[i] = prefix_lens[i];
            t->n_prefixes = i + 1;
        }
    }
    t->fn = fn;
    t->ctx = ctx;
    if (pthread_mutex_init(&t->mu, NULL) != 0) {
        ck_error_set(err, CK_ENOMEM, "cannot create a mutex");
        goto error;
    }
    if (pthread_cond_init(&t->cv, NULL) != 0) {
        pthread_mutex_destroy(&t->mu);
        ck_error_set(err, CK_ENOMEM, "cannot create a condition variable");
        goto error;
    }
    if (pthread_create(&t->thread, NULL, run, t) != 0) {
        pthread_cond_destroy(&t->cv);
        pthread_mutex_destroy(&t->mu);
        ck_error_set(err, CK_ENOMEM, "cannot start the tracking thread");
        goto error;
    }
    return t;
error:
    track_free_fields(t);
    free(t);
    return NULL;
}

long long ck_redis_track_id(ck_redis_track *t, uint64_t *connects)
{
    long long id;

    pthread_mutex_lock(&t->mu);
    id = t->id;
    if (connects != NULL) {
        *connects = t->connects;
    }
    pthread_mutex_unlock(&t->mu);
    return id;
}

void ck_redis_track_free(ck_redis_track *t)
{
    if (t == NULL) {
        return;
    }
    pthread_mutex_lock(&t->mu);
    t->stop = 1;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->thread, NULL);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    track_free_fields(t);
    free(t);
}
