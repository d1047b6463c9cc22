/*
 * py_format.c - Python binding of the entry frame (ck_format.h).
 *
 * Owns the module functions frame, unframe, read_header, encode_entry and
 * decode_entry: argument parsing, pinning inputs with Py_buffer, releasing
 * the GIL around LZ4/XXH3 work on large inputs, and turning ck_error into
 * Python exceptions. The byte layout itself lives in ck_format.c.
 *
 * Exceptions: anything wrong with a stored entry raises IntegrityError (a
 * SerializationError), so the cache layer can treat it as a miss with one
 * except clause; bad arguments raise TypeError/ValueError; allocation
 * failure raises MemoryError.
 */
#include "module_state.h"

#include "ck_format.h"
#include "py_args.h"
#include "py_codec.h"
#include "py_format.h"
#include "py_scratch.h"

/* Below this many bytes LZ4 and XXH3 finish in microseconds, less than the
   cost of dropping and retaking the GIL. */
#define CK_FORMAT_NOGIL_MIN ((size_t)64 << 10)

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/* A failed decode: the entry is at fault unless we ran out of memory. */
static void raise_decode_error(ck_state *st, const ck_error *err)
{
    if (err->code == CK_ENOMEM) {
        PyErr_NoMemory();
    } else {
        PyErr_SetString(st->IntegrityError, err->msg);
    }
}

/* A failed encode: the caller's input is at fault unless memory ran out. */
static void raise_encode_error(const ck_error *err)
{
    if (err->code == CK_ENOMEM) {
        PyErr_NoMemory();
    } else {
        PyErr_SetString(PyExc_ValueError, err->msg);
    }
}

/* ------------------------------------------------------------------------ */
/* Argument parsing                                                         */
/* ------------------------------------------------------------------------ */

/* An optional integer parameter that follows the one positional-only
   argument every function here takes. */
typedef struct {
    const char *name;
    Py_ssize_t value; /* the default on entry, the caller's value on return */
} int_param;

/* Parse f(x, /, p0=d0, p1=d1, ...): x positional-only, the integer params
   by position or keyword (through __index__, so floats are refused).
   0, or -1 with TypeError/OverflowError set. */
#define CK_MAX_INT_PARAMS 4

static int parse_int_params(const char *fname, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames, int_param *params, Py_ssize_t nparams)
{
    const char *names[CK_MAX_INT_PARAMS];
    PyObject *slots[1 + CK_MAX_INT_PARAMS];
    Py_ssize_t i;

    for (i = 0; i < nparams; i++) {
        names[i] = params[i].name;
    }
    if (ck_parse_fastcall(fname, args, nargs, kwnames, 1, names, nparams, slots) < 0) {
        return -1;
    }
    for (i = 0; i < nparams; i++) {
        if (slots[1 + i] == NULL) {
            continue;
        }
        params[i].value = PyNumber_AsSsize_t(slots[1 + i], PyExc_OverflowError);
        if (params[i].value == -1 && PyErr_Occurred()) {
            return -1;
        }
    }
    return 0;
}

/* Fill lim from max_size and max_ratio arguments. 0, or -1 with ValueError. */
static int limits_from_args(Py_ssize_t max_size, Py_ssize_t max_ratio, ck_entry_limits *lim)
{
    if (max_size < 0) {
        PyErr_SetString(PyExc_ValueError, "max_size must be >= 0");
        return -1;
    }
    if (max_ratio < 1 || (uint64_t)max_ratio > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "max_ratio must be between 1 and 2**32 - 1");
        return -1;
    }
    lim->max_size = (size_t)max_size;
    lim->max_ratio = (uint32_t)max_ratio;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Core calls, with the GIL released on large inputs                        */
/* ------------------------------------------------------------------------ */

/*
 * Safe without the GIL: every argument is C memory the caller keeps alive
 * (a pinned Py_buffer or a local ck_buf). If another thread rewrites a
 * writable buffer meanwhile, the entry fails its checksum when read back;
 * memory safety does not depend on the contents.
 */
