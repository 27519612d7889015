// shmkit.hpp: a header-only C++17 wrapper of the shmkit C ABI (shmkit.h).
//
// - RAII: every object closes its handle when destroyed; objects move, never copy.
// - Errors throw shmkit::error (a std::runtime_error) carrying the status code and
//   the message naming the object and the cause; timeouts, a full ring or a gone
//   peer are shmkit::error too (check code()). Calls that commonly "fail" as part
//   of normal flow return std::optional or bool instead (try_recv, try_lock).
// - Byte arguments take shmkit::bytes / shmkit::mutable_bytes, made from any
//   contiguous container of bytes (std::string, std::string_view, std::vector,
//   std::array, std::span in C++20), a plain array (`char buf[64]`) or a pointer
//   and a length.
// - Timeouts are std::chrono durations; shmkit::forever waits forever, 0 tries
//   once. Waits that return bool return false for "not now" (0) and for a
//   timeout that passed.
// - An exception thrown by a callback (recv_with, rpc_client::call's) is
//   rethrown, unchanged, once the C call has returned.
// - Mutexes, semaphores and events live either under a name (create/open: they
//   go away with their last user) or inside a segment (init_in/open_in: they
//   live as long as the segment, so a persistent segment keeps an owner's death
//   for a process that starts later).
// - Event loops: pollable() on every object that waits gives a shmkit::pollable,
//   a descriptor (Unix: an fd for epoll/poll; Windows: an event HANDLE) closed
//   when destroyed; on_ready(f) calls f once, on shmkit's thread, instead. Either
//   makes the object pollable: its try_* calls (try_recv, try_send, try_lock,
//   try_wait...) then arm the descriptor when they find nothing. Edge-triggered:
//   once it is ready, call the try_* until it says "nothing".
//
// Link with the shmkit_ffi library (libshmkit_ffi.so/.a, shmkit_ffi.dll).
#ifndef SHMKIT_HPP
#define SHMKIT_HPP

#include "shmkit.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace shmkit {

/// A failed call: the status code and shmkit_last_error()'s message.
class error : public std::runtime_error {
public:
    error(shmkit_status code, const std::string &message)
        : std::runtime_error(message), code_(code) {}
    shmkit_status code() const noexcept { return code_; }
    /// For SHMKIT_ERR_LAGGED: how many messages were missed; for
    /// SHMKIT_ERR_BUFFER_TOO_SMALL: how many bytes were needed.
    std::uint64_t count() const noexcept { return count_; }
    error &with_count(std::uint64_t n) { count_ = n; return *this; }

private:
    shmkit_status code_;
    std::uint64_t count_ = 0;
};

namespace detail {
inline void check(shmkit_status s) {
    if (s != SHMKIT_OK) throw error(s, shmkit_last_error());
}
template <class C, class = void> struct is_byte_container : std::false_type {};
template <class C>
struct is_byte_container<C, std::void_t<decltype(std::declval<C &>().data()), decltype(std::declval<C &>().size())>>
    : std::bool_constant<sizeof(*std::declval<C &>().data()) == 1> {};
} // namespace detail

/// Read-only bytes.
struct bytes {
    const std::uint8_t *data = nullptr;
    std::size_t size = 0;
    bytes() = default;
    bytes(const void *d, std::size_t n) : data(static_cast<const std::uint8_t *>(d)), size(n) {}
    bytes(const char *s) : bytes(s, std::strlen(s)) {}
    template <class C, class = std::enable_if_t<detail::is_byte_container<const C>::value>>
    bytes(const C &c) : bytes(c.data(), c.size()) {}
};

/// Writable bytes.
struct mutable_bytes {
    std::uint8_t *data = nullptr;
    std::size_t size = 0;
    mutable_bytes() = default;
    mutable_bytes(void *d, std::size_t n) : data(static_cast<std::uint8_t *>(d)), size(n) {}
    template <class C, class = std::enable_if_t<detail::is_byte_container<C>::value &&
                                                 !std::is_const_v<std::remove_pointer_t<decltype(std::declval<C &>().data())>>>>
    mutable_bytes(C &c) : mutable_bytes(c.data(), c.size()) {}
    /// A plain array of bytes (`char buf[64]`, `std::uint8_t buf[64]`): all N.
    template <class T, std::size_t N, class = std::enable_if_t<sizeof(T) == 1 && !std::is_const_v<T>>>
    mutable_bytes(T (&a)[N]) : mutable_bytes(a, N) {}
};

using milliseconds = std::chrono::milliseconds;
/// Wait as long as it takes.
inline constexpr milliseconds forever{-1};

