/*
 * py_codec_pack_key.c - encodings used only in cache keys (CK_PACK_KEY):
 * classes and objects defining __cachekit_key__().
 *
 * Part of ck_py_pack() (py_codec_pack_internal.h). These extension codes
 * (64 and up, docs/format.md "Key mode") are never produced for stored
 * values and ck_py_unpack() refuses them.
 */
#include "py_codec_pack_internal.h"

/* ------------------------------------------------------------------------ */
/* Key-only encodings                                                        */
/* ------------------------------------------------------------------------ */

/* A class in a cache key: ext KEY_CLASS "module:qualname". */
static int pack_key_class(pack_ctx *c, ck_buf *out, PyObject *cls)
{
    PyObject *name = NULL;
    const char *p;
    Py_ssize_t n;
    int rc = -1;

    name = pack_type_name(c->st, (PyTypeObject *)cls, ":", 0);
    if (name == NULL) {
        goto error;
    }
    /* A __qualname__ may hold lone surrogates; keys never decode them. */
    p = PyUnicode_AsUTF8AndSize(name, &n);
    if (p == NULL) {
        goto error;
    }
    rc = pack_ext_bytes(c, out, CK_EXT_KEY_CLASS, p, (size_t)n);
error:
    Py_XDECREF(name);
    return rc;
}

/*
 * An object whose type defines __cachekit_key__: ext KEY_CUSTOM around
 * ["module:qualname of its type", key-packing of obj.__cachekit_key__()].
 * The method is looked up on the type (like any special method), then bound
 * through the descriptor protocol, so an instance attribute cannot shadow it.
 * `meth` is a strong reference held by the caller.
 */
static int pack_key_custom(pack_ctx *c, ck_buf *out, PyObject *obj, PyObject *meth)
{
    msgpack_packer pk;
    PyObject *bound = NULL;
    PyObject *keyval = NULL;
    PyObject *name = NULL;
    descrgetfunc get = Py_TYPE(meth)->tp_descr_get;
    size_t hdr;
    int rc = -1;

    if (pack_depth_enter(c) < 0) {
        return -1;
    }
    if (get != NULL) {
        bound = get(meth, obj, (PyObject *)Py_TYPE(obj));
    } else {
        bound = Py_NewRef(meth);
    }
    if (bound == NULL) {
        goto error;
    }
    keyval = PyObject_CallNoArgs(bound);
    if (keyval == NULL) {
        goto error;
    }
    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    if (pack_ext_begin(out, CK_EXT_KEY_CUSTOM, &hdr) < 0) {
        goto error;
    }
    if (msgpack_pack_array(&pk, 2) != 0) {
        pack_nomem();
        goto error;
    }
    name = pack_type_name(c->st, Py_TYPE(obj), ":", 0);
    if (name == NULL || pack_str(c, out, name) < 0 || pack_obj(c, out, keyval) < 0) {
        goto error;
    }
    rc = pack_ext_end(c, out, hdr);
error:
    Py_XDECREF(bound);
    Py_XDECREF(keyval);
    Py_XDECREF(name);
    pack_depth_leave(c);
    return rc;
}

int pack_key_extra(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    PyObject *meth;
    int rc;

    if (PyType_Check(obj)) {
        return pack_key_class(c, out, obj);
    }
    /* Borrowed from the type's MRO cache; held while user code runs. A
       __cachekit_key__ set to None opts out, like __hash__ = None. */
    meth = _PyType_Lookup(Py_TYPE(obj), c->st->str_cachekit_key);
    if (meth == NULL || meth == Py_None) {
        return pack_raise_unsupported(c, obj);
    }
    Py_INCREF(meth);
    rc = pack_key_custom(c, out, obj, meth);
    Py_DECREF(meth);
    return rc;
}

