/*
 * py_file.h - the FileStore type (py_file.c) over the C file store
 * (src/core/ck_file.h); FileBackend (cachekit/backends/file) wraps it.
 */
#ifndef CK_PY_FILE_H
#define CK_PY_FILE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "ck_file.h"

typedef struct {
    PyObject_HEAD
    ck_file_store fs;
    int open;
} ck_filestore_object;

/* Add FileStore to the module. 0 or -1. */
int ck_file_exec(PyObject *module);

/* Is o a FileStore? (No module state needed: its dealloc slot is ours.) */
int ck_filestore_check(PyObject *o);

/*
 * The L2 fast path (py_l2_file.c): py_l2.c calls these for a FileBackend,
 * with the GIL held; each releases it around the file I/O. They return as
 * the ck_l2_* operations do (py_l2.h), with OSError set on -1.
 */
int ck_l2_file_get(PyObject *store, const char *name, size_t n, PyObject **entry,
                   int64_t *pttl_ms);
int ck_l2_file_set(PyObject *store, const char *name, size_t n, const unsigned char *data,
                   size_t len, int64_t ttl_ms);
int ck_l2_file_delete(PyObject *store, const char *name, size_t n, int *removed);
int ck_l2_file_expire(PyObject *store, const char *name, size_t n, int64_t ttl_ms);
int ck_l2_file_clear(PyObject *store, const char *prefix, size_t n);

#endif /* CK_PY_FILE_H */