namespace detail {
inline std::int64_t ms(milliseconds t) { return t.count() < 0 ? SHMKIT_FOREVER : static_cast<std::int64_t>(t.count()); }

/// Owns one handle; `Close` is its shmkit_*_close function.
///
/// close() may be called from any thread while another thread is in a call on
/// the handle (that is how a blocked reader is stopped): the handle's number is
/// never changed after construction, only the atomic `closed_` flag, so the other
/// thread reads no torn value; its blocked call returns SHMKIT_ERR_CLOSED and its
/// later calls SHMKIT_ERR_BAD_HANDLE (the number names a closed entry).
template <class H, shmkit_status (*Close)(H *)> class handle {
public:
    handle() = default;
    explicit handle(H *h) : h_(h) {}
    handle(handle &&o) noexcept : h_(std::exchange(o.h_, nullptr)), closed_(o.closed_.load()) {}
    handle &operator=(handle &&o) noexcept {
        if (this != &o) {
            reset();
            h_ = std::exchange(o.h_, nullptr);
            closed_ = o.closed_.load();
        }
        return *this;
    }
    handle(const handle &) = delete;
    handle &operator=(const handle &) = delete;
    ~handle() { reset(); }
    H *get() const noexcept { return h_; }
    explicit operator bool() const noexcept { return h_ != nullptr; }
    /// Closes the handle now, from any thread (only the first close does).
    void close() {
        if (h_ && !closed_.exchange(true)) check(Close(h_));
    }
    void reset() noexcept {
        if (h_ && !closed_.exchange(true)) Close(h_);
        h_ = nullptr;
        closed_ = false;
    }

private:
    H *h_ = nullptr;
    std::atomic<bool> closed_{false};
};

/// A C++ callback handed through the C ABI, and the exception it threw (an
/// exception must not cross C frames: call_fn catches it, the C call returns
/// SHMKIT_ERR_CALLBACK, and finish() rethrows the original).
template <class F> struct callback {
    F &f;
    std::exception_ptr thrown{};
    void *user() { return this; }
    /// After the C call: rethrows the callback's exception, else checks `s`.
    void finish(shmkit_status s) {
        if (thrown) std::rethrow_exception(thrown);
        check(s);
    }
};

template <class F> std::int32_t call_fn(const std::uint8_t *d, std::size_t n, void *user) {
    auto *cb = static_cast<callback<F> *>(user);
    try {
        cb->f(bytes(d, n));
        return 0;
    } catch (...) {
        cb->thrown = std::current_exception();
        return 1;
    }
}

/// A wait's result: true done, false "not now" (timeout 0) or timed out.
inline bool waited(shmkit_status s) {
    if (s == SHMKIT_ERR_TIMEOUT || s == SHMKIT_ERR_WOULD_BLOCK) return false;
    check(s);
    return true;
}

/// on_ready's trampoline: runs the heap-held function once and frees it (the C
/// ABI calls every registered callback exactly once).
inline void ready_fn(void *user) {
    std::unique_ptr<std::function<void()>> f(static_cast<std::function<void()> *>(user));
    try {
        (*f)();
    } catch (...) {
        // It runs on shmkit's thread, where nobody could catch it.
        std::terminate();
    }
}

template <class H>
void on_ready(shmkit_status (*register_fn)(H *, shmkit_ready_fn, void *), H *h, std::function<void()> f) {
    auto held = std::make_unique<std::function<void()>>(std::move(f));
    check(register_fn(h, &ready_fn, held.get()));
    held.release(); // now owned by the callback
}
} // namespace detail

/// A descriptor an event loop waits on (from an object's pollable()), closed
/// when destroyed. Unix: fd() for epoll/poll/select, readable when the object
/// may be ready; Windows: get() is an event HANDLE, signalled when it may be
/// ready. It stays valid (and ready) after its object is closed: take it out of
/// your loop, then let it go.
class pollable {
public:
    pollable() = default;
    explicit pollable(shmkit_descriptor d) : d_(d) {}
    pollable(pollable &&o) noexcept : d_(std::exchange(o.d_, -1)) {}
    pollable &operator=(pollable &&o) noexcept {
        if (this != &o) {
            reset();
            d_ = std::exchange(o.d_, -1);
        }
        return *this;
    }
    pollable(const pollable &) = delete;
    pollable &operator=(const pollable &) = delete;
    ~pollable() { reset(); }
    /// The descriptor: an fd on Unix, a HANDLE on Windows.
    shmkit_descriptor get() const noexcept { return d_; }
    /// The file descriptor (Unix).
    int fd() const noexcept { return static_cast<int>(d_); }
    explicit operator bool() const noexcept { return d_ != -1; }
    void reset() noexcept {
        if (d_ != -1) shmkit_pollable_close(std::exchange(d_, -1));
    }

private:
    shmkit_descriptor d_ = -1;
};

namespace detail {
template <class H> pollable make_pollable(shmkit_status (*f)(H *, shmkit_descriptor *), H *h) {
    shmkit_descriptor d;
    check(f(h, &d));
    return pollable(d);
}
} // namespace detail

/// Access modes for opening segments.
enum class access : std::uint32_t {
    read_write = SHMKIT_ACCESS_READ_WRITE,
    read_only = SHMKIT_ACCESS_READ_ONLY,
    copy_on_write = SHMKIT_ACCESS_COPY_ON_WRITE,
};

/// A named shared-memory segment (managed, or raw by OS name).
class shm {
public:
    static shm create(const std::string &name, std::uint64_t size, bool persistent = false) {
        shmkit_shm *h;
        detail::check(shmkit_shm_create(name.c_str(), size, persistent ? SHMKIT_PERSISTENT : 0, &h));
        return shm(h);
    }
    static shm open(const std::string &name, access a = access::read_write) {
        shmkit_shm *h;
        detail::check(shmkit_shm_open(name.c_str(), static_cast<std::uint32_t>(a), &h));
        return shm(h);
    }
    /// Opens `name`, or creates it with `size` zeroed bytes; `created` (may be
    /// null) says which happened.
    static shm create_or_open(const std::string &name, std::uint64_t size, bool *created = nullptr) {
        shmkit_shm *h;
        detail::check(shmkit_shm_create_or_open(name.c_str(), size, 0, nullptr, nullptr, &h, created));
        return shm(h);
    }
    static shm create_raw(const std::string &os_name, std::uint64_t size) {
        shmkit_shm *h;
        detail::check(shmkit_shm_create_raw(os_name.c_str(), size, &h));
        return shm(h);
    }
    static shm open_raw(const std::string &os_name, access a = access::read_write) {
        shmkit_shm *h;
        detail::check(shmkit_shm_open_raw(os_name.c_str(), static_cast<std::uint32_t>(a), &h));
        return shm(h);
    }
    static void remove(const std::string &name) { detail::check(shmkit_shm_remove(name.c_str())); }

