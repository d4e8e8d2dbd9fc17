/*
 * _rtp: the receive side of RTSP over TCP for H.264 and H.265, in C, without
 * FFmpeg: a thin CPython binding that reads the socket and hands what it gets
 * to the parser in rtp_parse.c.
 *
 * Why: once the worker only decodes keyframes, FFmpeg's RTSP demuxer is most of
 * what is left. It reads each RTP packet with three recv() calls, each after its
 * own poll(), allocates a packet per RTP packet, then reassembles access units
 * in its parser: about 1,500 syscalls and 250 allocations a second for a 720p
 * camera, 0.6-0.7 % of a core before anything is decoded. Here one poll() and
 * one recv() take whatever has arrived (a frame's packets come in a burst), the
 * RTP packets are depacketized in place, and in keyframe mode a non-key access
 * unit never reaches Python: it is held back in C (one memcpy), in case the
 * keyframe the sampler waits for is late and it asks for the units since the
 * last one after all; once the chain is broken (a lost packet, a GOP past
 * the hold's bound), not a byte of such a unit is copied.
 *
 * The RTSP conversation (DESCRIBE, SETUP, PLAY, keep-alives, TEARDOWN) stays in
 * Python (capture/rtsp.py): it is a handful of messages per connection. Python
 * hands over the connected socket; this reads it with the GIL released, and the
 * parser skips the RTSP responses the server interleaves (answers to
 * keep-alives) and hands back one access unit at a time, in Annex B form.
 *
 * While the worker is away from read() (decoding, scoring, encoding what it
 * just got), a thread of its own, which never takes the GIL, receives for it:
 * it takes each recv()'s bytes into a bounded queue with the time they became
 * readable. Read only from the worker's thread, a unit that came while the
 * worker was busy with the one before was stamped when the worker got back to
 * the socket: with one camera fanned out to many workers on a busy machine
 * (every keyframe reaching all of them at once), up to a second after it
 * came, and the sampler took such a keyframe for a stale one and lost its
 * sample (capture/sampling.py). Inside read() the worker's thread receives
 * itself, as before, so a unit costs no more wake-ups than it did; parsing
 * stays on that thread, and only the queue is shared.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "rtp_parse.h"

#define IN_CAPACITY (256 * 1024) /* > one interleaved frame (64 KiB) plus a burst */
#if RTP_ITEM_MAX > IN_CAPACITY
#error "what the parser waits for must fit in the buffer"
#endif
/* What the receive thread may take in while the worker is busy: a second of a
 * 4 Mb/s camera. Once it is full the thread stops reading, and the socket's own
 * buffers, then TCP, hold the rest back, as without the thread. */
#define QUEUE_CAPACITY (512 * 1024)
#define QUEUE_CHUNKS 512 /* recv()s queued at most: each keeps its own time */
#define RECEIVER_STACK (64 * 1024)
#define RECEIVER_NAME "rtp-receive"
/* Of the queue's pages, those past this are given back whenever it empties: a
 * busy spell's backlog must not stay in every worker's private memory. */
#define QUEUE_KEPT (64 * 1024)

/* One recv()'s bytes, in order, and when they became readable. */
struct chunk {
    size_t len;
    double arrived;
};

/* What the receive thread took in for read(): bytes q[start, end), cut into
 * chunks. All of it under `lock`. */
struct inbox {
    pthread_mutex_t lock;
    pthread_cond_t armed_or_room; /* the thread waits here to be armed, or for room */
    int armed;    /* the worker is away from read(): the thread receives */
    int stopping; /* close(): the thread is to end */
    uint8_t *q;
    size_t start, end;
    size_t touched; /* how far into q pages may be resident */
    struct chunk chunks[QUEUE_CHUNKS];
    size_t first, count; /* a ring of chunks */
    int eof, error;      /* the connection ended; errno of a failed receive */
};

static PyObject *EndOfStream; /* the server closed the connection */
static PyObject *ReadTimeout; /* nothing arrived within the read timeout */

