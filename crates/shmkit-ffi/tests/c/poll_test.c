/*
 * Pollable handles from C (Linux): shmkit_*_pollable descriptors in poll/epoll,
 * shmkit_*_on_ready callbacks.
 *  - re-arming: a try that returns SHMKIT_ERR_WOULD_BLOCK arms the descriptor,
 *    which turns readable when the object changes; a try clears it; a message
 *    queued before is returned at once;
 *  - epoll on two receivers whose senders run in another process, with a timerfd
 *    in the same loop: every message in order, then DISCONNECTED for both;
 *  - a sender SIGKILLed while the receiver's descriptor is armed: it turns
 *    readable and the receive says DISCONNECTED;
 *  - closing a handle from another thread makes its descriptor readable (for
 *    good) and calls every registered callback once; the next call says it is
 *    closed;
 *  - every kind: sender (room), subscriber, RPC server and client
 *    (start_call/finish_call), mutex, semaphore, event;
 *  - a try that found the handle busy with another thread's call is armed by
 *    that call's end;
 *  - on_ready: called once per registration, on shmkit's callback thread, or at
 *    once when the handle is ready; bad arguments;
 *  - the wait set (shmkit_waitset_*): level-triggered over every kind of handle and
 *    a pipe, two receivers fed by another process, a member closed or the set
 *    closed from another thread ending the wait, timeouts, removal, bad input.
 * A wake-up may be spurious (shmkit looks at a waiting object's peers now and
 * then), so "not ready" is only checked right after arming.
 * Prints each failure and "N passed, N failed"; exits non-zero if anything failed.
 * A section that hangs is reported by an alarm (the process then exits 1).
 * `poll_test basic` runs only the first section (for valgrind).
 *
 * Build: cc -std=c11 -pthread -I include poll_test.c -L target/debug -lshmkit_ffi
 */
#define _GNU_SOURCE
#include "shmkit.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
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

#define EXPECT(call, status)                                                        \
    do {                                                                            \
        shmkit_status s_ = (call);                                                  \
        if (s_ == (status)) {                                                       \
            passed++;                                                               \
        } else {                                                                    \
            failed++;                                                               \
            printf("FAIL %s:%d: %s gave %s (%s), expected %s\n", __FILE__, __LINE__, \
                   #call, shmkit_status_name(s_), shmkit_last_error(), #status);    \
        }                                                                           \
    } while (0)

#define OK(call) EXPECT(call, SHMKIT_OK)

static char names[64][96];
static int name_count;

static const char *unique(const char *what) {
    char *n = names[name_count++];
    snprintf(n, sizeof names[0], "poll-test-%d-%s", (int)getpid(), what);
    return n;
}

static void sleep_ms(int ms) {
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0) {
    }
}

/* Whether `fd` turns readable within `ms` (0: is it readable now). */
static int readable(shmkit_descriptor fd, int ms) {
    struct pollfd p = {.fd = (int)fd, .events = POLLIN};
    int r;
    do {
        r = poll(&p, 1, ms);
    } while (r < 0 && errno == EINTR);
    return r == 1 && (p.revents & POLLIN);
}

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

static shmkit_status recv_text(shmkit_receiver *rx, char *out, size_t cap) {
    size_t len = 0;
    shmkit_status s = shmkit_receiver_recv(rx, (uint8_t *)out, cap - 1, &len, 0);
    out[s == SHMKIT_OK ? len : 0] = '\0';
    return s;
}

static shmkit_status send_text(shmkit_sender *tx, const char *text) {
    return shmkit_sender_send(tx, (const uint8_t *)text, strlen(text), 1000);
}

/* ---- re-arming ------------------------------------------------------------- */

