//===- TokenizerTest.cpp - runtime tokenizer tests ------------------------===//
//
// Reference data lives in test/data/tokenizer (see README there):
//  * reference_generations.json: prompts/generations of the shared models,
//    produced by Hugging Face transformers;
//  * expected_llama{2,3}.json + llama2_style.json: hard cases encoded by
//    `tokenizers` (make_expected.py); the tests skip when they are absent.
//
//===----------------------------------------------------------------------===//

#include "runtime/tokenizer/Tokenizer.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

using json = nlohmann::json;
using optrt::StreamingDecoder;
using optrt::Tokenizer;

namespace {

std::string dataPath(const std::string &name) {
  return std::string(OPTMLIR_SOURCE_DIR) + "/test/data/tokenizer/" + name;
}

/// The byte-level BPE tokenizer of the reference models, as committed with
/// the example checkpoint.
std::string llama3StylePath() {
  return std::string(OPTMLIR_SOURCE_DIR) + "/examples/draft/tokenizer.json";
}

bool fileExists(const std::string &path) { return std::ifstream(path).good(); }

std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

json readJson(const std::string &path) { return json::parse(readFile(path)); }

std::string idsToString(const std::vector<int32_t> &ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i)
    s += (i ? "," : "") + std::to_string(ids[i]);
  return s + "]";
}

/// Token strings, for readable failure messages.
std::string tokensToString(const Tokenizer &t,
                           const std::vector<int32_t> &ids) {
  std::string s;
  for (int32_t id : ids)
    s += "'" + t.tokenToString(id) + "' ";
  return s;
}

const Tokenizer &llama3() {
  static std::unique_ptr<Tokenizer> tokenizer = [] {
    std::string error;
    auto t = Tokenizer::fromFile(llama3StylePath(), &error);
    if (!t)
      ADD_FAILURE() << error;
    return t;
  }();
  if (!tokenizer)
    throw std::runtime_error("examples/draft/tokenizer.json did not load");
  return *tokenizer;
}

/// A hand-made Llama-2-style tokenizer: <unk> <s> </s>, the 256 byte tokens,
/// a few pieces and merges, and the Llama 2 normalizer/decoder. Small and
/// fixed, so that byte-fallback tests do not depend on a trained vocab.
json miniLlama2Json() {
  json vocab = json::object();
  vocab["<unk>"] = 0;
  vocab["<s>"] = 1;
  vocab["</s>"] = 2;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = 3 + b;
  }
  const char *pieces[] = {"\u2581",  "a",  "b",        "c",
                          "\u2581a", "ab", "\u2581ab", "\u00e9"};
  int id = 259;
  for (const char *p : pieces)
    vocab[p] = id++;
  auto special = [](int id, const char *content) {
    return json{{"id", id},        {"content", content}, {"single_word", false},
                {"lstrip", false}, {"rstrip", false},    {"normalized", false},
                {"special", true}};
  };
  return json{
      {"version", "1.0"},
      {"added_tokens",
       {special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")}},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", "\u2581"}},
          {{"type", "Replace"},
           {"pattern", {{"String", " "}}},
           {"content", "\u2581"}}}}}},
      {"pre_tokenizer", nullptr},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single",
         {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"special_tokens",
         {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"},
           {"pattern", {{"String", "\u2581"}}},
           {"content", " "}},
          {{"type", "ByteFallback"}},
          {{"type", "Fuse"}},
          {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", "<unk>"},
        {"fuse_unk", true},
        {"byte_fallback", true},
        {"vocab", vocab},
        {"merges", {"\u2581 a", "a b", "\u2581a b"}}}}};
}

const Tokenizer &miniLlama2() {
  static std::unique_ptr<Tokenizer> tokenizer = [] {
    std::string error;
    auto t = Tokenizer::fromJson(miniLlama2Json().dump(), &error);
    if (!t)
      ADD_FAILURE() << error;
    return t;
  }();
  if (!tokenizer)
    throw std::runtime_error("mini tokenizer did not load");
  return *tokenizer;
}

