/* UTF-8 in ws13._speedups: validation and encoding.
 *
 * utf8_check(data, state=0) -> int: incremental UTF-8 validation for
 * fragmented and partly received text; twin of utils.utf8_check.
 *
 * encode_text(text) -> bytes: text.encode("utf-8"), faster for a str of
 * Latin-1 characters that aren't all ASCII (see _speedups.c).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_speedups.h"
#if defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
#include <emmintrin.h>
#define WS13_SSE2 1
#endif

/* UTF-8 validation (RFC 3629 section 4), in the state format of
 * utils.utf8_check: 0 at a character boundary, else the count (1-3) of the
 * incomplete character's bytes in the low byte and those bytes above it.
 * Returns that state for the input's end, or -1 as soon as a byte makes the
 * input invalid whatever follows (a cut-off sequence whose bytes so far are
 * a valid prefix is not an error yet). */
static long long
utf8_scan(const unsigned char *s, Py_ssize_t n)
{
    Py_ssize_t i = 0;

    while (i < n) {
        unsigned char c = s[i];
        unsigned char lo = 0x80, hi = 0xBF;
        Py_ssize_t need, avail, j;

        if (c < 0x80) {
            /* The ASCII run: 16 bytes per step, then byte by byte. */
#ifdef WS13_SSE2
            while (i + 16 <= n &&
                   _mm_movemask_epi8(_mm_loadu_si128((const __m128i *)(s + i))) == 0) {
                i += 16;
            }
#else
            while (i + 8 <= n) {
                uint64_t word;
                memcpy(&word, s + i, 8);
                if (word & UINT64_C(0x8080808080808080)) {
                    break;
                }
                i += 8;
            }
#endif
            while (i < n && s[i] < 0x80) {
                i++;
            }
            continue;
        }
        /* C0, C1 would be overlong; F5-FF would exceed U+10FFFF. */
        if (c < 0xC2 || c > 0xF4) {
            return -1;
        }
        need = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        /* The second byte's range excludes overlongs (E0, F0), UTF-16
         * surrogates (ED) and code points above U+10FFFF (F4). */
        if (c == 0xE0) {
            lo = 0xA0;
        }
        else if (c == 0xED) {
            hi = 0x9F;
        }
        else if (c == 0xF0) {
            lo = 0x90;
        }
        else if (c == 0xF4) {
            hi = 0x8F;
        }
        avail = n - i < need ? n - i : need;
        if (avail >= 2 && (s[i + 1] < lo || s[i + 1] > hi)) {
            return -1;
        }
        for (j = 2; j < avail; j++) {
            if ((s[i + j] & 0xC0) != 0x80) {
                return -1;
            }
        }
        if (avail < need) {
            long long state = (long long)avail;
            for (j = 0; j < avail; j++) {
                state |= (long long)s[i + j] << (8 * (j + 1));
            }
            return state;
        }
        i += need;
    }
    return 0;
}

/* The pending bytes a state holds; their count, or -1 if `state` is not one
 * utf8_scan can return for them (checked, so that a bad argument can't make
 * the code below read the wrong number of bytes). */
static int
utf8_pending(long long state, unsigned char *tmp)
{
    int k = (int)(state & 0xFF), j;

    if (state <= 0 || k > 3 || (state >> (8 * (k + 1))) != 0) {
        return -1;
    }
    for (j = 0; j < k; j++) {
        tmp[j] = (unsigned char)(state >> (8 * (j + 1)));
    }
    return utf8_scan(tmp, k) == state ? k : -1;
}

long long
ws13_utf8_resume(long long state, const unsigned char *s, Py_ssize_t n)
{
    Py_ssize_t used = 0;

    if (state != 0) {
        unsigned char tmp[4];
        int k = utf8_pending(state, tmp), need;

        if (k < 0) {
            return -2;
        }
        /* Finish the pending character with the first bytes of `s`. */
        need = tmp[0] < 0xE0 ? 2 : tmp[0] < 0xF0 ? 3 : 4;
        used = need - k < n ? need - k : n;
        memcpy(tmp + k, s, (size_t)used);
        state = utf8_scan(tmp, k + used);
    }
    if (state == 0) {
        if (n - used < RELEASE_GIL_MIN) {
            state = utf8_scan(s + used, n - used);
        }
        else {
            Py_BEGIN_ALLOW_THREADS
            state = utf8_scan(s + used, n - used);
            Py_END_ALLOW_THREADS
        }
    }
    return state;
}

