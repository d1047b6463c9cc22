/*
 * py_memcached.h - the MemcachedClient type (py_memcached.c) over the C
 * memcached client (src/core/ck_memcached.h); MemcachedBackend
 * (cachekit/backends/memcached) wraps it.
 */
#ifndef CK_PY_MEMCACHED_H
#define CK_PY_MEMCACHED_H

#include "ck_memcached.h"
#include "module_state.h"

/* Add MemcachedClient to the module. 0 or -1. */
int ck_memcached_exec(PyObject *module);

#endif /* CK_PY_MEMCACHED_H */
