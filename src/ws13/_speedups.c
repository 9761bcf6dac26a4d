/* C twins of the hot helpers in ws13/utils.py; ws13/_accel.py picks them.
 *
 * apply_mask(data, mask) -> bytes: XOR data with the 4-byte mask repeated
 * (RFC 6455 section 5.3).
 *
 * build_frame(first_byte, payload, mask) -> bytes: header + (masked) payload
 * in one allocation; twin of utils.build_frame.
 *
 * parse_messages(data, pos, expect_mask, max_size, out, inflate) -> int: the
 * fast path of Protocol._parse_frames, which is its pure-Python twin. It
 * consumes consecutive complete frames that are whole messages (FIN, no RSV
 * bit, TEXT or BINARY, masked as expected, within max_size, valid UTF-8 for
 * text), appends each message (str or bytes) to `out`, and returns the
 * position of the first frame it leaves to the Python code: anything else
 * (control frames, fragments, errors, an incomplete frame) is handled there,
 * so all protocol decisions stay in one place. A negative pos is a
 * ValueError. With permessage-deflate alone, `inflate` is
 * PerMessageDeflate.decode_message (else None): a whole frame with FIN and
 * RSV1 (a whole compressed message) goes to inflate(payload, max_size), and
 * what it returns is the message's data. Its exceptions (PayloadTooBig,
 * ProtocolError), and a UnicodeDecodeError for compressed text that isn't
 * UTF-8, propagate: the decompressor has consumed the frame, so the Python
 * path can't take it again, and the caller fails the connection.
 *
 * utf8_check(data, state=0) -> int, in _utf8.c: incremental UTF-8 validation
 * for fragmented and partly received text; twin of utils.utf8_check.
 *
 * MaskKeys, in _maskkeys.c: a client's masking keys; twin of utils.MaskKeys.
 *
 * CoreBase, in _corebase.c: the base type of ws13.protocol.Protocol, with
 * the core's hot entry points receive() and send_message() and the state
 * they use in its own C struct; twin of ws13/corebase.py.
 *
 * PayloadBuffer, in _payload.c: a large frame's payload, unmasked read by
 * read into the bytes object it is delivered as; twin of utils.PayloadBuffer.
 *
 * encode_text(text) -> bytes, in _utf8.c: text.encode("utf-8"), faster for a str of
 * Latin-1 characters that aren't all ASCII (such as "ünïcode" in JSON), which
 * CPython encodes a character at a time: here 16 characters at a time while
 * they are ASCII. Other str go to CPython's encoder.
 *
 * All of them are called once per message or per read, mostly on small
 * payloads, so the per-call overhead matters as much as the loops: they are
 * METH_FASTCALL (no argument tuple), read exact bytes in place (no buffer
 * protocol round trip), and only release the GIL for large payloads. The
 * argument errors are the ones PyArg_ParseTuple gave ("y*", "i", "n", "p",
 * "O!"), checked by tests/test_accel.py.
 *
 * C owns what it touches (shared/DESIGN.md): these functions work on the
 * buffers and objects they are given and on the C structs of the types
 * they define, never on a Python class's attributes. The module keeps no
 * state in C globals (MaskKeys's os module is in the module state), so
 * each interpreter that imports it gets its own types and state.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "_speedups.h"
#if defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
#include <emmintrin.h>
#define WS13_SSE2 1
#endif

/* XOR n bytes of `in` with the 4-byte mask m repeated, into `out`. */
void
ws13_xor_mask(const unsigned char *in, unsigned char *out, Py_ssize_t n, const unsigned char *m)
{
    Py_ssize_t i = 0;
    uint32_t m32;
    uint64_t m64;

    memcpy(&m32, m, 4);
    m64 = ((uint64_t)m32 << 32) | m32;
#ifdef WS13_SSE2
    {
        /* 32 bytes per iteration: two independent 16-byte lanes keep both
         * load ports busy; SSE2 is baseline on x86-64, so no -march needed. */
        const __m128i m128 = _mm_set1_epi32((int)m32);
        for (; i + 32 <= n; i += 32) {
            __m128i a = _mm_loadu_si128((const __m128i *)(in + i));
            __m128i b = _mm_loadu_si128((const __m128i *)(in + i + 16));
            _mm_storeu_si128((__m128i *)(out + i), _mm_xor_si128(a, m128));
            _mm_storeu_si128((__m128i *)(out + i + 16), _mm_xor_si128(b, m128));
        }
    }
#else
    /* Elsewhere, 16 bytes per iteration in two words, which compilers
     * vectorise where they can (NEON on arm64 at -O3). */
    for (; i + 16 <= n; i += 16) {
        uint64_t a, b;
        memcpy(&a, in + i, 8);
        memcpy(&b, in + i + 8, 8);
        a ^= m64;
        b ^= m64;
        memcpy(out + i, &a, 8);
        memcpy(out + i + 8, &b, 8);
    }
#endif
    for (; i + 8 <= n; i += 8) {
        uint64_t word;
        memcpy(&word, in + i, 8);
        word ^= m64;
        memcpy(out + i, &word, 8);
    }
    for (; i < n; i++) {
        out[i] = in[i] ^ m[i & 3];
    }
}

