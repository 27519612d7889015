// The C++ test peer of the cross-language matrix, written with shmkit.hpp; the
// same commands and output as peer.c and the Rust shmkit-peer.
#include "peer_common.h"
#include "shmkit.hpp"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

int main(int argc, char **argv) try {
    using namespace std::chrono_literals;
    crc_init();
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() == 5 && args[0] == "send") {
        std::uint64_t count = std::stoull(args[2]), seed = std::stoull(args[3]) | 1, max = std::stoull(args[4]);
        auto tx = shmkit::sender::connect(args[1]);
        std::uint32_t crc = 0;
        for (std::uint64_t i = 0; i < count; i++) {
            std::uint64_t limit = rng_next(&seed) % 100 == 0 ? max : std::min<std::uint64_t>(max, 4096);
            std::size_t len = static_cast<std::size_t>(rng_next(&seed) % (limit + 1));
            // Zero-copy: the message is written straight into the ring when it fits
            // a reservation (a quarter of the ring); longer ones are sent in pieces.
            std::vector<std::uint8_t> msg(len + 8);
            for (std::size_t j = 0; j < len; j += 8) {
                std::uint64_t r = rng_next(&seed);
                std::memcpy(msg.data() + j, &r, 8);
            }
            msg.resize(len);
            if (len <= 64 * 1024) {
                auto slot = tx.reserve(len, 60s);
                std::memcpy(slot.data().data, msg.data(), len);
                slot.commit();
            } else {
                tx.send(msg, 60s);
            }
            crc = crc_message(crc, msg.data(), len);
        }
        std::printf("%llu %u\n", static_cast<unsigned long long>(count), crc);
        return 0;
    }
    if (args.size() == 3 && args[0] == "recv") {
        std::uint64_t count = std::stoull(args[2]);
        auto rx = shmkit::receiver::connect(args[1]);
        std::printf("ready\n");
        std::fflush(stdout);
        std::uint32_t crc = 0;
        for (std::uint64_t i = 0; i < count; i++)
            rx.recv_with([&](shmkit::bytes m) { crc = crc_message(crc, m.data, m.size); }, 60s);
        std::printf("%llu %u\n", static_cast<unsigned long long>(count), crc);
        return 0;
    }
    if (args.size() == 2 && (args[0] == "hold" || args[0] == "lock")) {
        auto m = args[0] == "lock" ? shmkit::mutex::create_or_open(args[1]) : shmkit::mutex::open(args[1]);
        if (args[0] == "lock") { // keep it open while the holder is killed; lock when told
            std::printf("ready\n");
            std::fflush(stdout);
            std::string line;
            std::getline(std::cin, line);
        }
        auto held = m.lock(10s);
        if (args[0] == "lock") {
            std::printf("%s\n", held.owner_died() ? "owner-died" : "locked");
            return 0;
        }
        std::printf("locked\n");
        std::fflush(stdout);
        std::this_thread::sleep_for(std::chrono::hours(1));
        return 0;
    }
    std::cerr << "usage: peer send NAME COUNT SEED MAX | recv NAME COUNT | hold NAME | lock NAME\n";
    return 2;
} catch (const shmkit::error &e) {
    std::cerr << "peer (C++): " << shmkit_status_name(e.code()) << ": " << e.what() << "\n";
    return 1;
}
