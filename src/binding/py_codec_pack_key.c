/*
 * py_codec_pack_key.c - encodings used only in cache keys (CK_PACK_KEY):
 * classes, objects defining __cachekit_key__(), and the value types keyed by
 * their type and contents: Enum members, named tuples, frozen dataclasses.
 *
 * Part of ck_py_pack() (py_codec_pack_internal.h), and owns
 * ck_py_key_by_value(). These extension codes (64 and up, docs/format.md
 * "Extension types") are never produced for stored values and
 * ck_py_unpack() refuses them.
 *
 * User code that can run here: __cachekit_key__(), __module__ lookups
 * (metaclass descriptors), attribute reads of dataclass fields (properties)
 * and of an Enum member's _value_, dataclasses.fields() and the frozen flag
 * of __dataclass_params__. Hence the values being packed are held by strong
 * references, and memo entries are copied out before anything is packed
 * (packing a field may replace the memo slot it came from).
 */
#include "py_codec_pack_internal.h"

/* How a type's instances are keyed by value (ck_key_type_memo.kind). */
enum {
    CK_KEY_KIND_NONE = 0, /* not by value: unsupported in keys */
    CK_KEY_KIND_ENUM,
    CK_KEY_KIND_NAMEDTUPLE,
    CK_KEY_KIND_DATACLASS,
};

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

/* ------------------------------------------------------------------------ */
/* Value types: which types, remembered per type version                     */
/* ------------------------------------------------------------------------ */

/* New reference to sys.modules[name].attr, or NULL: with an exception set on
   error, without one when the module was never imported (then no instance of
   its types can exist, so there is nothing to look for). */
static PyObject *imported_attr(const char *module, const char *attr)
{
    PyObject *name = NULL;
    PyObject *mod = NULL;
    PyObject *res = NULL;

    name = PyUnicode_FromString(module);
    if (name == NULL) {
        goto error;
    }
    mod = PyImport_GetModule(name);
    if (mod == NULL) {
        goto error;
    }
    res = PyObject_GetAttrString(mod, attr);
error:
    Py_XDECREF(name);
    Py_XDECREF(mod);
    return res;
}

/* Borrowed class attribute found on tp's MRO (no descriptor call, no
   exception), or NULL. */
static PyObject *class_attr(PyTypeObject *tp, const char *attr)
{
    PyObject *name = PyUnicode_InternFromString(attr);
    PyObject *res;

    if (name == NULL) {
        PyErr_Clear();
        return NULL;
    }
    res = _PyType_Lookup(tp, name);
    Py_DECREF(name);
    return res;
}

/* New reference to the names of tp's fields with compare=True, in
   declaration order: dataclasses.fields() already drops ClassVar and InitVar
   pseudo-fields, which __dataclass_fields__ also lists. */
static PyObject *dataclass_compare_fields(PyTypeObject *tp)
{
    PyObject *fields_fn = NULL;
    PyObject *fields = NULL;
    PyObject *names = NULL;
    PyObject *field, *compare, *fname;
    Py_ssize_t i, n;
    int truth;

    fields_fn = imported_attr("dataclasses", "fields");
    if (fields_fn == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_RuntimeError, "dataclasses is not imported");
        }
        goto error;
    }
    fields = PyObject_CallOneArg(fields_fn, (PyObject *)tp);
    if (fields == NULL) {
        goto error;
    }
    if (!PyTuple_Check(fields)) {
        PyErr_SetString(PyExc_TypeError, "dataclasses.fields() did not return a tuple");
        goto error;
    }
    names = PyList_New(0);
    if (names == NULL) {
        goto error;
    }
    n = PyTuple_GET_SIZE(fields);
    for (i = 0; i < n; i++) {
        field = PyTuple_GET_ITEM(fields, i);
        compare = PyObject_GetAttrString(field, "compare");
        if (compare == NULL) {
            goto error;
        }
        truth = PyObject_IsTrue(compare);
        Py_DECREF(compare);
        if (truth < 0) {
            goto error;
        }
        if (!truth) {
            continue;
        }
        fname = PyObject_GetAttrString(field, "name");
        if (fname == NULL) {
            goto error;
        }
        if (!PyUnicode_Check(fname)) {
            Py_DECREF(fname);
            PyErr_SetString(PyExc_TypeError, "dataclass field name is not a str");
            goto error;
        }
        truth = PyList_Append(names, fname);
        Py_DECREF(fname);
        if (truth < 0) {
            goto error;
        }
    }
    Py_SETREF(names, PyList_AsTuple(names));
error:
    Py_XDECREF(fields_fn);
    Py_XDECREF(fields);
    if (PyErr_Occurred()) {
        Py_CLEAR(names);
    }
    return names;
}