typedef struct {
    PyObject_HEAD
    int fd, wake; /* the RTSP socket (not ours to close); an eventfd for interrupt() */
    double read_timeout;
    /* Bytes received and not yet parsed: in[start, end). */
    uint8_t *in;
    size_t start, end;
    double last_data; /* monotonic time of the last bytes received */
    int schedstat;    /* /proc/thread-self/schedstat of schedstat_tid, or -1 */
    long schedstat_tid;
    struct inbox inbox;
    int stop; /* an eventfd: the receive thread is to end */
    pthread_t receiver;
    int receiving; /* the receive thread runs (from the first read() to close()) */
    int interrupted;
    int closed;
    unsigned long long handed;
    struct rtp_parser parser; /* its `arrived`: when the bytes being parsed became readable */
} RtpReader;

static double monotonic(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Seconds the calling thread has waited on a run queue so far (the kernel's
 * schedstat; 0 where there is none). Taken out of a read's time, it gives
 * when the bytes became readable rather than when this thread got a CPU to
 * read them: with many readers woken at once (cameras fanned out by one
 * server, their keyframes together), the last waits for the others' decoding,
 * and the sampler would take that wait for a backlog (capture/sampling.py). */
static double queued_in(int schedstat) {
    char text[128];
    ssize_t n = schedstat >= 0 ? pread(schedstat, text, sizeof text - 1, 0) : -1;
    unsigned long long ran, waited;
    if (n <= 0)
        return 0.0;
    text[n] = 0;
    return sscanf(text, "%llu %llu", &ran, &waited) == 2 ? (double)waited / 1e9 : 0.0;
}

static double queued_seconds(RtpReader *r) {
    long tid = (long)syscall(SYS_gettid);
    if (r->schedstat_tid != tid) { /* this thread's own file: another thread reads now */
        if (r->schedstat >= 0)
            close(r->schedstat);
        r->schedstat = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
        r->schedstat_tid = tid;
    }
    return queued_in(r->schedstat);
}

/* Wakes whoever polls the eventfd `fd`. */
static void signal_eventfd(int fd) {
    uint64_t one = 1;
    if (fd >= 0 && write(fd, &one, sizeof one) < 0) {
        /* the eventfd is full: a wake-up is pending anyway */
    }
}

/* -- the receive thread ------------------------------------------------------ */

/* Room at the queue's end (0: full). With the lock held. */
static size_t queue_room(struct inbox *box) {
    if (box->start == box->end) {
        box->start = box->end = 0; /* empty: from the start again */
        if (box->touched > QUEUE_KEPT) {
            madvise(box->q + QUEUE_KEPT, box->touched - QUEUE_KEPT, MADV_DONTNEED);
            box->touched = QUEUE_KEPT;
        }
    } else if (box->start > 0 && QUEUE_CAPACITY - box->end < QUEUE_CAPACITY / 4) {
        memmove(box->q, box->q + box->start, box->end - box->start);
        box->end -= box->start;
        box->start = 0;
    }
    return box->count < QUEUE_CHUNKS ? QUEUE_CAPACITY - box->end : 0;
}

/* Receives while armed: read() disarms it under the lock on the way in and
 * arms it on the way out, and the thread receives only under the lock and
 * armed, so the two never read the socket at once. */
static void *receive(void *arg) {
    RtpReader *r = arg;
    struct inbox *box = &r->inbox;
    pthread_setname_np(pthread_self(), RECEIVER_NAME); /* as top -H and ps -L show it */
    int schedstat = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    pthread_mutex_lock(&box->lock);
    while (!box->stopping) {
        if (!box->armed || box->eof || box->error || queue_room(box) == 0) {
            pthread_cond_wait(&box->armed_or_room, &box->lock);
            continue;
        }
        pthread_mutex_unlock(&box->lock);
        double queued = queued_in(schedstat);
        struct pollfd fds[2] = {{r->fd, POLLIN, 0}, {r->stop, POLLIN, 0}};
        int ready = poll(fds, 2, -1);
        int error = ready < 0 ? errno : 0;
        pthread_mutex_lock(&box->lock);
        if (box->stopping || !box->armed || error == EINTR)
            continue; /* read() has the socket now: it receives itself */
        if (error) {
            box->error = error;
            continue;
        }
        size_t room = queue_room(box);
        if (room == 0)
            continue;
        ssize_t got = recv(r->fd, box->q + box->end, room, MSG_DONTWAIT);
        error = got < 0 ? errno : 0;
        if (error == EINTR || error == EAGAIN || error == EWOULDBLOCK)
            continue;
        if (got < 0) {
            box->error = error;
        } else if (got == 0) {
            box->eof = 1;
        } else {
            /* Readable since the wake-up that this thread waited to be run after. */
            double waited = queued_in(schedstat) - queued;
            double now = monotonic();
            struct chunk *c = &box->chunks[(box->first + box->count++) % QUEUE_CHUNKS];
            box->end += (size_t)got;
            if (box->end > box->touched)
                box->touched = box->end;
            c->len = (size_t)got;
            c->arrived = now - (waited > 0.0 ? waited : 0.0);
            r->last_data = now;
        }
    }
    pthread_mutex_unlock(&box->lock);
    if (schedstat >= 0)
        close(schedstat);
    return NULL;
}

static int start_receiver(RtpReader *r) {
    pthread_attr_t attr;
    sigset_t all, previous;
    if (pthread_attr_init(&attr) != 0)
        return -1;
    pthread_attr_setstacksize(&attr, RECEIVER_STACK);
    /* Signals are for the worker's own threads: the thread starts with all blocked. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    int failed = pthread_create(&r->receiver, &attr, receive, r);
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    pthread_attr_destroy(&attr);
    if (failed) {
        errno = failed;
        return -1;
    }
    r->receiving = 1;
    return 0;
}

static void arm_receiver(RtpReader *r, int armed) {
    pthread_mutex_lock(&r->inbox.lock);
    r->inbox.armed = armed;
    if (armed)
        pthread_cond_signal(&r->inbox.armed_or_room);
    pthread_mutex_unlock(&r->inbox.lock);
}

/* Ends and joins the receive thread: after this, the socket is the caller's again. */
static void stop_receiver(RtpReader *r) {
    if (!r->receiving)
        return;
    pthread_mutex_lock(&r->inbox.lock);
    r->inbox.stopping = 1;
    pthread_cond_signal(&r->inbox.armed_or_room);
    pthread_mutex_unlock(&r->inbox.lock);
    signal_eventfd(r->stop);
    Py_BEGIN_ALLOW_THREADS
    pthread_join(r->receiver, NULL);
    Py_END_ALLOW_THREADS
    r->receiving = 0;
}

/* Moves the next chunk the thread received (as much of it as fits) to the
 * parser's buffer, with its time: 1 if there was one; -1 (errno set) once the
 * queue is empty and the thread's receive failed; else 0 (at the connection's
 * end too: read() receives itself, and meets it). */
static int take_chunk(RtpReader *r) {
    struct inbox *box = &r->inbox;
    int took = 0;
    pthread_mutex_lock(&box->lock);
    if (box->count > 0) {
        struct chunk *c = &box->chunks[box->first];
        size_t n = c->len < IN_CAPACITY - r->end ? c->len : IN_CAPACITY - r->end;
        memcpy(r->in + r->end, box->q + box->start, n);
        r->end += n;
        box->start += n;
        c->len -= n;
        r->parser.arrived = c->arrived;
        if (c->len == 0) {
            box->first = (box->first + 1) % QUEUE_CHUNKS;
            box->count--;
        }
        took = n > 0;
    } else if (box->error) {
        errno = box->error;
        took = -1;
    }
    pthread_mutex_unlock(&box->lock);
    return took;
}

/* -- the Python type --------------------------------------------------------- */

static int RtpReader_init(RtpReader *r, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"fd", "channel", "payload_type", "hevc", "read_timeout", "received", NULL};
    int fd, channel, payload_type, hevc;
    double read_timeout;
    Py_buffer received = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iiipd|y*", names, &fd, &channel,
                                     &payload_type, &hevc, &read_timeout, &received))
        return -1;
    if (r->in) {
        PyBuffer_Release(&received);
        PyErr_SetString(PyExc_TypeError, "the reader is initialized already");
        return -1;
    }
    if (received.buf && (size_t)received.len > IN_CAPACITY) {
        PyBuffer_Release(&received);
        PyErr_SetString(PyExc_OSError, "too much data ahead of the first read");
        return -1;
    }
    r->fd = fd;
    r->read_timeout = read_timeout;
    rtp_parser_init(&r->parser, channel, payload_type, hevc);
    r->in = malloc(IN_CAPACITY);
    /* A mapping of its own, so that its pages can be given back (madvise). */
    r->inbox.q = mmap(NULL, QUEUE_CAPACITY, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r->inbox.q == MAP_FAILED)
        r->inbox.q = NULL;
    r->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    r->stop = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!r->in || !r->inbox.q || r->wake < 0 || r->stop < 0) {
        PyBuffer_Release(&received);
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if (received.buf) {
        memcpy(r->in, received.buf, (size_t)received.len);
        r->end = (size_t)received.len;
        PyBuffer_Release(&received);
    }
    r->last_data = r->parser.arrived = monotonic();
    return 0;
}

