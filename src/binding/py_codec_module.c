/*
 * py_codec_module.c - Python-visible entry points of the codec.
 *
 * Owns cachekit._core.pack(), pack_stats(), unpack(), copy_value(),
 * _pack_key() and _key_by_value(): thin wrappers around ck_py_pack_ex(),
 * ck_py_unpack() and ck_py_copy(), and ck_codec_exec(), which registers
 * them and runs the per-file setup of the codec's translation units.
 */
#include "py_codec.h"

/* pack/_pack_key: encode into a ck_buf (inline storage, so small values do
   not touch malloc) and copy out as bytes. */
static PyObject *codec_pack_with(PyObject *module, PyObject *obj, int flags)
{
    ck_state *st = ck_state_from_module(module);
    PyObject *res = NULL;
    ck_buf out;

    ck_buf_init(&out);
    if (ck_py_pack(st, obj, &out, flags) < 0) {
        goto error;
    }
    res = PyBytes_FromStringAndSize((const char *)out.data, (Py_ssize_t)out.len);
error:
    ck_buf_free(&out);
    return res;
}

static PyObject *codec_pack(PyObject *module, PyObject *obj)
{
    return codec_pack_with(module, obj, 0);
}

static PyObject *codec_pack_key(PyObject *module, PyObject *obj)
{
    return codec_pack_with(module, obj, CK_PACK_CANONICAL | CK_PACK_KEY);
}

/* pack_stats(obj, limit=0) -> (bytes or None, graph_bytes, has_mutable):
   ck_py_pack_ex with statistics, for tests and capacity planning. */
static PyObject *codec_pack_stats(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"obj", "limit", NULL};
    ck_state *st = ck_state_from_module(module);
    ck_pack_stats stats = {0};
    PyObject *obj;
    PyObject *encoded = NULL;
    PyObject *res = NULL;
    Py_ssize_t limit = 0;
    ck_buf out;
    int rc;

    ck_buf_init(&out);
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|n:pack_stats", kwlist, &obj, &limit)) {
        goto error;
    }
    if (limit < 0) {
        PyErr_SetString(PyExc_ValueError, "limit must be >= 0 (0: no limit)");
        goto error;
    }
    stats.limit = (size_t)limit;
    rc = ck_py_pack_ex(st, obj, &out, 0, &stats);
    if (rc < 0) {
        goto error;
    }
    if (rc == 0) {
        encoded = PyBytes_FromStringAndSize((const char *)out.data, (Py_ssize_t)out.len);
    } else {
        encoded = Py_NewRef(Py_None);
    }
    if (encoded == NULL) {
        goto error;
    }
    res = Py_BuildValue("(OnO)", encoded, (Py_ssize_t)stats.graph_bytes,
                        stats.has_mutable ? Py_True : Py_False);
error:
    Py_XDECREF(encoded);
    ck_buf_free(&out);
    return res;
}

static PyObject *codec_copy_value(PyObject *module, PyObject *obj)
{
    return ck_py_copy(ck_state_from_module(module), obj);
}

static PyObject *codec_unpack(PyObject *module, PyObject *data)
{
    ck_state *st = ck_state_from_module(module);
    PyObject *res = NULL;
    Py_buffer view;

    /* The export pins the bytes: a bytearray cannot be resized while we
       decode, even if a constructor we call runs Python code. */
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    res = ck_py_unpack(st, (const unsigned char *)view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return res;
}

static PyObject *codec_key_by_value(PyObject *module, PyObject *tp)
{
    int rc;

    (void)module;
    if (!PyType_Check(tp)) {
        PyErr_SetString(PyExc_TypeError, "_key_by_value() expects a class");
        return NULL;
    }
    rc = ck_py_key_by_value((PyTypeObject *)tp);
    if (rc < 0) {
        return NULL;
    }
    return PyBool_FromLong(rc);
}

static PyMethodDef codec_methods[] = {
    {"pack", codec_pack, METH_O,
     "pack($module, obj, /)\n--\n\n"
     "Encode obj as msgpack with cachekit's extension types and return the bytes.\n\n"
     "Supported: None, bool, int, float, str, bytes, bytearray, list, tuple, dict,\n"
     "set, frozenset, datetime, date, time, timedelta, Decimal, UUID, matched by\n"
     "exact type so the round trip preserves types. Raises UnsupportedTypeError\n"
     "(a TypeError) for anything else and SerializationError for nesting deeper\n"
     "than 64 levels (or a value containing itself)."},
    {"unpack", codec_unpack, METH_O,
     "unpack($module, data, /)\n--\n\n"
     "Decode one value from data (any bytes-like object) produced by pack().\n\n"
     "The input must hold exactly one value. Raises SerializationError for\n"
     "malformed, truncated, over-long or too deeply nested input, and for maps\n"
     "and sets in which more than 32 keys share one hash (hash flooding)."},
    {"_pack_key", codec_pack_key, METH_O,
     "_pack_key($module, obj, /)\n--\n\n"
     "Encode obj the way cache keys are built: canonical (dict items and set\n"
     "elements sorted by their encoding), and also accepting classes, objects\n"
     "defining __cachekit_key__(), Enum members, named tuples and frozen\n"
     "dataclasses. The result is never decoded; for tests."},
    {"pack_stats", (PyCFunction)(void (*)(void))codec_pack_stats, METH_VARARGS | METH_KEYWORDS,
     "pack_stats($module, /, obj, limit=0)\n--\n\n"
     "Encode obj like pack() and measure it: return (encoded, graph_bytes,\n"
     "has_mutable). encoded is the bytes, or None when the encoding passed\n"
     "limit bytes (0: no limit; the walk stops there, so refusing a huge value\n"
     "is cheap). graph_bytes approximates the memory of the object graph\n"
     "(sys.getsizeof of every object visited); has_mutable is True if the graph\n"
     "holds a list, dict, set or bytearray. Raises like pack()."},
    {"copy_value", codec_copy_value, METH_O,
     "copy_value($module, obj, /)\n--\n\n"
     "Return a deep copy of obj, as unpack(pack(obj)) would, without encoding it.\n\n"
     "Lists, dicts, sets and bytearrays are new objects; immutable values (int,\n"
     "float, str, bytes, None, bool, Decimal, UUID, datetime types, and tuples\n"
     "and frozensets holding only those) are shared. Accepts the types pack()\n"
     "accepts and raises the same errors; aliasing is not preserved."},
    {"_key_by_value", codec_key_by_value, METH_O,
     "_key_by_value($module, cls, /)\n--\n\n"
     "True if instances of cls are keyed by value in cache keys: cls defines\n"
     "__cachekit_key__, or is an Enum, a named tuple or a frozen dataclass.\n"
     "Exposes ck_py_key_by_value() for tests."},
    {NULL, NULL, 0, NULL},
};

int ck_codec_exec(PyObject *module)
{
    if (ck_py_pack_init() < 0 || ck_py_unpack_init() < 0 || ck_py_copy_init() < 0) {
        return -1;
    }
    if (PyModule_AddFunctions(module, codec_methods) < 0) {
        return -1;
    }
    if (ck_codec_app_exec(module) < 0) {
        return -1;
    }
    return ck_codec_data_exec(module);
}
