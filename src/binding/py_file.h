/*
 * py_file.h - the FileStore type (py_file.c) over the C file store
 * (src/core/ck_file.h); FileBackend (cachekit/backends/file) wraps it.
 */
#ifndef CK_PY_FILE_H
#define CK_PY_FILE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Add FileStore to the module. 0 or -1. */
int ck_file_exec(PyObject *module);

#endif /* CK_PY_FILE_H */
