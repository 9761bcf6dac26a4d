/* send_whole(): a whole message sent as one frame, in C; part of ws13._speedups.
 *
 * The twin is _send_whole_py() in ws13/asyncio/connection.py, the common case
 * of both send() and send_nowait(): a str or bytes message on a connection
 * whose core needs nothing between messages (Protocol._plain_send), with
 * nothing queued before it. The frame is built and written in one go; with
 * permessage-deflate alone, the payload is compressed first. It returns
 * False, having done nothing, for anything else, which the Python callers
 * then handle. The Python twin was ~70 bytecodes per message, ~1,500
 * instructions of a 32 B echo (bench/instructions.py).
 *
 * As in _receiver.c, the __slots__ are read at offsets install_sender()
 * found from the member descriptors of Connection and Protocol, and a
 * connection or protocol that isn't what it was shown goes to the Python
 * twin.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_speedups.h"

#define call_method ws13_call_method

/* Whether `obj` is false, as PyObject_Not() says, but False and an empty list
 * (what _fragmenting and _writes hold) without its calls: ~50 of ~10,500
 * instructions per 32 B echo (bench/instructions.py). */
static int
is_false(PyObject *obj)
{
    if (obj == Py_False) {
        return 1;
    }
    if (PyList_CheckExact(obj)) {
        return PyList_GET_SIZE(obj) == 0;
    }
    return PyObject_Not(obj);
}

static PyTypeObject *connection_type, *protocol_type;
static PyObject *py_twin;
static Py_ssize_t copy_max;
static int writelines_ok;
static Py_ssize_t off_protocol, off_transport, off_fragmenting;
static Py_ssize_t off_plain_send, off_writes, off_deflate, off_mask_keys;
static PyObject *str_write, *str_writelines, *str_is_closing, *str_encode_message, *str_next;

/* Write `payload` as one frame with `first_byte` to `transport`, masked with
 * the next key of `keys` if set; 0 or -1. */
static int
write_frame(PyObject *transport, int first_byte, PyObject *payload, PyObject *keys)
{
    const unsigned char *buf = (const unsigned char *)PyBytes_AS_STRING(payload);
    Py_ssize_t n = PyBytes_GET_SIZE(payload);
    PyObject *frame, *result;
    int status;

    if (ws13_is_set(keys)) {
        PyObject *key = call_method(keys, str_next, NULL, NULL);
        if (key == NULL) {
            return -1;
        }
        if (!PyBytes_Check(key) || PyBytes_GET_SIZE(key) != 4) {
            Py_DECREF(key);
            PyErr_SetString(PyExc_ValueError, "mask must contain 4 bytes");
            return -1;
        }
        frame = ws13_build_frame(first_byte, buf, n, (const unsigned char *)PyBytes_AS_STRING(key),
                                 1);
        Py_DECREF(key);
    }
    else {
        if (n > copy_max && writelines_ok) {
            /* A large unmasked payload goes out beside its header, not
             * copied into one frame (connection.py's _send_whole_py() says why),
             * unless the transport is closing. */
            int closing;
            result = call_method(transport, str_is_closing, NULL, NULL);
            closing = result == NULL ? -1 : PyObject_IsTrue(result);
            Py_XDECREF(result);
            if (closing < 0) {
                return -1;
            }
            if (!closing) {
                PyObject *header = ws13_build_frame(first_byte, NULL, n, NULL, 0);
                PyObject *parts;
                if (header == NULL) {
                    return -1;
                }
                parts = PyTuple_Pack(2, header, payload);
                Py_DECREF(header);
                if (parts == NULL) {
                    return -1;
                }
                status = ws13_call_method_status(transport, str_writelines, parts, NULL);
                Py_DECREF(parts);
                return status;
            }
        }
        frame = ws13_build_frame(first_byte, buf, n, NULL, 1);
    }
    if (frame == NULL) {
        return -1;
    }
    status = ws13_call_method_status(transport, str_write, frame, NULL);
    Py_DECREF(frame);
    return status;
}

