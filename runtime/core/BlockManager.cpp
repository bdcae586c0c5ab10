//===- BlockManager.cpp - Block ids of the paged KV cache -----------------===//

#include "runtime/core/BlockManager.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

using namespace optrt;

namespace {

/// Chain hash of the (empty) prefix before a sequence's first block.
constexpr uint64_t kRootHash = 0x6a09e667f3bcc908ULL;

uint64_t hashBlock(uint64_t parentHash, const TokenId *tokens, int32_t n) {
  uint64_t h = mix64(parentHash ^ 0x9e3779b97f4a7c15ULL);
  for (int32_t i = 0; i < n; ++i)
    h = mix64(h ^ static_cast<uint32_t>(tokens[i]));
  return h;
}

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/// Misuse by the caller (unknown sequence, bad counts) would corrupt the KV of
/// other requests if it went on, so it stops the process in every build.
[[noreturn]] void fatal(const char *what, SeqId seq) {
  std::fprintf(stderr, "optrt::BlockManager: %s (sequence %llu)\n", what,
               static_cast<unsigned long long>(seq));
  std::abort();
}

} // namespace

BlockManager::BlockManager(int32_t numBlocks, int32_t blockSize,
                           bool enablePrefixCaching)
    : blockSz(blockSize), prefixCaching(enablePrefixCaching) {
  if (numBlocks < 0 || blockSize < 1) {
    std::fprintf(stderr,
                 "optrt::BlockManager: need numBlocks >= 0 and blockSize >= 1, "
                 "got %d and %d\n",
                 numBlocks, blockSize);
    std::abort();
  }
  blocks.resize(numBlocks);
  // Popped from the back, so blocks are handed out in increasing id order.
  freeList.reserve(numBlocks);
  for (BlockId id = numBlocks - 1; id >= 0; --id) {
    freeList.push_back(id);
    blocks[id].onFreeList = true;
  }
  if (prefixCaching) {
    cachedTokens.resize(static_cast<size_t>(numBlocks) * blockSize);
    cachedByHash.reserve(numBlocks);
  }
}

int32_t BlockManager::numFreeBlocks() const {
  return static_cast<int32_t>(freeList.size()) + numEvictable;
}

BlockManager::Sequence &BlockManager::getSeq(SeqId seq) {
  auto it = seqs.find(seq);
  if (it == seqs.end())
    fatal("unknown sequence", seq);
  return it->second;
}

const BlockManager::Sequence &BlockManager::getSeq(SeqId seq) const {
  auto it = seqs.find(seq);
  if (it == seqs.end())
    fatal("unknown sequence", seq);
  return it->second;
}

int64_t BlockManager::numTokens(SeqId seq) const {
  return getSeq(seq).numTokens;
}

int64_t BlockManager::numComputedTokens(SeqId seq) const {
  return getSeq(seq).numComputed;
}

const std::vector<BlockId> &BlockManager::blockTable(SeqId seq) const {
  return getSeq(seq).table;
}

BlockManager::PrefixLookup
BlockManager::lookupPrefix(const std::vector<TokenId> &tokens) const {
  PrefixLookup result;
  result.lastHash = kRootHash;
  if (!prefixCaching || tokens.empty())
    return result;
  // The last token is always computed: its logits start the generation.
  int64_t maxBlocks = static_cast<int64_t>(tokens.size() - 1) / blockSz;
  for (int64_t b = 0; b < maxBlocks; ++b) {
    const TokenId *blockTokens = tokens.data() + b * blockSz;
    uint64_t hash = hashBlock(result.lastHash, blockTokens, blockSz);
    auto it = cachedByHash.find(hash);
    if (it == cachedByHash.end())
      break;
    BlockId id = it->second;
    const Block &block = blocks[id];
    auto stored = cachedTokens.begin() + static_cast<size_t>(id) * blockSz;
    if (block.parentHash != result.lastHash ||
        !std::equal(blockTokens, blockTokens + blockSz, stored))
      break;
    result.hits.push_back(id);
    if (block.refCount == 0)
      ++result.numFreeHits;
    result.lastHash = hash;
  }
  return result;
}

