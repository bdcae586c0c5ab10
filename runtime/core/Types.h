//===- Types.h - Identifiers shared by the runtime core ---------*- C++ -*-===//
//
// Small vocabulary types used by the block manager, sampler and scheduler.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_CORE_TYPES_H
#define OPTMLIR_RUNTIME_CORE_TYPES_H

#include <cstdint>

namespace optrt {

/// A token id of the model's vocabulary.
using TokenId = int32_t;

/// Identifies one sequence (one sample of one request) for its whole life.
using SeqId = uint64_t;

/// Index of a KV-cache block in the pool, in [0, numBlocks).
using BlockId = int32_t;

/// splitmix64's finalizer: a bijection with good avalanche, used for block
/// hashes and counter-based random numbers.
inline uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

} // namespace optrt

#endif // OPTMLIR_RUNTIME_CORE_TYPES_H
