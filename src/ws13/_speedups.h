/* What the translation units of ws13._speedups share. */
#ifndef WS13_SPEEDUPS_H
#define WS13_SPEEDUPS_H

#include <Python.h>

/* Below this size, releasing and retaking the GIL (~100 ns uncontended, up
 * to a whole switch interval when another thread holds it) costs more than
 * it lets other threads gain: masking 256 KiB takes about 10 us. */
#define RELEASE_GIL_MIN (256 * 1024)

/* _speedups.c: XOR n bytes of `in` with the 4-byte mask m repeated, into
 * `out` (which may be `in`). */
void ws13_xor_mask(const unsigned char *in, unsigned char *out, Py_ssize_t n,
                   const unsigned char *m);

/* _speedups.c: validate the next n bytes of a UTF-8 stream from `state`
 * (utils.utf8_check's format); the new state, -1 for invalid UTF-8, -2 for a
 * state utf8_check can't have returned. Releases the GIL for long inputs. */
long long ws13_utf8_resume(long long state, const unsigned char *s, Py_ssize_t n);

/* Module exec slots: each adds one type to ws13._speedups. */
int ws13_add_stepper(PyObject *module);         /* _stepper.c: StepperCore */
int ws13_add_maskkeys(PyObject *module);        /* _maskkeys.c: MaskKeys */
int ws13_add_payload_buffer(PyObject *module);  /* _payload.c: PayloadBuffer */

#endif
