/*
 * _rtp: the receive side of RTSP over TCP for H.264 and H.265, in C, without
 * FFmpeg.
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
 * HOLD_BYTES), not a byte of such a unit is copied.

 *
 * The RTSP conversation (DESCRIBE, SETUP, PLAY, keep-alives, TEARDOWN) stays in
 * Python (capture/rtsp.py): it is a handful of messages per connection. Python
 * hands over the connected socket; this reads it with the GIL released, skips
 * the RTSP responses the server interleaves (answers to keep-alives) and hands
 * back one access unit at a time, in Annex B form, ready for FFmpeg's decoder.
 *
 * Packetizations (RFC 6184, RFC 7798): single NAL units, STAP-A and FU-A for
 * H.264; single NAL units, AP and FU for H.265. The interleaved modes (STAP-B,
 * MTAP, FU-B, DONL) are refused in rtsp.py before this runs.
 *
 * Nothing the camera sends is trusted: every length is checked against what was
 * received, the numbers in RTSP headers are read by hand within their line (the
 * buffer is not a C string), a malformed or oversized Content-Length is an
 * OSError, and parse() checks that each step consumed bytes, so no input can
 * make it spin. tests/fuzz/ fuzzes it under ASan and UBSan (docs/fuzzing.md).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <unistd.h>

#define IN_CAPACITY (256 * 1024) /* > one interleaved frame (64 KiB) plus a burst */
#define AU_LIMIT (32 * 1024 * 1024) /* an access unit larger than this is dropped */
/* An RTSP message in the data (a keep-alive's answer, a server's request) has a
 * few header lines and a short body, if any. A header without its end within
 * HEADER_LIMIT is not RTSP (skipped); a larger body is an error. Both together
 * fit in the buffer, so a message always fits whole. */
#define HEADER_LIMIT (64 * 1024)
#define BODY_LIMIT (64 * 1024)
#if HEADER_LIMIT + BODY_LIMIT > IN_CAPACITY
#error "an RTSP message must fit in the buffer"
#endif

/* The reasons read() raises OSError for what a camera sent (one line each). */
#define BAD_LENGTH "an RTSP message in the data has a malformed Content-Length"
#define LONG_BODY "an RTSP message in the data has a body over 64 KiB"
#define STALLED "the RTP parser stopped advancing (a bug in _rtp.c)"
/* Units skipped while only keyframes are wanted are held, up to these, so that
 * a sampler whose keyframe is late (a camera stretching its GOP) can decode
 * from the last keyframe after all. Past them the chain is given up until the
 * next keyframe, and chain_broken says so. HOLD_UNITS is the sampler's own
 * bound on what it holds (MAX_HELD_PACKETS in capture/sampling.py). */
#define HOLD_BYTES (16 * 1024 * 1024)
#define HOLD_UNITS 600

static const uint8_t START_CODE[4] = {0, 0, 0, 1};

static PyObject *EndOfStream; /* the server closed the connection */
static PyObject *ReadTimeout; /* nothing arrived within the read timeout */

/* A unit held back: where its bytes are in `hold`, and what read() says of it. */
typedef struct {
    size_t offset, len;
    int64_t pts;
    double arrived;
    int have_previous;
    double previous_arrived;
    int64_t previous_pts;
} HeldUnit;

