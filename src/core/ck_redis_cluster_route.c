/*
 * ck_redis_cluster_route.c - routing one request over the cluster's nodes
 * (ck_redis_cluster.h): one pipeline per node per round; MOVED updates the
 * map and retries on the new owner, ASK retries once on the target with
 * ASKING first, TRYAGAIN backs off, CLUSTERDOWN fails at once (and marks
 * the map stale), a connection error
 * refreshes the map and retries where the slot went. At most
 * max_redirects + 1 rounds, then what is still pending fails.
 */
#include "ck_redis_cluster_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BACKOFF_BASE_MS 5 /* TRYAGAIN: 5, 10, 20, 40, 50... ms */
#define BACKOFF_MAX_MS 50


enum { CMD_PENDING, CMD_DONE, CMD_FAILED };

typedef struct {
    int node;   /* where it goes next round; -1: no node serves its slot */
    int ask;    /* send ASKING before it */
    int state;
    int conn;   /* last failure was the connection (retry if the owner changes) */
    ck_error err;
} cmd_state;

/* Append command i of src (its RESP bytes) to dst. */
static int req_copy(ck_redis_req *dst, const ck_redis_req *src, size_t i, ck_error *err)
{
    size_t start = i == 0 ? 0 : src->ends[i - 1];

    if (dst->n == dst->cap) {
        size_t cap = dst->cap == 0 ? 8 : dst->cap * 2;
        size_t *ends = realloc(dst->ends, cap * sizeof(*ends));
        if (ends == NULL) {
            return ck_error_set(err, CK_ENOMEM, "out of memory");
        }
        dst->ends = ends;
        dst->cap = cap;
    }
    if (ck_buf_append(&dst->out, src->out.data + start, src->ends[i] - start) < 0) {
        return ck_error_set(err, CK_ENOMEM, "out of memory");
    }
    dst->ends[dst->n++] = dst->out.len;
    return 0;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts;

    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static void fail_cmd(cmd_state *st, const ck_error *e, int conn)
{
    st->state = conn ? CMD_PENDING : CMD_FAILED;
    st->conn = conn;
    st->err = *e;
}

/* Handle one error reply r to a command in state st, sent to node `node`.
   *backoff set for TRYAGAIN/CLUSTERDOWN. */
static void on_error_reply(ck_redis_cluster *c, cmd_state *st, const redisReply *r, int node,
                           int *backoff)
{
    ck_redirect rd;
    ck_error e;
    int kind, target;

    kind = ck_cluster_parse_redirect(r->str, r->len, &rd, &e);
    if (kind < 0) {
        fail_cmd(st, &e, 0);
        return;
    }
    if (kind == 0) {
        if (ck_cl_is_code(r, "CLUSTERDOWN")) {
            /* The cluster is failing over (seconds, not milliseconds):
               waiting here would only slow the caller. Fail, and let the
               next run look at a fresh map. */
            pthread_mutex_lock(&c->lock);
            c->stale = 1;
            pthread_mutex_unlock(&c->lock);
            ck_redis_error_code(r, &e);
            fail_cmd(st, &e, 0);
            return;
        }
        if (ck_cl_is_code(r, "TRYAGAIN")) {
            /* A multi-key command during a slot migration: milliseconds. */
            pthread_mutex_lock(&c->lock);
            c->stats.tryagain++;
            pthread_mutex_unlock(&c->lock);
            ck_redis_error_code(r, &st->err);
            st->ask = 0;
            *backoff = 1;
            return; /* stays pending, same node */
        }
        ck_redis_error_code(r, &e);
        fail_cmd(st, &e, 0);
        return;
    }
    if (rd.host[0] != '\0') {
        target = ck_cl_node_index(c, rd.host, rd.port, &e);
    } else {
        cl_node *n = ck_cl_node_at(c, node);
        target = ck_cl_node_index(c, n->ep.host, rd.port, &e);
    }
    if (target < 0) {
        fail_cmd(st, &e, 0);
        return;
    }
    pthread_mutex_lock(&c->lock);
    if (rd.kind == CK_REDIRECT_MOVED) {
        c->map[rd.slot] = (int16_t)target;
        c->stats.moved++;
    } else {
        c->stats.ask++;
    }
    pthread_mutex_unlock(&c->lock);
    ck_error_set(&st->err, CK_EPROTO, "cluster: more than %d redirects", c->max_redirects);
    st->node = target;
    st->ask = rd.kind == CK_REDIRECT_ASK;
}

/* The pipeline of one node in one round. */
typedef struct {
    int node;
    ck_redis_req sub;          /* the commands (a copy, with ASKING where asked) */
    const ck_redis_req *send;  /* &sub, or the caller's req when it is all for node */
    size_t *which, nsub;       /* which[k]: command of reply k, (size_t)-1 for ASKING */
    redisReply **got;
    ck_redis_pool *pool;
    ck_redis_conn *conn;       /* parallel exchange: the connection in use */
    int failed;                /* the exchange failed with e */
    ck_error e;
} group;

static void group_free(group *g)
{
    size_t k;

    if (g->got != NULL) {
        for (k = 0; k < g->nsub; k++) {
            ck_redis_reply_free(g->got[k]);
        }
    }
    free(g->got);
    free(g->which);
    ck_redis_req_free(&g->sub);
    if (g->conn != NULL) {
        ck_redis_pool_release(g->pool, g->conn);
    }
    memset(g, 0, sizeof(*g));
}

/* Collect the pending commands bound for node into g. */
static int group_build(ck_redis_cluster *c, const ck_redis_req *req, const cmd_state *st,
                       int node, group *g, ck_error *err)
{
    size_t i;
    int whole = 1;

    memset(g, 0, sizeof(*g));
    g->node = node;
    g->pool = ck_cl_node_at(c, node)->pool;
    g->send = &g->sub;
    if (req->out.secret) {
        ck_redis_req_init_secret(&g->sub);
    } else {
        ck_redis_req_init(&g->sub);
    }
    g->which = malloc(2 * req->n * sizeof(*g->which));
    if (g->which == NULL) {
        return ck_error_set(err, CK_ENOMEM, "out of memory");
    }
    /* The common case, every command for this one node with no ASKING:
       send req itself rather than a copy. */
    for (i = 0; i < req->n && whole; i++) {
        whole = st[i].state == CMD_PENDING && st[i].node == node && !st[i].ask;
    }
    for (i = 0; i < req->n && whole; i++) {
        g->which[g->nsub++] = i;
        g->send = req;
    }
    for (i = 0; i < req->n && !whole; i++) {
        if (st[i].state != CMD_PENDING || st[i].node != node) {
            continue;
        }
        if (st[i].ask) {
            const char *argv[1] = {"ASKING"};
            size_t lens[1] = {6};
            if (ck_redis_req_add(&g->sub, 1, argv, lens, err) < 0) {
                return -1;
            }
            g->which[g->nsub++] = (size_t)-1;
        }
        if (req_copy(&g->sub, req, i, err) < 0) {
            return -1;
        }
        g->which[g->nsub++] = i;
    }
    if (g->nsub == 0) {
        return ck_error_set(err, CK_EINVAL, "cluster: an empty pipeline");
    }
    g->got = calloc(g->nsub, sizeof(*g->got));
    if (g->got == NULL) {
        return ck_error_set(err, CK_ENOMEM, "out of memory");
    }
    return 0;
}

/* Several nodes at once: write every node's pipeline, then read them, so a
   round costs about one round trip rather than one per node. */
static void exchange_parallel(group *groups, size_t ng)
{
    size_t gi, k;

    for (gi = 0; gi < ng; gi++) {
        group *g = &groups[gi];

        g->conn = ck_redis_pool_acquire(g->pool, &g->e);
        if (g->conn == NULL || ck_redis_conn_send(g->conn, g->send, &g->e) < 0) {
            g->failed = 1;
        }
    }
    for (gi = 0; gi < ng; gi++) {
        group *g = &groups[gi];

        for (k = 0; k < g->nsub && !g->failed; k++) {
            if (ck_redis_conn_read(g->conn, &g->got[k], &g->e) < 0) {
                g->failed = 1; /* the connection is broken: release closes it */
            }
        }
        if (g->conn != NULL) {
            ck_redis_pool_release(g->pool, g->conn);
            g->conn = NULL;
        }
    }
}

/* Apply g's replies (or its failure) to the commands' states. */
static void group_finish(ck_redis_cluster *c, group *g, cmd_state *st, redisReply **replies,
                         int *backoff, int *refresh_wanted)
{
    size_t k;
    ck_error e;

    if (g->failed) {
        int conn = g->e.code == CK_ECONN;
        for (k = 0; k < g->nsub; k++) {
            if (g->which[k] != (size_t)-1) {
                fail_cmd(&st[g->which[k]], &g->e, conn);
            }
        }
        pthread_mutex_lock(&c->lock);
        c->stats.conn_errors++;
        c->stale = 1; /* a timeout: the next run refreshes */
        pthread_mutex_unlock(&c->lock);
        *refresh_wanted |= conn;
        return;
    }
    for (k = 0; k < g->nsub; k++) {
        size_t j = g->which[k];
        redisReply *r = g->got[k];

        if (j == (size_t)-1) {
            /* ASKING's own reply: an error fails the command after it. */
            if (r->type == REDIS_REPLY_ERROR) {
                ck_redis_error_code(r, &e);
                fail_cmd(&st[g->which[k + 1]], &e, 0);
                st[g->which[k + 1]].ask = 0;
            }
            continue;
        }
        if (st[j].state != CMD_PENDING) {
            continue; /* its ASKING failed */
        }
        if (r->type == REDIS_REPLY_ERROR) {
            on_error_reply(c, &st[j], r, g->node, backoff);
            continue;
        }
        replies[j] = r;
        g->got[k] = NULL;
        st[j].state = CMD_DONE;
    }
}

/* One round: a pipeline per node that has pending commands (a command
   redirected to a node already sent to waits for the next round). */
static int send_round(ck_redis_cluster *c, const ck_redis_req *req, cmd_state *st,
                      redisReply **replies, int *backoff, int *refresh_wanted, ck_error *err)
{
    unsigned char seen[CK_CLUSTER_MAX_NODES];
    group one, *groups = &one;
    size_t i, ng = 0, built = 0;
    int rc = -1;

    memset(seen, 0, sizeof(seen));
    for (i = 0; i < req->n; i++) {
        int node = st[i].node;
        if (st[i].state == CMD_PENDING && node >= 0 && !st[i].conn && !seen[node]) {
            seen[node] = 1;
            ng++;
        }
    }
    if (ng == 0) {
        return 0;
    }
    if (ng > 1) {
        groups = calloc(ng, sizeof(*groups));
        if (groups == NULL) {
            return ck_error_set(err, CK_ENOMEM, "out of memory");
        }
    }
    memset(seen, 0, sizeof(seen));
    for (i = 0; i < req->n && built < ng; i++) {
        int node = st[i].node;
        if (st[i].state != CMD_PENDING || node < 0 || st[i].conn || seen[node]) {
            continue;
        }
        seen[node] = 1;
        if (group_build(c, req, st, node, &groups[built++], err) < 0) {
            goto done;
        }
    }
    ng = built; /* the same commands as counted above */
    if (ng == 0) {
        rc = 0;
        goto done;
    }
    if (ng == 1) {
        groups[0].failed =
            ck_redis_pool_run_keep(groups[0].pool, groups[0].send, groups[0].got, &groups[0].e) < 0;
    } else {
        exchange_parallel(groups, ng);
    }
    for (i = 0; i < ng; i++) {
        group_finish(c, &groups[i], st, replies, backoff, refresh_wanted);
    }
    rc = 0;
done:
    for (i = 0; i < built; i++) {
        group_free(&groups[i]);
    }
    if (groups != &one) {
        free(groups);
    }
    return rc;
}

/* Route every pending command by the map (commands redirected by ASK keep
   their target; connection failures move only when the owner changed). */
static void route(ck_redis_cluster *c, const unsigned *slots, cmd_state *st, size_t n, int initial)
{
    size_t i;

    pthread_mutex_lock(&c->lock);
    for (i = 0; i < n; i++) {
        int owner;

        if (st[i].state != CMD_PENDING) {
            continue;
        }
        owner = slots[i] < CK_CLUSTER_SLOTS ? c->map[slots[i]] : -1;
        if (initial) {
            st[i].node = owner;
        } else if (st[i].conn) {
            if (owner < 0 || owner == st[i].node) {
                st[i].state = CMD_FAILED; /* nowhere else to go */
            } else {
                st[i].node = owner;
                st[i].ask = 0;
            }
            st[i].conn = 0;
        }
    }
    pthread_mutex_unlock(&c->lock);
}

int ck_redis_cluster_run(ck_redis_cluster *c, const ck_redis_req *req, const unsigned *slots,
                         redisReply **replies, ck_error *err)
{
    cmd_state *st = NULL;
    size_t i, pending;
    int round, rc = -1;

    if (req->n == 0) {
        return 0;
    }
    memset(replies, 0, req->n * sizeof(*replies));
    if (ck_cl_ensure_map(c, err) < 0) {
        return -1;
    }
    st = calloc(req->n, sizeof(*st));
    if (st == NULL) {
        return ck_error_set(err, CK_ENOMEM, "out of memory");
    }
    route(c, slots, st, req->n, 1);
    for (round = 0;; round++) {
        int backoff = 0, refresh_wanted = 0;

        pending = 0;
        for (i = 0; i < req->n; i++) {
            if (st[i].state == CMD_PENDING && st[i].node < 0) {
                ck_error_set(&st[i].err, CK_ESERVER, "cluster: no node serves slot %u",
                             slots[i]);
                st[i].conn = 1; /* a refresh may find one */
                refresh_wanted = 1;
            }
            pending += st[i].state == CMD_PENDING && st[i].node >= 0;
        }
        if (pending == 0 && !refresh_wanted) {
            break;
        }
        if (round > c->max_redirects) {
            for (i = 0; i < req->n; i++) {
                if (st[i].state == CMD_PENDING) {
                    st[i].state = CMD_FAILED;
                }
            }
            break;
        }
        if (send_round(c, req, st, replies, &backoff, &refresh_wanted, err) < 0) {
            goto done;
        }
        if (refresh_wanted) {
            ck_error ignored;
            (void)ck_cl_refresh(c, 0, &ignored);
            route(c, slots, st, req->n, 0);
        }
        if (backoff) {
            int64_t ms = BACKOFF_BASE_MS << (round < 5 ? round : 5);
            sleep_ms(ms < BACKOFF_MAX_MS ? ms : BACKOFF_MAX_MS);
        }
    }
    for (i = 0; i < req->n; i++) {
        if (st[i].state != CMD_DONE) {
            *err = st[i].err;
            goto done;
        }
    }
    rc = 0;
done:
    if (rc < 0) {
        for (i = 0; i < req->n; i++) {
            ck_redis_reply_free(replies[i]);
            replies[i] = NULL;
        }
    }
    free(st);
    return rc;
}
