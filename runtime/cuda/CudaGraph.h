//===- CudaGraph.h - captured launch sequences, replayed --------*- C++ -*-===//
//
// A decode step is dozens of small launches; replaying them as one CUDA graph
// removes the per-launch CPU cost. A CudaGraph captures whatever a recorder
// callable enqueues on a stream, instantiates it, and replays it. Recapturing
// into an existing graph first tries cuGraphExecUpdate (cheap: same topology,
// new pointers or scalars) and re-instantiates only when that is refused.
//
// CudaGraphCache keeps one graph per bucket (the decode batch size) together
// with a signature of what was baked into it (the caller hashes the buffer
// pointers and scalars); a different signature recaptures.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_CUDA_CUDAGRAPH_H
#define OPTMLIR_RUNTIME_CUDA_CUDAGRAPH_H

#include "runtime/cuda/CudaDriver.h"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

namespace optrt {
namespace cuda {

/// Enqueues work on the given stream; false with an error to abort capture.
/// It must only enqueue (no synchronization, no allocation, no host reads of
/// results): those are illegal while capturing.
using GraphRecorder = std::function<bool(CUstream, std::string &)>;

class CudaGraph {
public:
  CudaGraph() = default;
  ~CudaGraph() { reset(); }
  CudaGraph(CudaGraph &&other) noexcept { *this = std::move(other); }
  CudaGraph &operator=(CudaGraph &&other) noexcept;

  /// Captures `record` on `stream` (which must be a non-default stream that
  /// is not capturing) and makes it the executable graph: updated in place if
  /// one exists and the driver allows, instantiated otherwise. On failure the
  /// capture is ended, the stream is usable again, and the previous
  /// executable graph (if any) is dropped.
  bool capture(CUstream stream, const GraphRecorder &record,
               std::string &error);
  /// Replays the graph on `stream` (asynchronous).
  bool launch(CUstream stream, std::string &error) const;
  bool valid() const { return exec_ != nullptr; }
  void reset();

  /// How the last successful capture became executable.
  bool lastWasUpdate() const { return lastWasUpdate_; }

private:
  CUgraphExec exec_ = nullptr;
  bool lastWasUpdate_ = false;
};

class CudaGraphCache {
public:
  struct Stats {
    uint64_t captures = 0, updates = 0, instantiations = 0, replays = 0;
  };

  /// Replays the graph of `bucket` when it was captured with `signature`;
  /// otherwise (re)captures `record` first. The work runs on `stream` either
  /// way.
  bool run(int64_t bucket, uint64_t signature, CUstream stream,
           const GraphRecorder &record, std::string &error);
  bool contains(int64_t bucket) const { return graphs_.count(bucket) != 0; }
  void erase(int64_t bucket) { graphs_.erase(bucket); }
  void clear() { graphs_.clear(); }
  size_t size() const { return graphs_.size(); }
  const Stats &stats() const { return stats_; }

private:
  struct Entry {
    CudaGraph graph;
    uint64_t signature = 0;
  };
  std::map<int64_t, Entry> graphs_;
  Stats stats_;
};

} // namespace cuda
} // namespace optrt

#endif // OPTMLIR_RUNTIME_CUDA_CUDAGRAPH_H