std::string streamAll(const Tokenizer &t, const std::vector<int32_t> &ids,
                      bool skip, std::vector<std::string> *pieces = nullptr) {
  StreamingDecoder decoder(t, skip);
  std::string out;
  for (int32_t id : ids) {
    std::string piece = decoder.push(id);
    if (pieces)
      pieces->push_back(piece);
    out += piece;
  }
  std::string rest = decoder.flush();
  if (pieces)
    pieces->push_back(rest);
  return out + rest;
}

} // namespace

//===----------------------------------------------------------------------===//
// (a) The shared models' reference prompts and generations.
//===----------------------------------------------------------------------===//

TEST(TokenizerReference, PromptsEncodeToReferenceIds) {
  json ref = readJson(dataPath("reference_generations.json"));
  ASSERT_FALSE(ref["prompts"].empty());
  for (const json &p : ref["prompts"]) {
    std::string text = p["text"];
    auto expected = p["ids"].get<std::vector<int32_t>>();
    auto ids = llama3().encode(text, /*addSpecialTokens=*/true);
    EXPECT_EQ(ids, expected)
        << "prompt: " << text << "\n got " << tokensToString(llama3(), ids);
    // Without special tokens: the same ids less the leading <s>.
    EXPECT_EQ(llama3().encode(text, false),
              std::vector<int32_t>(expected.begin() + 1, expected.end()));
    EXPECT_EQ(llama3().decode(expected, /*skipSpecialTokens=*/true), text);
    EXPECT_EQ(llama3().decode(expected, false), "<s>" + text);
  }
}

TEST(TokenizerReference, GenerationsDecodeToReferenceText) {
  json ref = readJson(dataPath("reference_generations.json"));
  size_t checked = 0;
  for (const json &g : ref["generations"]) {
    auto ids = g["ids"].get<std::vector<int32_t>>();
    std::string text = g["text"];
    EXPECT_EQ(llama3().decode(ids, true), text) << g["run"];
    EXPECT_EQ(streamAll(llama3(), ids, true), text) << g["run"];
    // The full text (prompt + generation) re-encodes to tokens that decode
    // back to it: byte-level BPE is lossless.
    const json &prompt = ref["prompts"][g["prompt_index"].get<size_t>()];
    std::string full = prompt["text"].get<std::string>() + text;
    EXPECT_EQ(llama3().decode(llama3().encode(full, true), true), full);
    ++checked;
  }
  EXPECT_EQ(checked, 32u); // 8 prompts x {main, draft} x {bf16, fp32}
}

TEST(TokenizerReference, Metadata) {
  const Tokenizer &t = llama3();
  EXPECT_EQ(t.vocabSize(), 8192);
  EXPECT_EQ(t.bosId(), 0);
  EXPECT_EQ(t.eosId(), 1);
  EXPECT_EQ(t.tokenToString(0), "<s>");
  EXPECT_EQ(t.tokenId("</s>"), 1);
  EXPECT_TRUE(t.isSpecialToken(0));
  EXPECT_FALSE(t.isSpecialToken(458));
  EXPECT_EQ(t.tokenId("no such token"), std::nullopt);
  EXPECT_EQ(t.tokenToString(-1), "");
  EXPECT_EQ(t.tokenToString(1 << 30), "");
}

//===----------------------------------------------------------------------===//
// (b) Hard cases against `tokenizers` (expected_*.json, from
// make_expected.py). Skipped when the files have not been generated.
//===----------------------------------------------------------------------===//

