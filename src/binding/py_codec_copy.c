/*
 * py_codec_copy.c - deep copy of a storable value, without encoding it.
 *
 * Owns ck_py_copy(): what an L1 hit returns when the stored object graph
 * holds mutable containers, so that the caller mutating its result cannot
 * change the cached value. It is a decode without the bytes: the result is
 * what ck_py_unpack(ck_py_pack(obj)) would give, at a fraction of the cost.
 *
 *   - Types are those the packer accepts, matched exactly, in the same
 *     order, then application types (copy_app in py_codec_app.c: rebuilt by
 *     their constructor from a copy of their fields, or shared when they
 *     and their fields are immutable); anything else raises the packer's
 *     UnsupportedTypeError, and
 *     nesting deeper than CK_CODEC_MAX_DEPTH (counted as the packer counts,
 *     the datetime family included) its SerializationError.
 *   - list, dict, set and bytearray are always new objects. Immutable leaves
 *     (int, float, str, bytes, None, bool, Decimal, UUID, the datetime
 *     family) are shared, not copied. A tuple or frozenset is shared when
 *     every element came back as itself, else rebuilt around the copies.
 *   - Aliasing is not preserved: a list reached twice is copied twice, as a
 *     decode would produce two lists. (A graph that reaches itself fails on
 *     the depth limit, as in the packer.)
 *   - Value checks the packer makes that do not concern the type (lone
 *     surrogates in a str, a tzinfo without a UTC offset, 32-bit lengths)
 *     are not repeated: the copy is never encoded.
 *
 * Dict keys and set elements keep the hashes stored in the source
 * (_PyDict_Next / _PySet_NextEntry): no __hash__ runs, and a dict is filled
 * with _PyDict_SetItem_KnownHash. User code can still run: equal-hash keys
 * are compared with __eq__ (UUID's is Python code), and any allocation may
 * start a GC pass whose finalizers mutate the source. Hence, as in the
 * packer, every element is held by a strong reference while it is copied
 * and container sizes are re-checked (RuntimeError on change).
 */
#include "py_codec_pack_internal.h"

#include <datetime.h>

int ck_py_copy_init(void)
{
    /* This translation unit's copy of the datetime C API (see py_codec.h). */
    PyDateTime_IMPORT;
    return PyDateTimeAPI == NULL ? -1 : 0;
}


