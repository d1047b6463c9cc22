/*
 * py_codec_data.c - numpy arrays and scalars, pandas DataFrame / Series and
 * polars DataFrame as stored values (docs/format.md, codes 20 and 21).
 *
 * Owns recognising these types (data_type_check: by the type's name, no
 * import and no Python call, so numpy, pandas and polars stay optional and
 * are never imported by cachekit before the user has), their encoding
 * (pack_data), their L1 copy (copy_data) and their decoding
 * (ck_unpack_data), plus the module function _set_data_codec.
 *
 * How an array or frame is taken apart is Python's business
 * (cachekit/_data.py, installed once at import):
 *
 *   data_encode(obj)              -> (code, head, buffer, mutable) or None
 *   data_decode(code, head, buf)  -> the rebuilt value
 *   data_copy(obj)                -> a copy sharing no mutable state
 *
 * The wire payload is ext `code` around the array [*head, bin buffer]. The
 * buffer (an array's raw bytes, a frame's Arrow IPC stream) is copied here,
 * with the GIL released above CK_DATA_NOGIL_BYTES: on encode from the
 * exporter's Py_buffer (pinned for the copy) into the output, on decode
 * from the entry into a new bytearray that np.frombuffer wraps without a
 * further copy (so decoded arrays are writeable and own their memory).
 *
 * Decoding never imports a name the bytes carry: the code picks one of a
 * fixed set of builders in _data.py (numpy array, numpy scalar, pandas
 * DataFrame, pandas Series, polars DataFrame), which import only those
 * fixed packages, and only if they are installed.
 */
#include "py_codec_pack_internal.h"
#include "py_codec_reader.h"

#include <string.h>

/* Copies at least this large release the GIL. */
#define CK_DATA_NOGIL_BYTES (1u << 20)

/* Largest head (values before the buffer) a decoder accepts. */
#define CK_DATA_MAX_HEAD 4

/* ------------------------------------------------------------------------ */
/* Recognition                                                               */
/* ------------------------------------------------------------------------ */