static int encode_nogil_if_large(const unsigned char *plaintext, size_t n, uint8_t serializer,
                                 size_t compress_min, ck_buf *out, ck_error *err)
{
    int rc;

    if (n < CK_FORMAT_NOGIL_MIN) {
        return ck_entry_encode(plaintext, n, serializer, compress_min, out, err);
    }
    Py_BEGIN_ALLOW_THREADS
    rc = ck_entry_encode(plaintext, n, serializer, compress_min, out, err);
    Py_END_ALLOW_THREADS
    return rc;
}

/*
 * The GIL is released only for read-only buffers: a writable one (bytearray)
 * could be changed by another Python thread between the checksum check and
 * our use of the uncompressed plaintext, handing out unverified bytes.
 */
static int decode_nogil_if_large(const Py_buffer *view, const ck_entry_limits *lim,
                                 ck_entry_header *h, const unsigned char **plaintext,
                                 size_t *plaintext_len, ck_buf *out, ck_error *err)
{
    const unsigned char *buf = (const unsigned char *)view->buf;
    size_t n = (size_t)view->len;
    int rc;

    if (n < CK_FORMAT_NOGIL_MIN || !view->readonly) {
        return ck_entry_decode(buf, n, lim, h, plaintext, plaintext_len, out, err);
    }
    Py_BEGIN_ALLOW_THREADS
    rc = ck_entry_decode(buf, n, lim, h, plaintext, plaintext_len, out, err);
    Py_END_ALLOW_THREADS
    return rc;
}

/*
 * Frame plaintext[0..n) straight into a new bytes object: sized for the
 * plain payload (a compressed one is only kept when strictly smaller) and
 * shrunk afterwards, so the entry is written once, with no intermediate
 * buffer to copy from and free. New reference, or NULL with an exception.
 */
PyObject *ck_py_frame_bytes(const unsigned char *plaintext, size_t n, uint8_t serializer,
                            size_t compress_min)
{
    PyObject *result;
    ck_buf out;
    ck_error err;

    /* Checked before the allocation, which would otherwise be attempted. */
    if (n > UINT32_MAX || n > (size_t)PY_SSIZE_T_MAX - CK_ENTRY_HEADER_LEN) {
        PyErr_Format(PyExc_ValueError, "plaintext of %zu bytes exceeds the 4 GiB entry limit", n);
        return NULL;
    }
    result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(CK_ENTRY_HEADER_LEN + n));
    if (result == NULL) {
        return NULL;
    }
    /* Nothing else can see result yet, so it may be written without the GIL. */
    ck_buf_init_fixed(&out, (unsigned char *)PyBytes_AS_STRING(result), CK_ENTRY_HEADER_LEN + n);
    if (encode_nogil_if_large(plaintext, n, serializer, compress_min, &out, &err) < 0) {
        Py_DECREF(result);
        raise_encode_error(&err);
        return NULL;
    }
    if (out.len != CK_ENTRY_HEADER_LEN + n &&
        _PyBytes_Resize(&result, (Py_ssize_t)out.len) < 0) {
        return NULL; /* result was released */
    }
    return result;
}

/* ------------------------------------------------------------------------ */
/* frame / unframe                                                          */
/* ------------------------------------------------------------------------ */

PyDoc_STRVAR(frame_doc,
             "frame($module, payload, /, serializer=1, compress_min=1024)\n--\n\n"
             "Wrap an already serialized buffer in a cachekit entry frame -> bytes.\n\n"
             "serializer is the id recorded in the header: 1 msgpack, 2 json, 3 arrow.\n"
             "The payload is LZ4-compressed when it is at least compress_min bytes\n"
             "long and compression makes it strictly smaller.");

