//===- HttpServerTest.cpp - the HTTP layer against a fake model -----------===//
//
// The server of `optrun serve` over real sockets (cpp-httplib's client), with
// the fake model of the engine tests: fast, and run under the sanitizers by
// the test command. test/Runtime/serve.test covers the same ground with real
// models.
//
//===----------------------------------------------------------------------===//

#include "runtime/serve/HttpServer.h"

#include "runtime/chat/ChatTemplate.h"
#include "runtime/serve/AsyncEngine.h"
#include "runtime/serve/OpenAiApi.h"

#include "FakeExecutor.h"
#include "MiniTokenizer.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <thread>

using namespace optrt;
using namespace optrt::serve;
using Json = nlohmann::json;

namespace {

/// A fake model that takes its time, so that requests are in flight.
class SlowExecutor : public FakeExecutor {
public:
  using FakeExecutor::FakeExecutor;
  bool step(const StepBatch &batch, float *logits,
            std::string &error) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return FakeExecutor::step(batch, logits, error);
  }
};

ExecutorLimits limits() {
  ExecutorLimits l;
  l.vocabSize = 32;
  l.maxTokensPerStep = 64;
  l.maxContextLength = 128;
  l.blockSize = 4;
  l.numBlocks = 256;
  return l;
}

EngineOptions engineOptions() {
  EngineOptions o;
  o.eosTokenIds = {2};
  o.tokenizer = &miniTokenizer();
  return o;
}

class HttpServerTest : public ::testing::Test {
protected:
  void start(ServerConfig config = ServerConfig()) {
    executor = std::make_unique<SlowExecutor>(limits());
    engine = std::make_unique<Engine>(*executor, engineOptions());
    async = std::make_unique<AsyncEngine>(*engine);
    std::string error;
    jinja::Dict tokens;
    tokens.set("bos_token", jinja::Value("<s>"));
    chat = ChatTemplate::create(kDefaultChatTemplate, tokens, error);
    ASSERT_TRUE(chat) << error;
    ServedModel model;
    model.tokenizer = &miniTokenizer();
    model.chatTemplate = chat.get();
    model.contextLimit = engine->contextLimit();
    model.vocabSize = limits().vocabSize;
    config.port = 0;
    config.modelName = "fake";
    config.keepAliveInterval = std::chrono::milliseconds(50);
    server = std::make_unique<HttpServer>(*async, model, config);
    ASSERT_TRUE(server->bind(error)) << error;
    serving = std::thread([this] { server->run(); });
    for (int i = 0; i < 200; ++i) {
      if (auto res = client().Get("/health"); res && res->status == 200)
        return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    FAIL() << "the server did not come up";
  }

  void TearDown() override {
    if (!server)
      return;
    async->stop();
    server->stop();
    serving.join();
  }

  httplib::Client client() {
    httplib::Client c("127.0.0.1", server->port());
    c.set_read_timeout(20, 0);
    return c;
  }

  /// POSTs `body`; the status and the decoded reply.
  std::pair<int, Json> post(const std::string &path, const std::string &body,
                            const httplib::Headers &headers = {}) {
    auto res = client().Post(path.c_str(), headers, body, "application/json");
    if (!res)
      return {-1, Json()};
    return {res->status, Json::parse(res->body, nullptr, false)};
  }

  /// What the engine alone generates for `prompt` (greedy).
  std::string alone(const std::string &prompt, int64_t maxTokens) {
    FakeExecutor fake(limits());
    Engine reference(fake, engineOptions());
    SamplingParams params;
    params.temperature = 0.0f;
    params.maxTokens = maxTokens;
    std::string error, text;
    EXPECT_TRUE(reference.addRequest(miniTokenizer().encode(prompt, true),
                                     params, error));
    while (reference.hasUnfinished())
      for (const RequestOutput &out : reference.step())
        text += out.textDelta;
    return text;
  }

  std::unique_ptr<FakeExecutor> executor;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<AsyncEngine> async;
  std::unique_ptr<ChatTemplate> chat;
  std::unique_ptr<HttpServer> server;
  std::thread serving;
};

/// The data events of an SSE body (comments skipped).
std::vector<std::string> dataEvents(const std::string &body) {
  std::vector<std::string> events;
  size_t at = 0;
  while ((at = body.find("data: ", at)) != std::string::npos) {
    size_t end = body.find("\n\n", at);
    events.push_back(body.substr(at + 6, end - at - 6));
    at = end;
  }
  return events;
}

TEST_F(HttpServerTest, CompletionsAndChatEqualTheEngineAlone) {
  start();
  auto [status, out] = post("/v1/completions", R"({"model": "fake",
      "prompt": "hello", "max_tokens": 9, "temperature": 0})");
  ASSERT_EQ(status, 200) << out.dump();
  // JSON carries text: bytes that are not UTF-8 come as U+FFFD.
  EXPECT_EQ(out["choices"][0]["text"], sanitizeUtf8(alone("hello", 9)));
  EXPECT_EQ(out["usage"]["prompt_tokens"], 7); // <s> ▁ h e l l o

  // The default template's transcript, tokenized as the server does.
  std::tie(status, out) =
      post("/v1/chat/completions",
           R"({"messages": [{"role": "user", "content": "hi"}],
               "max_tokens": 5, "temperature": 0})");
  ASSERT_EQ(status, 200) << out.dump();
  EXPECT_EQ(out["choices"][0]["message"]["content"],
            sanitizeUtf8(alone("user: hi\nassistant:", 5)));
}