typedef struct {
    PyObject_HEAD
    int fd, wake; /* the RTSP socket (not ours to close); an eventfd for interrupt() */
    int channel, payload_type, hevc;
    double read_timeout;
    /* Bytes received and not yet parsed: in[start, end). */
    uint8_t *in;
    size_t start, end;
    /* The access unit being assembled (Annex B). */
    uint8_t *au;
    size_t au_len, au_cap;
    int au_open;       /* some packet of it has been seen */
    uint32_t au_ts;    /* its RTP timestamp */
    int au_marked;     /* its last packet came, with the marker bit */
    int au_unsure;     /* its first packet came after lost ones: maybe not its first */
    int au_vcl;        /* 0: no slice seen yet; 1: key; -1: not key */
    int au_recovery;   /* H.264: a recovery point SEI came before the slices */
    int au_broken;     /* a packet is missing or malformed: drop it */
    int au_discard;    /* not key while only keyframes are wanted, nor held: not copied */
    int in_fragment;   /* inside a FU-A / FU */
    int have_seq;
    uint16_t next_seq;
    /* RTP timestamps, unwrapped, relative to the first one. */
    int have_ts;
    uint32_t last_ts;
    int64_t pts;
    /* The access unit before the one handed out (for the caller's liveness check). */
    int have_previous;
    double previous_arrived;
    int64_t previous_pts;
    double last_data;   /* monotonic time of the last bytes received */
    double arrived;     /* monotonic time the bytes being parsed became readable */
    int schedstat;      /* /proc/thread-self/schedstat of schedstat_tid, or -1 */
    long schedstat_tid;
    int interrupted;
    int closed;
    const char *error;  /* the stream is unusable: read() raises OSError(error) */
    size_t scanned;     /* bytes at in[start] already searched for an RTSP header's end */
    int held;           /* the last AU_READY left its packet unconsumed */
    int resync;         /* after bytes that are not RTSP: skip to the next '$' */
    int last_status; /* of the last RTSP answer skipped (a keep-alive's), 0: none yet */
    /* Non-key units skipped since the last unit handed out, in order, while the
     * chain from the last keyframe is whole (hold_broken: it is not). */
    uint8_t *hold;
    size_t hold_len, hold_cap;
    HeldUnit *held_units;
    size_t held_count, held_next;
    int hold_broken;
    /* Since the last keyframe handed out, a unit was lost, dropped, or skipped
     * and not held: what is handed out now does not decode from that keyframe. */
    int chain_broken;
    unsigned long long handed, skipped, dropped, messages;
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
static double queued_seconds(RtpReader *r) {
    long tid = (long)syscall(SYS_gettid);
    if (r->schedstat_tid != tid) { /* this thread's own file: another thread reads now */
        if (r->schedstat >= 0)
            close(r->schedstat);
        r->schedstat = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
        r->schedstat_tid = tid;
    }
    char text[128];
    ssize_t n = r->schedstat >= 0 ? pread(r->schedstat, text, sizeof text - 1, 0) : -1;
    unsigned long long ran, waited;
    if (n <= 0)
        return 0.0;
    text[n] = 0;
    return sscanf(text, "%llu %llu", &ran, &waited) == 2 ? (double)waited / 1e9 : 0.0;
}

/* -- access units ---------------------------------------------------------- */

static void au_reset(RtpReader *r) {
    r->au_len = 0;
    r->au_open = 0;
    r->au_marked = 0;
    r->au_unsure = 0;
    r->au_vcl = 0;
    r->au_recovery = 0;
    r->au_broken = 0;
    r->au_discard = 0;
    r->in_fragment = 0;
}

static int au_append(RtpReader *r, const uint8_t *data, size_t len) {
    if (r->au_discard || r->au_broken)
        return 0;
    if (r->au_len + len > AU_LIMIT) {
        r->au_broken = 1;
        return 0;
    }
    if (r->au_len + len > r->au_cap) {
        size_t cap = r->au_cap ? r->au_cap : 64 * 1024;
        while (cap < r->au_len + len)
            cap *= 2;
        uint8_t *grown = realloc(r->au, cap);
        if (!grown) {
            r->au_broken = 1;
            return -1;
        }
        r->au = grown;
        r->au_cap = cap;
    }
    memcpy(r->au + r->au_len, data, len);
    r->au_len += len;
    return 0;
}

/* The NAL unit type from its first header byte. */
static int nal_type(const RtpReader *r, uint8_t header) {
    return r->hevc ? (header >> 1) & 0x3f : header & 0x1f;
}

/* Notes one NAL unit of the access unit: whether it makes the unit key, and,
 * once the first slice says it is not, whether to stop copying it. `payload`
 * is the NAL unit's first bytes after its header (SEI: the payload type). */
static void au_note(RtpReader *r, int type, const uint8_t *payload, size_t len, int keyframes_only) {
    if (r->au_vcl)
        return; /* the first slice decided */
    int vcl, key, first;
    /* Whether the slice is its picture's first: the first bit of its header
     * (H.264: first_mb_in_slice is ue(v), 0 is a single 1 bit; H.265:
     * first_slice_segment_in_pic_flag). No byte of it yet: can't tell. */
    first = len == 0 || (payload[0] & 0x80);
    if (r->hevc) {
        vcl = type < 32;
        key = type >= 16 && type <= 23; /* IRAP: BLA, IDR, CRA */
    } else {
        if (type == 6 && len > 0 && payload[0] == 6) /* SEI, first message a recovery point */
            r->au_recovery = 1;
        vcl = type >= 1 && type <= 5;
        key = type == 5 || (vcl && r->au_recovery);
        if (type == 3 || type == 4)
            first = 0; /* data partitions B and C: A (the slice header) comes first */
    }
    if (!vcl)
        return;
    if (r->au_unsure && !first)
        r->au_broken = 1; /* the packets lost before it held the picture's first slices */
    r->au_vcl = key ? 1 : -1;
    if (!key && keyframes_only && r->hold_broken) {
        r->au_discard = 1; /* nothing to hold it for: not a byte copied */
        r->au_len = 0;
    }
}

/* One NAL unit, whole: start code, header and body. */
static void au_nal(RtpReader *r, const uint8_t *nal, size_t len, int keyframes_only) {
    size_t header = r->hevc ? 2 : 1;
    if (len < header) {
        r->au_broken = 1;
        return;
    }
    au_note(r, nal_type(r, nal[0]), nal + header, len - header, keyframes_only);
    au_append(r, START_CODE, sizeof START_CODE);
    au_append(r, nal, len);
}

/* STAP-A (H.264) or AP (H.265): NAL units, each after its 16-bit size. */
static void au_aggregate(RtpReader *r, const uint8_t *p, size_t len, int keyframes_only) {
    while (len >= 2) {
        size_t size = ((size_t)p[0] << 8) | p[1];
        p += 2;
        len -= 2;
        if (size > len) {
            r->au_broken = 1;
            return;
        }
        au_nal(r, p, size, keyframes_only);
        p += size;
        len -= size;
    }
}

/* FU-A (H.264) or FU (H.265): one NAL unit across packets. */
static void au_fragment(RtpReader *r, const uint8_t *p, size_t len, int keyframes_only) {
    size_t header = r->hevc ? 3 : 2; /* payload header(s) + FU header */
    if (len < header) {
        r->au_broken = 1;
        return;
    }
    uint8_t fu = p[header - 1];
    int start = fu & 0x80, end = fu & 0x40;
    int type = r->hevc ? fu & 0x3f : fu & 0x1f;
    if (start) {
        if (r->in_fragment)
            r->au_broken = 1; /* the previous one never ended */
        uint8_t nal[2];
        size_t nal_len;
        if (r->hevc) {
            nal[0] = (uint8_t)((p[0] & 0x81) | (type << 1));
            nal[1] = p[1];
            nal_len = 2;
        } else {
            nal[0] = (uint8_t)((p[0] & 0xe0) | type);
            nal_len = 1;
        }
        au_note(r, type, p + header, len - header, keyframes_only);
        au_append(r, START_CODE, sizeof START_CODE);
        au_append(r, nal, nal_len);
        r->in_fragment = 1;
    } else if (!r->in_fragment) {
        r->au_broken = 1; /* its start was lost */
        return;
    }
    au_append(r, p + header, len - header);
    if (end)
        r->in_fragment = 0;
}

static void au_payload(RtpReader *r, const uint8_t *p, size_t len, int keyframes_only) {
    if (len < 1) {
        r->au_broken = 1; /* no NAL unit header: not H.264 or H.265 */
        return;
    }
    int type = nal_type(r, p[0]);
    if (r->hevc) {
        if (len < 2)
            r->au_broken = 1; /* half a payload header */
        else if (type == 48)
            au_aggregate(r, p + 2, len - 2, keyframes_only);
        else if (type == 49)
            au_fragment(r, p, len, keyframes_only);
        else if (type < 48)
            au_nal(r, p, len, keyframes_only);
        else
            r->au_broken = 1; /* PACI or reserved */
    } else {
        if (type >= 1 && type <= 23)
            au_nal(r, p, len, keyframes_only);
        else if (type == 24)
            au_aggregate(r, p + 1, len - 1, keyframes_only);
        else if (type == 28)
            au_fragment(r, p, len, keyframes_only);
        else
            r->au_broken = 1; /* STAP-B, MTAP, FU-B: interleaved mode */
    }
}

/* -- RTP and the interleaved stream ------------------------------------------ */

/* What parsing one item gives. Every path that returns CONTINUE has consumed
 * bytes (parse() checks it); NEED_MORE waits for more; PARSE_ERROR sets error. */
enum { NEED_MORE, CONTINUE, AU_READY, PARSE_ERROR };

static int fail(RtpReader *r, const char *reason) {
    r->error = reason;
    return PARSE_ERROR;
}

/* The unit is over, handed out or not: it becomes the one before the next. */
static void au_done(RtpReader *r) {
    r->have_previous = 1;
    r->previous_arrived = r->arrived;
    r->previous_pts = r->pts;
    au_reset(r);
}

/* -- units held back in keyframe mode ------------------------------------------ */

/* Forgets what is held (the units not handed out count as skipped); `broken`:
 * the chain from the last keyframe has a hole, so nothing more is held, and
 * what is handed out is flagged, until a keyframe restarts it. */
static void hold_reset(RtpReader *r, int broken) {
    r->skipped += r->held_count - r->held_next;
    r->hold_len = r->held_count = r->held_next = 0;
    r->hold_broken = broken;
    if (broken)
        r->chain_broken = 1;
}

/* What read() says of the unit in `au`, whose bytes are at `offset` where kept. */
static HeldUnit unit_now(const RtpReader *r, size_t offset) {
    return (HeldUnit){offset,     r->au_len,        r->pts,
                      r->arrived, r->have_previous, r->previous_arrived,
                      r->previous_pts};
}

/* Keeps the finished unit in `au` (a whole non-key unit) for a later read. */
static void hold_push(RtpReader *r) {
    if (r->held_count == HOLD_UNITS || r->hold_len + r->au_len > HOLD_BYTES)
        goto give_up;
    if (!r->held_units && !(r->held_units = malloc(HOLD_UNITS * sizeof *r->held_units)))
        goto give_up;
    if (r->hold_len + r->au_len > r->hold_cap) {
        size_t cap = r->hold_cap ? r->hold_cap : 256 * 1024;
        while (cap < r->hold_len + r->au_len)
            cap *= 2;
        uint8_t *grown = realloc(r->hold, cap);
        if (!grown)
            goto give_up;
        r->hold = grown;
        r->hold_cap = cap;
    }
    memcpy(r->hold + r->hold_len, r->au, r->au_len);
    r->held_units[r->held_count++] = unit_now(r, r->hold_len);
    r->hold_len += r->au_len;
    return;
give_up: /* too long a GOP to hold, or no memory: this unit is not kept either */
    r->skipped++;
    hold_reset(r, 1);
}

static int au_finish(RtpReader *r, int keyframes_only) {
    if (!r->au_open)
        return CONTINUE;
    if (r->in_fragment)
        r->au_broken = 1; /* it ends inside a NAL unit: the rest was lost */
    if (r->au_vcl == 0 && !r->au_broken)
        return CONTINUE; /* parameter sets on their own: they go with the next unit */
    if (!r->au_broken && !r->au_discard && r->au_len > 0 && (!keyframes_only || r->au_vcl == 1))
        return AU_READY; /* the caller hands it out, then calls au_done() */
    if (r->au_broken) {
        r->dropped++;
        hold_reset(r, 1); /* a hole in the chain: nothing after it decodes until a keyframe */
    } else if (!r->au_discard && r->au_len > 0 && !r->hold_broken) {
        hold_push(r);
    } else {
        r->skipped++;
        r->chain_broken = 1;
    }

    au_done(r);
    return CONTINUE;
}

/* One RTP packet of the video channel. May leave it unconsumed (returning
 * AU_READY with *consumed = 0) when it starts the next access unit, so that
 * it is parsed under the next call's keyframes_only. */
static int rtp_packet(RtpReader *r, const uint8_t *p, size_t len, int keyframes_only, int *consumed) {
    *consumed = 1;
    if (len < 12 || (p[0] >> 6) != 2)
        return CONTINUE; /* not RTP version 2 */
    int padding = p[0] & 0x20, extension = p[0] & 0x10, csrcs = p[0] & 0x0f;
    int marker = p[1] & 0x80, payload_type = p[1] & 0x7f;
    uint16_t seq = (uint16_t)((p[2] << 8) | p[3]);
    uint32_t ts = ((uint32_t)p[4] << 24) | ((uint32_t)p[5] << 16) | ((uint32_t)p[6] << 8) | p[7];
    if (r->payload_type >= 0 && payload_type != r->payload_type)
        return CONTINUE;
    /* A malformed packet is ignored whole: its sequence number is not taken, so
     * the next one shows a gap and its unit is dropped. */
    size_t offset = 12 + 4 * (size_t)csrcs; /* at most 72 */
    if (extension) {
        if (len < offset + 4)
            return CONTINUE;
        offset += 4 + 4 * (((size_t)p[offset + 2] << 8) | p[offset + 3]);
    }
    if (len < offset)
        return CONTINUE;
    if (padding) {
        size_t pad = p[len - 1];
        if (pad > len - offset)
            return CONTINUE;
        len -= pad;
    }
    /* Packets lost before this one: from the open unit's end, this one's start,
     * or both (then the first slice tells), or whole units between. */
    int gap = r->have_seq && seq != r->next_seq;
    if (r->au_open && ts != r->au_ts) {
        /* A new access unit starts: the open one ends here. Inside a fragment,
         * or without its marker across a gap, it lost its end. */
        if (r->in_fragment || (gap && !r->au_marked))
            r->au_broken = 1;
        if (au_finish(r, keyframes_only) == AU_READY) {
            *consumed = 0; /* parsed again, sequence number and all, next read */
            return AU_READY;
        }
    }
    int starts = !r->au_open || ts != r->au_ts; /* a unit (or one after parameter sets) */
    if (gap) {
        if (starts)
            r->au_unsure = 1;
        else
            r->au_broken = 1; /* lost from the middle of this unit */
        hold_reset(r, 1);     /* whatever was lost, the chain has a hole until a keyframe */
    }
    r->have_seq = 1;
    r->next_seq = (uint16_t)(seq + 1);
    if (!r->have_ts) {
        r->have_ts = 1;
        r->pts = 0;
    } else if (ts != r->last_ts) {
        r->pts += (int32_t)(ts - r->last_ts);
    }
    r->last_ts = ts;
    if (starts)
        r->au_marked = 0;
    r->au_open = 1;
    r->au_ts = ts;
    au_payload(r, p + offset, len - offset, keyframes_only);
    if (!marker)
        return CONTINUE;
    r->au_marked = 1;
    return au_finish(r, keyframes_only);
}

/* Finds `needle` in [p, p + len). */
static const uint8_t *find(const uint8_t *p, size_t len, const char *needle) {
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(p + i, needle, n) == 0)
            return p + i;
    return NULL;
}

