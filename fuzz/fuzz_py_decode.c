/*
 * fuzz_py_decode.c - libFuzzer target for the decoders that build Python
 * objects (src/binding): the msgpack value decoder (py_codec_unpack.c over
 * the bounded reader py_codec_reader.c, hash-flooding guard included) and
 * the entry path that ends in it.
 *
 * Embeds CPython: LLVMFuzzerInitialize starts the interpreter once and
 * imports cachekit._core, which fuzz/build.sh builds with
 * -fsanitize=fuzzer-no-link,address,undefined (so its code is covered and
 * checked; the interpreter itself is not instrumented). Each input goes to
 *
 *   _core.unpack(data)                 the msgpack decoder on raw bytes
 *   _core.decode_entry(data)           the bytes as a stored entry
 *   _core.decode_entry(_core.frame(data))
 *                                      the bytes as the payload of a valid
 *                                      entry: random bytes rarely pass the
 *                                      entry checksum, so this is how
 *                                      mutations reach the decoder by way
 *                                      of decode_entry (and LZ4, for
 *                                      inputs of 64+ bytes framed with
 *                                      compress_min 64)
 *   _core.unframe(data)
 *   kr.open_value(data)                the bytes as an encrypted entry
 *   kr.open_value(kr.seal(data))       the bytes as the plaintext of one
 *                                      that authenticates (kr: a Keyring
 *                                      with 32 zero bytes as master key)
 *
 * Each call must return a value or raise a CachekitError subclass; any
 * other exception (TypeError, RecursionError, SystemError, ...) is a
 * finding and aborts, as is a sanitizer report. MemoryError is a finding
 * too: the decoder allocates at most a small constant times the input
 * length, and inputs are at most 64 KiB (fuzz/run.sh -max_len).
 *
 * PYTHONPATH must point at the instrumented build (fuzz/run.sh sets it to
 * fuzz/out/py); the harness refuses to run against another cachekit._core.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static PyObject *core;      /* cachekit._core */
static PyObject *base_exc;  /* cachekit._core.CachekitError */
static PyObject *fn_unpack, *fn_decode, *fn_frame, *fn_unframe;
static PyObject *kw_compress; /* {"compress_min": 64} */
static PyObject *kr_open, *kr_seal; /* Keyring(bytes(32)).open_value, .seal */

static void die(const char *what)
{
    fprintf(stderr, "fuzz_py_decode: %s\n", what);
    if (PyErr_Occurred()) {
        PyErr_Print();
    }
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    PyObject *file = NULL;
    const char *want = getenv("CK_FUZZ_PYPATH");

    (void)argc;
    (void)argv;
    Py_Initialize();
    core = PyImport_ImportModule("cachekit._core");
    if (core == NULL) {
        die("cannot import cachekit._core (is PYTHONPATH fuzz/out/py?)");
    }
    file = PyObject_GetAttrString(core, "__file__");
    if (file == NULL || !PyUnicode_Check(file)) {
        die("cachekit._core has no __file__");
    }
    if (want != NULL && want[0] != '\0') {
        const char *f = PyUnicode_AsUTF8(file);
        if (f == NULL || strncmp(f, want, strlen(want)) != 0) {
            fprintf(stderr, "fuzz_py_decode: imported %s, not the build under %s\n",
                    f ? f : "?", want);
            abort();
        }
    }
    Py_DECREF(file);
    base_exc = PyObject_GetAttrString(core, "CachekitError");
    fn_unpack = PyObject_GetAttrString(core, "unpack");
    fn_decode = PyObject_GetAttrString(core, "decode_entry");
    fn_frame = PyObject_GetAttrString(core, "frame");
    fn_unframe = PyObject_GetAttrString(core, "unframe");
    kw_compress = Py_BuildValue("{s:i}", "compress_min", 64);
    {
        PyObject *kr = PyObject_CallMethod(core, "Keyring", "(y#)", (const char[32]){0},
                                           (Py_ssize_t)32);
        if (kr == NULL) {
            die("cannot create a Keyring");
        }
        kr_open = PyObject_GetAttrString(kr, "open_value");
        kr_seal = PyObject_GetAttrString(kr, "seal");
        Py_DECREF(kr);
    }
    if (base_exc == NULL || fn_unpack == NULL || fn_decode == NULL || fn_frame == NULL ||
        fn_unframe == NULL || kw_compress == NULL || kr_open == NULL || kr_seal == NULL) {
        die("cachekit._core lacks a decoder");
    }
    return 0;
}

/* A call's outcome: a value is fine, so is a CachekitError; else abort. */
static void expect(PyObject *res, const char *what)
{
    if (res != NULL) {
        /* repr() walks the whole decoded graph (and runs __repr__ of the
           types we built), so a half-initialised object shows up here. */
        PyObject *r = PyObject_Repr(res);
        if (r == NULL) {
            die(what);
        }
        Py_DECREF(r);
        Py_DECREF(res);
        return;
    }
    if (PyErr_ExceptionMatches(base_exc)) {
        PyErr_Clear();
        return;
    }
    fprintf(stderr, "fuzz_py_decode: %s raised an exception that is not a CachekitError\n", what);
    die(what);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    PyObject *bytes, *args, *framed, *sealed;

    bytes = PyBytes_FromStringAndSize((const char *)data, (Py_ssize_t)size);
    if (bytes == NULL) {
        die("PyBytes_FromStringAndSize");
    }
    expect(PyObject_CallOneArg(fn_unpack, bytes), "unpack(data)");
    expect(PyObject_CallOneArg(fn_decode, bytes), "decode_entry(data)");
    expect(PyObject_CallOneArg(fn_unframe, bytes), "unframe(data)");

    args = PyTuple_Pack(1, bytes);
    if (args == NULL) {
        die("PyTuple_Pack");
    }
    framed = PyObject_Call(fn_frame, args, kw_compress);
    if (framed == NULL) {
        die("frame(data) failed");
    }
    expect(PyObject_CallOneArg(fn_decode, framed), "decode_entry(frame(data))");
    Py_DECREF(framed);
    Py_DECREF(args);

    expect(PyObject_CallOneArg(kr_open, bytes), "Keyring.open_value(data)");
    sealed = PyObject_CallOneArg(kr_seal, bytes);
    if (sealed == NULL) {
        die("Keyring.seal(data) failed");
    }
    expect(PyObject_CallOneArg(kr_open, sealed), "Keyring.open_value(Keyring.seal(data))");
    Py_DECREF(sealed);
    Py_DECREF(bytes);
    return 0;
}
