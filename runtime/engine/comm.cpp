#include "runtime/engine/comm.hpp"

#include <mpi.h>
#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

#include "plan/error.hpp"

namespace dsv4 {
namespace {

// One tag per collective kind: ranks that disagree on the next collective wait on each other until the
// watchdog names them, instead of exchanging the wrong bytes.
enum Tag : int { kAlltoallv = 1, kAlltoallI64, kAllgather, kBroadcast, kBarrier, kQuery, kReply };

// The deadline comes from the environment so that mpirun -x DSV4_COLLECTIVE_TIMEOUT reaches every rank
// without a command-line option on each subcommand. nullopt-like: a negative value means "malformed".
double parse_timeout(const char* s) {
  if (!s || !*s) return 300;
  char* end = nullptr;
  const double v = std::strtod(s, &end);
  if (*end != '\0' || !std::isfinite(v) || v < 0) return -1;
  return v;
}

int checked_int(int64_t v, const char* what) {
  if (v < 0 || v > std::numeric_limits<int>::max())
    throw Error(std::string("MPI ") + what + " " + std::to_string(v) + " does not fit an int");
  return int(v);
}

}  // namespace

struct Comm::Requests {
  MPI_Comm comm = MPI_COMM_NULL;  // a duplicate of the world: collectives' messages never meet others
  std::vector<MPI_Request> req;   // pending sends and receives of the collective in progress
  std::vector<int> peer;          // peer of each request
  std::vector<int> done_idx;      // MPI_Testsome scratch
  std::vector<int64_t> replies;   // watchdog: the sequence number sent to each peer that asked
  std::vector<int> counts[4];     // MPI_Alltoallv's int counts and displacements (no-watchdog path)
};

namespace {

// The CPUs this process may run on (its affinity mask: mpirun's binding, taskset, cgroup CPU sets).
cpu_set_t affinity_mask() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0 || CPU_COUNT(&set) == 0)
    for (int c = 0; c < std::max(1, omp_get_num_procs()) && c < CPU_SETSIZE; ++c) CPU_SET(c, &set);
  return set;
}

}  // namespace

Comm::Comm(int* argc, char*** argv) : req_(std::make_unique<Requests>()) {
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local);
  MPI_Comm_size(local, &local_size_);
  // The ranks of this node whose CPU sets overlap this rank's share its CPUs (all of them when mpirun
  // does not bind, none when it binds each rank to its own cores).
  cpu_set_t mine = affinity_mask();
  std::vector<cpu_set_t> masks(static_cast<size_t>(local_size_));
  MPI_Allgather(&mine, int(sizeof mine), MPI_BYTE, masks.data(), int(sizeof mine), MPI_BYTE, local);
  MPI_Comm_free(&local);
  cpus_ = std::max(1, CPU_COUNT(&mine)), cpu_sharers_ = 0;
  for (cpu_set_t& m : masks) {
    cpu_set_t both;
    CPU_AND(&both, &m, &mine);
    cpu_sharers_ += CPU_COUNT(&both) > 0;
  }
  cpu_sharers_ = std::max(1, cpu_sharers_);
  MPI_Comm_dup(MPI_COMM_WORLD, &req_->comm);
  const size_t n = 2 * size_t(size_);
  req_->req.reserve(n), req_->peer.reserve(n), req_->done_idx.resize(n), req_->replies.resize(size_t(size_));
  for (auto& v : req_->counts) v.resize(size_t(size_));
  const char* env = std::getenv("DSV4_COLLECTIVE_TIMEOUT");
  timeout_s_ = parse_timeout(env);
  if (timeout_s_ < 0)
    abort(std::string("DSV4_COLLECTIVE_TIMEOUT: expected seconds >= 0 (0: no limit), got '") + env + "'");
}

