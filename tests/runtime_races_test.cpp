// SPDX-License-Identifier: MIT
// Randomised cancellation and shutdown races, reproducible from a printed seed: rounds of
// concurrent reads and writes on pipes, eventfds and Unix sockets, accepts, timeouts, sleeps and
// polls, cancelled at random moments (stop tokens, when_any, deadlines), tasks destroyed with
// their ops in flight, and executors stopped and destroyed with work pending. Every op is
// counted (started, finished exactly once, or abandoned with its frame) and every byte and
// eventfd count is accounted for (neither lost nor doubled). docs/reliability.md, "Races".
//
//   test_runtime_races [--seed N] [--rounds N] [--sqpoll]   N decimal or 0x-hex
//   test_runtime_races --round SEED [--sqpoll]               only the round a failure named
//
// --sqpoll runs every round's executor on an SQPOLL ring (a kernel thread submits): SKIPs
// (exit 77) where SQPOLL is not permitted.

#include "test_executor.hpp"
#include "test_support.hpp"

#include <coil/coil.hpp>

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <stop_token>
#include <string>
#include <system_error>
#include <vector>

using namespace std::chrono_literals;

namespace {

bool use_sqpoll = false; // --sqpoll

// Every round's executor: the test's ring size, on an SQPOLL ring with --sqpoll.
coil::executor_options round_options()
{
    coil::executor_options options = coil_test::executor_options();
    if (use_sqpoll) {
        options.ring.sqpoll = true;
        options.ring.sqpoll_idle = std::chrono::milliseconds(10);
    }
    return options;
}

} // namespace

namespace {

// A round that takes a minute has lost a completion: fail (the seed was printed first).
[[noreturn]] void on_watchdog(int)
{
    static const char message[] = "races: watchdog: a round hung (lost completion?)\n";
    (void)!::write(2, message, sizeof message - 1);
    std::_Exit(1);
}

// --- the ledger --------------------------------------------------------------------------

enum class op_state : std::uint8_t { started, finished, abandoned };

/// Every op of a round: started once, then either finished once (its coroutine resumed with a
/// result) or abandoned (its frame destroyed while it was pending), never both, never twice.
struct ledger {
    std::vector<op_state> ops;
    std::vector<std::string> failures;
    unsigned long long canceled = 0;
    unsigned long long timed_out = 0;
    /// Sockets accept ops handed to their coroutines. In a stopped round some are closed
    /// unseen by the acceptor: a task holding one in its result was destroyed unresumed.
    std::size_t sockets_accepted = 0;

