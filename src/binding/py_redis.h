/*
 * py_redis.h - the RedisClient type, shared by its two files:
 *   py_redis.c      the type: constructor (URL + options), repr, errors
 *   py_redis_cmd.c  the methods: request building, GIL-free runs, results
 */
#ifndef CK_PY_REDIS_H
#define CK_PY_REDIS_H

#include "ck_redis.h"
#include "module_state.h"

typedef struct {
    PyObject_HEAD
    ck_redis_pool *pool;
    PyObject *repr; /* str, password masked */
} ck_redis_object;

/* Raise the Python form of err (BackendError with error_type, MemoryError
   for CK_ENOMEM, ValueError for CK_EINVAL); always returns NULL. */
PyObject *ck_redis_raise(ck_state *st, const ck_error *err);

/* The methods table of RedisClient (py_redis_cmd.c). */
extern PyMethodDef ck_redis_methods[];

#endif /* CK_PY_REDIS_H */
