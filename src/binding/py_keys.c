/*
 * py_keys.c - binds a call to its signature and encodes it as key bytes.
 *
 * Hot path: a call with exactly the positional parameters and no keywords
 * writes the array header and packs each argument: no allocation, no Python
 * calls for builtin argument types. Anything else takes the general binder.
 */
#include "py_keys.h"

#include <msgpack.h>
#include <string.h>

#include "py_codec.h"

#define KEY_FLAGS (CK_PACK_CANONICAL | CK_PACK_KEY)

static int pack_array_header(ck_buf *out, size_t n)
{
    msgpack_packer pk;

    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    return msgpack_pack_array(&pk, n) == 0 ? 0 : -1;
}

/* 1 if a class on type's MRO defines name, 0 if none does, -1 on error.
   Walks the MRO dicts directly: a failed getattr would build an
   AttributeError on every method call. */
static int type_defines(PyTypeObject *type, PyObject *name)
{
    PyObject *mro = type->tp_mro;
    Py_ssize_t i;

    for (i = 0; mro != NULL && i < PyTuple_GET_SIZE(mro); i++) {
        PyObject *dict = ((PyTypeObject *)PyTuple_GET_ITEM(mro, i))->tp_dict;
        if (dict != NULL && PyDict_GetItemWithError(dict, name) != NULL) {
            return 1;
        }
        if (PyErr_Occurred()) {
            return -1;
        }
    }
    return 0;
}

/* 1 when instances of tp are keyed by their value: the type defines
   __cachekit_key__, or the key encoding understands its values. */
static int keyed_by_value(ck_state *st, PyTypeObject *tp)
{
    int has = type_defines(tp, st->str_cachekit_key);

    if (has != 0) {
        return has;
    }
    return ck_py_key_by_value(tp);
}

/* How a method's `self` of type tp is keyed (see ck_self_mode). */
static int classify_self(ck_state *st, PyObject *self, PyTypeObject *tp)
{
    int by_value;

    if (PyType_Check(self)) {
        return CK_SELF_VALUE; /* a class: by module and qualified name */
    }
    by_value = keyed_by_value(st, tp);
    if (by_value < 0) {
        return -1;
    }
    if (by_value) {
        return CK_SELF_VALUE;
    }
    /* Builtin values (ints, strs, tuples...) are not weakly referenceable
       and are keyed by value by the codec; an instance that is neither gets
       a clear error below. */
    return tp->tp_weaklistoffset != 0 ? CK_SELF_IDENTITY : CK_SELF_UNTRACKABLE;
}

/* The identity key of an instance: a key-only extension holding its
   address. Valid only while the instance lives: the caller ties every
   entry keyed so to the instance's lifetime (*identity). */
