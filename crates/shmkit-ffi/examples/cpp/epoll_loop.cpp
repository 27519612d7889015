// One epoll loop (Linux) for two shmkit receivers and a timerfd: no thread per
// channel, no polling. Each receiver's pollable() descriptor is in the epoll set,
// edge-triggered; when one is ready the loop drains that receiver with try_recv()
// until it finds nothing (which re-arms the descriptor). The timer ticks every
// 100 ms in the same loop.
//
//   epoll_loop listen A B     prints "A: message" / "B: message" as they come,
//                             "A: disconnected" when A's sender has gone, and
//                             at the end "ticks: yes" if the timer ticked too
//   epoll_loop send A B N     sends N numbered messages to each (start the
//                             listener first), pausing now and then
#include "shmkit.hpp"

#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <iostream>
#include <string>
#include <thread>

using namespace std::chrono_literals;

static int listen(const std::string names[2]) {
    shmkit::receiver rx[2] = {shmkit::receiver::connect(names[0]), shmkit::receiver::connect(names[1])};
    shmkit::pollable fds[2] = {rx[0].pollable(), rx[1].pollable()};
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    itimerspec every{{0, 100'000'000}, {0, 100'000'000}};
    timerfd_settime(timer, 0, &every, nullptr);
    for (std::uint32_t i = 0; i < 2; i++) {
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLET; // the descriptors are edge-triggered
        ev.data.u32 = i;
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i].fd(), &ev);
    }
    epoll_event tev{};
    tev.events = EPOLLIN;
    tev.data.u32 = 2;
    epoll_ctl(ep, EPOLL_CTL_ADD, timer, &tev);
    std::cout << "listening" << std::endl;

    bool open[2] = {true, true};
    std::uint64_t ticks = 0;
    // Drain each once first: a try that finds nothing arms the descriptor.
    bool ready[2] = {true, true};
    while (open[0] || open[1]) {
        for (int i = 0; i < 2; i++) {
            while (ready[i] && open[i]) {
                try {
                    auto msg = rx[i].try_recv();
                    if (!msg) break; // nothing now: armed again
                    std::cout << names[i] << ": " << std::string(msg->begin(), msg->end()) << "\n";
                } catch (const shmkit::error &e) {
                    if (e.code() != SHMKIT_ERR_DISCONNECTED) throw;
                    std::cout << names[i] << ": disconnected\n";
                    open[i] = false;
                }
            }
            ready[i] = false;
        }
        if (!(open[0] || open[1])) break;
        epoll_event evs[3];
        int n = epoll_wait(ep, evs, 3, 30'000);
        if (n == 0) {
            std::cerr << "nothing for 30 s\n";
            return 1;
        }
        for (int k = 0; k < n; k++) {
            std::uint32_t i = evs[k].data.u32;
            if (i == 2) {
                std::uint64_t expired;
                if (read(timer, &expired, sizeof expired) == sizeof expired) ticks += expired;
            } else {
                ready[i] = true;
            }
        }
    }
    std::cout << "ticks: " << (ticks > 0 ? "yes" : "no") << std::endl;
    close(timer);
    close(ep);
    return 0;
}

static int send(const std::string names[2], int n) {
    shmkit::sender tx[2] = {shmkit::sender::connect(names[0]), shmkit::sender::connect(names[1])};
    for (int k = 0; k < n; k++) {
        for (int i = 0; i < 2; i++) tx[i].send(std::to_string(k), 10s);
        if (k % 7 == 0) std::this_thread::sleep_for(30ms); // the listener sleeps in epoll_wait
    }
    return 0;
}

int main(int argc, char **argv) try {
    std::string cmd = argc > 1 ? argv[1] : "";
    if (argc == 4 && cmd == "listen") {
        const std::string names[2] = {argv[2], argv[3]};
        return listen(names);
    }
    if (argc == 5 && cmd == "send") {
        const std::string names[2] = {argv[2], argv[3]};
        return send(names, std::stoi(argv[4]));
    }
    std::cerr << "usage: epoll_loop listen A B | epoll_loop send A B N\n";
    return 2;
} catch (const shmkit::error &e) {
    std::cerr << shmkit_status_name(e.code()) << ": " << e.what() << "\n";
    return 1;
}