    void fail(std::string what)
    {
        if (failures.size() < 20)
            failures.push_back(std::move(what));
    }
    std::size_t start()
    {
        ops.push_back(op_state::started);
        return ops.size() - 1;
    }
};

/// Lives in the frame of the coroutine that awaits one op.
class op_guard {
public:
    explicit op_guard(ledger& l) : ledger_(l), id_(l.start()) {}
    op_guard(const op_guard&) = delete;
    op_guard& operator=(const op_guard&) = delete;
    ~op_guard()
    {
        if (done_)
            return;
        if (ledger_.ops[id_] != op_state::started)
            ledger_.fail("an op abandoned after it had ended");
        ledger_.ops[id_] = op_state::abandoned;
    }
    /// Records how the op ended; `expected` says whether its error is one the op may give.
    void finish(const std::error_code& error)
    {
        if (ledger_.ops[id_] != op_state::started)
            ledger_.fail("an op finished twice");
        ledger_.ops[id_] = op_state::finished;
        done_ = true;
        if (error == std::errc::operation_canceled)
            ++ledger_.canceled;
        else if (error == std::errc::timed_out)
            ++ledger_.timed_out;
        else if (error)
            ledger_.fail("an op ended with " + error.message());
    }

private:
    ledger& ledger_;
    std::size_t id_;
    bool done_ = false;
};

// --- one round ---------------------------------------------------------------------------

std::byte pattern(std::size_t stream, std::uint64_t i)
{
    return static_cast<std::byte>((i * 131 + stream * 17 + (i >> 9)) & 0xff);
}

enum class op_kind { pipe, socket };

/// A byte stream (a pipe or a Unix socket pair with small buffers, so writers block) with one
/// writer and one reader task.
struct byte_stream {
    std::size_t id = 0;
    op_kind kind = op_kind::pipe;
    coil_test::unique_fd read_end;
    coil_test::unique_fd write_end;
    std::uint64_t target = 0;      // bytes the writer sends in all
    std::uint64_t written = 0;     // bytes the kernel took
    std::uint64_t pending = 0;     // bytes of the write in flight (lost to a stop if it lands)
    std::vector<std::byte> received;
    std::optional<std::stop_source> reader_stop;
    std::optional<std::stop_source> writer_stop;
};

/// An eventfd: one task adds 1, 2, 3, ... to it, another reads the counter.
struct counter {
    coil_test::unique_fd fd;
    std::uint64_t adds = 0;         // how many values the writer adds (1..adds)
    std::uint64_t sum_written = 0;  // sum of the adds the kernel took
    std::uint64_t pending = 0;      // the add in flight
    std::uint64_t sum_read = 0;
    std::optional<std::stop_source> reader_stop;
    std::optional<std::stop_source> writer_stop;
};

struct round_state {
    round_state(std::uint64_t seed, ledger& l) : rng(seed), book(l) {}
    std::mt19937_64 rng;
    ledger& book;
    std::vector<std::unique_ptr<byte_stream>> streams;
    std::vector<std::unique_ptr<counter>> counters;
    coil_test::unique_fd idle_pipe_read, idle_pipe_write, idle_eventfd;
    coil::net::listener server;
    std::vector<coil_test::unique_fd> clients; // connected to `server`
    std::set<std::uint64_t> accepted_ids;      // the id each accepted client sent
    std::size_t accepted = 0;
    std::optional<std::stop_source> acceptor_stop;
    std::vector<std::optional<std::stop_source>*> stoppable;
    std::size_t workers_running = 0;
    bool stop_executor = false;       // this round ends with executor::stop()
    std::size_t stop_after_turns = 0; // ... after this many chaos turns
    std::size_t spawned_never_run = 0;
    std::size_t never_run_destroyed = 0;

    std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : rng() % n; }
    std::chrono::microseconds short_delay() { return std::chrono::microseconds(below(400)); }
};

/// How an op is made cancellable: not at all (only by its task's scope), by a stop source the
/// chaos task may trigger, by a deadline, or by losing a when_any to a sleep.
enum class cancel_mode { none, stop_token, deadline, when_any };

cancel_mode pick_mode(round_state& rs)
{
    return static_cast<cancel_mode>(rs.below(4));
}

using size_result = coil::result<std::size_t>;

// The ops, each awaited in its own coroutine that carries its ledger entry.

/// `op`, with a deadline `d` when `d` is positive.
template <class Op>
coil::operation<Op> with_deadline(coil::operation<Op>&& op, std::chrono::nanoseconds d)
{
    if (d.count() > 0)
        return std::move(op).with_timeout(d);
    return std::move(op);
}

coil::task<size_result> read_op(ledger& book, int fd, std::span<std::byte> buffer,
                                 std::chrono::nanoseconds deadline)
{
    op_guard guard(book);
    size_result r = co_await with_deadline(coil::read(fd, buffer, coil::current_position), deadline);
    guard.finish(r.error());
    co_return r;
}

coil::task<size_result> write_op(ledger& book, int fd, std::span<const std::byte> buffer,
                                  std::chrono::nanoseconds deadline)
{
    op_guard guard(book);
    size_result r = co_await with_deadline(coil::write(fd, buffer, coil::current_position), deadline);
    guard.finish(r.error());
    co_return r;
}

coil::task<size_result> recv_op(ledger& book, int fd, std::span<std::byte> buffer,
                                 std::chrono::nanoseconds deadline)
{
    op_guard guard(book);
    size_result r = co_await with_deadline(coil::net::recv(fd, buffer), deadline);
    guard.finish(r.error());
    co_return r;
}

