//===- BpeModel.h - BPE model of tokenizer.json (internal) ----------------===//
//
// The merge loop follows tokenizers' `Word::merge_all`: a min-heap of
// (rank, position) over a linked list of symbols, so a word of n symbols
// costs O(n log n) and ties resolve exactly as there. Results are cached per
// word because pre-tokenized text repeats words constantly.
//
//===----------------------------------------------------------------------===//

#ifndef OPTRT_TOKENIZER_BPEMODEL_H
#define OPTRT_TOKENIZER_BPEMODEL_H

#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace optrt::tok {

class BpeModel {
public:
  struct Options {
    std::optional<std::string> unkToken;
    bool fuseUnk = false;
    bool byteFallback = false;
    bool ignoreMerges = false;
  };

  /// Takes the vocabulary and merges (pairs of token strings, by rank).
  /// Returns false and sets error on inconsistent input.
  bool init(std::unordered_map<std::string, int32_t> vocab,
            const std::vector<std::pair<std::string, std::string>> &merges,
            const Options &options, std::string *error);

  /// Appends the ids of one pre-tokenized word.
  void tokenize(std::string_view word, std::vector<int32_t> &out) const;

  std::optional<int32_t> tokenToId(std::string_view token) const;
  /// nullptr if id is not in the vocabulary.
  const std::string *idToToken(int32_t id) const;
  /// Number of vocabulary entries (tokenizers' get_vocab_size).
  int64_t vocabCount() const { return static_cast<int64_t>(vocab_.size()); }
  /// One past the largest id.
  int32_t idLimit() const { return static_cast<int32_t>(idToToken_.size()); }

private:
  void mergeWord(std::string_view word, std::vector<int32_t> &out) const;

  struct MergeInfo {
    int32_t rank;
    int32_t newId;
  };
  static uint64_t pairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) |
           static_cast<uint32_t>(b);
  }

  Options options_;
  std::optional<int32_t> unkId_;
  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> idToToken_;
  std::vector<bool> hasId_;
  std::unordered_map<uint32_t, int32_t> charToId_; // single-character tokens
  std::array<int32_t, 256> byteFallbackIds_{};     // <0xNN>, -1 if absent
  std::unordered_map<uint64_t, MergeInfo> merges_;

  // Word cache, sharded so that concurrent encoders rarely contend.
  static constexpr size_t kCacheShards = 16;
  static constexpr size_t kCacheEntriesPerShard = 4096;
  static constexpr size_t kMaxCachedWordBytes = 256;
  struct CacheShard {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<int32_t>> map;
  };
  mutable std::array<CacheShard, kCacheShards> cache_;
};

} // namespace optrt::tok

#endif // OPTRT_TOKENIZER_BPEMODEL_H