/*
 * CK_KEY_KIND_* of tp's instances, ignoring __cachekit_key__ (callers check
 * it first), or -1 with an exception set. *fields receives a new reference
 * to the compare=True field names of a frozen dataclass, else NULL.
 * Enum is checked first: an Enum with a tuple mixin is keyed as a member.
 */
static int key_type_classify(PyTypeObject *tp, PyObject **fields)
{
    PyObject *enum_type = NULL;
    PyObject *params = NULL;
    PyObject *frozen = NULL;
    PyObject *attr;
    int kind = -1, truth;

    *fields = NULL;
    enum_type = imported_attr("enum", "Enum");
    if (enum_type == NULL && PyErr_Occurred()) {
        goto error;
    }
    if (enum_type != NULL && PyType_Check(enum_type) &&
        PyType_IsSubtype(tp, (PyTypeObject *)enum_type)) {
        kind = CK_KEY_KIND_ENUM;
        goto error;
    }
    attr = class_attr(tp, "_fields"); /* borrowed, used at once */
    if (PyType_IsSubtype(tp, &PyTuple_Type) && attr != NULL && PyTuple_Check(attr)) {
        kind = CK_KEY_KIND_NAMEDTUPLE;
        goto error;
    }
    /* Held: reading .frozen may run code that drops the class attribute. */
    params = Py_XNewRef(class_attr(tp, "__dataclass_params__"));
    if (params == NULL) {
        kind = CK_KEY_KIND_NONE;
        goto error;
    }
    frozen = PyObject_GetAttrString(params, "frozen");
    if (frozen == NULL || (truth = PyObject_IsTrue(frozen)) < 0) {
        goto error;
    }
    /* Only frozen dataclasses: a mutable instance could change after the
       call was keyed, so the key would no longer describe the argument. */
    if (!truth) {
        kind = CK_KEY_KIND_NONE;
        goto error;
    }
    *fields = dataclass_compare_fields(tp);
    if (*fields != NULL) {
        kind = CK_KEY_KIND_DATACLASS;
    }
error:
    Py_XDECREF(enum_type);
    Py_XDECREF(params);
    Py_XDECREF(frozen);
    return kind;
}

int ck_py_key_by_value(PyTypeObject *tp)
{
    PyObject *meth = class_attr(tp, "__cachekit_key__");
    PyObject *fields = NULL;
    int kind;

    /* Same order as pack_key_extra: __cachekit_key__ decides first, and
       None opts out of keying by value altogether. */
    if (meth != NULL) {
        return meth != Py_None;
    }
    kind = key_type_classify(tp, &fields);
    Py_XDECREF(fields);
    return kind < 0 ? -1 : kind != CK_KEY_KIND_NONE;
}

/* The decision for tp, from the memo when tp's version tag still matches.
   Fills *kind and new references *name and *fields (NULL unless a
   dataclass). 0, or -1 with an exception set. */