int
ws13_utf8_state(PyObject *arg, long long *state)
{
    *state = PyLong_AsLongLong(arg);
    if (*state == -1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
            return -1;
        }
        PyErr_Clear();
        *state = -2;
    }
    return 0;
}

PyObject *
ws13_utf8_check_py(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Py_buffer data;
    long long state = 0;

    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0) {
        PyErr_SetString(PyExc_TypeError, "utf8_check() takes no keyword arguments");
        return NULL;
    }
    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "utf8_check() takes 1 or 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (get_bytes_like(args[0], &data) < 0) {
        return NULL;
    }
    if (nargs == 2 && ws13_utf8_state(args[1], &state) < 0) {
        release_bytes_like(&data);
        return NULL;
    }
    state = ws13_utf8_resume(state, (const unsigned char *)data.buf, data.len);
    release_bytes_like(&data);
    if (state == -2) {
        PyErr_SetString(PyExc_ValueError, "invalid UTF-8 state");
        return NULL;
    }
    return PyLong_FromLongLong(state);
}

/* Number of bytes >= 0x80 in s[0:n]. */
static Py_ssize_t
count_high(const unsigned char *s, Py_ssize_t n)
{
    Py_ssize_t i = 0, high = 0;
#ifdef WS13_SSE2
    for (; i + 16 <= n; i += 16) {
        unsigned int bits = (unsigned int)_mm_movemask_epi8(_mm_loadu_si128((const __m128i *)(s + i)));
        while (bits) {
            bits &= bits - 1;
            high++;
        }
    }
#endif
    for (; i < n; i++) {
        high += s[i] >> 7;
    }
    return high;
}

/* UTF-8 of the n Latin-1 characters s into out (n + count_high(s, n) bytes):
 * U+0080-U+00FF become two bytes, 110000xx 10xxxxxx. */
static void
latin1_to_utf8(const unsigned char *s, Py_ssize_t n, unsigned char *out)
{
    Py_ssize_t i = 0;

    while (i < n) {
#ifdef WS13_SSE2
        if (i + 16 <= n) {
            __m128i v = _mm_loadu_si128((const __m128i *)(s + i));
            if (_mm_movemask_epi8(v) == 0) {
                _mm_storeu_si128((__m128i *)out, v);
                out += 16;
                i += 16;
                continue;
            }
        }
#endif
        {
            /* Up to 16 characters (the rest of this block) one at a time. */
            Py_ssize_t end = i + 16 < n ? i + 16 : n;
            for (; i < end; i++) {
                unsigned char c = s[i];
                if (c < 0x80) {
                    *out++ = c;
                }
                else {
                    *out++ = (unsigned char)(0xC0 | (c >> 6));
                    *out++ = (unsigned char)(0x80 | (c & 0x3F));
                }
            }
        }
    }
}

PyObject *
ws13_encode_text_py(PyObject *self, PyObject *text)
{
    return ws13_encode_text(text);
}

/* encode_text()'s work, also CoreBase.send_message()'s. */
PyObject *
ws13_encode_text(PyObject *text)
{
    const unsigned char *s;
    Py_ssize_t n;
    PyObject *out;

    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "encode_text() argument must be str, not %.200s",
                     Py_TYPE(text)->tp_name);
        return NULL;
    }
    n = PyUnicode_GET_LENGTH(text);
    if (PyUnicode_IS_ASCII(text)) {
        return PyBytes_FromStringAndSize((const char *)PyUnicode_DATA(text), n);
    }
    if (PyUnicode_KIND(text) != PyUnicode_1BYTE_KIND) {
        /* Beyond U+00FF: CPython's encoder, its errors for lone surrogates included. */
        return PyUnicode_AsUTF8String(text);
    }
    s = PyUnicode_1BYTE_DATA(text);
    out = PyBytes_FromStringAndSize(NULL, n + count_high(s, n));
    if (out != NULL) {
        latin1_to_utf8(s, n, (unsigned char *)PyBytes_AS_STRING(out));
    }
    return out;
}