static void rearm(void) {
    const char *name = unique("rearm");
    shmkit_receiver *rx;
    shmkit_sender *tx;
    shmkit_descriptor fd = -1, fd2 = -1;
    char buf[64];
    size_t len;

    begin("re-arming", 30);
    OK(shmkit_receiver_connect(name, NULL, &rx));
    OK(shmkit_sender_connect(name, NULL, &tx));
    /* Queued before the handle was pollable: the first try returns it. */
    OK(send_text(tx, "early"));
    OK(shmkit_receiver_pollable(rx, &fd));
    CHECK(fd >= 0);
    CHECK(!readable(fd, 0));
    OK(recv_text(rx, buf, sizeof buf));
    CHECK(strcmp(buf, "early") == 0);
    /* Nothing: WOULD_BLOCK arms the descriptor, which is not readable yet. */
    EXPECT(recv_text(rx, buf, sizeof buf), SHMKIT_ERR_WOULD_BLOCK);
    CHECK(!readable(fd, 0));
    OK(send_text(tx, "one"));
    CHECK(readable(fd, 5000));
    /* Stays readable until a try clears it. */
    CHECK(readable(fd, 0));
    OK(recv_text(rx, buf, sizeof buf));
    CHECK(strcmp(buf, "one") == 0);
    /* A successful try cleared it and armed nothing (edge-triggered). */
    CHECK(!readable(fd, 0));
    EXPECT(recv_text(rx, buf, sizeof buf), SHMKIT_ERR_WOULD_BLOCK);
    OK(send_text(tx, "two"));
    OK(send_text(tx, "three"));
    CHECK(readable(fd, 5000));
    OK(recv_text(rx, buf, sizeof buf));
    CHECK(strcmp(buf, "two") == 0);
    OK(recv_text(rx, buf, sizeof buf));
    CHECK(strcmp(buf, "three") == 0);
    EXPECT(recv_text(rx, buf, sizeof buf), SHMKIT_ERR_WOULD_BLOCK);
    /* A second descriptor is the same notifier. */
    OK(shmkit_receiver_pollable(rx, &fd2));
    CHECK(fd2 >= 0 && fd2 != fd);
    OK(send_text(tx, "four"));
    CHECK(readable(fd, 5000) && readable(fd2, 0));
    /* A message too long for the buffer a poll was given stays for the next call. */
    OK(shmkit_sender_send(tx, (const uint8_t *)"a longer message", 16, 1000));
    OK(recv_text(rx, buf, sizeof buf));
    CHECK(strcmp(buf, "four") == 0);
    len = 0;
    EXPECT(shmkit_receiver_recv(rx, (uint8_t *)buf, 4, &len, 0), SHMKIT_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 16);
    len = 0;
    OK(shmkit_receiver_recv(rx, (uint8_t *)buf, sizeof buf, &len, 0));
    CHECK(len == 16 && memcmp(buf, "a longer message", 16) == 0);
    /* Blocking calls still work on a pollable handle. */
    OK(send_text(tx, "blocking"));
    OK(shmkit_receiver_recv(rx, (uint8_t *)buf, sizeof buf, &len, 1000));
    CHECK(len == 8);
    /* Bad arguments. */
    EXPECT(shmkit_receiver_pollable(rx, NULL), SHMKIT_ERR_NULL_POINTER);
    EXPECT(shmkit_receiver_pollable(NULL, &fd2), SHMKIT_ERR_NULL_POINTER);
    EXPECT(shmkit_receiver_pollable((shmkit_receiver *)tx, &fd2), SHMKIT_ERR_BAD_HANDLE);
    EXPECT(shmkit_receiver_on_ready(rx, NULL, NULL), SHMKIT_ERR_NULL_POINTER);
    EXPECT(shmkit_pollable_close(-1), SHMKIT_ERR_INVALID_ARGUMENT);
    OK(shmkit_pollable_close(fd2));
    OK(shmkit_sender_close(tx));
    OK(shmkit_receiver_close(rx));
    /* Closed: ready for good; the descriptor stays valid until closed. */
    CHECK(readable(fd, 0));
    EXPECT(recv_text(rx, buf, sizeof buf), SHMKIT_ERR_BAD_HANDLE);
    OK(shmkit_pollable_close(fd));
}

/* ---- epoll on two receivers, senders in another process -------------------- */

enum { PER_CHANNEL = 2000 };

/* Child: sends PER_CHANNEL numbered messages to each of two channels, in bursts
 * with short pauses (so the receiver's loop sleeps in between), then exits. */
static int child_send(const char *a, const char *b) {
    shmkit_sender *tx[2];
    char msg[32];
    if (shmkit_sender_connect(a, NULL, &tx[0]) != SHMKIT_OK || shmkit_sender_connect(b, NULL, &tx[1]) != SHMKIT_OK) {
        fprintf(stderr, "child: %s\n", shmkit_last_error());
        return 2;
    }
    srand((unsigned)getpid());
    for (int i = 0; i < PER_CHANNEL; i++) {
        for (int c = 0; c < 2; c++) {
            int n = snprintf(msg, sizeof msg, "%d:%d", c, i);
            if (shmkit_sender_send(tx[c], (const uint8_t *)msg, (size_t)n, 10000) != SHMKIT_OK) {
                fprintf(stderr, "child: %s\n", shmkit_last_error());
                return 3;
            }
        }
        if (rand() % 50 == 0) sleep_ms(1 + rand() % 5);
    }
    shmkit_sender_close(tx[0]);
    shmkit_sender_close(tx[1]);
    return 0;
}

/* Child: connects a sender, says so on stdout and sleeps until killed. */
static int child_hold(const char *name) {
    shmkit_sender *tx;
    if (shmkit_sender_connect(name, NULL, &tx) != SHMKIT_OK) return 2;
    printf("connected\n");
    fflush(stdout);
    sleep(60);
    return 1;
}

static pid_t spawn(char *const argv[], int *out_fd) {
    int p[2];
    pid_t pid;
    if (out_fd && pipe(p) != 0) return -1;
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        if (out_fd) {
            dup2(p[1], 1);
            close(p[0]);
            close(p[1]);
        }
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    if (out_fd) {
        close(p[1]);
        *out_fd = p[0];
    }
    return pid;
}

