/* A plain C program that shares memory the classic way, without shmkit:
 * shm_open + mmap on POSIX, CreateFileMappingA + MapViewOfFile on Windows.
 *
 *   shm_peer create NAME SIZE TEXT   create NAME, write TEXT at 0, print "ready",
 *                                    keep it until a line arrives on stdin
 *   shm_peer read NAME OFFSET LEN    print LEN bytes from OFFSET
 *   shm_peer write NAME OFFSET TEXT  write TEXT at OFFSET
 *   shm_peer handshake NAME ROUNDS WRITEMAP READMAP
 *                                    the classic reader: ROUNDS times, wait on the
 *                                    semaphore READMAP, upper-case the message
 *                                    (u32 length, then bytes) in place, release
 *                                    WRITEMAP. Fails if a semaphore does not exist.
 *   shm_peer hold-mutex NAME 0 -     (Windows) lock the named mutex, print
 *                                    "locked", wait for a line on stdin
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>

static char *map_existing(const char *name, int writable, size_t len)
{
    HANDLE h = OpenFileMappingA(writable ? FILE_MAP_WRITE : FILE_MAP_READ, FALSE, name);
    if (!h) { fprintf(stderr, "OpenFileMapping(%s): %lu\n", name, GetLastError()); exit(1); }
    char *p = MapViewOfFile(h, writable ? FILE_MAP_WRITE : FILE_MAP_READ, 0, 0, len);
    if (!p) { fprintf(stderr, "MapViewOfFile: %lu\n", GetLastError()); exit(1); }
    return p;
}

static char *map_new(const char *name, size_t size)
{
    HANDLE h = CreateFileMappingA(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE, 0, (DWORD)size, name);
    if (!h || GetLastError() == ERROR_ALREADY_EXISTS) { fprintf(stderr, "CreateFileMapping(%s) failed\n", name); exit(1); }
    char *p = MapViewOfFile(h, FILE_MAP_WRITE, 0, 0, size);
    if (!p) { fprintf(stderr, "MapViewOfFile: %lu\n", GetLastError()); exit(1); }
    return p;
}

typedef HANDLE psem;

static psem psem_open(const char *name)
{
    HANDLE h = OpenSemaphoreA(SEMAPHORE_ALL_ACCESS, FALSE, name);
    if (!h) { fprintf(stderr, "semaphore %s does not exist (%lu)\n", name, GetLastError()); exit(1); }
    return h;
}

static void psem_wait(psem s)
{
    if (WaitForSingleObject(s, 10000) != WAIT_OBJECT_0) { fprintf(stderr, "wait failed or timed out\n"); exit(1); }
}

static void psem_post(psem s)
{
    if (!ReleaseSemaphore(s, 1, NULL)) { fprintf(stderr, "ReleaseSemaphore: %lu\n", GetLastError()); exit(1); }
}
#else
#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static char *map_existing(const char *name, int writable, size_t len)
{
    int fd = shm_open(name, writable ? O_RDWR : O_RDONLY, 0);
    if (fd < 0) { perror("shm_open"); exit(1); }
    struct stat st;
    fstat(fd, &st);
    size_t size = (size_t)st.st_size;
    if (len > size) { fprintf(stderr, "%s has only %zu bytes\n", name, size); exit(1); }
    char *p = mmap(NULL, size, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(1); }
    close(fd);
    return p;
}

static char *map_new(const char *name, size_t size)
{
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0) { perror("shm_open"); exit(1); }
    if (ftruncate(fd, (off_t)size) != 0) { perror("ftruncate"); exit(1); }
    char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(1); }
    close(fd);
    return p;
}

typedef sem_t *psem;

static psem psem_open(const char *name)
{
    sem_t *s = sem_open(name, 0);
    if (s == SEM_FAILED) { fprintf(stderr, "semaphore %s does not exist: %s\n", name, strerror(errno)); exit(1); }
    return s;
}

static void psem_wait(psem s)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += 10;
    while (sem_timedwait(s, &t) != 0) {
        if (errno != EINTR) { perror("sem_timedwait"); exit(1); }
    }
}

static void psem_post(psem s)
{
    if (sem_post(s) != 0) { perror("sem_post"); exit(1); }
}
#endif

static int handshake(const char *name, size_t rounds, const char *writemap, const char *readmap)
{
    const size_t size = 4096;
    char *p = map_existing(name, 1, size);
    psem w = psem_open(writemap), r = psem_open(readmap);
    for (size_t i = 0; i < rounds; i++) {
        psem_wait(r);
        uint32_t len;
        memcpy(&len, p, 4);
        if (len > size - 4) { fprintf(stderr, "length %u does not fit\n", len); return 1; }
        for (uint32_t j = 0; j < len; j++) p[4 + j] = (char)toupper((unsigned char)p[4 + j]);
        psem_post(w);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "handshake") == 0)
        return handshake(argv[2], strtoul(argv[3], NULL, 10), argv[4], argv[5]);
#ifdef _WIN32
    if (argc == 5 && strcmp(argv[1], "hold-mutex") == 0) {
        HANDLE m = CreateMutexA(NULL, FALSE, argv[2]);
        if (!m || WaitForSingleObject(m, 10000) != WAIT_OBJECT_0) { fprintf(stderr, "cannot lock %s\n", argv[2]); return 1; }
        printf("locked\n");
        fflush(stdout);
        char line[64];
        if (!fgets(line, sizeof line, stdin)) { /* EOF also ends the wait */ }
        ReleaseMutex(m);
        return 0;
    }
#endif
    if (argc != 5) { fprintf(stderr, "usage: see shm_peer.c\n"); return 2; }
    const char *cmd = argv[1], *name = argv[2];
    size_t num = strtoul(argv[3], NULL, 10);
    if (strcmp(cmd, "create") == 0) {
        char *p = map_new(name, num);
        memcpy(p, argv[4], strlen(argv[4]));
        printf("ready\n");
        fflush(stdout);
        char line[64];
        if (!fgets(line, sizeof line, stdin)) { /* EOF also ends the wait */ }
        return 0;
    }
    if (strcmp(cmd, "read") == 0) {
        size_t len = strtoul(argv[4], NULL, 10);
        char *p = map_existing(name, 0, num + len);
        fwrite(p + num, 1, len, stdout);
        return 0;
    }
    if (strcmp(cmd, "write") == 0) {
        size_t len = strlen(argv[4]);
        char *p = map_existing(name, 1, num + len);
        memcpy(p + num, argv[4], len);
        return 0;
    }
    fprintf(stderr, "unknown command %s\n", cmd);
    return 2;
}
