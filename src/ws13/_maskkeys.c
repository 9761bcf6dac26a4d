/* MaskKeys: the C twin of ws13.utils.MaskKeys, part of ws13._speedups.
 *
 * RFC 6455 section 5.3: "The masking key is a 32-bit value chosen at random
 * by the client ... MUST be derived from a strong source of entropy." Keys
 * come from os.urandom, read 4 KiB at a time (one system call per 1,024
 * frames), as in the pure-Python twin. A client takes one key per frame it
 * sends, so next() is a C method call rather than a Python one.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_speedups.h"

#define POOL_SIZE 4096
#define KEY_SIZE 4

typedef struct {
    PyObject_HEAD
    PyObject *pool; /* bytes from os.urandom, or NULL before the first key */
    Py_ssize_t pos;
} MaskKeysObject;

static int
maskkeys_init(MaskKeysObject *self, PyObject *args, PyObject *kwargs)
{
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) {
        PyErr_SetString(PyExc_TypeError, "MaskKeys() takes no arguments");
        return -1;
    }
    if (!PyArg_ParseTuple(args, ":MaskKeys")) {
        return -1;
    }
    Py_CLEAR(self->pool);
    self->pos = 0;
    return 0;
}

static void
maskkeys_dealloc(MaskKeysObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    Py_CLEAR(self->pool);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static PyObject *
maskkeys_next(MaskKeysObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *key;
    if (self->pool == NULL || self->pos + KEY_SIZE > PyBytes_GET_SIZE(self->pool)) {
        /* os.urandom (looked up at each refill, as the twin does), from the
         * os module in the state of the module that made this type. */
        PyObject *module = PyType_GetModule(Py_TYPE(self));
        PyObject *pool = module == NULL ? NULL
                                        : PyObject_CallMethod(ws13_get_state(module)->os, "urandom",
                                                              "n", (Py_ssize_t)POOL_SIZE);
        if (pool == NULL) {
            return NULL;
        }
        if (!PyBytes_Check(pool) || PyBytes_GET_SIZE(pool) < KEY_SIZE) {
            Py_DECREF(pool);
            PyErr_SetString(PyExc_RuntimeError, "os.urandom() returned too few bytes");
            return NULL;
        }
        Py_XSETREF(self->pool, pool);
        self->pos = 0;
    }
    key = PyBytes_FromStringAndSize(PyBytes_AS_STRING(self->pool) + self->pos, KEY_SIZE);
    if (key != NULL) {
        self->pos += KEY_SIZE;
    }
    return key;
}

static PyMethodDef maskkeys_methods[] = {
    {"next", (PyCFunction)maskkeys_next, METH_NOARGS, "The next 4-byte masking key."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot maskkeys_slots[] = {
    {Py_tp_doc, "Strong random 4-byte masking keys; see ws13.utils.MaskKeys."},
    {Py_tp_init, maskkeys_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, maskkeys_dealloc},
    {Py_tp_methods, maskkeys_methods},
    {0, NULL},
};

static PyType_Spec maskkeys_spec = {
    "ws13._speedups.MaskKeys",
    sizeof(MaskKeysObject),
    0,
    Py_TPFLAGS_DEFAULT,
    maskkeys_slots,
};

/* Called by ws13._speedups' module exec slot: adds MaskKeys. */
int
ws13_add_maskkeys(PyObject *module)
{
    PyObject *type;
    ws13_get_state(module)->os = PyImport_ImportModule("os");
    if (ws13_get_state(module)->os == NULL) {
        return -1;
    }
    type = PyType_FromModuleAndSpec(module, &maskkeys_spec, NULL);
    if (type == NULL) {
        return -1;
    }
    if (PyModule_AddObject(module, "MaskKeys", type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    return 0;
}