static void epoll_two_receivers(void) {
    const char *names2[2] = {unique("epoll-a"), unique("epoll-b")};
    shmkit_receiver *rx[2];
    shmkit_descriptor fd[2];
    int next[2] = {0, 0}, done[2] = {0, 0}, in_order = 1, ticks = 0, wakeups = 0;
    int ep, tfd, status = 0;
    struct itimerspec every = {{0, 20 * 1000000L}, {0, 20 * 1000000L}};
    char *argv[] = {"poll_test", "send", (char *)names2[0], (char *)names2[1], NULL};
    pid_t child;

    begin("epoll on two receivers across processes", 120);
    for (int c = 0; c < 2; c++) {
        OK(shmkit_receiver_connect(names2[c], NULL, &rx[c]));
        OK(shmkit_receiver_pollable(rx[c], &fd[c]));
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    timerfd_settime(tfd, 0, &every, NULL);
    for (int c = 0; c < 3; c++) {
        /* Edge-triggered on the receivers, as their contract is. */
        struct epoll_event ev = {.events = EPOLLIN | (c < 2 ? EPOLLET : 0), .data.u32 = (uint32_t)c};
        CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, c < 2 ? (int)fd[c] : tfd, &ev) == 0);
    }
    /* Arm both before the sender starts. */
    for (int c = 0; c < 2; c++) {
        char buf[32];
        EXPECT(recv_text(rx[c], buf, sizeof buf), SHMKIT_ERR_WOULD_BLOCK);
    }
    child = spawn(argv, NULL);
    CHECK(child > 0);
    while (!(done[0] && done[1]) && ticks < 3000) { /* 3000 ticks of 20 ms: 60 s */
        struct epoll_event evs[3];
        int n = epoll_wait(ep, evs, 3, 5000);
        CHECK(n > 0);
        if (n <= 0) break;
        for (int i = 0; i < n; i++) {
            uint32_t c = evs[i].data.u32;
            if (c == 2) {
                uint64_t expirations;
                if (read(tfd, &expirations, sizeof expirations) == sizeof expirations) ticks += (int)expirations;
                continue;
            }
            wakeups++;
            for (;;) { /* until WOULD_BLOCK: the edge-triggered contract */
                char buf[32], want[32];
                shmkit_status s = recv_text(rx[c], buf, sizeof buf);
                if (s == SHMKIT_ERR_WOULD_BLOCK) break;
                if (s == SHMKIT_ERR_DISCONNECTED) {
                    done[c] = 1;
                    break;
                }
                if (s != SHMKIT_OK) {
                    failed++;
                    printf("FAIL epoll: channel %u: %s (%s)\n", c, shmkit_status_name(s), shmkit_last_error());
                    done[c] = 1;
                    break;
                }
                snprintf(want, sizeof want, "%u:%d", c, next[c]);
                if (strcmp(buf, want) != 0 && in_order) {
                    in_order = 0;
                    printf("FAIL epoll: channel %u: got '%s', expected '%s'\n", c, buf, want);
                }
                next[c]++;
            }
        }
    }
    waitpid(child, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(in_order);
    CHECK(done[0] && done[1]);
    CHECK(next[0] == PER_CHANNEL && next[1] == PER_CHANNEL);
    if (next[0] != PER_CHANNEL || next[1] != PER_CHANNEL)
        printf("     received %d and %d of %d, %d wake-ups, %d timer ticks\n", next[0], next[1], PER_CHANNEL, wakeups,
               ticks);
    CHECK(ticks > 0); /* the timer ran in the same loop */
    for (int c = 0; c < 2; c++) {
        OK(shmkit_receiver_close(rx[c]));
        OK(shmkit_pollable_close(fd[c]));
    }
    close(tfd);
    close(ep);
}

static void killed_sender(void) {
    const char *name = unique("killed");
    shmkit_receiver *rx;
    shmkit_descriptor fd;
    char line[32] = {0}, buf[32];
    char *argv[] = {"poll_test", "hold", (char *)name, NULL};
    int out = -1, status;
    pid_t child;

    begin("a sender SIGKILLed while the receiver's descriptor is armed", 60);
    OK(shmkit_receiver_connect(name, NULL, &rx));
    OK(shmkit_receiver_pollable(rx, &fd));
    child = spawn(argv, &out);
    CHECK(child > 0 && read(out, line, sizeof line - 1) > 0 && strncmp(line, "connected", 9) == 0);
    EXPECT(recv_text(rx, buf, sizeof buf), SHMKIT_ERR_WOULD_BLOCK);
    CHECK(!readable(fd, 0));
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
    /* A killed process cannot remove its liveness token. */
    snprintf(buf, sizeof buf, "shmkit-live.%d.", (int)child);
    {
        char cmd[96];
        snprintf(cmd, sizeof cmd, "rm -f /dev/shm/%s*", buf);
        (void)!system(cmd);
    }
    CHECK(readable(fd, 10000));
    {
        shmkit_status s;
        /* A wake-up may be spurious: read until it says something. */
        for (int i = 0; i < 100 && (s = recv_text(rx, buf, sizeof buf)) == SHMKIT_ERR_WOULD_BLOCK; i++)
            CHECK(readable(fd, 10000));
        EXPECT(s, SHMKIT_ERR_DISCONNECTED);
    }
    close(out);
    OK(shmkit_receiver_close(rx));
    OK(shmkit_pollable_close(fd));
}

/* ---- close wakes the descriptor and the callbacks -------------------------- */

struct counter {
    int calls;
    pthread_t thread;
};

static void count_call(void *user) {
    struct counter *c = user;
    c->thread = pthread_self();
    __atomic_add_fetch(&c->calls, 1, __ATOMIC_SEQ_CST);
}

static int calls(struct counter *c) { return __atomic_load_n(&c->calls, __ATOMIC_SEQ_CST); }

/* The callbacks run on shmkit's callback thread: wait (bounded) for `n` calls. */
static int calls_reach(struct counter *c, int n) {
    for (int i = 0; i < 500 && calls(c) < n; i++) sleep_ms(10);
    return calls(c);
}

static void *close_later(void *rx) {
    sleep_ms(200);
    shmkit_receiver_close(rx);
    return NULL;
}