/* The decimal number of ASCII digits in [p, end), with spaces and tabs around
 * it; NOT_A_NUMBER if there is none, or anything else; OVER_LIMIT if it is a
 * number over `limit` (never computed past it: no overflow). */
enum { NOT_A_NUMBER = -1, OVER_LIMIT = -2 };
static long decimal(const uint8_t *p, const uint8_t *end, long limit) {
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (p == end)
        return NOT_A_NUMBER;
    long value = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return NOT_A_NUMBER;
        if (value > (limit - (*p - '0')) / 10)
            value = OVER_LIMIT; /* keep checking the rest are digits */
        else if (value >= 0)
            value = value * 10 + (*p - '0');
    }
    return value;
}

/* An RTSP message interleaved with the data (an answer to a keep-alive, or a
 * request from the server): skipped whole, body included. Every number is read
 * within its own line: the buffer is not a C string. */
static int rtsp_message(RtpReader *r) {
    const uint8_t *p = r->in + r->start;
    size_t len = r->end - r->start;
    size_t limit = len < HEADER_LIMIT ? len : HEADER_LIMIT;
    /* Go on where the last call stopped (a CR LF CR LF may straddle it): a
     * header that trickles in is searched once, not once per recv(). */
    size_t from = r->scanned > 3 ? r->scanned - 3 : 0;
    const uint8_t *end = find(p + from, limit - from, "\r\n\r\n");
    if (!end) {
        r->scanned = limit;
        if (limit < HEADER_LIMIT)
            return NEED_MORE;
        r->start += HEADER_LIMIT; /* no header end in 64 KiB: not RTSP */
        r->resync = 1;            /* nor what follows, up to an interleaved frame */
        r->messages++;
        return CONTINUE;
    }
    size_t header = (size_t)(end - p) + 4, body = 0;
    for (const uint8_t *line = p; line < end;) {
        const uint8_t *next = find(line, (size_t)(end + 2 - line), "\r\n");
        if (line == p && next - line >= 12 && memcmp(line, "RTSP/1.0 ", 9) == 0 &&
            (next - line == 12 || line[12] == ' ')) {
            long status = decimal(line + 9, line + 12, 999);
            if (status >= 100)
                r->last_status = (int)status;
        }
        if (next - line >= 15 && strncasecmp((const char *)line, "Content-Length:", 15) == 0) {
            long value = decimal(line + 15, next, BODY_LIMIT);
            if (value < 0)
                return fail(r, value == OVER_LIMIT ? LONG_BODY : BAD_LENGTH);
            body = (size_t)value;
        }
        line = next + 2;
    }
    if (len < header + body)
        return NEED_MORE;
    r->start += header + body; /* at least 4 */
    r->messages++;
    return CONTINUE;
}