static void RtpReader_dealloc(RtpReader *r) {
    stop_receiver(r);
    free(r->in);
    if (r->inbox.q)
        munmap(r->inbox.q, QUEUE_CAPACITY);
    rtp_parser_free(&r->parser);
    pthread_mutex_destroy(&r->inbox.lock);
    pthread_cond_destroy(&r->inbox.armed_or_room);
    if (r->stop >= 0)
        close(r->stop);
    if (r->wake >= 0)
        close(r->wake);
    if (r->schedstat >= 0)
        close(r->schedstat);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyObject *RtpReader_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    RtpReader *r = (RtpReader *)type->tp_alloc(type, 0);
    if (r) {
        r->fd = r->wake = r->stop = r->schedstat = -1;
        r->schedstat_tid = -1;
        pthread_mutex_init(&r->inbox.lock, NULL);
        pthread_cond_init(&r->inbox.armed_or_room, NULL);
    }
    return (PyObject *)r;
}

/* (data, pts, key, arrived, previous_arrived, previous_pts) for read(). */
static PyObject *hand_out(RtpReader *r, const struct rtp_unit *u) {
    PyObject *data = PyBytes_FromStringAndSize((const char *)u->data, (Py_ssize_t)u->len);
    if (!data)
        return NULL;
    PyObject *previous_arrived = Py_None, *previous_pts = Py_None;
    PyObject *pa = NULL, *pp = NULL;
    if (u->have_previous) {
        previous_arrived = pa = PyFloat_FromDouble(u->previous_arrived);
        previous_pts = pp = PyLong_FromLongLong(u->previous_pts);
    }
    PyObject *result = Py_BuildValue("(NLOdOO)", data, (long long)u->pts, u->key ? Py_True : Py_False,
                                     u->arrived, previous_arrived, previous_pts);
    Py_XDECREF(pa);
    Py_XDECREF(pp);
    r->handed += result != NULL;
    return result;
}