static PyObject *
send_whole(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *connection, *message, *protocol, *transport, *fragmenting;
    PyObject *payload, *deflate, *keys;
    int first_byte, status;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "send_whole() takes 2 arguments: connection, message");
        return NULL;
    }
    if (py_twin == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "install_sender() was not called");
        return NULL;
    }
    connection = args[0];
    message = args[1];
    if (!PyObject_TypeCheck(connection, connection_type)) {
        return PyObject_Vectorcall(py_twin, args, 2, NULL);
    }
    protocol = ws13_slot(connection, off_protocol);
    transport = ws13_slot(connection, off_transport);
    fragmenting = ws13_slot(connection, off_fragmenting);
    if (protocol == NULL || !PyObject_TypeCheck(protocol, protocol_type) || !ws13_is_set(transport) ||
        fragmenting == NULL || ws13_slot(protocol, off_plain_send) == NULL ||
        ws13_slot(protocol, off_writes) == NULL || ws13_slot(protocol, off_deflate) == NULL ||
        ws13_slot(protocol, off_mask_keys) == NULL) {
        /* Not what install_sender() was shown: the Python twin decides. */
        return PyObject_Vectorcall(py_twin, args, 2, NULL);
    }
    if (ws13_slot(protocol, off_plain_send) != Py_True ||
        !(PyUnicode_CheckExact(message) || PyBytes_CheckExact(message))) {
        Py_RETURN_FALSE;
    }
    status = is_false(ws13_slot(protocol, off_writes));
    if (status > 0) {
        status = is_false(fragmenting);
    }
    if (status <= 0) {
        return status < 0 ? NULL : Py_NewRef(Py_False);
    }
    Py_INCREF(protocol);
    Py_INCREF(transport);
    if (PyUnicode_CheckExact(message)) {
        first_byte = 0x81;
        payload = ws13_encode_text(message);
    }
    else {
        first_byte = 0x82;
        payload = Py_NewRef(message);
    }
    status = payload == NULL ? -1 : 0;
    deflate = Py_XNewRef(ws13_slot(protocol, off_deflate));
    if (status == 0 && ws13_is_set(deflate)) {
        /* permessage-deflate alone (see _plain_send): compress the whole
         * message, as Protocol._write_frame() would. */
        PyObject *compressed = call_method(deflate, str_encode_message, payload, NULL);
        if (compressed == NULL) {
            status = -1;
        }
        else if (compressed == Py_None) {
            Py_DECREF(compressed);
        }
        else if (!PyBytes_Check(compressed)) {
            PyErr_Format(PyExc_TypeError, "encode_message() must return bytes or None, not %.50s",
                         Py_TYPE(compressed)->tp_name);
            Py_DECREF(compressed);
            status = -1;
        }
        else {
            Py_SETREF(payload, compressed);
            first_byte |= 0x40; /* RFC 7692 section 6: RSV1 marks a compressed message */
        }
    }
    Py_XDECREF(deflate);
    if (status == 0) {
        keys = Py_XNewRef(ws13_slot(protocol, off_mask_keys));
        status = write_frame(transport, first_byte, payload, keys);
        Py_XDECREF(keys);
    }
    Py_XDECREF(payload);
    Py_DECREF(protocol);
    Py_DECREF(transport);
    if (status < 0) {
        return NULL;
    }
    Py_RETURN_TRUE;
}

static PyObject *
install_sender(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *connection, *protocol;
    Py_ssize_t limit;
    int ok;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "install_sender() takes 5 arguments: connection class, "
                                         "protocol class, its Python twin, COPY_MAX, "
                                         "writelines OK");
        return NULL;
    }
    connection = args[0];
    protocol = args[1];
    if (!PyType_Check(connection) || !PyType_Check(protocol) || !PyCallable_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "install_sender() needs two classes and a function");
        return NULL;
    }
    if (py_twin != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "install_sender() was already called");
        return NULL;
    }
    limit = PyNumber_AsSsize_t(args[3], PyExc_OverflowError);
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if ((ok = PyObject_IsTrue(args[4])) < 0) {
        return NULL;
    }
    WS13_SLOT_OFFSET(off_protocol, connection, "protocol");
    WS13_SLOT_OFFSET(off_transport, connection, "transport");
    WS13_SLOT_OFFSET(off_fragmenting, connection, "_fragmenting");
    WS13_SLOT_OFFSET(off_plain_send, protocol, "_plain_send");
    WS13_SLOT_OFFSET(off_writes, protocol, "_writes");
    WS13_SLOT_OFFSET(off_deflate, protocol, "_deflate");
    WS13_SLOT_OFFSET(off_mask_keys, protocol, "_mask_keys");
    copy_max = limit;
    writelines_ok = ok;
    connection_type = (PyTypeObject *)Py_NewRef(connection);
    protocol_type = (PyTypeObject *)Py_NewRef(protocol);
    py_twin = Py_NewRef(args[2]);
    Py_RETURN_NONE;
}

static PyMethodDef sender_functions[] = {
    {"install_sender", (PyCFunction)(void (*)(void))install_sender, METH_FASTCALL,
     "install_sender(Connection, Protocol, _send_whole_py, COPY_MAX, writelines_ok)\n\n"
     "Make send_whole() read those classes' slots (once)."},
    {"send_whole", (PyCFunction)(void (*)(void))send_whole, METH_FASTCALL,
     "send_whole(connection, message) -> bool\n\n"
     "Send a whole str or bytes message as one frame now if nothing stands in the way; "
     "False, having done nothing, otherwise. C twin of connection.py's _send_whole_py()."},
    {NULL, NULL, 0, NULL},
};

/* Called by ws13._speedups' module exec slot: adds install_sender() and
 * send_whole(). */
int
ws13_add_sender(PyObject *module)
{
    if (ws13_intern(&str_write, "write") < 0 || ws13_intern(&str_writelines, "writelines") < 0 ||
        ws13_intern(&str_is_closing, "is_closing") < 0 ||
        ws13_intern(&str_encode_message, "encode_message") < 0 || ws13_intern(&str_next, "next") < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, sender_functions);
}
