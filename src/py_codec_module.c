/* PLACEHOLDER - replaced by the real binding. */
#include "module_state.h"
int ck_codec_exec(PyObject *module) { (void)module; return 0; }
