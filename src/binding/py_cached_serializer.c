/*
 * py_cached_serializer.c - results stored by a Python serializer (JSON
 * through orjson, Arrow IPC) instead of the C codec.
 *
 * @cache(serializer="orjson" | "arrow") hands CachedFunction a tuple
 * (serializer id, encode, decode, mutable) built by
 * cachekit/serializers/cache_codec.py: encode(result) -> the payload (any
 * buffer), decode(bytes) -> the value. The C path does everything else as
 * for the default codec: the entry frame (header byte 4 = the serializer
 * id, so a reader configured with another serializer refuses the entry as
 * an integrity error, a counted miss), LZ4, checksum, signing, sealing
 * under @cache.secure, L2 and L1.
 *
 * What L1 keeps: the value a reader of the stored bytes gets, decode(payload),
 * not the result object itself, so an L1 hit and an L2 hit return the same
 * thing (JSON turns tuples into lists; Arrow gives the return_format asked
 * for). mutable: True (pandas / polars frames: every hit gets a copy, as
 * for the default codec), False (pyarrow Tables: shared), None (JSON: the
 * decoded value is sized and checked by the C codec's walk, which also says
 * whether it holds a list or dict).
 *
 * A result encode refuses (orjson cannot encode it, Arrow gets no table) is
 * returned uncached, counted as a store_error and reported (logged once per
 * function), like a result the C codec refuses.
 */
#include "py_cached.h"

#include "ck_format.h"

int ck_cached_ser_parse(ck_cached *self, PyObject *spec)
{
    PyObject *encode, *decode, *mutable_;
    long id;

    if (spec == Py_None) {
        return 0;
    }
    if (!PyTuple_CheckExact(spec) || PyTuple_GET_SIZE(spec) != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "serializer must be None or a tuple (id, encode, decode, mutable)");
        return -1;
    }
    id = PyLong_AsLong(PyTuple_GET_ITEM(spec, 0));
    if (id == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (id != CK_SER_JSON && id != CK_SER_ARROW) {
        PyErr_SetString(PyExc_ValueError, "serializer id must be 2 (JSON) or 3 (Arrow)");
        return -1;
    }
    encode = PyTuple_GET_ITEM(spec, 1);
    decode = PyTuple_GET_ITEM(spec, 2);
    mutable_ = PyTuple_GET_ITEM(spec, 3);
    if (!PyCallable_Check(encode) || !PyCallable_Check(decode)) {
        PyErr_SetString(PyExc_TypeError, "serializer encode and decode must be callable");
        return -1;
    }
    if (mutable_ != Py_None && !PyBool_Check(mutable_)) {
        PyErr_SetString(PyExc_TypeError, "serializer mutable must be True, False or None");
        return -1;
    }
    self->ser_id = (unsigned char)id;
    self->ser_mutable = mutable_ == Py_None ? -1 : (char)(mutable_ == Py_True);
    self->ser_encode = Py_NewRef(encode);
    self->ser_decode = Py_NewRef(decode);
    return 0;
}

unsigned char ck_cached_ser_id(const ck_cached *self)
{
    return self->ser_encode != NULL ? self->ser_id : (unsigned char)CK_SER_MSGPACK;
}

int ck_cached_ser_encode(ck_cached *self, ck_state *st, PyObject *result, ck_buf *buf,
                         int *fatal)
{
    size_t bound = ck_l1_max_bytes(self->store->store);
    size_t limit = bound != 0 && bound < self->max_value_size ? bound : self->max_value_size;
    PyObject *payload = PyObject_CallOneArg(self->ser_encode, result);
    Py_buffer view = {0};
    int rc = -1;

    if (payload == NULL || PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE) < 0) {
        goto error;
    }
    if ((size_t)view.len > limit) {
        PyErr_Format(st->SerializationError, "result encodes to more than %zu bytes, over %s",
                     limit, limit == self->max_value_size ? "max_value_size"
                                                          : "the L1 store's byte bound");
        goto error;
    }
    if (ck_buf_append(buf, view.buf, (size_t)view.len) < 0) {
        PyErr_NoMemory();
        goto error;
    }
    rc = 0;
    goto done;
