//===- AsyncEngine.h - The Engine on a thread of its own --------*- C++ -*-===//
//
// The Engine is single-threaded; a server has many request threads. An
// AsyncEngine owns one thread that alone touches the Engine: it takes
// submissions and cancellations from a queue, steps while anything is
// unfinished (sleeping when nothing is), and pushes each request's outputs
// to the OutputChannel the request came with. Request threads only ever
// lock the queue or their own channel, so a slow client never slows the
// engine, and a step never waits for a client.
//
// It also keeps the serving metrics (queue sizes, KV blocks, prefix-cache
// hits, time to first token and per output token, request outcomes) and
// writes them in Prometheus' text format.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_SERVE_ASYNCENGINE_H
#define OPTMLIR_RUNTIME_SERVE_ASYNCENGINE_H

#include "runtime/engine/Engine.h"
#include "runtime/serve/Metrics.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace optrt {
namespace serve {

using Clock = std::chrono::steady_clock;

/// What one step (or the queue) did for one choice of a request.
struct ChoiceEvent {
  /// The choice the submission was tagged with.
  int index = 0;
  RequestOutput output;
  /// The engine refused the request (output.error says why); no tokens
  /// came and none will.
  bool refused = false;
};

/// Where the engine thread leaves a request's outputs. One per HTTP
/// request; all of its choices share it.
class OutputChannel {
public:
  void push(ChoiceEvent event);
  /// Waits up to `timeout` for events; moves those pending into `out`.
  /// Returns whether there were any.
  bool wait(std::vector<ChoiceEvent> &out, std::chrono::milliseconds timeout);

private:
  std::mutex mutex;
  std::condition_variable ready;
  std::vector<ChoiceEvent> pending;
};

/// A consistent view of the engine for /metrics and tests.
struct ServingSnapshot {
  int64_t numRunning = 0, numWaiting = 0;
  int64_t numBlocks = 0, numUsedBlocks = 0;
  EngineStats stats;
  int64_t numPromptTokens = 0;
  int64_t numFinishedStop = 0, numFinishedLength = 0;
  int64_t numCancelled = 0, numFailed = 0, numRefused = 0;
};

class AsyncEngine {
public:
  /// Starts the engine thread; `engine` must outlive this object and must
  /// not be touched by anyone else meanwhile. `prepareThread`, if given,
  /// runs first on the engine thread (ModelExecutor::bindToCurrentThread);
  /// when it fails, startError() says why and every request is refused.
  explicit AsyncEngine(
      Engine &engine,
      std::function<bool(std::string &error)> prepareThread = nullptr);
  /// Stops (see stop()).
  ~AsyncEngine();
  AsyncEngine(const AsyncEngine &) = delete;
  AsyncEngine &operator=(const AsyncEngine &) = delete;

  /// Queues a request whose outputs go to `channel` tagged `index`;
  /// `arrival` is when it reached the server (time to first token counts
  /// from there). Returns a ticket for cancel().
  uint64_t submit(std::shared_ptr<OutputChannel> channel, int index,
                  std::vector<TokenId> prompt, const SamplingParams &params,
                  int32_t priority = 0,
                  Clock::time_point arrival = Clock::now());
  /// Drops the request (waiting, running, or not yet taken from the
  /// queue) and frees its blocks; it produces no further output. A no-op
  /// for a finished or unknown ticket.
  void cancel(uint64_t ticket);

  /// Cancels every request (each channel gets a finished event whose error
  /// says the server is shutting down) and joins the thread. Idempotent.
  void stop();
  bool running() const { return !stopped.load(); }
  /// Why the engine thread could not start; empty if it did.
  const std::string &startError() const { return threadError; }

  ServingSnapshot snapshot() const;
  /// The serving metrics in Prometheus' text exposition format.
  std::string metricsText() const;

private:
  struct Command {
    enum Kind { Submit, Cancel } kind;
    uint64_t ticket;
    std::shared_ptr<OutputChannel> channel;
    int index;
    std::vector<TokenId> prompt;
    SamplingParams params;
    int32_t priority;
    Clock::time_point arrival;
  };
  /// A submitted request, as the engine thread tracks it.
  struct Live {
    std::shared_ptr<OutputChannel> channel;
    int index;
    RequestId engineId;
    Clock::time_point arrival;
    Clock::time_point lastToken;
    bool gotToken = false;
  };

  void run();
  void handle(Command &command);
  void deliver(std::vector<RequestOutput> outputs);
  void updateSnapshot();

  Engine &engine;
  std::thread thread;
  std::once_flag joined;
  std::string threadError;
  std::atomic<bool> stopped{false};
  std::atomic<uint64_t> nextTicket{1};

  /// Guards `queue` and `stopping`.
  std::mutex queueMutex;
  std::condition_variable queueReady;
  std::vector<Command> queue;
  bool stopping = false;

  /// Engine thread only.
  std::unordered_map<uint64_t, Live> live;
  std::unordered_map<RequestId, uint64_t> ticketOf;

  /// Guards what follows: written by the engine thread, read by
  /// metricsText() and snapshot().
  mutable std::mutex metricsMutex;
  ServingSnapshot current;
  Histogram timeToFirstToken;
  Histogram timePerOutputToken;
  Histogram requestLatency;
};

} // namespace serve
} // namespace optrt

#endif // OPTMLIR_RUNTIME_SERVE_ASYNCENGINE_H
