/*
 * py_codec_app.c - application types as stored values: dataclasses, named
 * tuples, Enum members, OrderedDict, defaultdict, subclasses of the builtin
 * types, pydantic models and attrs classes (docs/format.md, codes 12-19).
 *
 * Owns the three places the codec meets them: pack_app (encode, value mode),
 * ck_unpack_app (decode) and copy_app (the L1 deep copy), plus the module
 * functions _set_app_codec and unpack_trusted.
 *
 * What an application type looks like is Python's business, so the rules
 * live in cachekit/app_types.py, installed once at import as st->app_encode
 * and st->app_decode:
 *
 *   app_encode(obj)               -> (code, "module:qualname", body) or None
 *   app_decode(code, cls, body)   -> the rebuilt instance
 *
 * Every value is ext 32 `code` around the array [name, body]; body is
 * encoded like any other value, so application types nest in each other
 * and in containers.
 *
 * The safety rule is here: the bytes name a class, and the decoder resolves
 * that name ONLY by a dict lookup, first in the types trusted for this call
 * (reader.types: the decorated function's return annotation, walked once at
 * decoration), then in the process-wide registry (cachekit.register_type).
 * A name found in neither is a SerializationError, which the caller counts
 * as a miss. Nothing is imported, and no attribute is read from a module.
 *
 * User code that runs: app_encode reads fields and properties, app_decode
 * calls the class's constructor (__init__, __post_init__, validators), so
 * the values we hold are strong references for the duration.
 */
#include "py_codec_pack_internal.h"
#include "py_codec_reader.h"

/* ------------------------------------------------------------------------ */
/* The hooks                                                                 */
/* ------------------------------------------------------------------------ */

/* app_encode ors this into the code of a type whose instances cannot
   change (Enum, named tuple, frozen dataclass): an L1 hit may share such an
   instance when its contents are immutable too. */
#define APP_SHARED 0x100

/* app_encode(obj) split into its parts. 1 with *code, *shared, *name (new)
   and *body (new) set; 0 if obj is no application type (no exception); -1
   on error. */
static int app_describe(ck_state *st, PyObject *obj, int *code, int *shared, PyObject **name,
                        PyObject **body)
{
    PyObject *res = NULL;
    long v;
    int rc = -1;

    if (st->app_encode == NULL) {
        return 0;
    }
    res = PyObject_CallOneArg(st->app_encode, obj);
    if (res == NULL) {
        goto error;
    }
    if (res == Py_None) {
        rc = 0;
        goto error;
    }
    if (!PyTuple_CheckExact(res) || PyTuple_GET_SIZE(res) != 3 ||
        !PyLong_CheckExact(PyTuple_GET_ITEM(res, 0)) ||
        !PyUnicode_CheckExact(PyTuple_GET_ITEM(res, 1))) {
        PyErr_SetString(PyExc_TypeError, "app_encode must return (int, str, body) or None");
        goto error;
    }
    v = PyLong_AsLong(PyTuple_GET_ITEM(res, 0));
    *shared = (v & APP_SHARED) != 0;
    v &= ~(long)APP_SHARED;
    if (v < CK_EXT_APP_FIRST || v > CK_EXT_APP_LAST) {
        PyErr_Format(PyExc_ValueError, "app_encode returned unknown code %ld", v);
        goto error;
    }
    *code = (int)v;
    *name = Py_NewRef(PyTuple_GET_ITEM(res, 1));
    *body = Py_NewRef(PyTuple_GET_ITEM(res, 2));
    rc = 1;
error:
    Py_XDECREF(res);
    return rc;
}

