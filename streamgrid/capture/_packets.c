/*
 * _packets: an RTSP demux loop that stays in C until Python wants a packet.
 *
 * Why: at one sample per GOP a worker decodes one keyframe in 50 packets, yet
 * PyAV's demux() returns into Python for every packet, and on a busy machine
 * (cold caches) each return costs about 100 us: a quarter of the 1.5 % target
 * for nothing. Here av_read_frame runs with the GIL released, skipping the
 * packets Python does not want (in keyframe mode every non-keyframe), and
 * hands over only the ones it does, copied into bytes. Decoding stays in PyAV.
 *
 * Which FFmpeg: the one PyAV already loaded (the wheel bundles its own), found
 * by path and opened with RTLD_NOLOAD, so there is no build-time dependency on
 * FFmpeg's headers and no second copy of FFmpeg in the process. Without the
 * headers, the few fields read here are declared as the leading fields of
 * FFmpeg's public structs, which have kept this layout since FFmpeg 6.0
 * (libavformat 60). load() checks that layout against the running library
 * before anything else uses it, and refuses (so the caller falls back to
 * PyAV's demux) when it does not match.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define NOPTS_VALUE ((int64_t)UINT64_C(0x8000000000000000))
#define PKT_FLAG_KEY 0x0001
#define MEDIA_TYPE_VIDEO 0
#define MKTAG(a, b, c, d) ((a) | ((b) << 8) | ((c) << 16) | ((unsigned)(d) << 24))
#define FFERRTAG(a, b, c, d) (-(int)MKTAG(a, b, c, d))
#define ERROR_EXIT FFERRTAG('E', 'X', 'I', 'T')
#define INPUT_PADDING 64 /* AV_INPUT_BUFFER_PADDING_SIZE: decoders may read this far past the end */

/* Leading fields of FFmpeg's public structs (see the note at the top). */
typedef struct { int num, den; } Rational;
typedef struct { const char *class_name; } ClassHead;                    /* AVClass */
typedef struct { const char *name; const char *help; int offset; } OptionHead; /* AVOption */
typedef struct { int (*callback)(void *); void *opaque; } InterruptCallback; /* AVIOInterruptCB */
typedef struct {                                                          /* AVPacket */
    void *buf;
    int64_t pts, dts;
    uint8_t *data;
    int size, stream_index, flags;
} PacketHead;
typedef struct {                                                          /* AVFormatContext */
    const ClassHead *av_class;
    const void *iformat, *oformat;
    void *priv_data, *pb;
    int ctx_flags;
    unsigned int nb_streams;
    void **streams;
} FormatHead;
typedef struct {                                                          /* AVStream */
    const ClassHead *av_class;
    int index, id;
    void *codecpar;
    void *priv_data;
    Rational time_base;
} StreamHead;
typedef struct {                                                          /* AVCodecParameters */
    int codec_type, codec_id;
    uint32_t codec_tag;
    uint8_t *extradata;
    int extradata_size;
} ParamsHead;

static struct {
    unsigned (*avformat_version)(void);
    unsigned (*avcodec_version)(void);
    unsigned (*avutil_version)(void);
    FormatHead *(*avformat_alloc_context)(void);
    void (*avformat_free_context)(FormatHead *);
    int (*avformat_open_input)(FormatHead **, const char *, const void *, void **);
    int (*avformat_find_stream_info)(FormatHead *, void **);
    void (*avformat_close_input)(FormatHead **);
    int (*av_find_best_stream)(FormatHead *, int, int, int, const void **, int);
    int (*av_read_frame)(FormatHead *, PacketHead *);
    PacketHead *(*av_packet_alloc)(void);
    void (*av_packet_free)(PacketHead **);
    void (*av_packet_unref)(PacketHead *);
    int (*av_new_packet)(PacketHead *, int);
    const char *(*avcodec_get_name)(int);
    int (*av_dict_set)(void **, const char *, const char *, int);
    void (*av_dict_free)(void **);
    const OptionHead *(*av_opt_find)(void *, const char *, const char *, int, int);
} ff;
static ptrdiff_t interrupt_offset = -1; /* of AVFormatContext.interrupt_callback */
static int loaded = 0;