/* Parses what has been received; AU_READY when an access unit is ready. */
static int parse(RtpReader *r, int keyframes_only) {
    if (r->error)
        return PARSE_ERROR;
    while (r->end > r->start) {
        const uint8_t *p = r->in + r->start;
        size_t len = r->end - r->start, before = r->start;
        int state = CONTINUE;
        if (r->resync && p[0] != '$') {
            const uint8_t *dollar = memchr(p, '$', len);
            r->start = dollar ? (size_t)(dollar - r->in) : r->end;
        } else if (p[0] == '\r' || p[0] == '\n') {
            r->start++; /* a stray line end between messages */
        } else if (p[0] != '$') {
            state = rtsp_message(r);
        } else if (len < 4) {
            return NEED_MORE;
        } else {
            r->resync = 0;
            size_t size = ((size_t)p[2] << 8) | p[3];
            if (len < 4 + size)
                return NEED_MORE;
            if (p[1] != r->channel) { /* RTCP, or another stream */
                r->start += 4 + size;
            } else {
                int consumed;
                state = rtp_packet(r, p + 4, size, keyframes_only, &consumed);
                if (consumed)
                    r->start += 4 + size;
            }
        }
        if (state == NEED_MORE || state == PARSE_ERROR)
            return state;
        if (r->start > r->end)
            return fail(r, STALLED);
        if (r->start == before) {
            /* Only a unit handed out may leave its successor's first packet for
             * the next read, and then once: that read starts the unit afresh. */
            if (state != AU_READY || r->held)
                return fail(r, STALLED);
            r->held = 1;
            return AU_READY;
        }
        r->held = 0;
        r->scanned = 0;
        if (state == AU_READY)
            return AU_READY;
    }
    return NEED_MORE;
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
    r->channel = channel;
    r->payload_type = payload_type;
    r->hevc = hevc;
    r->read_timeout = read_timeout;
    r->in = malloc(IN_CAPACITY);
    r->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!r->in || r->wake < 0) {
        PyBuffer_Release(&received);
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if (received.buf) {
        memcpy(r->in, received.buf, (size_t)received.len);
        r->end = (size_t)received.len;
        PyBuffer_Release(&received);
    }
    r->last_data = r->arrived = monotonic();
    au_reset(r);
    r->hold_broken = r->chain_broken = 1; /* no keyframe yet: nothing before one decodes */
    return 0;
}

