/*
 * py_store.c - L1Store: the Python type around a ck_l1 store.
 *
 * Values are Python objects; the store holds one strong reference to each.
 * retain (Py_INCREF) runs under the store lock and cannot re-enter Python;
 * release (Py_DECREF, which can run __del__) only ever runs after the lock
 * is dropped, from ck_store_release(). Every method here holds the GIL.
 */
#include "py_store.h"

#include <math.h>
#include <structmember.h>

#include "ck_bytes.h"

int ck_seconds_to_ns(double seconds, const char *name, uint64_t *ns)
{
    /* Beyond ~570 years the nanoseconds no longer fit in 64 bits. */
    if (!(seconds > 0.0) || !isfinite(seconds) || seconds >= 1.8e10) {
        PyErr_Format(PyExc_ValueError, "%s must be a positive number of seconds", name);
        return -1;
    }
    *ns = (uint64_t)(seconds * 1e9);
    if (*ns == 0) {
        *ns = 1; /* a positive duration below 1 ns still counts */
    }
    return 0;
}

int ck_parse_ttl(PyObject *obj, uint64_t *ttl_ns)
{
    double seconds;

    if (obj == NULL || obj == Py_None) {
        *ttl_ns = 0;
        return 0;
    }
    if (PyBool_Check(obj) || !(PyLong_Check(obj) || PyFloat_Check(obj))) {
        PyErr_Format(PyExc_TypeError, "ttl must be a number of seconds or None, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    seconds = PyFloat_AsDouble(obj);
    if (seconds == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (seconds >= 1.8e10 && isfinite(seconds)) {
        /* Longer than 64-bit nanoseconds can count: never expires. */
        *ttl_ns = 0;
        return 0;
    }
    return ck_seconds_to_ns(seconds, "ttl (or None)", ttl_ns);
}

static void value_retain(void *v)
{
    Py_INCREF((PyObject *)v);
}

static void value_release(void *v)
{
    Py_DECREF((PyObject *)v);
}

static const ck_l1_ops py_value_ops = {value_retain, value_release};

/* Borrow the bytes of a key argument (bytes only: a key must be immutable). */
static int key_bytes(PyObject *key, const unsigned char **p, size_t *n)
{
    if (!PyBytes_Check(key)) {
        PyErr_Format(PyExc_TypeError, "L1Store keys must be bytes, not %.100s",
                     Py_TYPE(key)->tp_name);
        return -1;
    }
    *p = (const unsigned char *)PyBytes_AS_STRING(key);
    *n = (size_t)PyBytes_GET_SIZE(key);
    return 0;
}

/* ------------------------------------------------------------- type slots */

static PyObject *store_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"max_entries", "max_bytes", NULL};
    Py_ssize_t max_entries = 0, max_bytes = 0;
    ck_store_object *self = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|nn:L1Store", kwlist, &max_entries,
                                     &max_bytes)) {
        return NULL;
    }
    if (max_entries < 0 || max_bytes < 0) {
        PyErr_SetString(PyExc_ValueError, "max_entries and max_bytes must be >= 0 (0: unbounded)");
        return NULL;
    }
    self = (ck_store_object *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->store = ck_l1_new((size_t)max_entries, (size_t)max_bytes, &py_value_ops);
    if (self->store == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static int visit_value(void *value, void *arg)
{
    struct {
        visitproc visit;
        void *arg;
    } *v = arg;
    return v->visit((PyObject *)value, v->arg);
}

static int store_traverse(ck_store_object *self, visitproc visit, void *arg)
{
    struct {
        visitproc visit;
        void *arg;
    } v = {visit, arg};

    Py_VISIT(Py_TYPE(self));
    if (self->store != NULL) {
        return ck_l1_visit(self->store, visit_value, &v);
    }
    return 0;
}

static int store_clear_slot(ck_store_object *self)
{
    ck_l1_entry *detached = NULL;

    if (self->store != NULL) {
        ck_l1_clear(self->store, NULL, &detached);
        ck_store_release(self, detached);
    }
    return 0;
}

static void store_dealloc(ck_store_object *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    ck_l1_free(self->store); /* releases remaining values; GIL held */
    self->store = NULL;
    tp->tp_free(self);
    Py_DECREF(tp);
}

static Py_ssize_t store_len(ck_store_object *self)
{
    ck_l1_stats st;
    ck_l1_get_stats(self->store, &st);
    return (Py_ssize_t)st.count;
}

/* ---------------------------------------------------------------- methods */

PyDoc_STRVAR(store_get_doc, "get($self, key, default=None, /)\n--\n\n"
                            "Return the live value stored under key (bytes), else default.");

static PyObject *store_get(ck_store_object *self, PyObject *const *args, Py_ssize_t nargs)
{
    const unsigned char *k;
    size_t n;
    void *value = NULL;
    ck_l1_entry *detached = NULL;
    int hit;

    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "get expected 1 or 2 arguments, got %zd", nargs);
        return NULL;
    }
    if (key_bytes(args[0], &k, &n) < 0) {
        return NULL;
    }
    hit = ck_l1_get(self->store, &self->direct, ck_key_hash(k, n, 0), k, n, &value, &detached);
    ck_store_release(self, detached);
    if (hit) {
        return (PyObject *)value; /* reference taken by retain */
    }
    return Py_NewRef(nargs > 1 ? args[1] : Py_None);
}

