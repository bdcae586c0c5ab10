//===- BlockManagerTest.cpp - Tests for the KV block manager --------------===//

#include "runtime/core/BlockManager.h"

#include <gtest/gtest.h>

#include <map>
#include <numeric>
#include <random>

using namespace optrt;

namespace {

#define EXPECT_VALID(bm)                                                       \
  do {                                                                         \
    std::string error;                                                         \
    EXPECT_TRUE((bm).verify(&error)) << error;                                 \
  } while (false)

std::vector<TokenId> iota(int n, TokenId first = 0) {
  std::vector<TokenId> tokens(n);
  std::iota(tokens.begin(), tokens.end(), first);
  return tokens;
}

TEST(BlockManager, AllocatesBlocksAsTokensGrow) {
  BlockManager bm(/*numBlocks=*/8, /*blockSize=*/4, /*prefixCaching=*/false);
  EXPECT_EQ(bm.numFreeBlocks(), 8);
  EXPECT_EQ(bm.allocateWithPrefix(1, iota(10)), 0);
  EXPECT_EQ(bm.blockTable(1), (std::vector<BlockId>{0, 1, 2}));
  EXPECT_EQ(bm.numTokens(1), 10);
  EXPECT_EQ(bm.numComputedTokens(1), 0);
  EXPECT_EQ(bm.numUsedBlocks(), 3);

  std::vector<BlockCopy> copies;
  EXPECT_TRUE(bm.appendTokenIds(1, {10, 11}, copies));
  EXPECT_EQ(bm.blockTable(1).size(), 3u);
  EXPECT_TRUE(bm.appendTokens(1, 1, copies));
  EXPECT_EQ(bm.blockTable(1), (std::vector<BlockId>{0, 1, 2, 3}));
  EXPECT_EQ(bm.numTokens(1), 13);
  EXPECT_TRUE(bm.appendTokens(1, 0, copies));
  EXPECT_TRUE(copies.empty());
  EXPECT_VALID(bm);

  bm.free(1);
  EXPECT_FALSE(bm.contains(1));
  EXPECT_EQ(bm.numFreeBlocks(), 8);
  EXPECT_VALID(bm);
}

TEST(BlockManager, EmptySequenceGetsBlocksOnAppend) {
  BlockManager bm(4, 4, true);
  EXPECT_EQ(bm.allocateWithPrefix(7, {}), 0);
  EXPECT_TRUE(bm.blockTable(7).empty());
  EXPECT_EQ(bm.numUsedBlocks(), 0);
  std::vector<BlockCopy> copies;
  EXPECT_TRUE(bm.appendTokenIds(7, iota(5), copies));
  EXPECT_EQ(bm.blockTable(7).size(), 2u);
  EXPECT_VALID(bm);
}

TEST(BlockManager, ExhaustionFailsWithoutSideEffects) {
  BlockManager bm(4, 4, false);
  ASSERT_EQ(bm.allocateWithPrefix(1, iota(14)), 0);
  std::vector<BlockCopy> copies;
  EXPECT_TRUE(bm.canAppend(1, 2));
  EXPECT_FALSE(bm.canAppend(1, 3));
  EXPECT_FALSE(bm.appendTokenIds(1, iota(3), copies));
  EXPECT_EQ(bm.numTokens(1), 14);
  EXPECT_EQ(bm.blockTable(1).size(), 4u);

  // A new sequence that does not fit is not created.
  EXPECT_FALSE(bm.canAllocate(iota(1)));
  EXPECT_FALSE(bm.allocateWithPrefix(2, iota(1)).has_value());
  EXPECT_FALSE(bm.contains(2));
  EXPECT_VALID(bm);

  // Preempting the sequence frees room for the new one.
  bm.free(1);
  EXPECT_TRUE(bm.canAllocate(iota(16)));
  EXPECT_EQ(bm.allocateWithPrefix(2, iota(16)), 0);
  EXPECT_EQ(bm.numFreeBlocks(), 0);
  EXPECT_VALID(bm);
}

TEST(BlockManager, ForkSharesBlocksAndCopiesOnWrite) {
  BlockManager bm(8, 4, false);
  ASSERT_EQ(bm.allocateWithPrefix(1, iota(6)), 0); // blocks 0, 1 (partial)
  bm.fork(1, 2);
  EXPECT_EQ(bm.blockTable(2), bm.blockTable(1));
  EXPECT_EQ(bm.numTokens(2), 6);
  EXPECT_EQ(bm.numUsedBlocks(), 2);
  EXPECT_VALID(bm);

  // The child writes into the shared partial block: it gets a copy.
  std::vector<BlockCopy> copies;
  EXPECT_TRUE(bm.appendTokenIds(2, {100}, copies));
  EXPECT_EQ(copies, (std::vector<BlockCopy>{{1, 2}}));
  EXPECT_EQ(bm.blockTable(2), (std::vector<BlockId>{0, 2}));
  EXPECT_EQ(bm.blockTable(1), (std::vector<BlockId>{0, 1}));
  EXPECT_VALID(bm);

  // The parent is now the only owner of block 1 and writes in place.
  copies.clear();
  EXPECT_TRUE(bm.appendTokenIds(1, {200, 201, 202}, copies));
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(bm.blockTable(1), (std::vector<BlockId>{0, 1, 3}));
  EXPECT_VALID(bm);

  bm.free(1);
  EXPECT_EQ(bm.numUsedBlocks(), 2); // block 0 stays with the child
  EXPECT_VALID(bm);
  bm.free(2);
  EXPECT_EQ(bm.numFreeBlocks(), 8);
  EXPECT_VALID(bm);
}

TEST(BlockManager, ForkAtBlockBoundaryNeedsNoCopy) {
  BlockManager bm(8, 4, false);
  ASSERT_EQ(bm.allocateWithPrefix(1, iota(8)), 0);
  bm.fork(1, 2);
  std::vector<BlockCopy> copies;
  EXPECT_TRUE(bm.appendTokens(2, 1, copies));
  EXPECT_TRUE(bm.appendTokens(1, 1, copies));
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(bm.blockTable(1), (std::vector<BlockId>{0, 1, 3}));
  EXPECT_EQ(bm.blockTable(2), (std::vector<BlockId>{0, 1, 2}));
  EXPECT_VALID(bm);
}

TEST(BlockManager, CopyOnWriteNeedsAFreeBlock) {
  BlockManager bm(2, 4, false);
  ASSERT_EQ(bm.allocateWithPrefix(1, iota(6)), 0);
  bm.fork(1, 2);
  EXPECT_EQ(bm.numFreeBlocks(), 0);
  std::vector<BlockCopy> copies;
  // Appending even one token into the shared block needs a copy.
  EXPECT_FALSE(bm.canAppend(2, 1));
  EXPECT_FALSE(bm.appendTokens(2, 1, copies));
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(bm.blockTable(2), (std::vector<BlockId>{0, 1}));
  bm.free(1);
  EXPECT_TRUE(bm.appendTokens(2, 1, copies));
  EXPECT_TRUE(copies.empty()); // no longer shared
  EXPECT_VALID(bm);
}

TEST(BlockManager, ForkedChainsShareTransitively) {
  BlockManager bm(16, 4, false);
  ASSERT_EQ(bm.allocateWithPrefix(1, iota(5)), 0);
  bm.fork(1, 2);
  bm.fork(2, 3);
  std::vector<BlockCopy> copies;
  EXPECT_TRUE(bm.appendTokens(1, 1, copies));
  EXPECT_TRUE(bm.appendTokens(2, 1, copies));
  EXPECT_TRUE(bm.appendTokens(3, 1, copies));
  // The first two writers copy; the last one owns the original alone.
  EXPECT_EQ(copies, (std::vector<BlockCopy>{{1, 2}, {1, 3}}));
  EXPECT_EQ(bm.blockTable(3), (std::vector<BlockId>{0, 1}));
  EXPECT_VALID(bm);
}

//===----------------------------------------------------------------------===//
// Prefix caching
//===----------------------------------------------------------------------===//

TEST(BlockManagerPrefix, ComputedFullBlocksAreReused) {
  BlockManager bm(16, 4, true);
  std::vector<TokenId> prompt = iota(10, 100);
  ASSERT_EQ(bm.allocateWithPrefix(1, prompt), 0);
  // Not computed yet: nothing to reuse.
  EXPECT_EQ(bm.numCachedTokens(prompt), 0);
  bm.markComputed(1, 10);
  EXPECT_EQ(bm.numCachedTokens(prompt), 8);

  EXPECT_EQ(bm.allocateWithPrefix(2, prompt), 8);
  EXPECT_EQ(bm.numComputedTokens(2), 8);
  const auto &t1 = bm.blockTable(1);
  const auto &t2 = bm.blockTable(2);
  ASSERT_EQ(t2.size(), 3u);
  EXPECT_EQ(t2[0], t1[0]);
  EXPECT_EQ(t2[1], t1[1]);
  EXPECT_NE(t2[2], t1[2]);
  EXPECT_EQ(bm.numUsedBlocks(), 4);
  EXPECT_VALID(bm);
}

TEST(BlockManagerPrefix, HitsStopAtTheFirstDifferentBlock) {
  BlockManager bm(16, 4, true);
  std::vector<TokenId> prompt = iota(13, 100);
  ASSERT_EQ(bm.allocateWithPrefix(1, prompt), 0);
  bm.markComputed(1, 13);

  std::vector<TokenId> other = prompt;
  other[5] = 7; // second block differs
  EXPECT_EQ(bm.numCachedTokens(other), 4);
  other[0] = 7; // first block differs: later equal blocks must not hit
  EXPECT_EQ(bm.numCachedTokens(other), 0);
  // A shorter prompt only reuses whole blocks.
  EXPECT_EQ(bm.numCachedTokens(iota(7, 100)), 4);
  // The last token is always computed, even when its block is cached.
  EXPECT_EQ(bm.numCachedTokens(iota(8, 100)), 4);
  EXPECT_EQ(bm.numCachedTokens(iota(9, 100)), 8);
  EXPECT_EQ(bm.numCachedTokens({}), 0);
}

TEST(BlockManagerPrefix, DisabledCacheNeverHits) {
  BlockManager bm(16, 4, false);
  ASSERT_EQ(bm.allocateWithPrefix(1, iota(10)), 0);
  bm.markComputed(1, 10);
  EXPECT_EQ(bm.numCachedTokens(iota(10)), 0);
  EXPECT_EQ(bm.allocateWithPrefix(2, iota(10)), 0);
  bm.free(1);
  bm.free(2);
  EXPECT_EQ(bm.numEvictableBlocks(), 0);
  EXPECT_VALID(bm);
}

TEST(BlockManagerPrefix, DecodedTokensBecomeAPrefix) {
  BlockManager bm(16, 4, true);
  std::vector<TokenId> history = iota(3, 50);
  ASSERT_EQ(bm.allocateWithPrefix(1, history), 0);
  bm.markComputed(1, 3);
  std::vector<BlockCopy> copies;
  for (TokenId t = 0; t < 7; ++t) {
    ASSERT_TRUE(bm.appendTokenIds(1, {t}, copies));
    history.push_back(t);
    bm.markComputed(1, static_cast<int64_t>(history.size()));
  }
  EXPECT_EQ(history.size(), 10u);
  history.push_back(99);
  EXPECT_EQ(bm.numCachedTokens(history), 8);
  EXPECT_VALID(bm);
}

TEST(BlockManagerPrefix, PartiallyComputedSequencesRegisterOnlyComputedBlocks) {
  BlockManager bm(16, 4, true);
  std::vector<TokenId> prompt = iota(12, 1);
  ASSERT_EQ(bm.allocateWithPrefix(1, prompt), 0);
  bm.markComputed(1, 6); // a prefill chunk
  EXPECT_EQ(bm.numCachedTokens(prompt), 4);
  bm.markComputed(1, 12);
  EXPECT_EQ(bm.numCachedTokens(prompt), 8);
  EXPECT_VALID(bm);
}

TEST(BlockManagerPrefix, FreedCachedBlocksStayReusableUntilEvicted) {
  BlockManager bm(4, 2, true);
  std::vector<TokenId> prompt = {1, 2, 3, 4, 5};
  ASSERT_EQ(bm.allocateWithPrefix(1, prompt), 0); // blocks 0, 1, 2
  bm.markComputed(1, 5);                          // registers 0 and 1
  bm.free(1);
  EXPECT_EQ(bm.numFreeBlocks(), 4);
  EXPECT_EQ(bm.numEvictableBlocks(), 2);
  EXPECT_EQ(bm.numCachedTokens(prompt), 4);
  EXPECT_VALID(bm);

  // Unrelated allocations take uncached blocks first.
  ASSERT_EQ(bm.allocateWithPrefix(2, {9, 9, 9, 9}), 0);
  EXPECT_EQ(bm.numCachedTokens(prompt), 4);
  EXPECT_VALID(bm);

  // Then the least recently freed: sequence 1 freed its tail block first.
  ASSERT_EQ(bm.allocateWithPrefix(3, {8, 8}), 0);
  EXPECT_EQ(bm.blockTable(3), (std::vector<BlockId>{1}));
  EXPECT_EQ(bm.numCachedTokens(prompt), 2);
  EXPECT_EQ(bm.numEvictableBlocks(), 1);
  EXPECT_VALID(bm);

  // A hit revives the remaining cached block.
  bm.free(2);
  EXPECT_EQ(bm.allocateWithPrefix(4, prompt), 2);
  EXPECT_EQ(bm.blockTable(4)[0], 0);
  EXPECT_EQ(bm.numEvictableBlocks(), 0);
  EXPECT_VALID(bm);
}

TEST(BlockManagerPrefix, EvictableHitsCountAgainstTheFreePool) {
  BlockManager bm(2, 2, true);
  ASSERT_EQ(bm.allocateWithPrefix(1, {1, 2, 3}), 0);
  bm.markComputed(1, 3);
  bm.free(1);
  ASSERT_EQ(bm.numFreeBlocks(), 2);
  // One hit on an evictable block plus two new blocks: three of two.
  EXPECT_FALSE(bm.canAllocate({1, 2, 3, 4, 5}));
  EXPECT_FALSE(bm.allocateWithPrefix(2, {1, 2, 3, 4, 5}).has_value());
  EXPECT_EQ(bm.numCachedTokens({1, 2, 3}), 2);
  EXPECT_TRUE(bm.canAllocate({1, 2, 3}));
  EXPECT_EQ(bm.allocateWithPrefix(2, {1, 2, 3}), 2);
  EXPECT_EQ(bm.numFreeBlocks(), 0);
  EXPECT_VALID(bm);
}

TEST(BlockManagerPrefix, SharedHitsDoNotConsumeFreeBlocks) {
  BlockManager bm(4, 2, true);
  ASSERT_EQ(bm.allocateWithPrefix(1, {1, 2, 3, 4, 5}), 0);
  bm.markComputed(1, 5);
  ASSERT_EQ(bm.numFreeBlocks(), 1);
  // Both full blocks are in use by sequence 1; only the tail needs a block.
  EXPECT_TRUE(bm.canAllocate({1, 2, 3, 4, 7}));
  EXPECT_FALSE(bm.canAllocate({1, 2, 3, 5, 7}));
  EXPECT_EQ(bm.allocateWithPrefix(2, {1, 2, 3, 4, 7}), 4);
  EXPECT_EQ(bm.numFreeBlocks(), 0);
  EXPECT_VALID(bm);
}

TEST(BlockManagerPrefix, TokensWithoutIdsAreNeverCached) {
  BlockManager bm(8, 2, true);
  ASSERT_EQ(bm.allocateWithPrefix(1, {1, 2, 3}), 0);
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(bm.appendTokens(1, 3, copies));
  ASSERT_TRUE(bm.appendTokenIds(1, {7, 8}, copies));
  bm.markComputed(1, 8);
  // Only the block computed before the unknown tokens is registered.
  EXPECT_EQ(bm.numCachedTokens({1, 2, 3, 0, 0, 0, 7, 8, 9}), 2);
  bm.free(1);
  EXPECT_EQ(bm.numEvictableBlocks(), 1);
  EXPECT_VALID(bm);
}

TEST(BlockManagerPrefix, DuplicateContentIsRegisteredOnce) {
  BlockManager bm(8, 2, true);
  std::vector<TokenId> prompt = {1, 2, 3, 4, 5};
  // Two identical prompts admitted in the same step both compute.
  ASSERT_EQ(bm.allocateWithPrefix(1, prompt), 0);
  ASSERT_EQ(bm.allocateWithPrefix(2, prompt), 0);
  bm.markComputed(1, 5);
  bm.markComputed(2, 5);
  EXPECT_VALID(bm);
  bm.free(1);
  bm.free(2);
  EXPECT_EQ(bm.numEvictableBlocks(), 2);
  EXPECT_EQ(bm.numFreeBlocks(), 8);
  EXPECT_EQ(bm.allocateWithPrefix(3, prompt), 4);
  EXPECT_EQ(bm.blockTable(3)[0], 0);
  EXPECT_VALID(bm);
}

TEST(BlockManagerPrefix, ForkedSiblingsRegisterSharedBlocksOnce) {
  BlockManager bm(8, 2, true);
  ASSERT_EQ(bm.allocateWithPrefix(1, {1, 2, 3}), 0);
  bm.fork(1, 2);
  bm.markComputed(1, 3);
  bm.markComputed(2, 3);
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(bm.appendTokenIds(2, {4}, copies));
  ASSERT_TRUE(bm.appendTokenIds(1, {5}, copies));
  EXPECT_EQ(copies.size(), 1u);
  bm.markComputed(1, 4);
  bm.markComputed(2, 4);
  EXPECT_EQ(bm.numCachedTokens({1, 2, 3, 4, 0}), 4);
  EXPECT_EQ(bm.numCachedTokens({1, 2, 3, 5, 0}), 4);
  EXPECT_VALID(bm);
}

//===----------------------------------------------------------------------===//
// Randomized: a scheduler's life with a shadow of the KV contents.
//===----------------------------------------------------------------------===//

/// Runs random admissions, appends, step completions, forks, finishes,
/// cancellations and preemptions. A shadow KV cache stores, per slot, the token
/// whose KV was written there; each sequence must read back its own history
/// through its block table, which catches missing copy-on-write, wrong sharing
/// and stale prefix hits, not just bookkeeping errors.
void runRandomized(bool prefixCaching, uint32_t seed) {
  constexpr int32_t kNumBlocks = 48;
  constexpr int32_t kBlockSize = 4;
  BlockManager bm(kNumBlocks, kBlockSize, prefixCaching);
  std::mt19937 rng(seed);
  auto uniform = [&](int lo, int hi) {
    return std::uniform_int_distribution<int>(lo, hi)(rng);
  };

  // A few shared system prompts make prefix hits common.
  std::vector<std::vector<TokenId>> basePrompts(4);
  for (auto &base : basePrompts)
    for (int i = 0; i < 40; ++i)
      base.push_back(uniform(0, 3));

  std::vector<TokenId> slots(kNumBlocks * kBlockSize, -1);
  std::map<SeqId, std::vector<TokenId>> history;
  SeqId nextId = 1;
  int numHits = 0, numCopies = 0, numFailedAppends = 0, numFailedAdmits = 0;
  int numForks = 0;

  auto pick = [&]() {
    auto it = history.begin();
    std::advance(it, uniform(0, static_cast<int>(history.size()) - 1));
    return it->first;
  };
  auto slotOf = [&](SeqId seq, int64_t i) -> TokenId & {
    BlockId block = bm.blockTable(seq)[i / kBlockSize];
    return slots[block * kBlockSize + i % kBlockSize];
  };
  auto release = [&](SeqId seq) {
    bm.free(seq);
    history.erase(seq);
  };

  for (int op = 0; op < 20000; ++op) {
    int kind = uniform(0, 99);
    if (kind < 20 || history.empty()) {
      // Admit a prompt: a prefix of a shared one plus a private suffix.
      std::vector<TokenId> prompt = basePrompts[uniform(0, 3)];
      prompt.resize(uniform(1, 40));
      for (int i = uniform(0, 5); i > 0; --i)
        prompt.push_back(uniform(0, 3));
      bool fits = bm.canAllocate(prompt);
      int64_t expectedCached = bm.numCachedTokens(prompt);
      SeqId seq = nextId++;
      auto cached = bm.allocateWithPrefix(seq, prompt);
      ASSERT_EQ(cached.has_value(), fits);
      if (!cached) {
        ++numFailedAdmits;
        continue;
      }
      ASSERT_EQ(*cached, expectedCached);
      ASSERT_LT(*cached, static_cast<int64_t>(prompt.size()));
      numHits += *cached > 0;
      history[seq] = prompt;
    } else if (kind < 50) {
      // Append a decode token or a chunk.
      SeqId seq = pick();
      int n = uniform(1, 6);
      std::vector<TokenId> tokens;
      for (int i = 0; i < n; ++i)
        tokens.push_back(uniform(0, 3));
      bool withIds = uniform(0, 9) != 0;
      bool fits = bm.canAppend(seq, n);
      std::vector<BlockId> tableBefore = bm.blockTable(seq);
      std::vector<BlockCopy> copies;
      bool ok = withIds ? bm.appendTokenIds(seq, tokens, copies)
                        : bm.appendTokens(seq, n, copies);
      ASSERT_EQ(ok, fits);
      if (!ok) {
        ++numFailedAppends;
        ASSERT_TRUE(copies.empty());
        ASSERT_EQ(bm.blockTable(seq), tableBefore);
        // Preempt someone (possibly this sequence) to make room.
        release(pick());
        continue;
      }
      ASSERT_LE(copies.size(), 1u);
      for (const BlockCopy &copy : copies) {
        std::copy_n(slots.begin() + copy.src * kBlockSize, kBlockSize,
                    slots.begin() + copy.dst * kBlockSize);
        ++numCopies;
      }
      history[seq].insert(history[seq].end(), tokens.begin(), tokens.end());
    } else if (kind < 75) {
      // A step completed: the executor wrote the KV.
      SeqId seq = pick();
      int64_t from = bm.numComputedTokens(seq);
      int64_t to =
          from + uniform(0, static_cast<int>(bm.numTokens(seq) - from));
      for (int64_t i = from; i < to; ++i)
        slotOf(seq, i) = history[seq][i];
      bm.markComputed(seq, to);
    } else if (kind < 85 && history.size() < 40) {
      // Parallel sampling forks a fully computed sequence.
      SeqId parent = pick();
      if (bm.numComputedTokens(parent) != bm.numTokens(parent))
        continue;
      SeqId child = nextId++;
      bm.fork(parent, child);
      history[child] = history[parent];
      ++numForks;
    } else {
      release(pick()); // finish or cancel
    }

    std::string error;
    ASSERT_TRUE(bm.verify(&error)) << "after op " << op << ": " << error;
    for (const auto &[seq, tokens] : history) {
      ASSERT_EQ(bm.numTokens(seq), static_cast<int64_t>(tokens.size()));
      for (int64_t i = 0; i < bm.numComputedTokens(seq); ++i)
        ASSERT_EQ(slotOf(seq, i), tokens[i])
            << "sequence " << seq << " token " << i << " after op " << op;
    }
  }

  // The run must have exercised what it is meant to test.
  EXPECT_GT(numCopies, 30);
  EXPECT_GT(numForks, 100);
  EXPECT_GT(numFailedAppends, 100);
  EXPECT_GT(numFailedAdmits, 100);
  if (prefixCaching)
    EXPECT_GT(numHits, 1000);
  else
    EXPECT_EQ(numHits, 0);

  while (!history.empty())
    release(history.begin()->first);
  EXPECT_EQ(bm.numFreeBlocks(), kNumBlocks);
  EXPECT_EQ(bm.numUsedBlocks(), 0);
  EXPECT_VALID(bm);
}

TEST(BlockManagerRandomized, WithoutPrefixCaching) { runRandomized(false, 1); }
TEST(BlockManagerRandomized, WithPrefixCaching) { runRandomized(true, 2); }
TEST(BlockManagerRandomized, WithPrefixCachingOtherSeed) {
  runRandomized(true, 3);
}

} // namespace
