/*
 * ck_redis_sentinel_io.c - talking to sentinels and checking masters
 * (ck_redis_sentinel.h): discovery, ROLE, and the connect path a pool takes
 * when its configuration came from a redis+sentinel:// URL.
 *
 * Every connection here is an ordinary ck_redis_conn, so the sockets have
 * deadlines and replies are read by the bounded reader. Sentinel
 * connections get a tiny reply budget (SENTINEL_MAX_REPLY bytes,
 * SENTINEL_MAX_ELEMENTS objects): the answers we want are two short
 * strings. The callers (the pool) run without the GIL.
 *
 * Locking: the cached master (ck_redis_sentinel_state) is read and written
 * under the pool's lock, in short sections that never do I/O; discovery and
 * connecting happen unlocked. Two threads may discover at the same time;
 * the later result wins, and the epoch moves only when the address really
 * changed, so connections to an unchanged master are kept.
 */
#include <stdlib.h>
#include <string.h>

#include "ck_redis_sentinel.h"
#include "ck_sock.h"

#define SENTINEL_MAX_REPLY 4096
#define SENTINEL_MAX_ELEMENTS 64
#define MAX_HOST 255

/* ------------------------------------------------------------ discovery */

/* One command on c, its reply in *out. */
static int run_one(ck_redis_conn *c, int argc, const char **argv, const size_t *argvlen,
                   redisReply **out, ck_error *err)
{
    ck_redis_req req;
    int rc = -1;

    ck_redis_req_init(&req);
    *out = NULL;
    if (ck_redis_req_add(&req, argc, argv, argvlen, err) == 0) {
        rc = ck_redis_conn_run(c, &req, out, err);
    }
    ck_redis_req_free(&req);
    return rc;
}

/* [ip, port] from GET-MASTER-ADDR-BY-NAME; 1 when found, 0 for nil (this
   sentinel does not know the service), -1 for a malformed reply. */
static int parse_addr(const redisReply *r, char **host, int *port, ck_error *err)
{
    const redisReply *h, *p;
    long v = 0;
    size_t i;

    if (r->type == REDIS_REPLY_NIL) {
        return 0;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        return ck_error_set(err, CK_EPROTO, "unexpected reply to SENTINEL "
                                            "GET-MASTER-ADDR-BY-NAME");
    }
    h = r->element[0];
    p = r->element[1];
    if (h->type != REDIS_REPLY_STRING || p->type != REDIS_REPLY_STRING || h->len == 0 ||
        h->len > MAX_HOST || memchr(h->str, '\0', h->len) != NULL || p->len == 0 ||
        p->len > 5) {
        return ck_error_set(err, CK_EPROTO, "malformed master address from a sentinel");
    }
    for (i = 0; i < p->len; i++) {
        if (p->str[i] < '0' || p->str[i] > '9') {
            return ck_error_set(err, CK_EPROTO, "malformed master address from a sentinel");
        }
        v = v * 10 + (p->str[i] - '0');
    }
    if (v < 1 || v > 65535) {
        return ck_error_set(err, CK_EPROTO, "malformed master address from a sentinel");
    }
    *host = malloc(h->len + 1);
    if (*host == NULL) {
        return ck_error_set(err, CK_ENOMEM, "out of memory");
    }
    memcpy(*host, h->str, h->len);
    (*host)[h->len] = '\0';
    *port = (int)v;
    return 1;
}