namespace {

void checkExpected(const std::string &expectedName, bool byteLevel) {
  std::string path = dataPath(expectedName);
  if (!fileExists(path))
    GTEST_SKIP() << expectedName
                 << " is absent: run test/data/tokenizer/make_expected.py on "
                    "a machine with Python tokenizers/sentencepiece";
  json expected = readJson(path);
  std::string tokPath = dataPath(expected["tokenizer"].get<std::string>());
  if (!fileExists(tokPath))
    GTEST_SKIP() << tokPath << " is absent: run make_expected.py";
  std::string error;
  auto t = Tokenizer::fromFile(tokPath, &error);
  ASSERT_TRUE(t) << error;
  SCOPED_TRACE(expectedName + " (" + expected.value("generator", "?") + ")");

  size_t cases = 0;
  for (const json &c : expected["cases"]) {
    std::string name = c["name"], text = c["text"];
    SCOPED_TRACE("case " + name);
    auto ids = c["ids"].get<std::vector<int32_t>>();
    auto idsSpecial = c["ids_special"].get<std::vector<int32_t>>();
    auto got = t->encode(text, false);
    EXPECT_EQ(idsToString(got), idsToString(ids))
        << "got " << tokensToString(*t, got) << "\nwant "
        << tokensToString(*t, ids);
    EXPECT_EQ(idsToString(t->encode(text, true)), idsToString(idsSpecial));
    EXPECT_EQ(t->decode(idsSpecial, false), c["decoded"].get<std::string>());
    EXPECT_EQ(t->decode(idsSpecial, true),
              c["decoded_skip"].get<std::string>());
    EXPECT_EQ(streamAll(*t, idsSpecial, true),
              c["decoded_skip"].get<std::string>());
    ++cases;
  }
  EXPECT_GT(cases, 20u);

  // Arbitrary id lists may decode to invalid UTF-8, which `tokenizers`
  // replaces with U+FFFD: from_utf8_lossy for ByteLevel (= sanitizeUtf8 of
  // our exact bytes), one U+FFFD per byte for ByteFallback (compared only
  // where no replacement happened).
  size_t decodeCases = 0;
  for (const json &c : expected["decode_cases"]) {
    auto ids = c["ids"].get<std::vector<int32_t>>();
    for (bool skip : {false, true}) {
      std::string want = c[skip ? "decoded_skip" : "decoded"];
      std::string got = t->decode(ids, skip);
      if (byteLevel) {
        EXPECT_EQ(optrt::sanitizeUtf8(got), want) << idsToString(ids);
      } else if (want.find("\xEF\xBF\xBD") == std::string::npos) {
        EXPECT_EQ(got, want) << idsToString(ids);
      }
      EXPECT_EQ(streamAll(*t, ids, skip), got) << idsToString(ids);
    }
    ++decodeCases;
  }
  EXPECT_GT(decodeCases, 0u);
}

} // namespace

TEST(TokenizerExpected, Llama3StyleMatchesTokenizers) {
  checkExpected("expected_llama3.json", /*byteLevel=*/true);
}

TEST(TokenizerExpected, Llama2StyleMatchesTokenizers) {
  checkExpected("expected_llama2.json", /*byteLevel=*/false);
}

//===----------------------------------------------------------------------===//
// (c) Invalid UTF-8, streaming, malformed tokenizer.json.
//===----------------------------------------------------------------------===//