    /// The segment's bytes (valid while this object lives).
    mutable_bytes data() const {
        std::uint8_t *d;
        std::uint64_t n;
        detail::check(shmkit_shm_data(h_.get(), &d, &n, nullptr));
        return {d, static_cast<std::size_t>(n)};
    }
    void read(std::uint64_t offset, mutable_bytes out) const {
        detail::check(shmkit_shm_read(h_.get(), offset, out.data, out.size));
    }
    void write(std::uint64_t offset, bytes in) const {
        detail::check(shmkit_shm_write(h_.get(), offset, in.data, in.size));
    }
    /// The C handle, for shmkit.h functions (owned by this object).
    shmkit_shm *c_handle() const noexcept { return h_.get(); }

    /// Closes now, from any thread: a call blocked on this object on another
    /// thread throws shmkit::error SHMKIT_ERR_CLOSED, and later calls throw
    /// SHMKIT_ERR_BAD_HANDLE. The destructor closes too.
    void close() { h_.close(); }

private:
    explicit shm(shmkit_shm *h) : h_(h) {}
    detail::handle<shmkit_shm, shmkit_shm_close> h_;
};

class mutex;

/// Holds a mutex until destroyed (or unlock()). owner_died() says whether its
/// last holder died holding it: repair the data, then mark_consistent().
class lock {
public:
    lock(lock &&o) noexcept : m_(std::exchange(o.m_, nullptr)), died_(o.died_) {}
    lock(const lock &) = delete;
    lock &operator=(const lock &) = delete;
    lock &operator=(lock &&) = delete;
    ~lock() { unlock(); }
    bool owner_died() const noexcept { return died_; }
    void mark_consistent() { detail::check(shmkit_mutex_mark_consistent(m_)); died_ = false; }
    void unlock() noexcept {
        if (m_) shmkit_mutex_unlock(std::exchange(m_, nullptr));
    }

private:
    friend class mutex;
    lock(shmkit_mutex *m, bool died) : m_(m), died_(died) {}
    shmkit_mutex *m_;
    bool died_;
};

/// A named cross-process mutex that reports a holder that died.
class mutex {
public:
    static mutex create(const std::string &name) { return make(shmkit_mutex_create, name); }
    static mutex open(const std::string &name) { return make(shmkit_mutex_open, name); }
    static mutex create_or_open(const std::string &name) { return make(shmkit_mutex_create_or_open, name); }
    /// Opens or creates a persistent named mutex: it stays, with its state, after
    /// its last user closes it (until shm::remove(name)), so a process that starts
    /// after an owner died still sees owner_died().
    static mutex create_or_open_persistent(const std::string &name) {
        return make(shmkit_mutex_create_or_open_persistent, name);
    }
    /// Initialises a new mutex at `offset` (a multiple of 8) of `segment`, taking
    /// SHMKIT_SYNC_SIZE_IN_SEGMENT bytes; once, before others open_in it. It lives
    /// as long as the segment (the mutex keeps the segment mapped).
    static mutex init_in(const shm &segment, std::uint64_t offset) {
        shmkit_mutex *h;
        detail::check(shmkit_mutex_init_in(segment.c_handle(), offset, &h));
        return mutex(h);
    }
    /// Opens the mutex at `offset` of `segment` (see init_in).
    static mutex open_in(const shm &segment, std::uint64_t offset) {
        shmkit_mutex *h;
        detail::check(shmkit_mutex_open_in(segment.c_handle(), offset, &h));
        return mutex(h);
    }

    /// Locks, waiting up to `timeout` (throws shmkit::error SHMKIT_ERR_TIMEOUT after).
    shmkit::lock lock(milliseconds timeout = forever) {
        shmkit_status s = shmkit_mutex_lock(h_.get(), detail::ms(timeout));
        if (s == SHMKIT_ERR_OWNER_DIED) return shmkit::lock(h_.get(), true);
        detail::check(s);
        return shmkit::lock(h_.get(), false);
    }
    /// Locks if free now.
    std::optional<shmkit::lock> try_lock() {
        shmkit_status s = shmkit_mutex_try_lock(h_.get());
        if (s == SHMKIT_ERR_WOULD_BLOCK) return std::nullopt;
        if (s == SHMKIT_ERR_OWNER_DIED) return shmkit::lock(h_.get(), true);
        detail::check(s);
        return shmkit::lock(h_.get(), false);
    }

    /// A descriptor for an event loop (see shmkit::pollable); makes this object
    /// pollable: a try_* that finds nothing arms it. Edge-triggered: when it is
    /// ready, call the try_* until it finds nothing.
    shmkit::pollable pollable() { return detail::make_pollable(shmkit_mutex_pollable, h_.get()); }
    /// Calls `f` once, on shmkit's thread, when this object may be ready (or is
    /// closed), or at once, here, if it is ready now; makes it pollable. `f` must
    /// return quickly and must not throw (std::terminate).
    void on_ready(std::function<void()> f) { detail::on_ready(shmkit_mutex_on_ready, h_.get(), std::move(f)); }

    /// Closes now, from any thread: a call blocked on this object on another
    /// thread throws shmkit::error SHMKIT_ERR_CLOSED, and later calls throw
    /// SHMKIT_ERR_BAD_HANDLE. The destructor closes too.
    void close() { h_.close(); }

private:
    using opener = shmkit_status (*)(const char *, shmkit_mutex **);
    static mutex make(opener f, const std::string &name) {
        shmkit_mutex *h;
        detail::check(f(name.c_str(), &h));
        return mutex(h);
    }
    explicit mutex(shmkit_mutex *h) : h_(h) {}
    detail::handle<shmkit_mutex, shmkit_mutex_close> h_;
};

