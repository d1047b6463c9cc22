/*
 * py_cached_async.c - the call path of a cached `async def` function.
 *
 * A call looks up L1 at once (through the plain or secure path with a
 * lookup-only ck_call_mode). A hit returns a Ready awaitable: awaiting it
 * completes without suspending, and it is a collections.abc.Coroutine (so
 * asyncio.create_task and gather accept it). A miss returns the awaitable
 * of the Python helper given as async_miss (cachekit/decorators/
 * async_path.py), which runs the function once per key and event loop,
 * shares its result or exception between concurrent waiters, and stores the
 * result through CachedFunction._complete.
 */
#include "py_cached.h"

/* ----------------------------------------------------------------- Ready */

typedef struct {
    PyObject_HEAD
    PyObject *value; /* the result; NULL once consumed */
    int done;        /* awaited (or closed): awaiting again is an error */
} ck_ready;

PyObject *ck_ready_new(ck_state *st, PyObject *value)
{
    ck_ready *r = PyObject_GC_New(ck_ready, st->ReadyType);

    if (r == NULL) {
        return NULL;
    }
    r->value = Py_NewRef(value);
    r->done = 0;
    PyObject_GC_Track(r);
    return (PyObject *)r;
}

/* Hand the value out once, as a coroutine's return does. Returns the value
   (new reference), or NULL with RuntimeError when already awaited. */
static PyObject *ready_take(ck_ready *r)
{
    PyObject *v = r->value;

    if (r->done) {
        PyErr_SetString(PyExc_RuntimeError, "cannot reuse already awaited coroutine");
        return NULL;
    }
    r->done = 1;
    r->value = NULL;
    return v;
}

/* The await protocol's fast path (am_send): no StopIteration built. */
static PySendResult ready_am_send(ck_ready *r, PyObject *arg, PyObject **result)
{
    (void)arg;
    *result = ready_take(r);
    return *result == NULL ? PYGEN_ERROR : PYGEN_RETURN;
}

/* Finish as a generator returning v does: StopIteration carrying v. */
static PyObject *stop_with(PyObject *v)
{
    PyObject *exc;

    if (v == NULL) {
        return NULL;
    }
    if (v == Py_None) {
        PyErr_SetNone(PyExc_StopIteration);
    } else {
        /* An instance, so a tuple value is not unpacked into args. */
        exc = PyObject_CallOneArg(PyExc_StopIteration, v);
        if (exc != NULL) {
            PyErr_SetObject(PyExc_StopIteration, exc);
            Py_DECREF(exc);
        }
    }
    Py_DECREF(v);
    return NULL;
}

static PyObject *ready_iternext(ck_ready *r)
{
    return stop_with(ready_take(r));
}

static PyObject *ready_send(ck_ready *r, PyObject *Py_UNUSED(arg))
{
    return stop_with(ready_take(r));
}

static PyObject *ready_throw(ck_ready *r, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *typ, *val = NULL, *tb = NULL;

    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "throw expected 1 to 3 arguments");
        return NULL;
    }
    typ = args[0];
    if (nargs > 1) {
        val = args[1] == Py_None ? NULL : args[1];
    }
    if (nargs > 2) {
        tb = args[2] == Py_None ? NULL : args[2];
    }
    r->done = 1;
    Py_CLEAR(r->value);
    if (PyExceptionInstance_Check(typ)) {
        PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(typ)), Py_NewRef(typ), Py_XNewRef(tb));
    } else if (PyExceptionClass_Check(typ)) {
        PyErr_Restore(Py_NewRef(typ), Py_XNewRef(val), Py_XNewRef(tb));
    } else {
        PyErr_SetString(PyExc_TypeError, "exceptions must derive from BaseException");
    }
    return NULL;
}

static PyObject *ready_close(ck_ready *r, PyObject *Py_UNUSED(ignored))
{
    r->done = 1;
    Py_CLEAR(r->value);
    Py_RETURN_NONE;
}

static PyObject *ready_await(PyObject *r)
{
    return Py_NewRef(r);
}

static int ready_traverse(ck_ready *r, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(r));
    Py_VISIT(r->value);
    return 0;
}

static int ready_clear(ck_ready *r)
{
    Py_CLEAR(r->value);
    return 0;
}

static void ready_dealloc(ck_ready *r)
{
    PyTypeObject *tp = Py_TYPE(r);

    PyObject_GC_UnTrack(r);
    (void)ready_clear(r);
    tp->tp_free(r);
    Py_DECREF(tp);
}

