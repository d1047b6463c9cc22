/*
 * py_l2_file.c - the L2 fast path for a FileBackend (py_file.h): the
 * L2Backend drives the C file store directly, as it drives the Redis
 * client, so an L2 file hit runs no Python code. The GIL is released
 * around each file operation; the name and data pointers stay valid
 * because the caller holds the objects they point into.
 */
#include "py_file.h"
#include "py_l2.h"

#include <stdlib.h>

static ck_file_store *store_of(PyObject *store)
{
    ck_filestore_object *fo = (ck_filestore_object *)store;

    if (!fo->open) {
        PyErr_SetString(PyExc_OSError, "file store is not open");
        return NULL;
    }
    return &fo->fs;
}

static int raise_io(const ck_error *err)
{
    if (err->code == CK_ENOMEM) {
        PyErr_NoMemory();
    } else {
        PyErr_SetString(PyExc_OSError, err->msg);
    }
    return -1;
}

static int file_get(PyObject *store, const char *name, size_t n, PyObject **entry,
                   int64_t *pttl_ms)
{
    ck_file_store *fs = store_of(store);
    unsigned char *buf = NULL;
    ck_file_record rec;
    ck_error err;
    uint64_t now = 0;
    int rc;

    if (fs == NULL) {
        return -1;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = ck_file_get(fs, name, n, &buf, &rec, &err);
    now = ck_file_now_ms();
    Py_END_ALLOW_THREADS
    if (rc <= 0) {
        return rc < 0 ? raise_io(&err) : 0;
    }
    *entry = PyBytes_FromStringAndSize((const char *)rec.value, (Py_ssize_t)rec.value_len);
    if (rec.expires_ms != 0) {
        *pttl_ms = rec.expires_ms > now ? (int64_t)(rec.expires_ms - now) : 1;
    }
    free(buf);
    return *entry == NULL ? -1 : 1;
}

static int file_set(PyObject *store, const char *name, size_t n, const unsigned char *data,
                   size_t len, int64_t ttl_ms)
{
    ck_file_store *fs = store_of(store);
    ck_error err;
    int rc;

    if (fs == NULL) {
        return -1;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = ck_file_set(fs, name, n, data, len, ttl_ms, &err);
    Py_END_ALLOW_THREADS
    return rc < 0 ? raise_io(&err) : 0; /* a too-large value was counted, not an error */
}

static int file_delete(PyObject *store, const char *name, size_t n, int *removed)
{
    ck_file_store *fs = store_of(store);
    ck_error err;
    int rc;

    if (fs == NULL) {
        return -1;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = ck_file_delete(fs, name, n, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        return raise_io(&err);
    }
    *removed = rc;
    return 0;
}

/* refresh_ttl_on_get: rewrite the record with the new expiry. */
static int file_expire(PyObject *store, const char *name, size_t n, int64_t ttl_ms)
{
    ck_file_store *fs = store_of(store);
    unsigned char *buf = NULL;
    ck_file_record rec;
    ck_error err;
    int rc;

    if (fs == NULL) {
        return -1;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = ck_file_get(fs, name, n, &buf, &rec, &err);
    if (rc == 1) {
        rc = ck_file_set(fs, name, n, rec.value, rec.value_len, ttl_ms, &err);
    }
    free(buf);
    Py_END_ALLOW_THREADS
    return rc < 0 ? raise_io(&err) : 0;
}

static int file_clear(PyObject *store, const char *prefix, size_t n)
{
    ck_file_store *fs = store_of(store);
    ck_error err;
    long removed;

    if (fs == NULL) {
        return -1;
    }
    Py_BEGIN_ALLOW_THREADS
    removed = ck_file_clear_prefix(fs, prefix, n, &err);
    Py_END_ALLOW_THREADS
    return removed < 0 ? raise_io(&err) : 0;
}

static const ck_l2_ops file_ops = {file_get, file_set, file_delete, file_expire, file_clear};

const ck_l2_ops *ck_l2_file_ops_for(PyObject *client)
{
    return ck_filestore_check(client) ? &file_ops : NULL;
}