error:
    self->store_errors++;
    *fatal = ck_cached_report_failure(self, "store_error") < 0;
done:
    if (view.obj != NULL) {
        PyBuffer_Release(&view);
    }
    Py_XDECREF(payload);
    return rc;
}

PyObject *ck_cached_ser_decode(ck_cached *self, const unsigned char *payload, size_t n)
{
    PyObject *data = PyBytes_FromStringAndSize((const char *)payload, (Py_ssize_t)n);
    PyObject *value;

    if (data == NULL) {
        return NULL;
    }
    value = PyObject_CallOneArg(self->ser_decode, data);
    Py_DECREF(data);
    return value;
}

int ck_cached_ser_put(ck_cached *self, ck_state *st, ck_hash128 h, const ck_buf *key,
                      PyObject *identity, PyObject *value, size_t payload_len, uint64_t ttl_ns,
                      ck_l1_entry **detached)
{
    ck_pack_stats stats = {0, 0, 0};

    if (self->ser_mutable < 0) {
        /* JSON: plain Python data, which the C codec's walk sizes. */
        ck_buf scratch;
        int rc;

        ck_buf_init(&scratch);
        rc = ck_py_pack_ex(st, value, &scratch, 0, &stats);
        ck_buf_free(&scratch);
        if (rc != 0) {
            /* Something orjson decodes that the walk refuses (none known):
               charge a generous multiple of the text and copy every hit. */
            PyErr_Clear();
            stats.graph_bytes = payload_len * 8;
            stats.has_mutable = 1;
        }
    } else {
        /* Frames and tables hold their columns in buffers about the size
           of the IPC stream. */
        stats.graph_bytes = payload_len + 512;
        stats.has_mutable = self->ser_mutable;
    }
    return ck_cached_put_value(self, st, h, key, identity, value, &stats, ttl_ns, detached);
}

int ck_cached_ser_store(ck_cached *self, ck_state *st, ck_hash128 h, const ck_buf *key,
                        PyObject *identity, PyObject *result, const ck_buf *name,
                        ck_l1_entry **detached)
{
    PyObject *value = NULL;
    int fatal = 0;
    ck_buf payload;

    ck_buf_init(&payload);
    if (ck_cached_ser_encode(self, st, result, &payload, &fatal) < 0) {
        goto done;
    }
    /* L1 keeps what the stored bytes decode to (see the top of the file). */
    value = ck_cached_ser_decode(self, payload.data, payload.len);
    if (value == NULL) {
        self->store_errors++;
        fatal = ck_cached_report_failure(self, "store_error") < 0;
        goto done;
    }
    fatal = ck_cached_ser_put(self, st, h, key, identity, value, payload.len, self->ttl_ns,
                              detached) < 0;
    if (!fatal && name != NULL) {
        fatal = ck_cached_l2_store_as(self, name, &payload, self->ser_id) < 0;
    }
done:
    Py_XDECREF(value);
    ck_buf_free(&payload);
    return fatal ? -1 : 0;
}

PyObject *ck_cached_secure_open(ck_cached *self, ck_state *st, const unsigned char *entry,
                                size_t n, ck_span tenant, ck_span aad_key)
{
    ck_keyring *kr = ((ck_keyring_object *)self->keyring)->kr;
    PyObject *value = NULL;
    uint8_t serializer = 0;
    ck_error err;
    ck_buf pt;

    if (self->ser_encode == NULL) {
        return ck_keyring_open_to_value(st, kr, entry, n, self->max_value_size, tenant, aad_key,
                                        &ck_gil_hooks, self->value_types);
    }
    ck_buf_init_secret(&pt);
    if (ck_keyring_open(kr, entry, n, self->max_value_size, tenant, aad_key, &ck_gil_hooks, &pt,
                        &serializer, &err) < 0) {
        ck_raise_crypto_error(st, &err, 1);
        goto done;
    }
    if (serializer != self->ser_id) {
        PyErr_Format(st->IntegrityError, "entry uses serializer %u, not %u", serializer,
                     self->ser_id);
        goto done;
    }
    value = ck_cached_ser_decode(self, pt.data, pt.len);
done:
    ck_buf_free(&pt); /* wipes */
    return value;
}
