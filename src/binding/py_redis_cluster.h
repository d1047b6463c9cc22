/*
 * py_redis_cluster.h - RedisClusterClient (py_redis_cluster.c, methods in
 * py_redis_cluster_cmd.c) over the C cluster client (ck_redis_cluster.h),
 * and its L2 fast path (py_l2_cluster.c).
 */
#ifndef CK_PY_REDIS_CLUSTER_H
#define CK_PY_REDIS_CLUSTER_H

#include "ck_redis_cluster.h"
#include "module_state.h"

typedef struct {
    PyObject_HEAD
    ck_redis_cluster *cl;
    PyObject *repr; /* str, password masked */
} ck_cluster_object;

/* Is o a RedisClusterClient? */
int ck_cluster_check(PyObject *o);

/* get_many(keys): a list of bytes or None (the get method uses it too). */
PyObject *ck_cluster_get_many(ck_cluster_object *self, PyObject *keys);

/* The methods table (py_redis_cluster_cmd.c). */
extern PyMethodDef ck_cluster_methods[];

/* Add RedisClusterClient to the module. 0 or -1. */
int ck_redis_cluster_exec(PyObject *module);

#endif /* CK_PY_REDIS_CLUSTER_H */