static int key_type_lookup(pack_ctx *c, PyTypeObject *tp, int *kind, PyObject **name,
                           PyObject **fields)
{
    /* Two-way sets, so two argument types that map to one set (a function
       taking an Enum and a dataclass) do not evict each other on every
       call. Way 0 holds the most recently added entry. */
    size_t set = (size_t)(((uintptr_t)tp * UINT64_C(0x9e3779b97f4a7c15)) >> 40) %
                 (CK_KEY_TYPE_MEMO / 2);
    ck_key_type_memo *m = &c->st->key_types[set * 2];
    int memo_ok = (tp->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG) != 0;
    unsigned int version = tp->tp_version_tag;
    int way;

    *name = NULL;
    *fields = NULL;
    for (way = 0; memo_ok && way < 2; way++) {
        if (m[way].type == tp && m[way].version == version) {
            *kind = m[way].kind;
            *name = Py_XNewRef(m[way].name);
            *fields = Py_XNewRef(m[way].fields);
            return 0;
        }
    }
    *kind = key_type_classify(tp, fields);
    if (*kind < 0) {
        return -1;
    }
    if (*kind == CK_KEY_KIND_NONE) {
        /* Not remembered: unsupported arguments raise anyway, which costs
           more than classifying. */
        return 0;
    }
    *name = pack_type_name(c->st, tp, ":", 0);
    if (*name == NULL) {
        Py_CLEAR(*fields);
        return -1;
    }
    /* Classifying may have run code that changed tp; remember the decision
       only under the tag it was made for. */
    if (memo_ok && (tp->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG) &&
        tp->tp_version_tag == version) {
        /* A stale entry for tp (older tag) is replaced where it is; else
           way 1 is evicted and way 0 moves to it. */
        int victim = m[0].type == tp ? 0 : 1;
        ck_key_type_memo old = m[victim];

        /* Fill the set before releasing the old entry: a type's dealloc
           must find the memo consistent. */
        if (victim == 1) {
            m[1] = m[0];
        }
        m[0].type = (PyTypeObject *)Py_NewRef(tp);
        m[0].version = version;
        m[0].kind = *kind;
        m[0].name = Py_NewRef(*name);
        m[0].fields = Py_XNewRef(*fields);
        Py_XDECREF(old.type);
        Py_XDECREF(old.name);
        Py_XDECREF(old.fields);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Value types: encodings                                                    */
/* ------------------------------------------------------------------------ */

/*
 * Ext `type` (KEY_ENUM, KEY_NAMEDTUPLE, KEY_DATACLASS) around the array
 * ["module:qualname", v1, v2, ...]: the type name keeps Color.RED apart from
 * its plain value and from Shade.RED with the same value, and two named
 * tuples with equal fields apart. The values are, for an Enum member its
 * _value_, for a named tuple its items, for a frozen dataclass its
 * compare=True fields in declaration order, each key-packed.
 */
static int pack_key_value(pack_ctx *c, ck_buf *out, PyObject *obj, int kind, PyObject *name,
                          PyObject *fields)
{
    static const int8_t ext_of[] = {
        [CK_KEY_KIND_ENUM] = CK_EXT_KEY_ENUM,
        [CK_KEY_KIND_NAMEDTUPLE] = CK_EXT_KEY_NAMEDTUPLE,
        [CK_KEY_KIND_DATACLASS] = CK_EXT_KEY_DATACLASS,
    };
    msgpack_packer pk;
    PyObject *v = NULL;
    Py_ssize_t i, n;
    size_t hdr;
    int rc = -1;

    if (pack_depth_enter(c) < 0) {
        return -1;
    }
    switch (kind) {
    case CK_KEY_KIND_ENUM:
        n = 1;
        break;
    case CK_KEY_KIND_NAMEDTUPLE:
        n = PyTuple_GET_SIZE(obj);
        break;
    default:
        n = PyTuple_GET_SIZE(fields);
        break;
    }
    if (pack_check_len32(c, (size_t)n + 1, "key value") < 0 ||
        pack_ext_begin(out, ext_of[kind], &hdr) < 0) {
        goto error;
    }
    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    if (msgpack_pack_array(&pk, (size_t)n + 1) != 0) {
        pack_nomem();
        goto error;
    }
    if (pack_str(c, out, name) < 0) {
        goto error;
    }
    for (i = 0; i < n; i++) {
        /* Tuples own their items; the other values are fetched (and may be
           computed by a property) into a reference we hold. */
        if (kind == CK_KEY_KIND_ENUM) {
            v = PyObject_GetAttr(obj, c->st->str_value_);
        } else if (kind == CK_KEY_KIND_NAMEDTUPLE) {
            v = Py_NewRef(PyTuple_GET_ITEM(obj, i));
        } else {
            v = PyObject_GetAttr(obj, PyTuple_GET_ITEM(fields, i));
        }
        if (v == NULL || pack_obj(c, out, v) < 0) {
            goto error;
        }
        Py_CLEAR(v);
    }
    rc = pack_ext_end(c, out, hdr);
error:
    Py_XDECREF(v);
    pack_depth_leave(c);
    return rc;
}

int pack_key_extra(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    PyObject *meth;
    PyObject *name = NULL;
    PyObject *fields = NULL;
    int rc, kind;

    if (PyType_Check(obj)) {
        return pack_key_class(c, out, obj);
    }
    /* Borrowed from the type's MRO cache; held while user code runs. A
       __cachekit_key__ set to None opts out, like __hash__ = None. It wins
       over the value rules: the class said what identifies its instances. */
    meth = _PyType_Lookup(Py_TYPE(obj), c->st->str_cachekit_key);
    if (meth != NULL && meth != Py_None) {
        Py_INCREF(meth);
        rc = pack_key_custom(c, out, obj, meth);
        Py_DECREF(meth);
        return rc;
    }
    if (meth == NULL && key_type_lookup(c, Py_TYPE(obj), &kind, &name, &fields) < 0) {
        return -1;
    }
    if (meth != NULL || kind == CK_KEY_KIND_NONE) {
        return pack_raise_unsupported(c, obj);
    }
    rc = pack_key_value(c, out, obj, kind, name, fields);
    Py_DECREF(name);
    Py_XDECREF(fields);
    return rc;
}