coil::task<size_result> send_op(ledger& book, int fd, std::span<const std::byte> buffer,
                                 std::chrono::nanoseconds deadline)
{
    op_guard guard(book);
    size_result r = co_await with_deadline(coil::net::send(fd, buffer), deadline);
    guard.finish(r.error());
    co_return r;
}

coil::task<coil::result<coil::net::stream_socket>>
accept_op(ledger& book, const coil::net::listener& server, std::chrono::nanoseconds deadline)
{
    op_guard guard(book);
    coil::result<coil::net::stream_socket> r = co_await with_deadline(server.accept(), deadline);
    guard.finish(r.error());
    book.sockets_accepted += r.ok();
    co_return r;
}

coil::task<coil::result<void>> sleep_op(ledger& book, std::chrono::nanoseconds d)
{
    op_guard guard(book);
    coil::result<void> r = co_await coil::sleep_for(d);
    guard.finish(r.error());
    co_return r;
}

coil::task<coil::result<void>> poll_op(ledger& book, int fd, std::chrono::nanoseconds deadline)
{
    op_guard guard(book);
    coil::result<std::uint32_t> r = co_await with_deadline(coil::poll(fd, POLLIN), deadline);
    guard.finish(r.error());
    if (!r)
        co_return r.error();
    co_return coil::result<void>();
}

/// Awaits the op `make(deadline)` builds under a randomly chosen cancellation mode, with
/// `stop` as the slot for the stop source the chaos task may trigger. Whatever the mode, the
/// op's own result comes back exactly once: a when_any loser's result is taken from `losers`.
template <class Result, class Make>
coil::task<Result> cancellable(round_state& rs, std::optional<std::stop_source>& stop, Make make)
{
    switch (pick_mode(rs)) {
    case cancel_mode::none:
        co_return co_await make(std::chrono::nanoseconds(0));
    case cancel_mode::stop_token: {
        stop.emplace();
        Result r = co_await coil::with_stop_token(stop->get_token(), make(std::chrono::nanoseconds(0)));
        stop.reset();
        co_return r;
    }
    case cancel_mode::deadline:
        co_return co_await make(rs.short_delay() + 1us);
    case cancel_mode::when_any: {
        auto outcome = co_await coil::when_any(make(std::chrono::nanoseconds(0)),
                                               sleep_op(rs.book, rs.short_delay()));
        if (outcome.index() == 0)
            co_return std::move(std::get<0>(outcome.winner));
        if (auto& lost = std::get<0>(outcome.losers))
            co_return std::move(*lost);
        rs.book.fail("when_any lost a loser's result");
        co_return Result(std::make_error_code(std::errc::operation_canceled));
    }
    }
    co_return Result(std::make_error_code(std::errc::invalid_argument));
}

/// A cancelled or timed-out op is retried; any other error ends the worker.
bool retry(const std::error_code& e)
{
    return e == std::errc::operation_canceled || e == std::errc::timed_out;
}

coil::task<void> stream_writer(round_state& rs, byte_stream& s)
{
    std::array<std::byte, 512> chunk{};
    while (s.written < s.target) {
        const std::size_t n = std::min<std::uint64_t>(1 + rs.below(chunk.size()), s.target - s.written);
        for (std::size_t i = 0; i < n; ++i)
            chunk[i] = pattern(s.id, s.written + i);
        const std::span<const std::byte> bytes(chunk.data(), n);
        const int fd = s.write_end.get();
        s.pending = n;
        size_result r = co_await cancellable<size_result>(rs, s.writer_stop, [&](auto d) {
            return s.kind == op_kind::pipe ? write_op(rs.book, fd, bytes, d)
                                           : send_op(rs.book, fd, bytes, d);
        });
        if (r)
            s.written += r.value();
        else if (!retry(r.error()))
            break;
    }
    --rs.workers_running;
}