TEST(TokenizerInvalidUtf8, ByteLevelEncodesRawBytes) {
  const Tokenizer &t = llama3();
  const std::string inputs[] = {
      std::string("\xFF"),
      std::string("abc\xC3("), // truncated 2-byte sequence
      std::string("\xE2\x82"), // truncated 3-byte sequence at end
      std::string("\xED\xA0\x80 surrogate"),
      std::string("\xC0\xAF overlong"),
      std::string("\xF4\x90\x80\x80 beyond U+10FFFF"),
      std::string("\x80\x80\x80 stray continuations"),
      std::string("mixed \xF0\x9F\x98 emoji prefix then \xF0\x9F\x98\x80 ok"),
      std::string("nul\0byte", 8),
      std::string("<s>\xFE</s>"),
  };
  for (const std::string &in : inputs) {
    auto ids = t.encode(in, false);
    EXPECT_FALSE(ids.empty());
    EXPECT_EQ(t.decode(ids, false), in) << idsToString(ids);
    EXPECT_EQ(streamAll(t, ids, false), in);
  }
  // A lone invalid byte is its own piece: the byte-level symbol of 0xFF is
  // 'ÿ' (U+00FF).
  EXPECT_EQ(t.encode("\xFF", false),
            std::vector<int32_t>{*t.tokenId("\xC3\xBF")});
  // Invalid bytes split pre-tokens but do not disturb their neighbours.
  auto around = t.encode("hello\xFFworld", false);
  auto hello = t.encode("hello", false), world = t.encode("world", false);
  std::vector<int32_t> want = hello;
  want.push_back(*t.tokenId("\xC3\xBF"));
  want.insert(want.end(), world.begin(), world.end());
  EXPECT_EQ(around, want);
}

TEST(TokenizerInvalidUtf8, ByteFallbackEncodesByteTokens) {
  const Tokenizer &t = miniLlama2();
  // "▁" "ab" merge chain; 'z' is not a piece: byte fallback <0x7A>.
  EXPECT_EQ(t.encode("ab c", false), (std::vector<int32_t>{265, 259, 262}));
  EXPECT_EQ(t.encode("z", true), (std::vector<int32_t>{1, 259, 3 + 'z'}));
  // Invalid bytes become their byte tokens, exactly.
  EXPECT_EQ(t.encode("a\xFF", false), (std::vector<int32_t>{263, 3 + 0xFF}));
  for (std::string in : {std::string("\xE2\x82 x"), std::string("\xC0\xAF"),
                         std::string("a\x80\x80"
                                     "b")}) {
    auto ids = t.encode(in, false);
    // Decode strips the space the normalizer prepended.
    EXPECT_EQ(t.decode(ids, false), in) << idsToString(ids);
    EXPECT_EQ(streamAll(t, ids, false), in);
  }
  // A multi-byte character that is a piece stays one token; one that is not
  // falls back to all of its bytes.
  EXPECT_EQ(t.encode("\u00e9", false), (std::vector<int32_t>{259, 266}));
  EXPECT_EQ(t.encode("\u00e8", false),
            (std::vector<int32_t>{259, 3 + 0xC3, 3 + 0xA8}));
}

TEST(TokenizerInvalidUtf8, SanitizeLikeFromUtf8Lossy) {
  EXPECT_EQ(optrt::sanitizeUtf8("ok"), "ok");
  EXPECT_EQ(optrt::sanitizeUtf8("a\xFF"
                                "b"),
            "a\uFFFDb");
  // A truncated sequence is one maximal subpart: one U+FFFD.
  EXPECT_EQ(optrt::sanitizeUtf8("\xE2\x82"
                                "x"),
            "\uFFFDx");
  EXPECT_EQ(optrt::sanitizeUtf8("\xF0\x9F\x98"), "\uFFFD");
  // Bytes that can never start a sequence are replaced one by one.
  EXPECT_EQ(optrt::sanitizeUtf8("\xC0\xAF"), "\uFFFD\uFFFD");
  EXPECT_EQ(optrt::sanitizeUtf8("\xED\xA0\x80"), "\uFFFD\uFFFD\uFFFD");
}