/// A named counting semaphore.
class semaphore {
public:
    static semaphore create(const std::string &name, std::uint32_t initial, std::uint32_t max) {
        shmkit_semaphore *h;
        detail::check(shmkit_semaphore_create(name.c_str(), initial, max, &h));
        return semaphore(h);
    }
    static semaphore create_or_open(const std::string &name, std::uint32_t initial, std::uint32_t max) {
        shmkit_semaphore *h;
        detail::check(shmkit_semaphore_create_or_open(name.c_str(), initial, max, &h));
        return semaphore(h);
    }
    static semaphore open(const std::string &name) {
        shmkit_semaphore *h;
        detail::check(shmkit_semaphore_open(name.c_str(), &h));
        return semaphore(h);
    }
    /// A new semaphore at `offset` of `segment` (see mutex::init_in).
    static semaphore init_in(const shm &segment, std::uint64_t offset, std::uint32_t initial, std::uint32_t max) {
        shmkit_semaphore *h;
        detail::check(shmkit_semaphore_init_in(segment.c_handle(), offset, initial, max, &h));
        return semaphore(h);
    }
    /// Opens the semaphore at `offset` of `segment`.
    static semaphore open_in(const shm &segment, std::uint64_t offset) {
        shmkit_semaphore *h;
        detail::check(shmkit_semaphore_open_in(segment.c_handle(), offset, &h));
        return semaphore(h);
    }
    /// Takes one unit; false if none was free (timeout 0) or `timeout` passed.
    bool wait(milliseconds timeout = forever) {
        return detail::waited(shmkit_semaphore_wait(h_.get(), detail::ms(timeout)));
    }
    /// Takes one unit if one is free now.
    bool try_wait() { return wait(milliseconds(0)); }
    /// The current count (it may change at once).
    std::uint32_t count() const {
        std::uint32_t n;
        detail::check(shmkit_semaphore_count(h_.get(), &n));
        return n;
    }
    /// Adds `n` units; returns the count before.
    std::uint32_t release(std::uint32_t n = 1) {
        std::uint32_t before;
        detail::check(shmkit_semaphore_release(h_.get(), n, &before));
        return before;
    }

    /// A descriptor for an event loop (see shmkit::pollable); makes this object
    /// pollable: a try_* that finds nothing arms it. Edge-triggered: when it is
    /// ready, call the try_* until it finds nothing.
    shmkit::pollable pollable() { return detail::make_pollable(shmkit_semaphore_pollable, h_.get()); }
    /// Calls `f` once, on shmkit's thread, when this object may be ready (or is
    /// closed), or at once, here, if it is ready now; makes it pollable. `f` must
    /// return quickly and must not throw (std::terminate).
    void on_ready(std::function<void()> f) { detail::on_ready(shmkit_semaphore_on_ready, h_.get(), std::move(f)); }

    /// Closes now, from any thread: a call blocked on this object on another
    /// thread throws shmkit::error SHMKIT_ERR_CLOSED, and later calls throw
    /// SHMKIT_ERR_BAD_HANDLE. The destructor closes too.
    void close() { h_.close(); }

private:
    explicit semaphore(shmkit_semaphore *h) : h_(h) {}
    detail::handle<shmkit_semaphore, shmkit_semaphore_close> h_;
};

/// A named event.
class event {
public:
    /// `flags`: SHMKIT_EVENT_AUTO_RESET, SHMKIT_EVENT_INITIALLY_SET.
    static event create(const std::string &name, std::uint32_t flags = 0) {
        shmkit_event *h;
        detail::check(shmkit_event_create(name.c_str(), flags, &h));
        return event(h);
    }
    static event open(const std::string &name) {
        shmkit_event *h;
        detail::check(shmkit_event_open(name.c_str(), &h));
        return event(h);
    }
    static event create_or_open(const std::string &name, std::uint32_t flags = 0) {
        shmkit_event *h;
        detail::check(shmkit_event_create_or_open(name.c_str(), flags, &h));
        return event(h);
    }
    /// A new event at `offset` of `segment` (see mutex::init_in).
    static event init_in(const shm &segment, std::uint64_t offset, std::uint32_t flags = 0) {
        shmkit_event *h;
        detail::check(shmkit_event_init_in(segment.c_handle(), offset, flags, &h));
        return event(h);
    }
    /// Opens the event at `offset` of `segment`.
    static event open_in(const shm &segment, std::uint64_t offset) {
        shmkit_event *h;
        detail::check(shmkit_event_open_in(segment.c_handle(), offset, &h));
        return event(h);
    }
    void set() { detail::check(shmkit_event_set(h_.get())); }
    void reset() { detail::check(shmkit_event_reset(h_.get())); }
    bool is_set() const {
        bool b;
        detail::check(shmkit_event_is_set(h_.get(), &b));
        return b;
    }
    /// Waits until set; false if not set now (timeout 0) or `timeout` passed.
    bool wait(milliseconds timeout = forever) {
        return detail::waited(shmkit_event_wait(h_.get(), detail::ms(timeout)));
    }
    /// Whether it is set now (an auto-reset event's signal is taken).
    bool try_wait() { return wait(milliseconds(0)); }

    /// A descriptor for an event loop (see shmkit::pollable); makes this object
    /// pollable: a try_* that finds nothing arms it. Edge-triggered: when it is
    /// ready, call the try_* until it finds nothing.
    shmkit::pollable pollable() { return detail::make_pollable(shmkit_event_pollable, h_.get()); }
    /// Calls `f` once, on shmkit's thread, when this object may be ready (or is
    /// closed), or at once, here, if it is ready now; makes it pollable. `f` must
    /// return quickly and must not throw (std::terminate).
    void on_ready(std::function<void()> f) { detail::on_ready(shmkit_event_on_ready, h_.get(), std::move(f)); }

    /// Closes now, from any thread: a call blocked on this object on another
    /// thread throws shmkit::error SHMKIT_ERR_CLOSED, and later calls throw
    /// SHMKIT_ERR_BAD_HANDLE. The destructor closes too.
    void close() { h_.close(); }

private:
    explicit event(shmkit_event *h) : h_(h) {}
    detail::handle<shmkit_event, shmkit_event_close> h_;
};

