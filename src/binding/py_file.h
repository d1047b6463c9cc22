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

#endif /* CK_PY_FILE_H */
