/*
 * ck_redis_cluster.h - a Redis Cluster client in pure C, over one
 * ck_redis_pool per node (ck_redis.h) and the routing primitives of
 * ck_redis_slots.h.
 *
 *   ck_redis_cluster.c        nodes, the slot map and its refresh (CLUSTER SLOTS)
 *   ck_redis_cluster_route.c  routing a pipeline by slot: MOVED, ASK,
 *                             TRYAGAIN/CLUSTERDOWN, connection errors
 *   ck_redis_cluster_ops.c    seed URLs (redis+cluster://), cache clearing
 *                             on every master, PING of every master
 *
 * Every command of a request carries the slot it must run on; commands for
 * one node go out as one pipeline. A redirect (MOVED: the map is updated;
 * ASK: ASKING then the command once on the target) or a TRYAGAIN (a short
 * backoff) retries only the commands it concerns, for
 * at most max_redirects rounds, so a hostile cluster that redirects in a
 * loop costs a bounded number of round trips and then an error. A
 * CLUSTERDOWN fails the command at once (a failover takes seconds; waiting
 * would only slow the caller) and makes the next run refresh the map.
 *
 * A seed that answers CLUSTER SLOTS with an error (cluster support
 * disabled) is taken as a single server owning every slot.
 *
 * Thread safety: any number of threads at once. No I/O happens under the
 * cluster's lock; the pools lock themselves. No function here touches Python.
 */
#ifndef CK_REDIS_CLUSTER_H
#define CK_REDIS_CLUSTER_H

#include "ck_redis.h"
#include "ck_redis_slots.h"

#define CK_CLUSTER_MAX_NODES 512      /* endpoints known at once (a hostile cluster's cap) */
#define CK_CLUSTER_DEFAULT_REDIRECTS 5

typedef struct ck_redis_cluster ck_redis_cluster;

typedef struct {
    uint64_t moved, ask, tryagain, refreshes, refresh_failures, conn_errors;
} ck_cluster_stats;

/* A seed endpoint. */
typedef struct {
    char host[CK_CLUSTER_MAX_HOST + 1];
    int port;
} ck_cluster_seed;

/*
 * Parse redis+cluster://[[user]:password@]host[:port][,host[:port]...][/0][?...]
 * (rediss+cluster:// for TLS): cfg gets the credentials, TLS and database as
 * ck_redis_config_parse_url fills them, *seeds (malloc'd, caller frees) the
 * endpoints. A plain redis:// or rediss:// URL gives one seed. A database
 * other than 0 is refused (a cluster has only database 0), so are unix://
 * URLs. Messages never quote the URL.
 */
int ck_cluster_parse_url(ck_redis_config *cfg, const char *url, ck_cluster_seed **seeds,
                         size_t *nseeds, ck_error *err);

/* "host:port" or "[v6]:port" (port default 6379) into *seed. */
int ck_cluster_parse_endpoint(const char *s, size_t n, ck_cluster_seed *seed, ck_error *err);

/* cfg is the template of every node's pool (credentials, TLS, timeouts,
   bounds, pool_size per node); its host/port are ignored. Opens no
   connection: the first command discovers the slot map. max_redirects
   in 1..100. */
ck_redis_cluster *ck_redis_cluster_new(const ck_redis_config *cfg, const ck_cluster_seed *seeds,
                                       size_t nseeds, int max_redirects, ck_error *err);

/* Close every node's pool; later calls fail with CK_ECONN. */
void ck_redis_cluster_close(ck_redis_cluster *c);
/* Close and free. No other thread may be using it. */
void ck_redis_cluster_free(ck_redis_cluster *c);

/*
 * Run req: command i on the node serving slots[i], one pipeline per node.
 * Same contract as ck_redis_pool_run: on 0 every reply is filled and none
 * is an error; on -1 every slot is NULL and err says why (a server error
 * reply: CK_ESERVER naming its code only; redirects past max_redirects:
 * CK_EPROTO).
 */
int ck_redis_cluster_run(ck_redis_cluster *c, const ck_redis_req *req, const unsigned *slots,
                         redisReply **replies, ck_error *err);

/* Ask the nodes for CLUSTER SLOTS now (force) and replace the map. */
int ck_redis_cluster_refresh(ck_redis_cluster *c, ck_error *err);

/* The masters (nodes serving at least one slot) after making sure there is
   a map: up to max endpoints into out, *n set to how many. */
int ck_redis_cluster_masters(ck_redis_cluster *c, ck_cluster_seed *out, size_t max, size_t *n,
                             ck_error *err);

/* The endpoint serving slot in the current map (no I/O): 0, or -1 when
   the slot is not served or there is no map yet. */
int ck_redis_cluster_owner(ck_redis_cluster *c, unsigned slot, ck_cluster_seed *out);

/* The pool of a master (from ck_redis_cluster_masters), or NULL. */
ck_redis_pool *ck_redis_cluster_pool_of(ck_redis_cluster *c, const ck_cluster_seed *node);

void ck_redis_cluster_get_stats(ck_redis_cluster *c, ck_cluster_stats *out);
/* 1 when the seed turned out to be a server without cluster support. */
int ck_redis_cluster_standalone(ck_redis_cluster *c);

/* ck_redis_cluster_ops.c */

/* UNLINK every key starting with prefix on every master (SCAN MATCH per
   master, then one UNLINK per key routed by slot). Every master is tried;
   the first failure is reported after the others ran. */
int ck_redis_cluster_clear_prefix(ck_redis_cluster *c, const char *prefix, size_t n,
                                  size_t count, long long *unlinked, ck_error *err);

/* PING every master: 0 when all answered PONG. */
int ck_redis_cluster_ping(ck_redis_cluster *c, ck_error *err);

#endif /* CK_REDIS_CLUSTER_H */