static int pack_identity(ck_buf *out, PyObject *self)
{
    unsigned char ext[2 + 1 + 8];
    uint64_t addr = (uint64_t)(uintptr_t)self;
    int i;

    ext[0] = 0xd7; /* fixext 8 */
    ext[1] = (unsigned char)CK_EXT_KEY_INSTANCE;
    for (i = 0; i < 8; i++) {
        ext[2 + i] = (unsigned char)(addr >> (56 - 8 * i));
    }
    if (ck_buf_append(out, ext, 10) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* The `self` slot of a method. Two instances share an entry only when the
   user said they may (__cachekit_key__) or the type has value semantics the
   key encoding understands (Enum, named tuples, frozen dataclasses); any
   other instance is keyed by its identity, and *identity is set to it. */
static int pack_self(ck_state *st, ck_key_spec *spec, PyObject *self, ck_buf *out,
                     PyObject **identity)
{
    PyTypeObject *tp = Py_TYPE(self);
    int mode;

    if (tp == spec->self_type && (tp->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG) &&
        tp->tp_version_tag == spec->self_type_version) {
        mode = spec->self_mode;
    } else {
        mode = classify_self(st, self, tp);
        if (mode < 0) {
            return -1;
        }
        /* Memoised while the class is unmodified (its version tag holds). */
        if (tp->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG) {
            Py_XSETREF(spec->self_type, (PyTypeObject *)Py_NewRef(tp));
            spec->self_type_version = tp->tp_version_tag;
            spec->self_mode = mode;
        }
    }
    if (mode == CK_SELF_IDENTITY) {
        *identity = self;
        return pack_identity(out, self);
    }
    if (ck_py_pack(st, self, out, KEY_FLAGS) == 0) {
        return 0;
    }
    if (mode == CK_SELF_UNTRACKABLE && PyErr_ExceptionMatches(st->UnsupportedTypeError)) {
        PyErr_Format(st->UnsupportedTypeError,
                     "cannot key a cached method on a %.200s instance: it cannot be weakly "
                     "referenced (add '__weakref__' to its __slots__) and has no "
                     "__cachekit_key__() method",
                     tp->tp_name);
    }
    return -1;
}

static int pack_slot(ck_state *st, ck_key_spec *spec, Py_ssize_t i, PyObject *v, ck_buf *out,
                     PyObject **identity)
{
    if (i == 0 && spec->self_is_instance) {
        return pack_self(st, spec, v, out, identity);
    }
    return ck_py_pack(st, v, out, KEY_FLAGS);
}

static size_t slot_count(const ck_key_spec *spec)
{
    return (size_t)(spec->n_pos + spec->n_kwonly) + (size_t)spec->has_varargs +
           (size_t)spec->has_varkw;
}

/* Index of name in names[start:], or -1. Keyword names from calls are
   usually the interned strings of the signature, so identity hits first. */
static Py_ssize_t find_name(PyObject *names, Py_ssize_t start, PyObject *name)
{
    Py_ssize_t i, n = PyTuple_GET_SIZE(names);

    for (i = start; i < n; i++) {
        if (PyTuple_GET_ITEM(names, i) == name) {
            return i;
        }
    }
    for (i = start; i < n; i++) {
        if (PyUnicode_Compare(PyTuple_GET_ITEM(names, i), name) == 0) {
            return i;
        }
    }
    return -1;
}

static int build_general(ck_state *st, ck_key_spec *spec, PyObject *const *args,
                         Py_ssize_t nargs, PyObject *kwnames, ck_buf *out, PyObject **identity)
{
    PyObject *slots[CK_KEY_MAX_PARAMS]; /* borrowed; [0, n_named) used */
    PyObject *varkw = NULL;             /* owned */
    Py_ssize_t n_named = spec->n_pos + spec->n_kwonly, nkw, i, j;
    int rc = -1;

    /* Only the used prefix is cleared: zeroing the whole array would cost
       more than the rest of the binding. */
    memset(slots, 0, (size_t)n_named * sizeof(slots[0]));
    nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nargs > spec->n_pos && !spec->has_varargs) {
        return 1;
    }
    for (i = 0; i < nargs && i < spec->n_pos; i++) {
        slots[i] = args[i];
    }
    for (j = 0; j < nkw; j++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, j), *value = args[nargs + j];
        Py_ssize_t at = find_name(spec->pos_names, spec->n_posonly, name);

        if (at < 0) {
            at = find_name(spec->kwonly_names, 0, name);
            at = at < 0 ? -1 : spec->n_pos + at;
        }
        if (at >= 0) {
            if (slots[at] != NULL) {
                rc = 1; /* given twice */
                goto error;
            }
            slots[at] = value;
            continue;
        }
        if (!spec->has_varkw) {
            rc = 1; /* unexpected keyword */
            goto error;
        }
        if (varkw == NULL && (varkw = PyDict_New()) == NULL) {
            goto error;
        }
        if (PyDict_SetItem(varkw, name, value) < 0) {
            goto error;
        }
    }
    for (i = 0; i < n_named; i++) {
        if (slots[i] == NULL) {
            PyObject *name = i < spec->n_pos
                                 ? PyTuple_GET_ITEM(spec->pos_names, i)
                                 : PyTuple_GET_ITEM(spec->kwonly_names, i - spec->n_pos);
            slots[i] = PyDict_GetItemWithError(spec->defaults, name);
            if (slots[i] == NULL) {
                rc = PyErr_Occurred() ? -1 : 1; /* missing required argument */
                goto error;
            }
        }
    }
    if (pack_array_header(out, slot_count(spec)) < 0) {
        PyErr_NoMemory();
        goto error;
    }
    for (i = 0; i < n_named; i++) {
        if (pack_slot(st, spec, i, slots[i], out, identity) < 0) {
            goto error;
        }
    }
    if (spec->has_varargs) {
        Py_ssize_t extra = nargs > spec->n_pos ? nargs - spec->n_pos : 0;
        if (pack_array_header(out, (size_t)extra) < 0) {
            PyErr_NoMemory();
            goto error;
        }
        for (i = 0; i < extra; i++) {
            if (ck_py_pack(st, args[spec->n_pos + i], out, KEY_FLAGS) < 0) {
                goto error;
            }
        }
    }
    if (spec->has_varkw) {
        if (varkw == NULL && (varkw = PyDict_New()) == NULL) {
            goto error;
        }
        /* Canonical packing sorts the items, so keyword order is irrelevant. */
        if (ck_py_pack(st, varkw, out, KEY_FLAGS) < 0) {
            goto error;
        }
    }
    rc = 0;
error:
    Py_XDECREF(varkw);
    return rc;
}

int ck_key_build(ck_state *st, ck_key_spec *spec, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames, ck_buf *out, PyObject **identity)
{
    Py_ssize_t i;

    *identity = NULL;
    if ((kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0) || nargs != spec->n_pos ||
        spec->n_kwonly != 0 || spec->has_varkw) {
        return build_general(st, spec, args, nargs, kwnames, out, identity);
    }
    /* Fast path: exactly the positional parameters, nothing else. */
    if (pack_array_header(out, slot_count(spec)) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    for (i = 0; i < nargs; i++) {
        if (pack_slot(st, spec, i, args[i], out, identity) < 0) {
            return -1;
        }
    }
    if (spec->has_varargs && pack_array_header(out, 0) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}
