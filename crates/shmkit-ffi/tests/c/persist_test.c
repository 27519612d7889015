/* An owner's death outlives its process when the mutex lives in a persistent
 * segment (issue 23, item 2). A holder process creates a SHMKIT_PERSISTENT
 * segment with a mutex, a semaphore and an event inside it, locks the mutex,
 * half-updates the data and is SIGKILLed. A process started afterwards (this
 * program exec'd again: nobody else has anything open) opens the segment and
 * the objects in it: the lock is SHMKIT_ERR_OWNER_DIED with the half-written
 * data in hand, and the semaphore's count and the event's state are as the
 * holder left them. The named (temporary) mutex the holder also held is gone
 * with it (SHMKIT_ERR_NOT_FOUND): the rule the docs state.
 *
 * Usage: persist_test           (runs everything, removes what it made)
 *        persist_test holder NAME FD
 *        persist_test later NAME
 * Prints "N passed, N failed"; exits non-zero if anything failed. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmkit.h"

/* The segment's layout: the lock first, then a semaphore and an event, then
 * the data the lock guards. */
#define MUTEX_AT 0
#define SEM_AT (SHMKIT_SYNC_SIZE_IN_SEGMENT)
#define EVENT_AT (2 * SHMKIT_SYNC_SIZE_IN_SEGMENT)
#define DATA_AT (3 * SHMKIT_SYNC_SIZE_IN_SEGMENT)
#define SEG_SIZE 4096

static int passed, failed;

static void check(int ok, const char *what) {
    if (ok) {
        passed++;
        printf("ok   %s\n", what);
    } else {
        failed++;
        printf("FAIL %s: %s\n", what, shmkit_last_error());
    }
    fflush(stdout);
}

static void die(const char *who) {
    fprintf(stderr, "%s: %s\n", who, shmkit_last_error());
    _exit(1);
}

static void named_mutex(char *out, size_t n, const char *seg) {
    snprintf(out, n, "%s-named", seg);
}

static void persistent_mutex(char *out, size_t n, const char *seg) {
    snprintf(out, n, "%s-kept", seg);
}

/* Makes the segment and its objects, locks, half-writes, says so on `fd` and
 * waits to be killed. */
static int holder(const char *seg, int fd) {
    shmkit_shm *shm = NULL;
    shmkit_mutex *m = NULL, *named = NULL, *kept = NULL;
    shmkit_semaphore *sem = NULL;
    shmkit_event *ev = NULL;
    char name[128], kept_name[128];
    named_mutex(name, sizeof name, seg);
    persistent_mutex(kept_name, sizeof kept_name, seg);
    if (shmkit_mutex_create_or_open_persistent(kept_name, &kept) != SHMKIT_OK) die("persistent");
    if (shmkit_mutex_lock(kept, SHMKIT_FOREVER) != SHMKIT_OK) die("lock persistent");
    if (shmkit_shm_create(seg, SEG_SIZE, SHMKIT_PERSISTENT, &shm) != SHMKIT_OK) die("create");
    if (shmkit_mutex_init_in(shm, MUTEX_AT, &m) != SHMKIT_OK) die("mutex_init_in");
    if (shmkit_semaphore_init_in(shm, SEM_AT, 0, 10, &sem) != SHMKIT_OK) die("sem_init_in");
    if (shmkit_event_init_in(shm, EVENT_AT, 0, &ev) != SHMKIT_OK) die("event_init_in");
    if (shmkit_mutex_create(name, &named) != SHMKIT_OK) die("named mutex");
    /* The segment's own handle may go: the objects' handles keep it mapped. */
    if (shmkit_shm_close(shm) != SHMKIT_OK) die("shm_close");
    if (shmkit_mutex_lock(named, SHMKIT_FOREVER) != SHMKIT_OK) die("lock named");
    if (shmkit_mutex_lock(m, SHMKIT_FOREVER) != SHMKIT_OK) die("lock");
    if (shmkit_semaphore_release(sem, 3, NULL) != SHMKIT_OK) die("release");
    if (shmkit_event_set(ev) != SHMKIT_OK) die("set");
    /* Half an update: the first record of two. */
    shmkit_shm *view = NULL;
    if (shmkit_shm_open(seg, SHMKIT_ACCESS_READ_WRITE, &view) != SHMKIT_OK) die("open view");
    const char half[] = "first half";
    if (shmkit_shm_write(view, DATA_AT, (const uint8_t *)half, sizeof half) != SHMKIT_OK)
        die("write");
    char ready = 'r';
    if (write(fd, &ready, 1) != 1) _exit(1);
    for (;;) pause();
}