/// Channel options (0: default, or whatever the existing channel has).
struct channel_options {
    std::uint64_t capacity = 0;
    std::uint64_t max_message = 0;
    /// Queue: how many senders (Rust's max_senders; 0 = default 1: a queue
    /// admits ONE sender). Broadcast: how many subscribers (default 64).
    std::uint32_t max_peers = 0;
    std::uint32_t flags = 0;
    const shmkit_channel_options *c() const { return reinterpret_cast<const shmkit_channel_options *>(this); }
};
static_assert(sizeof(channel_options) == sizeof(shmkit_channel_options), "layout");

class sender;

/// Bytes reserved in the ring: fill data(), then commit(). Cancelled if destroyed
/// uncommitted.
class reservation {
public:
    reservation(reservation &&o) noexcept : s_(std::exchange(o.s_, nullptr)), d_(o.d_) {}
    reservation(const reservation &) = delete;
    reservation &operator=(const reservation &) = delete;
    reservation &operator=(reservation &&) = delete;
    ~reservation() {
        if (s_) shmkit_sender_cancel(s_);
    }
    mutable_bytes data() const noexcept { return d_; }
    void commit() { detail::check(shmkit_sender_commit(std::exchange(s_, nullptr))); }

private:
    friend class sender;
    reservation(shmkit_sender *s, mutable_bytes d) : s_(s), d_(d) {}
    shmkit_sender *s_;
    mutable_bytes d_;
};

/// The sending end of a queue channel.
class sender {
public:
    static sender connect(const std::string &name, const channel_options &o = {}) {
        shmkit_sender *h;
        detail::check(shmkit_sender_connect(name.c_str(), o.c(), &h));
        return sender(h);
    }
    void send(bytes msg, milliseconds timeout = forever) {
        detail::check(shmkit_sender_send(h_.get(), msg.data, msg.size, detail::ms(timeout)));
    }
    /// Sends if there is room now; false if not (on a pollable sender, its
    /// descriptor is then armed for when room may have come).
    bool try_send(bytes msg) {
        shmkit_status s = shmkit_sender_send(h_.get(), msg.data, msg.size, 0);
        if (s == SHMKIT_ERR_WOULD_BLOCK) return false;
        detail::check(s);
        return true;
    }
    /// Zero-copy: write into the reservation's data(), then commit().
    reservation reserve(std::size_t len, milliseconds timeout = forever) {
        std::uint8_t *d;
        detail::check(shmkit_sender_reserve(h_.get(), len, detail::ms(timeout), &d));
        return reservation(h_.get(), {d, len});
    }

    /// A descriptor for an event loop (see shmkit::pollable); makes this object
    /// pollable: a try_* that finds nothing arms it. Edge-triggered: when it is
    /// ready, call the try_* until it finds nothing.
    shmkit::pollable pollable() { return detail::make_pollable(shmkit_sender_pollable, h_.get()); }
    /// Calls `f` once, on shmkit's thread, when this object may be ready (or is
    /// closed), or at once, here, if it is ready now; makes it pollable. `f` must
    /// return quickly and must not throw (std::terminate).
    void on_ready(std::function<void()> f) { detail::on_ready(shmkit_sender_on_ready, h_.get(), std::move(f)); }

    /// Closes now, from any thread: a call blocked on this object on another
    /// thread throws shmkit::error SHMKIT_ERR_CLOSED, and later calls throw
    /// SHMKIT_ERR_BAD_HANDLE. The destructor closes too.
    void close() { h_.close(); }

private:
    explicit sender(shmkit_sender *h) : h_(h) {}
    detail::handle<shmkit_sender, shmkit_sender_close> h_;
};

/// The receiving end of a queue channel.
class receiver {
public:
    static receiver connect(const std::string &name, const channel_options &o = {}) {
        shmkit_receiver *h;
        detail::check(shmkit_receiver_connect(name.c_str(), o.c(), &h));
        return receiver(h);
    }
    /// Receives into `buf`; returns the length. A longer message stays queued:
    /// shmkit::error SHMKIT_ERR_BUFFER_TOO_SMALL with count() = its length.
    std::size_t recv_into(mutable_bytes buf, milliseconds timeout = forever) {
        std::size_t len = 0;
        shmkit_status s = shmkit_receiver_recv(h_.get(), buf.data, buf.size, &len, detail::ms(timeout));
        if (s != SHMKIT_OK) throw error(s, shmkit_last_error()).with_count(len);
        return len;
    }
    /// Receives the next message into a new vector.
    std::vector<std::uint8_t> recv(milliseconds timeout = forever) {
        std::vector<std::uint8_t> out;
        recv_with([&](bytes m) { out.assign(m.data, m.data + m.size); }, timeout);
        return out;
    }
    /// The next message if there is one now; nullopt if not (which arms a
    /// pollable receiver's descriptor). Throws for the rest
    /// (SHMKIT_ERR_DISCONNECTED, SHMKIT_ERR_BUFFER_TOO_SMALL with count()...).
    std::optional<std::size_t> try_recv_into(mutable_bytes buf) {
        std::size_t len = 0;
        shmkit_status s = shmkit_receiver_recv(h_.get(), buf.data, buf.size, &len, 0);
        if (s == SHMKIT_ERR_WOULD_BLOCK) return std::nullopt;
        if (s != SHMKIT_OK) throw error(s, shmkit_last_error()).with_count(len);
        return len;
    }
    /// The next message in a new vector if there is one now (see try_recv_into).
    std::optional<std::vector<std::uint8_t>> try_recv() {
        std::vector<std::uint8_t> out;
        auto keep = [&](bytes m) { out.assign(m.data, m.data + m.size); };
        detail::callback<decltype(keep)> cb{keep};
        shmkit_status s = shmkit_receiver_recv_with(h_.get(), &detail::call_fn<decltype(keep)>, cb.user(), 0);
        if (s == SHMKIT_ERR_WOULD_BLOCK) return std::nullopt;
        cb.finish(s);
        return out;
    }
    /// Lends the next message to `f(shmkit::bytes)` without copying it. An
    /// exception `f` throws is rethrown here (the message is consumed).
    template <class F> void recv_with(F &&f, milliseconds timeout = forever) {
        using Fn = std::remove_reference_t<F>;
        detail::callback<Fn> cb{f};
        cb.finish(shmkit_receiver_recv_with(h_.get(), &detail::call_fn<Fn>, cb.user(), detail::ms(timeout)));
    }

