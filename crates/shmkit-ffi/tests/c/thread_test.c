/*
 * The C ABI across threads (POSIX threads; Linux):
 *  - calls from a thread-exit destructor (pthread key, and on glibc a C++-style
 *    thread_local destructor that runs after shmkit's own thread-local is gone) and
 *    from a process-exit destructor: no abort, status codes still returned;
 *  - a timeout bounds the whole call while another thread blocks on the handle;
 *  - a callback that calls its own handle gets SHMKIT_ERR_BUSY, not a deadlock;
 *  - closing a handle from another thread ends the call blocked on it with
 *    SHMKIT_ERR_CLOSED and frees the role (receiver, subscriber, RPC server) or the
 *    lock (mutex) before the close returns; a close from inside a callback.
 * Prints each failure and "N passed, N failed"; exits non-zero if anything failed.
 * A section that hangs is reported by an alarm (the process then exits 1).
 *
 * Build: cc -std=c11 -pthread -I include thread_test.c -L target/debug -lshmkit_ffi
 */
#define _GNU_SOURCE
#include "shmkit.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

/* `got` is `status` and `message` mentions `needle`. */
#define EXPECT_STATUS(got, message, status, needle)                                 \
    do {                                                                            \
        shmkit_status got_ = (got);                                                 \
        const char *msg_ = (message);                                               \
        if (got_ == (status) && strstr(msg_, (needle))) {                           \
            passed++;                                                               \
        } else {                                                                    \
            failed++;                                                               \
            printf("FAIL %s:%d: %s gave %s (%s), expected %s with \"%s\"\n",        \
                   __FILE__, __LINE__, #got, shmkit_status_name(got_), msg_,        \
                   #status, (needle));                                              \
        }                                                                           \
    } while (0)

#define EXPECT(call, status, needle)                                                \
    do {                                                                            \
        shmkit_status s_ = (call);                                                  \
        EXPECT_STATUS(s_, shmkit_last_error(), status, needle);                     \
    } while (0)

#define OK(call) EXPECT(call, SHMKIT_OK, "")

static char names[64][96];
static int name_count;

static const char *unique(const char *what) {
    char *n = names[name_count++];
    snprintf(n, sizeof names[0], "thread-test-%d-%s", (int)getpid(), what);
    return n;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void sleep_ms(int ms) {
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0) {
    }
}

/* A section that hangs (the defect this program looks for) must not hang CI. */
static const char *volatile section = "start";

static void on_alarm(int sig) {
    static const char pre[] = "FAIL: hung in section ";
    (void)sig;
    (void)!write(1, pre, sizeof pre - 1);
    (void)!write(1, section, strlen(section));
    (void)!write(1, "\n", 1);
    _exit(1);
}

static void begin(const char *what, unsigned seconds) {
    section = what;
    alarm(seconds);
}

/* ---- calls from thread-exit and process-exit destructors ------------------ */

struct exit_calls {
    int ran;
    shmkit_status create, bad, close;
    int message_ok;
};

/* Opens a segment, makes an invalid call (which sets the last error), reads the
 * last error, closes: what a cleanup hook might do. */
static void exercise(struct exit_calls *r, const char *name) {
    shmkit_shm *seg = NULL, *none = NULL;
    const char *msg;
    r->ran = 1;
    r->create = shmkit_shm_create(name, 64, 0, &seg);
    r->bad = shmkit_shm_create(NULL, 64, 0, &none);
    msg = shmkit_last_error();
    r->message_ok = msg != NULL && msg[0] != '\0';
    r->close = seg ? shmkit_shm_close(seg) : SHMKIT_ERR_NULL_POINTER;
}

static int exit_calls_ok(const struct exit_calls *r) {
    return r->ran && r->create == SHMKIT_OK && r->bad == SHMKIT_ERR_NULL_POINTER && r->message_ok &&
           r->close == SHMKIT_OK;
}

static pthread_key_t key;
static struct exit_calls key_calls;
static const char *key_name;

static void key_destructor(void *value) {
    (void)value;
    exercise(&key_calls, key_name);
}

#ifdef __GLIBC__
/* What a C++ `thread_local` with a destructor registers; registered before the
 * thread's first shmkit call, it runs after shmkit's own thread-local is destroyed. */
extern int __cxa_thread_atexit_impl(void (*func)(void *), void *obj, void *dso_symbol);
extern void *__dso_handle;
static struct exit_calls tls_calls;
static const char *tls_name;

static void tls_destructor(void *obj) {
    (void)obj;
    exercise(&tls_calls, tls_name);
}
#endif

static void *exiting_thread(void *arg) {
    shmkit_shm *seg;
    (void)arg;
#ifdef __GLIBC__
    __cxa_thread_atexit_impl(tls_destructor, NULL, &__dso_handle);
#endif
    /* Makes this thread's last error exist, so that it is destroyed at exit. */
    shmkit_shm_open("thread-test-no-such-segment", 0, &seg);
    pthread_setspecific(key, (void *)1);
    return NULL;
}

static volatile int at_exit_check;
static const char *exit_name;

__attribute__((destructor)) static void process_exit_destructor(void) {
    struct exit_calls r = {0};
    if (!at_exit_check) return;
    exercise(&r, exit_name);
    _exit(exit_calls_ok(&r) ? 42 : 43);
}

static void exit_destructors(void) {
    pthread_t t;
    pid_t child;
    int status = 0;

    begin("thread-exit destructors", 20);
    key_name = unique("key-dtor");
#ifdef __GLIBC__
    tls_name = unique("tls-dtor");
#endif
    pthread_key_create(&key, key_destructor);
    pthread_create(&t, NULL, exiting_thread, NULL);
    pthread_join(t, NULL);
    CHECK(exit_calls_ok(&key_calls));
#ifdef __GLIBC__
    CHECK(exit_calls_ok(&tls_calls));
#endif
    pthread_key_delete(key);

    /* At process exit (after main returns, in a child so the result can be seen). */
    begin("process-exit destructor", 20);
    exit_name = unique("exit-dtor");
    fflush(stdout);
    child = fork();
    if (child == 0) {
        shmkit_shm *seg;
        at_exit_check = 1;
        shmkit_shm_open("thread-test-no-such-segment", 0, &seg);
        exit(0); /* runs the destructor, which exits 42 if every call worked */
    }
    waitpid(child, &status, 0);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 42)) {
        failed++;
        printf("FAIL process-exit destructor: child %s %d\n", WIFSIGNALED(status) ? "killed by signal" : "exited",
               WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    } else {
        passed++;
    }
}