static int name_is(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* s is the package pkg or one of its submodules. */
static int module_in(const char *s, const char *pkg)
{
    size_t n = strlen(pkg);

    return strncmp(s, pkg, n) == 0 && (s[n] == '\0' || s[n] == '.');
}

int data_type_check(PyTypeObject *tp)
{
    const char *name = tp->tp_name;
    PyObject *mod;

    if (!(tp->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
        /* numpy's ndarray and scalar types are static C types named
           "numpy.<name>". Subclasses (np.matrix, masked arrays) are heap
           types and are not ours. */
        return name_is(name, "numpy.");
    }
    if (strcmp(name, "DataFrame") != 0 && strcmp(name, "Series") != 0) {
        return 0;
    }
    /* A heap type's tp_name is the bare name; its module is in its dict. */
    mod = tp->tp_dict != NULL ? PyDict_GetItemString(tp->tp_dict, "__module__") : NULL;
    if (mod == NULL || !PyUnicode_Check(mod)) {
        return 0;
    }
    name = PyUnicode_AsUTF8(mod);
    if (name == NULL) {
        PyErr_Clear();
        return 0;
    }
    return module_in(name, "pandas") || module_in(name, "polars");
}

/* ------------------------------------------------------------------------ */
/* Encode                                                                    */
/* ------------------------------------------------------------------------ */

static void copy_maybe_nogil(void *dst, const void *src, size_t n)
{
    if (n >= CK_DATA_NOGIL_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        memcpy(dst, src, n);
        Py_END_ALLOW_THREADS
    } else if (n != 0) {
        memcpy(dst, src, n);
    }
}

/* msgpack bin of the bytes buf exports. */
static int pack_buffer(pack_ctx *c, ck_buf *out, PyObject *buf)
{
    Py_buffer view;
    msgpack_packer pk;
    int rc = -1;

    if (PyObject_GetBuffer(buf, &view, PyBUF_C_CONTIGUOUS) < 0) {
        return -1;
    }
    if (pack_check_len32(c, (size_t)view.len, "array or frame buffer") < 0) {
        goto error;
    }
    if (pack_would_pass(c, out, (size_t)view.len)) {
        rc = pack_stop(c);
        goto error;
    }
    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    if (msgpack_pack_bin(&pk, (size_t)view.len) != 0 ||
        ck_buf_reserve(out, (size_t)view.len) < 0) {
        pack_nomem();
        goto error;
    }
    copy_maybe_nogil(out->data + out->len, view.buf, (size_t)view.len);
    out->len += (size_t)view.len;
    if (c->stats != NULL) {
        c->stats->graph_bytes += (size_t)view.len;
    }
    rc = 0;
error:
    PyBuffer_Release(&view);
    return rc;
}

int pack_data(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    PyObject *res = NULL;
    PyObject *head;
    msgpack_packer pk;
    size_t hdr;
    Py_ssize_t i, n;
    long code;
    int rc = -1;

    if (c->st->data_encode == NULL) {
        return pack_raise_unsupported(c, obj);
    }
    res = PyObject_CallOneArg(c->st->data_encode, obj);
    if (res == NULL) {
        return -1;
    }
    if (res == Py_None) {
        Py_DECREF(res);
        return pack_raise_unsupported(c, obj);
    }
    if (!PyTuple_CheckExact(res) || PyTuple_GET_SIZE(res) != 4 ||
        !PyLong_CheckExact(PyTuple_GET_ITEM(res, 0)) ||
        !PyList_CheckExact(PyTuple_GET_ITEM(res, 1))) {
        PyErr_SetString(PyExc_TypeError, "data_encode must return (int, list, buffer, bool)");
        goto error;
    }
    code = PyLong_AsLong(PyTuple_GET_ITEM(res, 0));
    head = PyTuple_GET_ITEM(res, 1);
    n = PyList_GET_SIZE(head);
    if ((code != CK_EXT_NDARRAY && code != CK_EXT_FRAME) || n > CK_DATA_MAX_HEAD) {
        PyErr_Format(PyExc_ValueError, "data_encode returned code %ld with %zd head values",
                     code, n);
        goto error;
    }
    if (c->stats != NULL && PyObject_IsTrue(PyTuple_GET_ITEM(res, 3))) {
        c->stats->has_mutable = 1;
    }
    if (pack_depth_enter(c) < 0) {
        goto error;
    }
    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    if (pack_ext_begin(out, (int8_t)code, &hdr) < 0) {
        goto leave;
    }
    if (msgpack_pack_array(&pk, (size_t)n + 1) != 0) {
        pack_nomem();
        goto leave;
    }
    /* The head list is ours alone (data_encode built it). */
    for (i = 0; i < n; i++) {
        if (pack_obj(c, out, PyList_GET_ITEM(head, i)) < 0) {
            goto leave;
        }
    }
    if (pack_buffer(c, out, PyTuple_GET_ITEM(res, 2)) < 0) {
        goto leave;
    }
    rc = pack_ext_end(c, out, hdr);
leave:
    pack_depth_leave(c);
error:
    Py_XDECREF(res);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Copy                                                                      */
/* ------------------------------------------------------------------------ */

PyObject *copy_data(pack_ctx *c, PyObject *obj)
{
    if (c->st->data_copy == NULL) {
        pack_raise_unsupported(c, obj);
        return NULL;
    }
    return PyObject_CallOneArg(c->st->data_copy, obj);
}

/* ------------------------------------------------------------------------ */
/* Decode                                                                    */
/* ------------------------------------------------------------------------ */

PyObject *ck_unpack_data(reader *r, const mp_head *ext)
{
    PyObject *head = NULL;
    PyObject *buf = NULL;
    PyObject *args[4] = {NULL, NULL, NULL, NULL};
    PyObject *res = NULL;
    mp_head h;
    Py_ssize_t i, n;

    if (reader_head(r, &h) < 0) {
        return NULL;
    }
    if (h.kind != MP_ARRAY || h.len < 2 || h.len > CK_DATA_MAX_HEAD + 1) {
        return reader_fail(r, "extension type %d at offset %zu: payload must be an array of 2 to %d",
                           ext->ext_type, ext->offset, CK_DATA_MAX_HEAD + 1);
    }
    n = (Py_ssize_t)h.len - 1;
    head = PyTuple_New(n);
    if (head == NULL) {
        return NULL;
    }
    for (i = 0; i < n; i++) {
        PyObject *v = reader_value(r);

        if (v == NULL) {
            goto error;
        }
        PyTuple_SET_ITEM(head, i, v);
    }
    if (reader_head(r, &h) < 0) {
        goto error;
    }
    if (h.kind != MP_BIN) {
        reader_fail(r, "extension type %d at offset %zu: the last element must be bin",
                    ext->ext_type, ext->offset);
        goto error;
    }
    /* A bytearray, so that np.frombuffer gives a writeable array that owns
       (through its base) memory nobody else holds. */
    buf = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)h.len);
    if (buf == NULL) {
        goto error;
    }
    copy_maybe_nogil(PyByteArray_AS_STRING(buf), h.body, h.len);
    if (r->st->data_decode == NULL) {
        reader_fail(r, "extension type %d at offset %zu: data types are not installed",
                    ext->ext_type, ext->offset);
        goto error;
    }
    args[1] = PyLong_FromLong(ext->ext_type);
    if (args[1] == NULL) {
        goto error;
    }
    args[2] = head;
    args[3] = buf;
    res = PyObject_Vectorcall(r->st->data_decode, args + 1, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                              NULL);
    Py_DECREF(args[1]);
    if (res == NULL) {
        reader_fail(r, "extension type %d at offset %zu: cannot rebuild the value", ext->ext_type,
                    ext->offset);
    }
error:
    Py_XDECREF(head);
    Py_XDECREF(buf);
    return res;
}

/* ------------------------------------------------------------------------ */
/* Module functions                                                          */
/* ------------------------------------------------------------------------ */

static PyObject *set_data_codec(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    ck_state *st = ck_state_from_module(module);

    if (nargs != 3 || !PyCallable_Check(args[0]) || !PyCallable_Check(args[1]) ||
        !PyCallable_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "_set_data_codec(encode, decode, copy) needs three callables");
        return NULL;
    }
    Py_XSETREF(st->data_encode, Py_NewRef(args[0]));
    Py_XSETREF(st->data_decode, Py_NewRef(args[1]));
    Py_XSETREF(st->data_copy, Py_NewRef(args[2]));
    Py_RETURN_NONE;
}

static PyMethodDef data_methods[] = {
    {"_set_data_codec", (PyCFunction)(void (*)(void))set_data_codec, METH_FASTCALL,
     "_set_data_codec($module, encode, decode, copy, /)\n--\n\n"
     "Install the array and frame rules (cachekit/_data.py does, at import)."},
    {NULL, NULL, 0, NULL},
};

int ck_codec_data_exec(PyObject *module)
{
    return PyModule_AddFunctions(module, data_methods);
}
