/*
 * rtp_parse: interleaved RTP to H.264 / H.265 access units (rtp_parse.h says
 * what it takes and gives).
 */
#define _GNU_SOURCE /* memmem */
#include "rtp_parse.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define AU_LIMIT (32 * 1024 * 1024) /* an access unit larger than this is dropped */
#define HEADER_LIMIT RTP_HEADER_LIMIT
#define BODY_LIMIT RTP_BODY_LIMIT

/* Units skipped while only keyframes are wanted are held, up to these, so that
 * a sampler whose keyframe is late (a camera stretching its GOP) can decode
 * from the last keyframe after all. Past them the chain is given up until the
 * next keyframe, and chain_broken says so. HOLD_UNITS is the sampler's own
 * bound on what it holds (MAX_HELD_PACKETS in capture/sampling.py). */
#define HOLD_BYTES (16 * 1024 * 1024)
#define HOLD_UNITS 600

static const uint8_t START_CODE[4] = {0, 0, 0, 1};

/* -- access units ---------------------------------------------------------- */

static void au_reset(struct rtp_parser *r) {
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

static int au_append(struct rtp_parser *r, const uint8_t *data, size_t len) {
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
static int nal_type(const struct rtp_parser *r, uint8_t header) {
    return r->hevc ? (header >> 1) & 0x3f : header & 0x1f;
}

/* Notes one NAL unit of the access unit: whether it makes the unit key, and,
 * once the first slice says it is not, whether to stop copying it. `payload`
 * is the NAL unit's first bytes after its header (SEI: the payload type). */
static void au_note(struct rtp_parser *r, int type, const uint8_t *payload, size_t len, int keyframes_only) {
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
static void au_nal(struct rtp_parser *r, const uint8_t *nal, size_t len, int keyframes_only) {
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
static void au_aggregate(struct rtp_parser *r, const uint8_t *p, size_t len, int keyframes_only) {
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
static void au_fragment(struct rtp_parser *r, const uint8_t *p, size_t len, int keyframes_only) {
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

static void au_payload(struct rtp_parser *r, const uint8_t *p, size_t len, int keyframes_only) {
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
 * bytes (rtp_parse() checks it); NEED_MORE waits for more; PARSE_ERROR sets error. */
enum { NEED_MORE = RTP_NEED_MORE, AU_READY = RTP_UNIT, PARSE_ERROR = RTP_ERROR, CONTINUE };

static int fail(struct rtp_parser *r, const char *reason) {
    r->error = reason;
    return PARSE_ERROR;
}

/* The unit is over, handed out or not: it becomes the one before the next. */
static void au_done(struct rtp_parser *r) {
    r->have_previous = 1;
    r->previous_arrived = r->arrived;
    r->previous_pts = r->pts;
    au_reset(r);
}

/* -- units held back in keyframe mode ------------------------------------------ */

/* Forgets what is held (the units not handed out count as skipped); `broken`:
 * the chain from the last keyframe has a hole, so nothing more is held, and
 * what is handed out is flagged, until a keyframe restarts it. */
static void hold_reset(struct rtp_parser *r, int broken) {
    r->skipped += r->held_count - r->held_next;
    r->hold_len = r->hold_next_offset = r->held_count = r->held_next = 0;
    r->hold_broken = broken;
    if (broken)
        r->chain_broken = 1;
}

/* The unit in `au`, as it is handed out (its bytes: `data`). */
static struct rtp_unit unit_now(const struct rtp_parser *r, const uint8_t *data, int key) {
    return (struct rtp_unit){data,       r->au_len,        r->pts,
                             key,        r->arrived,       r->have_previous,
                             r->previous_arrived, r->previous_pts};
}

/* Keeps the finished unit in `au` (a whole non-key unit) for a later read. */
static void hold_push(struct rtp_parser *r) {
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
    r->held_units[r->held_count++] = unit_now(r, NULL, 0); /* its bytes follow the last one's */
    r->hold_len += r->au_len;
    return;
give_up: /* too long a GOP to hold, or no memory: this unit is not kept either */
    r->skipped++;
    hold_reset(r, 1);
}

static int au_finish(struct rtp_parser *r, int keyframes_only) {
    if (!r->au_open)
        return CONTINUE;
    if (r->in_fragment)
        r->au_broken = 1; /* it ends inside a NAL unit: the rest was lost */
    if (r->au_vcl == 0 && !r->au_broken)
        return CONTINUE; /* parameter sets on their own: they go with the next unit */
    if (!r->au_broken && !r->au_discard && r->au_len > 0 && (!keyframes_only || r->au_vcl == 1))
        return AU_READY; /* rtp_hand_out() hands it out, then calls au_done() */
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
static int rtp_packet(struct rtp_parser *r, const uint8_t *p, size_t len, int keyframes_only, int *consumed) {
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
    return memmem(p, len, needle, strlen(needle));
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
 * request from the server), at p: skipped whole, body included (*used). Every
 * number is read within its own line: the buffer is not a C string. */
static int rtsp_message(struct rtp_parser *r, const uint8_t *p, size_t len, size_t *used) {
    size_t limit = len < HEADER_LIMIT ? len : HEADER_LIMIT;
    /* Go on where the last call stopped (a CR LF CR LF may straddle it): a
     * header that trickles in is searched once, not once per call. */
    size_t from = r->scanned > 3 ? r->scanned - 3 : 0;
    const uint8_t *end = find(p + from, limit - from, "\r\n\r\n");
    if (!end) {
        r->scanned = limit;
        if (limit < HEADER_LIMIT)
            return NEED_MORE;
        *used = HEADER_LIMIT; /* no header end in 64 KiB: not RTSP */
        r->resync = 1;        /* nor what follows, up to an interleaved frame */
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
                return fail(r, value == OVER_LIMIT ? RTP_LONG_BODY : RTP_BAD_LENGTH);
            body = (size_t)value;
        }
        line = next + 2;
    }
    if (len < header + body)
        return NEED_MORE;
    *used = header + body; /* at least 4 */
    r->messages++;
    return CONTINUE;
}

/* -- the interface (rtp_parse.h) --------------------------------------------- */

enum rtp_status rtp_parse(struct rtp_parser *r, const uint8_t *buf, size_t len,
                          int keyframes_only, size_t *consumed) {
    *consumed = 0;
    if (r->error)
        return RTP_ERROR;
    while (*consumed < len) {
        const uint8_t *p = buf + *consumed;
        size_t left = len - *consumed, used = 0;
        int state = CONTINUE;
        if (r->resync && p[0] != '$') {
            const uint8_t *dollar = memchr(p, '$', left);
            used = dollar ? (size_t)(dollar - p) : left;
        } else if (p[0] == '\r' || p[0] == '\n') {
            used = 1; /* a stray line end between messages */
        } else if (p[0] != '$') {
            state = rtsp_message(r, p, left, &used);
        } else if (left < 4) {
            return RTP_NEED_MORE;
        } else {
            r->resync = 0;
            size_t size = ((size_t)p[2] << 8) | p[3];
            if (left < 4 + size)
                return RTP_NEED_MORE;
            used = 4 + size; /* RTCP, or another stream: skipped */
            if (p[1] == r->channel) {
                int taken;
                state = rtp_packet(r, p + 4, size, keyframes_only, &taken);
                if (!taken)
                    used = 0;
            }
        }
        if (state == NEED_MORE || state == PARSE_ERROR)
            return (enum rtp_status)state;
        if (used > left)
            return (enum rtp_status)fail(r, RTP_STALLED);
        if (used == 0) {
            /* Only a unit handed out may leave its successor's first packet for
             * the next call, and then once: that call starts the unit afresh. */
            if (state != AU_READY || r->held)
                return (enum rtp_status)fail(r, RTP_STALLED);
            r->held = 1;
            return RTP_UNIT;
        }
        *consumed += used;
        r->held = 0;
        r->scanned = 0;
        if (state == AU_READY)
            return RTP_UNIT;
    }
    return RTP_NEED_MORE;
}

void rtp_parser_init(struct rtp_parser *r, int channel, int payload_type, int hevc) {
    memset(r, 0, sizeof *r);
    r->channel = channel;
    r->payload_type = payload_type;
    r->hevc = hevc;
    r->hold_broken = r->chain_broken = 1; /* no keyframe yet: nothing before one decodes */
}

void rtp_parser_free(struct rtp_parser *r) {
    free(r->au);
    free(r->hold);
    free(r->held_units);
    r->au = r->hold = NULL;
    r->held_units = NULL;
}

struct rtp_unit rtp_hand_out(struct rtp_parser *r) {
    struct rtp_unit unit = unit_now(r, r->au, r->au_vcl == 1);
    if (unit.key) {
        hold_reset(r, 0); /* a keyframe: what came before it is of no more use */
        r->chain_broken = 0;
    }
    au_done(r); /* keeps the bytes: they are only written by the next rtp_parse() */
    return unit;
}

int rtp_hand_out_held(struct rtp_parser *r, struct rtp_unit *unit) {
    if (r->held_next == r->held_count)
        return 0;
    *unit = r->held_units[r->held_next++];
    unit->data = r->hold + r->hold_next_offset;
    r->hold_next_offset += unit->len;
    if (r->held_next == r->held_count)
        hold_reset(r, 0); /* all handed over: the chain goes on whole (the bytes stay) */
    return 1;
}