static void RtpReader_dealloc(RtpReader *r) {
    free(r->in);
    free(r->au);
    free(r->hold);
    free(r->held_units);
    if (r->wake >= 0)
        close(r->wake);
    if (r->schedstat >= 0)
        close(r->schedstat);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyObject *RtpReader_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    RtpReader *r = (RtpReader *)type->tp_alloc(type, 0);
    if (r) {
        r->fd = r->wake = r->schedstat = -1;
        r->schedstat_tid = -1;
    }
    return (PyObject *)r;
}

/* (data, pts, key, arrived, previous_arrived, previous_pts) for read(). */
static PyObject *unit_tuple(const uint8_t *bytes, size_t len, const HeldUnit *u, int key) {
    PyObject *data = PyBytes_FromStringAndSize((const char *)bytes, (Py_ssize_t)len);
    if (!data)
        return NULL;
    PyObject *previous_arrived = Py_None, *previous_pts = Py_None;
    PyObject *pa = NULL, *pp = NULL;
    if (u->have_previous) {
        previous_arrived = pa = PyFloat_FromDouble(u->previous_arrived);
        previous_pts = pp = PyLong_FromLongLong(u->previous_pts);
    }
    PyObject *result = Py_BuildValue("(NLOdOO)", data, (long long)u->pts, key ? Py_True : Py_False,
                                     u->arrived, previous_arrived, previous_pts);
    Py_XDECREF(pa);
    Py_XDECREF(pp);
    return result;
}

