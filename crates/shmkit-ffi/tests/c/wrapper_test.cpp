// The C++ wrapper (shmkit.hpp) beyond what the peers use (issue 23, items 2-5):
// objects inside a segment (an owner that died is reported to a process that
// opens the mutex later), a callback's own exception rethrown, plain arrays as
// mutable_bytes, the POSIX and Win32 adapters, and timeout 0 as "not now";
// pollable objects (issue 24): pollable() descriptors armed by try_*, on_ready,
// RPC start_call/finish_call. (examples/cpp/epoll_loop.cpp is the epoll loop.)
//
// Prints "N passed, N failed"; exits non-zero if anything failed.
#include "shmkit.hpp"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <poll.h>
#include <thread>
#include <stdexcept>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

static int passed, failed;

static void check(bool ok, const char *what, const std::string &detail = "") {
    if (ok) {
        passed++;
        std::printf("ok   %s\n", what);
    } else {
        failed++;
        std::printf("FAIL %s %s\n", what, detail.c_str());
    }
    std::fflush(stdout);
}

// An exception type shmkit knows nothing of.
struct app_error : std::runtime_error {
    int code;
    app_error(const char *m, int c) : std::runtime_error(m), code(c) {}
};

static std::string unique(const char *what) { return std::string("cpp-wrap-") + what + "-" + std::to_string(getpid()); }

static void in_segment() {
    const std::string seg = unique("seg");
    const std::uint64_t data_at = 3 * SHMKIT_SYNC_SIZE_IN_SEGMENT;
    {
        auto shm = shmkit::shm::create(seg, 4096, true);
        auto m = shmkit::mutex::init_in(shm, 0);
        auto s = shmkit::semaphore::init_in(shm, SHMKIT_SYNC_SIZE_IN_SEGMENT, 0, 4);
        auto e = shmkit::event::init_in(shm, 2 * SHMKIT_SYNC_SIZE_IN_SEGMENT);
        check(!s.wait(std::chrono::milliseconds(0)) && !s.try_wait(), "semaphore: timeout 0 on 0 units is false");
        check(!e.wait(std::chrono::milliseconds(0)), "event: timeout 0 when not set is false");
        s.release(2);
        e.set();
    }
    // A child process locks the mutex, half-writes, and dies holding it.
    pid_t child = fork();
    if (child == 0) {
        try {
            auto shm = shmkit::shm::open(seg);
            auto m = shmkit::mutex::open_in(shm, 0);
            auto held = m.lock(std::chrono::milliseconds(5000));
            shm.write(data_at, "half");
        } catch (...) {
            std::_Exit(2);
        }
        std::_Exit(0); // unreachable: the lock's destructor unlocked above
    }
    int status = 0;
    waitpid(child, &status, 0);
    // The child's lock was released by its destructor: now the real death.
    child = fork();
    if (child == 0) {
        auto shm = shmkit::shm::open(seg);
        auto m = shmkit::mutex::open_in(shm, 0);
        auto held = m.lock(std::chrono::milliseconds(5000));
        std::_Exit(0); // dies holding it: no destructor runs
    }
    waitpid(child, &status, 0);
    // Everyone has closed the segment; it is persistent, and so is the mutex.
    auto shm = shmkit::shm::open(seg);
    auto m = shmkit::mutex::open_in(shm, 0);
    {
        auto l = m.lock(std::chrono::milliseconds(5000));
        check(l.owner_died(), "a process opening the in-segment mutex later learns its owner died");
        char buf[5] = {0};
        shm.read(data_at, buf); // a plain array is mutable_bytes
        check(std::memcmp(buf, "half", 4) == 0, "the half-written data is there");
        try {
            auto again = m.lock(std::chrono::milliseconds(0));
            check(false, "locking twice through one handle throws");
        } catch (const shmkit::error &err) {
            check(err.code() == SHMKIT_ERR_BUSY, "locking twice through one handle: SHMKIT_ERR_BUSY", err.what());
        }
        l.mark_consistent();
    }
    check(!m.lock(std::chrono::milliseconds(1000)).owner_died(), "consistent again once marked");
    auto s = shmkit::semaphore::open_in(shm, SHMKIT_SYNC_SIZE_IN_SEGMENT);
    check(s.count() == 2, "the in-segment semaphore kept its count");
    auto e = shmkit::event::open_in(shm, 2 * SHMKIT_SYNC_SIZE_IN_SEGMENT);
    check(e.is_set(), "the in-segment event kept its state");
    shmkit::shm::remove(seg);
}