/* Argument conversion, with PyArg_ParseTuple's error messages. */

/* METH_KEYWORDS only so that keywords get this message: CPython's own check
 * for METH_FASTCALL names the function "ws13._speedups.apply_mask()". */
static int
check_nargs(const char *fname, Py_ssize_t nargs, PyObject *kwnames, Py_ssize_t expected)
{
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0) {
        PyErr_Format(PyExc_TypeError, "%.200s() takes no keyword arguments", fname);
        return -1;
    }
    if (nargs == expected) {
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "%.200s() takes exactly %zd arguments (%zd given)", fname,
                 expected, nargs);
    return -1;
}

/* "i" */
static int
get_int(PyObject *arg, int *out)
{
    long value = PyLong_AsLong(arg);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (value > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "signed integer is greater than maximum");
        return -1;
    }
    if (value < INT_MIN) {
        PyErr_SetString(PyExc_OverflowError, "signed integer is less than minimum");
        return -1;
    }
    *out = (int)value;
    return 0;
}

/* "n" */
static int
get_ssize(PyObject *arg, Py_ssize_t *out)
{
    PyObject *index = PyNumber_Index(arg);
    if (index == NULL) {
        return -1;
    }
    *out = PyLong_AsSsize_t(index);
    Py_DECREF(index);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

static PyObject *
apply_mask(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Py_buffer data, mask;
    PyObject *result = NULL;

    if (check_nargs("apply_mask", nargs, kwnames, 2) < 0 || get_bytes_like(args[0], &data) < 0) {
        return NULL;
    }
    if (get_bytes_like(args[1], &mask) < 0) {
        release_bytes_like(&data);
        return NULL;
    }
    if (mask.len != 4) {
        PyErr_SetString(PyExc_ValueError, "mask must contain 4 bytes");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, data.len);
    if (result == NULL) {
        goto done;
    }
    if (data.len < RELEASE_GIL_MIN) {
        ws13_xor_mask((const unsigned char *)data.buf, (unsigned char *)PyBytes_AS_STRING(result),
                 data.len, (const unsigned char *)mask.buf);
    }
    else {
        Py_BEGIN_ALLOW_THREADS
        ws13_xor_mask((const unsigned char *)data.buf, (unsigned char *)PyBytes_AS_STRING(result),
                 data.len, (const unsigned char *)mask.buf);
        Py_END_ALLOW_THREADS
    }

done:
    release_bytes_like(&data);
    release_bytes_like(&mask);
    return result;
}

/* build_frame()'s work, also CoreBase.send_message()'s: see _speedups.h. */
PyObject *
ws13_frame(int first_byte, const unsigned char *payload, Py_ssize_t n, const unsigned char *mask,
           int with_payload)
{
    PyObject *result;
    unsigned char *out;
    /* RFC 6455 section 5.2: the minimal number of bytes encodes the length. */
    Py_ssize_t header_len = (n < 126 ? 2 : n < 65536 ? 4 : 10) + (mask ? 4 : 0);

    result = PyBytes_FromStringAndSize(NULL, header_len + (with_payload ? n : 0));
    if (result == NULL) {
        return NULL;
    }
    out = (unsigned char *)PyBytes_AS_STRING(result);
    out[0] = (unsigned char)first_byte;
    if (n < 126) {
        out[1] = (unsigned char)n;
        out += 2;
    }
    else if (n < 65536) {
        out[1] = 126;
        out[2] = (unsigned char)(n >> 8);
        out[3] = (unsigned char)n;
        out += 4;
    }
    else {
        uint64_t len = (uint64_t)n;
        int k;
        out[1] = 127;
        for (k = 0; k < 8; k++) {
            out[2 + k] = (unsigned char)(len >> (56 - 8 * k));
        }
        out += 10;
    }
    if (mask) {
        PyBytes_AS_STRING(result)[1] |= (char)0x80;
        memcpy(out, mask, 4);
        out += 4;
    }
    if (!with_payload) {
        return result;
    }
    if (mask) {
        ws13_xor_mask(payload, out, n, mask);
    }
    else {
        memcpy(out, payload, n);
    }
    return result;
}

static PyObject *
build_frame(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    int first_byte;
    Py_buffer payload;
    PyObject *mask_obj;
    PyObject *result = NULL;
    const unsigned char *mask = NULL;

    if (check_nargs("build_frame", nargs, kwnames, 3) < 0 || get_int(args[0], &first_byte) < 0 ||
        get_bytes_like(args[1], &payload) < 0) {
        return NULL;
    }
    mask_obj = args[2];
    if (mask_obj != Py_None) {
        if (!PyBytes_Check(mask_obj) || PyBytes_GET_SIZE(mask_obj) != 4) {
            PyErr_SetString(PyExc_ValueError, "mask must contain 4 bytes");
            goto done;
        }
        mask = (const unsigned char *)PyBytes_AS_STRING(mask_obj);
    }
    result = ws13_frame(first_byte, (const unsigned char *)payload.buf, payload.len, mask, 1);

done:
    release_bytes_like(&payload);
    return result;
}

/* A whole compressed message for parse_messages: unmask the payload into a
 * new bytes, inflate(payload, max_size) it, and decode it when it is text.
 * Sets *message and returns 0, or returns -1 with an exception set. */
static int
inflate_message(PyObject *inflate, const unsigned char *payload, Py_ssize_t length,
                const unsigned char *mask, int opcode, PyObject *max_size, PyObject **message)
{
    PyObject *call_args[2], *data;

    call_args[0] = PyBytes_FromStringAndSize(mask ? NULL : (const char *)payload, length);
    if (call_args[0] == NULL) {
        return -1;
    }
    if (mask) {
        ws13_xor_mask(payload, (unsigned char *)PyBytes_AS_STRING(call_args[0]), length, mask);
    }
    call_args[1] = max_size;
    data = PyObject_Vectorcall(inflate, call_args, 2, NULL);
    Py_DECREF(call_args[0]);
    if (data == NULL) {
        return -1;
    }
    if (!PyBytes_Check(data)) {
        PyErr_Format(PyExc_TypeError, "inflate() must return bytes, not %.50s",
                     Py_TYPE(data)->tp_name);
        Py_DECREF(data);
        return -1;
    }
    if (opcode == 2) {
        *message = data;
        return 0;
    }
    *message = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), NULL);
    Py_DECREF(data);
    return *message == NULL ? -1 : 0;
}