TEST_F(HttpServerTest, StreamsAddUpToTheResponse) {
  start();
  std::string request = R"({"prompt": "stream", "max_tokens": 12,
      "temperature": 0, "ignore_eos": true)";
  auto [status, plain] = post("/v1/completions", request + "}");
  ASSERT_EQ(status, 200);
  auto res = client().Post(
      "/v1/completions",
      request +
          R"(, "stream": true, "stream_options": {"include_usage": true}})",
      "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/event-stream");
  std::vector<std::string> events = dataEvents(res->body);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.back(), "[DONE]");
  Json usage = Json::parse(events[events.size() - 2]);
  EXPECT_EQ(usage["usage"], plain["usage"]);
  std::string text;
  for (size_t i = 0; i + 2 < events.size(); ++i)
    text += Json::parse(events[i])["choices"][0]["text"].get<std::string>();
  EXPECT_EQ(text, plain["choices"][0]["text"]);
}

TEST_F(HttpServerTest, BadRequestsGetOpenAiErrors) {
  ServerConfig config;
  config.maxBodyBytes = 2000;
  start(config);
  struct Case {
    const char *path;
    std::string body;
    int status;
    const char *param;
  };
  const Case cases[] = {
      {"/v1/completions", "{\"prompt\": ", 400, ""},
      {"/v1/completions", R"({"prompt": "x", "n": "two"})", 422, "n"},
      {"/v1/completions", R"({"prompt": "x", "temperature": -3})", 422,
       "temperature"},
      {"/v1/completions", R"({"prompt": [3, 40]})", 422, "prompt"},
      {"/v1/completions", R"({"model": "other", "prompt": "x"})", 404, "model"},
      {"/v1/completions", R"({"prompt": ")" + std::string(200, 'a') + "\"}",
       400, "prompt"},
      {"/v1/completions", R"({"prompt": "x", "max_tokens": 500})", 400,
       "max_tokens"},
      {"/v1/completions", R"({"prompt": ")" + std::string(3000, 'a') + "\"}",
       413, ""},
      {"/v1/chat/completions", R"({"messages": [{"role": "user"}]})", 422,
       "messages[0].content"},
      {"/v1/nowhere", "{}", 404, ""},
  };
  for (const Case &c : cases) {
    auto [status, body] = post(c.path, c.body);
    EXPECT_EQ(status, c.status) << c.body.substr(0, 80);
    ASSERT_TRUE(body.is_object() && body["error"].is_object()) << body.dump();
    EXPECT_TRUE(body["error"]["message"].is_string());
    EXPECT_EQ(body["error"]["param"], *c.param ? Json(c.param) : Json())
        << c.body.substr(0, 80);
  }
  EXPECT_EQ(client().Get("/health")->status, 200);
}

TEST_F(HttpServerTest, ApiKeyGuardsTheApiOnly) {
  ServerConfig config;
  config.apiKey = "k";
  start(config);
  auto [status, body] = post("/v1/completions", R"({"prompt": "x"})");
  EXPECT_EQ(status, 401);
  EXPECT_EQ(body["error"]["code"], "invalid_api_key");
  std::tie(status, body) =
      post("/v1/completions", R"({"prompt": "x", "max_tokens": 2})",
           {{"Authorization", "Bearer k"}});
  EXPECT_EQ(status, 200) << body.dump();
  EXPECT_EQ(client().Get("/health")->status, 200);
  EXPECT_EQ(client().Get("/metrics")->status, 200);
}

TEST_F(HttpServerTest, AClientLeavingMidStreamIsCancelled) {
  start();
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = R"({"prompt": "leave", "max_tokens": 100, "ignore_eos": true,
                 "temperature": 0, "stream": true})";
  req.set_header("Content-Type", "application/json");
  int chunks = 0;
  // Returning false from the receiver makes the client drop the
  // connection.
  req.content_receiver = [&](const char *, size_t, uint64_t, uint64_t) {
    return ++chunks < 2;
  };
  httplib::Response res;
  httplib::Error error;
  client().send(req, res, error);
  EXPECT_EQ(chunks, 2);
  ServingSnapshot s;
  for (int i = 0; i < 500; ++i) {
    s = async->snapshot();
    if (s.numCancelled == 1 && s.numRunning == 0)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(s.numCancelled, 1);
  EXPECT_EQ(s.numRunning, 0);
  EXPECT_EQ(s.numUsedBlocks, 0);
  EXPECT_LT(s.stats.numGeneratedTokens, 100);
}

TEST_F(HttpServerTest, StoppingAnswersWaitingRequests) {
  start();
  std::pair<int, Json> reply;
  std::thread waiting([&] {
    reply = post("/v1/completions", R"({"prompt": "long", "max_tokens": 120,
        "ignore_eos": true, "temperature": 0})");
  });
  while (async->snapshot().numRunning == 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  async->stop();
  waiting.join();
  EXPECT_EQ(reply.first, 503);
  EXPECT_EQ(reply.second["error"]["message"], "the server is shutting down");
  EXPECT_EQ(client().Get("/health")->status, 503);
}

} // namespace
