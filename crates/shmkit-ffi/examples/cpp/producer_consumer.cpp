// The classic two-semaphore producer/consumer in C++17 with shmkit.hpp: the same
// protocol as the C and Rust versions (segment BASE, semaphores BASE.write and
// BASE.read, 8-byte little-endian length prefix, all-ones length = the end), so
// any of them can be on either side.
//
//   producer_consumer produce BASE     (start it first)
//   producer_consumer consume BASE
#include "shmkit.hpp"

#include <chrono>
#include <cstdint>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

constexpr std::uint64_t segment_size = 64 * 1024;
constexpr std::uint64_t capacity = segment_size - 8;
constexpr std::uint64_t end_marker = UINT64_MAX;
constexpr auto timeout = 10s;

struct channel {
    shmkit::shm shm;
    shmkit::semaphore write, read;
};

static void put(channel &c, std::uint64_t len, shmkit::bytes msg) {
    std::uint8_t prefix[8];
    for (int i = 0; i < 8; i++) prefix[i] = static_cast<std::uint8_t>(len >> (8 * i));
    if (!c.write.wait(timeout)) throw std::runtime_error("the consumer does not take messages");
    c.shm.write(0, shmkit::bytes(prefix, 8));
    if (len != end_marker) c.shm.write(8, msg);
    c.read.release();
}

static void produce(const std::string &base) {
    channel c{shmkit::shm::create(base, segment_size), shmkit::semaphore::create(base + ".write", 1, 1),
              shmkit::semaphore::create(base + ".read", 0, 1)};
    std::string longer;
    for (int i = 0; i < 2; i++) longer += "a message much longer than the classic 100-byte read buffer, ";
    std::vector<std::string> messages{"hello", "", longer, std::string(capacity, 'x'), std::string(capacity + 1, 'y')};
    for (const auto &m : messages) {
        if (m.size() > capacity) {
            std::cout << "producer: not sent: " << m.size() << " bytes is longer than the limit of " << capacity
                      << " bytes" << std::endl;
            continue;
        }
        put(c, m.size(), m);
        std::cout << "producer: sent " << m.size() << " bytes" << std::endl;
    }
    put(c, end_marker, {});
    c.write.wait(timeout); // the consumer has taken the end marker
}

template <class F> static auto open_when_there(F open) {
    for (int tries = 0;; tries++) {
        try {
            return open();
        } catch (const shmkit::error &e) {
            if (e.code() != SHMKIT_ERR_NOT_FOUND || tries == 200) throw;
            std::this_thread::sleep_for(50ms);
        }
    }
}

static void consume(const std::string &base) {
    auto shm = open_when_there([&] { return shmkit::shm::open(base); });
    auto read = open_when_there([&] { return shmkit::semaphore::open(base + ".read"); });
    channel c{std::move(shm), shmkit::semaphore::open(base + ".write"), std::move(read)};
    std::vector<std::uint8_t> msg(capacity);
    for (;;) {
        if (!c.read.wait(timeout)) throw std::runtime_error("the producer went quiet");
        std::uint8_t prefix[8];
        c.shm.read(0, shmkit::mutable_bytes(prefix, 8));
        std::uint64_t len = 0;
        for (int i = 0; i < 8; i++) len |= std::uint64_t{prefix[i]} << (8 * i);
        if (len == end_marker) break;
        if (len > capacity) throw std::runtime_error("corrupt length " + std::to_string(len));
        c.shm.read(8, shmkit::mutable_bytes(msg.data(), static_cast<std::size_t>(len)));
        std::string preview(msg.begin(), msg.begin() + static_cast<long>(std::min<std::uint64_t>(len, 40)));
        std::cout << "consumer: got " << len << " bytes: \"" << preview << "\"" << std::endl;
        c.write.release();
    }
    c.write.release();
    std::cout << "consumer: done" << std::endl;
}

int main(int argc, char **argv) try {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() == 2 && args[0] == "produce") produce(args[1]);
    else if (args.size() == 2 && args[0] == "consume") consume(args[1]);
    else {
        std::cerr << "usage: producer_consumer produce|consume BASE\n";
        return 2;
    }
    return 0;
} catch (const std::exception &e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
}
