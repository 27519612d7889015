/*
 * The C ABI from C: every function family once, and bad input across the ABI
 * (NULL pointers, zero lengths, wrong handle kinds, closed handles, buffers too
 * small, invalid UTF-8 names), and copies between a segment and its own memory.
 * Prints each failure and a final "N passed, N failed" line; exits non-zero if
 * anything failed.
 *
 * Build: cc -std=c11 -I include abi_test.c -L target/debug -lshmkit_ffi
 */
#include "shmkit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#include <process.h>
#define getpid _getpid
#else
#include <unistd.h>
#endif

static int passed, failed;

#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (cond) {                                                                 \
            passed++;                                                               \
        } else {                                                                    \
            failed++;                                                               \
            printf("FAIL %s:%d: %s (last error: %s)\n", __FILE__, __LINE__, #cond,  \
                   shmkit_last_error());                                            \
        }                                                                           \
    } while (0)

/* The call returns `status` and the message mentions `needle`. */
#define EXPECT(call, status, needle)                                                \
    do {                                                                            \
        shmkit_status got_ = (call);                                                \
        if (got_ == (status) && strstr(shmkit_last_error(), (needle))) {            \
            passed++;                                                               \
        } else {                                                                    \
            failed++;                                                               \
            printf("FAIL %s:%d: %s gave %s (%s), expected %s with \"%s\"\n",        \
                   __FILE__, __LINE__, #call, shmkit_status_name(got_),             \
                   shmkit_last_error(), #status, (needle));                         \
        }                                                                           \
    } while (0)

#define OK(call) EXPECT(call, SHMKIT_OK, "")

static char names[16][96];
static int name_count;

static const char *unique(const char *what) {
    char *n = names[name_count++];
    snprintf(n, sizeof names[0], "abi-test-%d-%s", (int)getpid(), what);
    return n;
}

static int init_calls;
static int32_t fill(uint8_t *data, uint64_t len, void *user) {
    init_calls++;
    memset(data, *(int *)user, (size_t)len);
    return 0;
}
static int32_t refuse(uint8_t *data, uint64_t len, void *user) {
    (void)data, (void)len, (void)user;
    return 7;
}

static int32_t sum_bytes(const uint8_t *data, size_t len, void *user) {
    size_t i;
    for (i = 0; i < len; i++) *(unsigned *)user += data[i];
    return 0;
}

static void segments(void) {
    const char *name = unique("seg");
    shmkit_shm *a = NULL, *b = NULL, *c = NULL;
    uint8_t *data;
    uint64_t size;
    bool writable, created;
    char buf[16];
    int byte = 0x5a;
    shmkit_segment_info info;

    OK(shmkit_shm_create(name, 4096, 0, &a));
    OK(shmkit_shm_data(a, &data, &size, &writable));
    CHECK(size == 4096 && writable);
    memcpy(data, "hello", 5);
    OK(shmkit_shm_open(name, SHMKIT_ACCESS_READ_ONLY, &b));
    OK(shmkit_shm_read(b, 0, (uint8_t *)buf, 5));
    CHECK(memcmp(buf, "hello", 5) == 0);
    EXPECT(shmkit_shm_write(b, 0, (const uint8_t *)"x", 1), SHMKIT_ERR_PERMISSION_DENIED, "read-only");
    EXPECT(shmkit_shm_read(a, 4090, (uint8_t *)buf, 10), SHMKIT_ERR_OUT_OF_BOUNDS, "out of bounds");
    EXPECT(shmkit_shm_create(name, 4096, 0, &c), SHMKIT_ERR_ALREADY_EXISTS, name);
    EXPECT(shmkit_shm_open("abi-test-no-such-segment", 0, &c), SHMKIT_ERR_NOT_FOUND, "no-such");
    EXPECT(shmkit_shm_open(name, 9, &c), SHMKIT_ERR_INVALID_ARGUMENT, "access 9");
    EXPECT(shmkit_shm_create(name, 4096, 0x80, &c), SHMKIT_ERR_INVALID_ARGUMENT, "flags");
    OK(shmkit_shm_inspect(name, &info));
    CHECK(info.size == 4096 && info.creator_pid == (uint32_t)getpid() && info.state == 1);
    OK(shmkit_shm_close(b));
    OK(shmkit_shm_close(a));

    name = unique("init");
    OK(shmkit_shm_create_or_open(name, 64, 0, fill, &byte, &a, &created));
    CHECK(created && init_calls == 1);
    OK(shmkit_shm_create_or_open(name, 64, 0, fill, &byte, &b, &created));
    CHECK(!created && init_calls == 1);
    OK(shmkit_shm_read(b, 63, (uint8_t *)buf, 1));
    CHECK((uint8_t)buf[0] == 0x5a);
    OK(shmkit_shm_close(a));
    OK(shmkit_shm_close(b));
    EXPECT(shmkit_shm_create_or_open(unique("refused"), 64, 0, refuse, NULL, &a, NULL),
           SHMKIT_ERR_CALLBACK, "init returned 7");
}

/* A copy whose source or destination is the segment's own memory (a pointer from
 * shmkit_shm_data) overlaps the range copied to or from: the result must be
 * memmove's. Run alone ("abi_test overlap") under valgrind, which also reports an
 * overlapping memcpy. */
static void overlapping_copies(void) {
    enum { SIZE = 8192, LEN = 4096 };
    static uint8_t expected[SIZE];
    shmkit_shm *seg = NULL;
    uint8_t *data;
    uint64_t size;
    bool writable;
    int i;

    OK(shmkit_shm_create(unique("overlap"), SIZE, 0, &seg));
    OK(shmkit_shm_data(seg, &data, &size, &writable));
    if (!seg || size != SIZE) return;
    for (i = 0; i < SIZE; i++) data[i] = expected[i] = (uint8_t)(i * 7 + i / 256);

    /* Forwards: [0, LEN) to [1, LEN + 1). */
    OK(shmkit_shm_write(seg, 1, data, LEN));
    memmove(expected + 1, expected, LEN);
    CHECK(memcmp(data, expected, SIZE) == 0);
    /* Backwards: [3, LEN + 3) to [0, LEN). */
    OK(shmkit_shm_write(seg, 0, data + 3, LEN));
    memmove(expected, expected + 3, LEN);
    CHECK(memcmp(data, expected, SIZE) == 0);
    /* Reading into the segment itself: [0, LEN) to [2, LEN + 2). */
    OK(shmkit_shm_read(seg, 0, data + 2, LEN));
    memmove(expected + 2, expected, LEN);
    CHECK(memcmp(data, expected, SIZE) == 0);
    /* The same range onto itself. */
    OK(shmkit_shm_write(seg, 100, data + 100, LEN));
    CHECK(memcmp(data, expected, SIZE) == 0);
    OK(shmkit_shm_close(seg));
}

static void bad_input(void) {
    const char *name = unique("bad");
    shmkit_shm *seg = NULL;
    shmkit_sender *tx = NULL;
    shmkit_receiver *rx = NULL;
    uint8_t *data;
    uint64_t size;
    size_t len = 0;
    char buf[8];

    /* NULL pointers */
    EXPECT(shmkit_shm_create(NULL, 64, 0, &seg), SHMKIT_ERR_NULL_POINTER, "name is NULL");
    EXPECT(shmkit_shm_create(name, 64, 0, NULL), SHMKIT_ERR_NULL_POINTER, "shm is NULL");
    EXPECT(shmkit_shm_data(NULL, &data, &size, NULL), SHMKIT_ERR_NULL_POINTER, "handle is NULL");
    EXPECT(shmkit_sender_close(NULL), SHMKIT_ERR_NULL_POINTER, "NULL");
    /* invalid UTF-8 and invalid names */
    EXPECT(shmkit_shm_create("bad-\xff\xfe", 64, 0, &seg), SHMKIT_ERR_INVALID_UTF8, "UTF-8");
    EXPECT(shmkit_shm_create("a/b", 64, 0, &seg), SHMKIT_ERR_INVALID_ARGUMENT, "invalid name");
    EXPECT(shmkit_shm_create("", 64, 0, &seg), SHMKIT_ERR_INVALID_ARGUMENT, "invalid name");
    /* zero sizes and lengths */
    EXPECT(shmkit_shm_create(name, 0, 0, &seg), SHMKIT_ERR_INVALID_ARGUMENT, "size");
    OK(shmkit_receiver_connect(name, NULL, &rx));
    OK(shmkit_sender_connect(name, NULL, &tx));
    OK(shmkit_sender_send(tx, NULL, 0, 0)); /* an empty message is fine */
    OK(shmkit_receiver_recv(rx, NULL, 0, &len, 1000));
    CHECK(len == 0);
    EXPECT(shmkit_sender_send(tx, NULL, 5, 0), SHMKIT_ERR_NULL_POINTER, "data is NULL but its length is 5");
    /* buffers too small: the message stays queued, the length says how long */
    OK(shmkit_sender_send(tx, (const uint8_t *)"0123456789", 10, 0));
    EXPECT(shmkit_receiver_recv(rx, (uint8_t *)buf, sizeof buf, &len, 1000),
           SHMKIT_ERR_BUFFER_TOO_SMALL, "10 bytes");
    CHECK(len == 10);
    {
        char big[16];
        OK(shmkit_receiver_recv(rx, (uint8_t *)big, sizeof big, &len, 1000));
        CHECK(len == 10 && memcmp(big, "0123456789", 10) == 0);
    }
    EXPECT(shmkit_receiver_recv(rx, (uint8_t *)buf, sizeof buf, NULL, 0), SHMKIT_ERR_NULL_POINTER, "len is NULL");
    EXPECT(shmkit_receiver_recv(rx, (uint8_t *)buf, sizeof buf, &len, 0), SHMKIT_ERR_WOULD_BLOCK, "would block");
    EXPECT(shmkit_receiver_recv(rx, (uint8_t *)buf, sizeof buf, &len, 20), SHMKIT_ERR_TIMEOUT, "timed out");
    EXPECT(shmkit_receiver_recv_with(rx, NULL, NULL, 0), SHMKIT_ERR_NULL_POINTER, "callback is NULL");
    /* wrong handle kinds: a receiver passed where a sender is wanted */
    EXPECT(shmkit_sender_send((shmkit_sender *)rx, (const uint8_t *)"x", 1, 0), SHMKIT_ERR_BAD_HANDLE,
           "it is a shmkit_receiver");
    EXPECT(shmkit_shm_close((shmkit_shm *)tx), SHMKIT_ERR_BAD_HANDLE, "it is a shmkit_sender");
    /* forged handles */
    EXPECT(shmkit_sender_send((shmkit_sender *)(uintptr_t)0xdeadbeef, NULL, 0, 0), SHMKIT_ERR_BAD_HANDLE,
           "not an open shmkit_sender");
    /* closed handles */
    OK(shmkit_sender_close(tx));
    EXPECT(shmkit_sender_send(tx, (const uint8_t *)"x", 1, 0), SHMKIT_ERR_BAD_HANDLE, "closed");
    EXPECT(shmkit_sender_close(tx), SHMKIT_ERR_BAD_HANDLE, "closed");
    EXPECT(shmkit_receiver_recv(rx, (uint8_t *)buf, sizeof buf, &len, 1000), SHMKIT_ERR_DISCONNECTED, "disconnected");
    OK(shmkit_receiver_close(rx));
    /* status names and the last error after success */
    CHECK(strcmp(shmkit_status_name(SHMKIT_ERR_TIMEOUT), "SHMKIT_ERR_TIMEOUT") == 0);
    CHECK(strcmp(shmkit_status_name(12345), "unknown status") == 0);
    CHECK(strcmp(shmkit_status_name(-1), "unknown status") == 0);
    CHECK(shmkit_version()[0] != '\0');
}

static void channels(void) {
    const char *name = unique("chan");
    shmkit_sender *tx;
    shmkit_receiver *rx;
    shmkit_channel_options opts = {0};
    uint8_t *slot;
    size_t len;
    char buf[64];
    unsigned sum = 0;

    opts.capacity = 4096;
    opts.flags = SHMKIT_CHANNEL_CREATE_NEW | SHMKIT_CHANNEL_OPEN_EXISTING;
    EXPECT(shmkit_receiver_connect(name, &opts, &rx), SHMKIT_ERR_INVALID_ARGUMENT,
           "SHMKIT_CHANNEL_CREATE_NEW and SHMKIT_CHANNEL_OPEN_EXISTING");
    opts.flags = 0;
    OK(shmkit_receiver_connect(name, &opts, &rx));
    opts.capacity = 8192;
    EXPECT(shmkit_sender_connect(name, &opts, &tx), SHMKIT_ERR_MISMATCH, "capacity");
    OK(shmkit_sender_connect(name, NULL, &tx));
    OK(shmkit_sender_reserve(tx, 3, 0, &slot));
    memcpy(slot, "abc", 3);
    EXPECT(shmkit_sender_send(tx, (const uint8_t *)"x", 1, 0), SHMKIT_ERR_INVALID_ARGUMENT, "reservation is open");
    OK(shmkit_sender_commit(tx));
    EXPECT(shmkit_sender_commit(tx), SHMKIT_ERR_INVALID_ARGUMENT, "no reservation");
    OK(shmkit_sender_reserve(tx, 2, 0, &slot));
    OK(shmkit_sender_cancel(tx));
    OK(shmkit_receiver_recv_with(rx, sum_bytes, &sum, 1000));
    CHECK(sum == 'a' + 'b' + 'c');
    EXPECT(shmkit_sender_reserve(tx, 4096, 0, &slot), SHMKIT_ERR_TOO_LONG, "longer than");
    OK(shmkit_sender_send(tx, (const uint8_t *)"after", 5, 1000));
    OK(shmkit_receiver_recv(rx, (uint8_t *)buf, sizeof buf, &len, 1000));
    CHECK(len == 5 && memcmp(buf, "after", 5) == 0);
    OK(shmkit_sender_close(tx));
    OK(shmkit_receiver_close(rx));
}

static void broadcast(void) {
    const char *name = unique("news");
    shmkit_publisher *pub;
    shmkit_subscriber *sub;
    shmkit_channel_options opts = {0};
    char buf[64], small[2];
    size_t len;
    uint64_t missed = 0;
    int i;

    opts.capacity = 4096;
    OK(shmkit_publisher_connect(name, &opts, &pub));
    OK(shmkit_subscriber_connect(name, NULL, &sub));
    EXPECT(shmkit_subscriber_recv(sub, (uint8_t *)buf, sizeof buf, &len, 0, &missed),
           SHMKIT_ERR_WOULD_BLOCK, "would block");
    OK(shmkit_publisher_publish(pub, (const uint8_t *)"tick", 4));
    EXPECT(shmkit_subscriber_recv(sub, (uint8_t *)small, sizeof small, &len, 1000, &missed),
           SHMKIT_ERR_BUFFER_TOO_SMALL, "4 bytes");
    CHECK(len == 4);
    OK(shmkit_subscriber_recv(sub, (uint8_t *)buf, sizeof buf, &len, 1000, &missed));
    CHECK(len == 4 && memcmp(buf, "tick", 4) == 0);
    for (i = 0; i < 200; i++) {
        char msg[64] = {0};
        snprintf(msg, sizeof msg, "%04d", i);
        OK(shmkit_publisher_publish(pub, (const uint8_t *)msg, sizeof msg));
    }
    EXPECT(shmkit_subscriber_recv(sub, (uint8_t *)buf, sizeof buf, &len, 1000, &missed), SHMKIT_ERR_LAGGED, "missed");
    CHECK(missed > 0 && missed < 200);
    OK(shmkit_subscriber_recv(sub, (uint8_t *)buf, sizeof buf, &len, 1000, &missed));
    CHECK(atoi(buf) == (int)missed);
    OK(shmkit_publisher_close(pub));
    OK(shmkit_subscriber_close(sub));
}

static void sync_objects(void) {
    shmkit_mutex *m, *m2;
    shmkit_semaphore *s;
    shmkit_event *e;
    uint32_t prev, count;
    bool set;
    const char *mname = unique("mutex");

    OK(shmkit_mutex_create(mname, &m));
    OK(shmkit_mutex_open(mname, &m2));
    OK(shmkit_mutex_lock(m, 1000));
    EXPECT(shmkit_mutex_try_lock(m2), SHMKIT_ERR_WOULD_BLOCK, "would block");
    EXPECT(shmkit_mutex_lock(m2, 20), SHMKIT_ERR_TIMEOUT, "timed out");
    EXPECT(shmkit_mutex_unlock(m2), SHMKIT_ERR_INVALID_ARGUMENT, "not locked through this handle");
    OK(shmkit_mutex_unlock(m));
    OK(shmkit_mutex_lock(m2, 1000));
    OK(shmkit_mutex_close(m2)); /* closing unlocks */
    OK(shmkit_mutex_try_lock(m));
    OK(shmkit_mutex_unlock(m));
    OK(shmkit_mutex_close(m));

    OK(shmkit_semaphore_create(unique("sem"), 1, 2, &s));
    OK(shmkit_semaphore_wait(s, 0));
    /* Timeout 0 tries once: WOULD_BLOCK, as for queues (issue 23, item 5). */
    EXPECT(shmkit_semaphore_wait(s, 0), SHMKIT_ERR_WOULD_BLOCK, "would block");
    EXPECT(shmkit_semaphore_wait(s, 10), SHMKIT_ERR_TIMEOUT, "timed out");
    OK(shmkit_semaphore_release(s, 2, &prev));
    CHECK(prev == 0);
    EXPECT(shmkit_semaphore_release(s, 1, NULL), SHMKIT_ERR_ABOVE_MAXIMUM, "maximum");
    OK(shmkit_semaphore_count(s, &count));
    CHECK(count == 2);
    OK(shmkit_semaphore_close(s));

    OK(shmkit_event_create(unique("event"), SHMKIT_EVENT_AUTO_RESET | SHMKIT_EVENT_INITIALLY_SET, &e));
    OK(shmkit_event_is_set(e, &set));
    CHECK(set);
    OK(shmkit_event_wait(e, 0));
    EXPECT(shmkit_event_wait(e, 0), SHMKIT_ERR_WOULD_BLOCK, "would block");
    EXPECT(shmkit_event_wait(e, 10), SHMKIT_ERR_TIMEOUT, "");
    OK(shmkit_event_set(e));
    OK(shmkit_event_wait(e, 1000));
    OK(shmkit_event_close(e));
    EXPECT(shmkit_event_create(unique("event2"), 0x100, &e), SHMKIT_ERR_INVALID_ARGUMENT, "flags");

#ifdef _WIN32
    {
        shmkit_native_semaphore *ns;
        OK(shmkit_native_semaphore_create(unique("native"), 0, 5, true, &ns));
        OK(shmkit_native_semaphore_release(ns, 1, &prev));
        OK(shmkit_native_semaphore_wait(ns, 100));
        OK(shmkit_native_semaphore_close(ns));
    }
#else
    {
        shmkit_native_semaphore *ns;
        shmkit_posix_semaphore *ps;
        char pname[100];
        EXPECT(shmkit_native_semaphore_create("x", 0, 5, true, &ns), SHMKIT_ERR_UNSUPPORTED, "Win32");
        snprintf(pname, sizeof pname, "/%s", unique("posix"));
        OK(shmkit_posix_semaphore_create(pname, 0, true, &ps));
        OK(shmkit_posix_semaphore_post(ps));
        OK(shmkit_posix_semaphore_wait(ps, 100));
        EXPECT(shmkit_posix_semaphore_wait(ps, 0), SHMKIT_ERR_WOULD_BLOCK, "");
        EXPECT(shmkit_posix_semaphore_wait(ps, 10), SHMKIT_ERR_TIMEOUT, "");
        OK(shmkit_posix_semaphore_close(ps));
        OK(shmkit_posix_semaphore_remove(pname));
    }
#endif
}

static void rpc(void) {
    const char *name = unique("rpc");
    shmkit_rpc_server *srv;
    shmkit_rpc_client *cli;
    char buf[64];
    size_t len;

    shmkit_rpc_server *second;
    char pid[32];
    OK(shmkit_rpc_server_bind(name, &srv));
    snprintf(pid, sizeof pid, "process %d", (int)getpid());
    EXPECT(shmkit_rpc_server_bind(name, &second), SHMKIT_ERR_OCCUPIED, "another RPC server is bound");
    CHECK(strstr(shmkit_last_error(), pid) != NULL && !strstr(shmkit_last_error(), "slot"));
    EXPECT(shmkit_rpc_server_recv(srv, (uint8_t *)buf, sizeof buf, &len, 0), SHMKIT_ERR_WOULD_BLOCK,
           "would block");
    OK(shmkit_rpc_client_connect(name, &cli));
    EXPECT(shmkit_rpc_server_reply(srv, (const uint8_t *)"x", 1), SHMKIT_ERR_INVALID_ARGUMENT, "no request");
    /* No server thread here: the call times out, the request stays for the server. */
    EXPECT(shmkit_rpc_client_call(cli, (const uint8_t *)"ping", 4, (uint8_t *)buf, sizeof buf, &len, 50),
           SHMKIT_ERR_TIMEOUT, "timed out");
    OK(shmkit_rpc_server_recv(srv, (uint8_t *)buf, sizeof buf, &len, 1000));
    CHECK(len == 4 && memcmp(buf, "ping", 4) == 0);
    OK(shmkit_rpc_server_reply(srv, (const uint8_t *)"pong", 4));
    OK(shmkit_rpc_client_close(cli));
    OK(shmkit_rpc_server_close(srv));
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "overlap") == 0) {
        overlapping_copies();
        printf("%d passed, %d failed\n", passed, failed);
        return failed ? 1 : 0;
    }
    segments();
    overlapping_copies();
    bad_input();
    channels();
    broadcast();
    sync_objects();
    rpc();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
