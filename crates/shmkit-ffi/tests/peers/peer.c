/*
 * The C test peer of the cross-language matrix (scripts/test-languages); the
 * same commands and output as the Rust one (shmkit-peer):
 *   peer send NAME COUNT SEED MAX   ->  "COUNT CRC"
 *   peer recv NAME COUNT            ->  "ready", then "COUNT CRC"
 *   peer hold NAME                  ->  locks mutex NAME, "locked", sleeps
 *   peer lock NAME                  ->  opens or creates it, "ready", reads a line
 *                                       from stdin, locks: "owner-died" or "locked"
 */
#include "peer_common.h"
#include "shmkit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#include <windows.h>
#define sleep_seconds(s) Sleep((s)*1000)
#else
#include <unistd.h>
#define sleep_seconds(s) sleep(s)
#endif

static int fail(const char *what, shmkit_status s) {
    fprintf(stderr, "peer (C): %s: %s: %s\n", what, shmkit_status_name(s), shmkit_last_error());
    return 1;
}

int main(int argc, char **argv) {
    shmkit_status s;
    crc_init();
    if (argc == 6 && strcmp(argv[1], "send") == 0) {
        uint64_t count = strtoull(argv[3], NULL, 10), max = strtoull(argv[5], NULL, 10);
        uint64_t rng = strtoull(argv[4], NULL, 10) | 1, i;
        uint8_t *buf = malloc(max + 8);
        uint32_t crc = 0;
        shmkit_sender *tx;
        if ((s = shmkit_sender_connect(argv[2], NULL, &tx))) return fail("connect", s);
        for (i = 0; i < count; i++) {
            uint64_t limit = rng_next(&rng) % 100 == 0 ? max : (max < 4096 ? max : 4096);
            size_t len = (size_t)(rng_next(&rng) % (limit + 1)), j;
            for (j = 0; j < len; j += 8) {
                uint64_t r = rng_next(&rng);
                memcpy(buf + j, &r, 8);
            }
            if ((s = shmkit_sender_send(tx, buf, len, 60000))) return fail("send", s);
            crc = crc_message(crc, buf, len);
        }
        printf("%llu %u\n", (unsigned long long)count, crc);
        shmkit_sender_close(tx);
        free(buf);
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "recv") == 0) {
        uint64_t count = strtoull(argv[3], NULL, 10), i;
        size_t cap = 1 << 16, len;
        uint8_t *buf = malloc(cap);
        uint32_t crc = 0;
        shmkit_receiver *rx;
        if ((s = shmkit_receiver_connect(argv[2], NULL, &rx))) return fail("connect", s);
        printf("ready\n");
        fflush(stdout);
        for (i = 0; i < count; i++) {
            s = shmkit_receiver_recv(rx, buf, cap, &len, 60000);
            if (s == SHMKIT_ERR_BUFFER_TOO_SMALL) { /* grow to the size it says */
                cap = len;
                buf = realloc(buf, cap);
                s = shmkit_receiver_recv(rx, buf, cap, &len, 60000);
            }
            if (s) return fail("recv", s);
            crc = crc_message(crc, buf, len);
        }
        printf("%llu %u\n", (unsigned long long)count, crc);
        shmkit_receiver_close(rx);
        free(buf);
        return 0;
    }
    if (argc == 3 && (strcmp(argv[1], "hold") == 0 || strcmp(argv[1], "lock") == 0)) {
        shmkit_mutex *m;
        if (strcmp(argv[1], "lock") == 0) {
            char line[16];
            if ((s = shmkit_mutex_create_or_open(argv[2], &m))) return fail("open", s);
            printf("ready\n");
            fflush(stdout);
            if (!fgets(line, sizeof line, stdin)) return 1;
        } else if ((s = shmkit_mutex_open(argv[2], &m))) {
            return fail("open", s);
        }
        s = shmkit_mutex_lock(m, 10000);
        if (s != SHMKIT_OK && s != SHMKIT_ERR_OWNER_DIED) return fail("lock", s);
        if (strcmp(argv[1], "lock") == 0) {
            printf("%s\n", s == SHMKIT_ERR_OWNER_DIED ? "owner-died" : "locked");
            return 0;
        }
        printf("locked\n");
        fflush(stdout);
        sleep_seconds(3600);
        return 0;
    }
    fprintf(stderr, "usage: peer send NAME COUNT SEED MAX | recv NAME COUNT | hold NAME | lock NAME\n");
    return 2;
}