static PyObject *app_build(ck_state *st, int code, PyObject *cls, PyObject *body)
{
    PyObject *args[4] = {NULL, NULL, cls, body};
    PyObject *res;

    if (st->app_decode == NULL) {
        PyErr_SetString(st->SerializationError, "application types are not installed");
        return NULL;
    }
    args[1] = PyLong_FromLong(code);
    if (args[1] == NULL) {
        return NULL;
    }
    res = PyObject_Vectorcall(st->app_decode, args + 1, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(args[1]);
    return res;
}

/* ------------------------------------------------------------------------ */
/* Encode                                                                    */
/* ------------------------------------------------------------------------ */

/* The body. A list body (fields, items) is a temporary app_encode made, so
   it is written here rather than by pack_obj, which would count it in the
   statistics as a mutable object of the value. */
static int pack_body(pack_ctx *c, ck_buf *out, PyObject *body)
{
    msgpack_packer pk;
    Py_ssize_t i, n;

    if (!PyList_CheckExact(body)) {
        return pack_obj(c, out, body);
    }
    n = PyList_GET_SIZE(body);
    if (pack_depth_enter(c) < 0) {
        return -1;
    }
    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    if (msgpack_pack_array(&pk, (size_t)n) != 0) {
        pack_depth_leave(c);
        return pack_nomem();
    }
    /* The list is ours alone (app_encode built it), so it cannot change. */
    for (i = 0; i < n; i++) {
        if (pack_obj(c, out, PyList_GET_ITEM(body, i)) < 0) {
            pack_depth_leave(c);
            return -1;
        }
    }
    pack_depth_leave(c);
    return 0;
}

int pack_app(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    PyObject *name = NULL;
    PyObject *body = NULL;
    msgpack_packer pk;
    size_t hdr;
    int code = 0, shared = 0, rc = -1, found;

    found = app_describe(c->st, obj, &code, &shared, &name, &body);
    if (found <= 0) {
        return found < 0 ? -1 : pack_raise_unsupported(c, obj);
    }
    if (pack_depth_enter(c) < 0) {
        goto error;
    }
    /* A mutable instance makes every L1 hit rebuild the value (copy_app);
       an immutable one leaves the decision to its contents. */
    if (c->stats != NULL && !shared) {
        c->stats->has_mutable = 1;
    }
    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    if (pack_ext_begin(out, (int8_t)code, &hdr) < 0) {
        goto leave;
    }
    if (msgpack_pack_array(&pk, 2) != 0) {
        pack_nomem();
        goto leave;
    }
    if (pack_str(c, out, name) < 0 || pack_body(c, out, body) < 0) {
        goto leave;
    }
    rc = pack_ext_end(c, out, hdr);
leave:
    pack_depth_leave(c);
error:
    Py_XDECREF(name);
    Py_XDECREF(body);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Copy                                                                      */
/* ------------------------------------------------------------------------ */

PyObject *copy_app(pack_ctx *c, PyObject *obj)
{
    PyObject *name = NULL;
    PyObject *body = NULL;
    PyObject *body_copy = NULL;
    PyObject *res = NULL;
    Py_ssize_t i;
    int code = 0, shared = 0, found;

    found = app_describe(c->st, obj, &code, &shared, &name, &body);
    if (found <= 0) {
        if (found == 0) {
            pack_raise_unsupported(c, obj);
        }
        return NULL;
    }
    if (code == CK_EXT_APP_ENUM) {
        res = Py_NewRef(obj);
        goto error;
    }
    if (pack_depth_enter(c) < 0) {
        goto error;
    }
    body_copy = copy_value(c, body);
    if (body_copy == NULL) {
        goto leave;
    }
    /* An immutable instance whose fields all came back as themselves is
       shared, as a tuple of immutable values is. */
    if (shared && PyList_CheckExact(body) && PyList_CheckExact(body_copy) &&
        PyList_GET_SIZE(body) == PyList_GET_SIZE(body_copy)) {
        for (i = 0; i < PyList_GET_SIZE(body); i++) {
            if (PyList_GET_ITEM(body, i) != PyList_GET_ITEM(body_copy, i)) {
                break;
            }
        }
        if (i == PyList_GET_SIZE(body)) {
            res = Py_NewRef(obj);
            goto leave;
        }
    }
    /* The class is obj's own: a copy needs no trust decision. */
    res = app_build(c->st, code, (PyObject *)Py_TYPE(obj), body_copy);
leave:
    pack_depth_leave(c);
error:
    Py_XDECREF(name);
    Py_XDECREF(body);
    Py_XDECREF(body_copy);
    return res;
}

/* ------------------------------------------------------------------------ */
/* Decode                                                                    */
/* ------------------------------------------------------------------------ */

/* Borrowed class trusted under name, or NULL (exception set only on error). */
static PyObject *trusted_class(reader *r, PyObject *name)
{
    PyObject *cls = NULL;

    if (r->types != NULL) {
        cls = PyDict_GetItemWithError(r->types, name);
        if (cls != NULL || PyErr_Occurred()) {
            return cls;
        }
    }
    if (r->st->app_registry != NULL) {
        cls = PyDict_GetItemWithError(r->st->app_registry, name);
    }
    return cls;
}

PyObject *ck_unpack_app(reader *r, const mp_head *ext)
{
    PyObject *name = NULL;
    PyObject *cls = NULL;
    PyObject *body = NULL;
    PyObject *res = NULL;
    mp_head h;

    if (reader_head(r, &h) < 0) {
        return NULL;
    }
    if (h.kind != MP_ARRAY || h.len != 2) {
        return reader_fail(r, "extension type %d at offset %zu: payload must be an array of 2",
                           ext->ext_type, ext->offset);
    }
    if (reader_head(r, &h) < 0) {
        return NULL;
    }
    if (h.kind != MP_STR) {
        return reader_fail(r, "extension type %d at offset %zu: type name must be a str",
                           ext->ext_type, ext->offset);
    }
    name = PyUnicode_DecodeUTF8((const char *)h.body, (Py_ssize_t)h.len, NULL);
    if (name == NULL) {
        return reader_fail(r, "extension type %d at offset %zu: invalid UTF-8 in type name",
                           ext->ext_type, ext->offset);
    }
    cls = trusted_class(r, name);
    if (cls == NULL) {
        if (!PyErr_Occurred()) {
            reader_fail(r,
                        "extension type %d at offset %zu: type %R is not trusted here (annotate "
                        "the function's return type or call cachekit.register_type)",
                        ext->ext_type, ext->offset, name);
        }
        goto error;
    }
    Py_INCREF(cls);
    body = reader_value(r);
    if (body == NULL) {
        goto error;
    }
    res = app_build(r->st, ext->ext_type, cls, body);
    if (res == NULL) {
        reader_fail(r, "extension type %d at offset %zu: cannot rebuild %R", ext->ext_type,
                    ext->offset, name);
    }
error:
    Py_XDECREF(name);
    Py_XDECREF(cls);
    Py_XDECREF(body);
    return res;
}

/* ------------------------------------------------------------------------ */
/* Module functions                                                          */
/* ------------------------------------------------------------------------ */

static PyObject *set_app_codec(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    ck_state *st = ck_state_from_module(module);

    if (nargs != 3 || !PyCallable_Check(args[0]) || !PyCallable_Check(args[1]) ||
        !PyDict_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "_set_app_codec(encode, decode, registry) needs two callables and a dict");
        return NULL;
    }
    Py_XSETREF(st->app_encode, Py_NewRef(args[0]));
    Py_XSETREF(st->app_decode, Py_NewRef(args[1]));
    Py_XSETREF(st->app_registry, Py_NewRef(args[2]));
    Py_RETURN_NONE;
}

static PyObject *unpack_trusted(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    ck_state *st = ck_state_from_module(module);
    PyObject *types;
    PyObject *res;
    Py_buffer view;

    if (nargs != 2 || (args[1] != Py_None && !PyDict_CheckExact(args[1]))) {
        PyErr_SetString(PyExc_TypeError, "unpack_trusted(data, types) needs a dict or None");
        return NULL;
    }
    types = args[1] == Py_None ? NULL : args[1];
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    res = ck_py_unpack_types(st, (const unsigned char *)view.buf, (size_t)view.len, types);
    PyBuffer_Release(&view);
    return res;
}

static PyMethodDef app_methods[] = {
    {"_set_app_codec", (PyCFunction)(void (*)(void))set_app_codec, METH_FASTCALL,
     "_set_app_codec($module, encode, decode, registry, /)\n--\n\n"
     "Install the application-type rules (cachekit/app_types.py does, at import)."},
    {"unpack_trusted", (PyCFunction)(void (*)(void))unpack_trusted, METH_FASTCALL,
     "unpack_trusted($module, data, types, /)\n--\n\n"
     "unpack(data), also building application types whose name is a key of\n"
     "types (a dict 'module:qualname' -> class, or None) or of the registry."},
    {NULL, NULL, 0, NULL},
};

int ck_codec_app_exec(PyObject *module)
{
    return PyModule_AddFunctions(module, app_methods);
}
