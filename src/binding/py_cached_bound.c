/*
 * py_cached_bound.c - a cached function bound to an instance.
 *
 * `obj.method` on a class whose method is @cache-decorated returns one of
 * these (CachedFunction.__get__). Calling it prepends the instance, as a
 * bound method does; unlike a plain bound method it also binds the cache
 * methods, so `obj.method.invalidate_cache(x)` and `obj.method.cache_key(x)`
 * need no instance argument. Other attributes (cache_info, cache_clear,
 * __wrapped__, __name__...) are the function's.
 *
 * `obj.method(x)` written as one expression never creates this object: the
 * interpreter calls the function with obj prepended directly, because
 * CachedFunction is a method descriptor.
 */
#include "py_cached.h"

#include <structmember.h>

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    ck_cached *func; /* strong */
    PyObject *self;  /* strong: the instance (or class) bound */
} ck_bound;

/* Arguments on the stack up to this many; more go to the heap. */
#define BOUND_STACK_ARGS 8

/* Call fn(func, self, *args) with the vectorcall convention. */
static PyObject *call_with_self(ck_bound *b, vectorcallfunc fn, PyObject *const *args,
                                size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t total = nargs + (kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames));
    PyObject *stack[BOUND_STACK_ARGS], **argv, *res;

    if (nargsf & PY_VECTORCALL_ARGUMENTS_OFFSET) {
        /* The caller lent us args[-1]: borrow it, as bound methods do. */
        PyObject **slot = (PyObject **)args - 1, *saved = *slot;
        *slot = b->self;
        res = fn((PyObject *)b->func, slot, (size_t)(nargs + 1), kwnames);
        *slot = saved;
        return res;
    }
    if (total + 1 <= BOUND_STACK_ARGS) {
        argv = stack;
    } else {
        argv = PyMem_New(PyObject *, (size_t)total + 1);
        if (argv == NULL) {
            return PyErr_NoMemory();
        }
    }
    argv[0] = b->self;
    if (total > 0) {
        memcpy(argv + 1, args, (size_t)total * sizeof(*args));
    }
    res = fn((PyObject *)b->func, argv, (size_t)(nargs + 1), kwnames);
    if (argv != stack) {
        PyMem_Free(argv);
    }
    return res;
}

static PyObject *bound_vectorcall(ck_bound *b, PyObject *const *args, size_t nargsf,
                                  PyObject *kwnames)
{
    return call_with_self(b, b->func->vectorcall, args, nargsf, kwnames);
}

#define FORWARD(name, target)                                                                  \
    static PyObject *name(ck_bound *b, PyObject *const *args, size_t nargsf, PyObject *kwnames) \
    {                                                                                          \
        return call_with_self(b, (vectorcallfunc)target, args, nargsf, kwnames);               \
    }
FORWARD(bound_invalidate, ck_cached_invalidate)
FORWARD(bound_ainvalidate, ck_cached_ainvalidate)
FORWARD(bound_cache_key, ck_cached_cache_key)
#undef FORWARD

PyObject *ck_bound_new(ck_state *st, ck_cached *func, PyObject *self)
{
    ck_bound *b = PyObject_GC_New(ck_bound, st->BoundCachedMethodType);

    if (b == NULL) {
        return NULL;
    }
    b->vectorcall = (vectorcallfunc)bound_vectorcall;
    b->func = (ck_cached *)Py_NewRef(func);
    b->self = Py_NewRef(self);
    PyObject_GC_Track(b);
    return (PyObject *)b;
}

static int bound_traverse(ck_bound *b, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(b));
    Py_VISIT(b->func);
    Py_VISIT(b->self);
    return 0;
}

static int bound_clear(ck_bound *b)
{
    Py_CLEAR(b->func);
    Py_CLEAR(b->self);
    return 0;
}

static void bound_dealloc(ck_bound *b)
{
    PyTypeObject *tp = Py_TYPE(b);

    PyObject_GC_UnTrack(b);
    (void)bound_clear(b);
    tp->tp_free(b);
    Py_DECREF(tp);
}

/* Attributes not defined here are the function's. */
static PyObject *bound_getattro(ck_bound *b, PyObject *name)
{
    PyObject *res = PyObject_GenericGetAttr((PyObject *)b, name);

    if (res != NULL || !PyErr_ExceptionMatches(PyExc_AttributeError)) {
        return res;
    }
    PyErr_Clear();
    return PyObject_GetAttr((PyObject *)b->func, name);
}

static PyObject *bound_get_doc(ck_bound *b, void *Py_UNUSED(closure))
{
    return PyObject_GetAttrString((PyObject *)b->func, "__doc__");
}

