/*
 * py_memcached.h - the MemcachedClient type (py_memcached.c) over the C
 * memcached client (src/core/ck_memcached.h); MemcachedBackend
 * (cachekit/backends/memcached) wraps it.
 */
#ifndef CK_PY_MEMCACHED_H
#define CK_PY_MEMCACHED_H

#include "ck_memcached.h"
#include "module_state.h"

#include <sys/types.h>

typedef struct {
    PyObject_HEAD
    ck_mc_client mc;
    int ready;
    pid_t pid; /* the process the pool belongs to */
} ck_mc_object;

/* Is o a MemcachedClient? */
int ck_mc_check(PyObject *o);

/* self's client, reset after a fork; NULL with ValueError once closed. */
ck_mc_client *ck_mc_client_of(ck_mc_object *self);

/* err as BackendError (with its error_type); returns NULL. */
PyObject *ck_mc_raise(ck_mc_object *self, const ck_error *err);

/* Add MemcachedClient to the module. 0 or -1. */
int ck_memcached_exec(PyObject *module);

#endif /* CK_PY_MEMCACHED_H */
