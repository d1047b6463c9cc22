/*
 * py_codec_pack_internal.h - shared by the files that make up ck_py_pack().
 *
 * The encoder is split by job: py_codec_pack.c (context, limits, framing,
 * statistics, type dispatch and the int/str/bytes encoders it inlines),
 * py_codec_pack_scalar.c (raw-payload extensions, Decimal, UUID, the
 * datetime family), py_codec_pack_container.c (list, tuple, dict, set,
 * canonical ordering) and py_codec_pack_key.c (key-only encodings). Not
 * included outside them: the functions here have no stability promise.
 *
 * Every pack_* encoder appends to `out` and returns 0, or -1 with an
 * exception set (out then holds a partial encoding the caller discards) or,
 * when c->stopped is set, without one: the output limit of ck_py_pack_ex
 * was passed. Nothing but ck_py_pack_ex may clear or test for an exception
 * after a -1, so that case needs no special handling in the encoders.
 * `obj` is borrowed; a caller that got it from a mutable container holds its
 * own strong reference while the encoder runs (user code may run, see the
 * comment at the top of py_codec_pack.c).
 */
#ifndef CK_PY_CODEC_PACK_INTERNAL_H
#define CK_PY_CODEC_PACK_INTERNAL_H

#include "py_codec.h"

#include <msgpack.h>
#include <stdint.h>

typedef struct {
    ck_state *st;
    int flags;            /* CK_PACK_* */
    int depth;            /* containers currently open; <= CK_CODEC_MAX_DEPTH */
    ck_pack_stats *stats; /* NULL: no statistics (ck_py_pack) */
    size_t limit;         /* stats->limit, or 0: no limit */
    int stopped;          /* set by pack_stop: the -1 being returned carries
                             no exception, the output passed `limit` */
} pack_ctx;

/* msgpack-c's packer only fails when ck_buf cannot grow. */
static inline int pack_nomem(void)
{
    PyErr_NoMemory();
    return -1;
}

/* --- py_codec_pack.c: context, errors, framing, dispatch --------------- */

/* Any supported value: the exact-type dispatch. */
int pack_obj(pack_ctx *c, ck_buf *out, PyObject *obj);
/* The output passed c->limit: mark it and return -1 without an exception;
   every encoder unwinds as for an error and ck_py_pack_ex returns 1. */
int pack_stop(pack_ctx *c);
/* 1 if appending n more bytes to out would pass the limit (checked before
   copying a large payload, so a huge str is refused without copying it). */
static inline int pack_would_pass(const pack_ctx *c, const ck_buf *out, size_t n)
{
    return c->limit != 0 && (n > c->limit || out->len > c->limit - n);
}
/* Raise SerializationError for a length over 32 bits / nesting past
   CK_CODEC_MAX_DEPTH; both return -1. */
int pack_raise_too_long(pack_ctx *c, size_t n, const char *what);
int pack_raise_too_deep(pack_ctx *c);
/* New reference to "<module><sep><qualname>" of tp. */
PyObject *pack_type_name(ck_state *st, PyTypeObject *tp, const char *sep, int omit_builtins);
/* Raise UnsupportedTypeError naming obj's type; returns -1. */
int pack_raise_unsupported(pack_ctx *c, PyObject *obj);

/*
 * The small helpers every encoder calls are inline here: the encoders live
 * in several files, and out-of-line calls for these cost about 15% on a
 * small cache key.
 */

/* msgpack's str/bin/ext/array/map lengths are 32-bit; msgpack-c would
   silently truncate a larger one, so refuse it here. */
static inline int pack_check_len32(pack_ctx *c, size_t n, const char *what)
{
    return n > UINT32_MAX ? pack_raise_too_long(c, n, what) : 0;
}

/* Open one level of nesting: lists, tuples, dicts, sets and every extension
   whose payload is nested msgpack. The explicit limit makes the result
   decodable (ck_py_unpack enforces the same limit); Py_EnterRecursiveCall
   also protects the C stack when we are called deep inside Python code. */
static inline int pack_depth_enter(pack_ctx *c)
{
    if (c->depth >= CK_CODEC_MAX_DEPTH) {
        return pack_raise_too_deep(c);
    }
    if (Py_EnterRecursiveCall(" while packing a cachekit value")) {
        return -1;
    }
    c->depth++;
    return 0;
}

static inline void pack_depth_leave(pack_ctx *c)
{
    c->depth--;
    Py_LeaveRecursiveCall();
}

