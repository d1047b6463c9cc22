/*
 * py_codec_reader.c - a bounded, single-pass msgpack reader: parses one
 * value's head (type byte, length, scalar) at a time into an mp_head without
 * creating objects (py_codec_unpack.c builds the objects).
 *
 * Why not msgpack-c's unpacker: it allocates zone memory for as many
 * elements as an array or map header claims before checking that claim
 * against the bytes actually present (a 5-byte b"\xdd\xff\xff\xff\xff" asks
 * for 4 G objects), and it has no configurable depth limit. Cache entries can
 * come from a shared Redis, so the decoder treats its input as hostile:
 *
 *   - every length or count is checked against the bytes remaining before
 *     anything is allocated. Each value takes at least one byte, so the
 *     reader keeps `pending`, the number of values promised by the headers
 *     read so far but not yet started, and an array of n is accepted only if
 *     pending + n bytes remain (a map of n: pending + 2n). Checking n alone
 *     would let 64 nested arrays each claim nearly the whole input and
 *     allocate 64 x 8 bytes per input byte; with pending, the slots of all
 *     open containers together never exceed the input length (plus one per
 *     level). Allocation stays a small constant times the input length;
 *   - arrays, maps and extensions with nested payloads open a nesting level;
 *     more than CK_CODEC_MAX_DEPTH are refused, which also bounds the C stack
 *     (so no Py_EnterRecursiveCall, whose RecursionError would not be a
 *     SerializationError);
 *   - every failure raises SerializationError with the offset where it was
 *     found.
 */
#include "py_codec_reader.h"

#include <assert.h>
#include <stdarg.h>
#include <string.h>

size_t reader_offset(const reader *r, const unsigned char *p)
{
    return (size_t)(p - r->start);
}

static size_t remaining(const reader *r)
{
    return (size_t)(r->end - r->p);
}

/*
 * Raise SerializationError and return NULL. An exception already set (from a
 * constructor we called) becomes its __cause__, unless it is a MemoryError or
 * not an Exception at all (KeyboardInterrupt), which are passed on unchanged.
 */
PyObject *reader_fail(reader *r, const char *fmt, ...)
{
    PyObject *type = NULL, *value = NULL, *tb = NULL;
    PyObject *msg = NULL;
    va_list ap;

    /* Set aside the pending exception: formatting may call repr(). */
    PyErr_Fetch(&type, &value, &tb);
    if (type != NULL && (!PyErr_GivenExceptionMatches(type, PyExc_Exception) ||
                         PyErr_GivenExceptionMatches(type, PyExc_MemoryError))) {
        PyErr_Restore(type, value, tb);
        return NULL;
    }
    va_start(ap, fmt);
    msg = PyUnicode_FromFormatV(fmt, ap);
    va_end(ap);
    if (msg == NULL) {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return NULL;
    }
    if (type != NULL) {
        PyErr_Restore(type, value, tb);
        _PyErr_FormatFromCause(r->st->SerializationError, "%U", msg);
    } else {
        PyErr_SetObject(r->st->SerializationError, msg);
    }
    Py_DECREF(msg);
    return NULL;
}

static int need(reader *r, size_t n)
{
    if (remaining(r) < n) {
        reader_fail(r, "truncated msgpack data at offset %zu", reader_offset(r, r->p));
        return -1;
    }
    return 0;
}

