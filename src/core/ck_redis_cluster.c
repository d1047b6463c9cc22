/*
 * ck_redis_cluster.c - nodes and the slot map (ck_redis_cluster.h); routing
 * a request is ck_redis_cluster_route.c.
 *
 * State (under `lock`):
 *   nodes[0..nnodes)  every endpoint met so far (seeds, CLUSTER SLOTS,
 *                     redirects), each with its own ck_redis_pool. Nodes
 *                     are never removed while the cluster lives, so a node
 *                     pointer read under the lock stays valid without it.
 *   map[slot]         index of the node serving slot, or -1
 *   have_map          a CLUSTER SLOTS reply (or standalone detection) has
 *                     filled the map at least once
 *   stale             a connection error asked for a refresh; the next run
 *                     does it (at most once per REFRESH_MIN_MS)
 *   refreshing        a thread is asking CLUSTER SLOTS now; others keep
 *                     using the map they have
 *
 * A run resolves every command's node under the lock once, then sends one
 * pipeline per node without it (ck_redis_pool_run_keep: error replies come
 * back as replies). Redirected, retried and failed commands are tracked per
 * command (cmd_state); each round sends only what is still pending.
 *
 * Fork: the lock is only ever held for a few memory operations, never
 * across I/O; an atfork handler still takes every cluster's lock around
 * fork() so a child never inherits it held. The pools handle their own
 * connections across fork (ck_redis_pool.c).
 */
#include "ck_redis_cluster_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ck_sock.h"

#define REFRESH_MIN_MS 50  /* between two refreshes asked for by errors */
#define REFRESH_TRIES 6    /* nodes asked for CLUSTER SLOTS in one refresh */

/* ------------------------------------------------------------------- fork */

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static ck_redis_cluster *registry;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static int atfork_rc = -1;

static void on_prepare(void)
{
    ck_redis_cluster *c;

    pthread_mutex_lock(&registry_lock);
    for (c = registry; c != NULL; c = c->reg_next) {
        pthread_mutex_lock(&c->lock);
    }
}

static void on_release(void)
{
    ck_redis_cluster *c;

    for (c = registry; c != NULL; c = c->reg_next) {
        pthread_mutex_unlock(&c->lock);
    }
    pthread_mutex_unlock(&registry_lock);
}

static void register_atfork(void)
{
    atfork_rc = pthread_atfork(on_prepare, on_release, on_release);
}

/* ---------------------------------------------------------------- nodes */

