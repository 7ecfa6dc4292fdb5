#include "runtime/engine/comm.hpp"

#include <mpi.h>
#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include <cstdio>
#include <limits>
#include <vector>

#include "plan/error.hpp"

namespace dsv4 {
namespace {

// MPI counts are int: checked narrowing into the communicator's preallocated scratch.
void to_int(std::span<const int64_t> v, std::vector<int>& out, const char* what) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] < 0 || v[i] > std::numeric_limits<int>::max())
      throw Error(std::string("MPI ") + what + " " + std::to_string(v[i]) + " does not fit an int");
    out[i] = int(v[i]);
  }
}

}  // namespace

Comm::Comm(int* argc, char*** argv) {
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local);
  MPI_Comm_size(local, &local_size_);
  MPI_Comm_free(&local);
  for (auto* v : {&counts_.send, &counts_.sdispl, &counts_.recv, &counts_.rdispl}) v->resize(size_t(size_));
}

namespace {

// The CPUs this process may run on (its affinity mask; cgroup CPU sets shrink it), at least 1.
int usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  return std::max(1, omp_get_num_procs());
}

}  // namespace

int Comm::configure_threads(int requested) const {
  // libgomp crashes creating tens of thousands of threads; more than a few per usable CPU only adds
  // switching. The bound is 4x the CPUs of the affinity mask.
  const int cpus = usable_cpus(), limit = 4 * cpus;
  if (requested > limit)
    throw Error("--threads " + std::to_string(requested) + ": at most " + std::to_string(limit) +
                " (4 x the " + std::to_string(cpus) + " CPUs this process may run on)");
  if (requested < 0) throw Error("--threads " + std::to_string(requested) + ": must be >= 0 (0: automatic)");
  const int n = requested > 0 ? requested : std::max(1, omp_get_num_procs() / local_size_);
  omp_set_num_threads(n);
  return n;
}

Comm::~Comm() { MPI_Finalize(); }

void Comm::alltoallv(const void* send, std::span<const int64_t> sc, std::span<const int64_t> sd, void* recv,
                     std::span<const int64_t> rc, std::span<const int64_t> rd) const {
  auto& [a, b, c, d] = counts_;
  to_int(sc, a, "send count"), to_int(sd, b, "send displacement"), to_int(rc, c, "recv count"),
      to_int(rd, d, "recv displacement");
  MPI_Alltoallv(send, a.data(), b.data(), MPI_BYTE, recv, c.data(), d.data(), MPI_BYTE, MPI_COMM_WORLD);
}

void Comm::alltoall_i64(std::span<const int64_t> send, std::span<int64_t> recv) const {
  MPI_Alltoall(send.data(), 1, MPI_INT64_T, recv.data(), 1, MPI_INT64_T, MPI_COMM_WORLD);
}

void Comm::allgather(const void* send, int64_t bytes, void* recv) const {
  if (bytes > std::numeric_limits<int>::max()) throw Error("MPI allgather block too large");
  MPI_Allgather(send, int(bytes), MPI_BYTE, recv, int(bytes), MPI_BYTE, MPI_COMM_WORLD);
}

void Comm::broadcast(void* data, int64_t bytes, int root) const {
  if (bytes > std::numeric_limits<int>::max()) throw Error("MPI broadcast too large");
  // Waiting ranks sleep between polls: a blocking MPI_Bcast spins, and on an oversubscribed node the
  // spinning ranks starve the root while it does host work first (e.g. loading the tokenizer).
  MPI_Request req;
  MPI_Ibcast(data, int(bytes), MPI_BYTE, root, MPI_COMM_WORLD, &req);
  for (int done = 0;;) {
    MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    if (done) break;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

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

void Comm::barrier() const { MPI_Barrier(MPI_COMM_WORLD); }

double Comm::wtime() const { return MPI_Wtime(); }

void Comm::abort(const std::string& msg) const {
  std::fprintf(stderr, "dsv4: rank %d: error: %s\n", rank_, msg.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::abort();
}

}  // namespace dsv4
