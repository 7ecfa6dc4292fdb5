// MPI world and the collectives the plan names (Open MPI is the only transport). Any error on any
// rank ends the whole job through abort(), so no rank waits forever in a collective.
//
// Watchdog: every collective is point-to-point messages polled against a deadline
// (DSV4_COLLECTIVE_TIMEOUT seconds, default 300). A rank that waits past it names the collective, its
// sequence number, the ranks it did not hear from and the ranks that do not answer at all, and aborts
// the job: a peer that was stopped or hangs no longer leaves the others waiting forever. Waiting ranks
// sleep between polls after the first 100 us, so they do not spin a core away from the ranks that
// compute. DSV4_COLLECTIVE_TIMEOUT=0: no watchdog, MPI's own blocking collectives (which spin).
// Why a fixed deadline does not fire on a long prefill: a step's work is bounded by the fixed slab
// (max_tokens_per_step; long prompts are chunked over steps), so the longest legitimate wait is one step
// of another rank, or the start-up work before the first collective (weights mapping, checksums from a
// cold disk: raise the deadline there).
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace dsv4 {

class Comm {
 public:
  Comm(int* argc, char*** argv);  // MPI_Init_thread (funneled); errors are fatal to the job
  ~Comm();                        // MPI_Finalize
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;

  int rank() const { return rank_; }
  int local_size() const { return local_size_; }  // ranks sharing this node

  // Kernel threads of this rank: `requested` if > 0, else its share of the CPUs in its affinity mask
  // (the mask's CPUs divided among the node's ranks whose masks overlap it; at least 1), so 16 unbound
  // ranks on 2 cores run 1 thread each and a rank bound to 4 cores runs 4. Rank 0 says what it chose;
  // a rank with more threads than its share warns (with the mpirun binding that fixes it).
  int configure_threads(int requested) const;
  int size() const { return size_; }

  // All-to-all-v of bytes; counts and displacements in bytes, per peer.
  void alltoallv(const void* send, std::span<const int64_t> send_counts, std::span<const int64_t> send_displs,
                 void* recv, std::span<const int64_t> recv_counts, std::span<const int64_t> recv_displs) const;
  void alltoall_i64(std::span<const int64_t> send, std::span<int64_t> recv) const;  // one value per peer
  void allgather(const void* send, int64_t bytes, void* recv) const;                // equal blocks
  void broadcast(void* data, int64_t bytes, int root) const;  // root's bytes to all; waiting ranks sleep-poll
  // broadcast() for a wait of unknown length (the engine loop's next step while the server is idle):
  // the sleep between polls grows to `max_sleep_us`, so waiting ranks cost next to no CPU.
  void broadcast_idle(void* data, int64_t bytes, int root, int64_t max_sleep_us) const;
  void barrier() const;
  double wtime() const;

  // Prints "dsv4: rank R: error: msg" and aborts every rank of the job (MPI_Abort).
  [[noreturn]] void abort(const std::string& msg) const;

  double collective_timeout_s() const { return timeout_s_; }  // 0: no deadline

 private:
  struct Requests;  // the pending messages of the collective in progress (MPI handles)
  void post(bool send, const void* buf, int64_t bytes, int peer, int tag) const;
  void complete(const char* what) const;  // polls until every posted message completes, or times out
  void answer_queries() const;             // answers peers' watchdog queries (see timed_out)
  [[noreturn]] void timed_out(const char* what) const;

  int rank_ = 0, size_ = 1, local_size_ = 1;
  int cpus_ = 1, cpu_sharers_ = 1;  // CPUs in this rank's affinity mask; local ranks whose masks overlap it
  double timeout_s_ = 300;
  mutable uint64_t seq_ = 0;  // collectives entered so far (the same sequence on every rank)
  std::unique_ptr<Requests> req_;
};

}  // namespace dsv4
