//===- AsyncEngine.cpp - The Engine on a thread of its own ----------------===//

#include "runtime/serve/AsyncEngine.h"

namespace optrt {
namespace serve {

namespace {
constexpr const char *kShuttingDown = "the server is shutting down";

double seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}
} // namespace

void OutputChannel::push(ChoiceEvent event) {
  {
    std::lock_guard<std::mutex> lock(mutex);
    pending.push_back(std::move(event));
  }
  ready.notify_all();
}

bool OutputChannel::wait(std::vector<ChoiceEvent> &out,
                         std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex);
  ready.wait_for(lock, timeout, [&] { return !pending.empty(); });
  if (pending.empty())
    return false;
  for (ChoiceEvent &event : pending)
    out.push_back(std::move(event));
  pending.clear();
  return true;
}

// Buckets as vLLM's, with finer steps below 10 ms for fast GPUs and small
// models.
AsyncEngine::AsyncEngine(Engine &engine,
                         std::function<bool(std::string &)> prepareThread)
    : engine(engine),
      timeToFirstToken({0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25,
                        0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0}),
      timePerOutputToken({0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05,
                          0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0,
                          2.5}),
      requestLatency({0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0,
                      20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 300.0}) {
  updateSnapshot();
  std::promise<std::string> started;
  std::future<std::string> startResult = started.get_future();
  thread = std::thread([this, &started, prepareThread] {
    std::string error;
    if (prepareThread && !prepareThread(error)) {
      if (error.empty())
        error = "the engine thread's preparation failed";
      {
        std::lock_guard<std::mutex> lock(queueMutex);
        stopping = true;
      }
      stopped = true;
      started.set_value(error);
      return;
    }
    started.set_value("");
    run();
  });
  threadError = startResult.get();
}

AsyncEngine::~AsyncEngine() { stop(); }

uint64_t AsyncEngine::submit(std::shared_ptr<OutputChannel> channel, int index,
                             std::vector<TokenId> prompt,
                             const SamplingParams &params, int32_t priority,
                             Clock::time_point arrival) {
  uint64_t ticket = nextTicket++;
  {
    std::lock_guard<std::mutex> lock(queueMutex);
    if (!stopping) {
      queue.push_back({Command::Submit, ticket, std::move(channel), index,
                       std::move(prompt), params, priority, arrival});
      queueReady.notify_one();
      return ticket;
    }
  }
  ChoiceEvent refused;
  refused.index = index;
  refused.refused = true;
  refused.output.finished = true;
  refused.output.error = kShuttingDown;
  channel->push(std::move(refused));
  return ticket;
}

void AsyncEngine::cancel(uint64_t ticket) {
  std::lock_guard<std::mutex> lock(queueMutex);
  if (stopping)
    return;
  Command command{};
  command.kind = Command::Cancel;
  command.ticket = ticket;
  queue.push_back(std::move(command));
  queueReady.notify_one();
}

void AsyncEngine::stop() {
  {
    std::lock_guard<std::mutex> lock(queueMutex);
    stopping = true;
  }
  queueReady.notify_one();
  // Other callers wait until the first has joined the thread.
  std::call_once(joined, [this] {
    if (thread.joinable())
      thread.join();
  });
  stopped = true;
}