int Comm::configure_threads(int requested) const {
  // More than a few threads per usable CPU only adds switching (and tens of thousands crashed thread
  // creation). The bound is 4x the CPUs of the affinity mask.
  const int limit = 4 * cpus_;
  if (requested > limit)
    throw Error("--threads " + std::to_string(requested) + ": at most " + std::to_string(limit) +
                " (4 x the " + std::to_string(cpus_) + " CPUs this process may run on)");
  if (requested < 0) throw Error("--threads " + std::to_string(requested) + ": must be >= 0 (0: automatic)");
  const int share = std::max(1, cpus_ / cpu_sharers_);  // this rank's fair share of the CPUs it may use
  const int n = requested > 0 ? requested : share;
  omp_set_num_threads(n);
  if (rank_ == 0)
    std::fprintf(stderr, "dsv4: rank 0 runs %d kernel thread(s) (it may run on %d CPU(s), shared by %d rank(s) of this node)\n",
                 n, cpus_, cpu_sharers_);
  if (n > share)
    std::fprintf(stderr, "dsv4: warning: rank %d runs %d threads on a share of %d CPU(s) (%d CPU(s) in its affinity mask, %d rank(s) "
                 "on them): they will take turns on the same CPU(s). mpirun binds each rank to one core when it starts 1-2 ranks; "
                 "give it cores with `--map-by slot:PE=%d` (or `--bind-to none`)\n",
                 rank_, n, share, cpus_, cpu_sharers_, n);
  return n;
}

Comm::~Comm() {
  MPI_Comm_free(&req_->comm);
  MPI_Finalize();
}

void Comm::post(bool send, const void* buf, int64_t bytes, int peer, int tag) const {
  const int n = checked_int(bytes, send ? "send count" : "recv count");
  MPI_Request r;
  if (send)
    MPI_Isend(buf, n, MPI_BYTE, peer, tag, req_->comm, &r);
  else
    MPI_Irecv(const_cast<void*>(buf), n, MPI_BYTE, peer, tag, req_->comm, &r);
  req_->req.push_back(r);
  req_->peer.push_back(peer);
}

void Comm::complete(const char* what) const {
  using clock = std::chrono::steady_clock;
  auto& q = *req_;
  const auto t0 = clock::now();
  // Short waits (the common case inside a step) are polled without sleeping; longer ones (a peer still
  // computing, e.g. a prefill chunk while this rank idles) sleep 20 us doubling to 1 ms between polls:
  // at most 1 ms of added latency, and the core goes to the ranks that compute.
  auto nap = std::chrono::microseconds(10);
  int pending = int(q.req.size());
  while (pending > 0) {
    int outcount = 0;
    MPI_Testsome(int(q.req.size()), q.req.data(), &outcount, q.done_idx.data(), MPI_STATUSES_IGNORE);
    if (outcount == MPI_UNDEFINED) break;  // no active request left
    pending -= outcount;
    if (pending == 0) break;
    if (outcount > 0) continue;
    const double waited = std::chrono::duration<double>(clock::now() - t0).count();
    if (timeout_s_ > 0 && waited > timeout_s_) timed_out(what);
    if (waited < 100e-6) continue;
    answer_queries();  // a peer whose deadline passed asks who is alive
    nap = std::min(nap * 2, std::chrono::microseconds(1000));
    std::this_thread::sleep_for(nap);
  }
  q.req.clear();
  q.peer.clear();
}

// A peer's watchdog fired and asks every rank whether it is alive: the answer is the number of the
// collective this rank waits in. Ranks that answer are waiting too; the ones that do not are the cause.
void Comm::answer_queries() const {
  auto& q = *req_;
  for (;;) {
    int flag = 0;
    MPI_Status st;
    MPI_Iprobe(MPI_ANY_SOURCE, kQuery, q.comm, &flag, &st);
    if (!flag) return;
    int64_t ignored = 0;
    MPI_Recv(&ignored, 1, MPI_INT64_T, st.MPI_SOURCE, kQuery, q.comm, MPI_STATUS_IGNORE);
    q.replies[size_t(st.MPI_SOURCE)] = int64_t(seq_);
    MPI_Request r;
    MPI_Isend(&q.replies[size_t(st.MPI_SOURCE)], 1, MPI_INT64_T, st.MPI_SOURCE, kReply, q.comm, &r);
    MPI_Request_free(&r);
  }
}

// Outside the watchdog: an idle server waits here for as long as no request comes (sleeping, not spinning).
void Comm::broadcast_idle(void* data, int64_t bytes, int root, int64_t max_sleep_us) const {
  if (bytes > std::numeric_limits<int>::max()) throw Error("MPI broadcast too large");
  MPI_Request req;
  MPI_Ibcast(data, int(bytes), MPI_BYTE, root, MPI_COMM_WORLD, &req);
  int64_t sleep_us = 20;
  for (int done = 0;;) {
    MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    if (done) break;
    std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
    sleep_us = std::min(max_sleep_us, sleep_us * 2);
  }
}

