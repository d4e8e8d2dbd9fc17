/*
 * rtp_parse: the data of an RTSP connection after PLAY (interleaved RTP: '$',
 * channel, 16-bit size, then the packet; RTCP and RTSP messages mixed in) to
 * H.264 or H.265 access units in Annex B form, ready for FFmpeg's decoder.
 *
 * A pure parser, picohttpparser's way: over a buffer and a length, with its
 * state in a struct the caller owns; no Python, no sockets, no globals, no
 * clock. _rtp.c binds it to Python and a socket; tests/fuzz/rtp_fuzz.c feeds
 * it to libFuzzer.
 *
 * Packetizations (RFC 6184, RFC 7798): single NAL units, STAP-A and FU-A for
 * H.264; single NAL units, AP and FU for H.265. The interleaved modes (STAP-B,
 * MTAP, FU-B, DONL) are refused before this runs (capture/rtsp.py).
 *
 * Nothing the camera sends is trusted: every length is checked against the
 * buffer, the numbers in RTSP headers are read within their line (the buffer
 * is not a C string), and each step either consumes bytes or waits for more,
 * so that no input can make it spin (docs/fuzzing.md).
 */
#ifndef STREAMGRID_RTP_PARSE_H
#define STREAMGRID_RTP_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* An RTSP message in the data (a keep-alive's answer, a server's request) has
 * a few header lines and a short body, if any. A header without its end
 * within RTP_HEADER_LIMIT is not RTSP (skipped); a larger body is an error.
 * So rtp_parse() never waits for more than RTP_ITEM_MAX bytes: a caller's
 * buffer that large always has room for what it waits for. */
#define RTP_HEADER_LIMIT (64 * 1024)
#define RTP_BODY_LIMIT (64 * 1024)
#define RTP_ITEM_MAX (RTP_HEADER_LIMIT + RTP_BODY_LIMIT)

/* What `error` says, when rtp_parse() gives up on the data. STALLED is a bug
 * here, not the camera's: a step that neither consumed bytes nor waited. */
#define RTP_BAD_LENGTH "an RTSP message in the data has a malformed Content-Length"
#define RTP_LONG_BODY "an RTSP message in the data has a body over 64 KiB"
#define RTP_STALLED "the RTP parser stopped advancing (a bug in rtp_parse.c)"

/* An access unit handed out, and what the caller is told of it. */
struct rtp_unit {
    const uint8_t *data; /* Annex B; valid until the next call on the parser */
    size_t len;
    int64_t pts; /* its RTP timestamp, unwrapped, relative to the first one */
    int key;
    double arrived; /* the parser's `arrived` when its last packet was parsed */
    /* The access unit before it, handed out or not (for a liveness check). */
    int have_previous;
    double previous_arrived;
    int64_t previous_pts;
};

/* The parser's state: set up by rtp_parser_init(), released by
 * rtp_parser_free(). The caller sets `arrived` and reads the fields under
 * "results"; the rest is the parser's own. */
struct rtp_parser {
    /* Settings. */
    int channel;      /* the interleaved channel of the video's RTP */
    int payload_type; /* RTP payload type to take; -1: any */
    int hevc;         /* H.265, else H.264 */
    /* Set by the caller: when the bytes about to be parsed arrived (any clock). */
    double arrived;

    /* Results. */
    const char *error; /* the data cannot be read on: why (one line); sticks */
    int last_status;   /* of the last RTSP answer skipped (a keep-alive's); 0: none */
    /* Since the last keyframe handed out, a unit was lost, dropped, or skipped
     * and not held: what is handed out now does not decode from that keyframe. */
    int chain_broken;
    unsigned long long skipped, dropped, messages; /* units not key, units lost, RTSP messages */

    /* The access unit being assembled (Annex B). */
    uint8_t *au;
    size_t au_len, au_cap;
    int au_open;     /* some packet of it has been seen */
    uint32_t au_ts;  /* its RTP timestamp */
    int au_marked;   /* its last packet came, with the marker bit */
    int au_unsure;   /* its first packet came after lost ones: maybe not its first */
    int au_vcl;      /* 0: no slice seen yet; 1: key; -1: not key */
    int au_recovery; /* H.264: a recovery point SEI came before the slices */
    int au_broken;   /* a packet is missing or malformed: drop it */
    int au_discard;  /* not key while only keyframes are wanted, nor held: not copied */
    int in_fragment; /* inside a FU-A / FU */
    int have_seq;
    uint16_t next_seq;
    /* RTP timestamps, unwrapped, relative to the first one. */
    int have_ts;
    uint32_t last_ts;
    int64_t pts;
    /* The unit before the one being assembled. */
    int have_previous;
    double previous_arrived;
    int64_t previous_pts;
    size_t scanned; /* bytes at the buffer's start already searched for an RTSP header's end */
    int held;       /* the last RTP_UNIT left its successor's first packet unconsumed */
    int resync;     /* after bytes that are not RTSP: skip to the next '$' */
    /* Non-key units skipped in keyframe mode since the last unit handed out,
     * in order, while the chain from the last keyframe is whole (hold_broken:
     * it is not); the next read that wants every unit gets them first. */
    uint8_t *hold;
    size_t hold_len, hold_cap, hold_next_offset;
    struct rtp_unit *held_units;
    size_t held_count, held_next;
    int hold_broken;
};

enum rtp_status {
    RTP_NEED_MORE, /* everything consumed that can be: call again with more bytes */
    RTP_UNIT,      /* an access unit is ready: rtp_hand_out() */
    RTP_ERROR,     /* the data cannot be read on: parser->error says why */
};

/* A parser for `channel` (its RTP packets of `payload_type`, -1: any), H.265
 * if `hevc`. A zeroed struct may be freed without this. */
void rtp_parser_init(struct rtp_parser *parser, int channel, int payload_type, int hevc);
void rtp_parser_free(struct rtp_parser *parser);

/* Parses buf[0, len): the bytes the last call did not consume, then what has
 * arrived since (the parser remembers how far it searched them). Sets
 * *consumed (at most len) and says why it stopped. In keyframe mode a unit
 * that is not key is not handed out; it is held, if the chain allows, for a
 * later call in the other mode. */
enum rtp_status rtp_parse(struct rtp_parser *parser, const uint8_t *buf, size_t len,
                          int keyframes_only, size_t *consumed);

/* After RTP_UNIT: the unit, handed out. */
struct rtp_unit rtp_hand_out(struct rtp_parser *parser);

/* The oldest unit held back, handed out; 0 if none is held. */
int rtp_hand_out_held(struct rtp_parser *parser, struct rtp_unit *unit);

#endif