coil::task<void> stream_reader(round_state& rs, byte_stream& s)
{
    std::array<std::byte, 1024> buffer{};
    while (s.received.size() < s.target) {
        const std::span<std::byte> into(buffer.data(), 1 + rs.below(buffer.size()));
        const int fd = s.read_end.get();
        size_result r = co_await cancellable<size_result>(rs, s.reader_stop, [&](auto d) {
            return s.kind == op_kind::pipe ? read_op(rs.book, fd, into, d)
                                           : recv_op(rs.book, fd, into, d);
        });
        if (r && r.value() == 0) {
            rs.book.fail("end of stream before the writer was done");
            break;
        }
        if (r)
            s.received.insert(s.received.end(), buffer.begin(), buffer.begin() + r.value());
        else if (!retry(r.error()))
            break;
    }
    --rs.workers_running;
}

coil::task<void> counter_writer(round_state& rs, counter& c)
{
    std::uint64_t next = 1;
    while (next <= c.adds) {
        const std::uint64_t value = next;
        c.pending = value;
        const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(&value), sizeof value);
        size_result r = co_await cancellable<size_result>(rs, c.writer_stop, [&](auto d) {
            return write_op(rs.book, c.fd.get(), bytes, d);
        });
        if (r && r.value() == sizeof value) {
            c.sum_written += value;
            ++next;
        } else if (r || !retry(r.error())) {
            rs.book.fail("an eventfd write neither added its value nor was cancelled");
            break;
        }
    }
    --rs.workers_running;
}

coil::task<void> counter_reader(round_state& rs, counter& c)
{
    const std::uint64_t total = c.adds * (c.adds + 1) / 2;
    std::uint64_t value = 0;
    const std::span<std::byte> into(reinterpret_cast<std::byte*>(&value), sizeof value);
    while (c.sum_read < total) {
        size_result r = co_await cancellable<size_result>(rs, c.reader_stop, [&](auto d) {
            return read_op(rs.book, c.fd.get(), into, d);
        });
        if (r && r.value() == sizeof value) {
            c.sum_read += value;
        } else if (r || !retry(r.error())) {
            rs.book.fail("an eventfd read neither read the counter nor was cancelled");
            break;
        }
    }
    --rs.workers_running;
}

/// Connects the round's clients one by one (connect(2) to a loopback listener completes at
/// once), each sending its id, while accepts are cancelled around it.
coil::task<void> connector(round_state& rs, std::size_t count)
{
    const auto to = rs.server.local_address().value();
    for (std::uint64_t id = 0; id < count; ++id) {
        coil_test::unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (fd.get() < 0 || ::connect(fd.get(), to.data(), to.size()) != 0 ||
            ::send(fd.get(), &id, sizeof id, MSG_NOSIGNAL) != sizeof id) {
            rs.book.fail(std::string("a loopback client failed: ") + std::strerror(errno));
            break;
        }
        rs.clients.push_back(std::move(fd));
        (void)co_await sleep_op(rs.book, rs.short_delay());
    }
    --rs.workers_running;
}

/// Takes an accepted connection's id (sent before the accept could complete).
void record_accept(round_state& rs, const coil::net::stream_socket& conn)
{
    std::uint64_t id = 0;
    if (::recv(conn.fd(), &id, sizeof id, MSG_DONTWAIT) != sizeof id)
        rs.book.fail("an accepted connection had no id waiting");
    else if (!rs.accepted_ids.insert(id).second)
        rs.book.fail("a connection accepted twice");
    ++rs.accepted;
}

coil::task<void> acceptor(round_state& rs, std::size_t count)
{
    while (rs.accepted < count) {
        auto r = co_await cancellable<coil::result<coil::net::stream_socket>>(
            rs, rs.acceptor_stop, [&](auto d) { return accept_op(rs.book, rs.server, d); });
        if (r)
            record_accept(rs, r.value());
        else if (!retry(r.error()))
            break;
    }
    --rs.workers_running;
}