/* The most wire bytes a compressed frame may take to carry max_size bytes:
 * permessage_deflate.max_compressed_size(), DEFLATE's worst-case expansion
 * (max_size bounds the inflated message, which inflate() checks). No
 * overflow: 1.15 * PY_SSIZE_T_MAX < UINT64_MAX. */
static inline uint64_t
compressed_limit(Py_ssize_t max_size)
{
    uint64_t size = (uint64_t)max_size;
    return size + (size >> 3) + (size >> 6) + 64;
}

/* parse_messages()'s loop, also CoreBase.receive()'s: see _speedups.h. */
Py_ssize_t
ws13_scan_messages(const unsigned char *buf, Py_ssize_t end, Py_ssize_t pos, int expect_mask,
              Py_ssize_t max_size, PyObject *max_size_obj, PyObject *out, PyObject *inflate)
{
    unsigned char stack[4096];

    while (end - pos >= 2) {
        unsigned char b0 = buf[pos], b1 = buf[pos + 1];
        int opcode = b0 & 0x0F;
        Py_ssize_t head = pos + 2;
        uint64_t length = b1 & 0x7F;
        const unsigned char *payload;
        PyObject *message;
        /* RFC 7692 section 6: RSV1 on the first frame marks a compressed
         * message; with FIN, this frame is all of it. */
        int compressed = (b0 & 0xF0) == 0xC0;

        if (compressed ? inflate == NULL : (b0 & 0xF0) != 0x80) {
            break;  /* not FIN, RSV set, or not a data frame: Python decides */
        }
        if (opcode != 1 && opcode != 2) {
            break;  /* RSV1 on a control frame is an error Python reports */
        }
        if (((b1 & 0x80) != 0) != (expect_mask != 0)) {
            break;
        }
        if (length == 126) {
            if (end - pos < 4) {
                break;
            }
            length = ((uint64_t)buf[pos + 2] << 8) | buf[pos + 3];
            head = pos + 4;
        }
        else if (length == 127) {
            int k;
            if (end - pos < 10) {
                break;
            }
            length = 0;
            for (k = 0; k < 8; k++) {
                length = (length << 8) | buf[pos + 2 + k];
            }
            head = pos + 10;
            if (length >> 62) {
                break;  /* absurd length: the Python path fails the connection */
            }
        }
        if (max_size >= 0 && length > (uint64_t)max_size
            && !(compressed && length <= compressed_limit(max_size))) {
            break;  /* too big: the Python path fails with 1009 */
        }
        if (expect_mask) {
            head += 4;
        }
        if (head > end || (uint64_t)(end - head) < length) {
            break;  /* incomplete */
        }
        payload = buf + head;
        if (compressed) {
            if (inflate_message(inflate, payload, (Py_ssize_t)length,
                                expect_mask ? buf + head - 4 : NULL, opcode, max_size_obj,
                                &message) < 0) {
                return -1;
            }
        }
        else if (expect_mask) {
            const unsigned char *mask = buf + head - 4;
            if (opcode == 2) {
                message = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)length);
                if (message == NULL) {
                    return -1;
                }
                ws13_xor_mask(payload, (unsigned char *)PyBytes_AS_STRING(message),
                         (Py_ssize_t)length, mask);
            }
            else {
                unsigned char *tmp = stack;
                if (length > sizeof(stack)) {
                    tmp = PyMem_Malloc((size_t)length);
                    if (tmp == NULL) {
                        PyErr_NoMemory();
                        return -1;
                    }
                }
                ws13_xor_mask(payload, tmp, (Py_ssize_t)length, mask);
                message = PyUnicode_DecodeUTF8((const char *)tmp, (Py_ssize_t)length, NULL);
                if (tmp != stack) {
                    PyMem_Free(tmp);
                }
            }
        }
        else if (opcode == 2) {
            message = PyBytes_FromStringAndSize((const char *)payload, (Py_ssize_t)length);
        }
        else {
            message = PyUnicode_DecodeUTF8((const char *)payload, (Py_ssize_t)length, NULL);
        }
        if (message == NULL) {
            if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                PyErr_Clear();  /* invalid UTF-8: the Python path fails with 1007 */
                break;
            }
            return -1;
        }
        if (PyList_Append(out, message) < 0) {
            Py_DECREF(message);
            return -1;
        }
        Py_DECREF(message);
        pos = head + (Py_ssize_t)length;
    }
    return pos;
}