static PyObject *CallError; /* an FFmpeg call failed; args: (code,) */

static double monotonic(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* the clock of Python's time.monotonic() */
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* -- load: bind to the loaded FFmpeg and check the layout ------------------ */

static const char *bind(void *lib, const char *name, void **slot) {
    *slot = dlsym(lib, name);
    return *slot ? NULL : name;
}

static const char *check_layout(char *why, size_t why_size) {
    unsigned format = ff.avformat_version() >> 16, codec = ff.avcodec_version() >> 16;
    unsigned util = ff.avutil_version() >> 16;
    if (format < 60 || format > 62 || codec < 60 || codec > 62 || util < 58 || util > 60) {
        snprintf(why, why_size,
                 "libavformat %u, libavcodec %u, libavutil %u: only FFmpeg 6 to 8 "
                 "(libavformat 60 to 62) are known", format, codec, util);
        return why;
    }
    /* AVPacket: a fresh packet has no timestamps, stream 0, no flags. */
    PacketHead *packet = ff.av_packet_alloc();
    if (!packet) return "av_packet_alloc failed";
    int ok = ff.av_new_packet(packet, 64) == 0 && packet->size == 64 && packet->data &&
             packet->buf && packet->pts == NOPTS_VALUE && packet->dts == NOPTS_VALUE &&
             packet->stream_index == 0 && packet->flags == 0;
    ff.av_packet_free(&packet);
    if (!ok) return "AVPacket's leading fields are not where expected";
    /* AVFormatContext: its class, no streams yet, and interrupt_callback found
     * from the options around it: it follows error_recognition and is
     * followed by debug, so both neighbours' offsets must agree. */
    FormatHead *context = ff.avformat_alloc_context();
    if (!context) return "avformat_alloc_context failed";
    const OptionHead *errors = ff.av_opt_find(context, "f_err_detect", NULL, 0, 0);
    const OptionHead *debug = ff.av_opt_find(context, "fdebug", NULL, 0, 0);
    ok = context->av_class && context->av_class->class_name &&
         strcmp(context->av_class->class_name, "AVFormatContext") == 0 &&
         context->nb_streams == 0 && context->streams == NULL && errors && debug;
    if (ok) {
        ptrdiff_t offset = (errors->offset + (ptrdiff_t)sizeof(int) + 7) & ~(ptrdiff_t)7;
        InterruptCallback *cb = (InterruptCallback *)((char *)context + offset);
        ok = debug->offset == offset + (ptrdiff_t)sizeof(InterruptCallback) && !cb->callback &&
             !cb->opaque;
        if (ok) interrupt_offset = offset;
    }
    ff.avformat_free_context(context);
    return ok ? NULL : "AVFormatContext's fields are not where expected";
}

static PyObject *load(PyObject *module, PyObject *args) {
    const char *paths[3];
    if (!PyArg_ParseTuple(args, "sss:load", &paths[0], &paths[1], &paths[2])) return NULL;
    if (loaded) Py_RETURN_NONE;
    void *libs[3];
    for (int i = 0; i < 3; i++) {
        /* RTLD_NOLOAD: only the copy already in the process (PyAV's). */
        libs[i] = dlopen(paths[i], RTLD_NOW | RTLD_NOLOAD);
        if (!libs[i]) return PyErr_Format(PyExc_RuntimeError, "%s is not loaded", paths[i]);
    }
    void *format = libs[0], *codec = libs[1], *util = libs[2];
    const char *missing = NULL;
#define BIND(lib, name) \
    if (!missing) missing = bind(lib, #name, (void **)&ff.name)
    BIND(format, avformat_version);
    BIND(codec, avcodec_version);
    BIND(util, avutil_version);
    BIND(format, avformat_alloc_context);
    BIND(format, avformat_free_context);
    BIND(format, avformat_open_input);
    BIND(format, avformat_find_stream_info);
    BIND(format, avformat_close_input);
    BIND(format, av_find_best_stream);
    BIND(format, av_read_frame);
    BIND(codec, av_packet_alloc);
    BIND(codec, av_packet_free);
    BIND(codec, av_packet_unref);
    BIND(codec, av_new_packet);
    BIND(codec, avcodec_get_name);
    BIND(util, av_dict_set);
    BIND(util, av_dict_free);
    BIND(util, av_opt_find);
#undef BIND
    if (missing) return PyErr_Format(PyExc_RuntimeError, "FFmpeg has no symbol %s", missing);
    char why[200];
    const char *problem = check_layout(why, sizeof why);
    if (problem) return PyErr_Format(PyExc_RuntimeError, "%s", problem);
    loaded = 1;
    Py_RETURN_NONE;
}

/* -- PacketReader ---------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    FormatHead *context;
    PacketHead *packet;
    int video; /* the video stream's index */
    double read_timeout;
    double deadline; /* monotonic; the interrupt callback aborts past it (0: none) */
    atomic_int interrupted;
    int busy;             /* inside a call that released the GIL */
    int has_previous;     /* the video packet before the next one handed over: */
    double previous_arrived;
    int64_t previous_pts;
    unsigned long long skipped, delivered;
} PacketReader;

static int on_interrupt(void *opaque) {
    PacketReader *self = opaque;
    if (atomic_load_explicit(&self->interrupted, memory_order_relaxed)) return 1;
    return self->deadline > 0 && monotonic() > self->deadline;
}

static int reader_ready(PacketReader *self) {
    if (!self->context) {
        PyErr_SetString(PyExc_ValueError, "the reader is not open");
        return 0;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the reader is in use by another thread");
        return 0;
    }
    return 1;
}

static void reader_close_context(PacketReader *self) {
    if (self->context) {
        /* RTSP sends TEARDOWN on close: bound it like a read. */
        self->deadline = monotonic() + (self->read_timeout < 2.0 ? self->read_timeout : 2.0);
        Py_BEGIN_ALLOW_THREADS
        ff.avformat_close_input(&self->context);
        Py_END_ALLOW_THREADS
        self->context = NULL;
    }
    if (self->packet) ff.av_packet_free(&self->packet);
}

static PyObject *call_error(int code) {
    PyObject *args = Py_BuildValue("(i)", code);
    if (args) {
        PyErr_SetObject(CallError, args);
        Py_DECREF(args);
    }
    return NULL;
}

static PyObject *reader_open(PacketReader *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"url", "options", "open_timeout", "read_timeout", NULL};
    const char *url;
    PyObject *options;
    double open_timeout, read_timeout;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sO!dd:open", keywords, &url, &PyDict_Type,
                                     &options, &open_timeout, &read_timeout))
        return NULL;
    if (!loaded) {
        PyErr_SetString(PyExc_RuntimeError, "load() first");
        return NULL;
    }
    if (self->context || self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the reader is already open");
        return NULL;
    }
    void *dict = NULL;
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(options, &pos, &key, &value)) {
        const char *k = PyUnicode_AsUTF8(key), *v = k ? PyUnicode_AsUTF8(value) : NULL;
        if (!v) {
            ff.av_dict_free(&dict);
            return NULL;
        }
        ff.av_dict_set(&dict, k, v, 0);
    }
    FormatHead *context = ff.avformat_alloc_context();
    self->packet = ff.av_packet_alloc();
    if (!context || !self->packet) {
        ff.av_dict_free(&dict);
        if (context) ff.avformat_free_context(context);
        if (self->packet) ff.av_packet_free(&self->packet);
        return PyErr_NoMemory();
    }
    InterruptCallback *cb = (InterruptCallback *)((char *)context + interrupt_offset);
    cb->callback = on_interrupt;
    cb->opaque = self;
    self->read_timeout = read_timeout;
    self->deadline = monotonic() + open_timeout;
    self->busy = 1;
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = ff.avformat_open_input(&context, url, NULL, &dict); /* frees context on failure */
    if (code >= 0) code = ff.avformat_find_stream_info(context, NULL);
    if (code >= 0) code = ff.av_find_best_stream(context, MEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    self->deadline = 0;
    ff.av_dict_free(&dict);
    self->context = context;
    if (code < 0) {
        reader_close_context(self);
        return call_error(code);
    }
    self->video = code;
    /* The streams, checked as check_layout() could not before there were any. */
    for (unsigned i = 0; i < context->nb_streams; i++) {
        StreamHead *stream = context->streams[i];
        ParamsHead *params = stream ? stream->codecpar : NULL;
        if (!params || stream->index != (int)i || !stream->av_class ||
            strcmp(stream->av_class->class_name, "AVStream") != 0 ||
            (i == (unsigned)code && params->codec_type != MEDIA_TYPE_VIDEO) ||
            stream->time_base.num <= 0 || stream->time_base.den <= 0) {
            reader_close_context(self);
            PyErr_SetString(PyExc_RuntimeError, "AVStream's fields are not where expected");
            return NULL;
        }
    }
    self->has_previous = 0;
    self->skipped = self->delivered = 0;
    Py_RETURN_NONE;
}