int64_t
BlockManager::numCachedTokens(const std::vector<TokenId> &tokens) const {
  return static_cast<int64_t>(lookupPrefix(tokens).hits.size()) * blockSz;
}

bool BlockManager::canAllocate(const std::vector<TokenId> &tokens) const {
  PrefixLookup lookup = lookupPrefix(tokens);
  int64_t newBlocks = ceilDiv(static_cast<int64_t>(tokens.size()), blockSz) -
                      static_cast<int64_t>(lookup.hits.size());
  return newBlocks + lookup.numFreeHits <= numFreeBlocks();
}

std::optional<int64_t>
BlockManager::allocateWithPrefix(SeqId seq,
                                 const std::vector<TokenId> &tokens) {
  if (contains(seq))
    fatal("allocateWithPrefix: sequence already exists", seq);
  PrefixLookup lookup = lookupPrefix(tokens);
  int64_t numHits = static_cast<int64_t>(lookup.hits.size());
  int64_t newBlocks =
      ceilDiv(static_cast<int64_t>(tokens.size()), blockSz) - numHits;
  if (newBlocks + lookup.numFreeHits > numFreeBlocks())
    return std::nullopt;

  Sequence &s = seqs[seq];
  // Take the hits before allocating so that eviction cannot pick them.
  for (BlockId id : lookup.hits) {
    acquire(id);
    s.table.push_back(id);
  }
  int64_t numCached = numHits * blockSz;
  s.numTokens = s.numComputed = numCached;
  s.numHashedBlocks = numHits;
  s.lastHash = lookup.lastHash;
  std::vector<BlockCopy> copies;
  appendImpl(seq, static_cast<int64_t>(tokens.size()) - numCached,
             tokens.data() + numCached, copies);
  return numCached;
}

int64_t BlockManager::blocksToAppend(const Sequence &s, int64_t n) const {
  if (n == 0)
    return 0;
  int64_t needed =
      ceilDiv(s.numTokens + n, blockSz) - static_cast<int64_t>(s.table.size());
  bool lastIsPartial = s.numTokens % blockSz != 0;
  if (lastIsPartial && blocks[s.table.back()].refCount > 1)
    ++needed;
  return needed;
}

bool BlockManager::canAppend(SeqId seq, int64_t n) const {
  if (n < 0)
    fatal("canAppend: negative token count", seq);
  return blocksToAppend(getSeq(seq), n) <= numFreeBlocks();
}

bool BlockManager::appendTokenIds(SeqId seq, const std::vector<TokenId> &tokens,
                                  std::vector<BlockCopy> &copies) {
  return appendImpl(seq, static_cast<int64_t>(tokens.size()), tokens.data(),
                    copies);
}

bool BlockManager::appendTokens(SeqId seq, int64_t n,
                                std::vector<BlockCopy> &copies) {
  if (n < 0)
    fatal("appendTokens: negative token count", seq);
  return appendImpl(seq, n, nullptr, copies);
}

bool BlockManager::appendImpl(SeqId seq, int64_t n, const TokenId *tokens,
                              std::vector<BlockCopy> &copies) {
  Sequence &s = getSeq(seq);
  if (blocksToAppend(s, n) > numFreeBlocks())
    return false;
  if (n == 0)
    return true;

  // Writing into a shared, partially filled last block: make it private.
  if (s.numTokens % blockSz != 0) {
    BlockId &last = s.table.back();
    if (blocks[last].refCount > 1) {
      BlockId fresh = takeFreeBlock();
      copies.push_back({last, fresh});
      release(last);
      last = fresh;
    }
  }
  while (static_cast<int64_t>(s.table.size()) * blockSz < s.numTokens + n)
    s.table.push_back(takeFreeBlock());
  // Ids extend the hash chain only while every earlier id is known.
  bool chainIntact =
      s.numHashedBlocks * blockSz + static_cast<int64_t>(s.pending.size()) ==
      s.numTokens;
  if (prefixCaching && tokens && chainIntact)
    s.pending.insert(s.pending.end(), tokens, tokens + n);
  s.numTokens += n;
  return true;
}