static PyObject *py_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames)
{
    int_param params[] = {
        {"serializer", CK_SER_MSGPACK},
        {"compress_min", CK_ENTRY_DEFAULT_COMPRESS_MIN},
    };
    Py_buffer view = {0};
    PyObject *result = NULL;

    (void)module;
    if (parse_int_params("frame", args, nargs, kwnames, params, 2) < 0) {
        goto error;
    }
    if (params[0].value < CK_SER_MSGPACK || params[0].value > CK_SER_ARROW) {
        PyErr_SetString(PyExc_ValueError, "serializer must be 1 (msgpack), 2 (json) or 3 (arrow)");
        goto error;
    }
    if (params[1].value < 0) {
        PyErr_SetString(PyExc_ValueError, "compress_min must be >= 0");
        goto error;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        goto error;
    }
    result = ck_py_frame_bytes(view.buf, (size_t)view.len, (uint8_t)params[0].value,
                               (size_t)params[1].value);
error:
    PyBuffer_Release(&view);
    return result;
}

PyDoc_STRVAR(unframe_doc,
             "unframe($module, entry, /, max_size=104857600, max_ratio=255)\n--\n\n"
             "Check and open a cachekit entry -> tuple[int, bytes].\n\n"
             "Returns (serializer id, plaintext). Raises IntegrityError when the entry\n"
             "is malformed, truncated, encrypted, fails its checksum, or claims a\n"
             "plaintext larger than max_size or max_ratio times its compressed size.");

/* unframe() and decode_entry(): the same checks; decode picks the result
   (the plaintext, or the value it encodes). */
static PyObject *unframe_impl(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames, int decode)
{
    ck_state *st = ck_state_from_module(module);
    int_param params[] = {
        {"max_size", (Py_ssize_t)CK_ENTRY_DEFAULT_MAX_SIZE},
        {"max_ratio", CK_ENTRY_MAX_LZ4_RATIO},
    };
    Py_buffer view = {0};
    PyObject *result = NULL;
    const unsigned char *plaintext = NULL;
    size_t plaintext_len = 0;
    ck_entry_limits lim;
    ck_entry_header h;
    ck_buf out;
    ck_error err;

    /* Decompression goes into the spare block (py_scratch.h). */
    ck_scratch_take(st, &out, 0);
    if (parse_int_params(decode ? "decode_entry" : "unframe", args, nargs, kwnames, params, 2) <
        0) {
        goto error;
    }
    if (limits_from_args(params[0].value, params[1].value, &lim) < 0) {
        goto error;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        goto error;
    }
    if (decode_nogil_if_large(&view, &lim, &h, &plaintext, &plaintext_len, &out, &err) < 0) {
        raise_decode_error(st, &err);
        goto error;
    }
    /* plaintext may point into view: build the result before releasing it. */
    if (!decode) {
        result = Py_BuildValue("(iy#)", (int)h.serializer, (const char *)plaintext,
                               (Py_ssize_t)plaintext_len);
        goto error;
    }
    /* The bytes came from storage, not from the caller: an entry written by
       another serializer is one this reader cannot use, like a corrupt one. */
    if (h.serializer != CK_SER_MSGPACK) {
        PyErr_Format(st->IntegrityError, "entry serializer %d is not msgpack (1)",
                     (int)h.serializer);
        goto error;
    }
    result = ck_py_unpack(st, plaintext, plaintext_len);
error:
    PyBuffer_Release(&view);
    ck_scratch_give(st, &out);
    return result;
}

static PyObject *py_unframe(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames)
{
    return unframe_impl(module, args, nargs, kwnames, 0);
}

/* ------------------------------------------------------------------------ */
/* read_header                                                              */
/* ------------------------------------------------------------------------ */

PyDoc_STRVAR(read_header_doc,
             "read_header($module, entry, /)\n--\n\n"
             "Parse and validate an entry header without touching the payload -> dict.\n\n"
             "Keys: version, flags, compressed, encrypted, serializer, header_len,\n"
             "original_len, stored_len, checksum. For tests and debugging: no size\n"
             "limits apply, and encrypted headers are accepted.");

