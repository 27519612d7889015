/*
 * The classic shared-memory producer/consumer, in C on shmkit: a named segment
 * and two named semaphores, "BASE.write" (starts at 1) and "BASE.read" (starts
 * at 0). The producer waits on write, puts a length-prefixed message into the
 * segment and releases read; the consumer waits on read, takes the message and
 * releases write. The same protocol as the Rust example
 * (cargo run -p shmkit --example producer_consumer -- produce|consume BASE), so
 * either side can be C or Rust.
 *
 * Unlike the classic version, messages of any length up to the segment go
 * through whole, a longer one is refused instead of cut, every wait has a
 * timeout, and the length read from shared memory is checked before use.
 *
 *   producer_consumer produce BASE     (start it first)
 *   producer_consumer consume BASE
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include "shmkit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#include <windows.h>
#define sleep_ms(ms) Sleep(ms)
#else
#include <time.h>
static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}
#endif

#define SEGMENT (64 * 1024)
#define CAPACITY (SEGMENT - 8)
#define END UINT64_MAX
#define TIMEOUT_MS 10000

static int die(const char *what, shmkit_status s) {
    fprintf(stderr, "%s: %s: %s\n", what, shmkit_status_name(s), shmkit_last_error());
    exit(1);
}
#define TRY(call) do { shmkit_status s_ = (call); if (s_) die(#call, s_); } while (0)

typedef struct {
    shmkit_shm *shm;
    shmkit_semaphore *write, *read;
} channel;

static void names(const char *base, char *w, char *r) {
    sprintf(w, "%s.write", base);
    sprintf(r, "%s.read", base);
}

static void put(channel *c, uint64_t len, const void *msg) {
    uint8_t prefix[8];
    int i;
    for (i = 0; i < 8; i++) prefix[i] = (uint8_t)(len >> (8 * i)); /* little-endian */
    TRY(shmkit_semaphore_wait(c->write, TIMEOUT_MS));
    TRY(shmkit_shm_write(c->shm, 0, prefix, 8));
    if (len != END) TRY(shmkit_shm_write(c->shm, 8, msg, (size_t)len));
    TRY(shmkit_semaphore_release(c->read, 1, NULL));
}

static void produce(const char *base) {
    char w[256], r[256];
    channel c;
    char *longer = malloc(CAPACITY + 1);
    struct { const char *data; size_t len; } msgs[5];
    int i;

    names(base, w, r);
    TRY(shmkit_shm_create(base, SEGMENT, 0, &c.shm));
    TRY(shmkit_semaphore_create(w, 1, 1, &c.write));
    TRY(shmkit_semaphore_create(r, 0, 1, &c.read));
    memset(longer, 'x', CAPACITY + 1);
    msgs[0].data = "hello", msgs[0].len = 5;
    msgs[1].data = "", msgs[1].len = 0;
    msgs[2].data = "a message much longer than the classic 100-byte read buffer, "
                   "a message much longer than the classic 100-byte read buffer, ";
    msgs[2].len = strlen(msgs[2].data);
    msgs[3].data = longer, msgs[3].len = CAPACITY;     /* exactly fills the segment */
    msgs[4].data = longer, msgs[4].len = CAPACITY + 1; /* one byte too many */
    for (i = 0; i < 5; i++) {
        if (msgs[i].len > CAPACITY) {
            printf("producer: not sent: %zu bytes is longer than the limit of %d bytes\n", msgs[i].len, CAPACITY);
            continue;
        }
        put(&c, msgs[i].len, msgs[i].data);
        printf("producer: sent %zu bytes\n", msgs[i].len);
    }
    put(&c, END, NULL);
    /* Wait until the consumer has taken the end marker before the segment goes. */
    TRY(shmkit_semaphore_wait(c.write, TIMEOUT_MS));
    shmkit_semaphore_close(c.read);
    shmkit_semaphore_close(c.write);
    shmkit_shm_close(c.shm);
    free(longer);
}

static void consume(const char *base) {
    char w[256], r[256];
    channel c;
    uint8_t *msg = malloc(CAPACITY);
    int tries;
    shmkit_status s;

    names(base, w, r);
    /* The producer makes the objects: wait (up to 10 s) for them to appear. */
    for (tries = 0; (s = shmkit_shm_open(base, SHMKIT_ACCESS_READ_WRITE, &c.shm)) == SHMKIT_ERR_NOT_FOUND && tries < 200; tries++)
        sleep_ms(50);
    if (s) die("shmkit_shm_open", s);
    for (tries = 0; (s = shmkit_semaphore_open(r, &c.read)) == SHMKIT_ERR_NOT_FOUND && tries < 200; tries++)
        sleep_ms(50);
    if (s) die("shmkit_semaphore_open", s);
    TRY(shmkit_semaphore_open(w, &c.write));
    for (;;) {
        uint8_t prefix[8];
        uint64_t len = 0;
        int i;
        TRY(shmkit_semaphore_wait(c.read, TIMEOUT_MS));
        TRY(shmkit_shm_read(c.shm, 0, prefix, 8));
        for (i = 0; i < 8; i++) len |= (uint64_t)prefix[i] << (8 * i);
        if (len == END) break;
        if (len > CAPACITY) { /* validate what the other process wrote */
            fprintf(stderr, "consumer: corrupt length %llu\n", (unsigned long long)len);
            exit(1);
        }
        TRY(shmkit_shm_read(c.shm, 8, msg, (size_t)len));
        printf("consumer: got %llu bytes: \"%.*s\"\n", (unsigned long long)len, len < 40 ? (int)len : 40, (char *)msg);
        TRY(shmkit_semaphore_release(c.write, 1, NULL));
    }
    TRY(shmkit_semaphore_release(c.write, 1, NULL));
    printf("consumer: done\n");
    shmkit_semaphore_close(c.read);
    shmkit_semaphore_close(c.write);
    shmkit_shm_close(c.shm);
    free(msg);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc == 3 && strcmp(argv[1], "produce") == 0) produce(argv[2]);
    else if (argc == 3 && strcmp(argv[1], "consume") == 0) consume(argv[2]);
    else {
        fprintf(stderr, "usage: %s produce|consume BASE\n", argv[0]);
        return 2;
    }
    return 0;
}