static void close_wakes(void) {
    const char *name = unique("close");
    shmkit_receiver *rx;
    shmkit_descriptor fd;
    struct counter one = {0}, two = {0};
    char buf[32];
    pthread_t t;

    begin("close wakes the descriptor", 30);
    OK(shmkit_receiver_connect(name, NULL, &rx));
    OK(shmkit_receiver_pollable(rx, &fd));
    EXPECT(recv_text(rx, buf, sizeof buf), SHMKIT_ERR_WOULD_BLOCK);
    OK(shmkit_receiver_on_ready(rx, count_call, &one));
    OK(shmkit_receiver_on_ready(rx, count_call, &two));
    pthread_create(&t, NULL, close_later, rx);
    CHECK(readable(fd, 10000));
    pthread_join(t, NULL);
    CHECK(calls_reach(&one, 1) == 1 && calls_reach(&two, 1) == 1);
    EXPECT(recv_text(rx, buf, sizeof buf), SHMKIT_ERR_BAD_HANDLE);
    CHECK(readable(fd, 0)); /* for good */
    OK(shmkit_pollable_close(fd));
    /* The receiver role is free. */
    OK(shmkit_receiver_connect(name, NULL, &rx));
    OK(shmkit_receiver_close(rx));
}

/* ---- on_ready ----------------------------------------------------------------- */

static void callbacks(void) {
    const char *name = unique("callbacks");
    shmkit_receiver *rx;
    shmkit_sender *tx;
    struct counter c = {0}, now = {0}, at_close = {0};
    char buf[32];

    begin("on_ready callbacks", 30);
    OK(shmkit_receiver_connect(name, NULL, &rx));
    OK(shmkit_sender_connect(name, NULL, &tx));
    OK(shmkit_receiver_on_ready(rx, count_call, &c));
    EXPECT(recv_text(rx, buf, sizeof buf), SHMKIT_ERR_WOULD_BLOCK);
    CHECK(calls(&c) == 0);
    OK(send_text(tx, "x"));
    CHECK(calls_reach(&c, 1) == 1);
    CHECK(!pthread_equal(c.thread, pthread_self())); /* shmkit's callback thread */
    /* Ready and not cleared since: a registration runs at once, here. */
    OK(shmkit_receiver_on_ready(rx, count_call, &now));
    CHECK(calls(&now) == 1 && pthread_equal(now.thread, pthread_self()));
    /* One-shot: another message does not call the first callback again. */
    OK(recv_text(rx, buf, sizeof buf));
    EXPECT(recv_text(rx, buf, sizeof buf), SHMKIT_ERR_WOULD_BLOCK);
    OK(send_text(tx, "y"));
    sleep_ms(100);
    CHECK(calls(&c) == 1 && calls(&now) == 1);
    OK(recv_text(rx, buf, sizeof buf));
    EXPECT(recv_text(rx, buf, sizeof buf), SHMKIT_ERR_WOULD_BLOCK);
    OK(shmkit_receiver_on_ready(rx, count_call, &at_close));
    OK(shmkit_receiver_close(rx));
    CHECK(calls_reach(&at_close, 1) == 1);
    sleep_ms(100); /* and only once */
    CHECK(calls(&at_close) == 1 && calls(&c) == 1 && calls(&now) == 1);
    OK(shmkit_sender_close(tx));
}

/* ---- every kind ------------------------------------------------------------ */

struct call_back {
    shmkit_rpc_server *server;
    int ok;
};

