/*
 * py_format.h - entry framing shared by the binding files (py_format.c).
 */
#ifndef CK_PY_FORMAT_H
#define CK_PY_FORMAT_H

#include "module_state.h"

#include <stdint.h>

/*
 * A new bytes object holding plaintext[0..n) framed as a plain entry
 * (ck_entry_encode), built in place: no intermediate buffer. The GIL is
 * released around LZ4 and XXH3 for 64 KiB and more, so plaintext must be
 * memory no other thread changes meanwhile. NULL with ValueError (over
 * 4 GiB) or MemoryError.
 */
PyObject *ck_py_frame_bytes(const unsigned char *plaintext, size_t n, uint8_t serializer,
                            size_t compress_min);

#endif /* CK_PY_FORMAT_H */
