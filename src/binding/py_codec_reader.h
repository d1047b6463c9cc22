/*
 * py_codec_reader.h - the bounded msgpack reader under ck_py_unpack().
 *
 * Shared by py_codec_reader.c (parsing a value's head with every length
 * and count bounded, see the comment there) and py_codec_unpack.c (turning
 * heads into Python objects). Internal to the codec.
 */
#ifndef CK_PY_CODEC_READER_H
#define CK_PY_CODEC_READER_H

#include "py_codec.h"

#include <stdint.h>

typedef struct {
    ck_state *st;
    const unsigned char *start; /* of the whole input, for offsets */
    const unsigned char *p;     /* next byte to read */
    const unsigned char *end;   /* input end, or the current ext payload's */
    size_t pending;             /* values promised, not yet started
                                   (py_codec_reader.c explains) */
    int depth;                  /* levels open; <= CK_CODEC_MAX_DEPTH */
    PyObject *types;            /* borrowed dict "module:qualname" -> class
                                   trusted for this decode, or NULL */
} reader;

typedef enum {
    MP_NIL,
    MP_BOOL,
    MP_INT,  /* any integer that fits int64_t */
    MP_UINT, /* uint64 above INT64_MAX */
    MP_FLOAT,
    MP_STR,
    MP_BIN,
    MP_ARRAY,
    MP_MAP,
    MP_EXT,
} mp_kind;

typedef struct {
    mp_kind kind;
    size_t offset;             /* of the type byte, for messages */
    int64_t i;                 /* MP_INT; MP_BOOL: 0 or 1 */
    uint64_t u;                /* MP_UINT */
    double f;                  /* MP_FLOAT */
    size_t len;                /* STR/BIN/EXT: bytes; ARRAY/MAP: count */
    int ext_type;              /* MP_EXT */
    const unsigned char *body; /* STR/BIN/EXT: first payload byte */
} mp_head;

/* Offset of p in the whole input, for messages. */
size_t reader_offset(const reader *r, const unsigned char *p);

/* Raise SerializationError with a printf-style message and return NULL; an
   exception already set becomes its __cause__ (MemoryError and non-Exception
   errors pass through unchanged). */
PyObject *reader_fail(reader *r, const char *fmt, ...);

/* Parse the head of the next value into h: scalars complete, STR/BIN/EXT
   payload bounded and skipped (h->body), ARRAY/MAP with r->p at the first
   element and the count charged to r->pending. 0, or -1 with an exception. */
int reader_head(reader *r, mp_head *h);

/* Open a nesting level (the caller closes it with r->depth--); -1 with
   SerializationError past CK_CODEC_MAX_DEPTH. */
int reader_depth_enter(reader *r);

/* py_codec_unpack.c: decode the next value (any kind). New reference, or
   NULL with an exception set. */
PyObject *reader_value(reader *r);

/* py_codec_app.c: the payload of an application-type extension (codes
   CK_EXT_APP_FIRST..CK_EXT_APP_LAST), inside its window. */
PyObject *ck_unpack_app(reader *r, const mp_head *ext);

/* py_codec_data.c: the payload of CK_EXT_NDARRAY / CK_EXT_FRAME, inside its
   window. */
PyObject *ck_unpack_data(reader *r, const mp_head *ext);

#endif /* CK_PY_CODEC_READER_H */