/*
 * Extensions whose payload is nested msgpack (tuple, set, frozenset, the
 * datetime family, key-custom) are always framed as ext32: 0xc9, a 4-byte
 * big-endian payload length, the type byte. The length is unknown until the
 * payload is encoded, so pack_ext_begin writes a zero placeholder and pack_ext_end
 * patches it in place. The alternative, encoding the payload into a temporary
 * buffer and copying it behind a minimal header, would copy every byte once
 * per enclosing tuple (O(size x depth)) and allocate on the hot path; the
 * price here is up to 4 header bytes more than the shortest ext form.
 * Positions are kept as offsets because the buffer may move when it grows.
 * Payloads of known length (bigint, bytearray, Decimal, UUID, key-class) use
 * msgpack-c's minimal ext header instead.
 */
static inline int pack_ext_begin(ck_buf *out, int8_t type, size_t *hdr_pos)
{
    unsigned char hdr[6] = {0xc9, 0, 0, 0, 0, (unsigned char)type};

    *hdr_pos = out->len;
    if (ck_buf_append(out, hdr, sizeof(hdr)) < 0) {
        return pack_nomem();
    }
    return 0;
}

static inline int pack_ext_end(pack_ctx *c, ck_buf *out, size_t hdr_pos)
{
    size_t n = out->len - hdr_pos - 6;
    unsigned char *p = out->data + hdr_pos + 1;

    if (pack_check_len32(c, n, "extension payload") < 0) {
        return -1;
    }
    p[0] = (unsigned char)(n >> 24);
    p[1] = (unsigned char)(n >> 16);
    p[2] = (unsigned char)(n >> 8);
    p[3] = (unsigned char)n;
    return 0;
}
int pack_str(pack_ctx *c, ck_buf *out, PyObject *obj);

/* --- py_codec_pack_scalar.c --------------------------------------------- */

int pack_scalar_init(void); /* the file's datetime C API import */
/* Extension whose payload is n raw bytes at p. */
int pack_ext_bytes(pack_ctx *c, ck_buf *out, int8_t type, const void *p, size_t n);
int pack_decimal(pack_ctx *c, ck_buf *out, PyObject *obj);
int pack_uuid(pack_ctx *c, ck_buf *out, PyObject *obj);
int pack_datetime(pack_ctx *c, ck_buf *out, PyObject *obj);
int pack_date(pack_ctx *c, ck_buf *out, PyObject *obj);
int pack_time(pack_ctx *c, ck_buf *out, PyObject *obj);
int pack_timedelta(pack_ctx *c, ck_buf *out, PyObject *obj);

/* --- py_codec_pack_container.c ------------------------------------------ */

int pack_list(pack_ctx *c, ck_buf *out, PyObject *obj);
int pack_tuple(pack_ctx *c, ck_buf *out, PyObject *obj);
int pack_dict(pack_ctx *c, ck_buf *out, PyObject *obj);
/* set or frozenset, as ext `type` (CK_EXT_SET / CK_EXT_FROZENSET). */
int pack_set(pack_ctx *c, ck_buf *out, PyObject *obj, int8_t type);

/* --- py_codec_app.c ------------------------------------------------------ */

/* Value mode, a type no exact match covers: an application type through
   st->app_encode, or UnsupportedTypeError. */
int pack_app(pack_ctx *c, ck_buf *out, PyObject *obj);
/* ck_py_copy of an application-type value: re-built from a copy of its
   payload (an Enum member is returned as itself). */
PyObject *copy_app(pack_ctx *c, PyObject *obj);

/* --- py_codec_data.c ----------------------------------------------------- */

/* 1 if obj's type is one py_codec_data.c handles (a numpy array or scalar,
   a pandas DataFrame or Series, a polars DataFrame); no Python calls. */
int data_type_check(PyTypeObject *tp);
/* Encode such an obj (ext 20 / 21). 0, or -1. */
int pack_data(pack_ctx *c, ck_buf *out, PyObject *obj);
/* ck_py_copy of such an obj: st->data_copy(obj). */
PyObject *copy_data(pack_ctx *c, PyObject *obj);

/* --- py_codec_copy.c ----------------------------------------------------- */

/* Any value: new reference to obj or its copy (ck_py_copy's recursion). */
PyObject *copy_value(pack_ctx *c, PyObject *obj);

/* --- py_codec_pack_key.c ------------------------------------------------- */

/* CK_PACK_KEY only: anything the stored-value types do not cover. */
int pack_key_extra(pack_ctx *c, ck_buf *out, PyObject *obj);

#endif /* CK_PY_CODEC_PACK_INTERNAL_H */