static void kinds(void) {
    uint8_t buf[256];
    size_t len;
    shmkit_descriptor fd;

    begin("sender: room", 30);
    {
        const char *name = unique("room");
        shmkit_channel_options o = {.capacity = 4096};
        shmkit_receiver *rx;
        shmkit_sender *tx;
        static const uint8_t block[512];
        int sent = 0;
        shmkit_status s;
        OK(shmkit_receiver_connect(name, &o, &rx));
        OK(shmkit_sender_connect(name, &o, &tx));
        OK(shmkit_sender_pollable(tx, &fd));
        while ((s = shmkit_sender_send(tx, block, sizeof block, 0)) == SHMKIT_OK) sent++;
        EXPECT(s, SHMKIT_ERR_WOULD_BLOCK);
        CHECK(sent > 0 && !readable(fd, 0));
        {
            uint8_t big[512];
            for (int i = 0; i < 2; i++) OK(shmkit_receiver_recv(rx, big, sizeof big, &len, 1000));
        }
        CHECK(readable(fd, 5000));
        OK(shmkit_sender_send(tx, block, sizeof block, 0));
        OK(shmkit_pollable_close(fd));
        OK(shmkit_sender_close(tx));
        OK(shmkit_receiver_close(rx));
    }

    begin("subscriber", 30);
    {
        const char *name = unique("sub");
        shmkit_subscriber *sub;
        shmkit_publisher *pub;
        uint64_t missed = 0;
        OK(shmkit_subscriber_connect(name, NULL, &sub));
        OK(shmkit_publisher_connect(name, NULL, &pub));
        OK(shmkit_subscriber_pollable(sub, &fd));
        EXPECT(shmkit_subscriber_recv(sub, buf, sizeof buf, &len, 0, &missed), SHMKIT_ERR_WOULD_BLOCK);
        CHECK(!readable(fd, 0));
        OK(shmkit_publisher_publish(pub, (const uint8_t *)"news", 4));
        CHECK(readable(fd, 5000));
        OK(shmkit_subscriber_recv(sub, buf, sizeof buf, &len, 0, &missed));
        CHECK(len == 4 && memcmp(buf, "news", 4) == 0);
        EXPECT(shmkit_subscriber_recv(sub, buf, sizeof buf, &len, 0, &missed), SHMKIT_ERR_WOULD_BLOCK);
        OK(shmkit_pollable_close(fd));
        OK(shmkit_publisher_close(pub));
        OK(shmkit_subscriber_close(sub));
    }

    begin("RPC server and client", 30);
    {
        const char *name = unique("rpc");
        shmkit_rpc_server *server;
        shmkit_rpc_client *client;
        shmkit_descriptor cfd;
        OK(shmkit_rpc_server_bind(name, &server));
        OK(shmkit_rpc_client_connect(name, &client));
        OK(shmkit_rpc_server_pollable(server, &fd));
        OK(shmkit_rpc_client_pollable(client, &cfd));
        EXPECT(shmkit_rpc_client_finish_call(client, buf, sizeof buf, &len, 0), SHMKIT_ERR_INVALID_ARGUMENT);
        EXPECT(shmkit_rpc_server_recv(server, buf, sizeof buf, &len, 0), SHMKIT_ERR_WOULD_BLOCK);
        OK(shmkit_rpc_client_start_call(client, (const uint8_t *)"ping", 4, 1000));
        EXPECT(shmkit_rpc_client_finish_call(client, buf, sizeof buf, &len, 0), SHMKIT_ERR_WOULD_BLOCK);
        CHECK(readable(fd, 5000));
        OK(shmkit_rpc_server_recv(server, buf, sizeof buf, &len, 0));
        CHECK(len == 4 && memcmp(buf, "ping", 4) == 0);
        CHECK(!readable(cfd, 0));
        OK(shmkit_rpc_server_reply(server, (const uint8_t *)"a pong longer than four", 23));
        CHECK(readable(cfd, 5000));
        len = 0;
        EXPECT(shmkit_rpc_client_finish_call(client, buf, 4, &len, 0), SHMKIT_ERR_BUFFER_TOO_SMALL);
        CHECK(len == 23);
        OK(shmkit_rpc_client_last_reply(client, buf, sizeof buf, &len));
        CHECK(len == 23 && memcmp(buf, "a pong longer than four", 23) == 0);
        /* The call is finished. */
        EXPECT(shmkit_rpc_client_finish_call(client, buf, sizeof buf, &len, 0), SHMKIT_ERR_INVALID_ARGUMENT);
        /* A pending call whose server goes: DISCONNECTED. */
        OK(shmkit_rpc_client_start_call(client, (const uint8_t *)"again", 5, 1000));
        EXPECT(shmkit_rpc_client_finish_call(client, buf, sizeof buf, &len, 0), SHMKIT_ERR_WOULD_BLOCK);
        OK(shmkit_rpc_server_close(server));
        CHECK(readable(cfd, 10000));
        {
            shmkit_status s;
            for (int i = 0; i < 100 && (s = shmkit_rpc_client_finish_call(client, buf, sizeof buf, &len, 0)) ==
                                           SHMKIT_ERR_WOULD_BLOCK;
                 i++)
                CHECK(readable(cfd, 10000));
            EXPECT(s, SHMKIT_ERR_DISCONNECTED);
        }
        OK(shmkit_pollable_close(fd));
        OK(shmkit_pollable_close(cfd));
        OK(shmkit_rpc_client_close(client));
    }

    begin("mutex", 30);
    {
        const char *name = unique("mutex");
        shmkit_mutex *a, *b;
        OK(shmkit_mutex_create(name, &a));
        OK(shmkit_mutex_open(name, &b));
        OK(shmkit_mutex_pollable(b, &fd));
        OK(shmkit_mutex_lock(a, 1000));
        EXPECT(shmkit_mutex_try_lock(b), SHMKIT_ERR_WOULD_BLOCK);
        CHECK(!readable(fd, 0));
        OK(shmkit_mutex_unlock(a));
        CHECK(readable(fd, 5000));
        OK(shmkit_mutex_try_lock(b));
        EXPECT(shmkit_mutex_try_lock(a), SHMKIT_ERR_WOULD_BLOCK);
        OK(shmkit_mutex_unlock(b));
        /* timeout 0 polls too */
        OK(shmkit_mutex_lock(a, 1000));
        EXPECT(shmkit_mutex_lock(b, 0), SHMKIT_ERR_WOULD_BLOCK);
        OK(shmkit_mutex_close(a)); /* unlocks */
        CHECK(readable(fd, 5000));
        OK(shmkit_mutex_lock(b, 0));
        OK(shmkit_mutex_unlock(b));
        OK(shmkit_pollable_close(fd));
        OK(shmkit_mutex_close(b));
    }

    begin("semaphore", 30);
    {
        const char *name = unique("sem");
        shmkit_semaphore *a, *b;
        uint32_t count = 9;
        OK(shmkit_semaphore_create(name, 0, 10, &a));
        OK(shmkit_semaphore_open(name, &b));
        OK(shmkit_semaphore_pollable(b, &fd));
        EXPECT(shmkit_semaphore_wait(b, 0), SHMKIT_ERR_WOULD_BLOCK);
        CHECK(!readable(fd, 0));
        OK(shmkit_semaphore_release(a, 1, NULL));
        CHECK(readable(fd, 5000));
        /* The descriptor took nothing: the unit is there until a wait takes it. */
        OK(shmkit_semaphore_count(a, &count));
        CHECK(count == 1);
        OK(shmkit_semaphore_wait(b, 0));
        OK(shmkit_semaphore_count(a, &count));
        CHECK(count == 0);
        EXPECT(shmkit_semaphore_wait(b, 0), SHMKIT_ERR_WOULD_BLOCK);
        OK(shmkit_pollable_close(fd));
        OK(shmkit_semaphore_close(b));
        OK(shmkit_semaphore_close(a));
    }

    begin("event", 30);
    {
        const char *name = unique("event");
        shmkit_event *a, *b;
        bool set = true;
        OK(shmkit_event_create(name, SHMKIT_EVENT_AUTO_RESET, &a));
        OK(shmkit_event_open(name, &b));
        OK(shmkit_event_pollable(b, &fd));
        EXPECT(shmkit_event_wait(b, 0), SHMKIT_ERR_WOULD_BLOCK);
        CHECK(!readable(fd, 0));
        OK(shmkit_event_set(a));
        CHECK(readable(fd, 5000));
        OK(shmkit_event_is_set(a, &set));
        CHECK(set); /* an auto-reset signal is taken by the wait, not the descriptor */
        OK(shmkit_event_wait(b, 0));
        OK(shmkit_event_is_set(a, &set));
        CHECK(!set);
        EXPECT(shmkit_event_wait(b, 0), SHMKIT_ERR_WOULD_BLOCK);
        OK(shmkit_pollable_close(fd));
        OK(shmkit_event_close(b));
        OK(shmkit_event_close(a));
    }
}

