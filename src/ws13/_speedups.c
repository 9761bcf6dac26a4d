/* C twins of the hot helpers in ws13/utils.py; ws13/_accel.py picks them.
 *
 * apply_mask(data, mask) -> bytes: XOR data with the 4-byte mask repeated
 * (RFC 6455 section 5.3). Works 8 bytes at a time on a 64-bit copy of the
 * mask; the compiler vectorises the loop further at -O3.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

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
    {
        const unsigned char *in = (const unsigned char *)data.buf;
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
        const unsigned char *m = (const unsigned char *)mask.buf;
        Py_ssize_t n = data.len, i = 0;
        uint64_t m64;
        unsigned char m8[8] = {m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]};

        memcpy(&m64, m8, 8);
        Py_BEGIN_ALLOW_THREADS
        for (; i + 8 <= n; i += 8) {
            uint64_t word;
            memcpy(&word, in + i, 8);
            word ^= m64;
            memcpy(out + i, &word, 8);
        }
        for (; i < n; i++) {
            out[i] = in[i] ^ m[i & 3];
        }
        Py_END_ALLOW_THREADS
    }

done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&mask);
    return result;
}

static PyMethodDef speedups_methods[] = {
    {"apply_mask", apply_mask, METH_VARARGS,
     "apply_mask(data, mask) -> bytes\n\nXOR data with the 4-byte mask repeated."},
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
