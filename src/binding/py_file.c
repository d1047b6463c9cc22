/*
 * py_file.c - FileStore: the C file store (ck_file.h) as a Python type.
 *
 * Every method releases the GIL around its file I/O: arguments are pinned
 * first (key names as bytes, values as Py_buffer), and no PyObject is
 * touched until the GIL is back. I/O failures raise OSError with the
 * store's message (never a key name or value); the Python FileBackend turns
 * them into BackendError.
 */
#include "py_file.h"

#include <stdlib.h>


static PyObject *raise_err(const ck_error *err)
{
    if (err->code == CK_ENOMEM) {
        return PyErr_NoMemory();
    }
    PyErr_SetString(PyExc_OSError, err->msg);
    return NULL;
}

static int filestore_init(PyObject *self_, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"directory", "max_bytes", "max_entries", "max_value",
                             "file_mode", "dir_mode", "fsync", NULL};
    ck_filestore_object *self = (ck_filestore_object *)self_;
    PyObject *dir_obj = NULL, *dir_bytes = NULL;
    unsigned long long max_bytes, max_entries, max_value;
    unsigned int file_mode = 0600, dir_mode = 0700;
    int do_fsync = 0, rc;
    ck_error err;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OKKK|IIp:FileStore", kwlist, &dir_obj,
                                     &max_bytes, &max_entries, &max_value, &file_mode, &dir_mode,
                                     &do_fsync)) {
        return -1;
    }
    if (self->open) {
        PyErr_SetString(PyExc_RuntimeError, "FileStore already initialised");
        return -1;
    }
    if (!PyUnicode_FSConverter(dir_obj, &dir_bytes)) {
        return -1;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = ck_file_open(&self->fs, PyBytes_AS_STRING(dir_bytes), max_bytes, max_entries, max_value,
                      file_mode & 07777, dir_mode & 07777, do_fsync, &err);
    Py_END_ALLOW_THREADS
    Py_DECREF(dir_bytes);
    if (rc < 0) {
        raise_err(&err);
        return -1;
    }
    self->open = 1;
    return 0;
}

static int check_open(ck_filestore_object *self)
{
    if (!self->open) {
        PyErr_SetString(PyExc_ValueError, "FileStore is not open");
        return -1;
    }
    return 0;
}

/* get_entry(name) -> (value: bytes, expires_ms: int) | None */
static PyObject *filestore_get_entry(PyObject *self_, PyObject *arg)
{
    ck_filestore_object *self = (ck_filestore_object *)self_;
    unsigned char *buf = NULL;
    ck_file_record rec;
    ck_error err;
    const char *name;
    Py_ssize_t n;
    PyObject *res;
    int rc;

    if (check_open(self) < 0) {
        return NULL;
    }
    if (PyBytes_Check(arg)) {
        name = PyBytes_AS_STRING(arg);
        n = PyBytes_GET_SIZE(arg);
    } else if ((name = PyUnicode_AsUTF8AndSize(arg, &n)) == NULL) {
        return NULL;
    }
    /* arg (and so name) stays alive: the caller holds it for the call. */
    Py_BEGIN_ALLOW_THREADS
    rc = ck_file_get(&self->fs, name, (size_t)n, &buf, &rec, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        return raise_err(&err);
    }
    if (rc == 0) {
        Py_RETURN_NONE;
    }
    res = Py_BuildValue("(y#K)", (const char *)rec.value, (Py_ssize_t)rec.value_len,
                        (unsigned long long)rec.expires_ms);
    free(buf);
    return res;
}

static PyObject *filestore_get(PyObject *self_, PyObject *arg)
{
    PyObject *entry = filestore_get_entry(self_, arg), *value;

    if (entry == NULL || entry == Py_None) {
        return entry;
    }
    value = Py_NewRef(PyTuple_GET_ITEM(entry, 0));
    Py_DECREF(entry);
    return value;
}

/* set(name, value, ttl_ms=0) -> bool (False: larger than max_value, skipped) */
static PyObject *filestore_set(PyObject *self_, PyObject *args)
{
    ck_filestore_object *self = (ck_filestore_object *)self_;
    const char *name;
    Py_ssize_t n;
    Py_buffer value;
    long long ttl_ms = 0;
    ck_error err;
    int rc;

    if (check_open(self) < 0 || !PyArg_ParseTuple(args, "s#y*|L:set", &name, &n, &value, &ttl_ms)) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = ck_file_set(&self->fs, name, (size_t)n, value.buf, (size_t)value.len, ttl_ms, &err);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&value);
    if (rc < 0) {
        return raise_err(&err);
    }
    return PyBool_FromLong(rc);
}

