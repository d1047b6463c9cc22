/*
 * ck_redis_cluster_int.h - what ck_redis_cluster.c (nodes, the map) and
 * ck_redis_cluster_route.c (routing a request) share. Not a public API.
 */
#ifndef CK_REDIS_CLUSTER_INT_H
#define CK_REDIS_CLUSTER_INT_H

#include <pthread.h>

#include "ck_redis_cluster.h"

typedef struct {
    ck_cluster_seed ep;
    ck_redis_pool *pool;
} cl_node;

struct ck_redis_cluster {
    ck_redis_config cfg; /* template of the nodes' configs; read-only */
    int max_redirects;
    pthread_mutex_t lock;
    cl_node *nodes[CK_CLUSTER_MAX_NODES];
    size_t nnodes, nseeds;
    int16_t map[CK_CLUSTER_SLOTS];
    int have_map, stale, refreshing, standalone, closed;
    int64_t last_refresh_ns;
    unsigned rotate; /* where the next refresh starts asking */
    ck_cluster_stats stats;
    struct ck_redis_cluster *reg_next, *reg_prev;
};

/* The index of host:port in nodes, added (with its pool) when new. -1
   with err when the table is full. Called without the lock. */
int ck_cl_node_index(ck_redis_cluster *c, const char *host, int port, ck_error *err);
/* nodes[idx], read under the lock. */
cl_node *ck_cl_node_at(ck_redis_cluster *c, int idx);
/* Refresh the map (force: even if one ran within REFRESH_MIN_MS or is
   running). 0, or -1 when no node answered. */
int ck_cl_refresh(ck_redis_cluster *c, int force, ck_error *err);
/* A map to route with (the first call discovers it). */
int ck_cl_ensure_map(ck_redis_cluster *c, ck_error *err);
/* r is an error reply whose code word is `code`. */
int ck_cl_is_code(const redisReply *r, const char *code);

#endif