/* ---- a try while another thread's call holds the handle --------------------- */

static void *blocking_recv(void *rx) {
    static uint8_t buf[64];
    size_t len;
    return (void *)(intptr_t)shmkit_receiver_recv(rx, buf, sizeof buf, &len, 10000);
}

static void contended(void) {
    const char *name = unique("contended");
    shmkit_receiver *rx;
    shmkit_sender *tx;
    shmkit_descriptor fd;
    char buf[32];
    pthread_t t;
    void *status;

    begin("a try while another thread's call holds the handle", 30);
    OK(shmkit_receiver_connect(name, NULL, &rx));
    OK(shmkit_sender_connect(name, NULL, &tx));
    OK(shmkit_receiver_pollable(rx, &fd));
    pthread_create(&t, NULL, blocking_recv, rx);
    sleep_ms(200); /* the thread is in its receive */
    /* The handle is in use: WOULD_BLOCK, and the descriptor is armed anyway. */
    EXPECT(recv_text(rx, buf, sizeof buf), SHMKIT_ERR_WOULD_BLOCK);
    CHECK(!readable(fd, 0));
    OK(send_text(tx, "taken by the thread"));
    pthread_join(t, &status);
    CHECK((shmkit_status)(intptr_t)status == SHMKIT_OK);
    /* The thread's call ended: the poller is told to try again. */
    CHECK(readable(fd, 5000));
    EXPECT(recv_text(rx, buf, sizeof buf), SHMKIT_ERR_WOULD_BLOCK);
    OK(shmkit_pollable_close(fd));
    OK(shmkit_sender_close(tx));
    OK(shmkit_receiver_close(rx));
}

/* ---- the wait set ------------------------------------------------------------- */

static int has(const size_t *ready, size_t n, size_t index) {
    for (size_t i = 0; i < n; i++)
        if (ready[i] == index) return 1;
    return 0;
}

struct closer {
    int delay_ms;
    shmkit_receiver *rx;
    shmkit_waitset *set;
};

static void *close_member_or_set(void *p) {
    struct closer *c = p;
    sleep_ms(c->delay_ms);
    if (c->rx) shmkit_receiver_close(c->rx);
    if (c->set) shmkit_waitset_close(c->set);
    return NULL;
}