/* Ask sentinel i. 1 found, 0 not (err says why), -1 out of memory. */
static int ask_one(const ck_redis_config *cfg, const ck_redis_sentinel_cfg *sc, size_t i,
                   int64_t deadline_ns, char **host, int *port, ck_error *err)
{
    const char *argv[3] = {"SENTINEL", "GET-MASTER-ADDR-BY-NAME", sc->service};
    size_t argvlen[3] = {8, 23, strlen(sc->service)};
    int64_t left_ms = (deadline_ns - ck_now_ns()) / 1000000;
    ck_redis_config scfg;
    ck_redis_conn *c = NULL;
    redisReply *r = NULL;
    int rc = 0;

    if (left_ms <= 0) {
        ck_error_set(err, CK_ETIMEOUT, "timed out asking the sentinels");
        return 0;
    }
    /* Borrowed strings: scfg is never freed, and outlives c. */
    ck_redis_config_init(&scfg);
    scfg.host = sc->hosts[i];
    scfg.port = sc->ports[i];
    scfg.username = sc->username;
    scfg.password = sc->password;
    scfg.connect_timeout_ms = left_ms < cfg->connect_timeout_ms ? left_ms : cfg->connect_timeout_ms;
    scfg.socket_timeout_ms = left_ms < cfg->socket_timeout_ms ? left_ms : cfg->socket_timeout_ms;
    scfg.max_reply_bytes = SENTINEL_MAX_REPLY;
    scfg.max_elements = SENTINEL_MAX_ELEMENTS;
    c = ck_redis_conn_new(&scfg, NULL, err);
    if (c == NULL) {
        goto done;
    }
    if (run_one(c, 3, argv, argvlen, &r, err) < 0) {
        goto done;
    }
    rc = parse_addr(r, host, port, err);
    if (rc == 0) {
        ck_error_set(err, CK_ECONN, "no sentinel knows the service");
    } else if (rc < 0) {
        rc = err != NULL && err->code == CK_ENOMEM ? -1 : 0;
    }
done:
    ck_redis_reply_free(r);
    ck_redis_conn_free(c);
    return rc;
}

int ck_redis_sentinel_discover(const ck_redis_config *cfg, char **host, int *port,
                               ck_error *err)
{
    const ck_redis_sentinel_cfg *sc = cfg->sentinel;
    int64_t deadline = ck_deadline_ms(cfg->connect_timeout_ms + cfg->socket_timeout_ms);
    ck_error last, first_denied = {CK_OK, ""};
    int denied = 0;
    size_t i;

    *host = NULL;
    last.code = CK_ECONN;
    snprintf(last.msg, sizeof(last.msg), "no sentinel");
    for (i = 0; i < sc->n; i++) {
        int rc = ask_one(cfg, sc, i, deadline, host, port, &last);
        if (rc > 0 && *host != NULL) {
            return 0;
        }
        if (rc != 0) {
            if (err != NULL) {
                *err = last;
            }
            return -1;
        }
        if (last.code == CK_EDENIED && !denied) {
            first_denied = last;
            denied = 1;
        }
        if (last.code == CK_ETIMEOUT && ck_now_ns() >= deadline) {
            break;
        }
    }
    /* A refused password is the most useful thing to report: it will not
       fix itself. */
    if (denied) {
        return ck_error_set(err, CK_EDENIED, "Sentinel: %.130s", first_denied.msg);
    }
    return ck_error_set(err, last.code == CK_ETIMEOUT ? CK_ETIMEOUT : CK_ECONN,
                        "Sentinel: no master for the service (%.120s)", last.msg);
}

int ck_redis_sentinel_check_role(ck_redis_conn *c, ck_error *err)
{
    const char *argv[1] = {"ROLE"};
    size_t argvlen[1] = {4};
    redisReply *r = NULL;
    int rc = -1;

    if (run_one(c, 1, argv, argvlen, &r, err) < 0) {
        goto done;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_STRING) {
        ck_error_set(err, CK_EPROTO, "unexpected reply to ROLE");
        goto done;
    }
    if (r->element[0]->len != 6 || memcmp(r->element[0]->str, "master", 6) != 0) {
        ck_error_set(err, CK_ECONN, "the server Sentinel named is not a master (ROLE: %.*s)",
                     r->element[0]->len < 16 ? (int)r->element[0]->len : 16,
                     r->element[0]->str);
        goto done;
    }
    rc = 0;
done:
    ck_redis_reply_free(r);
    return rc;
}

/* ------------------------------------------------------ the pool's view */

