//===- BlockManager.h - Block ids of the paged KV cache ---------*- C++ -*-===//
//
// The KV cache is a pool of numBlocks blocks of blockSize token slots each; the
// memory lives with the executor, this class only decides which block ids each
// sequence uses. A sequence's block table maps its token i to slot
// i % blockSize of block table[i / blockSize].
//
// Blocks are reference counted: fork() shares every block of a parent with a
// child, and the first write into a shared, partially filled last block makes
// a private copy (copy-on-write) that the executor must perform before the step
// that writes it.
//
// With prefix caching, a full block whose KV has been computed is registered
// under a hash of its tokens chained with the hash of all blocks before it
// (the tokens are compared too, so a 64-bit collision within a block cannot
// serve the wrong KV).
// A new sequence whose prompt starts with registered blocks takes references
// to them instead of recomputing them. A registered block whose last user is
// freed stays in the cache (still counted as free) until the pool needs it;
// such blocks are evicted least recently freed first.
//
// Misuse (an unknown or duplicate sequence id, a count out of range) aborts
// with a message: going on would hand one request's KV to another.
// Not thread-safe: the scheduler owns it and calls it from one thread.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_CORE_BLOCKMANAGER_H
#define OPTMLIR_RUNTIME_CORE_BLOCKMANAGER_H