void AsyncEngine::run() {
  while (true) {
    std::vector<Command> commands;
    {
      std::unique_lock<std::mutex> lock(queueMutex);
      // Sleeps only when there is nothing to step.
      queueReady.wait(lock, [&] {
        return stopping || !queue.empty() || engine.hasUnfinished();
      });
      if (stopping)
        break;
      commands.swap(queue);
    }
    for (Command &command : commands)
      handle(command);
    if (engine.hasUnfinished())
      deliver(engine.step());
    updateSnapshot();
  }

  // Shutting down: nobody waits forever.
  std::vector<Command> leftover;
  {
    std::lock_guard<std::mutex> lock(queueMutex);
    leftover.swap(queue);
  }
  auto shutDown = [](OutputChannel &channel, int index, bool refused) {
    ChoiceEvent event;
    event.index = index;
    event.refused = refused;
    event.output.finished = true;
    event.output.error = kShuttingDown;
    channel.push(std::move(event));
  };
  {
    std::lock_guard<std::mutex> lock(metricsMutex);
    current.numCancelled += static_cast<int64_t>(live.size());
  }
  for (Command &command : leftover)
    if (command.kind == Command::Submit)
      shutDown(*command.channel, command.index, true);
  for (auto &[ticket, request] : live) {
    engine.cancel(request.engineId);
    shutDown(*request.channel, request.index, false);
  }
  live.clear();
  ticketOf.clear();
  updateSnapshot();
}

void AsyncEngine::handle(Command &command) {
  if (command.kind == Command::Cancel) {
    auto it = live.find(command.ticket);
    if (it == live.end())
      return; // finished, refused or already cancelled
    engine.cancel(it->second.engineId);
    ticketOf.erase(it->second.engineId);
    live.erase(it);
    std::lock_guard<std::mutex> lock(metricsMutex);
    ++current.numCancelled;
    return;
  }
  std::string error;
  int64_t numPromptTokens = static_cast<int64_t>(command.prompt.size());
  std::optional<RequestId> id = engine.addRequest(
      std::move(command.prompt), command.params, error, command.priority);
  if (!id) {
    {
      // Counted before the client hears of it, as every outcome is.
      std::lock_guard<std::mutex> lock(metricsMutex);
      ++current.numRefused;
    }
    ChoiceEvent refused;
    refused.index = command.index;
    refused.refused = true;
    refused.output.finished = true;
    refused.output.error = error;
    command.channel->push(std::move(refused));
    return;
  }
  live[command.ticket] = {std::move(command.channel),
                          command.index,
                          *id,
                          command.arrival,
                          command.arrival,
                          false};
  ticketOf[*id] = command.ticket;
  std::lock_guard<std::mutex> lock(metricsMutex);
  current.numPromptTokens += numPromptTokens;
}

void AsyncEngine::deliver(std::vector<RequestOutput> outputs) {
  Clock::time_point now = Clock::now();
  std::lock_guard<std::mutex> lock(metricsMutex);
  for (RequestOutput &out : outputs) {
    auto ticket = ticketOf.find(out.id);
    if (ticket == ticketOf.end())
      continue;
    auto it = live.find(ticket->second);
    Live &request = it->second;
    if (!out.newTokenIds.empty()) {
      if (!request.gotToken)
        timeToFirstToken.observe(seconds(now - request.arrival));
      else
        timePerOutputToken.observe(seconds(now - request.lastToken) /
                                   static_cast<double>(out.newTokenIds.size()));
      request.gotToken = true;
      request.lastToken = now;
    }
    bool finished = out.finished;
    if (finished) {
      requestLatency.observe(seconds(now - request.arrival));
      if (!out.error.empty())
        ++current.numFailed;
      else if (out.finishReason == FinishReason::Length)
        ++current.numFinishedLength;
      else
        ++current.numFinishedStop;
    }
    ChoiceEvent event;
    event.index = request.index;
    event.output = std::move(out);
    request.channel->push(std::move(event));
    if (finished) {
      ticketOf.erase(ticket);
      live.erase(it);
    }
  }
}

void AsyncEngine::updateSnapshot() {
  std::lock_guard<std::mutex> lock(metricsMutex);
  current.numRunning = static_cast<int64_t>(engine.numRunning());
  current.numWaiting = static_cast<int64_t>(engine.numWaiting());
  current.numBlocks = engine.blockManager().numBlocks();
  current.numUsedBlocks = engine.blockManager().numUsedBlocks();
  current.stats = engine.stats();
}

ServingSnapshot AsyncEngine::snapshot() const {
  std::lock_guard<std::mutex> lock(metricsMutex);
  return current;
}