static PyObject *
parse_messages(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Py_buffer data;
    Py_ssize_t pos, max_size;
    int expect_mask;
    PyObject *out, *inflate;

    if (check_nargs("parse_messages", nargs, kwnames, 6) < 0 ||
        get_bytes_like(args[0], &data) < 0) {
        return NULL;
    }
    if (get_ssize(args[1], &pos) < 0 || (expect_mask = PyObject_IsTrue(args[2])) < 0 ||
        get_ssize(args[3], &max_size) < 0) {
        goto error;
    }
    out = args[4];
    if (!PyList_Check(out)) {
        PyErr_Format(PyExc_TypeError, "parse_messages() argument 5 must be list, not %.50s",
                     out == Py_None ? "None" : Py_TYPE(out)->tp_name);
        goto error;
    }
    inflate = args[5] == Py_None ? NULL : args[5];
    if (inflate != NULL && !PyCallable_Check(inflate)) {
        PyErr_Format(PyExc_TypeError,
                     "parse_messages() argument 6 must be callable or None, not %.50s",
                     Py_TYPE(inflate)->tp_name);
        goto error;
    }
    if (pos < 0) {
        /* PyArg_ParseTuple let this through to an out-of-bounds read. */
        PyErr_SetString(PyExc_ValueError, "pos must not be negative");
        goto error;
    }
    pos = ws13_scan_messages((const unsigned char *)data.buf, data.len, pos, expect_mask,
                              max_size, args[3], out, inflate);
    release_bytes_like(&data);
    return pos < 0 ? NULL : PyLong_FromSsize_t(pos);

error:
    release_bytes_like(&data);
    return NULL;
}