#include "runtime/core/Types.h"

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace optrt {

/// A block copy the executor performs before the next step (copy-on-write):
/// all KV slots of block `src` into block `dst`, in every layer.
struct BlockCopy {
  BlockId src;
  BlockId dst;
  bool operator==(const BlockCopy &other) const {
    return src == other.src && dst == other.dst;
  }
};

class BlockManager {
public:
  BlockManager(int32_t numBlocks, int32_t blockSize, bool enablePrefixCaching);

  int32_t numBlocks() const { return static_cast<int32_t>(blocks.size()); }
  int32_t blockSize() const { return blockSz; }
  bool prefixCachingEnabled() const { return prefixCaching; }

  /// Blocks an allocation can take now: unreferenced ones, including cached
  /// blocks that would be evicted.
  int32_t numFreeBlocks() const;
  /// Blocks referenced by at least one sequence.
  int32_t numUsedBlocks() const { return numBlocks() - numFreeBlocks(); }
  /// Free blocks that still hold reusable cached KV.
  int32_t numEvictableBlocks() const { return numEvictable; }

  bool contains(SeqId seq) const { return seqs.count(seq) != 0; }
  /// Token slots allocated to `seq`.
  int64_t numTokens(SeqId seq) const;
  /// Leading tokens of `seq` whose KV is written (markComputed, prefix hits).
  int64_t numComputedTokens(SeqId seq) const;
  const std::vector<BlockId> &blockTable(SeqId seq) const;

  /// Leading tokens of `tokens` that allocateWithPrefix would find cached: a
  /// whole number of blocks, and never the last token, whose logits are needed.
  int64_t numCachedTokens(const std::vector<TokenId> &tokens) const;
  /// Whether allocateWithPrefix(seq, tokens) would succeed now.
  bool canAllocate(const std::vector<TokenId> &tokens) const;
  /// Creates `seq` (which must not exist) with slots for `tokens`, sharing the
  /// cached leading blocks. Returns the number of leading tokens found cached
  /// (already computed), or nullopt, changing nothing, when the pool cannot
  /// hold the rest. An empty `tokens` creates an empty sequence.
  std::optional<int64_t> allocateWithPrefix(SeqId seq,
                                            const std::vector<TokenId> &tokens);

  /// Whether appending `n` tokens to `seq` would succeed now.
  bool canAppend(SeqId seq, int64_t n) const;
  /// Allocates slots for `tokens` after the existing ones. Returns false,
  /// changing nothing, when the pool is exhausted (the scheduler preempts and
  /// retries). Copies the executor must do first are appended to `copies`.
  bool appendTokenIds(SeqId seq, const std::vector<TokenId> &tokens,
                      std::vector<BlockCopy> &copies);
  /// As above for `n` tokens whose ids are not given; the blocks holding them,
  /// and all later blocks of `seq`, are never registered in the prefix cache.
  /// (Not an overload of appendTokenIds: `{5}` would silently mean 5 tokens.)
  bool appendTokens(SeqId seq, int64_t n, std::vector<BlockCopy> &copies);

  /// Declares the KV of the first `n` tokens of `seq` written (after the step
  /// that computed them). Full blocks among them become reusable prefixes:
  /// registering only computed blocks keeps a sequence preempted or cancelled
  /// before its step from leaving unwritten blocks in the cache.
  void markComputed(SeqId seq, int64_t n);

  /// Creates `child` (which must not exist) sharing all blocks of `parent`,
  /// and its computed count: fork after the step that wrote the parent's KV.
  void fork(SeqId parent, SeqId child);
  /// Releases all blocks of `seq` and forgets it (finish, cancel, preempt).
  void free(SeqId seq);

  /// Checks every invariant: each block is exactly one of free, cached and
  /// evictable, or referenced with a count equal to the number of block tables
  /// holding it; the hash map, free list, LRU list and per-sequence counters
  /// agree. On failure describes the first violation in `error`.
  bool verify(std::string *error = nullptr) const;

private:
  struct Block {
    int32_t refCount = 0;
    /// Registered in `cachedByHash` under `hash`, with its tokens stored.
    bool cached = false;
    /// Whether it is on the free list; kept to make verify() linear.
    bool onFreeList = false;
    uint64_t hash = 0;
    uint64_t parentHash = 0;
    /// Intrusive LRU links (-1: none); meaningful only for cached blocks
    /// with refCount == 0.
    BlockId lruPrev = -1;
    BlockId lruNext = -1;
  };

  struct Sequence {
    std::vector<BlockId> table;
    int64_t numTokens = 0;
    int64_t numComputed = 0;
    /// Leading blocks whose chain hash is known; `lastHash` is that of the
    /// last of them. `pending` holds the known token ids after them: all of
    /// them unless tokens were appended without ids, which ends the chain.
    int64_t numHashedBlocks = 0;
    uint64_t lastHash = 0;
    std::vector<TokenId> pending;
  };

  /// Result of walking the cache along a token list.
  struct PrefixLookup {
    std::vector<BlockId> hits;
    uint64_t lastHash;
    /// Hits that are free (evictable) and so consume a free block.
    int32_t numFreeHits = 0;
  };

  Sequence &getSeq(SeqId seq);
  const Sequence &getSeq(SeqId seq) const;
  PrefixLookup lookupPrefix(const std::vector<TokenId> &tokens) const;
  int64_t blocksToAppend(const Sequence &s, int64_t n) const;
  bool appendImpl(SeqId seq, int64_t n, const TokenId *tokens,
                  std::vector<BlockCopy> &copies);
  /// Takes a block for exclusive use: an uncached free one if any, else the
  /// least recently freed cached one.
  BlockId takeFreeBlock();
  void acquire(BlockId id);
  void release(BlockId id);
  void registerBlock(BlockId id, uint64_t hash, uint64_t parentHash,
                     const TokenId *tokens);
  void lruPushBack(BlockId id);
  void lruRemove(BlockId id);

  int32_t blockSz;
  bool prefixCaching;
  std::vector<Block> blocks;
  std::vector<BlockId> freeList;
  /// LRU list of evictable cached blocks; the head is evicted first.
  BlockId lruHead = -1;
  BlockId lruTail = -1;
  int32_t numEvictable = 0;
  std::unordered_map<uint64_t, BlockId> cachedByHash;
  /// Tokens of each cached block (blockSize per block), to reject a hash
  /// collision instead of serving another prompt's KV.
  std::vector<TokenId> cachedTokens;
  std::unordered_map<SeqId, Sequence> seqs;
};

} // namespace optrt

#endif // OPTMLIR_RUNTIME_CORE_BLOCKMANAGER_H