static PyObject *py_read_header(PyObject *module, PyObject *entry)
{
    ck_state *st = ck_state_from_module(module);
    /* Limits off: this inspects entries, it never allocates for the payload. */
    const ck_entry_limits lim = {.max_size = SIZE_MAX, .max_ratio = UINT32_MAX};
    Py_buffer view = {0};
    PyObject *result = NULL;
    ck_entry_header h;
    ck_error err;

    if (PyObject_GetBuffer(entry, &view, PyBUF_SIMPLE) < 0) {
        goto error;
    }
    if (ck_entry_parse_header(view.buf, (size_t)view.len, &lim, &h, &err) < 0) {
        raise_decode_error(st, &err);
        goto error;
    }
    result = Py_BuildValue(
        "{s:i,s:i,s:O,s:O,s:i,s:i,s:k,s:k,s:K}", "version", (int)h.version, "flags",
        (int)h.flags, "compressed", (h.flags & CK_ENTRY_FLAG_COMPRESSED) ? Py_True : Py_False,
        "encrypted", (h.flags & CK_ENTRY_FLAG_ENCRYPTED) ? Py_True : Py_False, "serializer",
        (int)h.serializer, "header_len", (int)h.header_len, "original_len",
        (unsigned long)h.original_len, "stored_len", (unsigned long)h.stored_len, "checksum",
        (unsigned long long)h.checksum);
error:
    PyBuffer_Release(&view);
    return result;
}

/* ------------------------------------------------------------------------ */
/* encode_entry / decode_entry                                              */
/* ------------------------------------------------------------------------ */

PyDoc_STRVAR(encode_entry_doc,
             "encode_entry($module, value, /, compress_min=1024)\n--\n\n"
             "Serialize value with the msgpack codec and frame it -> bytes.\n\n"
             "Raises UnsupportedTypeError for values the codec cannot store.");

static PyObject *py_encode_entry(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames)
{
    ck_state *st = ck_state_from_module(module);
    int_param params[] = {
        {"compress_min", CK_ENTRY_DEFAULT_COMPRESS_MIN},
    };
    PyObject *result = NULL;
    ck_buf packed;

    /* The value is packed into the spare block (py_scratch.h) and framed
       from there into the result: one copy, no per-call 1 MiB malloc. */
    ck_scratch_take(st, &packed, 0);
    if (parse_int_params("encode_entry", args, nargs, kwnames, params, 1) < 0) {
        goto error;
    }
    if (params[0].value < 0) {
        PyErr_SetString(PyExc_ValueError, "compress_min must be >= 0");
        goto error;
    }
    if (ck_py_pack(st, args[0], &packed, 0) < 0) {
        goto error;
    }
    result = ck_py_frame_bytes(packed.data, packed.len, CK_SER_MSGPACK, (size_t)params[0].value);
error:
    ck_scratch_give(st, &packed);
    return result;
}

PyDoc_STRVAR(decode_entry_doc,
             "decode_entry($module, entry, /, max_size=104857600, max_ratio=255)\n--\n\n"
             "Check, open and deserialize an entry made by encode_entry -> object.\n\n"
             "Raises IntegrityError for anything unframe refuses and for entries\n"
             "written by another serializer (json, arrow); SerializationError when\n"
             "the msgpack payload itself is malformed.");

static PyObject *py_decode_entry(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames)
{
    return unframe_impl(module, args, nargs, kwnames, 1);
}

/* ------------------------------------------------------------------------ */
/* Registration                                                             */
/* ------------------------------------------------------------------------ */

/* The double cast through void (*)(void) tells gcc the signature mismatch
   is intended (METH_FASTCALL | METH_KEYWORDS functions take 4 arguments). */
#define FASTCALL_KW(f) ((PyCFunction)(void (*)(void))(f))

static PyMethodDef format_methods[] = {
    {"frame", FASTCALL_KW(py_frame), METH_FASTCALL | METH_KEYWORDS, frame_doc},
    {"unframe", FASTCALL_KW(py_unframe), METH_FASTCALL | METH_KEYWORDS, unframe_doc},
    {"read_header", py_read_header, METH_O, read_header_doc},
    {"encode_entry", FASTCALL_KW(py_encode_entry), METH_FASTCALL | METH_KEYWORDS,
     encode_entry_doc},
    {"decode_entry", FASTCALL_KW(py_decode_entry), METH_FASTCALL | METH_KEYWORDS,
     decode_entry_doc},
    {NULL, NULL, 0, NULL},
};

int ck_format_exec(PyObject *module)
{
    return PyModule_AddFunctions(module, format_methods);
}
