/*
 * py_codec_pack_container.c - encoders for list, tuple, dict, set and
 * frozenset, in insertion order or, with CK_PACK_CANONICAL, sorted by the
 * encoding of their elements.
 *
 * Part of ck_py_pack() (py_codec_pack_internal.h). Packing an element can
 * run user code that mutates the container being walked, so every element is
 * held by a strong reference while it is packed, list sizes are re-checked
 * per item and dict/set walks check their size (RuntimeError on change).
 */
#include "py_codec_pack_internal.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Containers in insertion order                                             */
/* ------------------------------------------------------------------------ */

static int pack_raise_changed(const char *what)
{
    PyErr_Format(PyExc_RuntimeError, "%s changed size while cachekit was packing it", what);
    return -1;
}

int pack_list(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    msgpack_packer pk;
    PyObject *item = NULL;
    Py_ssize_t i, n = PyList_GET_SIZE(obj);
    int rc = -1;

    if (pack_depth_enter(c) < 0) {
        return -1;
    }
    if (pack_check_len32(c, (size_t)n, "list") < 0) {
        goto error;
    }
    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    if (msgpack_pack_array(&pk, (size_t)n) != 0) {
        pack_nomem();
        goto error;
    }
    for (i = 0; i < n; i++) {
        /* The header promised n items; user code run while packing an item
           (utcoffset, __cachekit_key__) may have resized the list. */
        if (PyList_GET_SIZE(obj) != n) {
            pack_raise_changed("list");
            goto error;
        }
        item = Py_NewRef(PyList_GET_ITEM(obj, i));
        if (pack_obj(c, out, item) < 0) {
            goto error;
        }
        Py_CLEAR(item);
    }
    rc = 0;
error:
    Py_XDECREF(item);
    pack_depth_leave(c);
    return rc;
}

/* The TUPLE extension's payload. Tuples are immutable and own their items,
   so unlike lists no re-checks or extra references are needed. */
static int pack_tuple_items(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    msgpack_packer pk;
    Py_ssize_t i, n = PyTuple_GET_SIZE(obj);

    if (pack_check_len32(c, (size_t)n, "tuple") < 0) {
        return -1;
    }
    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    if (msgpack_pack_array(&pk, (size_t)n) != 0) {
        return pack_nomem();
    }
    for (i = 0; i < n; i++) {
        if (pack_obj(c, out, PyTuple_GET_ITEM(obj, i)) < 0) {
            return -1;
        }
    }
    return 0;
}

int pack_tuple(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    size_t hdr;
    int rc = -1;

    if (pack_depth_enter(c) < 0) {
        return -1;
    }
    if (pack_ext_begin(out, CK_EXT_TUPLE, &hdr) < 0 || pack_tuple_items(c, out, obj) < 0) {
        goto error;
    }
    rc = pack_ext_end(c, out, hdr);
error:
    pack_depth_leave(c);
    return rc;
}

static int pack_dict_ordered(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    msgpack_packer pk;
    PyObject *key = NULL;
    PyObject *value = NULL;
    PyObject *k, *v;
    Py_ssize_t pos = 0, done = 0, n = PyDict_GET_SIZE(obj);
    int rc = -1;

    if (pack_check_len32(c, (size_t)n, "dict") < 0) {
        return -1;
    }
    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    if (msgpack_pack_map(&pk, (size_t)n) != 0) {
        return pack_nomem();
    }
    while (PyDict_Next(obj, &pos, &k, &v)) {
        if (done == n) {
            pack_raise_changed("dict");
            goto error;
        }
        /* Borrowed from the dict, which user code may mutate meanwhile. */
        key = Py_NewRef(k);
        value = Py_NewRef(v);
        if (pack_obj(c, out, key) < 0 || pack_obj(c, out, value) < 0) {
            goto error;
        }
        Py_CLEAR(key);
        Py_CLEAR(value);
        done++;
        if (PyDict_GET_SIZE(obj) != n) {
            pack_raise_changed("dict");
            goto error;
        }
    }
    if (done != n) {
        pack_raise_changed("dict");
        goto error;
    }
    rc = 0;
error:
    Py_XDECREF(key);
    Py_XDECREF(value);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Canonical containers                                                      */
/* ------------------------------------------------------------------------ */

/*
 * CK_PACK_CANONICAL: a dict's items and a set's elements are emitted in the
 * byte order of their encodings (dict: of the key, ties broken by the whole
 * item), so equal values give equal bytes whatever their insertion or hash
 * order. Each element is encoded once into one scratch ck_buf; spans record
 * where it landed and are sorted, then copied out in order.
 */
typedef struct {
    size_t off;              /* of the element in scratch */
    size_t key_len;          /* bytes of the sort key (dict: the key) */
    size_t len;              /* bytes of the whole element (dict: key+value) */
    const unsigned char *p;  /* scratch.data + off, set once scratch is final */
} span;

#define SPANS_INLINE 8 /* small dicts (keyword arguments) sort without malloc */

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int r = memcmp(x->p, y->p, n);

    if (r != 0) {
        return r;
    }
    if (x->key_len != y->key_len) {
        return x->key_len < y->key_len ? -1 : 1;
    }
    /* Equal keys can only be distinct NaNs (or equal-set elements): break
       the tie on the full bytes so the order is still total. */
    n = x->len < y->len ? x->len : y->len;
    r = memcmp(x->p, y->p, n);
    if (r != 0) {
        return r;
    }
    return x->len < y->len ? -1 : (x->len > y->len ? 1 : 0);
}

/* Scratch encodings and their spans for one dict or set being sorted. */
typedef struct {
    span inline_[SPANS_INLINE];
    span *spans;
    ck_buf scratch;
    Py_ssize_t n;
} sorter;

