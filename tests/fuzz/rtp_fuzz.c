/* libFuzzer target of the RTP parser (streamgrid/capture/rtp_parse.c); see
 * docs/fuzzing.md. An input is a byte of settings (bit 0: any payload type,
 * bit 1: H.265, bits 2-7: k), a byte of keyframes_only per call (bit i for
 * the i-th call, cycled), then what the camera sends: fed in 256 pieces of
 * (k + 1)^2 bytes, then the rest at once. Only the bytes a call is given are
 * readable (ASan's manual poisoning): fed, and not yet consumed. */
#include <sanitizer/asan_interface.h>
#include <stdlib.h>
#include <string.h>

#include "rtp_parse.h"

static void check(const struct rtp_unit *unit, int keyframes_only) {
    if (unit->len < 4 || memcmp(unit->data, "\0\0\0\1", 4) != 0 || (keyframes_only && !unit->key))
        abort(); /* not Annex B, or not key when only keyframes were asked for */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2)
        return 0;
    struct rtp_parser parser;
    rtp_parser_init(&parser, 0, data[0] & 1 ? -1 : 96, data[0] >> 1 & 1);
    size_t piece = (size_t)((data[0] >> 2) + 1) * ((data[0] >> 2) + 1);
    size_t fed = 2, done = 2, calls = 0, pieces = 0;
    uint8_t *stream = malloc(size);
    memcpy(stream, data, size);
    ASAN_POISON_MEMORY_REGION(stream, size);
    enum rtp_status status = RTP_NEED_MORE;
    while (fed < size && status != RTP_ERROR) {
        size_t more = pieces++ < 256 && size - fed > piece ? piece : size - fed;
        ASAN_UNPOISON_MEMORY_REGION(stream + fed, more);
        fed += more;
        for (;;) {
            int keyframes_only = data[1] >> (calls++ % 8) & 1;
            struct rtp_unit unit;
            if (!keyframes_only && rtp_hand_out_held(&parser, &unit)) {
                check(&unit, 0);
                continue;
            }
            size_t used;
            status = rtp_parse(&parser, stream + done, fed - done, keyframes_only, &used);
            if (used > fed - done || (status == RTP_ERROR && strcmp(parser.error, RTP_STALLED) == 0))
                abort();
            ASAN_POISON_MEMORY_REGION(stream + done, used);
            done += used;
            if (status != RTP_UNIT)
                break;
            unit = rtp_hand_out(&parser);
            check(&unit, keyframes_only);
        }
        if (status == RTP_NEED_MORE && fed - done >= RTP_ITEM_MAX)
            abort(); /* waiting for more than the caller's buffer is sure to hold */
    }
    ASAN_UNPOISON_MEMORY_REGION(stream, size);
    free(stream);
    rtp_parser_free(&parser);
    return 0;
}
