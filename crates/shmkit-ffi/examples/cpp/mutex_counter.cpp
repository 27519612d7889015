// A named mutex guarding two counters in a segment, in C++17 with shmkit.hpp: the
// same layout as the C and Rust versions (segment BASE: two little-endian u64 that
// must be equal; mutex BASE.lock), so any of them can be on either side.
//
//   mutex_counter write BASE COUNT
//   mutex_counter read BASE COUNT
#include "shmkit.hpp"

#include <chrono>
#include <cstdint>
#include <iostream>
#include <string>

using namespace std::chrono_literals;

int main(int argc, char **argv) try {
    if (argc != 4) {
        std::cerr << "usage: mutex_counter write|read BASE COUNT\n";
        return 2;
    }
    std::string role = argv[1], base = argv[2];
    std::uint64_t count = std::stoull(argv[3]);
    auto seg = shmkit::shm::create_or_open(base, 16);
    auto *counters = reinterpret_cast<volatile std::uint64_t *>(seg.data().data);
    auto mutex = shmkit::mutex::create_or_open(base + ".lock");

    auto hold = [&] {
        auto held = mutex.lock(10s);
        if (held.owner_died()) { // the lock is ours; repair what the dead writer left
            counters[1] = counters[0];
            held.mark_consistent();
        }
        return held;
    };
    if (role == "write") {
        for (std::uint64_t i = 0; i < count; i++) {
            auto held = hold();
            counters[0] = counters[0] + 1;
            counters[1] = counters[1] + 1;
        }
        std::cout << "writer: " << count << " updates" << std::endl;
        return 0;
    }
    auto deadline = std::chrono::steady_clock::now() + 60s;
    for (;;) {
        std::uint64_t a, b;
        {
            auto held = hold();
            a = counters[0];
            b = counters[1];
        }
        if (a != b) {
            std::cout << "reader: torn: " << a << " != " << b << std::endl;
            return 1;
        }
        if (a >= count) {
            std::cout << "reader: saw " << a << " updates, never torn" << std::endl;
            return 0;
        }
        if (std::chrono::steady_clock::now() > deadline) {
            std::cout << "reader: no writer finished within 60 s" << std::endl;
            return 1;
        }
    }
} catch (const shmkit::error &e) {
    std::cerr << "error: " << shmkit_status_name(e.code()) << ": " << e.what() << "\n";
    return 1;
}
