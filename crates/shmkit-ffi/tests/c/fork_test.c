/* fork without exec, from C (issue 22, item 2): a process that holds a mutex
 * and is a channel's sender forks a child that never calls shmkit, and is then
 * SIGKILLed. The child's copy of its parent's descriptors must not keep the
 * dead parent looking alive: the next locker gets SHMKIT_ERR_OWNER_DIED and the
 * receiver SHMKIT_ERR_DISCONNECTED while the child sleeps on.
 *
 * Prints "N passed, N failed"; exits non-zero if anything failed. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmkit.h"

static int passed, failed;

static void check(int ok, const char *what) {
    if (ok) {
        passed++;
        printf("ok   %s\n", what);
    } else {
        failed++;
        printf("FAIL %s: %s\n", what, shmkit_last_error());
    }
}

/* The process that holds the mutex, sends, forks a sleeper and waits to be
 * killed. Tells the test the sleeper's pid through `out`. */
static void holder(const char *mutex_name, const char *channel, int out) {
    shmkit_mutex *m = NULL;
    shmkit_sender *tx = NULL;
    if (shmkit_mutex_open(mutex_name, &m) != SHMKIT_OK ||
        shmkit_mutex_lock(m, SHMKIT_FOREVER) != SHMKIT_OK ||
        shmkit_sender_connect(channel, NULL, &tx) != SHMKIT_OK ||
        shmkit_sender_send(tx, (const uint8_t *)"hi", 2, SHMKIT_FOREVER) != SHMKIT_OK) {
        fprintf(stderr, "holder: %s\n", shmkit_last_error());
        _exit(1);
    }
    pid_t sleeper = fork();
    if (sleeper == 0) {
        /* A daemon or worker that never uses shmkit. */
        for (;;) pause();
    }
    if (write(out, &sleeper, sizeof sleeper) != (ssize_t)sizeof sleeper) _exit(1);
    for (;;) pause();
}

int main(void) {
    /* The sleeper outlives its parent: adopt it, so that it can be reaped
     * (its copies of the segments' descriptors are gone only once it is). */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    char mutex_name[64], channel[64];
    snprintf(mutex_name, sizeof mutex_name, "c-fork-mutex-%d", (int)getpid());
    snprintf(channel, sizeof channel, "c-fork-chan-%d", (int)getpid());

    shmkit_mutex *m = NULL;
    shmkit_receiver *rx = NULL;
    check(shmkit_mutex_create(mutex_name, &m) == SHMKIT_OK, "create the mutex");
    check(shmkit_receiver_connect(channel, NULL, &rx) == SHMKIT_OK, "open the receiver");
    if (failed) return 1;

    int fds[2];
    if (pipe(fds) != 0) return 1;
    pid_t holder_pid = fork();
    if (holder_pid == 0) {
        close(fds[0]);
        holder(mutex_name, channel, fds[1]);
    }
    close(fds[1]);
    pid_t sleeper = -1;
    check(read(fds[0], &sleeper, sizeof sleeper) == (ssize_t)sizeof sleeper && sleeper > 0,
          "the holder forked a sleeper");

    uint8_t buf[16];
    size_t len = 0;
    check(shmkit_receiver_recv(rx, buf, sizeof buf, &len, 5000) == SHMKIT_OK && len == 2 &&
              memcmp(buf, "hi", 2) == 0,
          "the holder's message arrives");

    kill(holder_pid, SIGKILL);
    waitpid(holder_pid, NULL, 0);
    check(sleeper > 0 && kill(sleeper, 0) == 0, "the sleeper lives on after its parent's death");

    /* 5 s: far above the 50 ms in which a death is noticed; only a bound. */
    shmkit_status s = shmkit_mutex_lock(m, 5000);
    check(s == SHMKIT_ERR_OWNER_DIED, "the next locker gets OWNER_DIED");
    if (s == SHMKIT_ERR_OWNER_DIED || s == SHMKIT_OK) {
        shmkit_mutex_mark_consistent(m);
        shmkit_mutex_unlock(m);
    }
    s = shmkit_receiver_recv(rx, buf, sizeof buf, &len, 5000);
    check(s == SHMKIT_ERR_DISCONNECTED, "the receiver gets DISCONNECTED");

    if (sleeper > 0) {
        kill(sleeper, SIGKILL);
        waitpid(sleeper, NULL, 0);
    }
    shmkit_receiver_close(rx);
    shmkit_mutex_close(m);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
