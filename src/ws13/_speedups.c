/* C twins of the hot helpers in ws13/utils.py; ws13/_accel.py picks them.
 *
 * apply_mask(data, mask) -> bytes: XOR data with the 4-byte mask repeated
 * (RFC 6455 section 5.3). Works 8 bytes at a time on a 64-bit copy of the
 * mask; the compiler vectorises the loop further at -O3.
 *
 * build_frame(first_byte, payload, mask) -> bytes: header + (masked) payload
 * in one allocation; twin of utils.build_frame.
 *
 * parse_messages(data, pos, expect_mask, max_size, out) -> int: the fast
 * path of Protocol._parse_frames, which is its pure-Python twin. It consumes
 * consecutive complete frames that are whole messages (FIN, no RSV bit, TEXT
 * or BINARY, masked as expected, within max_size, valid UTF-8 for text),
 * appends each message (str or bytes) to `out`, and returns the position of
 * the first frame it leaves to the Python code: anything else (control
 * frames, fragments, errors, an incomplete frame) is handled there, so all
 * protocol decisions stay in one place.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static inline void
xor_mask(const unsigned char *in, unsigned char *out, Py_ssize_t n, const unsigned char *m);

static PyObject *
apply_mask(PyObject *self, PyObject *args)
{
    Py_buffer data, mask;
    PyObject *result = NULL;

    if (!PyArg_ParseTuple(args, "y*y*:apply_mask", &data, &mask)) {
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
    Py_BEGIN_ALLOW_THREADS
    xor_mask((const unsigned char *)data.buf, (unsigned char *)PyBytes_AS_STRING(result),
             data.len, (const unsigned char *)mask.buf);
    Py_END_ALLOW_THREADS

done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&mask);
    return result;
}

static inline void
xor_mask(const unsigned char *in, unsigned char *out, Py_ssize_t n, const unsigned char *m)
{
    Py_ssize_t i = 0;
    uint64_t m64;
    unsigned char m8[8] = {m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]};

    memcpy(&m64, m8, 8);
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

static PyObject *
build_frame(PyObject *self, PyObject *args)
{
    int first_byte;
    Py_buffer payload;
    PyObject *mask_obj;
    PyObject *result = NULL;
    Py_ssize_t n, header_len;
    unsigned char *out;
    const unsigned char *mask = NULL;

    if (!PyArg_ParseTuple(args, "iy*O:build_frame", &first_byte, &payload, &mask_obj)) {
        return NULL;
    }
    if (mask_obj != Py_None) {
        if (!PyBytes_Check(mask_obj) || PyBytes_GET_SIZE(mask_obj) != 4) {
            PyErr_SetString(PyExc_ValueError, "mask must contain 4 bytes");
            goto done;
        }
        mask = (const unsigned char *)PyBytes_AS_STRING(mask_obj);
    }
    n = payload.len;
    /* RFC 6455 section 5.2: the minimal number of bytes encodes the length. */
    header_len = (n < 126 ? 2 : n < 65536 ? 4 : 10) + (mask ? 4 : 0);
    result = PyBytes_FromStringAndSize(NULL, header_len + n);
    if (result == NULL) {
        goto done;
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
        xor_mask((const unsigned char *)payload.buf, out, n, mask);
    }
    else {
        memcpy(out, payload.buf, n);
    }

done:
    PyBuffer_Release(&payload);
    return result;
}

static PyObject *
parse_messages(PyObject *self, PyObject *args)
{
    Py_buffer data;
    Py_ssize_t pos, max_size;
    int expect_mask;
    PyObject *out;
    unsigned char stack[4096];

    if (!PyArg_ParseTuple(args, "y*npnO!:parse_messages", &data, &pos, &expect_mask,
                          &max_size, &PyList_Type, &out)) {
        return NULL;
    }
    {
        const unsigned char *buf = (const unsigned char *)data.buf;
        Py_ssize_t end = data.len;

        while (end - pos >= 2) {
            unsigned char b0 = buf[pos], b1 = buf[pos + 1];
            int opcode = b0 & 0x0F;
            Py_ssize_t head = pos + 2;
            uint64_t length = b1 & 0x7F;
            const unsigned char *payload;
            PyObject *message;

            if ((b0 & 0xF0) != 0x80 || (opcode != 1 && opcode != 2)) {
                break;  /* not FIN, RSV set, or not a data frame: Python decides */
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
            if (max_size >= 0 && length > (uint64_t)max_size) {
                break;
            }
            if (expect_mask) {
                head += 4;
            }
            if (head > end || (uint64_t)(end - head) < length) {
                break;  /* incomplete */
            }
            payload = buf + head;
            if (expect_mask) {
                const unsigned char *mask = buf + head - 4;
                if (opcode == 2) {
                    message = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)length);
                    if (message == NULL) {
                        goto error;
                    }
                    xor_mask(payload, (unsigned char *)PyBytes_AS_STRING(message),
                             (Py_ssize_t)length, mask);
                }
                else {
                    unsigned char *tmp = stack;
                    if (length > sizeof(stack)) {
                        tmp = PyMem_Malloc((size_t)length);
                        if (tmp == NULL) {
                            PyErr_NoMemory();
                            goto error;
                        }
                    }
                    xor_mask(payload, tmp, (Py_ssize_t)length, mask);
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
                goto error;
            }
            if (PyList_Append(out, message) < 0) {
                Py_DECREF(message);
                goto error;
            }
            Py_DECREF(message);
            pos = head + (Py_ssize_t)length;
        }
    }
    PyBuffer_Release(&data);
    return PyLong_FromSsize_t(pos);

error:
    PyBuffer_Release(&data);
    return NULL;
}

static PyMethodDef speedups_methods[] = {
    {"apply_mask", apply_mask, METH_VARARGS,
     "apply_mask(data, mask) -> bytes\n\nXOR data with the 4-byte mask repeated."},
    {"build_frame", build_frame, METH_VARARGS,
     "build_frame(first_byte, payload, mask) -> bytes\n\nA whole frame: header and payload."},
    {"parse_messages", parse_messages, METH_VARARGS,
     "parse_messages(data, pos, expect_mask, max_size, out) -> int\n\n"
     "Append the whole single-frame messages at data[pos:] to out; return the new position."},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot speedups_slots[] = {
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    "ws13._speedups",
    "C speedups for ws13 (see ws13/utils.py for the reference code).",
    0,
    speedups_methods,
    speedups_slots,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}