static PyObject *filestore_delete(PyObject *self_, PyObject *args)
{
    ck_filestore_object *self = (ck_filestore_object *)self_;
    const char *name;
    Py_ssize_t n;
    ck_error err;
    int rc;

    if (check_open(self) < 0 || !PyArg_ParseTuple(args, "s#:delete", &name, &n)) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = ck_file_delete(&self->fs, name, (size_t)n, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        return raise_err(&err);
    }
    return PyBool_FromLong(rc);
}

static PyObject *filestore_clear_prefix(PyObject *self_, PyObject *args)
{
    ck_filestore_object *self = (ck_filestore_object *)self_;
    const char *prefix;
    Py_ssize_t n;
    ck_error err;
    long removed;

    if (check_open(self) < 0 || !PyArg_ParseTuple(args, "s#:clear_prefix", &prefix, &n)) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    removed = ck_file_clear_prefix(&self->fs, prefix, (size_t)n, &err);
    Py_END_ALLOW_THREADS
    if (removed < 0) {
        return raise_err(&err);
    }
    return PyLong_FromLong(removed);
}

static PyObject *filestore_evict(PyObject *self_, PyObject *Py_UNUSED(ignored))
{
    ck_filestore_object *self = (ck_filestore_object *)self_;
    ck_error err;
    int rc;

    if (check_open(self) < 0) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = ck_file_evict(&self->fs, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        return raise_err(&err);
    }
    Py_RETURN_NONE;
}

static PyObject *filestore_stats(PyObject *self_, PyObject *Py_UNUSED(ignored))
{
    ck_filestore_object *self = (ck_filestore_object *)self_;
    uint64_t bytes = 0, entries = 0;
    ck_error err;
    int rc;

    if (check_open(self) < 0) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = ck_file_usage(&self->fs, &bytes, &entries, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        return raise_err(&err);
    }
    return Py_BuildValue(
        "{sKsKsKsKsKsK}", "bytes", (unsigned long long)bytes, "entries",
        (unsigned long long)entries, "corrupt",
        (unsigned long long)__atomic_load_n(&self->fs.corrupt, __ATOMIC_RELAXED), "evicted",
        (unsigned long long)__atomic_load_n(&self->fs.evicted, __ATOMIC_RELAXED), "too_large",
        (unsigned long long)__atomic_load_n(&self->fs.too_large, __ATOMIC_RELAXED), "scans",
        (unsigned long long)__atomic_load_n(&self->fs.scans, __ATOMIC_RELAXED));
}

static void filestore_dealloc(PyObject *self_)
{
    ck_filestore_object *self = (ck_filestore_object *)self_;
    PyTypeObject *tp = Py_TYPE(self_);

    if (self->open) {
        ck_file_close(&self->fs);
        self->open = 0;
    }
    tp->tp_free(self_);
    Py_DECREF(tp);
}

int ck_filestore_check(PyObject *o)
{
    return PyType_GetSlot(Py_TYPE(o), Py_tp_dealloc) == (void *)filestore_dealloc;
}

static PyMethodDef filestore_methods[] = {
    {"get", filestore_get, METH_O,
     "get($self, name, /)\n--\n\nThe stored value, or None (absent, expired or corrupt)."},
    {"get_entry", filestore_get_entry, METH_O,
     "get_entry($self, name, /)\n--\n\n(value, expires_ms) or None; expires_ms 0: never."},
    {"set", filestore_set, METH_VARARGS,
     "set($self, name, value, ttl_ms=0, /)\n--\n\nStore value; False if it was over max_value."},
    {"delete", filestore_delete, METH_VARARGS,
     "delete($self, name, /)\n--\n\nRemove name; True if it was there."},
    {"clear_prefix", filestore_clear_prefix, METH_VARARGS,
     "clear_prefix($self, prefix, /)\n--\n\nRemove entries whose key name starts with prefix."},
    {"evict", filestore_evict, METH_NOARGS,
     "evict($self, /)\n--\n\nScan the directory and evict down to the bounds now."},
    {"stats", filestore_stats, METH_NOARGS,
     "stats($self, /)\n--\n\nDirectory totals (a fresh scan) and this process's counters."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot filestore_slots[] = {
    {Py_tp_doc, "FileStore(directory, max_bytes, max_entries, max_value, file_mode=0o600, "
                "dir_mode=0o700, fsync=False)\n--\n\nA directory of checksummed entry files."},
    {Py_tp_init, filestore_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, filestore_dealloc},
    {Py_tp_methods, filestore_methods},
    {0, NULL},
};

static PyType_Spec filestore_spec = {
    .name = "cachekit._core.FileStore",
    .basicsize = sizeof(ck_filestore_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = filestore_slots,
};

int ck_file_exec(PyObject *module)
{
    PyObject *type = PyType_FromModuleAndSpec(module, &filestore_spec, NULL);
    int rc;

    if (type == NULL) {
        return -1;
    }
    rc = PyModule_AddType(module, (PyTypeObject *)type);
    Py_DECREF(type);
    return rc;
}
