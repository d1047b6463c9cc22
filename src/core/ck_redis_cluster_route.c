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

/* One round for the pending commands bound for node: one pipeline. */
static int send_to_node(ck_redis_cluster *c, const ck_redis_req *req, cmd_state *st,
                        redisReply **replies, int node, int *backoff, int *refresh_wanted,
                        ck_error *err)
{
    ck_redis_req sub;
    const ck_redis_req *send = &sub;
    redisReply **got = NULL;
    size_t *which = NULL, i, k = 0, nsub = 0;
    cl_node *n = ck_cl_node_at(c, node);
    ck_error e;
    int rc = -1, whole = 1;

    if (req->out.secret) {
        ck_redis_req_init_secret(&sub);
    } else {
        ck_redis_req_init(&sub);
    }
    which = malloc(2 * req->n * sizeof(*which));
    if (which == NULL) {
        ck_error_set(err, CK_ENOMEM, "out of memory");
        goto done;
    }
    /* The common case, every command for this one node with no ASKING:
       send req itself rather than a copy. */
    for (i = 0; i < req->n && whole; i++) {
        whole = st[i].state == CMD_PENDING && st[i].node == node && !st[i].ask;
    }
    for (i = 0; i < req->n && whole; i++) {
        which[nsub++] = i;
        send = req;
    }
    for (i = 0; i < req->n && !whole; i++) {
        if (st[i].state != CMD_PENDING || st[i].node != node) {
            continue;
        }
        if (st[i].ask) {
            const char *argv[1] = {"ASKING"};
            size_t lens[1] = {6};
            if (ck_redis_req_add(&sub, 1, argv, lens, err) < 0) {
                goto done;
            }
            which[nsub++] = (size_t)-1;
        }
        if (req_copy(&sub, req, i, err) < 0) {
            goto done;
        }
        which[nsub++] = i;
    }
    if (nsub == 0) {
        rc = 0; /* nothing for this node (callers do not ask for that) */
        goto done;
    }
    got = calloc(nsub, sizeof(*got));
    if (got == NULL) {
        ck_error_set(err, CK_ENOMEM, "out of memory");
        goto done;
    }
    if (ck_redis_pool_run_keep(n->pool, send, got, &e) < 0) {
        int conn = e.code == CK_ECONN;
        for (k = 0; k < nsub; k++) {
            if (which[k] != (size_t)-1) {
                fail_cmd(&st[which[k]], &e, conn);
            }
        }
        pthread_mutex_lock(&c->lock);
        c->stats.conn_errors++;
        c->stale = 1; /* a timeout: the next run refreshes */
        pthread_mutex_unlock(&c->lock);
        *refresh_wanted |= conn;
        rc = 0;
        goto done;
    }
    for (k = 0; k < nsub; k++) {
        size_t j = which[k];
        redisReply *r = got[k];

        if (j == (size_t)-1) {
            /* ASKING's own reply: an error fails the command after it. */
            if (r->type == REDIS_REPLY_ERROR) {
                ck_redis_error_code(r, &e);
                fail_cmd(&st[which[k + 1]], &e, 0);
                st[which[k + 1]].ask = 0;
            }
            continue;
        }
        if (st[j].state != CMD_PENDING) {
            continue; /* its ASKING failed */
        }
        if (r->type == REDIS_REPLY_ERROR) {
            on_error_reply(c, &st[j], r, node, backoff);
            continue;
        }
        replies[j] = r;
        got[k] = NULL;
        st[j].state = CMD_DONE;
    }
    rc = 0;
done:
    if (got != NULL) {
        for (k = 0; k < nsub; k++) {
            ck_redis_reply_free(got[k]);
        }
    }
    free(got);
    free(which);
    ck_redis_req_free(&sub);
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
    unsigned char sent[CK_CLUSTER_MAX_NODES];
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
        /* One pipeline per node per round; a command redirected to a node
           already sent to this round waits for the next round. */
        memset(sent, 0, sizeof(sent));
        for (i = 0; i < req->n; i++) {
            int node = st[i].node;

            if (st[i].state != CMD_PENDING || node < 0 || st[i].conn || sent[node]) {
                continue;
            }
            sent[node] = 1;
            if (send_to_node(c, req, st, replies, node, &backoff, &refresh_wanted, err) < 0) {
                goto done;
            }
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