static PyObject *bound_get_module(ck_bound *b, void *Py_UNUSED(closure))
{
    return PyObject_GetAttrString((PyObject *)b->func, "__module__");
}

/* Equal when they bind the same function to the same object, as bound
   methods compare. */
static PyObject *bound_richcompare(PyObject *a, PyObject *o, int op)
{
    ck_bound *x = (ck_bound *)a, *y = (ck_bound *)o;
    int eq;

    if ((op != Py_EQ && op != Py_NE) || Py_TYPE(o) != Py_TYPE(a)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    eq = x->func == y->func && x->self == y->self;
    return PyBool_FromLong(op == Py_EQ ? eq : !eq);
}

static Py_hash_t bound_hash(ck_bound *b)
{
    Py_hash_t h = PyObject_Hash((PyObject *)b->func);
    Py_uhash_t addr = (Py_uhash_t)(uintptr_t)b->self;

    if (h == -1) {
        return -1;
    }
    h ^= (Py_hash_t)((addr >> 4) | (addr << (8 * sizeof(addr) - 4)));
    return h == -1 ? -2 : h;
}

static PyObject *bound_repr(ck_bound *b)
{
    return PyUnicode_FromFormat("<cachekit bound method %R of %R>", b->func->func, b->self);
}

/* Pickled as getattr(instance, name), as bound methods are. */
static PyObject *bound_reduce(ck_bound *b, PyObject *Py_UNUSED(ignored))
{
    PyObject *builtins, *getattr_fn, *name;

    builtins = PyEval_GetBuiltins(); /* borrowed; the interpreter's when no frame runs */
    getattr_fn = builtins == NULL ? NULL : PyDict_GetItemString(builtins, "getattr");
    if (getattr_fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "builtins.getattr is missing");
        return NULL;
    }
    name = PyObject_GetAttrString(b->func->func, "__name__");
    if (name == NULL) {
        return NULL;
    }
    return Py_BuildValue("O(ON)", getattr_fn, b->self, name);
}

PyDoc_STRVAR(bound_invalidate_doc,
             "invalidate_cache($self, /, *args, **kwargs)\n--\n\n"
             "Forget the entry of the call obj.method(*args, **kwargs). Returns True if\n"
             "there was one.");
PyDoc_STRVAR(bound_ainvalidate_doc,
             "ainvalidate_cache($self, /, *args, **kwargs)\n--\n\n"
             "invalidate_cache as an awaitable, for async code.");
PyDoc_STRVAR(bound_cache_key_doc, "cache_key($self, /, *args, **kwargs)\n--\n\n"
                                  "The printable cache key of obj.method(*args, **kwargs).");

static PyMethodDef bound_methods[] = {
    {"invalidate_cache", (PyCFunction)(void (*)(void))bound_invalidate,
     METH_FASTCALL | METH_KEYWORDS, bound_invalidate_doc},
    {"ainvalidate_cache", (PyCFunction)(void (*)(void))bound_ainvalidate,
     METH_FASTCALL | METH_KEYWORDS, bound_ainvalidate_doc},
    {"cache_key", (PyCFunction)(void (*)(void))bound_cache_key, METH_FASTCALL | METH_KEYWORDS,
     bound_cache_key_doc},
    {"__reduce__", (PyCFunction)bound_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef bound_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(ck_bound, vectorcall), READONLY, NULL},
    {"__self__", T_OBJECT, offsetof(ck_bound, self), READONLY, "The bound instance."},
    {"__func__", T_OBJECT, offsetof(ck_bound, func), READONLY, "The cached function."},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef bound_getset[] = {
    {"__doc__", (getter)bound_get_doc, NULL, NULL, NULL},
    {"__module__", (getter)bound_get_module, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot bound_slots[] = {
    {Py_tp_dealloc, bound_dealloc},
    {Py_tp_traverse, bound_traverse},
    {Py_tp_clear, bound_clear},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_getattro, bound_getattro},
    {Py_tp_richcompare, bound_richcompare},
    {Py_tp_hash, bound_hash},
    {Py_tp_repr, bound_repr},
    {Py_tp_methods, bound_methods},
    {Py_tp_members, bound_members},
    {Py_tp_getset, bound_getset},
    {0, NULL},
};

static PyType_Spec bound_spec = {
    .name = "cachekit._core.BoundCachedMethod",
    .basicsize = sizeof(ck_bound),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
             Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = bound_slots,
};

int ck_cached_bound_exec(PyObject *module)
{
    ck_state *st = ck_state_from_module(module);

    st->BoundCachedMethodType =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &bound_spec, NULL);
    if (st->BoundCachedMethodType == NULL) {
        return -1;
    }
    return PyModule_AddType(module, st->BoundCachedMethodType);
}