/* Index of host:port in nodes (under lock), or -1. */
static int find_node(const ck_redis_cluster *c, const char *host, int port)
{
    size_t i;

    for (i = 0; i < c->nnodes; i++) {
        if (c->nodes[i]->ep.port == port && strcmp(c->nodes[i]->ep.host, host) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static cl_node *node_create(const ck_redis_cluster *c, const char *host, int port,
                            ck_error *err)
{
    ck_redis_config cfg;
    cl_node *n = calloc(1, sizeof(*n));

    if (n == NULL) {
        ck_error_set(err, CK_ENOMEM, "out of memory");
        return NULL;
    }
    snprintf(n->ep.host, sizeof(n->ep.host), "%s", host);
    n->ep.port = port;
    if (ck_redis_config_copy(&cfg, &c->cfg, err) < 0) {
        free(n);
        return NULL;
    }
    if (ck_redis_config_set(&cfg.host, host, strlen(host), err) == 0) {
        cfg.port = port;
        n->pool = ck_redis_pool_new(&cfg, err);
    }
    ck_redis_config_free(&cfg);
    if (n->pool == NULL) {
        free(n);
        return NULL;
    }
    return n;
}

static void node_free(cl_node *n)
{
    if (n != NULL) {
        ck_redis_pool_free(n->pool);
        free(n);
    }
}

/* The index of host:port, added when new (its pool is created outside the
   lock). Called without the lock. -1 with err when the table is full. */
int ck_cl_node_index(ck_redis_cluster *c, const char *host, int port, ck_error *err)
{
    cl_node *fresh;
    int idx;

    pthread_mutex_lock(&c->lock);
    idx = find_node(c, host, port);
    pthread_mutex_unlock(&c->lock);
    if (idx >= 0) {
        return idx;
    }
    fresh = node_create(c, host, port, err);
    if (fresh == NULL) {
        return -1;
    }
    pthread_mutex_lock(&c->lock);
    idx = find_node(c, host, port); /* another thread may have added it */
    if (idx < 0 && c->nnodes < CK_CLUSTER_MAX_NODES && !c->closed) {
        idx = (int)c->nnodes;
        c->nodes[c->nnodes++] = fresh;
        fresh = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    node_free(fresh);
    if (idx < 0) {
        ck_error_set(err, CK_ELIMIT, "cluster: more than %d node endpoints (or closed)",
                     CK_CLUSTER_MAX_NODES);
    }
    return idx;
}

cl_node *ck_cl_node_at(ck_redis_cluster *c, int idx)
{
    cl_node *n;

    pthread_mutex_lock(&c->lock);
    n = c->nodes[idx];
    pthread_mutex_unlock(&c->lock);
    return n;
}

/* ------------------------------------------------------------- lifecycle */

ck_redis_cluster *ck_redis_cluster_new(const ck_redis_config *cfg, const ck_cluster_seed *seeds,
                                       size_t nseeds, int max_redirects, ck_error *err)
{
    ck_redis_cluster *c;
    size_t i;

    if (nseeds == 0 || nseeds > 64 || max_redirects < 1 || max_redirects > 100) {
        ck_error_set(err, CK_EINVAL, "cluster: 1 to 64 seed nodes, max_redirects 1 to 100");
        return NULL;
    }
    if (cfg->unix_path != NULL || cfg->db != 0) {
        ck_error_set(err, CK_EINVAL, "cluster: TCP endpoints and database 0 only");
        return NULL;
    }
    if (pthread_once(&atfork_once, register_atfork) != 0 || atfork_rc != 0) {
        ck_error_set(err, CK_ENOMEM, "cannot register the cluster's fork handlers");
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        ck_error_set(err, CK_ENOMEM, "out of memory");
        return NULL;
    }
    if (ck_redis_config_copy(&c->cfg, cfg, err) < 0) {
        free(c);
        return NULL;
    }
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        ck_redis_config_free(&c->cfg);
        free(c);
        ck_error_set(err, CK_ENOMEM, "cannot create the cluster's lock");
        return NULL;
    }
    c->max_redirects = max_redirects;
    for (i = 0; i < CK_CLUSTER_SLOTS; i++) {
        c->map[i] = -1;
    }
    for (i = 0; i < nseeds; i++) {
        if (find_node(c, seeds[i].host, seeds[i].port) >= 0) {
            continue; /* the same seed twice */
        }
        c->nodes[c->nnodes] = node_create(c, seeds[i].host, seeds[i].port, err);
        if (c->nodes[c->nnodes] == NULL) {
            goto error;
        }
        c->nnodes++;
    }
    c->nseeds = c->nnodes;
    pthread_mutex_lock(&registry_lock);
    c->reg_next = registry;
    if (registry != NULL) {
        registry->reg_prev = c;
    }
    registry = c;
    pthread_mutex_unlock(&registry_lock);
    return c;
error:
    for (i = 0; i < c->nnodes; i++) {
        node_free(c->nodes[i]);
    }
    pthread_mutex_destroy(&c->lock);
    ck_redis_config_free(&c->cfg);
    free(c);
    return NULL;
}

void ck_redis_cluster_close(ck_redis_cluster *c)
{
    size_t i, n;

    pthread_mutex_lock(&c->lock);
    c->closed = 1;
    n = c->nnodes;
    pthread_mutex_unlock(&c->lock);
    for (i = 0; i < n; i++) {
        ck_redis_pool_close(ck_cl_node_at(c, (int)i)->pool);
    }
}

void ck_redis_cluster_free(ck_redis_cluster *c)
{
    size_t i;

    if (c == NULL) {
        return;
    }
    pthread_mutex_lock(&registry_lock);
    if (c->reg_prev != NULL) {
        c->reg_prev->reg_next = c->reg_next;
    } else {
        registry = c->reg_next;
    }
    if (c->reg_next != NULL) {
        c->reg_next->reg_prev = c->reg_prev;
    }
    pthread_mutex_unlock(&registry_lock);
    for (i = 0; i < c->nnodes; i++) {
        node_free(c->nodes[i]);
    }
    pthread_mutex_destroy(&c->lock);
    ck_redis_config_free(&c->cfg);
    free(c);
}

/* -------------------------------------------------------------- the map */

int ck_cl_is_code(const redisReply *r, const char *code)
{
    size_t n = strlen(code);

    return r->type == REDIS_REPLY_ERROR && r->len >= n && memcmp(r->str, code, n) == 0 &&
           (r->len == n || r->str[n] == ' ');
}

/* Ask node idx for CLUSTER SLOTS and build *map. 1: a map; 0: the node has
   no cluster support (a single server); -1: failed. */
static int ask_slots(ck_redis_cluster *c, int idx, int16_t *map, ck_error *err)
{
    const char *argv[2] = {"CLUSTER", "SLOTS"};
    size_t lens[2] = {7, 5}, count = 0, i;
    ck_slot_range *ranges = NULL;
    redisReply *r = NULL;
    ck_redis_req req;
    cl_node *n = ck_cl_node_at(c, idx);
    int rc = -1;

    ck_redis_req_init(&req);
    if (ck_redis_req_add(&req, 2, argv, lens, err) < 0 ||
        ck_redis_pool_run_keep(n->pool, &req, &r, err) < 0) {
        goto done;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        /* "ERR This instance has cluster support disabled" */
        if (ck_cl_is_code(r, "ERR") && r->len < 200 && strstr(r->str, "cluster support disabled")) {
            rc = 0;
        } else {
            ck_redis_error_code(r, err);
        }
        goto done;
    }
    if (ck_cluster_parse_slots(r, &ranges, &count, err) < 0) {
        goto done;
    }
    for (i = 0; i < CK_CLUSTER_SLOTS; i++) {
        map[i] = -1;
    }
    for (i = 0; i < count; i++) {
        const char *host = ranges[i].host[0] != '\0' ? ranges[i].host : n->ep.host;
        int owner = ck_cl_node_index(c, host, ranges[i].port, err);
        unsigned s;

        if (owner < 0) {
            goto done;
        }
        for (s = ranges[i].start; s <= ranges[i].end; s++) {
            map[s] = (int16_t)owner;
        }
    }
    if (count == 0) {
        ck_error_set(err, CK_ESERVER, "cluster: CLUSTER SLOTS lists no slot");
        goto done;
    }
    rc = 1;
done:
    free(ranges);
    ck_redis_reply_free(r);
    ck_redis_req_free(&req);
    return rc;
}

/* Refresh the map. force: even within REFRESH_MIN_MS of the last one, and
   even while another thread refreshes. 0, or -1 when no node answered. */
int ck_cl_refresh(ck_redis_cluster *c, int force, ck_error *err)
{
    int16_t *map = malloc(sizeof(c->map));
    size_t nnodes, tries, i;
    unsigned start;
    int rc = -1, got = -1, standalone_idx = -1;
    int64_t now = ck_now_ns();

    if (map == NULL) {
        return ck_error_set(err, CK_ENOMEM, "out of memory");
    }
    pthread_mutex_lock(&c->lock);
    if (!force && (c->refreshing || now - c->last_refresh_ns < REFRESH_MIN_MS * 1000000LL)) {
        pthread_mutex_unlock(&c->lock);
        free(map);
        return 0;
    }
    c->refreshing = 1;
    c->last_refresh_ns = now;
    nnodes = c->nnodes;
    start = c->rotate++;
    pthread_mutex_unlock(&c->lock);

    ck_error_set(err, CK_ECONN, "cluster: no node to ask for the slot map");
    tries = nnodes < REFRESH_TRIES ? nnodes : REFRESH_TRIES;
    for (i = 0; i < tries && got != 1; i++) {
        int idx = (int)((start + i) % nnodes);

        got = ask_slots(c, idx, map, err);
        if (got == 0) {
            /* Only a seed may make this a single server: a node named by
               a cluster that then says "no cluster" is a broken cluster. */
            if ((size_t)idx < c->nseeds) {
                standalone_idx = idx;
                break;
            }
            ck_error_set(err, CK_ESERVER, "cluster: a node has cluster support disabled");
        }
    }
    pthread_mutex_lock(&c->lock);
    c->refreshing = 0;
    c->stats.refreshes++;
    if (got == 1) {
        memcpy(c->map, map, sizeof(c->map));
        c->have_map = 1;
        c->stale = 0;
        c->standalone = 0;
        rc = 0;
    } else if (standalone_idx >= 0) {
        for (i = 0; i < CK_CLUSTER_SLOTS; i++) {
            c->map[i] = (int16_t)standalone_idx;
        }
        c->have_map = 1;
        c->stale = 0;
        c->standalone = 1;
        rc = 0;
    } else {
        c->stats.refresh_failures++;
    }
    pthread_mutex_unlock(&c->lock);
    free(map);
    return rc;
}

int ck_redis_cluster_refresh(ck_redis_cluster *c, ck_error *err)
{
    return ck_cl_refresh(c, 1, err);
}

/* A map to route with: the first run discovers it, a stale one is
   refreshed (rate-limited; a failed refresh keeps the old map). */
int ck_cl_ensure_map(ck_redis_cluster *c, ck_error *err)
{
    int have, stale, closed;

    pthread_mutex_lock(&c->lock);
    have = c->have_map;
    stale = c->stale;
    closed = c->closed;
    pthread_mutex_unlock(&c->lock);
    if (closed) {
        return ck_error_set(err, CK_ECONN, "client is closed");
    }
    if (!have) {
        return ck_cl_refresh(c, 1, err);
    }
    if (stale) {
        ck_error ignored;
        (void)ck_cl_refresh(c, 0, &ignored);
    }
    return 0;
}

int ck_redis_cluster_owner(ck_redis_cluster *c, unsigned slot, ck_cluster_seed *out)
{
    int rc = -1;

    if (slot >= CK_CLUSTER_SLOTS) {
        return -1;
    }
    pthread_mutex_lock(&c->lock);
    if (c->have_map && c->map[slot] >= 0) {
        *out = c->nodes[c->map[slot]]->ep;
        rc = 0;
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int ck_redis_cluster_masters(ck_redis_cluster *c, ck_cluster_seed *out, size_t max, size_t *n,
                             ck_error *err)
{
    unsigned char seen[CK_CLUSTER_MAX_NODES];
    size_t i;

    *n = 0;
    if (ck_cl_ensure_map(c, err) < 0) {
        return -1;
    }
    memset(seen, 0, sizeof(seen));
    pthread_mutex_lock(&c->lock);
    for (i = 0; i < CK_CLUSTER_SLOTS; i++) {
        int idx = c->map[i];
        if (idx >= 0 && !seen[idx]) {
            seen[idx] = 1;
            if (*n < max) {
                out[(*n)++] = c->nodes[idx]->ep;
            }
        }
    }
    pthread_mutex_unlock(&c->lock);
    return 0;
}

ck_redis_pool *ck_redis_cluster_pool_of(ck_redis_cluster *c, const ck_cluster_seed *node)
{
    ck_redis_pool *p = NULL;
    int idx;

    pthread_mutex_lock(&c->lock);
    idx = find_node(c, node->host, node->port);
    if (idx >= 0) {
        p = c->nodes[idx]->pool;
    }
    pthread_mutex_unlock(&c->lock);
    return p;
}

void ck_redis_cluster_get_stats(ck_redis_cluster *c, ck_cluster_stats *out)
{
    pthread_mutex_lock(&c->lock);
    *out = c->stats;
    pthread_mutex_unlock(&c->lock);
}

int ck_redis_cluster_standalone(ck_redis_cluster *c)
{
    int s;

    pthread_mutex_lock(&c->lock);
    s = c->standalone;
    pthread_mutex_unlock(&c->lock);
    return s;
}

