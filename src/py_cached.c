/* PLACEHOLDER - replaced by the real binding. */
#include "module_state.h"
int ck_cached_exec(PyObject *module) { (void)module; return 0; }