// The deadline passed: ask every peer which collective it waits in, give them a grace period to answer
// (they answer from their own wait loop), then abort naming the ranks that did not answer (stopped,
// hung, dead, or computing for longer than the deadline) and the collective each answering rank is in.
void Comm::timed_out(const char* what) const {
  auto& q = *req_;
  std::vector<int> missing;  // peers whose messages of this collective did not arrive / were not taken
  for (size_t i = 0; i < q.req.size(); ++i)
    if (q.req[i] != MPI_REQUEST_NULL) missing.push_back(q.peer[i]);
  std::sort(missing.begin(), missing.end());
  missing.erase(std::unique(missing.begin(), missing.end()), missing.end());

  const int64_t mine = int64_t(seq_);
  std::vector<int64_t> at(size_t(size_), -1);  // the collective each peer answered with; -1: no answer
  std::vector<MPI_Request> ask, hear;
  for (int p = 0; p < size_; ++p) {
    if (p == rank_) continue;
    MPI_Request r;
    MPI_Isend(&mine, 1, MPI_INT64_T, p, kQuery, q.comm, &r);
    ask.push_back(r);
    MPI_Irecv(&at[size_t(p)], 1, MPI_INT64_T, p, kReply, q.comm, &r);
    hear.push_back(r);
  }
  const double grace = std::min(5.0, std::max(1.0, timeout_s_ / 2));
  const auto t0 = std::chrono::steady_clock::now();
  for (int done = 0; !done && std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < grace;) {
    MPI_Testall(int(hear.size()), hear.data(), &done, MPI_STATUSES_IGNORE);
    answer_queries();  // other ranks' watchdogs may ask at the same time
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::string silent, waiting, listed;
  for (int p : missing) listed += (listed.empty() ? "" : ", ") + std::to_string(p);
  for (int p = 0; p < size_; ++p) {
    if (p == rank_) continue;
    if (at[size_t(p)] < 0) silent += (silent.empty() ? "" : ", ") + std::to_string(p);
    else waiting += (waiting.empty() ? "" : ", ") + std::to_string(p) + " in #" + std::to_string(at[size_t(p)]);
  }
  char head[200];
  std::snprintf(head, sizeof head, "collective watchdog: %s #%llu did not complete within %g s", what,
                (unsigned long long)seq_, timeout_s_);
  std::string msg = std::string(head) + "; no message from rank(s) " + listed + "; ";
  msg += silent.empty() ? "every rank answered within " : "rank(s) " + silent + " did not answer within ";
  char g[32];
  std::snprintf(g, sizeof g, "%g s", grace);
  msg += std::string(g) + " (stopped, hung, dead, or computing longer than the deadline)";
  if (!waiting.empty()) msg += "; waiting: rank " + waiting;
  msg += "; DSV4_COLLECTIVE_TIMEOUT=seconds sets the deadline, 0 = none";
  abort(msg);
}

void Comm::alltoallv(const void* send, std::span<const int64_t> sc, std::span<const int64_t> sd, void* recv,
                     std::span<const int64_t> rc, std::span<const int64_t> rd) const {
  ++seq_;
  if (timeout_s_ == 0) {  // no watchdog: MPI's own collective
    auto& [a, b, c, d] = req_->counts;
    for (int p = 0; p < size_; ++p) {
      const size_t i = size_t(p);
      a[i] = checked_int(sc[i], "send count"), b[i] = checked_int(sd[i], "send displacement");
      c[i] = checked_int(rc[i], "recv count"), d[i] = checked_int(rd[i], "recv displacement");
    }
    MPI_Alltoallv(send, a.data(), b.data(), MPI_BYTE, recv, c.data(), d.data(), MPI_BYTE, req_->comm);
    return;
  }
  const auto* s = static_cast<const uint8_t*>(send);
  auto* r = static_cast<uint8_t*>(recv);
  for (int p = 0; p < size_; ++p) {
    checked_int(sd[size_t(p)], "send displacement"), checked_int(rd[size_t(p)], "recv displacement");
    checked_int(sc[size_t(p)], "send count"), checked_int(rc[size_t(p)], "recv count");
  }
  // Receives first (each peer's message lands in place), then sends; the own block is a copy.
  for (int k = 1; k < size_; ++k) {
    const int p = (rank_ + size_ - k) % size_;
    post(false, r + rd[size_t(p)], rc[size_t(p)], p, kAlltoallv);
  }
  for (int k = 1; k < size_; ++k) {
    const int p = (rank_ + k) % size_;
    post(true, s + sd[size_t(p)], sc[size_t(p)], p, kAlltoallv);
  }
  const size_t me = size_t(rank_);
  if (sc[me] > rc[me])
    throw Error("MPI alltoallv: own block of " + std::to_string(sc[me]) + " bytes exceeds the " +
                std::to_string(rc[me]) + "-byte receive slot");
  if (sc[me] > 0) std::memcpy(r + rd[me], s + sd[me], size_t(sc[me]));
  complete("alltoallv");
}

void Comm::alltoall_i64(std::span<const int64_t> send, std::span<int64_t> recv) const {
  ++seq_;
  if (timeout_s_ == 0) return void(MPI_Alltoall(send.data(), 1, MPI_INT64_T, recv.data(), 1, MPI_INT64_T, req_->comm));
  for (int k = 1; k < size_; ++k) {
    const int p = (rank_ + size_ - k) % size_;
    post(false, &recv[size_t(p)], sizeof(int64_t), p, kAlltoallI64);
  }
  for (int k = 1; k < size_; ++k) {
    const int p = (rank_ + k) % size_;
    post(true, &send[size_t(p)], sizeof(int64_t), p, kAlltoallI64);
  }
  recv[size_t(rank_)] = send[size_t(rank_)];
  complete("alltoall_i64");
}

void Comm::allgather(const void* send, int64_t bytes, void* recv) const {
  ++seq_;
  if (bytes > std::numeric_limits<int>::max()) throw Error("MPI allgather block too large");
  if (timeout_s_ == 0) return void(MPI_Allgather(send, int(bytes), MPI_BYTE, recv, int(bytes), MPI_BYTE, req_->comm));
  auto* r = static_cast<uint8_t*>(recv);
  for (int k = 1; k < size_; ++k) {
    const int p = (rank_ + size_ - k) % size_;
    post(false, r + int64_t(p) * bytes, bytes, p, kAllgather);
  }
  for (int k = 1; k < size_; ++k) post(true, send, bytes, (rank_ + k) % size_, kAllgather);
  if (bytes > 0) std::memmove(r + int64_t(rank_) * bytes, send, size_t(bytes));
  complete("allgather");
}

void Comm::broadcast(void* data, int64_t bytes, int root) const {
  ++seq_;
  if (bytes > std::numeric_limits<int>::max()) throw Error("MPI broadcast too large");
  // Linear from the root: a waiting rank names the root if it never sends; the root names the ranks
  // that never take a large (rendezvous) message.
  if (rank_ == root) {
    for (int k = 1; k < size_; ++k) post(true, data, bytes, (rank_ + k) % size_, kBroadcast);
  } else {
    post(false, data, bytes, root, kBroadcast);
  }
  complete("broadcast");
}

void Comm::barrier() const {
  ++seq_;
  if (timeout_s_ == 0) return void(MPI_Barrier(req_->comm));
  static const uint8_t none = 0;
  static uint8_t sink = 0;
  for (int k = 1; k < size_; ++k) post(false, &sink, 0, (rank_ + size_ - k) % size_, kBarrier);
  for (int k = 1; k < size_; ++k) post(true, &none, 0, (rank_ + k) % size_, kBarrier);
  complete("barrier");
}

double Comm::wtime() const { return MPI_Wtime(); }

void Comm::abort(const std::string& msg) const {
  // Everything this rank printed goes out before the runtime kills the job (its stdout is a pipe to
  // mpirun and would be lost with the process).
  std::fflush(stdout);
  std::fprintf(stderr, "dsv4: rank %d: error: %s\n", rank_, msg.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::_Exit(1);  // MPI_Abort does not return; if it ever does, leave without running destructors
}

}  // namespace dsv4