/* ---- a blocked call on another thread ------------------------------------- */

enum op { RECV, RECV_WITH, SUB_RECV, SERVER_RECV, CLIENT_CALL, SEND, MUTEX_LOCK, SEM_WAIT, EVENT_WAIT };

struct call {
    enum op op;
    void *handle;
    int64_t timeout_ms;
    shmkit_status status;
    char message[512];
    double started, ended;
    volatile int done;
    pthread_t thread;
};

static int32_t ignore_message(const uint8_t *data, size_t len, void *user) {
    (void)data, (void)len, (void)user;
    return 0;
}

static void *call_thread(void *p) {
    struct call *c = p;
    uint8_t buf[256];
    size_t len = 0;
    uint64_t missed = 0;
    static const uint8_t block[64];
    c->started = now_ms();
    switch (c->op) {
    case RECV: c->status = shmkit_receiver_recv(c->handle, buf, sizeof buf, &len, c->timeout_ms); break;
    case RECV_WITH: c->status = shmkit_receiver_recv_with(c->handle, ignore_message, NULL, c->timeout_ms); break;
    case SUB_RECV:
        c->status = shmkit_subscriber_recv(c->handle, buf, sizeof buf, &len, c->timeout_ms, &missed);
        break;
    case SERVER_RECV: c->status = shmkit_rpc_server_recv(c->handle, buf, sizeof buf, &len, c->timeout_ms); break;
    case CLIENT_CALL:
        c->status = shmkit_rpc_client_call(c->handle, (const uint8_t *)"ping", 4, buf, sizeof buf, &len, c->timeout_ms);
        break;
    case SEND: c->status = shmkit_sender_send(c->handle, block, sizeof block, c->timeout_ms); break;
    case MUTEX_LOCK: c->status = shmkit_mutex_lock(c->handle, c->timeout_ms); break;
    case SEM_WAIT: c->status = shmkit_semaphore_wait(c->handle, c->timeout_ms); break;
    case EVENT_WAIT: c->status = shmkit_event_wait(c->handle, c->timeout_ms); break;
    }
    snprintf(c->message, sizeof c->message, "%s", shmkit_last_error());
    c->ended = now_ms();
    __atomic_store_n(&c->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void start(struct call *c, enum op op, void *handle, int64_t timeout_ms) {
    memset(c, 0, sizeof *c);
    c->op = op;
    c->handle = handle;
    c->timeout_ms = timeout_ms;
    pthread_create(&c->thread, NULL, call_thread, c);
}

/* Waits up to `ms` for the call to end; 1 if it did. */
static int finished_within(struct call *c, int ms) {
    double until = now_ms() + ms;
    while (!__atomic_load_n(&c->done, __ATOMIC_SEQ_CST) && now_ms() < until) sleep_ms(5);
    return __atomic_load_n(&c->done, __ATOMIC_SEQ_CST);
}

/* Waits (up to 2 s) until the call `c` has its handle: a call on it that must not
 * wait then reports the handle in use by another thread. For handles whose calls
 * run side by side (and the RPC client, whose probe would send a request), waits
 * 300 ms instead. */
static void wait_until_in_call(struct call *c) {
    double until = now_ms() + 2000;
    uint8_t buf[64] = {0};
    size_t len;
    shmkit_status s;
    while (now_ms() < until) {
        switch (c->op) {
        case RECV:
        case RECV_WITH: s = shmkit_receiver_recv(c->handle, buf, sizeof buf, &len, 0); break;
        case SUB_RECV: s = shmkit_subscriber_recv(c->handle, buf, sizeof buf, &len, 0, NULL); break;
        case SERVER_RECV: s = shmkit_rpc_server_recv(c->handle, buf, sizeof buf, &len, 0); break;
        case SEND: s = shmkit_sender_send(c->handle, buf, 1, 0); break; /* the ring is full */
        default: sleep_ms(300); return;
        }
        if (s != SHMKIT_OK && strstr(shmkit_last_error(), "another thread")) return;
        sleep_ms(10);
    }
}

/* ---- timeouts bound the whole call; re-entrant calls are refused ----------- */

struct reentry {
    void *handle;
    shmkit_status status;
    char message[512];
};

static int32_t recv_again(const uint8_t *data, size_t len, void *user) {
    struct reentry *r = user;
    uint8_t buf[64];
    size_t n;
    (void)data, (void)len;
    r->status = shmkit_receiver_recv(r->handle, buf, sizeof buf, &n, 1000);
    snprintf(r->message, sizeof r->message, "%s", shmkit_last_error());
    return 0;
}

static int32_t sub_recv_again(const uint8_t *data, size_t len, void *user) {
    struct reentry *r = user;
    uint8_t buf[64];
    size_t n;
    (void)data, (void)len;
    r->status = shmkit_subscriber_recv(r->handle, buf, sizeof buf, &n, 1000, NULL);
    snprintf(r->message, sizeof r->message, "%s", shmkit_last_error());
    return 0;
}

static int32_t call_again(const uint8_t *data, size_t len, void *user) {
    struct reentry *r = user;
    uint8_t buf[64];
    size_t n;
    (void)data, (void)len;
    r->status = shmkit_rpc_client_call(r->handle, (const uint8_t *)"x", 1, buf, sizeof buf, &n, 1000);
    snprintf(r->message, sizeof r->message, "%s", shmkit_last_error());
    return 0;
}

static void *answer_one(void *p) {
    shmkit_rpc_server *srv = p;
    uint8_t buf[64];
    size_t len;
    if (shmkit_rpc_server_recv(srv, buf, sizeof buf, &len, 5000) == SHMKIT_OK)
        shmkit_rpc_server_reply(srv, (const uint8_t *)"pong", 4);
    return NULL;
}

static void timeouts(void) {
    const char *name = unique("timeout");
    shmkit_receiver *rx;
    shmkit_sender *tx;
    struct call blocked, bounded, zero;

    begin("a timeout while another thread blocks on the handle", 30);
    OK(shmkit_receiver_connect(name, NULL, &rx));
    OK(shmkit_sender_connect(name, NULL, &tx));
    start(&blocked, RECV, rx, SHMKIT_FOREVER);
    wait_until_in_call(&blocked);
    start(&bounded, RECV, rx, 200);
    start(&zero, RECV, rx, 0);
    /* The bounded calls must end on their own time, not when the blocked one does
     * (the message below, 2 s later, ends the blocked one if nothing else does). */
    finished_within(&bounded, 2000);
    finished_within(&zero, 10);
    OK(shmkit_sender_send(tx, (const uint8_t *)"wake", 4, 1000));
    pthread_join(blocked.thread, NULL);
    pthread_join(bounded.thread, NULL);
    pthread_join(zero.thread, NULL);
    EXPECT_STATUS(blocked.status, blocked.message, SHMKIT_OK, "");
    EXPECT_STATUS(bounded.status, bounded.message, SHMKIT_ERR_TIMEOUT, "another thread");
    CHECK(bounded.ended - bounded.started < 1000);
    EXPECT_STATUS(zero.status, zero.message, SHMKIT_ERR_WOULD_BLOCK, "another thread");
    CHECK(zero.ended - zero.started < 500);

    begin("a callback calling its own receiver", 10);
    {
        struct reentry r = {rx, SHMKIT_OK, ""};
        OK(shmkit_sender_send(tx, (const uint8_t *)"one", 3, 1000));
        OK(shmkit_sender_send(tx, (const uint8_t *)"two", 3, 1000));
        OK(shmkit_receiver_recv_with(rx, recv_again, &r, 1000));
        EXPECT_STATUS(r.status, r.message, SHMKIT_ERR_BUSY, "callback");
        /* The handle still works, and the second message is still there. */
        {
            uint8_t buf[8];
            size_t len = 0;
            OK(shmkit_receiver_recv(rx, buf, sizeof buf, &len, 1000));
            CHECK(len == 3 && memcmp(buf, "two", 3) == 0);
        }
    }
    OK(shmkit_sender_close(tx));
    OK(shmkit_receiver_close(rx));

    begin("a callback calling its own subscriber", 10);
    {
        shmkit_publisher *pub;
        shmkit_subscriber *sub;
        struct reentry r = {NULL, SHMKIT_OK, ""};
        name = unique("reenter-sub");
        OK(shmkit_publisher_connect(name, NULL, &pub));
        OK(shmkit_subscriber_connect(name, NULL, &sub));
        r.handle = sub;
        OK(shmkit_publisher_publish(pub, (const uint8_t *)"tick", 4));
        OK(shmkit_subscriber_recv_with(sub, sub_recv_again, &r, 1000, NULL));
        EXPECT_STATUS(r.status, r.message, SHMKIT_ERR_BUSY, "callback");
        OK(shmkit_subscriber_close(sub));
        OK(shmkit_publisher_close(pub));
    }

    begin("a callback calling its own RPC client", 10);
    {
        shmkit_rpc_server *srv;
        shmkit_rpc_client *cli;
        pthread_t server;
        struct reentry r = {NULL, SHMKIT_OK, ""};
        name = unique("reenter-rpc");
        OK(shmkit_rpc_server_bind(name, &srv));
        OK(shmkit_rpc_client_connect(name, &cli));
        r.handle = cli;
        pthread_create(&server, NULL, answer_one, srv);
        OK(shmkit_rpc_client_call_with(cli, (const uint8_t *)"ping", 4, call_again, &r, 5000));
        pthread_join(server, NULL);
        EXPECT_STATUS(r.status, r.message, SHMKIT_ERR_BUSY, "callback");
        OK(shmkit_rpc_client_close(cli));
        OK(shmkit_rpc_server_close(srv));
    }

    begin("locking a mutex this thread holds through the same handle", 10);
    {
        shmkit_mutex *m;
        OK(shmkit_mutex_create(unique("relock"), &m));
        OK(shmkit_mutex_lock(m, 1000));
        EXPECT(shmkit_mutex_lock(m, SHMKIT_FOREVER), SHMKIT_ERR_BUSY, "already holds");
        EXPECT(shmkit_mutex_try_lock(m), SHMKIT_ERR_BUSY, "already holds");
        OK(shmkit_mutex_unlock(m));
        OK(shmkit_mutex_close(m));
    }
}

/* ---- close ends a blocked call --------------------------------------------- */

/* The call blocked on a handle that `close` closes ends with SHMKIT_ERR_CLOSED
 * within a second (if it does not, `unblock` ends it so the run goes on). */
static void expect_closed(struct call *c, const char *what, double closed_at, void (*unblock)(void *), void *arg) {
    if (!finished_within(c, 2000)) {
        failed++;
        printf("FAIL %s: the blocked call did not return after the close\n", what);
        if (unblock) unblock(arg);
    }
    pthread_join(c->thread, NULL);
    if (c->status == SHMKIT_ERR_CLOSED && strstr(c->message, "closed") && c->ended - closed_at < 1000) {
        passed++;
    } else {
        failed++;
        printf("FAIL %s: the blocked call gave %s (%s) %.0f ms after the close, expected SHMKIT_ERR_CLOSED\n",
               what, shmkit_status_name(c->status), c->message, c->ended - closed_at);
    }
}

static void send_one(void *tx) { shmkit_sender_send(tx, (const uint8_t *)"x", 1, 1000); }
static void publish_one(void *pub) { shmkit_publisher_publish(pub, (const uint8_t *)"x", 1); }
static void release_one(void *sem) { shmkit_semaphore_release(sem, 1, NULL); }
static void set_event(void *e) { shmkit_event_set(e); }

static void *call_once(void *cli) {
    uint8_t buf[8];
    size_t len;
    shmkit_rpc_client_call(cli, (const uint8_t *)"x", 1, buf, sizeof buf, &len, 1000);
    return NULL;
}
static void request_one(void *cli) {
    pthread_t t;
    pthread_create(&t, NULL, call_once, cli);
    pthread_detach(t);
}

static void drain(void *rx) {
    uint8_t buf[2048];
    size_t len;
    while (shmkit_receiver_recv(rx, buf, sizeof buf, &len, 100) == SHMKIT_OK) {
    }
}

struct closer {
    void *handle;
    shmkit_status status;
    char message[512];
};

static int32_t close_own_receiver(const uint8_t *data, size_t len, void *user) {
    struct closer *c = user;
    (void)data, (void)len;
    c->status = shmkit_receiver_close(c->handle);
    snprintf(c->message, sizeof c->message, "%s", shmkit_last_error());
    return 0;
}

static void closing(void) {
    struct call c;
    double t;

    begin("close a receiver blocked in recv", 20);
    {
        const char *name = unique("close-rx");
        shmkit_receiver *rx, *rx2 = NULL;
        shmkit_sender *tx;
        OK(shmkit_receiver_connect(name, NULL, &rx));
        OK(shmkit_sender_connect(name, NULL, &tx));
        start(&c, RECV, rx, SHMKIT_FOREVER);
        wait_until_in_call(&c);
        t = now_ms();
        OK(shmkit_receiver_close(rx));
        /* The role is free once the close returned. */
        OK(shmkit_receiver_connect(name, NULL, &rx2));
        expect_closed(&c, "receiver close", t, send_one, tx);
        EXPECT(shmkit_receiver_recv(rx, NULL, 0, &(size_t){0}, 0), SHMKIT_ERR_BAD_HANDLE, "closed");
        if (rx2) OK(shmkit_receiver_close(rx2));
        OK(shmkit_sender_close(tx));
    }

    begin("close a receiver blocked in recv_with", 20);
    {
        const char *name = unique("close-rx-with");
        shmkit_receiver *rx, *rx2 = NULL;
        shmkit_sender *tx;
        OK(shmkit_receiver_connect(name, NULL, &rx));
        OK(shmkit_sender_connect(name, NULL, &tx));
        start(&c, RECV_WITH, rx, SHMKIT_FOREVER);
        wait_until_in_call(&c);
        t = now_ms();
        OK(shmkit_receiver_close(rx));
        OK(shmkit_receiver_connect(name, NULL, &rx2));
        expect_closed(&c, "receiver close (recv_with)", t, send_one, tx);
        if (rx2) OK(shmkit_receiver_close(rx2));
        OK(shmkit_sender_close(tx));
    }

    begin("close a subscriber blocked in recv", 20);
    {
        const char *name = unique("close-sub");
        shmkit_publisher *pub;
        shmkit_subscriber *sub;
        shmkit_channel_options opts = {0};
        opts.max_peers = 1; /* a single subscriber slot: the close must free it */
        OK(shmkit_publisher_connect(name, &opts, &pub));
        OK(shmkit_subscriber_connect(name, NULL, &sub));
        start(&c, SUB_RECV, sub, SHMKIT_FOREVER);
        wait_until_in_call(&c);
        t = now_ms();
        OK(shmkit_subscriber_close(sub));
        sub = NULL;
        OK(shmkit_subscriber_connect(name, NULL, &sub));
        expect_closed(&c, "subscriber close", t, publish_one, pub);
        if (sub) OK(shmkit_subscriber_close(sub));
        OK(shmkit_publisher_close(pub));
    }

    begin("close an RPC server blocked in recv", 20);
    {
        const char *name = unique("close-srv");
        shmkit_rpc_server *srv, *srv2 = NULL;
        shmkit_rpc_client *cli;
        OK(shmkit_rpc_server_bind(name, &srv));
        OK(shmkit_rpc_client_connect(name, &cli));
        start(&c, SERVER_RECV, srv, SHMKIT_FOREVER);
        wait_until_in_call(&c);
        t = now_ms();
        OK(shmkit_rpc_server_close(srv));
        OK(shmkit_rpc_server_bind(name, &srv2));
        expect_closed(&c, "RPC server close", t, request_one, cli);
        if (srv2) OK(shmkit_rpc_server_close(srv2));
        OK(shmkit_rpc_client_close(cli));
    }

    begin("close an RPC client blocked in call", 20);
    {
        const char *name = unique("close-cli");
        shmkit_rpc_server *srv;
        shmkit_rpc_client *cli;
        pthread_t server;
        OK(shmkit_rpc_server_bind(name, &srv));
        OK(shmkit_rpc_client_connect(name, &cli));
        start(&c, CLIENT_CALL, cli, SHMKIT_FOREVER);
        wait_until_in_call(&c);
        t = now_ms();
        OK(shmkit_rpc_client_close(cli));
        pthread_create(&server, NULL, answer_one, srv);
        expect_closed(&c, "RPC client close", t, NULL, NULL);
        pthread_join(server, NULL);
        OK(shmkit_rpc_server_close(srv));
    }

    begin("close a sender blocked in send", 20);
    {
        const char *name = unique("close-tx");
        shmkit_receiver *rx;
        shmkit_sender *tx;
        shmkit_channel_options opts = {0};
        static const uint8_t block[64]; /* small enough to go in one piece */
        opts.capacity = 4096;
        OK(shmkit_receiver_connect(name, &opts, &rx));
        OK(shmkit_sender_connect(name, NULL, &tx));
        while (shmkit_sender_send(tx, block, sizeof block, 0) == SHMKIT_OK) {
        }
        start(&c, SEND, tx, SHMKIT_FOREVER);
        wait_until_in_call(&c);
        t = now_ms();
        OK(shmkit_sender_close(tx));
        expect_closed(&c, "sender close", t, drain, rx);
        OK(shmkit_receiver_close(rx));
    }

    begin("close a mutex handle that holds the lock, another thread waiting on it", 20);
    {
        const char *name = unique("close-mutex");
        shmkit_mutex *m, *other;
        struct call through_other;
        OK(shmkit_mutex_create(name, &m));
        OK(shmkit_mutex_open(name, &other));
        OK(shmkit_mutex_lock(m, 1000));
        /* Through the same handle (a timeout so long that only the close can end it
         * in time; without one the old code waited on itself for ever)... */
        start(&c, MUTEX_LOCK, m, 5000);
        /* ...and through another handle of the same mutex. */
        start(&through_other, MUTEX_LOCK, other, 5000);
        wait_until_in_call(&c);
        t = now_ms();
        OK(shmkit_mutex_close(m));
        expect_closed(&c, "mutex close", t, NULL, NULL);
        /* The close released the lock: the other handle's waiter has it now. */
        CHECK(finished_within(&through_other, 1000));
        pthread_join(through_other.thread, NULL);
        EXPECT_STATUS(through_other.status, through_other.message, SHMKIT_OK, "");
        OK(shmkit_mutex_unlock(other));
        OK(shmkit_mutex_close(other));
    }

    begin("close a semaphore handle blocked in wait", 20);
    {
        shmkit_semaphore *s, *s2;
        const char *name = unique("close-sem");
        OK(shmkit_semaphore_create(name, 0, 1, &s));
        OK(shmkit_semaphore_open(name, &s2));
        start(&c, SEM_WAIT, s, SHMKIT_FOREVER);
        wait_until_in_call(&c);
        t = now_ms();
        OK(shmkit_semaphore_close(s));
        expect_closed(&c, "semaphore close", t, release_one, s2);
        OK(shmkit_semaphore_close(s2));
    }

    begin("close an event handle blocked in wait", 20);
    {
        shmkit_event *e, *e2;
        const char *name = unique("close-event");
        OK(shmkit_event_create(name, 0, &e));
        OK(shmkit_event_open(name, &e2));
        start(&c, EVENT_WAIT, e, SHMKIT_FOREVER);
        wait_until_in_call(&c);
        t = now_ms();
        OK(shmkit_event_close(e));
        expect_closed(&c, "event close", t, set_event, e2);
        OK(shmkit_event_close(e2));
    }

    begin("close a receiver from inside its own callback", 20);
    {
        const char *name = unique("close-in-callback");
        shmkit_receiver *rx, *rx2 = NULL;
        shmkit_sender *tx;
        struct closer cl = {NULL, SHMKIT_OK, ""};
        OK(shmkit_receiver_connect(name, NULL, &rx));
        OK(shmkit_sender_connect(name, NULL, &tx));
        cl.handle = rx;
        OK(shmkit_sender_send(tx, (const uint8_t *)"x", 1, 1000));
        OK(shmkit_receiver_recv_with(rx, close_own_receiver, &cl, 1000));
        EXPECT_STATUS(cl.status, cl.message, SHMKIT_OK, "");
        /* Closed by then; the receiver role is free once the outer call returned. */
        EXPECT(shmkit_receiver_recv(rx, NULL, 0, &(size_t){0}, 0), SHMKIT_ERR_BAD_HANDLE, "closed");
        OK(shmkit_receiver_connect(name, NULL, &rx2));
        if (rx2) OK(shmkit_receiver_close(rx2));
        OK(shmkit_sender_close(tx));
    }
}

int main(void) {
    /* Line by line: a hung section ends the process with _exit. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGALRM, on_alarm);
    exit_destructors();
    timeouts();
    closing();
    alarm(0);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