PyDoc_STRVAR(store_put_doc,
             "put($self, key, value, /, charge=0, ttl=None)\n--\n\n"
             "Store value under key (bytes). charge is the value's size in bytes,\n"
             "counted against max_bytes; ttl is in seconds. Returns False when the\n"
             "entry alone is larger than max_bytes (nothing is stored).");

static PyObject *store_put(ck_store_object *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"", "", "charge", "ttl", NULL};
    PyObject *key, *value, *ttl = Py_None;
    Py_ssize_t charge = 0;
    const unsigned char *k;
    size_t n;
    uint64_t ttl_ns;
    ck_l1_entry *detached = NULL;
    ck_error err;
    int rc;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|nO:put", kwlist, &key, &value, &charge,
                                     &ttl)) {
        return NULL;
    }
    if (key_bytes(key, &k, &n) < 0 || ck_parse_ttl(ttl, &ttl_ns) < 0) {
        return NULL;
    }
    if (charge < 0) {
        PyErr_SetString(PyExc_ValueError, "charge must be >= 0");
        return NULL;
    }
    rc = ck_l1_put(self->store, &self->direct, ck_key_hash(k, n, 0), k, n, value, (size_t)charge,
                   ttl_ns, &detached, &err);
    ck_store_release(self, detached);
    if (rc < 0) {
        return err.code == CK_ENOMEM ? PyErr_NoMemory()
                                     : PyErr_Format(PyExc_ValueError, "%s", err.msg);
    }
    return PyBool_FromLong(rc);
}

PyDoc_STRVAR(store_remove_doc, "remove($self, key, /)\n--\n\n"
                               "Remove key; return True if it was present.");

static PyObject *store_remove(ck_store_object *self, PyObject *key)
{
    const unsigned char *k;
    size_t n;
    ck_l1_entry *detached = NULL;
    int removed;

    if (key_bytes(key, &k, &n) < 0) {
        return NULL;
    }
    removed = ck_l1_remove(self->store, &self->direct, ck_key_hash(k, n, 0), k, n, &detached);
    ck_store_release(self, detached);
    return PyBool_FromLong(removed);
}

PyDoc_STRVAR(store_clear_doc, "clear($self, /)\n--\n\n"
                              "Remove every entry, including those of cached functions.");