    /// A descriptor for an event loop (see shmkit::pollable); makes this object
    /// pollable: a try_* that finds nothing arms it. Edge-triggered: when it is
    /// ready, call the try_* until it finds nothing.
    shmkit::pollable pollable() { return detail::make_pollable(shmkit_receiver_pollable, h_.get()); }
    /// Calls `f` once, on shmkit's thread, when this object may be ready (or is
    /// closed), or at once, here, if it is ready now; makes it pollable. `f` must
    /// return quickly and must not throw (std::terminate).
    void on_ready(std::function<void()> f) { detail::on_ready(shmkit_receiver_on_ready, h_.get(), std::move(f)); }

    /// Closes now, from any thread: a call blocked on this object on another
    /// thread throws shmkit::error SHMKIT_ERR_CLOSED, and later calls throw
    /// SHMKIT_ERR_BAD_HANDLE. The destructor closes too.
    void close() { h_.close(); }

private:
    explicit receiver(shmkit_receiver *h) : h_(h) {}
    detail::handle<shmkit_receiver, shmkit_receiver_close> h_;
};

/// The publisher of a broadcast channel.
class publisher {
public:
    static publisher connect(const std::string &name, const channel_options &o = {}) {
        shmkit_publisher *h;
        detail::check(shmkit_publisher_connect(name.c_str(), o.c(), &h));
        return publisher(h);
    }
    void publish(bytes msg) { detail::check(shmkit_publisher_publish(h_.get(), msg.data, msg.size)); }

    /// Closes now, from any thread: a call blocked on this object on another
    /// thread throws shmkit::error SHMKIT_ERR_CLOSED, and later calls throw
    /// SHMKIT_ERR_BAD_HANDLE. The destructor closes too.
    void close() { h_.close(); }

private:
    explicit publisher(shmkit_publisher *h) : h_(h) {}
    detail::handle<shmkit_publisher, shmkit_publisher_close> h_;
};

/// A subscriber of a broadcast channel. recv throws shmkit::error
/// SHMKIT_ERR_LAGGED (count(): messages missed) when it fell behind.
class subscriber {
public:
    static subscriber connect(const std::string &name, const channel_options &o = {}) {
        shmkit_subscriber *h;
        detail::check(shmkit_subscriber_connect(name.c_str(), o.c(), &h));
        return subscriber(h);
    }
    std::size_t recv_into(mutable_bytes buf, milliseconds timeout = forever) {
        std::size_t len = 0;
        std::uint64_t missed = 0;
        shmkit_status s = shmkit_subscriber_recv(h_.get(), buf.data, buf.size, &len, detail::ms(timeout), &missed);
        if (s != SHMKIT_OK) throw error(s, shmkit_last_error()).with_count(s == SHMKIT_ERR_LAGGED ? missed : len);
        return len;
    }
    /// The next message if there is one now; nullopt if not (which arms a
    /// pollable subscriber's descriptor). SHMKIT_ERR_LAGGED and the rest throw.
    std::optional<std::size_t> try_recv_into(mutable_bytes buf) {
        std::size_t len = 0;
        std::uint64_t missed = 0;
        shmkit_status s = shmkit_subscriber_recv(h_.get(), buf.data, buf.size, &len, 0, &missed);
        if (s == SHMKIT_ERR_WOULD_BLOCK) return std::nullopt;
        if (s != SHMKIT_OK) throw error(s, shmkit_last_error()).with_count(s == SHMKIT_ERR_LAGGED ? missed : len);
        return len;
    }
    /// Lends the next message to `f(shmkit::bytes)` without copying it; an
    /// exception `f` throws is rethrown here.
    template <class F> void recv_with(F &&f, milliseconds timeout = forever) {
        using Fn = std::remove_reference_t<F>;
        detail::callback<Fn> cb{f};
        std::uint64_t missed = 0;
        shmkit_status s =
            shmkit_subscriber_recv_with(h_.get(), &detail::call_fn<Fn>, cb.user(), detail::ms(timeout), &missed);
        if (cb.thrown) std::rethrow_exception(cb.thrown);
        if (s != SHMKIT_OK) throw error(s, shmkit_last_error()).with_count(missed);
    }

    /// A descriptor for an event loop (see shmkit::pollable); makes this object
    /// pollable: a try_* that finds nothing arms it. Edge-triggered: when it is
    /// ready, call the try_* until it finds nothing.
    shmkit::pollable pollable() { return detail::make_pollable(shmkit_subscriber_pollable, h_.get()); }
    /// Calls `f` once, on shmkit's thread, when this object may be ready (or is
    /// closed), or at once, here, if it is ready now; makes it pollable. `f` must
    /// return quickly and must not throw (std::terminate).
    void on_ready(std::function<void()> f) { detail::on_ready(shmkit_subscriber_on_ready, h_.get(), std::move(f)); }

    /// Closes now, from any thread: a call blocked on this object on another
    /// thread throws shmkit::error SHMKIT_ERR_CLOSED, and later calls throw
    /// SHMKIT_ERR_BAD_HANDLE. The destructor closes too.
    void close() { h_.close(); }

private:
    explicit subscriber(shmkit_subscriber *h) : h_(h) {}
    detail::handle<shmkit_subscriber, shmkit_subscriber_close> h_;
};