void BlockManager::markComputed(SeqId seq, int64_t n) {
  Sequence &s = getSeq(seq);
  if (n < s.numComputed || n > s.numTokens)
    fatal("markComputed: count below the computed or above the allocated "
          "tokens",
          seq);
  s.numComputed = n;
  int64_t numKnown =
      s.numHashedBlocks * blockSz + static_cast<int64_t>(s.pending.size());
  int64_t numFull = std::min(n, numKnown) / blockSz;
  size_t consumed = 0;
  for (; s.numHashedBlocks < numFull; ++s.numHashedBlocks) {
    const TokenId *blockTokens = s.pending.data() + consumed;
    uint64_t hash = hashBlock(s.lastHash, blockTokens, blockSz);
    registerBlock(s.table[s.numHashedBlocks], hash, s.lastHash, blockTokens);
    s.lastHash = hash;
    consumed += blockSz;
  }
  s.pending.erase(s.pending.begin(), s.pending.begin() + consumed);
}

void BlockManager::registerBlock(BlockId id, uint64_t hash, uint64_t parentHash,
                                 const TokenId *tokens) {
  Block &block = blocks[id];
  // Already registered through a forked sibling that shares it.
  if (block.cached)
    return;
  // Another block holds the same prefix; this one stays private.
  if (!cachedByHash.emplace(hash, id).second)
    return;
  block.cached = true;
  block.hash = hash;
  block.parentHash = parentHash;
  std::copy(tokens, tokens + blockSz,
            cachedTokens.begin() + static_cast<size_t>(id) * blockSz);
}

void BlockManager::fork(SeqId parent, SeqId child) {
  if (contains(child))
    fatal("fork: child sequence already exists", child);
  // Copy before inserting: insertion may rehash and move the parent.
  Sequence copy = getSeq(parent);
  for (BlockId id : copy.table)
    ++blocks[id].refCount;
  seqs.emplace(child, std::move(copy));
}

void BlockManager::free(SeqId seq) {
  Sequence &s = getSeq(seq);
  // Tail blocks are the least likely to be shared by other prompts, so they
  // are released first and hence evicted first.
  for (auto it = s.table.rbegin(); it != s.table.rend(); ++it)
    release(*it);
  seqs.erase(seq);
}

BlockId BlockManager::takeFreeBlock() {
  BlockId id;
  if (!freeList.empty()) {
    id = freeList.back();
    freeList.pop_back();
    blocks[id].onFreeList = false;
  } else {
    id = lruHead;
    lruRemove(id);
    Block &block = blocks[id];
    cachedByHash.erase(block.hash);
    block.cached = false;
  }
  blocks[id].refCount = 1;
  return id;
}

void BlockManager::acquire(BlockId id) {
  Block &block = blocks[id];
  if (block.refCount == 0)
    lruRemove(id);
  ++block.refCount;
}

void BlockManager::release(BlockId id) {
  Block &block = blocks[id];
  if (--block.refCount > 0)
    return;
  if (block.cached) {
    lruPushBack(id);
    return;
  }
  freeList.push_back(id);
  block.onFreeList = true;
}

void BlockManager::lruPushBack(BlockId id) {
  Block &block = blocks[id];
  block.lruPrev = lruTail;
  block.lruNext = -1;
  if (lruTail >= 0)
    blocks[lruTail].lruNext = id;
  else
    lruHead = id;
  lruTail = id;
  ++numEvictable;
}

void BlockManager::lruRemove(BlockId id) {
  Block &block = blocks[id];
  if (block.lruPrev >= 0)
    blocks[block.lruPrev].lruNext = block.lruNext;
  else
    lruHead = block.lruNext;
  if (block.lruNext >= 0)
    blocks[block.lruNext].lruPrev = block.lruPrev;
  else
    lruTail = block.lruPrev;
  block.lruPrev = block.lruNext = -1;
  --numEvictable;
}