static PyObject *reader_stream(PacketReader *self, PyObject *unused) {
    if (!reader_ready(self)) return NULL;
    StreamHead *stream = self->context->streams[self->video];
    ParamsHead *params = stream->codecpar;
    const char *name = ff.avcodec_get_name(params->codec_id);
    return Py_BuildValue("(sy#ii)", name ? name : "none", (const char *)params->extradata,
                         (Py_ssize_t)(params->extradata ? params->extradata_size : 0),
                         stream->time_base.num, stream->time_base.den);
}

static PyObject *optional_int(int present, int64_t value) {
    if (!present) Py_RETURN_NONE;
    return PyLong_FromLongLong(value);
}

static PyObject *reader_read(PacketReader *self, PyObject *args) {
    int keyframes_only;
    double max_wait;
    if (!PyArg_ParseTuple(args, "pd:read", &keyframes_only, &max_wait)) return NULL;
    if (!reader_ready(self)) return NULL;
    FormatHead *context = self->context;
    PacketHead *packet = self->packet;
    int code = 0, found = 0, had_previous = self->has_previous;
    double arrived = 0, previous_arrived = self->previous_arrived;
    int64_t previous_pts = self->previous_pts;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    double give_up = monotonic() + max_wait;
    while (!atomic_load(&self->interrupted)) {
        self->deadline = monotonic() + self->read_timeout;
        code = ff.av_read_frame(context, packet);
        if (code < 0) break;
        arrived = monotonic();
        if (packet->stream_index == self->video && packet->size > 0) {
            if (!keyframes_only || (packet->flags & PKT_FLAG_KEY)) {
                found = 1;
                break;
            }
            had_previous = 1;
            previous_arrived = arrived;
            previous_pts = packet->pts;
            self->skipped++;
        }
        ff.av_packet_unref(packet);
        if (arrived >= give_up) break;
    }
    self->deadline = 0;
    Py_END_ALLOW_THREADS
    self->busy = 0;
    self->has_previous = had_previous;
    self->previous_arrived = previous_arrived;
    self->previous_pts = previous_pts;
    if (code < 0) {
        if (atomic_load(&self->interrupted) && code == ERROR_EXIT) Py_RETURN_NONE;
        return call_error(code);
    }
    if (!found) Py_RETURN_NONE; /* max_wait passed, or interrupted */
    /* (data + zeroed padding, pts, dts, keyframe, arrived, previous_arrived, previous_pts) */
    PyObject *data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)packet->size + INPUT_PADDING);
    if (!data) {
        ff.av_packet_unref(packet);
        return NULL;
    }
    memcpy(PyBytes_AS_STRING(data), packet->data, (size_t)packet->size);
    memset(PyBytes_AS_STRING(data) + packet->size, 0, INPUT_PADDING);
    PyObject *result = Py_BuildValue(
        "(NNNOdNN)", data,
        optional_int(packet->pts != NOPTS_VALUE, packet->pts),
        optional_int(packet->dts != NOPTS_VALUE, packet->dts),
        (packet->flags & PKT_FLAG_KEY) ? Py_True : Py_False, arrived,
        had_previous ? PyFloat_FromDouble(previous_arrived) : Py_NewRef(Py_None),
        optional_int(had_previous && previous_pts != NOPTS_VALUE, previous_pts));
    self->has_previous = 1;
    self->previous_arrived = arrived;
    self->previous_pts = packet->pts;
    self->delivered++;
    ff.av_packet_unref(packet);
    return result;
}