TEST(TokenizerStreaming, EmojiSplitAcrossTokens) {
  const Tokenizer &t = llama3();
  std::string text = "Hi \xF0\x9F\x98\x80 and \xF0\x9F\x91\xA8\xE2\x80\x8D"
                     "\xF0\x9F\x91\xA9 \xE6\x97\xA5\xE6\x9C\xAC!";
  auto ids = t.encode(text, true);
  std::vector<std::string> pieces;
  EXPECT_EQ(streamAll(t, ids, true, &pieces), text);
  // The emoji are spread over several byte tokens, yet every piece handed
  // out is valid UTF-8 on its own.
  bool sawEmpty = false;
  for (const std::string &piece : pieces) {
    EXPECT_EQ(optrt::sanitizeUtf8(piece), piece);
    sawEmpty |= piece.empty();
  }
  EXPECT_TRUE(sawEmpty) << "expected some tokens to complete no character";
  EXPECT_GT(ids.size(), 10u);
}

TEST(TokenizerStreaming, HoldsIncompleteTailUntilFlush) {
  const Tokenizer &t = llama3();
  auto ids = t.encode("\xF0\x9F\x98\x80", false);
  ASSERT_GE(ids.size(), 2u);
  StreamingDecoder decoder(t);
  std::string out;
  for (size_t i = 0; i + 1 < ids.size(); ++i)
    out += decoder.push(ids[i]);
  EXPECT_EQ(out, ""); // no partial character escapes
  // Flushing hands out what is held, raw.
  std::string rest = decoder.flush();
  EXPECT_EQ(rest,
            t.decode(std::vector<int32_t>(ids.begin(), ids.end() - 1), false));
  // After flush the decoder starts over.
  EXPECT_EQ(decoder.push(ids[0]), "");
  decoder.reset();
  EXPECT_EQ(decoder.push(*t.tokenId("a")), "a");
}

TEST(TokenizerStreaming, LongGenerationAndLeadingSpaceRules) {
  const Tokenizer &t = llama3();
  std::string text;
  for (int i = 0; i < 300; ++i)
    text += "word" + std::to_string(i) + " \xC3\xA9t\xC3\xA9 \xF0\x9F\x98\x80 ";
  auto ids = t.encode(text, true);
  EXPECT_EQ(streamAll(t, ids, true), text);
  EXPECT_EQ(streamAll(t, ids, false), "<s>" + text);

  // Llama 2's decoder strips one leading space at the start only; the
  // streaming decoder must keep the spaces between words.
  const Tokenizer &m = miniLlama2();
  auto mids = m.encode("ab ab c \xE2\x82\xAC ab", true);
  EXPECT_EQ(m.decode(mids, true), "ab ab c \xE2\x82\xAC ab");
  std::vector<int32_t> many;
  for (int i = 0; i < 100; ++i)
    many.insert(many.end(), mids.begin() + 1, mids.end());
  EXPECT_EQ(streamAll(m, many, true), m.decode(many, true));
}

