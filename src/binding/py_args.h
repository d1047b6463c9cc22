/*
 * py_args.h - vectorcall argument parsing shared by the binding layer.
 */
#ifndef CK_PY_ARGS_H
#define CK_PY_ARGS_H

#include "module_state.h"

/*
 * Parse f(a0, .., a[npos-1], /, o0=.., o1=..): the first npos arguments are
 * required and positional-only, the nopt optional ones may come by position
 * or keyword. Fills slots[0 .. npos + nopt) with borrowed references, NULL
 * for an optional argument not given. 0, or -1 with TypeError set.
 */
int ck_parse_fastcall(const char *fname, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames, Py_ssize_t npos, const char *const *optnames,
                      Py_ssize_t nopt, PyObject **slots);

#endif /* CK_PY_ARGS_H */