/// Deadlines and sleeps on things that never become ready: every one ends timed out or
/// cancelled.
coil::task<void> idler(round_state& rs, std::size_t count)
{
    std::optional<std::stop_source> stop;
    for (std::size_t i = 0; i < count; ++i) {
        std::array<std::byte, 8> buffer{};
        switch (rs.below(3)) {
        case 0: {
            auto r = co_await read_op(rs.book, rs.idle_pipe_read.get(), buffer, rs.short_delay() + 1us);
            if (r.error() != std::errc::timed_out)
                rs.book.fail("a read of an idle pipe did not time out");
            break;
        }
        case 1: {
            auto r = co_await poll_op(rs.book, rs.idle_eventfd.get(), rs.short_delay() + 1us);
            if (r.error() != std::errc::timed_out)
                rs.book.fail("a poll of an idle eventfd did not time out");
            break;
        }
        default: {
            auto r = co_await cancellable<coil::result<void>>(
                rs, stop, [&](auto d) { return sleep_op(rs.book, d + rs.short_delay()); });
            if (!r && !retry(r.error()))
                rs.book.fail("a sleep failed: " + r.error().message());
            break;
        }
        }
    }
    --rs.workers_running;
}

/// An op of a task the chaos task starts by hand and destroys at a random moment.
coil::task<void> victim(round_state& rs, unsigned kind)
{
    std::array<std::byte, 8> buffer{};
    switch (kind) {
    case 0:
        (void)co_await read_op(rs.book, rs.idle_pipe_read.get(), buffer, 0ns);
        break;
    case 1:
        (void)co_await poll_op(rs.book, rs.idle_eventfd.get(), 0ns);
        break;
    case 2:
        (void)co_await sleep_op(rs.book, 10s);
        break;
    default:
        (void)co_await read_op(rs.book, rs.idle_pipe_read.get(), buffer, rs.short_delay() + 1us);
        break;
    }
}

coil::task<void> never_run(round_state& rs)
{
    ++rs.never_run_destroyed; // only if it did run, which must not happen
    rs.book.fail("a task spawned after stop() ran");
    co_return;
}

/// Requests stops on random ops, starts and destroys victims, and (in a shutdown round) stops
/// the executor with everything in flight.
coil::task<void> chaos(round_state& rs, coil::executor& ex)
{
    std::vector<coil::task<void>> victims;
    std::size_t turn = 0;
    while (rs.workers_running > 0) {
        if (rs.stop_executor && turn == rs.stop_after_turns) {
            for (int i = 0; i < 8; ++i) {
                (void)ex.spawn(never_run(rs)); // detached; ~executor destroys it unrun
                ++rs.spawned_never_run;
            }
            ex.stop();
        }
        ++turn;
        switch (rs.below(6)) {
        case 0:
        case 1: {
            auto& slot = *rs.stoppable[rs.below(rs.stoppable.size())];
            if (slot)
                slot->request_stop();
            break;
        }
        case 2:
            if (victims.size() < 16) {
                victims.push_back(victim(rs, static_cast<unsigned>(rs.below(4))));
                victims.back().handle().resume(); // its op is queued now
            }
            break;
        case 3:
            if (!victims.empty()) {
                // Destroying the task abandons its op: cancelled, and waited for.
                victims.erase(victims.begin() + static_cast<std::ptrdiff_t>(rs.below(victims.size())));
            }
            break;
        default:
            break;
        }
        if (rs.below(2) == 0)
            co_await coil::yield();
        else
            (void)co_await sleep_op(rs.book, rs.short_delay());
    }
}

struct totals {
    unsigned long long rounds = 0, shutdown_rounds = 0, ops = 0, finished = 0, abandoned = 0,
                       canceled = 0, timed_out = 0, bytes = 0, counted = 0, accepts = 0,
                       never_run = 0;
};

/// Drains what is left in a non-blocking descriptor (pipes and sockets: bytes).
std::vector<std::byte> drain_bytes(int fd)
{
    std::vector<std::byte> rest;
    std::array<std::byte, 4096> buffer{};
    for (;;) {
        const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
        const ssize_t m = n < 0 && errno == ENOTSOCK ? ::read(fd, buffer.data(), buffer.size()) : n;
        if (m <= 0)
            break;
        rest.insert(rest.end(), buffer.begin(), buffer.begin() + m);
    }
    return rest;
}