TEST(TokenizerMalformed, CleanErrors) {
  struct Case {
    std::string json;
    std::string expectedError;
  };
  json base = miniLlama2Json();
  auto with = [&](const std::function<void(json &)> &edit) {
    json j = base;
    edit(j);
    return j.dump();
  };
  const Case cases[] = {
      {"", "not valid JSON"},
      {"{\"model\": ", "not valid JSON"},
      {"not json at all", "not valid JSON"},
      {"[1, 2, 3]", "must be a JSON object"},
      {"{}", "has no 'model'"},
      {with([](json &j) { j.erase("model"); }), "has no 'model'"},
      {with([](json &j) { j["model"]["type"] = "WordPiece"; }),
       "unsupported model type 'WordPiece'"},
      {with([](json &j) { j["model"]["type"] = "Unigram"; }),
       "unsupported model type 'Unigram'"},
      {with([](json &j) {
         j["pre_tokenizer"] = {{"type", "Whitespace"}};
       }),
       "unsupported pre_tokenizer type 'Whitespace'"},
      {with([](json &j) {
         j["pre_tokenizer"] = {{"type", "Sequence"},
                               {"pretokenizers", {{{"type", "Digits"}}}}};
       }),
       "unsupported pre_tokenizer type 'Digits'"},
      {with([](json &j) {
         j["normalizer"] = {{"type", "NFKC"}};
       }),
       "unsupported normalizer type 'NFKC'"},
      {with([](json &j) {
         j["decoder"] = {{"type", "WordPiece"}};
       }),
       "unsupported decoder type 'WordPiece'"},
      {with([](json &j) {
         j["post_processor"] = {{"type", "BertProcessing"}};
       }),
       "unsupported post_processor type 'BertProcessing'"},
      {with([](json &j) {
         j["decoder"] = {{"kind", "Fuse"}};
       }),
       "missing string field 'type'"},
      {with([](json &j) {
         j["pre_tokenizer"] = {{"type", "Split"},
                               {"pattern", {{"Regex", "([a-z"}}},
                               {"behavior", "Isolated"}};
       }),
       "cannot compile regex"},
      {with([](json &j) {
         j["pre_tokenizer"] = {{"type", "Split"},
                               {"pattern", {{"Regex", "a"}}},
                               {"behavior", "Sideways"}};
       }),
       "unknown behavior 'Sideways'"},
      {with([](json &j) { j["model"]["merges"].push_back("q r"); }),
       "not in the vocab"},
      {with([](json &j) { j["model"]["merges"].push_back("a"); }),
       "bad merge 'a'"},
      {with([](json &j) { j["model"]["merges"].push_back(42); }), "neither"},
      {with([](json &j) { j["model"]["vocab"]["x"] = "seven"; }),
       "is not an integer"},
      {with([](json &j) { j["model"]["vocab"] = json::array(); }),
       "missing object 'vocab'"},
      {with([](json &j) { j["model"]["unk_token"] = "<nope>"; }),
       "unk_token '<nope>' is not in the vocab"},
      {with([](json &j) { j["model"]["dropout"] = 0.1; }),
       "dropout is not supported"},
      {with([](json &j) { j["model"]["continuing_subword_prefix"] = "##"; }),
       "'continuing_subword_prefix' is not supported"},
      {with([](json &j) { j["added_tokens"][0]["content"] = 5; }),
       "field 'content' must be a string"},
      {with([](json &j) { j["added_tokens"] = "nope"; }),
       "'added_tokens' must be an array"},
      {with([](json &j) {
         j["post_processor"]["special_tokens"] = json::object();
       }),
       "special token '<s>' has no ids"},
      {with([](json &j) { j["normalizer"]["normalizers"] = 3; }),
       "missing array 'normalizers'"},
  };
  for (const Case &c : cases) {
    std::string error;
    auto t = Tokenizer::fromJson(c.json, &error);
    EXPECT_FALSE(t) << "accepted: " << c.json.substr(0, 200);
    EXPECT_NE(error.find(c.expectedError), std::string::npos)
        << "error: '" << error << "', want '" << c.expectedError << "'";
    EXPECT_EQ(error.find('\n'), std::string::npos) << error;
  }
  // Deep nesting is refused before anything recurses on it.
  {
    std::string deep(100000, '[');
    deep += std::string(100000, ']');
    std::string error;
    EXPECT_FALSE(Tokenizer::fromJson(deep, &error));
    EXPECT_NE(error.find("nests deeper"), std::string::npos) << error;
  }
  // A null error pointer is allowed.
  EXPECT_FALSE(Tokenizer::fromJson("{", nullptr));

  std::string error;
  EXPECT_FALSE(Tokenizer::fromFile("/nonexistent/tokenizer.json", &error));
  EXPECT_NE(error.find("cannot open"), std::string::npos) << error;
  // The real file loads; the same file with its pre-tokenizer type renamed
  // names the offender.
  json real = readJson(llama3StylePath());
  real["pre_tokenizer"]["pretokenizers"][1]["type"] = "CharDelimiterSplit";
  EXPECT_FALSE(Tokenizer::fromJson(real.dump(), &error));
  EXPECT_EQ(error, "unsupported pre_tokenizer type 'CharDelimiterSplit'");
}

