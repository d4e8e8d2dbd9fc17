/*
 * _luma: the sum of a decoded picture's luma bytes, for its brightness
 * (capture/decoding.py: mean luma, exact, of every sample).
 *
 * Why C: the worker scores each sample from its Y plane. NumPy would cost a
 * capture pod 8 MB of private memory to import, a Python loop over the bytes
 * takes tens of milliseconds a 1080p picture, Pillow's histogram about 4 ms;
 * this loop (vectorised by the compiler) a fraction of one. The sum itself
 * is a pure function over the buffer; the binding only checks its bounds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* A row's sum fits 32 bits up to this width (255 * width < 2**32). */
#define MAX_WIDTH (1 << 24)

/* Sum of `height` rows of `width` bytes, each `stride` bytes after the last. */
static uint64_t sum_rows(const uint8_t *data, size_t width, size_t height, size_t stride)
{
    uint64_t total = 0;
    for (size_t y = 0; y < height; y++) {
        const uint8_t *row = data + y * stride;
        uint32_t row_total = 0;
        for (size_t x = 0; x < width; x++)
            row_total += row[x];
        total += row_total;
    }
    return total;
}

static PyObject *plane_sum(PyObject *module, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t width, height, stride;
    if (!PyArg_ParseTuple(args, "y*nnn", &view, &width, &height, &stride))
        return NULL;
    /* Every row inside the buffer: (height - 1) * stride + width <= len, checked
       without overflow (stride <= len, height <= len + 1 below). */
    int fits = width >= 0 && width < MAX_WIDTH && height >= 0 && stride >= width
        && stride <= view.len && height <= view.len + 1
        && (height == 0 || (height - 1) * stride + width <= view.len);
    if (!fits) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "the plane's rows do not fit in its buffer");
        return NULL;
    }
    uint64_t total;
    Py_BEGIN_ALLOW_THREADS
    total = sum_rows(view.buf, (size_t)width, (size_t)height, (size_t)stride);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLongLong(total);
}

static PyMethodDef methods[] = {
    {"plane_sum", plane_sum, METH_VARARGS,
     "plane_sum(buffer, width, height, stride) -> int: the sum of height rows of width bytes, "
     "stride bytes apart."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_luma", "The sum of a picture's luma bytes.", -1, methods,
};

PyMODINIT_FUNC PyInit__luma(void)
{
    return PyModule_Create(&module);
}
