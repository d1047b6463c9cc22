/*
 * py_codec_pack_scalar.c - encoders for the leaf types beyond the builtin
 * scalars: extensions with a raw payload (bytearray), Decimal, UUID and the
 * datetime family. (int, float, str and bytes are encoded next to the
 * dispatch in py_codec_pack.c, where the compiler can inline them.)
 *
 * Part of ck_py_pack() (py_codec_pack_internal.h). User code can run here
 * through tzinfo.utcoffset(), ZoneInfo.key, Decimal.__str__ and UUID.int;
 * none of these encoders iterates a container, so they hold no borrowed
 * references across those calls.
 */
#include "py_codec_pack_internal.h"

#include <datetime.h>

int pack_scalar_init(void)
{
    /* This translation unit's copy of the datetime C API (see py_codec.h). */
    PyDateTime_IMPORT;
    return PyDateTimeAPI == NULL ? -1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Known-length extensions, Decimal, UUID                                    */
/* ------------------------------------------------------------------------ */

/* Extension with a payload of known length. */
int pack_ext_bytes(pack_ctx *c, ck_buf *out, int8_t type, const void *p, size_t n)
{
    msgpack_packer pk;

    if (pack_check_len32(c, n, "extension payload") < 0) {
        return -1;
    }
    if (pack_would_pass(c, out, n)) {
        return pack_stop(c);
    }
    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    return msgpack_pack_ext_with_body(&pk, p, n, type) != 0 ? pack_nomem() : 0;
}

int pack_decimal(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    PyObject *s = NULL;
    const char *p;
    Py_ssize_t n;
    int rc = -1;

    /* str(d) is exact and keeps NaN/sNaN/Infinity, the sign of zero and the
       exponent, so Decimal(str(d)) reproduces d. */
    s = PyObject_Str(obj);
    if (s == NULL) {
        goto error;
    }
    p = PyUnicode_AsUTF8AndSize(s, &n);
    if (p == NULL) {
        goto error;
    }
    rc = pack_ext_bytes(c, out, CK_EXT_DECIMAL, p, (size_t)n);
error:
    Py_XDECREF(s);
    return rc;
}

int pack_uuid(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    PyObject *value = NULL;
    unsigned char bytes[16];
    int rc = -1;

    /* UUID.int is a slot; converting it here is cheaper than the .bytes
       property, which runs Python code. */
    value = PyObject_GetAttr(obj, c->st->str_int);
    if (value == NULL) {
        goto error;
    }
    if (!PyLong_CheckExact(value)) {
        PyErr_SetString(c->st->SerializationError, "UUID.int is not an int");
        goto error;
    }
    if (_PyLong_AsByteArray((PyLongObject *)value, bytes, sizeof(bytes), 0, 0) < 0) {
        goto error;
    }
    rc = pack_ext_bytes(c, out, CK_EXT_UUID, bytes, sizeof(bytes));
error:
    Py_XDECREF(value);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Datetime family                                                           */
/* ------------------------------------------------------------------------ */

/* tz field, aware value not keyed by a ZoneInfo: the UTC offset in
   microseconds. obj.utcoffset() asks the tzinfo with the right argument (the
   datetime itself, or None for a time) and validates the result. */
static int pack_tz_offset(pack_ctx *c, ck_buf *out, PyObject *obj, PyObject *tz)
{
    msgpack_packer pk;
    PyObject *offset = NULL;
    PyObject *name = NULL;
    long long us;
    int rc = -1;

    /* No interned "utcoffset" in the shared state; this path is only taken
       for aware values that are not ZoneInfo, so the name lookup is fine. */
    offset = PyObject_CallMethod(obj, "utcoffset", NULL);
    if (offset == NULL) {
        goto error;
    }
    if (offset == Py_None) {
        /* Dropping the tzinfo would turn an aware value into a naive one. */
        name = pack_type_name(c->st, Py_TYPE(tz), ".", 1);
        if (name != NULL) {
            PyErr_Format(c->st->UnsupportedTypeError,
                         "cachekit cannot store a %s whose tzinfo of type '%U' gives no UTC "
                         "offset",
                         Py_TYPE(obj)->tp_name, name);
        }
        goto error;
    }
    if (!PyDelta_Check(offset)) {
        PyErr_SetString(PyExc_TypeError, "utcoffset() did not return a timedelta");
        goto error;
    }
    /* |offset| < 24h (checked by utcoffset()), so this cannot overflow. */
    us = ((long long)PyDateTime_DELTA_GET_DAYS(offset) * 86400 +
          PyDateTime_DELTA_GET_SECONDS(offset)) *
             1000000 +
         PyDateTime_DELTA_GET_MICROSECONDS(offset);
    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    if (msgpack_pack_long_long(&pk, us) != 0) {
        pack_nomem();
        goto error;
    }
    rc = 0;
error:
    Py_XDECREF(offset);
    Py_XDECREF(name);
    return rc;
}

/* The tz field of DATETIME and TIME: nil when naive, the IANA key when the
   tzinfo is exactly a ZoneInfo with a key, else the UTC offset. */
static int pack_tz(pack_ctx *c, ck_buf *out, PyObject *obj, PyObject *tz)
{
    msgpack_packer pk;
    PyObject *key;
    int rc;

    if (tz == Py_None) {
        msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
        return msgpack_pack_nil(&pk) != 0 ? pack_nomem() : 0;
    }
    if (Py_IS_TYPE(tz, (PyTypeObject *)c->st->ZoneInfoType)) {
        key = PyObject_GetAttr(tz, c->st->str_key);
        if (key == NULL) {
            return -1;
        }
        if (PyUnicode_CheckExact(key)) {
            rc = pack_str(c, out, key);
            Py_DECREF(key);
            return rc;
        }
        /* ZoneInfo.from_file() zones have no key: stored as an offset. */
        Py_DECREF(key);
    }
    return pack_tz_offset(c, out, obj, tz);
}

/* Ext `type` whose payload is an array of the n ints in fields, then, if
   with_tz, the tz field of obj. */
static int pack_datetime_like(pack_ctx *c, ck_buf *out, PyObject *obj, int8_t type,
                              const int *fields, size_t n, PyObject *tz)
{
    msgpack_packer pk;
    size_t hdr, i;
    int rc = -1;

    if (pack_depth_enter(c) < 0) {
        return -1;
    }
    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    if (pack_ext_begin(out, type, &hdr) < 0) {
        goto error;
    }
    if (msgpack_pack_array(&pk, n + (tz != NULL)) != 0) {
        pack_nomem();
        goto error;
    }
    for (i = 0; i < n; i++) {
        if (msgpack_pack_int(&pk, fields[i]) != 0) {
            pack_nomem();
            goto error;
        }
    }
    if (tz != NULL && pack_tz(c, out, obj, tz) < 0) {
        goto error;
    }
    rc = pack_ext_end(c, out, hdr);
error:
    pack_depth_leave(c);
    return rc;
}

int pack_datetime(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    int f[8] = {
        PyDateTime_GET_YEAR(obj),        PyDateTime_GET_MONTH(obj),
        PyDateTime_GET_DAY(obj),         PyDateTime_DATE_GET_HOUR(obj),
        PyDateTime_DATE_GET_MINUTE(obj), PyDateTime_DATE_GET_SECOND(obj),
        PyDateTime_DATE_GET_MICROSECOND(obj), PyDateTime_DATE_GET_FOLD(obj),
    };

    return pack_datetime_like(c, out, obj, CK_EXT_DATETIME, f, 8,
                              PyDateTime_DATE_GET_TZINFO(obj));
}

int pack_date(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    int f[3] = {PyDateTime_GET_YEAR(obj), PyDateTime_GET_MONTH(obj), PyDateTime_GET_DAY(obj)};

    return pack_datetime_like(c, out, obj, CK_EXT_DATE, f, 3, NULL);
}

int pack_time(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    int f[5] = {
        PyDateTime_TIME_GET_HOUR(obj),        PyDateTime_TIME_GET_MINUTE(obj),
        PyDateTime_TIME_GET_SECOND(obj),      PyDateTime_TIME_GET_MICROSECOND(obj),
        PyDateTime_TIME_GET_FOLD(obj),
    };

    return pack_datetime_like(c, out, obj, CK_EXT_TIME, f, 5, PyDateTime_TIME_GET_TZINFO(obj));
}

int pack_timedelta(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    int f[3] = {PyDateTime_DELTA_GET_DAYS(obj), PyDateTime_DELTA_GET_SECONDS(obj),
                PyDateTime_DELTA_GET_MICROSECONDS(obj)};

    return pack_datetime_like(c, out, obj, CK_EXT_TIMEDELTA, f, 3, NULL);
}