static PyObject *hand_out(RtpReader *r) {
    HeldUnit unit = unit_now(r, 0);
    PyObject *result = unit_tuple(r->au, r->au_len, &unit, r->au_vcl == 1);
    if (r->au_vcl == 1) {
        hold_reset(r, 0); /* a keyframe: what came before it is of no more use */
        r->chain_broken = 0;
    }
    r->handed += result != NULL;
    au_done(r);
    return result;
}

/* The oldest unit held back, now that every unit is wanted again. */
static PyObject *hand_out_held(RtpReader *r) {
    const HeldUnit *unit = &r->held_units[r->held_next++];
    PyObject *result = unit_tuple(r->hold + unit->offset, unit->len, unit, 0);
    if (r->held_next == r->held_count)
        hold_reset(r, 0); /* all handed over: the chain goes on whole */
    r->handed += result != NULL;
    return result;
}

/* read(keyframes_only, max_wait): the next access unit (the next key one if
 * keyframes_only) as (data, pts, key, arrived, previous_arrived, previous_pts),
 * or None after max_wait seconds or interrupt(). Non-key units skipped by
 * earlier reads since the last keyframe come first, once keyframes_only is
 * off (HOLDS_SKIPPED). Raises EndOfStream, ReadTimeout (nothing received for
 * read_timeout) or OSError. */

