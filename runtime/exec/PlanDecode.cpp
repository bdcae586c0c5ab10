//===- PlanDecode.cpp - reading a plan's commands, for executors ----------===//

#include "runtime/exec/PlanDecode.h"

#include "runtime/exec/PlanAbi.h"

#include <cstring>

namespace optrt {
namespace pa = planabi;
using namespace artifact;

namespace {
bool decodeExtent(const fb::Arg &arg, Extent &extent) {
  if (arg.kind() == fb::ArgKind::RuntimeScalar) {
    extent = {true, arg.index()};
    return arg.index() >= 0 && arg.index() < pa::NumRuntimeScalars;
  }
  extent = {false, arg.index()};
  return arg.kind() == fb::ArgKind::Int && arg.index() >= 0;
}

bool isArrayBase(const fb::Arg &arg) {
  return arg.kind() == fb::ArgKind::Buffer ||
         arg.kind() == fb::ArgKind::Weight ||
         arg.kind() == fb::ArgKind::KVCache;
}
} // namespace

bool decodePlan(const fb::Plan &plan, bool withLaunch,
                const BaseAddress &baseAddress,
                std::vector<DecodedCommand> &commands, std::string &error) {
  for (const fb::Command *command : *plan.commands()) {
    DecodedCommand decoded;
    decoded.kind = command->kind();
    decoded.name = command->name() ? command->name()->str() : "";
    decoded.entry = command->entry();
    decoded.minTokens = command->min_tokens();
    decoded.maxTokens = command->max_tokens();
    std::string where = "command '" + decoded.name + "'";
    if (decoded.kind != fb::CommandKind::KernelCall &&
        decoded.kind != fb::CommandKind::Gemm &&
        decoded.kind != fb::CommandKind::QuantizedGemm) {
      error = where + " has kind '" + commandKindName(decoded.kind) +
              "', which this runtime does not run";
      return false;
    }
    const auto &args = *command->args();
    size_t i = 0;
    bool launched = withLaunch && decoded.kind == fb::CommandKind::KernelCall;
    if (launched) {
      int64_t values[6];
      for (int64_t &value : values) {
        if (i >= args.size() || args.Get(i)->kind() != fb::ArgKind::Int) {
          error = where + " does not start with its launch (6 integers; "
                          "GPU artifacts of schema 1 need compiling again)";
          return false;
        }
        value = args.Get(i++)->index();
      }
      if (values[5] < 1) {
        error = where + ": its launch has " + std::to_string(values[5]) +
                " rows per block";
        return false;
      }
      decoded.launch = {values[0], values[1], values[2], values[3], values[4],
                        values[5], {}};
      if (i >= args.size() || !decodeExtent(*args.Get(i++), decoded.launch.rows)) {
        error = where + ": its launch names no row count";
        return false;
      }
    }
    while (i < args.size()) {
      const fb::Arg *base = args.Get(i++);
      if (!isArrayBase(*base) && withLaunch &&
          decoded.kind == fb::CommandKind::Gemm) {
        int64_t values[7];
        values[0] = base->index();
        for (int v = 1; v < 7; ++v) {
          if (i >= args.size() || args.Get(i)->kind() != fb::ArgKind::Int) {
            error = where + ": a GEMV variant needs 7 integers";
            return false;
          }
          values[v] = args.Get(i++)->index();
        }
        if (base->kind() != fb::ArgKind::Int || values[0] < 1) {
          error = where + ": a GEMV variant has no token bound";
          return false;
        }
        GemvVariant variant;
        variant.maxTokens = values[0];
        variant.entry = uint32_t(values[1]);
        variant.launch = {values[2], values[3], values[4], values[5],
                          values[6], 1, {}};
        decoded.gemvVariants.push_back(variant);
        continue;
      }
      if (!isArrayBase(*base) &&
          decoded.kind == fb::CommandKind::QuantizedGemm) {
        // [Int activation quantization] [Float static scale]
        if (base->kind() == fb::ArgKind::Int && base->index() >= 0 &&
            base->index() <= 3) {
          decoded.activationQuant = int32_t(base->index());
          continue;
        }
        if (base->kind() == fb::ArgKind::Float && base->value() > 0) {
          decoded.activationScale = base->value();
          continue;
        }
        error = where + ": argument " + std::to_string(i - 1) +
                " is no activation quantization mode or scale";
        return false;
      }
      if (!isArrayBase(*base)) {
        Extent scalar;
        if (!launched || !decodeExtent(*base, scalar)) {
          error = where + ": argument " + std::to_string(i - 1) +
                  " is neither an array nor a scalar";
          return false;
        }
        decoded.scalars.push_back(scalar);
        continue;
      }
      Operand operand;
      if (base->kind() == fb::ArgKind::Weight)
        operand.weight = base->index();
      operand.address = baseAddress(*base, error);
      if (!operand.address) {
        error = where + ": " + error;
        return false;
      }
      if (i >= args.size() || args.Get(i)->kind() != fb::ArgKind::Int) {
        error = where + ": an operand has no rank";
        return false;
      }
      int64_t rank = args.Get(i++)->index();
      if (rank < 0 || rank > 8 || i + 2 * rank > args.size()) {
        error = where + ": operand rank " + std::to_string(rank) +
                " is invalid or its extents are missing";
        return false;
      }
      for (int64_t e = 0; e < 2 * rank; ++e) {
        Extent extent;
        if (!decodeExtent(*args.Get(i++), extent)) {
          error = where + ": an operand extent is neither a size nor a "
                          "runtime scalar";
          return false;
        }
        (e < rank ? operand.sizes : operand.strides).push_back(extent);
      }
      decoded.operands.push_back(std::move(operand));
    }
    auto unitStride = [](const Extent &stride) {
      return !stride.isScalar && stride.value == 1;
    };
    auto matrix = [&](const Operand &operand) {
      return operand.sizes.size() == 2 && unitStride(operand.strides[1]);
    };
    if (decoded.kind == fb::CommandKind::QuantizedGemm) {
      const std::vector<Operand> &ops = decoded.operands;
      if (ops.size() < 4 || ops.size() > 5 ||
          !std::all_of(ops.begin(), ops.end(), matrix) ||
          !std::all_of(ops.begin() + 3, ops.end(),
                       [](const Operand &op) { return op.weight >= 0; }) ||
          ops[1].weight < 0) {
        error = where + ": a quantized gemm takes A, the weight's values, C "
                        "and its scales (and zero points), 2-D, the arrays of "
                        "the weight being weights";
        return false;
      }
      if ((decoded.activationQuant == 3) != (decoded.activationScale > 0)) {
        error = where + ": static fp8 activations need a scale, and only they";
        return false;
      }
    }
    if (decoded.kind == fb::CommandKind::Gemm) {
      std::vector<Operand> &ops = decoded.operands;
      if (ops.size() < 3 || ops.size() > 4 ||
          !std::all_of(ops.begin(), ops.begin() + 3, matrix)) {
        error = where + ": a gemm takes three 2-D operands with unit column "
                        "stride (and an optional bias)";
        return false;
      }
      // The bias: [N] with unit stride, N the weight's rows (PlanAbi.h).
      if (ops.size() == 4) {
        const Operand &bias = ops[3], &b = ops[1];
        if (bias.sizes.size() != 1 || !unitStride(bias.strides[0]) ||
            bias.sizes[0].isScalar != b.sizes[0].isScalar ||
            bias.sizes[0].value != b.sizes[0].value) {
          error = where + ": a gemm's bias must be 1-D with unit stride and "
                          "as long as the weight has rows";
          return false;
        }
        if (!decoded.gemvVariants.empty()) {
          error = where + ": a gemm with a bias has no GEMV variants";
          return false;
        }
      }
    }
    commands.push_back(std::move(decoded));
  }
  return true;
}

void fillStepInputs(const StepBatch &batch, const ExecutorLimits &limits,
                    int64_t maxBlocksPerSeq, const StepInputs &inputs,
                    int64_t *scalars) {
  int64_t numTokens = batch.tokens.size();
  int64_t numSeqs = batch.sequences.size();
  int64_t numRows = batch.logitRows.size();
  scalars[pa::NumTokens] = numTokens;
  scalars[pa::NumLogitRows] = numRows;
  scalars[pa::NumSeqs] = numSeqs;
  scalars[pa::NumSeqsPlusOne] = numSeqs + 1;
  scalars[pa::MaxBlocksPerSeq] = maxBlocksPerSeq;
  scalars[pa::NumBlocks] = limits.numBlocks;

  std::memcpy(inputs.inputIds, batch.tokens.data(), numTokens * 4);
  std::memcpy(inputs.positions, batch.positions.data(), numTokens * 4);
  std::memcpy(inputs.logitRows, batch.logitRows.data(), numRows * 4);
  int32_t next = 0;
  for (int64_t s = 0; s < numSeqs; ++s) {
    const SequenceSlice &seq = batch.sequences[s];
    inputs.queryStart[s] = next;
    inputs.contextLen[s] = seq.contextLength;
    int64_t numBlocks =
        std::min<int64_t>(seq.blockTable->size(), maxBlocksPerSeq);
    std::memcpy(inputs.blockTable + s * maxBlocksPerSeq,
                seq.blockTable->data(), numBlocks * 4);
    for (int32_t j = 0; j < seq.numQueryTokens; ++j) {
      int32_t position = seq.contextLength - seq.numQueryTokens + j;
      inputs.slotMapping[next + j] =
          (*seq.blockTable)[position / limits.blockSize] * limits.blockSize +
          position % limits.blockSize;
    }
    next += seq.numQueryTokens;
  }
  inputs.queryStart[numSeqs] = next;
}

} // namespace optrt