static void waitset_kinds(void) {
    const char *qn = unique("ws-queue"), *bn = unique("ws-bcast"), *rn = unique("ws-rpc");
    const char *mn = unique("ws-mutex"), *sn = unique("ws-sem"), *en = unique("ws-event");
    shmkit_waitset *set;
    shmkit_receiver *rx;
    shmkit_sender *tx;
    shmkit_subscriber *sub;
    shmkit_publisher *pub;
    shmkit_rpc_server *server;
    shmkit_rpc_client *client;
    shmkit_mutex *m, *holder;
    shmkit_semaphore *sem;
    shmkit_event *ev;
    size_t ready[16], n = 99, i_rx, i_tx, i_sub, i_srv, i_m, i_sem, i_ev, i_pipe, i_sub_again;
    uint8_t buf[64];
    size_t len;
    int p[2];
    struct closer closer = {0};
    pthread_t t;

    begin("wait set: every kind", 60);
    shmkit_channel_options small = {.capacity = 4096};
    OK(shmkit_receiver_connect(qn, &small, &rx));
    OK(shmkit_sender_connect(qn, &small, &tx));
    OK(shmkit_subscriber_connect(bn, NULL, &sub));
    OK(shmkit_publisher_connect(bn, NULL, &pub));
    OK(shmkit_rpc_server_bind(rn, &server));
    OK(shmkit_rpc_client_connect(rn, &client));
    OK(shmkit_mutex_create(mn, &holder));
    OK(shmkit_mutex_open(mn, &m));
    OK(shmkit_semaphore_create(sn, 0, 10, &sem));
    OK(shmkit_event_create(en, 0, &ev));
    CHECK(pipe(p) == 0);
    OK(shmkit_mutex_lock(holder, 1000));

    OK(shmkit_waitset_new(&set));
    EXPECT(shmkit_waitset_wait(set, 0, ready, 16, &n), SHMKIT_ERR_WOULD_BLOCK); /* empty */
    CHECK(n == 0);
    OK(shmkit_waitset_add_receiver(set, rx, &i_rx));
    OK(shmkit_waitset_add_subscriber(set, sub, &i_sub));
    OK(shmkit_waitset_add_rpc_server(set, server, &i_srv));
    OK(shmkit_waitset_add_mutex(set, m, &i_m));
    OK(shmkit_waitset_add_semaphore(set, sem, &i_sem));
    OK(shmkit_waitset_add_event(set, ev, &i_ev));
    OK(shmkit_waitset_add_descriptor(set, p[0], &i_pipe));
    CHECK(i_rx == 0 && i_sub == 1 && i_srv == 2 && i_m == 3 && i_sem == 4 && i_ev == 5 && i_pipe == 6);
    EXPECT(shmkit_waitset_add_subscriber(set, sub, &i_sub_again), SHMKIT_ERR_INVALID_ARGUMENT);
    EXPECT(shmkit_waitset_add_descriptor(set, -1, NULL), SHMKIT_ERR_INVALID_ARGUMENT);
    EXPECT(shmkit_waitset_add_receiver(set, (shmkit_receiver *)sub, NULL), SHMKIT_ERR_BAD_HANDLE);
    EXPECT(shmkit_waitset_wait(set, 0, NULL, 1, &n), SHMKIT_ERR_NULL_POINTER);

    /* Nothing ready: 0 looks once, a positive timeout passes. */
    EXPECT(shmkit_waitset_wait(set, 0, ready, 16, &n), SHMKIT_ERR_WOULD_BLOCK);
    EXPECT(shmkit_waitset_wait(set, 30, ready, 16, &n), SHMKIT_ERR_TIMEOUT);
    CHECK(n == 0);

    /* Each kind, one at a time; level-triggered: reported until taken. */
    OK(send_text(tx, "q"));
    OK(shmkit_waitset_wait(set, 5000, ready, 16, &n));
    CHECK(n == 1 && ready[0] == i_rx);
    OK(shmkit_waitset_wait(set, 5000, ready, 16, &n));
    CHECK(n == 1 && ready[0] == i_rx);
    OK(shmkit_receiver_recv(rx, buf, sizeof buf, &len, 0));
    EXPECT(shmkit_waitset_wait(set, 0, ready, 16, &n), SHMKIT_ERR_WOULD_BLOCK);

    OK(shmkit_publisher_publish(pub, (const uint8_t *)"b", 1));
    OK(shmkit_waitset_wait(set, 5000, ready, 16, &n));
    CHECK(n == 1 && ready[0] == i_sub);
    OK(shmkit_subscriber_recv(sub, buf, sizeof buf, &len, 0, NULL));

    OK(shmkit_rpc_client_start_call(client, (const uint8_t *)"r", 1, 1000));
    OK(shmkit_waitset_wait(set, 5000, ready, 16, &n));
    CHECK(n == 1 && ready[0] == i_srv);
    OK(shmkit_rpc_server_recv(server, buf, sizeof buf, &len, 0));
    OK(shmkit_rpc_server_reply(server, (const uint8_t *)"R", 1));

    OK(shmkit_mutex_unlock(holder));
    OK(shmkit_waitset_wait(set, 5000, ready, 16, &n));
    CHECK(n == 1 && ready[0] == i_m);
    OK(shmkit_mutex_try_lock(m));
    OK(shmkit_mutex_unlock(m));
    OK(shmkit_mutex_lock(holder, 1000));

    OK(shmkit_semaphore_release(sem, 1, NULL));
    OK(shmkit_event_set(ev));
    CHECK(write(p[1], "x", 1) == 1);
    OK(shmkit_waitset_wait(set, 5000, ready, 16, &n));
    /* The three may come in one wait or more: wait until all were seen. */
    {
        int seen_sem = 0, seen_ev = 0, seen_pipe = 0;
        for (int k = 0; k < 50 && !(seen_sem && seen_ev && seen_pipe); k++) {
            seen_sem |= has(ready, n, i_sem);
            seen_ev |= has(ready, n, i_ev);
            seen_pipe |= has(ready, n, i_pipe);
            if (!(seen_sem && seen_ev && seen_pipe)) shmkit_waitset_wait(set, 5000, ready, 16, &n);
        }
        CHECK(seen_sem && seen_ev && seen_pipe);
    }
    /* Fewer slots than ready members: *count says how many. */
    OK(shmkit_waitset_wait(set, 5000, ready, 1, &n));
    CHECK(n == 3 && ready[0] == i_sem);
    OK(shmkit_semaphore_wait(sem, 0));
    OK(shmkit_event_reset(ev));
    CHECK(read(p[0], buf, 1) == 1);
    EXPECT(shmkit_waitset_wait(set, 0, ready, 16, &n), SHMKIT_ERR_WOULD_BLOCK);

    /* A message kept by the layer (too long for the buffer given) counts as ready. */
    OK(shmkit_sender_send(tx, (const uint8_t *)"a longer message", 16, 1000));
    EXPECT(shmkit_receiver_recv(rx, buf, 4, &len, 0), SHMKIT_ERR_BUFFER_TOO_SMALL);
    OK(shmkit_waitset_wait(set, 5000, ready, 16, &n));
    CHECK(n >= 1 && ready[0] == i_rx);
    OK(shmkit_receiver_recv(rx, buf, sizeof buf, &len, 0));

    /* A sender: ready while its ring has room. */
    OK(shmkit_waitset_add_sender(set, tx, &i_tx));
    OK(shmkit_waitset_wait(set, 5000, ready, 16, &n));
    CHECK(n == 1 && ready[0] == i_tx);
    OK(shmkit_waitset_remove(set, i_tx));
    EXPECT(shmkit_waitset_remove(set, i_tx), SHMKIT_ERR_INVALID_ARGUMENT);
    EXPECT(shmkit_waitset_wait(set, 0, ready, 16, &n), SHMKIT_ERR_WOULD_BLOCK);

    /* A member closed from another thread ends a wait without a timeout. */
    closer.delay_ms = 200;
    closer.rx = rx;
    pthread_create(&t, NULL, close_member_or_set, &closer);
    OK(shmkit_waitset_wait(set, SHMKIT_FOREVER, ready, 16, &n));
    pthread_join(t, NULL);
    CHECK(n == 1 && ready[0] == i_rx);
    EXPECT(shmkit_receiver_recv(rx, buf, sizeof buf, &len, 0), SHMKIT_ERR_BAD_HANDLE);
    OK(shmkit_receiver_connect(qn, NULL, &rx)); /* the role was free */
    OK(shmkit_waitset_remove(set, i_rx));

    /* The set closed from another thread: CLOSED. */
    closer.rx = NULL;
    closer.set = set;
    pthread_create(&t, NULL, close_member_or_set, &closer);
    EXPECT(shmkit_waitset_wait(set, SHMKIT_FOREVER, ready, 16, &n), SHMKIT_ERR_CLOSED);
    pthread_join(t, NULL);
    EXPECT(shmkit_waitset_wait(set, 0, ready, 16, &n), SHMKIT_ERR_BAD_HANDLE);
    /* The members are not closed. */
    OK(shmkit_event_set(ev));
    OK(shmkit_event_wait(ev, 0));

    close(p[0]);
    close(p[1]);
    shmkit_receiver_close(rx);
    shmkit_sender_close(tx);
    shmkit_publisher_close(pub);
    shmkit_subscriber_close(sub);
    shmkit_rpc_client_close(client);
    shmkit_rpc_server_close(server);
    shmkit_mutex_close(holder);
    shmkit_mutex_close(m);
    shmkit_semaphore_close(sem);
    shmkit_event_close(ev);
}

