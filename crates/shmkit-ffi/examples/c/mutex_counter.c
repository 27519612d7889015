/*
 * A named mutex guarding data in a segment, in C on shmkit. Segment BASE holds
 * two 64-bit counters that must always be equal; mutex "BASE.lock" guards them.
 * The writer increments both, one after the other, COUNT times under the lock;
 * the reader checks under the lock that it never sees them differ. Either side
 * can be C, C++ or Rust (shmkit-peer counter-write|counter-read).
 *
 *   mutex_counter write BASE COUNT
 *   mutex_counter read BASE COUNT
 *
 * If a writer dies holding the lock, the next locker gets SHMKIT_ERR_OWNER_DIED:
 * the lock is its own, and it repairs the counters before marking them consistent.
 */
#include "shmkit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int die(const char *what, shmkit_status s) {
    fprintf(stderr, "%s: %s: %s\n", what, shmkit_status_name(s), shmkit_last_error());
    exit(1);
}
#define TRY(call) do { shmkit_status s_ = (call); if (s_) die(#call, s_); } while (0)

static shmkit_status lock(shmkit_mutex *m, volatile uint64_t *counters) {
    shmkit_status s = shmkit_mutex_lock(m, 10000);
    if (s == SHMKIT_ERR_OWNER_DIED) { /* the lock is ours; the data may be torn */
        counters[1] = counters[0];
        TRY(shmkit_mutex_mark_consistent(m));
        fprintf(stderr, "a holder died; counters repaired\n");
        return SHMKIT_OK;
    }
    return s;
}

int main(int argc, char **argv) {
    shmkit_shm *seg;
    shmkit_mutex *m;
    uint8_t *data;
    uint64_t size, count, i, seen = 0;
    volatile uint64_t *counters;
    char lock_name[256];

    if (argc != 4 || (strcmp(argv[1], "write") && strcmp(argv[1], "read"))) {
        fprintf(stderr, "usage: %s write|read BASE COUNT\n", argv[0]);
        return 2;
    }
    count = strtoull(argv[3], NULL, 10);
    snprintf(lock_name, sizeof lock_name, "%s.lock", argv[2]);
    TRY(shmkit_shm_create_or_open(argv[2], 16, 0, NULL, NULL, &seg, NULL));
    TRY(shmkit_mutex_create_or_open(lock_name, &m));
    TRY(shmkit_shm_data(seg, &data, &size, NULL));
    counters = (volatile uint64_t *)data;

    if (strcmp(argv[1], "write") == 0) {
        for (i = 0; i < count; i++) {
            TRY(lock(m, counters));
            counters[0]++;
            counters[1]++;
            TRY(shmkit_mutex_unlock(m));
        }
        printf("writer: %llu updates\n", (unsigned long long)count);
    } else {
        time_t deadline = time(NULL) + 60;
        while (seen < count) {
            uint64_t a, b;
            if (time(NULL) > deadline) {
                printf("reader: no writer finished within 60 s\n");
                return 1;
            }
            TRY(lock(m, counters));
            a = counters[0];
            b = counters[1];
            TRY(shmkit_mutex_unlock(m));
            if (a != b) {
                printf("reader: torn: %llu != %llu\n", (unsigned long long)a, (unsigned long long)b);
                return 1;
            }
            seen = a;
        }
        printf("reader: saw %llu updates, never torn\n", (unsigned long long)seen);
    }
    shmkit_mutex_close(m);
    shmkit_shm_close(seg);
    return 0;
}