bool BlockManager::verify(std::string *error) const {
  auto fail = [&](const std::string &what) {
    if (error)
      *error = what;
    return false;
  };
  auto blockName = [](BlockId id) { return "block " + std::to_string(id); };
  auto seqName = [](SeqId seq) { return "sequence " + std::to_string(seq); };
  const int32_t n = numBlocks();

  // Count references from block tables; `seenIn` catches a block listed
  // twice in one table.
  std::vector<int32_t> refs(n, 0);
  std::vector<size_t> seenIn(n, SIZE_MAX);
  size_t seqIndex = 0;
  for (const auto &[seq, s] : seqs) {
    if (static_cast<int64_t>(s.table.size()) != ceilDiv(s.numTokens, blockSz))
      return fail(seqName(seq) + " has " + std::to_string(s.table.size()) +
                  " blocks for " + std::to_string(s.numTokens) + " tokens");
    if (s.numComputed < 0 || s.numComputed > s.numTokens)
      return fail(seqName(seq) + " has more computed than allocated tokens");
    if (!prefixCaching && (s.numHashedBlocks != 0 || !s.pending.empty()))
      return fail(seqName(seq) + " hashes tokens with prefix caching off");
    if (s.numHashedBlocks * blockSz > s.numComputed)
      return fail(seqName(seq) + " hashed blocks that are not computed");
    if (s.numHashedBlocks * blockSz + static_cast<int64_t>(s.pending.size()) >
        s.numTokens)
      return fail(seqName(seq) + " has ids for more tokens than it holds");
    for (BlockId id : s.table) {
      if (id < 0 || id >= n)
        return fail(seqName(seq) + " holds invalid " + blockName(id));
      if (seenIn[id] == seqIndex)
        return fail(seqName(seq) + " holds " + blockName(id) + " twice");
      seenIn[id] = seqIndex;
      ++refs[id];
    }
    ++seqIndex;
  }

  std::vector<bool> inFree(n, false);
  for (BlockId id : freeList) {
    if (id < 0 || id >= n)
      return fail("free list holds invalid " + blockName(id));
    if (inFree[id])
      return fail(blockName(id) + " is twice on the free list");
    inFree[id] = true;
  }
  std::vector<bool> inLru(n, false);
  int32_t lruCount = 0;
  BlockId prev = -1;
  for (BlockId id = lruHead; id >= 0; id = blocks[id].lruNext) {
    if (id >= n || inLru[id] || lruCount >= n)
      return fail("LRU list is corrupt at " + blockName(id));
    if (blocks[id].lruPrev != prev)
      return fail("LRU back link of " + blockName(id) + " is wrong");
    inLru[id] = true;
    ++lruCount;
    prev = id;
  }
  if (prev != lruTail)
    return fail("LRU tail is not the last block of the list");
  if (lruCount != numEvictable)
    return fail("LRU list holds " + std::to_string(lruCount) +
                " blocks, counter says " + std::to_string(numEvictable));

  size_t numCached = 0;
  for (BlockId id = 0; id < n; ++id) {
    const Block &block = blocks[id];
    if (block.refCount != refs[id])
      return fail(blockName(id) + " has refcount " +
                  std::to_string(block.refCount) + " but " +
                  std::to_string(refs[id]) + " block tables hold it");
    if (block.onFreeList != inFree[id])
      return fail(blockName(id) + " has a stale free-list flag");
    bool shouldBeFree = block.refCount == 0 && !block.cached;
    bool shouldBeEvictable = block.refCount == 0 && block.cached;
    if (inFree[id] != shouldBeFree)
      return fail(blockName(id) + (inFree[id] ? " is" : " is not") +
                  " on the free list with refcount " +
                  std::to_string(block.refCount));
    if (inLru[id] != shouldBeEvictable)
      return fail(blockName(id) + (inLru[id] ? " is" : " is not") +
                  " evictable with refcount " + std::to_string(block.refCount));
    if (block.cached) {
      if (!prefixCaching)
        return fail(blockName(id) + " is cached with prefix caching off");
      auto it = cachedByHash.find(block.hash);
      if (it == cachedByHash.end() || it->second != id)
        return fail(blockName(id) + " is cached but not found by its hash");
      ++numCached;
    }
  }
  if (numCached != cachedByHash.size())
    return fail("hash map holds blocks that are not marked cached");
  return true;
}