void ck_redis_sentinel_forget(pthread_mutex_t *lock, ck_redis_sentinel_state *st,
                              uint64_t epoch)
{
    pthread_mutex_lock(lock);
    if (st->epoch == epoch) {
        st->valid = 0;
    }
    pthread_mutex_unlock(lock);
}

int ck_redis_sentinel_should_rediscover(const ck_error *err, int conn_broken)
{
    if (conn_broken || err->code == CK_ECONN || err->code == CK_ETIMEOUT) {
        return 1;
    }
    /* A demoted master answers writes with READONLY. */
    return err->code == CK_ESERVER && strstr(err->msg, ": READONLY") != NULL;
}

void ck_redis_sentinel_state_free(ck_redis_sentinel_state *st)
{
    free(st->host);
    st->host = NULL;
    st->valid = 0;
}

/* Record a discovered address; returns its epoch. Takes ownership of host. */
static uint64_t record(pthread_mutex_t *lock, ck_redis_sentinel_state *st, char *host, int port)
{
    uint64_t epoch;

    pthread_mutex_lock(lock);
    if (st->host == NULL || st->port != port || strcmp(st->host, host) != 0) {
        char *old = st->host;
        st->host = host;
        st->port = port;
        st->epoch++;
        host = old;
    }
    st->valid = 1;
    st->check_at_ns = ck_deadline_ms(CK_SENTINEL_CHECK_MS); /* a discovery is a check */
    epoch = st->epoch;
    pthread_mutex_unlock(lock);
    free(host);
    return epoch;
}

void ck_redis_sentinel_maybe_recheck(const ck_redis_config *cfg, pthread_mutex_t *lock,
                                     ck_redis_sentinel_state *st)
{
    char *host = NULL;
    int port = 0;

    /* Nothing to check without an address: the next connect discovers. */
    if (!st->valid || ck_now_ns() < st->check_at_ns) {
        return;
    }
    st->check_at_ns = ck_deadline_ms(CK_SENTINEL_CHECK_MS); /* one caller does it */
    pthread_mutex_unlock(lock);
    if (ck_redis_sentinel_discover(cfg, &host, &port, NULL) == 0 && host != NULL) {
        (void)record(lock, st, host, port);
    }
    pthread_mutex_lock(lock);
}

ck_redis_conn *ck_redis_sentinel_connect(const ck_redis_config *cfg, ck_tls_ctx *tls,
                                         pthread_mutex_t *lock, ck_redis_sentinel_state *st,
                                         uint64_t *epoch, ck_error *err)
{
    int attempt;

    for (attempt = 0; attempt < 2; attempt++) {
        char *host = NULL;
        int port = 0, fresh = 0;
        uint64_t ep = 0;
        ck_redis_conn *c;

        pthread_mutex_lock(lock);
        if (st->valid && st->host != NULL) {
            host = strdup(st->host);
            port = st->port;
            ep = st->epoch;
        }
        pthread_mutex_unlock(lock);
        if (host == NULL) {
            char *found = NULL;

            if (ck_redis_sentinel_discover(cfg, &found, &port, err) < 0) {
                return NULL;
            }
            if (found == NULL) { /* discover returns 0 only with an address */
                ck_error_set(err, CK_ECONN, "Sentinel: no master address");
                return NULL;
            }
            host = strdup(found);
            ep = record(lock, st, found, port);
            fresh = 1;
            if (host == NULL) {
                ck_error_set(err, CK_ENOMEM, "out of memory");
                return NULL;
            }
        }
        c = ck_redis_conn_new_at(cfg, host, port, tls, err);
        free(host);
        if (c != NULL && ck_redis_sentinel_check_role(c, err) == 0) {
            *epoch = ep;
            return c;
        }
        ck_redis_conn_free(c);
        if (err != NULL && err->code == CK_EDENIED) {
            return NULL; /* the master's credentials: asking again will not help */
        }
        ck_redis_sentinel_forget(lock, st, ep);
        if (fresh) {
            return NULL; /* just discovered and already failing: the caller backs off */
        }
    }
    return NULL;
}