static void waitset_across_processes(void) {
    const char *names2[2] = {unique("ws-a"), unique("ws-b")};
    shmkit_receiver *rx[2];
    shmkit_waitset *set;
    int next[2] = {0, 0}, done[2] = {0, 0}, in_order = 1, waits = 0, status = 0;
    char *argv[] = {"poll_test", "send", (char *)names2[0], (char *)names2[1], NULL};
    pid_t child;

    begin("wait set: two receivers fed by another process", 120);
    OK(shmkit_waitset_new(&set));
    for (int c = 0; c < 2; c++) {
        OK(shmkit_receiver_connect(names2[c], NULL, &rx[c]));
        OK(shmkit_waitset_add_receiver(set, rx[c], NULL));
    }
    child = spawn(argv, NULL);
    while (!(done[0] && done[1])) {
        size_t ready[2], n = 0;
        shmkit_status s = shmkit_waitset_wait(set, 30000, ready, 2, &n);
        waits++;
        if (s != SHMKIT_OK) {
            EXPECT(s, SHMKIT_OK);
            break;
        }
        for (size_t k = 0; k < n && k < 2; k++) {
            size_t c = ready[k];
            for (;;) { /* level-triggered: one would do, all is fine too */
                char buf[32], want[32];
                s = recv_text(rx[c], buf, sizeof buf);
                if (s == SHMKIT_ERR_WOULD_BLOCK) break;
                if (s == SHMKIT_ERR_DISCONNECTED) {
                    done[c] = 1;
                    OK(shmkit_waitset_remove(set, c));
                    break;
                }
                if (s != SHMKIT_OK) {
                    EXPECT(s, SHMKIT_OK);
                    done[c] = 1;
                    break;
                }
                snprintf(want, sizeof want, "%zu:%d", c, next[c]);
                if (strcmp(buf, want) != 0 && in_order) {
                    in_order = 0;
                    printf("FAIL wait set: channel %zu: got '%s', expected '%s'\n", c, buf, want);
                }
                next[c]++;
            }
        }
    }
    waitpid(child, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(in_order && next[0] == PER_CHANNEL && next[1] == PER_CHANNEL);
    CHECK(waits > 1);
    OK(shmkit_waitset_close(set));
    for (int c = 0; c < 2; c++) OK(shmkit_receiver_close(rx[c]));
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "send") == 0) return child_send(argv[2], argv[3]);
    if (argc == 3 && strcmp(argv[1], "hold") == 0) return child_hold(argv[2]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGALRM, on_alarm);
    rearm();
    if (!(argc == 2 && strcmp(argv[1], "basic") == 0)) {
        epoll_two_receivers();
        killed_sender();
        close_wakes();
        callbacks();
        kinds();
        contended();
        waitset_kinds();
        waitset_across_processes();
    }
    alarm(0);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