static void callbacks() {
    const std::string name = unique("chan");
    auto rx = shmkit::receiver::connect(name);
    auto tx = shmkit::sender::connect(name);
    tx.send("one");
    tx.send("two");
    try {
        rx.recv_with([](shmkit::bytes) { throw app_error("the application's own error", 42); },
                     std::chrono::milliseconds(1000));
        check(false, "recv_with rethrows the callback's exception");
    } catch (const app_error &e) {
        check(e.code == 42 && std::string(e.what()) == "the application's own error",
              "recv_with rethrows the callback's own exception, unchanged");
    } catch (const std::exception &e) {
        check(false, "recv_with rethrows the callback's own exception, unchanged", e.what());
    }
    char buf[16];
    std::size_t n = rx.recv_into(buf, std::chrono::milliseconds(1000)); // a plain array
    check(n == 3 && std::memcmp(buf, "two", 3) == 0, "recv_into a plain char array");
    std::uint8_t ubuf[2];
    tx.send("toolong");
    try {
        rx.recv_into(ubuf, std::chrono::milliseconds(1000));
        check(false, "a uint8_t array's size is its length");
    } catch (const shmkit::error &e) {
        check(e.code() == SHMKIT_ERR_BUFFER_TOO_SMALL && e.count() == 7, "a uint8_t array's size is its length");
    }

    const std::string news = unique("news");
    auto pub = shmkit::publisher::connect(news);
    auto sub = shmkit::subscriber::connect(news);
    pub.publish("x");
    try {
        sub.recv_with([](shmkit::bytes) { throw app_error("subscriber callback", 7); },
                      std::chrono::milliseconds(1000));
        check(false, "subscriber recv_with rethrows");
    } catch (const app_error &e) {
        check(e.code == 7, "subscriber recv_with rethrows the callback's own exception");
    }
}

static void adapters() {
    const std::string ps = "/" + unique("psem");
    auto p = shmkit::posix_semaphore::create(ps, 0, true);
    check(!p.wait(std::chrono::milliseconds(0)), "posix_semaphore: timeout 0 on 0 is false");
    p.post();
    check(p.wait(std::chrono::milliseconds(1000)), "posix_semaphore: post then wait");
    shmkit::posix_semaphore::remove(ps);
    try {
        shmkit::native::mutex::create("Local\\x");
        check(false, "Win32 adapters on Linux: SHMKIT_ERR_UNSUPPORTED");
    } catch (const shmkit::error &e) {
        check(e.code() == SHMKIT_ERR_UNSUPPORTED, "Win32 adapters on Linux: SHMKIT_ERR_UNSUPPORTED", e.what());
    }
}

static bool readable(const shmkit::pollable &p, int ms) {
    pollfd f{p.fd(), POLLIN, 0};
    return poll(&f, 1, ms) == 1 && (f.revents & POLLIN);
}

static void pollables() {
    using namespace std::chrono_literals;
    const std::string name = unique("poll");
    auto rx = shmkit::receiver::connect(name);
    shmkit::channel_options small;
    small.capacity = 4096;
    auto tx = shmkit::sender::connect(name);
    auto fd = rx.pollable();
    check(!rx.try_recv(), "receiver: try_recv on an empty queue is nullopt");
    check(!readable(fd, 0), "receiver: armed, not ready");
    std::atomic<int> calls{0};
    rx.on_ready([&] { calls++; });
    tx.send(std::string_view("hi"));
    check(readable(fd, 5000), "receiver: a message makes the descriptor ready");
    for (int i = 0; i < 500 && calls == 0; i++) std::this_thread::sleep_for(10ms);
    check(calls == 1, "receiver: on_ready's function ran once");
    auto got = rx.try_recv();
    check(got && std::string(got->begin(), got->end()) == "hi", "receiver: try_recv gets it");
    char buf[8];
    check(!rx.try_recv_into(buf), "receiver: then nothing");

    const std::string rn = unique("poll-rpc");
    auto server = shmkit::rpc_server::bind(rn);
    auto client = shmkit::rpc_client::connect(rn);
    auto sfd = server.pollable();
    auto cfd = client.pollable();
    check(!server.try_serve_one([](shmkit::bytes) { return std::string(); }), "server: nothing to serve");
    client.start_call(std::string_view("ping"));
    check(!client.try_finish_call(), "client: no reply yet");
    check(readable(sfd, 5000), "server: the request makes its descriptor ready");
    bool served = server.try_serve_one([](shmkit::bytes r) { return std::string(300, static_cast<char>(r.size)); });
    check(served, "server: try_serve_one answers");
    check(readable(cfd, 5000), "client: the reply makes its descriptor ready");
    auto reply = client.try_finish_call();
    check(reply && reply->size() == 300 && (*reply)[0] == 4, "client: try_finish_call gets the reply (longer than 256)");

    const std::string mn = unique("poll-mutex");
    auto a = shmkit::mutex::create(mn);
    auto b = shmkit::mutex::open(mn);
    auto mfd = b.pollable();
    {
        auto held = a.lock(1s);
        check(!b.try_lock(), "mutex: try_lock while held elsewhere");
    }
    check(readable(mfd, 5000), "mutex: the unlock makes the descriptor ready");
    check(b.try_lock().has_value(), "mutex: then try_lock takes it");

    const std::string en = unique("poll-event");
    auto e = shmkit::event::create(en);
    auto efd = e.pollable();
    check(!e.try_wait(), "event: try_wait unset");
    e.set();
    check(readable(efd, 5000) && e.try_wait(), "event: set makes it ready");

    auto s = shmkit::sender::connect(unique("poll-room"), small);
    std::string block(512, 'x');
    int sent = 0;
    while (s.try_send(block)) sent++;
    check(sent > 0, "sender: try_send until the ring is full");
    auto sfd2 = s.pollable();
    check(!s.try_send(block), "sender: still full");
    check(!readable(sfd2, 0), "sender: armed");
}

int main() {
    try {
        in_segment();
        callbacks();
        adapters();
        pollables();
    } catch (const std::exception &e) {
        check(false, "unexpected exception", e.what());
    }
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