std::string AsyncEngine::metricsText() const {
  std::lock_guard<std::mutex> lock(metricsMutex);
  const ServingSnapshot &s = current;
  std::string out;
  appendGauge(out, "optmlir_num_requests_running",
              "Requests holding KV blocks (prefilling or decoding).",
              static_cast<double>(s.numRunning));
  appendGauge(out, "optmlir_num_requests_waiting",
              "Requests queued for admission (including preempted ones).",
              static_cast<double>(s.numWaiting));
  appendGauge(out, "optmlir_kv_cache_blocks", "Blocks in the paged KV cache.",
              static_cast<double>(s.numBlocks));
  appendGauge(out, "optmlir_kv_cache_used_blocks",
              "KV blocks referenced by requests (cached free blocks are not "
              "counted).",
              static_cast<double>(s.numUsedBlocks));
  appendGauge(out, "optmlir_kv_cache_usage_ratio",
              "Share of the KV blocks referenced by requests.",
              s.numBlocks ? static_cast<double>(s.numUsedBlocks) /
                                static_cast<double>(s.numBlocks)
                          : 0.0);
  appendCounter(out, "optmlir_prefix_cache_queries_total",
                "Prompt tokens looked up in the prefix cache.",
                static_cast<double>(s.stats.numPrefixQueryTokens));
  appendCounter(out, "optmlir_prefix_cache_hits_total",
                "Prompt tokens found in the prefix cache.",
                static_cast<double>(s.stats.numCachedTokens));
  appendGauge(out, "optmlir_prefix_cache_hit_rate",
              "Prefix cache hits over queries, in tokens, since the start.",
              s.stats.numPrefixQueryTokens
                  ? static_cast<double>(s.stats.numCachedTokens) /
                        static_cast<double>(s.stats.numPrefixQueryTokens)
                  : 0.0);
  appendCounter(out, "optmlir_prompt_tokens_total",
                "Prompt tokens of admitted requests.",
                static_cast<double>(s.numPromptTokens));
  appendCounter(out, "optmlir_prefill_tokens_total",
                "Prompt and recomputed tokens run through the model.",
                static_cast<double>(s.stats.numPrefillTokens));
  appendCounter(out, "optmlir_generation_tokens_total", "Tokens generated.",
                static_cast<double>(s.stats.numGeneratedTokens));
  appendCounter(out, "optmlir_num_preemptions_total",
                "Sequences preempted (by recompute) for lack of KV blocks.",
                static_cast<double>(s.stats.numPreemptions));
  appendCounter(out, "optmlir_engine_steps_total", "Batches run.",
                static_cast<double>(s.stats.numSteps));
  appendCounter(
      out, "optmlir_request_success_total", "Requests (choices) that finished.",
      0,
      {{"finished_reason=\"stop\"", static_cast<double>(s.numFinishedStop)},
       {"finished_reason=\"length\"",
        static_cast<double>(s.numFinishedLength)}});
  appendCounter(out, "optmlir_request_cancelled_total",
                "Requests (choices) cancelled, mostly by clients that went "
                "away.",
                static_cast<double>(s.numCancelled));
  appendCounter(out, "optmlir_request_failure_total",
                "Requests (choices) that failed.", 0,
                {{"reason=\"refused\"", static_cast<double>(s.numRefused)},
                 {"reason=\"executor\"", static_cast<double>(s.numFailed)}});
  timeToFirstToken.render("optmlir_time_to_first_token_seconds",
                          "From arrival to the first generated token.", out);
  timePerOutputToken.render("optmlir_time_per_output_token_seconds",
                            "Between consecutive tokens of a request.", out);
  requestLatency.render("optmlir_e2e_request_latency_seconds",
                        "From arrival to the last token.", out);
  appendGauge(out, "process_resident_memory_bytes",
              "Resident memory of the process (VmRSS).",
              static_cast<double>(residentMemoryBytes()));
  return out;
}

} // namespace serve
} // namespace optrt