void set_nonblocking(int fd)
{
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/// One round: builds the resources, runs the workers and the chaos task, then checks the ledger
/// and every byte. Returns false (having printed why) on a failure.
bool run_round(std::uint64_t seed, totals& sum)
{
    ledger book;
    round_state rs(seed, book);
    rs.stop_executor = rs.below(4) == 0;
    rs.stop_after_turns = rs.below(60);

    for (std::size_t i = 0; i < 5; ++i) {
        auto s = std::make_unique<byte_stream>();
        s->id = i;
        s->kind = i < 3 ? op_kind::pipe : op_kind::socket;
        if (s->kind == op_kind::pipe) {
            auto p = coil_test::make_pipe();
            ::fcntl(p.write_end.get(), F_SETPIPE_SZ, 4096); // writers block
            s->read_end = std::move(p.read_end);
            s->write_end = std::move(p.write_end);
        } else {
            int sv[2];
            if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
                throw std::system_error(errno, std::generic_category(), "socketpair");
            const int small = 4096;
            ::setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
            s->read_end = coil_test::unique_fd(sv[0]);
            s->write_end = coil_test::unique_fd(sv[1]);
        }
        s->target = 4096 + rs.below(16384);
        rs.stoppable.push_back(&s->reader_stop);
        rs.stoppable.push_back(&s->writer_stop);
        rs.streams.push_back(std::move(s));
    }
    for (std::size_t i = 0; i < 2; ++i) {
        auto c = std::make_unique<counter>();
        c->fd = coil_test::unique_fd(::eventfd(0, EFD_CLOEXEC));
        c->adds = 20 + rs.below(60);
        rs.stoppable.push_back(&c->reader_stop);
        rs.stoppable.push_back(&c->writer_stop);
        rs.counters.push_back(std::move(c));
    }
    {
        auto idle = coil_test::make_pipe();
        rs.idle_pipe_read = std::move(idle.read_end);
        rs.idle_pipe_write = std::move(idle.write_end);
        rs.idle_eventfd = coil_test::unique_fd(::eventfd(0, EFD_CLOEXEC));
    }
    auto server = coil::net::listener::bind(coil::net::address::loopback_v4(0), {.backlog = 256});
    if (!server)
        throw std::system_error(server.error(), "listen on loopback");
    rs.server = std::move(server.value());
    rs.stoppable.push_back(&rs.acceptor_stop);
    const std::size_t connections = 4 + rs.below(12);

    bool stopped = false;
    std::size_t in_flight_after = 0;
    unsigned long long orphans_closed = 0;
    {
        coil::executor ex(round_options());
        auto body = [&]() -> coil::task<void> {
            std::vector<coil::join_handle<void>> all;
            for (auto& s : rs.streams) {
                all.push_back(ex.spawn(stream_writer(rs, *s)));
                all.push_back(ex.spawn(stream_reader(rs, *s)));
            }
            for (auto& c : rs.counters) {
                all.push_back(ex.spawn(counter_writer(rs, *c)));
                all.push_back(ex.spawn(counter_reader(rs, *c)));
            }
            all.push_back(ex.spawn(connector(rs, connections)));
            all.push_back(ex.spawn(acceptor(rs, connections)));
            for (int i = 0; i < 3; ++i)
                all.push_back(ex.spawn(idler(rs, 10 + rs.below(20))));
            rs.workers_running = all.size();
            all.push_back(ex.spawn(chaos(rs, ex)));
            for (auto& h : all)
                co_await std::move(h);
        };
        try {
            ex.run(body());
        } catch (const std::system_error& e) {
            if (e.code() == std::errc::operation_canceled)
                stopped = true;
            else
                book.fail(std::string("run() threw: ") + e.what());
        } catch (const std::exception& e) {
            book.fail(std::string("run() threw: ") + e.what());
        }
        in_flight_after = ex.in_flight();
        orphans_closed = ex.stats().orphans_closed;
    }

    // The ledger: every op ended exactly once or was abandoned with its frame.
    std::size_t finished = 0, abandoned = 0;
    for (op_state s : book.ops) {
        if (s == op_state::started)
            book.fail("an op neither finished nor was abandoned (a lost completion)");
        finished += s == op_state::finished;
        abandoned += s == op_state::abandoned;
    }
    if (in_flight_after != 0)
        book.fail("ops still in flight after run() returned");
    if (rs.never_run_destroyed != 0)
        book.fail("tasks spawned after stop() ran");
    if (!stopped && rs.stop_executor && rs.workers_running != 0)
        book.fail("run() returned with workers still running");

    // The data. A round that ran to the end accounts for every byte and count exactly. In a
    // stopped round, stop() destroys tasks without resuming them, so the result of an op that
    // completed but whose task was not resumed before stop() reaches nobody: a read's bytes
    // left the kernel unseen (a gap of at most one read, 1024 bytes), a write's bytes reached
    // the kernel uncounted (at most the one write in flight, which the reader may even have
    // read). Nothing is ever doubled, reordered or corrupted.
    for (auto& s : rs.streams) {
        set_nonblocking(s->read_end.get());
        const std::vector<std::byte> rest = drain_bytes(s->read_end.get());
        const std::uint64_t got = s->received.size();
        // A write that completed during the drain may also have been read already: the
        // reader was resumed in the loop turn before stop(), the writer never again.
        const std::uint64_t limit = s->written + (stopped ? s->pending : 0);
        bool prefix = got <= limit;
        for (std::uint64_t i = 0; prefix && i < got; ++i)
            prefix = s->received[i] == pattern(s->id, i);
        // The smallest gap after which `rest` continues the pattern.
        std::optional<std::uint64_t> gap;
        for (std::uint64_t g = 0; prefix && !gap && g <= (stopped ? 1024u : 0u); ++g) {
            bool fits = got + g + rest.size() <= limit;
            for (std::uint64_t i = 0; fits && i < rest.size(); ++i)
                fits = rest[i] == pattern(s->id, got + g + i);
            if (fits)
                gap = g;
        }
        const std::string name = "stream " + std::to_string(s->id) + " (written " +
                                 std::to_string(s->written) + ", read " + std::to_string(got) +
                                 ", left " + std::to_string(rest.size()) + ")";
        if (!prefix || !gap)
            book.fail(name + ": bytes lost, doubled or corrupted");
        else if (!stopped && (got + rest.size() != s->target || s->written != s->target))
            book.fail(name + ": the stream did not end complete");
        sum.bytes += got;
    }
    for (auto& c : rs.counters) {
        std::uint64_t rest = 0;
        set_nonblocking(c->fd.get());
        if (::read(c->fd.get(), &rest, sizeof rest) != sizeof rest)
            rest = 0;
        if (c->sum_read + rest > c->sum_written + (stopped ? c->pending : 0))
            book.fail("an eventfd delivered more than was written");
        else if (!stopped && c->sum_read + rest != c->sum_written)
            book.fail("an eventfd lost counts");
        sum.counted += c->sum_read;
    }
    // A client's connect(2) returns once its side of the handshake is done; the listener
    // queues the connection when it has processed the client's last ACK, which the loopback
    // device may leave to ksoftirqd on a busy machine. So wait (up to a second) for every
    // connection to be accounted for: one that never arrives was lost.
    set_nonblocking(rs.server.fd());
    std::size_t left = 0;
    for (int wait = 0; wait < 1000; ++wait) {
        while (true) {
            const int fd = ::accept4(rs.server.fd(), nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0)
                break;
            ::close(fd);
            ++left;
        }
        if (book.sockets_accepted + orphans_closed + left >= rs.clients.size())
            break;
        pollfd listener{rs.server.fd(), POLLIN, 0};
        static_cast<void>(::poll(&listener, 1, 1));
    }
    if (book.sockets_accepted + orphans_closed + left != rs.clients.size())
        book.fail("connections: " + std::to_string(rs.clients.size()) + " made, " +
                  std::to_string(book.sockets_accepted) + " accepted (" +
                  std::to_string(rs.accepted) + " seen by the acceptor), " +
                  std::to_string(orphans_closed) +
                  " closed as orphans, " + std::to_string(left) + " left in the backlog");
    if (!stopped && (rs.accepted != connections || book.sockets_accepted != connections))
        book.fail("not every connection was accepted, or one was accepted unseen");

    ++sum.rounds;
    sum.shutdown_rounds += stopped;
    sum.ops += book.ops.size();
    sum.finished += finished;
    sum.abandoned += abandoned;
    sum.canceled += book.canceled;
    sum.timed_out += book.timed_out;
    sum.accepts += rs.accepted;
    sum.never_run += rs.spawned_never_run;

    if (book.failures.empty())
        return true;
    std::fprintf(stderr, "races: round seed 0x%llx (%s) failed (again: --round 0x%llx):\n",
                 static_cast<unsigned long long>(seed), stopped ? "stopped" : "ran to the end",
                 static_cast<unsigned long long>(seed));
    for (const auto& f : book.failures)
        std::fprintf(stderr, "  %s\n", f.c_str());
    return false;
}

std::uint64_t parse_number(const char* text, const char* what)
{
    char* end = nullptr;
    const unsigned long long v = std::strtoull(text, &end, 0);
    if (end == text || *end != '\0') {
        std::fprintf(stderr, "races: %s must be a number, not '%s'\n", what, text);
        std::exit(2);
    }
    return v;
}

} // namespace

