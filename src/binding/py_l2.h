/*
 * py_l2.h - the second tier of a cached function: one backend (a C Redis
 * client, or any Python object with the backend methods) behind a circuit
 * breaker and an in-flight bound, shared by every function using it.
 */
#ifndef CK_PY_L2_H
#define CK_PY_L2_H

#include "ck_breaker.h"
#include "module_state.h"
#include "py_redis.h"

/*
 * A C client other than Redis (py_l2_file.c, py_l2_memcached.c): each
 * operation is called with the GIL held, releases it around its I/O, and
 * returns as the ck_l2_* operation of the same name does, with an
 * exception set on -1. clear may refuse (-1 with a message saying why).
 */
typedef struct ck_l2_ops {
    int (*get)(PyObject *c, const char *name, size_t n, PyObject **entry, int64_t *pttl_ms);
    int (*set)(PyObject *c, const char *name, size_t n, const unsigned char *data, size_t len,
               int64_t ttl_ms);
    int (*del)(PyObject *c, const char *name, size_t n, int *removed);
    int (*expire)(PyObject *c, const char *name, size_t n, int64_t ttl_ms);
    int (*clear)(PyObject *c, const char *prefix, size_t n);
} ck_l2_ops;

/* The ops of client, or NULL when it is not one of these native clients. */
const ck_l2_ops *ck_l2_file_ops_for(PyObject *client);
const ck_l2_ops *ck_l2_memcached_ops_for(PyObject *client);
const ck_l2_ops *ck_l2_cluster_ops_for(PyObject *client); /* py_l2_cluster.c */

typedef struct {
    PyObject_HEAD
    PyObject *backend;      /* the user's backend object (strong) */
    ck_redis_object *redis; /* its C client: the GIL-free fast path, or NULL to
                               call backend.get/set/delete (strong) */
    PyObject *native;       /* a FileStore or MemcachedClient driven through
                               `ops` (no Python on the L2 path), or NULL (strong) */
    const struct ck_l2_ops *ops;
    ck_breaker breaker;
    int breaker_ready;
    uint64_t fork_gen;      /* process generation the breaker belongs to */
    /* Counters, updated with the GIL held. */
    uint64_t hits, misses, errors, skipped;
} ck_l2_object;

/*
 * The operations. Each returns -1 with an exception set when the backend
 * failed (the caller reports it and goes on without L2, or propagates it
 * when it is not an Exception); a skipped operation (breaker open, too many
 * in flight) is not a failure. Names are the backend key names (bytes).
 */

/* 1: found, *entry a new bytes reference and *pttl_ms its remaining TTL
   (-1: none or unknown); 0: not found or skipped. */
int ck_l2_get(ck_l2_object *l2, const char *name, size_t n, PyObject **entry, int64_t *pttl_ms);

/* Store data under name for ttl_ms (0: no expiry). 0, or -1. */
int ck_l2_set(ck_l2_object *l2, const char *name, size_t n, const unsigned char *data,
              size_t len, int64_t ttl_ms);

/* Set name's TTL to ttl_ms from now (refresh_ttl_on_get). 0, or -1. */
int ck_l2_expire(ck_l2_object *l2, const char *name, size_t n, int64_t ttl_ms);

/* Cross-process stampede leases (Redis only): SET <name>:lease <token> NX
   PX lease_ms. 1: acquired (token filled), 0: another process holds it,
   2: no lease to take (not Redis, or the backend is being skipped), -1:
   failed. Release is compare-and-delete, so a
   lease that expired and passed to another process is never removed. */
#define CK_L2_TOKEN_LEN 32
int ck_l2_lease_acquire(ck_l2_object *l2, const char *name, size_t n, int64_t lease_ms,
                        char token[CK_L2_TOKEN_LEN]);
int ck_l2_lease_release(ck_l2_object *l2, const char *name, size_t n,
                        const char token[CK_L2_TOKEN_LEN]);

/* Remove name; *removed 1 if it was there. 0, or -1. */
int ck_l2_delete(ck_l2_object *l2, const char *name, size_t n, int *removed);

/* Remove every name starting with prefix. 0, or -1 (also when the backend
   has no way to do it: a Python backend without clear_prefix()). */
int ck_l2_clear_prefix(ck_l2_object *l2, const char *prefix, size_t n);

#endif /* CK_PY_L2_H */