static PyMethodDef ready_methods[] = {
    {"send", (PyCFunction)ready_send, METH_O, NULL},
    {"throw", (PyCFunction)(void (*)(void))ready_throw, METH_FASTCALL, NULL},
    {"close", (PyCFunction)ready_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot ready_slots[] = {
    {Py_am_await, ready_await},
    {Py_am_send, ready_am_send},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, ready_iternext},
    {Py_tp_methods, ready_methods},
    {Py_tp_traverse, ready_traverse},
    {Py_tp_clear, ready_clear},
    {Py_tp_dealloc, ready_dealloc},
    {Py_tp_doc, (void *)"The awaitable of a cache hit: completes without suspending."},
    {0, NULL},
};

static PyType_Spec ready_spec = {
    .name = "cachekit._core.Ready",
    .basicsize = sizeof(ck_ready),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = ready_slots,
};

/* ------------------------------------------------------------- the call */

/* The call's arguments as (tuple, dict or None), for the Python helper. */
static int pack_call(PyObject *const *args, size_t nargsf, PyObject *kwnames, PyObject **tuple,
                     PyObject **kwargs)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf), i, nkw;

    *kwargs = NULL;
    *tuple = PyTuple_New(nargs);
    if (*tuple == NULL) {
        return -1;
    }
    for (i = 0; i < nargs; i++) {
        PyTuple_SET_ITEM(*tuple, i, Py_NewRef(args[i]));
    }
    nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nkw == 0) {
        *kwargs = Py_NewRef(Py_None);
        return 0;
    }
    if ((*kwargs = PyDict_New()) == NULL) {
        goto error;
    }
    for (i = 0; i < nkw; i++) {
        if (PyDict_SetItem(*kwargs, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0) {
            goto error;
        }
    }
    return 0;
error:
    Py_CLEAR(*tuple);
    Py_CLEAR(*kwargs);
    return -1;
}

PyObject *ck_cached_async_vectorcall(ck_cached *self, PyObject *const *args, size_t nargsf,
                                     PyObject *kwnames)
{
    ck_state *st = ck_state_from_type(Py_TYPE(self));
    ck_call_mode mode = {.result = NULL};
    PyObject *res, *tuple = NULL, *kwargs = NULL;

    CK_BYPASS_CHECK(self, args, nargsf, kwnames);
    res = ck_cached_call_mode(self, args, nargsf, kwnames, &mode);
    if (res != NULL) {
        PyObject *ready;
        if (mode.bypassed) {
            return res; /* uncacheable call: the function's own coroutine */
        }
        ready = ck_ready_new(st, res);
        Py_DECREF(res);
        return ready;
    }
    if (!mode.missed || mode.key == NULL) {
        return NULL; /* an exception is set */
    }
    if (pack_call(args, nargsf, kwnames, &tuple, &kwargs) == 0) {
        res = PyObject_CallFunctionObjArgs(self->async_miss, (PyObject *)self, mode.key, tuple,
                                           kwargs, mode.needs_l2 ? Py_True : Py_False, NULL);
    }
    Py_XDECREF(tuple);
    Py_XDECREF(kwargs);
    Py_DECREF(mode.key);
    return res;
}

PyObject *ck_cached_off_loop(ck_cached *self, PyObject *callable, PyObject *const *args,
                             size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf), total, i;
    PyObject *module = NULL, *off_loop = NULL, *res = NULL, **argv = NULL;

    (void)self;
    total = nargs + (kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames));
    module = PyImport_ImportModule("cachekit.decorators.async_path");
    if (module == NULL || (off_loop = PyObject_GetAttrString(module, "off_loop")) == NULL) {
        goto done;
    }
    argv = PyMem_New(PyObject *, (size_t)total + 1);
    if (argv == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    argv[0] = callable;
    for (i = 0; i < total; i++) {
        argv[i + 1] = args[i];
    }
    res = PyObject_Vectorcall(off_loop, argv, (size_t)(nargs + 1), kwnames);
done:
    PyMem_Free(argv);
    Py_XDECREF(off_loop);
    Py_XDECREF(module);
    Py_DECREF(callable);
    return res;
}

int ck_cached_async_exec(PyObject *module)
{
    ck_state *st = ck_state_from_module(module);

    st->ReadyType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &ready_spec, NULL);
    if (st->ReadyType == NULL) {
        return -1;
    }
    return PyModule_AddType(module, st->ReadyType);
}