static PyObject *reader_interrupt(PacketReader *self, PyObject *unused) {
    atomic_store(&self->interrupted, 1);
    Py_RETURN_NONE;
}

static PyObject *reader_close(PacketReader *self, PyObject *unused) {
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the reader is in use by another thread");
        return NULL;
    }
    reader_close_context(self);
    Py_RETURN_NONE;
}

static void reader_dealloc(PacketReader *self) {
    if (!self->busy) reader_close_context(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *reader_counts(PacketReader *self, void *unused) {
    return Py_BuildValue("(KK)", self->delivered, self->skipped);
}

static PyMethodDef reader_methods[] = {
    {"open", (PyCFunction)(void (*)(void))reader_open, METH_VARARGS | METH_KEYWORDS,
     "open(url, options, open_timeout, read_timeout): connect, probe, pick the video stream."},
    {"stream", (PyCFunction)reader_stream, METH_NOARGS,
     "stream() -> (codec_name, extradata, time_base_num, time_base_den)"},
    {"read", (PyCFunction)reader_read, METH_VARARGS,
     "read(keyframes_only, max_wait) -> (data, pts, dts, keyframe, arrived, previous_arrived, "
     "previous_pts) or None when max_wait passed (or after interrupt()). data ends in PADDING "
     "zero bytes, which FFmpeg's decoders need."},
    {"interrupt", (PyCFunction)reader_interrupt, METH_NOARGS,
     "Abort a blocked read from any thread; the reader returns None from then on."},
    {"close", (PyCFunction)reader_close, METH_NOARGS, "Disconnect (idempotent)."},
    {NULL},
};

static PyGetSetDef reader_getset[] = {
    {"counts", (getter)reader_counts, NULL, "(packets handed over, packets skipped)", NULL},
    {NULL},
};

static PyTypeObject PacketReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "streamgrid.capture._packets.PacketReader",
    .tp_basicsize = sizeof(PacketReader),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One RTSP connection, demuxed in C; hands Python only the packets it asks for.",
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)reader_dealloc,
    .tp_methods = reader_methods,
    .tp_getset = reader_getset,
};

static PyMethodDef module_methods[] = {
    {"load", load, METH_VARARGS,
     "load(libavformat, libavcodec, libavutil): bind to these already-loaded libraries "
     "and check their struct layout; RuntimeError says why not."},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_packets",
    .m_doc = "An RTSP demux loop in C (see _packets.c).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__packets(void) {
    if (PyType_Ready(&PacketReaderType) < 0) return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (!module) return NULL;
    CallError = PyErr_NewException("streamgrid.capture._packets.CallError", NULL, NULL);
    if (PyModule_AddIntConstant(module, "PADDING", INPUT_PADDING) < 0 ||
        PyModule_AddObjectRef(module, "CallError", CallError) < 0 ||
        PyModule_AddObjectRef(module, "PacketReader", (PyObject *)&PacketReaderType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
