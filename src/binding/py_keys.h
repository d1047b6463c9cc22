/*
 * py_keys.h - cache keys from a call's arguments (binding layer).
 *
 * A key is the canonical msgpack encoding (py_codec.h, CK_PACK_KEY) of the
 * call bound to the function's signature: one array slot per named
 * parameter, in signature order, with defaults filled in, then *args and
 * **kwargs when the function has them. f(1, 2), f(1, b=2) and f(a=1, b=2)
 * therefore give the same bytes; msgpack's type tags and length prefixes
 * keep f(1) / f(True) / f(1.0) / f("1") and f(1, 23) / f(12, 3) apart.
 * The bytes are hashed with XXH3-128, seeded by the function's identity.
 */
#ifndef CK_PY_KEYS_H
#define CK_PY_KEYS_H

#include "ck_buf.h"
#include "module_state.h"

typedef struct {
    PyObject *pos_names;    /* tuple of str: positional parameters, in order */
    PyObject *kwonly_names; /* tuple of str: keyword-only parameters */
    PyObject *defaults;     /* dict: parameter name -> default value */
    Py_ssize_t n_pos;
    Py_ssize_t n_posonly;   /* leading positional-only parameters */
    Py_ssize_t n_kwonly;
    int has_varargs;
    int has_varkw;
    int self_is_instance;   /* parameter 0 is a method's `self` (see ck_self_mode) */
    /* Memo of how the last class seen as `self` is keyed (a strong
       reference, owned by the spec's holder), valid while the class's
       version tag is unchanged, i.e. until the class is modified. Saves the
       MRO walks on every method call. */
    PyTypeObject *self_type;
    unsigned int self_type_version;
    int self_mode;
} ck_key_spec;

/* How a method's `self` is keyed. */
enum ck_self_mode {
    CK_SELF_VALUE = 1,       /* by value: __cachekit_key__(), a value type the
                                key encoding understands, or a class */
    CK_SELF_IDENTITY = 2,    /* by identity: the entry lives with the instance */
    CK_SELF_UNTRACKABLE = 3, /* neither: refused unless the codec can key it */
};

/* Bumped whenever the key bytes of some call change, so keys written by an
   older scheme are never matched. Seeds every key hash. */
#define CK_KEY_SCHEME_VERSION 2

/* Most parameters a signature may have (keeps the binding array on the stack). */
#define CK_KEY_MAX_PARAMS 255

/*
 * Append the key bytes of a vectorcall-shaped call to out. *identity is set
 * (borrowed) to the method's `self` when it is keyed by identity: the
 * caller must then tie the entry to that instance's lifetime (an entry keyed
 * by an address must die with the object living there), else NULL.
 * Returns 0 when built, 1 when the arguments do not bind to the signature
 * (the caller runs the function so Python reports the error as usual), or
 * -1 with an exception set (e.g. UnsupportedTypeError for an argument the
 * key encoding cannot represent).
 */
int ck_key_build(ck_state *st, ck_key_spec *spec, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames, ck_buf *out, PyObject **identity);

#endif /* CK_PY_KEYS_H */
