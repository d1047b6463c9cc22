/*
 * py_args.c - argument parsing for METH_FASTCALL | METH_KEYWORDS functions
 * of the form f(a0, .., a[npos-1], /, o0=.., o1=..), shared by the binding
 * files that expose such functions.
 */
#include "py_args.h"

#include <string.h>

/*
 * Whether the keyword name equals the ASCII string opt. Keyword names at
 * call sites are almost always compact ASCII, compared here with one
 * memcmp; anything else takes CPython's general comparison.
 */
static int name_is(PyObject *name, const char *opt)
{
    size_t n;

    if (PyUnicode_IS_COMPACT_ASCII(name)) {
        n = strlen(opt);
        return (size_t)PyUnicode_GET_LENGTH(name) == n && memcmp(PyUnicode_DATA(name), opt, n) == 0;
    }
    return PyUnicode_CompareWithASCIIString(name, opt) == 0;
}

/*
 * Vectorcall argument parsing for `f(a0, .., a[npos-1], /, o0=.., o1=..)`:
 * the first npos arguments are required and positional-only; the optional
 * ones may come by position or keyword. Fills slots[0 .. npos + nopt) with
 * borrowed references, NULL for an optional argument not given. Returns 0,
 * or -1 with TypeError set.
 */
int ck_parse_fastcall(const char *fname, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames, Py_ssize_t npos, const char *const *optnames,
                      Py_ssize_t nopt, PyObject **slots)
{
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    Py_ssize_t i, j;

    if (nargs < npos) {
        PyErr_Format(PyExc_TypeError, "%s() takes at least %zd positional arguments (%zd given)",
                     fname, npos, nargs);
        return -1;
    }
    if (nargs > npos + nopt) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %zd positional arguments (%zd given)",
                     fname, npos + nopt, nargs);
        return -1;
    }
    for (i = 0; i < npos + nopt; i++) {
        slots[i] = i < nargs ? args[i] : NULL;
    }
    /* Keyword values follow the positional ones in args; CPython has already
       refused duplicate keyword names. */
    for (i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);

        for (j = 0; j < nopt; j++) {
            if (name_is(name, optnames[j])) {
                break;
            }
        }
        if (j == nopt) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname,
                         name);
            return -1;
        }
        if (slots[npos + j] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname,
                         optnames[j]);
            return -1;
        }
        slots[npos + j] = args[nargs + i];
    }
    return 0;
}

