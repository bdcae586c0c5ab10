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

} // namespace optrt

#endif // OPTMLIR_RUNTIME_CORE_TYPES_H