/* The scratch encodings are as sensitive as the output they go into, so
   they are secret when out is. */
static int sorter_init(sorter *s, const ck_buf *out, Py_ssize_t n)
{
    if (out->secret) {
        ck_buf_init_secret(&s->scratch);
    } else {
        ck_buf_init(&s->scratch);
    }
    s->n = 0;
    s->spans = s->inline_;
    if (n > SPANS_INLINE) {
        s->spans = PyMem_New(span, (size_t)n);
        if (s->spans == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
}

static void sorter_free(sorter *s)
{
    if (s->spans != s->inline_) {
        PyMem_Free(s->spans);
    }
    s->spans = s->inline_;
    ck_buf_free(&s->scratch);
}

/* Encode one element (value may be NULL for sets) into the next span. */
static int sorter_add(pack_ctx *c, sorter *s, Py_ssize_t cap, PyObject *key, PyObject *value)
{
    span *sp;

    if (s->n >= cap) {
        return pack_raise_changed(value != NULL ? "dict" : "set");
    }
    sp = &s->spans[s->n];
    sp->off = s->scratch.len;
    if (pack_obj(c, &s->scratch, key) < 0) {
        return -1;
    }
    sp->key_len = s->scratch.len - sp->off;
    if (value != NULL && pack_obj(c, &s->scratch, value) < 0) {
        return -1;
    }
    sp->len = s->scratch.len - sp->off;
    s->n++;
    return 0;
}

static int sorter_emit(sorter *s, ck_buf *out)
{
    Py_ssize_t i;

    for (i = 0; i < s->n; i++) {
        s->spans[i].p = s->scratch.data + s->spans[i].off;
    }
    qsort(s->spans, (size_t)s->n, sizeof(span), span_cmp);
    for (i = 0; i < s->n; i++) {
        if (ck_buf_append(out, s->spans[i].p, s->spans[i].len) < 0) {
            return pack_nomem();
        }
    }
    return 0;
}

static int pack_dict_canonical(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    msgpack_packer pk;
    sorter s;
    PyObject *key = NULL;
    PyObject *value = NULL;
    PyObject *k, *v;
    Py_ssize_t pos = 0, n = PyDict_GET_SIZE(obj);
    int rc = -1;

    if (sorter_init(&s, out, n) < 0) {
        return -1;
    }
    while (PyDict_Next(obj, &pos, &k, &v)) {
        key = Py_NewRef(k);
        value = Py_NewRef(v);
        if (sorter_add(c, &s, n, key, value) < 0) {
            goto error;
        }
        Py_CLEAR(key);
        Py_CLEAR(value);
        if (PyDict_GET_SIZE(obj) != n) {
            pack_raise_changed("dict");
            goto error;
        }
    }
    if (s.n != n) {
        pack_raise_changed("dict");
        goto error;
    }
    if (pack_check_len32(c, (size_t)n, "dict") < 0) {
        goto error;
    }
    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    if (msgpack_pack_map(&pk, (size_t)n) != 0) {
        pack_nomem();
        goto error;
    }
    rc = sorter_emit(&s, out);
error:
    Py_XDECREF(key);
    Py_XDECREF(value);
    sorter_free(&s);
    return rc;
}

int pack_dict(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    int rc;

    if (pack_depth_enter(c) < 0) {
        return -1;
    }
    if (c->flags & CK_PACK_CANONICAL) {
        rc = pack_dict_canonical(c, out, obj);
    } else {
        rc = pack_dict_ordered(c, out, obj);
    }
    pack_depth_leave(c);
    return rc;
}

/* set and frozenset: ext SET/FROZENSET around an array of the elements,
   sorted by encoding in canonical mode, in iteration order otherwise. */
int pack_set(pack_ctx *c, ck_buf *out, PyObject *obj, int8_t type)
{
    msgpack_packer pk;
    sorter s;
    PyObject *it = NULL;
    PyObject *item = NULL;
    Py_ssize_t done = 0, n = PySet_GET_SIZE(obj);
    int canonical = c->flags & CK_PACK_CANONICAL;
    size_t hdr;
    int rc = -1;

    if (sorter_init(&s, out, canonical ? n : 0) < 0) {
        return -1;
    }
    if (pack_depth_enter(c) < 0) {
        sorter_free(&s);
        return -1;
    }
    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    if (pack_check_len32(c, (size_t)n, "set") < 0 || pack_ext_begin(out, type, &hdr) < 0) {
        goto error;
    }
    if (msgpack_pack_array(&pk, (size_t)n) != 0) {
        pack_nomem();
        goto error;
    }
    /* The set iterator raises RuntimeError itself if the set is resized. */
    it = PyObject_GetIter(obj);
    if (it == NULL) {
        goto error;
    }
    while ((item = PyIter_Next(it)) != NULL) {
        if (canonical) {
            if (sorter_add(c, &s, n, item, NULL) < 0) {
                goto error;
            }
        } else if (done == n) {
            pack_raise_changed("set");
            goto error;
        } else if (pack_obj(c, out, item) < 0) {
            goto error;
        }
        Py_CLEAR(item);
        done++;
    }
    if (PyErr_Occurred()) {
        goto error;
    }
    if (done != n) {
        pack_raise_changed("set");
        goto error;
    }
    if (canonical && sorter_emit(&s, out) < 0) {
        goto error;
    }
    rc = pack_ext_end(c, out, hdr);
error:
    Py_XDECREF(item);
    Py_XDECREF(it);
    pack_depth_leave(c);
    sorter_free(&s);
    return rc;
}