int main(int argc, char* argv[])
{
    std::uint64_t seed = 0x5eedc0110003;
    std::uint64_t rounds = 100;
    std::optional<std::uint64_t> one_round;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--sqpoll") {
            use_sqpoll = true;
        } else if ((arg == "--seed" || arg == "--rounds" || arg == "--round") && i + 1 < argc) {
            const std::uint64_t v = parse_number(argv[++i], arg.c_str() + 2);
            if (arg == "--seed")
                seed = v;
            else if (arg == "--rounds")
                rounds = v;
            else
                one_round = v;
        } else {
            std::fprintf(stderr, "usage: %s [--seed N] [--rounds N] [--sqpoll] | --round SEED\n",
                         argv[0]);
            return 2;
        }
    }
    if (one_round) {
        totals sum;
        const bool ok = run_round(*one_round, sum);
        std::printf("races: round seed 0x%llx: %s\n", static_cast<unsigned long long>(*one_round),
                    ok ? "passed" : "FAILED");
        return ok ? 0 : 1;
    }
    std::printf("races: seed 0x%llx, %llu rounds, SQ entries %s%s (reproduce: %s --seed 0x%llx%s)\n",
                static_cast<unsigned long long>(seed), static_cast<unsigned long long>(rounds),
                coil_test::tiny_ring_entries() ? std::to_string(coil_test::tiny_ring_entries()).c_str()
                                               : "default",
                use_sqpoll ? ", SQPOLL" : "", argv[0], static_cast<unsigned long long>(seed),
                use_sqpoll ? " --sqpoll" : "");
    std::fflush(stdout);
    std::signal(SIGALRM, on_watchdog);
    std::signal(SIGPIPE, SIG_IGN);

    std::mt19937_64 seeds(seed);
    totals sum;
    bool ok = true;
    for (std::uint64_t r = 0; r < rounds; ++r) {
        ::alarm(60);
        try {
            ok = run_round(seeds(), sum) && ok;
        } catch (const std::exception& e) {
            std::fprintf(stderr, "races: round %llu: %s\n", static_cast<unsigned long long>(r), e.what());
            return 77; // setting up refused (no io_uring, no loopback): skip
        }
    }
    ::alarm(0);
    std::printf("races: %llu rounds (%llu stopped mid-flight), %llu ops: %llu finished once, "
                "%llu abandoned with their frame; %llu cancelled, %llu timed out; %llu bytes "
                "through pipes and sockets, eventfd sum %llu, %llu accepts; %llu tasks spawned "
                "after stop() destroyed unrun\n",
                sum.rounds, sum.shutdown_rounds, sum.ops, sum.finished, sum.abandoned, sum.canceled,
                sum.timed_out, sum.bytes, sum.counted, sum.accepts, sum.never_run);
    std::printf("races: %s\n", ok ? "passed" : "FAILED");
    return ok ? 0 : 1;
}
