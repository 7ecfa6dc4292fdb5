// MPI world and the collectives the plan names (Open MPI is the only transport). Any error on any
// rank ends the whole job through abort(), so no rank waits forever in a collective.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace dsv4 {

class Comm {
 public:
  Comm(int* argc, char*** argv);  // MPI_Init_thread (funneled); errors are fatal to the job
  ~Comm();                        // MPI_Finalize
  Comm(const Comm&) = delete;

  int rank() const { return rank_; }
  int local_size() const { return local_size_; }  // ranks sharing this node

  // Kernel threads of this rank: `requested` if > 0, else the node's cores shared evenly among its
  // ranks (at least 1), so 16 ranks on 2 cores do not oversubscribe with OpenMP threads.
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

 private:
  int rank_ = 0, size_ = 1, local_size_ = 1;
  struct Counts {
    std::vector<int> send, sdispl, recv, rdispl;  // MPI's int counts, one per peer (sized once)
  };
  mutable Counts counts_;
};

}  // namespace dsv4