static PyObject *RtpReader_read(RtpReader *r, PyObject *args) {
    int keyframes_only;
    double max_wait;
    if (!PyArg_ParseTuple(args, "pd", &keyframes_only, &max_wait))
        return NULL;
    if (r->closed) {
        PyErr_SetString(PyExc_ValueError, "the reader is closed");
        return NULL;
    }
    if (r->error) { /* the data cannot be read on: no unit, held or not */
        PyErr_SetString(PyExc_OSError, r->error);
        return NULL;
    }
    if (r->interrupted)
        Py_RETURN_NONE;
    /* Units skipped while only keyframes were wanted come first. */
    if (!keyframes_only && r->held_next < r->held_count)
        return hand_out_held(r);
    double give_up = monotonic() + max_wait;
    double queued = -1.0; /* this thread's run-queue wait before the poll, once read */
    for (;;) {
        if (r->interrupted)
            Py_RETURN_NONE;

        /* Parsing holds the GIL: it is microseconds, and releasing costs more. */
        int state = parse(r, keyframes_only);
        if (state == AU_READY)
            return hand_out(r);
        if (state == PARSE_ERROR) {
            PyErr_SetString(PyExc_OSError, r->error);
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
            r->arrived = r->last_data - (waited > 0.0 ? waited : 0.0);
            queued = queued_after; /* only parsing between this and the next poll */
        }
    }
}

static PyObject *RtpReader_interrupt(RtpReader *r, PyObject *unused) {
    uint64_t one = 1;
    r->interrupted = 1;
    if (r->wake >= 0 && write(r->wake, &one, sizeof one) < 0) {
        /* the eventfd is full: a wake-up is pending anyway */
    }
    Py_RETURN_NONE;
}

static PyObject *RtpReader_close(RtpReader *r, PyObject *unused) {
    r->closed = 1;
    Py_RETURN_NONE;
}

static PyObject *RtpReader_counts(RtpReader *r, void *closure) {
    return Py_BuildValue("(KKKK)", r->handed, r->skipped, r->dropped, r->messages);
}

static PyMethodDef RtpReader_methods[] = {
    {"read", (PyCFunction)RtpReader_read, METH_VARARGS, "The next wanted access unit, or None."},
    {"interrupt", (PyCFunction)RtpReader_interrupt, METH_NOARGS,
     "From any thread: the current and later reads return None at once."},
    {"close", (PyCFunction)RtpReader_close, METH_NOARGS, "No more reads."},
    {NULL, NULL, 0, NULL},
};

static PyObject *RtpReader_last_status(RtpReader *r, void *closure) {
    return PyLong_FromLong(r->last_status);
}

static PyObject *RtpReader_chain_broken(RtpReader *r, void *closure) {
    return PyBool_FromLong(r->chain_broken);
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