/// A request/response client.
class rpc_client {
public:
    static rpc_client connect(const std::string &name) {
        shmkit_rpc_client *h;
        detail::check(shmkit_rpc_client_connect(name.c_str(), &h));
        return rpc_client(h);
    }
    std::vector<std::uint8_t> call(bytes request, milliseconds timeout = forever) {
        std::vector<std::uint8_t> out;
        auto keep = [&](bytes m) { out.assign(m.data, m.data + m.size); };
        call_with(request, keep, timeout);
        return out;
    }
    /// Sends `request` and lends the reply to `f(shmkit::bytes)` without a copy;
    /// an exception `f` throws is rethrown here.
    template <class F> void call_with(bytes request, F &&f, milliseconds timeout = forever) {
        using Fn = std::remove_reference_t<F>;
        detail::callback<Fn> cb{f};
        cb.finish(shmkit_rpc_client_call_with(h_.get(), request.data, request.size, &detail::call_fn<Fn>,
                                              cb.user(), detail::ms(timeout)));
    }
    /// Sends `request` without waiting for the reply (only, up to `timeout`, for
    /// room in the request queue); collect it with finish_call/try_finish_call.
    void start_call(bytes request, milliseconds timeout = forever) {
        detail::check(shmkit_rpc_client_start_call(h_.get(), request.data, request.size, detail::ms(timeout)));
    }
    /// The reply to the started call, waiting up to `timeout` (a timeout leaves
    /// the call pending).
    std::vector<std::uint8_t> finish_call(milliseconds timeout = forever) {
        auto r = finish(detail::ms(timeout));
        if (!r) throw error(SHMKIT_ERR_TIMEOUT, shmkit_last_error());
        return *r;
    }
    /// The reply to the started call if it has come; nullopt if not (which arms
    /// a pollable client's descriptor).
    std::optional<std::vector<std::uint8_t>> try_finish_call() { return finish(0); }

    /// A descriptor for an event loop (see shmkit::pollable); makes this object
    /// pollable: a try_* that finds nothing arms it. Edge-triggered: when it is
    /// ready, call the try_* until it finds nothing.
    shmkit::pollable pollable() { return detail::make_pollable(shmkit_rpc_client_pollable, h_.get()); }
    /// Calls `f` once, on shmkit's thread, when this object may be ready (or is
    /// closed), or at once, here, if it is ready now; makes it pollable. `f` must
    /// return quickly and must not throw (std::terminate).
    void on_ready(std::function<void()> f) { detail::on_ready(shmkit_rpc_client_on_ready, h_.get(), std::move(f)); }

    /// Closes now, from any thread: a call blocked on this object on another
    /// thread throws shmkit::error SHMKIT_ERR_CLOSED, and later calls throw
    /// SHMKIT_ERR_BAD_HANDLE. The destructor closes too.
    void close() { h_.close(); }

private:
    std::optional<std::vector<std::uint8_t>> finish(std::int64_t ms) {
        std::vector<std::uint8_t> out(256);
        std::size_t len = 0;
        shmkit_status s = shmkit_rpc_client_finish_call(h_.get(), out.data(), out.size(), &len, ms);
        if (s == SHMKIT_ERR_BUFFER_TOO_SMALL) {
            out.resize(len);
            s = shmkit_rpc_client_last_reply(h_.get(), out.data(), out.size(), &len);
        }
        if (s == SHMKIT_ERR_WOULD_BLOCK || (ms != 0 && s == SHMKIT_ERR_TIMEOUT)) return std::nullopt;
        detail::check(s);
        out.resize(len);
        return out;
    }
    explicit rpc_client(shmkit_rpc_client *h) : h_(h) {}
    detail::handle<shmkit_rpc_client, shmkit_rpc_client_close> h_;
};

/// A request/response server.
class rpc_server {
public:
    static rpc_server bind(const std::string &name) {
        shmkit_rpc_server *h;
        detail::check(shmkit_rpc_server_bind(name.c_str(), &h));
        return rpc_server(h);
    }
    /// Receives one request and answers it with `handler(request)` (a byte container).
    template <class F> void serve_one(F &&handler, milliseconds timeout = forever) {
        std::vector<std::uint8_t> req(4096);
        std::size_t len = 0;
        shmkit_status s = shmkit_rpc_server_recv(h_.get(), req.data(), req.size(), &len, detail::ms(timeout));
        if (s == SHMKIT_ERR_BUFFER_TOO_SMALL) {
            req.resize(len);
            s = shmkit_rpc_server_recv(h_.get(), req.data(), req.size(), &len, detail::ms(timeout));
        }
        detail::check(s);
        req.resize(len);
        auto answer = handler(bytes(req));
        bytes a(answer);
        detail::check(shmkit_rpc_server_reply(h_.get(), a.data, a.size));
    }
    /// Answers one request with `handler(request)` if one is there now; false if
    /// not (which arms a pollable server's descriptor).
    template <class F> bool try_serve_one(F &&handler) {
        std::vector<std::uint8_t> req(4096);
        std::size_t len = 0;
        shmkit_status s = shmkit_rpc_server_recv(h_.get(), req.data(), req.size(), &len, 0);
        if (s == SHMKIT_ERR_WOULD_BLOCK) return false;
        if (s == SHMKIT_ERR_BUFFER_TOO_SMALL) {
            req.resize(len);
            s = shmkit_rpc_server_recv(h_.get(), req.data(), req.size(), &len, 0);
        }
        detail::check(s);
        req.resize(len);
        auto answer = handler(bytes(req));
        bytes a(answer);
        detail::check(shmkit_rpc_server_reply(h_.get(), a.data, a.size));
        return true;
    }