static PyObject *raise_changed(const char *what)
{
    PyErr_Format(PyExc_RuntimeError, "%s changed size while cachekit was copying it", what);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Containers                                                                */
/* ------------------------------------------------------------------------ */

static PyObject *copy_list(pack_ctx *c, PyObject *obj)
{
    Py_ssize_t i, n = PyList_GET_SIZE(obj);
    PyObject *res = NULL;
    PyObject *item = NULL;
    PyObject *copy;

    res = PyList_New(n);
    if (res == NULL) {
        return NULL;
    }
    for (i = 0; i < n; i++) {
        if (PyList_GET_SIZE(obj) != n) {
            raise_changed("list");
            goto error;
        }
        item = Py_NewRef(PyList_GET_ITEM(obj, i));
        copy = copy_value(c, item);
        if (copy == NULL) {
            goto error;
        }
        PyList_SET_ITEM(res, i, copy); /* steals copy */
        Py_CLEAR(item);
    }
    return res;
error:
    /* Unfilled slots are NULL, which list dealloc skips. */
    Py_XDECREF(item);
    Py_DECREF(res);
    return NULL;
}

/* Shared when every item is itself; a new tuple is made only once an item
   differs, with the items before it shared. */
static PyObject *copy_tuple(pack_ctx *c, PyObject *obj)
{
    Py_ssize_t i, j, n = PyTuple_GET_SIZE(obj);
    PyObject *res = NULL;
    PyObject *item, *copy;

    for (i = 0; i < n; i++) {
        /* Tuples own their items and cannot change: no extra reference. */
        item = PyTuple_GET_ITEM(obj, i);
        copy = copy_value(c, item);
        if (copy == NULL) {
            goto error;
        }
        if (res == NULL && copy != item) {
            res = PyTuple_New(n);
            if (res == NULL) {
                Py_DECREF(copy);
                goto error;
            }
            for (j = 0; j < i; j++) {
                PyTuple_SET_ITEM(res, j, Py_NewRef(PyTuple_GET_ITEM(obj, j)));
            }
        }
        if (res != NULL) {
            PyTuple_SET_ITEM(res, i, copy); /* steals copy */
        } else {
            Py_DECREF(copy); /* the item itself */
        }
    }
    return res != NULL ? res : Py_NewRef(obj);
error:
    Py_XDECREF(res); /* unfilled slots are NULL, which tuple dealloc skips */
    return NULL;
}

static PyObject *copy_dict(pack_ctx *c, PyObject *obj)
{
    Py_ssize_t pos = 0, done = 0, n = PyDict_GET_SIZE(obj);
    PyObject *res = NULL;
    PyObject *key = NULL, *value = NULL;
    PyObject *key_copy = NULL, *value_copy = NULL;
    PyObject *k, *v;
    Py_hash_t hash;

    res = _PyDict_NewPresized(n);
    if (res == NULL) {
        return NULL;
    }
    while (_PyDict_Next(obj, &pos, &k, &v, &hash)) {
        if (done == n) {
            raise_changed("dict");
            goto error;
        }
        /* Borrowed from the dict, which user code may mutate meanwhile. */
        key = Py_NewRef(k);
        value = Py_NewRef(v);
        key_copy = copy_value(c, key);
        if (key_copy == NULL) {
            goto error;
        }
        value_copy = copy_value(c, value);
        if (value_copy == NULL) {
            goto error;
        }
        /* A key's copy is equal to it, so its stored hash still applies. */
        if (_PyDict_SetItem_KnownHash(res, key_copy, value_copy, hash) < 0) {
            goto error;
        }
        Py_CLEAR(key);
        Py_CLEAR(value);
        Py_CLEAR(key_copy);
        Py_CLEAR(value_copy);
        done++;
        if (PyDict_GET_SIZE(obj) != n) {
            raise_changed("dict");
            goto error;
        }
    }
    if (done != n) {
        raise_changed("dict");
        goto error;
    }
    return res;
error:
    Py_XDECREF(key);
    Py_XDECREF(value);
    Py_XDECREF(key_copy);
    Py_XDECREF(value_copy);
    Py_DECREF(res);
    return NULL;
}

/*
 * Copy every element of a set or frozenset; into `into` (PySet_Add) unless
 * it is NULL. *all_same is cleared if any element's copy is not itself.
 * 0, or -1 with an exception set.
 */
static int copy_set_elements(pack_ctx *c, PyObject *obj, PyObject *into, int *all_same)
{
    Py_ssize_t pos = 0, done = 0, n = PySet_GET_SIZE(obj);
    PyObject *item = NULL;
    PyObject *copy = NULL;
    PyObject *k;
    Py_hash_t hash;
    int rc = -1;

    while (_PySet_NextEntry(obj, &pos, &k, &hash)) {
        item = Py_NewRef(k);
        copy = copy_value(c, item);
        if (copy == NULL) {
            goto error;
        }
        if (copy != item) {
            *all_same = 0;
        }
        if (into != NULL && PySet_Add(into, copy) < 0) {
            goto error;
        }
        Py_CLEAR(item);
        Py_CLEAR(copy);
        done++;
        if (PySet_GET_SIZE(obj) != n) {
            raise_changed("set");
            goto error;
        }
    }
    if (done != n) {
        raise_changed("set");
        goto error;
    }
    rc = 0;
error:
    Py_XDECREF(item);
    Py_XDECREF(copy);
    return rc;
}

/*
 * set and frozenset. Elements are hashable, so every element the packer
 * accepts comes back as itself; then a set is copied by PySet_New(obj),
 * which reuses the stored hashes, and a frozenset is shared. Were an
 * element's copy ever to differ, the result is built from the copies.
 */
static PyObject *copy_set(pack_ctx *c, PyObject *obj, int frozen)
{
    PyObject *res = NULL;
    int all_same = 1;

    if (copy_set_elements(c, obj, NULL, &all_same) < 0) {
        return NULL;
    }
    if (all_same) {
        return frozen ? Py_NewRef(obj) : PySet_New(obj);
    }
    res = frozen ? PyFrozenSet_New(NULL) : PySet_New(NULL);
    if (res == NULL || copy_set_elements(c, obj, res, &all_same) < 0) {
        Py_XDECREF(res);
        return NULL;
    }
    return res;
}

/* ------------------------------------------------------------------------ */
/* Dispatch                                                                  */
/* ------------------------------------------------------------------------ */

/* A container: open a nesting level as the packer does, then copy. */
static PyObject *copy_nested(pack_ctx *c, PyObject *obj, PyTypeObject *tp)
{
    PyObject *res;

    if (pack_depth_enter(c) < 0) {
        return NULL;
    }
    if (tp == &PyDict_Type) {
        res = copy_dict(c, obj);
    } else if (tp == &PyList_Type) {
        res = copy_list(c, obj);
    } else if (tp == &PyTuple_Type) {
        res = copy_tuple(c, obj);
    } else if (tp == &PySet_Type || tp == &PyFrozenSet_Type) {
        res = copy_set(c, obj, tp == &PyFrozenSet_Type);
    } else {
        /* The datetime family: the packer nests its fields one level down;
           the object itself is immutable and shared. */
        res = Py_NewRef(obj);
    }
    pack_depth_leave(c);
    return res;
}

/* New reference: obj itself for immutable values, else a copy. Same type
   order as pack_obj. */
PyObject *copy_value(pack_ctx *c, PyObject *obj)
{
    PyTypeObject *tp = Py_TYPE(obj);

    if (tp == &PyLong_Type || tp == &PyUnicode_Type || tp == &PyFloat_Type || obj == Py_None ||
        tp == &PyBool_Type || tp == &PyBytes_Type) {
        return Py_NewRef(obj);
    }
    if (tp == &PyDict_Type || tp == &PyList_Type || tp == &PyTuple_Type || tp == &PySet_Type ||
        tp == &PyFrozenSet_Type || tp == PyDateTimeAPI->DateTimeType ||
        tp == PyDateTimeAPI->DateType || tp == PyDateTimeAPI->TimeType ||
        tp == PyDateTimeAPI->DeltaType) {
        return copy_nested(c, obj, tp);
    }
    if (tp == &PyByteArray_Type) {
        return PyByteArray_FromStringAndSize(PyByteArray_AS_STRING(obj),
                                             PyByteArray_GET_SIZE(obj));
    }
    if ((PyObject *)tp == c->st->DecimalType || (PyObject *)tp == c->st->UUIDType) {
        return Py_NewRef(obj);
    }
    if (data_type_check(tp)) {
        return copy_data(c, obj);
    }
    return copy_app(c, obj);
}

PyObject *ck_py_copy(ck_state *st, PyObject *obj)
{
    /* The packer's context, for its depth limit and error messages. */
    pack_ctx c = {.st = st, .flags = 0, .depth = 0, .stats = NULL, .limit = 0, .stopped = 0};

    return copy_value(&c, obj);
}