static PyMethodDef speedups_methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL | METH_KEYWORDS,
     "apply_mask(data, mask) -> bytes\n\nXOR data with the 4-byte mask repeated."},
    {"build_frame", (PyCFunction)(void (*)(void))build_frame, METH_FASTCALL | METH_KEYWORDS,
     "build_frame(first_byte, payload, mask) -> bytes\n\nA whole frame: header and payload."},
    {"parse_messages", (PyCFunction)(void (*)(void))parse_messages, METH_FASTCALL | METH_KEYWORDS,
     "parse_messages(data, pos, expect_mask, max_size, out, inflate) -> int\n\n"
     "Append the whole single-frame messages at data[pos:] to out; return the new position."},
    {"utf8_check", (PyCFunction)(void (*)(void))ws13_utf8_check_py, METH_FASTCALL | METH_KEYWORDS,
     "utf8_check(data, state=0) -> int\n\n"
     "Check the next piece of a UTF-8 stream; return the new state, or -1 if invalid."},
    {"encode_text", (PyCFunction)ws13_encode_text_py, METH_O,
     "encode_text(text) -> bytes\n\ntext.encode('utf-8')."},
    {NULL, NULL, 0, NULL},
};

/* No Py_mod_gil slot: the module needs the GIL (nothing here was run on a
 * free-threaded build), so a free-threaded CPython re-enables the GIL when
 * it is imported. No Py_mod_multiple_interpreters slot either: the default
 * lets subinterpreters that share the main GIL load their own copy (state
 * and types are per module), and an interpreter with its own GIL refuses
 * it, so ws13 runs in pure Python there (tests/test_accel.py). */
static PyModuleDef_Slot speedups_slots[] = {
    {Py_mod_exec, ws13_add_corebase},
    {Py_mod_exec, ws13_add_maskkeys},
    {Py_mod_exec, ws13_add_payload_buffer},
    {0, NULL},
};

static int
speedups_traverse(PyObject *module, visitproc visit, void *arg)
{
    ws13_state *state = ws13_get_state(module);
    Py_VISIT(state->os);
    Py_VISIT(state->str_receive_data);
    Py_VISIT(state->str_receive_rest);
    Py_VISIT(state->str_fail_inflated);
    Py_VISIT(state->str_send_message);
    return 0;
}

static int
speedups_clear(PyObject *module)
{
    ws13_state *state = ws13_get_state(module);
    Py_CLEAR(state->os);
    Py_CLEAR(state->str_receive_data);
    Py_CLEAR(state->str_receive_rest);
    Py_CLEAR(state->str_fail_inflated);
    Py_CLEAR(state->str_send_message);
    return 0;
}

static void
speedups_free(void *module)
{
    speedups_clear((PyObject *)module);
}

struct PyModuleDef ws13_speedups_module = {
    PyModuleDef_HEAD_INIT,
    "ws13._speedups",
    "C speedups for ws13 (see ws13/utils.py for the reference code).",
    sizeof(ws13_state),
    speedups_methods,
    speedups_slots,
    speedups_traverse,
    speedups_clear,
    speedups_free,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&ws13_speedups_module);
}