//===----------------------------------------------------------------------===//
// Added tokens, component variants, performance, threads.
//===----------------------------------------------------------------------===//

TEST(TokenizerAddedTokens, SpecialTokensInText) {
  const Tokenizer &t = llama3();
  auto ids = t.encode("<s>Hello</s>", false);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), 0);
  EXPECT_EQ(ids.back(), 1);
  EXPECT_EQ(t.decode(ids, false), "<s>Hello</s>");
  EXPECT_EQ(t.decode(ids, true), "Hello");
  // Longest match wins; partial specials are plain text.
  auto partial = t.encode("<s </s", false);
  for (int32_t id : partial)
    EXPECT_FALSE(t.isSpecialToken(id));
}

TEST(TokenizerAddedTokens, StripAndSingleWordFlags) {
  // Expected ids from `tokenizers` 0.23 on this modified copy of the example tokenizer.
  json j = readJson(llama3StylePath());
  auto add = [&](int id, const char *content, bool lstrip, bool rstrip,
                 bool singleWord, bool normalized, bool special) {
    j["added_tokens"].push_back({{"id", id},
                                 {"content", content},
                                 {"single_word", singleWord},
                                 {"lstrip", lstrip},
                                 {"rstrip", rstrip},
                                 {"normalized", normalized},
                                 {"special", special}});
  };
  add(8192, "<mask>", true, false, false, false, true);
  add(8193, "[R]", false, true, false, false, true);
  add(8194, "zqx", false, false, true, true, false);
  // Content already in the vocab: the model's id (4125) wins over 8195.
  add(8195, "cat", false, false, false, false, true);
  std::string error;
  auto t = Tokenizer::fromJson(j.dump(), &error);
  ASSERT_TRUE(t) << error;
  EXPECT_EQ(t->vocabSize(), 8195);
  struct Case {
    const char *text;
    std::vector<int32_t> ids;
  };
  const Case cases[] = {
#include "AddedTokenCases.inc"
  };
  for (const Case &c : cases) {
    auto got = t->encode(c.text, false);
    EXPECT_EQ(idsToString(got), idsToString(c.ids))
        << "text '" << c.text << "': " << tokensToString(*t, got);
  }
  EXPECT_EQ(t->decode(t->encode("a <mask> b", false), true), "a b");
}

TEST(TokenizerAddedTokens, NormalizedTokensAndIdAssignment) {
  // Expected values from `tokenizers` 0.23 on the same file. Ids follow
  // tokenizers' add_tokens, not the "id" fields: "ab" is in the model vocab
  // (264); new tokens count up from the vocab size (267 entries).
  json j = miniLlama2Json();
  auto add = [&](int id, const char *content, bool normalized, bool special) {
    j["added_tokens"].push_back({{"id", id},
                                 {"content", content},
                                 {"single_word", false},
                                 {"lstrip", false},
                                 {"rstrip", false},
                                 {"normalized", normalized},
                                 {"special", special}});
  };
  add(300, "bc", true, false);
  add(301, "<Y>", true, true);
  add(302, "ab", false, true);
  std::string error;
  auto t = Tokenizer::fromJson(j.dump(), &error);
  ASSERT_TRUE(t) << error;
  EXPECT_EQ(t->vocabSize(), 269);
  EXPECT_EQ(t->tokenId("bc"), 267);
  EXPECT_EQ(t->tokenId("<Y>"), 268);
  EXPECT_EQ(t->tokenId("ab"), 264);
  // Normalized tokens match their normalized form ("▁bc") in normalized
  // text, and report it as their string.
  EXPECT_EQ(t->encode("bc c bc", false),
            (std::vector<int32_t>{267, 259, 262, 267}));
  EXPECT_EQ(t->encode("a<Y>b <Y>", false),
            (std::vector<int32_t>{263, 3 + '<', 3 + 'Y', 3 + '>', 261, 268}));
  EXPECT_EQ(t->encode("ab ab", false),
            (std::vector<int32_t>{264, 259, 259, 264}));
  EXPECT_EQ(t->tokenToString(267), "\u2581bc");
  EXPECT_EQ(t->decode({260, 267}, false), "a bc");
  // "<Y>" is special, but its string is "▁<Y>", so it is not skipped
  // (tokenizers compares strings); "ab" is skipped.
  EXPECT_EQ(t->decode({260, 268}, true), "a <Y>");
  EXPECT_EQ(t->decode({260, 264}, true), "a");
  EXPECT_EQ(t->decode({260, 264}, false), "aab");
}