/* A process that starts after the holder died. */
static int later(const char *seg) {
    shmkit_shm *shm = NULL;
    shmkit_mutex *m = NULL, *named = NULL, *kept = NULL;
    shmkit_semaphore *sem = NULL;
    shmkit_event *ev = NULL;
    char name[128], kept_name[128];
    named_mutex(name, sizeof name, seg);
    persistent_mutex(kept_name, sizeof kept_name, seg);

    check(shmkit_mutex_open(name, &named) == SHMKIT_ERR_NOT_FOUND,
          "the named (temporary) mutex went with its last user: NOT_FOUND");
    check(shmkit_mutex_create_or_open_persistent(kept_name, &kept) == SHMKIT_OK,
          "the named persistent mutex is still there");
    check(kept && shmkit_mutex_lock(kept, 5000) == SHMKIT_ERR_OWNER_DIED,
          "the named persistent mutex reports OWNER_DIED");
    if (kept) {
        shmkit_mutex_mark_consistent(kept);
        shmkit_mutex_unlock(kept);
        shmkit_mutex_close(kept);
    }
    check(shmkit_shm_remove(kept_name) == SHMKIT_OK, "a persistent mutex is removed by name");

    check(shmkit_shm_open(seg, SHMKIT_ACCESS_READ_WRITE, &shm) == SHMKIT_OK,
          "the persistent segment is still there");
    if (!shm) return 1;
    check(shmkit_mutex_open_in(shm, MUTEX_AT, &m) == SHMKIT_OK, "mutex_open_in");
    shmkit_status st = shmkit_mutex_lock(m, 5000);
    check(st == SHMKIT_ERR_OWNER_DIED, "lock after the holder's death: OWNER_DIED");
    char data[16] = {0};
    check(shmkit_shm_read(shm, DATA_AT, (uint8_t *)data, sizeof data) == SHMKIT_OK &&
              strcmp(data, "first half") == 0,
          "the half-written data is there to repair");
    check(shmkit_mutex_lock(m, 0) == SHMKIT_ERR_BUSY,
          "locking again through the same handle: BUSY, not a self-wait");
    check(shmkit_mutex_mark_consistent(m) == SHMKIT_OK, "mark_consistent");
    check(shmkit_mutex_unlock(m) == SHMKIT_OK, "unlock");
    check(shmkit_mutex_lock(m, 0) == SHMKIT_OK, "locks cleanly once repaired");
    check(shmkit_mutex_unlock(m) == SHMKIT_OK, "unlock again");

    check(shmkit_semaphore_open_in(shm, SEM_AT, &sem) == SHMKIT_OK, "semaphore_open_in");
    uint32_t count = 0;
    check(shmkit_semaphore_count(sem, &count) == SHMKIT_OK && count == 3,
          "the semaphore kept its count (3)");
    check(shmkit_event_open_in(shm, EVENT_AT, &ev) == SHMKIT_OK, "event_open_in");
    bool set = false;
    check(shmkit_event_is_set(ev, &set) == SHMKIT_OK && set, "the event stayed set");

    shmkit_mutex *wrong = NULL;
    check(shmkit_mutex_open_in(shm, SEM_AT, &wrong) == SHMKIT_ERR_MISMATCH &&
              strstr(shmkit_last_error(), seg) != NULL,
          "a mutex opened where a semaphore is: MISMATCH naming the segment");
    check(shmkit_mutex_open_in(shm, DATA_AT + 64, &wrong) == SHMKIT_ERR_CORRUPT,
          "a mutex opened where none was initialised: CORRUPT");
    check(shmkit_mutex_open_in(shm, 4, &wrong) != SHMKIT_OK, "an unaligned offset is refused");
    check(shmkit_mutex_open_in(shm, SEG_SIZE, &wrong) == SHMKIT_ERR_OUT_OF_BOUNDS,
          "an offset past the end: OUT_OF_BOUNDS");
    check(shmkit_mutex_open_in(NULL, 0, &wrong) == SHMKIT_ERR_NULL_POINTER, "NULL segment");
    check(shmkit_mutex_open_in(shm, 0, NULL) == SHMKIT_ERR_NULL_POINTER, "NULL output");
    check(shmkit_mutex_open_in((shmkit_shm *)m, 0, &wrong) == SHMKIT_ERR_BAD_HANDLE,
          "a mutex handle as the segment: BAD_HANDLE");

    /* The handles keep the segment mapped after its own handle is closed. */
    shmkit_shm_close(shm);
    check(shmkit_mutex_lock(m, 1000) == SHMKIT_OK && shmkit_mutex_unlock(m) == SHMKIT_OK,
          "the mutex works after its segment's handle is closed");
    check(shmkit_semaphore_wait(sem, 0) == SHMKIT_OK, "so does the semaphore");
    shmkit_event_close(ev);
    shmkit_semaphore_close(sem);
    shmkit_mutex_close(m);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "holder") == 0) return holder(argv[2], atoi(argv[3]));
    if (argc == 3 && strcmp(argv[1], "later") == 0) return later(argv[2]);

    char seg[64], fdtext[16];
    snprintf(seg, sizeof seg, "c-persist-%d", (int)getpid());
    int pipefd[2];
    if (pipe(pipefd) != 0) return 2;
    snprintf(fdtext, sizeof fdtext, "%d", pipefd[1]);
    pid_t h = fork();
    if (h == 0) {
        close(pipefd[0]);
        execl("/proc/self/exe", argv[0], "holder", seg, fdtext, (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    char ready = 0;
    ssize_t got = read(pipefd[0], &ready, 1);
    close(pipefd[0]);
    int status = 0;
    kill(h, SIGKILL);
    waitpid(h, &status, 0);
    int ok = 0;
    if (got != 1) {
        printf("FAIL the holder did not get ready (exit status %d)\n", status);
        printf("0 passed, 1 failed\n");
    } else {
        fflush(stdout);
        pid_t l = fork();
        if (l == 0) {
            execl("/proc/self/exe", argv[0], "later", seg, (char *)NULL);
            _exit(127);
        }
        waitpid(l, &status, 0);
        ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    if (shmkit_shm_remove(seg) != SHMKIT_OK) {
        printf("FAIL removing %s: %s\n", seg, shmkit_last_error());
        ok = 0;
    }
    return ok ? 0 : 1;
}