static uint64_t load_be(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* Read an n-byte big-endian unsigned field. */
static int read_be(reader *r, size_t n, uint64_t *out)
{
    if (need(r, n) < 0) {
        return -1;
    }
    *out = load_be(r->p, n);
    r->p += n;
    return 0;
}

/* STR/BIN/EXT: the payload must be present; skip over it. */
static int head_body(reader *r, mp_head *h, size_t len)
{
    if (remaining(r) < len) {
        reader_fail(r, "%s length %zu exceeds remaining input at offset %zu",
             h->kind == MP_STR ? "str" : (h->kind == MP_BIN ? "bin" : "extension"), len,
             h->offset);
        return -1;
    }
    h->len = len;
    h->body = r->p;
    r->p += len;
    return 0;
}

/* ARRAY/MAP: the new elements and every value already promised each take
   at least a byte, so they must all fit in what is left; checked before
   anything is allocated for them. */
static int head_count(reader *r, mp_head *h, size_t n)
{
    size_t per = h->kind == MP_MAP ? 2 : 1;
    size_t left = remaining(r);

    if (r->pending > left || n > (left - r->pending) / per) {
        reader_fail(r, "%s count %zu exceeds remaining input at offset %zu",
             h->kind == MP_MAP ? "map" : "array", n, h->offset);
        return -1;
    }
    h->len = n;
    r->pending += n * per;
    return 0;
}

/*
 * Parse the head of the next value. Scalars are complete; STR/BIN/EXT have
 * their payload bounded and skipped (h->body points at it); ARRAY/MAP leave
 * r->p at the first element.
 */
int reader_head(reader *r, mp_head *h)
{
    unsigned int b;
    uint64_t v;
    size_t w;

    h->offset = reader_offset(r, r->p);
    if (need(r, 1) < 0) {
        return -1;
    }
    /* Every head read is a value some header promised (or the top level). */
    assert(r->pending > 0);
    r->pending--;
    b = *r->p++;
    if (b <= 0x7f) { /* positive fixint */
        h->kind = MP_INT;
        h->i = b;
        return 0;
    }
    if (b >= 0xe0) { /* negative fixint */
        h->kind = MP_INT;
        h->i = (int64_t)b - 256;
        return 0;
    }
    if (b >= 0xa0 && b <= 0xbf) {
        h->kind = MP_STR;
        return head_body(r, h, b & 0x1f);
    }
    if (b >= 0x90 && b <= 0x9f) {
        h->kind = MP_ARRAY;
        return head_count(r, h, b & 0x0f);
    }
    if (b >= 0x80 && b <= 0x8f) {
        h->kind = MP_MAP;
        return head_count(r, h, b & 0x0f);
    }
    switch (b) {
    case 0xc0:
        h->kind = MP_NIL;
        return 0;
    case 0xc2:
    case 0xc3:
        h->kind = MP_BOOL;
        h->i = b == 0xc3;
        return 0;
    case 0xc4: /* bin 8/16/32 */
    case 0xc5:
    case 0xc6:
        h->kind = MP_BIN;
        if (read_be(r, (size_t)1 << (b - 0xc4), &v) < 0) {
            return -1;
        }
        return head_body(r, h, (size_t)v);
    case 0xc7: /* ext 8/16/32: length, then type */
    case 0xc8:
    case 0xc9:
        h->kind = MP_EXT;
        if (read_be(r, (size_t)1 << (b - 0xc7), &v) < 0 || need(r, 1) < 0) {
            return -1;
        }
        h->ext_type = (int8_t)*r->p++;
        return head_body(r, h, (size_t)v);
    case 0xca: { /* float 32 */
        uint32_t bits;
        float f;

        if (read_be(r, 4, &v) < 0) {
            return -1;
        }
        bits = (uint32_t)v;
        memcpy(&f, &bits, sizeof(f));
        h->kind = MP_FLOAT;
        h->f = f;
        return 0;
    }
    case 0xcb: { /* float 64 */
        double d;

        if (read_be(r, 8, &v) < 0) {
            return -1;
        }
        memcpy(&d, &v, sizeof(d));
        h->kind = MP_FLOAT;
        h->f = d;
        return 0;
    }
    case 0xcc: /* uint 8/16/32/64 */
    case 0xcd:
    case 0xce:
    case 0xcf:
        if (read_be(r, (size_t)1 << (b - 0xcc), &v) < 0) {
            return -1;
        }
        if (v > INT64_MAX) {
            h->kind = MP_UINT;
            h->u = v;
        } else {
            h->kind = MP_INT;
            h->i = (int64_t)v;
        }
        return 0;
    case 0xd0: /* int 8/16/32/64: sign-extend from w bytes */
    case 0xd1:
    case 0xd2:
    case 0xd3:
        w = (size_t)1 << (b - 0xd0);
        if (read_be(r, w, &v) < 0) {
            return -1;
        }
        if (w < 8 && (v >> (w * 8 - 1))) {
            v |= ~(uint64_t)0 << (w * 8);
        }
        h->kind = MP_INT;
        memcpy(&h->i, &v, sizeof(h->i));
        return 0;
    case 0xd4: /* fixext 1/2/4/8/16: type, then payload */
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        h->kind = MP_EXT;
        if (need(r, 1) < 0) {
            return -1;
        }
        h->ext_type = (int8_t)*r->p++;
        return head_body(r, h, (size_t)1 << (b - 0xd4));
    case 0xd9: /* str 8/16/32 */
    case 0xda:
    case 0xdb:
        h->kind = MP_STR;
        if (read_be(r, (size_t)1 << (b - 0xd9), &v) < 0) {
            return -1;
        }
        return head_body(r, h, (size_t)v);
    case 0xdc: /* array 16/32 */
    case 0xdd:
        h->kind = MP_ARRAY;
        if (read_be(r, b == 0xdc ? 2 : 4, &v) < 0) {
            return -1;
        }
        return head_count(r, h, (size_t)v);
    case 0xde: /* map 16/32 */
    case 0xdf:
        h->kind = MP_MAP;
        if (read_be(r, b == 0xde ? 2 : 4, &v) < 0) {
            return -1;
        }
        return head_count(r, h, (size_t)v);
    default: /* 0xc1 is reserved */
        reader_fail(r, "invalid msgpack type byte 0x%x at offset %zu", b, h->offset);
        return -1;
    }
}

int reader_depth_enter(reader *r)
{
    if (r->depth >= CK_CODEC_MAX_DEPTH) {
        reader_fail(r, "nesting deeper than %d at offset %zu", CK_CODEC_MAX_DEPTH, reader_offset(r, r->p));
        return -1;
    }
    r->depth++;
    return 0;
}
