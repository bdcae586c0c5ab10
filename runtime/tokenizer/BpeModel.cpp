//===- BpeModel.cpp - BPE model of tokenizer.json -------------------------===//

#include "runtime/tokenizer/BpeModel.h"

#include "runtime/tokenizer/Utf8.h"

#include <cstdio>
#include <functional>
#include <queue>

namespace optrt::tok {

bool BpeModel::init(
    std::unordered_map<std::string, int32_t> vocab,
    const std::vector<std::pair<std::string, std::string>> &merges,
    const Options &options, std::string *error) {
  options_ = options;
  vocab_ = std::move(vocab);
  int32_t maxId = -1;
  for (const auto &[token, id] : vocab_) {
    if (id < 0) {
      *error = "negative id " + std::to_string(id) + " in model vocab";
      return false;
    }
    maxId = std::max(maxId, id);
  }
  idToToken_.assign(static_cast<size_t>(maxId) + 1, std::string());
  hasId_.assign(static_cast<size_t>(maxId) + 1, false);
  for (const auto &[token, id] : vocab_) {
    idToToken_[id] = token;
    hasId_[id] = true;
    size_t len = validSequenceLength(token, 0);
    if (len != 0 && len == token.size())
      charToId_[decodeCodePoint(token, 0, len)] = id;
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto it = vocab_.find(name);
    byteFallbackIds_[b] = it == vocab_.end() ? -1 : it->second;
  }
  if (options_.unkToken) {
    auto it = vocab_.find(*options_.unkToken);
    if (it == vocab_.end()) {
      *error = "unk_token '" + *options_.unkToken + "' is not in the vocab";
      return false;
    }
    unkId_ = it->second;
  }
  merges_.reserve(merges.size() * 2);
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto &[left, right] = merges[rank];
    auto l = vocab_.find(left), r = vocab_.find(right),
         m = vocab_.find(left + right);
    if (l == vocab_.end() || r == vocab_.end() || m == vocab_.end()) {
      *error = "merge " + std::to_string(rank) + " ('" + left + "' '" + right +
               "') uses a token that is not in the vocab";
      return false;
    }
    // The first occurrence of a pair wins, as in tokenizers.
    merges_.emplace(pairKey(l->second, r->second),
                    MergeInfo{static_cast<int32_t>(rank), m->second});
  }
  return true;
}

std::optional<int32_t> BpeModel::tokenToId(std::string_view token) const {
  auto it = vocab_.find(std::string(token));
  if (it == vocab_.end())
    return std::nullopt;
  return it->second;
}

const std::string *BpeModel::idToToken(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= idToToken_.size() || !hasId_[id])
    return nullptr;
  return &idToToken_[id];
}

void BpeModel::tokenize(std::string_view word,
                        std::vector<int32_t> &out) const {
  if (word.empty())
    return;
  if (word.size() > kMaxCachedWordBytes) {
    mergeWord(word, out);
    return;
  }
  std::string key(word);
  CacheShard &shard = cache_[std::hash<std::string>{}(key) % kCacheShards];
  {
    std::lock_guard<std::mutex> lock(shard.mutex);
    auto it = shard.map.find(key);
    if (it != shard.map.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  size_t begin = out.size();
  mergeWord(word, out);
  std::vector<int32_t> ids(out.begin() + begin, out.end());
  std::lock_guard<std::mutex> lock(shard.mutex);
  // Dropping the whole shard when full is crude but keeps memory bounded and
  // costs nothing on the hit path.
  if (shard.map.size() >= kCacheEntriesPerShard)
    shard.map.clear();
  shard.map.emplace(std::move(key), std::move(ids));
}

void BpeModel::mergeWord(std::string_view word,
                         std::vector<int32_t> &out) const {
  if (options_.ignoreMerges) {
    auto it = vocab_.find(std::string(word));
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }

  struct Symbol {
    int32_t id;
    int32_t prev, next;
    bool live;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto push = [&](int32_t id) {
    int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, index + 1, true});
  };

  // Initial symbols: one per character; unknown characters fall back to
  // their <0xNN> byte tokens, else to the unk token (fused when asked).
  // A pending unk is emitted only when a known character or the end follows,
  // and byte-fallback characters do not flush it: this mirrors tokenizers'
  // merge_word exactly, ordering quirk included.
  bool pendingUnk = false;
  for (size_t pos = 0; pos < word.size();) {
    size_t valid = validSequenceLength(word, pos);
    size_t len = valid ? valid : 1;
    std::optional<int32_t> id;
    if (valid) {
      auto it = charToId_.find(decodeCodePoint(word, pos, len));
      if (it != charToId_.end())
        id = it->second;
    }
    pos += len;
    if (id) {
      if (pendingUnk)
        push(*unkId_);
      pendingUnk = false;
      push(*id);
      continue;
    }
    bool allBytes = options_.byteFallback;
    for (size_t i = pos - len; allBytes && i < pos; ++i)
      allBytes = byteFallbackIds_[static_cast<unsigned char>(word[i])] >= 0;
    if (allBytes) {
      for (size_t i = pos - len; i < pos; ++i)
        push(byteFallbackIds_[static_cast<unsigned char>(word[i])]);
      continue;
    }
    if (unkId_) {
      if (pendingUnk && !options_.fuseUnk)
        push(*unkId_);
      pendingUnk = true;
    }
    // With neither fallback nor unk, tokenizers drops the character too.
  }
  if (pendingUnk)
    push(*unkId_);
  if (symbols.empty())
    return;
  symbols.back().next = -1;

  struct Candidate {
    int32_t rank, pos, newId;
  };
  // Min-heap on (rank, pos), as tokenizers orders its merges.
  auto later = [](const Candidate &a, const Candidate &b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  std::vector<Candidate> storage;
  storage.reserve(symbols.size());
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(later)> queue(
      later, std::move(storage));
  auto lookup = [&](int32_t a, int32_t b) -> const MergeInfo * {
    auto it = merges_.find(pairKey(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  };
  for (size_t i = 0; i + 1 < symbols.size(); ++i)
    if (const MergeInfo *m = lookup(symbols[i].id, symbols[i + 1].id))
      queue.push({m->rank, static_cast<int32_t>(i), m->newId});

  while (!queue.empty()) {
    Candidate top = queue.top();
    queue.pop();
    Symbol &cur = symbols[top.pos];
    if (!cur.live || cur.next < 0)
      continue;
    Symbol &right = symbols[cur.next];
    // Stale entry: the pair at this position changed since it was queued.
    const MergeInfo *m = lookup(cur.id, right.id);
    if (!m || m->newId != top.newId)
      continue;
    cur.id = top.newId;
    right.live = false;
    cur.next = right.next;
    if (cur.next >= 0)
      symbols[cur.next].prev = top.pos;
    if (cur.prev >= 0)
      if (const MergeInfo *pm = lookup(symbols[cur.prev].id, cur.id))
        queue.push({pm->rank, cur.prev, pm->newId});
    if (cur.next >= 0)
      if (const MergeInfo *nm = lookup(cur.id, symbols[cur.next].id))
        queue.push({nm->rank, top.pos, nm->newId});
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next)
    out.push_back(symbols[i].id);
}

} // namespace optrt::tok