static PyObject *store_clear(ck_store_object *self, PyObject *Py_UNUSED(ignored))
{
    store_clear_slot(self);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(store_purge_doc, "purge_expired($self, /)\n--\n\n"
                              "Drop every expired entry now; return how many.");

static PyObject *store_purge_expired(ck_store_object *self, PyObject *Py_UNUSED(ignored))
{
    ck_l1_entry *detached = NULL;
    size_t n = ck_l1_purge_expired(self->store, &detached);

    ck_store_release(self, detached);
    return PyLong_FromSize_t(n);
}

PyDoc_STRVAR(store_stats_doc,
             "stats($self, /)\n--\n\n"
             "Return a dict: count, bytes, max_entries, max_bytes (0: unbounded),\n"
             "evictions, expirations.");

static PyObject *store_stats(ck_store_object *self, PyObject *Py_UNUSED(ignored))
{
    ck_l1_stats st;

    ck_l1_get_stats(self->store, &st);
    return Py_BuildValue("{s:n,s:n,s:n,s:n,s:K,s:K}", "count", (Py_ssize_t)st.count, "bytes",
                         (Py_ssize_t)st.bytes, "max_entries", (Py_ssize_t)st.max_entries,
                         "max_bytes", (Py_ssize_t)st.max_bytes, "evictions",
                         (unsigned long long)st.evictions, "expirations",
                         (unsigned long long)st.expirations);
}

PyDoc_STRVAR(store_keys_doc, "_keys($self, /)\n--\n\n"
                             "Tests only: the key bytes of every entry (all owners), most recent\n"
                             "first.");

static PyObject *store_keys(ck_store_object *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *list = NULL, *item = NULL;
    size_t off = 0, n;
    ck_buf keys;

    ck_buf_init(&keys);
    if (ck_l1_copy_keys(self->store, &keys) < 0) {
        PyErr_NoMemory();
        goto error;
    }
    list = PyList_New(0);
    if (list == NULL) {
        goto error;
    }
    while (off < keys.len) {
        const unsigned char *p = keys.data + off;

        n = get_le32(p);
        item = PyBytes_FromStringAndSize((const char *)p + 4, (Py_ssize_t)n);
        if (item == NULL || PyList_Append(list, item) < 0) {
            Py_CLEAR(list);
            goto error;
        }
        Py_CLEAR(item);
        off += 4 + n;
    }
error:
    Py_XDECREF(item);
    ck_buf_free(&keys);
    return list;
}

static PyMethodDef store_methods[] = {
    {"_keys", (PyCFunction)store_keys, METH_NOARGS, store_keys_doc},
    {"get", (PyCFunction)(void (*)(void))store_get, METH_FASTCALL, store_get_doc},
    {"put", (PyCFunction)(void (*)(void))store_put, METH_VARARGS | METH_KEYWORDS, store_put_doc},
    {"remove", (PyCFunction)store_remove, METH_O, store_remove_doc},
    {"clear", (PyCFunction)store_clear, METH_NOARGS, store_clear_doc},
    {"purge_expired", (PyCFunction)store_purge_expired, METH_NOARGS, store_purge_doc},
    {"stats", (PyCFunction)store_stats, METH_NOARGS, store_stats_doc},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef store_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(ck_store_object, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

PyDoc_STRVAR(store_doc,
             "L1Store(max_entries=0, max_bytes=0)\n--\n\n"
             "Thread-safe in-process store with exact LRU eviction, per-entry TTL and\n"
             "bounds on entry count and bytes (0: unbounded). Shared by cached functions.");

static PyType_Slot store_slots[] = {
    {Py_tp_new, store_new},
    {Py_tp_dealloc, store_dealloc},
    {Py_tp_traverse, store_traverse},
    {Py_tp_clear, store_clear_slot},
    {Py_tp_methods, store_methods},
    {Py_tp_members, store_members},
    {Py_mp_length, store_len},
    {Py_tp_doc, (void *)store_doc},
    {0, NULL},
};

static PyType_Spec store_spec = {
    .name = "cachekit._core.L1Store",
    .basicsize = sizeof(ck_store_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = store_slots,
};

int ck_store_exec(PyObject *module)
{
    ck_state *st = ck_state_from_module(module);

    st->L1StoreType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &store_spec, NULL);
    if (st->L1StoreType == NULL) {
        return -1;
    }
    return PyModule_AddType(module, st->L1StoreType);
}
