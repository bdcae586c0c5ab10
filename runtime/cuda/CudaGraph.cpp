//===- CudaGraph.cpp - captured launch sequences, replayed ----------------===//

#include "runtime/cuda/CudaGraph.h"

#include "runtime/cuda/CudaCheck.h"

#include <utility>

namespace optrt {
namespace cuda {

CudaGraph &CudaGraph::operator=(CudaGraph &&other) noexcept {
  if (this != &other) {
    reset();
    exec_ = std::exchange(other.exec_, nullptr);
    lastWasUpdate_ = other.lastWasUpdate_;
  }
  return *this;
}

void CudaGraph::reset() {
  if (exec_)
    OPTRT_CU_IGNORE(cuGraphExecDestroy, exec_);
  exec_ = nullptr;
}

bool CudaGraph::capture(CUstream stream, const GraphRecorder &record,
                        std::string &error) {
  if (!stream) {
    error = "graph capture: the legacy default stream cannot be captured";
    return false;
  }
  CUstreamCaptureStatus status = CU_STREAM_CAPTURE_STATUS_NONE;
  OPTRT_CU_CHECK(error, cuStreamIsCapturing, stream, &status);
  if (status != CU_STREAM_CAPTURE_STATUS_NONE) {
    error = "graph capture: the stream is already capturing";
    return false;
  }
  // Thread-local mode: unsafe calls on this thread invalidate the capture
  // (and are reported), while other threads stay unaffected.
  OPTRT_CU_CHECK(error, cuStreamBeginCapture, stream,
                 CU_STREAM_CAPTURE_MODE_THREAD_LOCAL);
  std::string recordError;
  bool recorded = record(stream, recordError);
  // Always end the capture, so that the stream is usable whatever happened.
  CUgraph graph = nullptr;
  CUresult endResult = driver().cuStreamEndCapture(stream, &graph);
  struct GraphGuard {
    CUgraph graph;
    ~GraphGuard() {
      if (graph)
        OPTRT_CU_IGNORE(cuGraphDestroy, graph);
    }
  } guard{graph};

  if (!recorded || endResult != CUDA_SUCCESS) {
    reset(); // the old executable no longer matches what the caller wants
    if (!recorded)
      error = "graph capture: recording failed: " + recordError;
    else
      error = "graph capture: " + formatCuError("cuStreamEndCapture",
                                                endResult);
    if (!recorded && endResult != CUDA_SUCCESS)
      error += " (" + formatCuError("cuStreamEndCapture", endResult) + ")";
    return false;
  }

  if (exec_) {
    CUgraphExecUpdateResultInfo info{};
    if (driver().cuGraphExecUpdate(exec_, graph, &info) == CUDA_SUCCESS) {
      lastWasUpdate_ = true;
      return true;
    }
    // Topology or node kinds changed: instantiate anew.
    reset();
  }
  CUgraphExec exec = nullptr;
  if (CUresult r = driver().cuGraphInstantiate(&exec, graph, 0);
      r != CUDA_SUCCESS) {
    error = "graph capture: " + formatCuError("cuGraphInstantiate", r);
    return false;
  }
  exec_ = exec;
  lastWasUpdate_ = false;
  // Uploading now moves the one-time setup cost out of the first replay.
  OPTRT_CU_CHECK(error, cuGraphUpload, exec_, stream);
  return true;
}

bool CudaGraph::launch(CUstream stream, std::string &error) const {
  if (!exec_) {
    error = "graph launch: nothing captured";
    return false;
  }
  OPTRT_CU_CHECK(error, cuGraphLaunch, exec_, stream);
  return true;
}

bool CudaGraphCache::run(int64_t bucket, uint64_t signature, CUstream stream,
                         const GraphRecorder &record, std::string &error) {
  Entry &entry = graphs_[bucket];
  if (!entry.graph.valid() || entry.signature != signature) {
    if (!entry.graph.capture(stream, record, error)) {
      graphs_.erase(bucket);
      error = "bucket " + std::to_string(bucket) + ": " + error;
      return false;
    }
    entry.signature = signature;
    ++stats_.captures;
    ++(entry.graph.lastWasUpdate() ? stats_.updates : stats_.instantiations);
  }
  if (!entry.graph.launch(stream, error)) {
    error = "bucket " + std::to_string(bucket) + ": " + error;
    return false;
  }
  ++stats_.replays;
  return true;
}

} // namespace cuda
} // namespace optrt