    /// A descriptor for an event loop (see shmkit::pollable); makes this object
    /// pollable: a try_* that finds nothing arms it. Edge-triggered: when it is
    /// ready, call the try_* until it finds nothing.
    shmkit::pollable pollable() { return detail::make_pollable(shmkit_rpc_server_pollable, h_.get()); }
    /// Calls `f` once, on shmkit's thread, when this object may be ready (or is
    /// closed), or at once, here, if it is ready now; makes it pollable. `f` must
    /// return quickly and must not throw (std::terminate).
    void on_ready(std::function<void()> f) { detail::on_ready(shmkit_rpc_server_on_ready, h_.get(), std::move(f)); }

    /// Closes now, from any thread: a call blocked on this object on another
    /// thread throws shmkit::error SHMKIT_ERR_CLOSED, and later calls throw
    /// SHMKIT_ERR_BAD_HANDLE. The destructor closes too.
    void close() { h_.close(); }

private:
    explicit rpc_server(shmkit_rpc_server *h) : h_(h) {}
    detail::handle<shmkit_rpc_server, shmkit_rpc_server_close> h_;
};

/// A POSIX named semaphore (`sem_open`), to meet programs that use one; Unix
/// only (elsewhere its calls throw SHMKIT_ERR_UNSUPPORTED).
class posix_semaphore {
public:
    /// Creates (`exclusive`: fail if it exists) or opens `os_name` ("/name").
    static posix_semaphore create(const std::string &os_name, std::uint32_t initial, bool exclusive = false) {
        shmkit_posix_semaphore *h;
        detail::check(shmkit_posix_semaphore_create(os_name.c_str(), initial, exclusive, &h));
        return posix_semaphore(h);
    }
    static posix_semaphore open(const std::string &os_name) {
        shmkit_posix_semaphore *h;
        detail::check(shmkit_posix_semaphore_open(os_name.c_str(), &h));
        return posix_semaphore(h);
    }
    /// `sem_unlink`.
    static void remove(const std::string &os_name) { detail::check(shmkit_posix_semaphore_remove(os_name.c_str())); }
    /// `sem_wait`; false if none was free (timeout 0) or `timeout` passed.
    bool wait(milliseconds timeout = forever) {
        return detail::waited(shmkit_posix_semaphore_wait(h_.get(), detail::ms(timeout)));
    }
    /// `sem_post`.
    void post() { detail::check(shmkit_posix_semaphore_post(h_.get())); }
    void close() { h_.close(); }

private:
    explicit posix_semaphore(shmkit_posix_semaphore *h) : h_(h) {}
    detail::handle<shmkit_posix_semaphore, shmkit_posix_semaphore_close> h_;
};

/// Win32 named objects (CreateSemaphore, CreateMutex, CreateEvent), to meet
/// programs that use them; Windows only (elsewhere SHMKIT_ERR_UNSUPPORTED).
namespace native {

class semaphore {
public:
    /// Creates (`exclusive`: fail if it exists) or opens `os_name`.
    static semaphore create(const std::string &os_name, std::uint32_t initial, std::uint32_t max,
                            bool exclusive = false) {
        shmkit_native_semaphore *h;
        detail::check(shmkit_native_semaphore_create(os_name.c_str(), initial, max, exclusive, &h));
        return semaphore(h);
    }
    static semaphore open(const std::string &os_name) {
        shmkit_native_semaphore *h;
        detail::check(shmkit_native_semaphore_open(os_name.c_str(), &h));
        return semaphore(h);
    }
    bool wait(milliseconds timeout = forever) {
        return detail::waited(shmkit_native_semaphore_wait(h_.get(), detail::ms(timeout)));
    }
    /// Adds `n` units; returns the count before.
    std::uint32_t release(std::uint32_t n = 1) {
        std::uint32_t before;
        detail::check(shmkit_native_semaphore_release(h_.get(), n, &before));
        return before;
    }
    void close() { h_.close(); }

private:
    explicit semaphore(shmkit_native_semaphore *h) : h_(h) {}
    detail::handle<shmkit_native_semaphore, shmkit_native_semaphore_close> h_;
};

/// A Win32 mutex: lock and unlock on the same thread (Win32's rule).
class mutex {
public:
    static mutex create(const std::string &os_name, bool exclusive = false) {
        shmkit_native_mutex *h;
        detail::check(shmkit_native_mutex_create(os_name.c_str(), exclusive, &h));
        return mutex(h);
    }
    /// Locks; false if not free now (timeout 0) or `timeout` passed. Throws
    /// SHMKIT_ERR_OWNER_DIED (the lock is held: its last holder died).
    bool lock(milliseconds timeout = forever) {
        return detail::waited(shmkit_native_mutex_lock(h_.get(), detail::ms(timeout)));
    }
    void unlock() { detail::check(shmkit_native_mutex_unlock(h_.get())); }
    void close() { h_.close(); }

private:
    explicit mutex(shmkit_native_mutex *h) : h_(h) {}
    detail::handle<shmkit_native_mutex, shmkit_native_mutex_close> h_;
};

class event {
public:
    /// `flags` as for shmkit::event::create.
    static event create(const std::string &os_name, std::uint32_t flags = 0, bool exclusive = false) {
        shmkit_native_event *h;
        detail::check(shmkit_native_event_create(os_name.c_str(), flags, exclusive, &h));
        return event(h);
    }
    void set() { detail::check(shmkit_native_event_set(h_.get())); }
    bool wait(milliseconds timeout = forever) {
        return detail::waited(shmkit_native_event_wait(h_.get(), detail::ms(timeout)));
    }
    void close() { h_.close(); }

private:
    explicit event(shmkit_native_event *h) : h_(h) {}
    detail::handle<shmkit_native_event, shmkit_native_event_close> h_;
};

} // namespace native

} // namespace shmkit

#endif // SHMKIT_HPP