TEST(TokenizerComponents, MetaspacePreTokenizerForm) {
  // Llama 2 as transformers v5 writes it: no normalizer, a Metaspace
  // pre-tokenizer (prepend_scheme "first", split false) and decoder.
  json j = miniLlama2Json();
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "Metaspace"},
                        {"replacement", "\u2581"},
                        {"prepend_scheme", "first"},
                        {"split", false}};
  std::string error;
  auto t = Tokenizer::fromJson(j.dump(), &error);
  ASSERT_TRUE(t) << error;
  EXPECT_EQ(t->encode("ab c", false), (std::vector<int32_t>{265, 259, 262}));
  // "first": no ▁ after a special token that starts the text.
  EXPECT_EQ(t->encode("<s>ab", false), (std::vector<int32_t>{1, 264}));
  // The legacy normalizer prepends on every segment instead.
  EXPECT_EQ(miniLlama2().encode("<s>ab", false),
            (std::vector<int32_t>{1, 265}));
}

TEST(TokenizerPerformance, LongWhitespaceAndWords) {
  const Tokenizer &t = llama3();
  auto time = [&](const std::string &text) {
    auto start = std::chrono::steady_clock::now();
    auto ids = t.encode(text, false);
    double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    EXPECT_EQ(t.decode(ids, false), text);
    return s;
  };
  // Linear-ish work: a quadratic pre-tokenizer or merge loop would take
  // minutes on these.
  EXPECT_LT(time(std::string(200000, ' ')), 2.0);
  EXPECT_LT(time(std::string(100000, ' ') + "x" + std::string(100000, '\n')),
            2.0);
  std::string mixed;
  for (int i = 0; i < 20000; ++i)
    mixed += " \t\n "[i % 4];
  EXPECT_LT(time(mixed + "end"), 2.0);
  EXPECT_LT(time(std::string(200000, 'a')), 2.0);
  EXPECT_LT(time(std::string(100000, '7')), 2.0);

  // Llama-2 style feeds whole segments to BPE: long text is one word.
  const Tokenizer &m = miniLlama2();
  std::string long2;
  for (int i = 0; i < 50000; ++i)
    long2 += i % 3 ? "ab " : "c  ";
  auto start = std::chrono::steady_clock::now();
  auto ids = m.encode(long2, false);
  EXPECT_LT(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count(),
      2.0);
  EXPECT_EQ(m.decode(ids, false), long2);
}

TEST(TokenizerThreads, ConcurrentEncodeIsConsistent) {
  const Tokenizer &t = llama3();
  json ref = readJson(dataPath("reference_generations.json"));
  std::vector<std::string> texts;
  for (const json &g : ref["generations"])
    texts.push_back(g["text"]);
  std::vector<std::vector<int32_t>> want;
  for (const std::string &s : texts)
    want.push_back(t.encode(s, true));
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int k = 0; k < 4; ++k)
    threads.emplace_back([&, k] {
      for (int round = 0; round < 20; ++round)
        for (size_t i = 0; i < texts.size(); ++i)
          mismatches[k] += t.encode(texts[i], true) != want[i];
    });
  for (std::thread &th : threads)
    th.join();
  for (int m : mismatches)
    EXPECT_EQ(m, 0);
}