/* read(keyframes_only, max_wait): the next access unit (the next key one if
 * keyframes_only) as (data, pts, key, arrived, previous_arrived, previous_pts),
 * or None after max_wait seconds or interrupt(). Non-key units skipped by
 * earlier reads since the last keyframe come first, once keyframes_only is
 * off (HOLDS_SKIPPED). Raises EndOfStream, ReadTimeout (nothing received for
 * read_timeout) or OSError. */

static PyObject *read_unit(RtpReader *r, int keyframes_only, double max_wait);

static PyObject *RtpReader_read(RtpReader *r, PyObject *args) {
    int keyframes_only;
    double max_wait;
    if (!PyArg_ParseTuple(args, "pd", &keyframes_only, &max_wait))
        return NULL;
    if (r->closed) {
        PyErr_SetString(PyExc_ValueError, "the reader is closed");
        return NULL;
    }
    if (!r->receiving && start_receiver(r) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    arm_receiver(r, 0);
    PyObject *got = read_unit(r, keyframes_only, max_wait);
    arm_receiver(r, 1); /* the worker is away: the thread receives for it */
    return got;
}

static PyObject *read_unit(RtpReader *r, int keyframes_only, double max_wait) {
    if (r->parser.error) { /* the data cannot be read on: no unit, held or not */
        PyErr_SetString(PyExc_OSError, r->parser.error);
        return NULL;
    }
    if (r->interrupted)
        Py_RETURN_NONE;
    /* Units skipped while only keyframes were wanted come first. */
    struct rtp_unit unit;
    if (!keyframes_only && rtp_hand_out_held(&r->parser, &unit))
        return hand_out(r, &unit);
    double give_up = monotonic() + max_wait;
    double queued = -1.0; /* this thread's run-queue wait before the poll, once read */
    for (;;) {
        if (r->interrupted)
            Py_RETURN_NONE;

        /* Parsing holds the GIL: it is microseconds, and releasing costs more. */
        size_t consumed;
        enum rtp_status state =
            rtp_parse(&r->parser, r->in + r->start, r->end - r->start, keyframes_only, &consumed);
        r->start += consumed;
        if (state == RTP_UNIT) {
            unit = rtp_hand_out(&r->parser);
            return hand_out(r, &unit);
        }
        if (state == RTP_ERROR) {
            PyErr_SetString(PyExc_OSError, r->parser.error);
            return NULL;
        }
        /* Make room: what is left is part of one frame or message. */
        if (r->start > 0) {
            memmove(r->in, r->in + r->start, r->end - r->start);
            r->end -= r->start;
            r->start = 0;
        }
        if (r->end == IN_CAPACITY) {
            /* Full, and nothing in it parses: not an interleaved RTSP stream. */
            PyErr_SetString(PyExc_OSError, "unparseable data from the server");
            return NULL;
        }
        /* What the thread received while the worker was away comes first. */
        int took = take_chunk(r);
        if (took < 0)
            return PyErr_SetFromErrno(PyExc_OSError);
        if (took > 0) {
            queued = -1.0; /* the next poll's wait is measured from then */
            continue;
        }
        double now = monotonic();
        double stale = r->last_data + r->read_timeout;
        if (now >= stale) {
            PyErr_SetString(ReadTimeout, "nothing received");
            return NULL;
        }
        if (now >= give_up)
            Py_RETURN_NONE;
        double wait = (stale < give_up ? stale : give_up) - now;
        /* NaN or huge waits: poll() takes an int of milliseconds. */
        int wait_ms = wait < 3600.0 ? (int)(wait * 1000.0) + 1 : 3600 * 1000;
        struct pollfd fds[2] = {{r->fd, POLLIN, 0}, {r->wake, POLLIN, 0}};
        int ready, error = 0;
        ssize_t got = 0;
        double queued_after = 0.0;
        Py_BEGIN_ALLOW_THREADS
        if (queued < 0.0)
            queued = queued_seconds(r);
        ready = poll(fds, 2, wait_ms);
        if (ready < 0) {
            error = errno;
        } else if (ready > 0 && !(fds[1].revents & POLLIN) && fds[0].revents) {
            got = recv(r->fd, r->in + r->end, IN_CAPACITY - r->end, 0);
            if (got < 0)
                error = errno;
            queued_after = queued_seconds(r);
        }
        Py_END_ALLOW_THREADS
        if (fds[1].revents & POLLIN) {
            r->interrupted = 1;
            Py_RETURN_NONE;
        }
        if (error == EINTR || error == EAGAIN || error == EWOULDBLOCK) {
            if (PyErr_CheckSignals() < 0)
                return NULL;
            continue;
        }
        if (error) {
            errno = error;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        if (ready > 0 && got == 0 && fds[0].revents) {
            PyErr_SetString(EndOfStream, "the server closed the connection");
            return NULL;
        }
        if (got > 0) {
            /* Readable since the wake-up that this thread waited to be run after. */
            double waited = queued_after - queued;
            r->end += (size_t)got;
            r->last_data = monotonic();
            r->parser.arrived = r->last_data - (waited > 0.0 ? waited : 0.0);
            queued = queued_after; /* only parsing between this and the next poll */
        }
    }
}

static PyObject *RtpReader_interrupt(RtpReader *r, PyObject *unused) {
    r->interrupted = 1;
    signal_eventfd(r->wake);
    Py_RETURN_NONE;
}

static PyObject *RtpReader_close(RtpReader *r, PyObject *unused) {
    r->closed = 1;
    stop_receiver(r);
    Py_RETURN_NONE;
}

static PyObject *RtpReader_counts(RtpReader *r, void *closure) {
    return Py_BuildValue("(KKKK)", r->handed, r->parser.skipped, r->parser.dropped,
                         r->parser.messages);
}

static PyMethodDef RtpReader_methods[] = {
    {"read", (PyCFunction)RtpReader_read, METH_VARARGS, "The next wanted access unit, or None."},
    {"interrupt", (PyCFunction)RtpReader_interrupt, METH_NOARGS,
     "From any thread: the current and later reads return None at once."},
    {"close", (PyCFunction)RtpReader_close, METH_NOARGS, "No more reads: the receive thread ends, and the socket is the caller's again."},
    {NULL, NULL, 0, NULL},
};

static PyObject *RtpReader_last_status(RtpReader *r, void *closure) {
    return PyLong_FromLong(r->parser.last_status);
}

static PyObject *RtpReader_chain_broken(RtpReader *r, void *closure) {
    return PyBool_FromLong(r->parser.chain_broken);
}

static PyGetSetDef RtpReader_getset[] = {
    {"chain_broken", (getter)RtpReader_chain_broken, NULL,
     "Whether, since the last keyframe handed out, a unit was lost, dropped or skipped "
     "without being held: the units handed out since do not decode from that keyframe",
     NULL},

    {"last_status", (getter)RtpReader_last_status, NULL,
     "The status of the last RTSP answer skipped in the data (0: none yet)", NULL},
    {"counts", (getter)RtpReader_counts, NULL,
     "(handed out, skipped as not key, dropped as incomplete, RTSP messages skipped)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject RtpReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "streamgrid.capture._rtp.RtpReader",
    .tp_basicsize = sizeof(RtpReader),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Access units from an interleaved RTSP connection (H.264 or H.265).",
    .tp_new = RtpReader_new,
    .tp_init = (initproc)RtpReader_init,
    .tp_dealloc = (destructor)RtpReader_dealloc,
    .tp_methods = RtpReader_methods,
    .tp_getset = RtpReader_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rtp", "RTP receive loop for RTSP over TCP.", -1, NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__rtp(void) {
    if (PyType_Ready(&RtpReaderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    EndOfStream = PyErr_NewException("streamgrid.capture._rtp.EndOfStream", PyExc_EOFError, NULL);
    ReadTimeout = PyErr_NewException("streamgrid.capture._rtp.ReadTimeout", PyExc_TimeoutError, NULL);
    Py_INCREF(&RtpReaderType);
    if (PyModule_AddObject(m, "RtpReader", (PyObject *)&RtpReaderType) < 0 ||
        PyModule_AddObject(m, "EndOfStream", EndOfStream) < 0 ||
        PyModule_AddObject(m, "ReadTimeout", ReadTimeout) < 0 ||
        PyModule_AddIntConstant(m, "HOLDS_SKIPPED", 1) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
