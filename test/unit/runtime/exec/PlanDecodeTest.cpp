//===- PlanDecodeTest.cpp - a plan's Gemm commands as executors read them -===//
//
// Gemm commands with and without the optional bias operand (PlanAbi.h),
// written into the sample artifact and decoded as the CUDA executor does.
// No GPU needed.
//
//===----------------------------------------------------------------------===//

#include "SampleArtifact.h"

#include "runtime/artifact/Artifact.h"
#include "runtime/exec/PlanAbi.h"
#include "runtime/exec/PlanDecode.h"

#include <gtest/gtest.h>

#include <unistd.h>

using namespace optrt;
using namespace optrt::artifact;
namespace pa = optrt::planabi;

namespace {

/// [base] [rank] [sizes] [strides] with static sizes and dense strides, the
/// first size num_tokens when `tokens`.
void appendArray(std::vector<Arg> &args, Arg base,
                 std::vector<int64_t> shape, bool tokens) {
  args.push_back(base);
  args.push_back(Arg::integer(shape.size()));
  for (size_t d = 0; d < shape.size(); ++d)
    args.push_back(d == 0 && tokens ? Arg::runtimeScalar(pa::NumTokens)
                                    : Arg::integer(shape[d]));
  int64_t stride = 1;
  std::vector<int64_t> strides(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    strides[d] = stride;
    stride *= shape[d];
  }
  for (int64_t s : strides)
    args.push_back(Arg::integer(s));
}

class PlanDecodeTest : public ::testing::Test {
protected:
  /// The operands of C[T, 8] = A[T, 8] * W[8, 8]^T (T = num_tokens).
  std::vector<Arg> gemmArgs() {
    std::vector<Arg> args;
    appendArray(args, Arg::buffer(1), {0, 8}, true);
    appendArray(args, Arg::weight(2), {8, 8}, false);
    appendArray(args, Arg::buffer(1, 512), {0, 8}, true);
    return args;
  }

  /// Writes the sample artifact with `args` as its only command (a Gemm),
  /// opens it and decodes the plan as a GPU executor would.
  bool decode(const std::vector<Arg> &args, std::vector<DecodedCommand> &out,
              std::string &error) {
    ArtifactSpec spec = artifact::testing::sampleSpec();
    spec.plan.commands = {{CommandKind::Gemm, "gemm", kNoKernel, 0, args}};
    std::string path = ::testing::TempDir() + "plan_decode_" +
                       std::to_string(::getpid()) + ".optpkg";
    if (!artifact::testing::writeSample(path, error, /*virtualWeights=*/false, spec))
      return false;
    std::unique_ptr<Artifact> artifact = Artifact::open(path, error);
    ::unlink(path.c_str());
    if (!artifact)
      return false;
    // Fake addresses: 0x1000 * (kind + 1) + 0x100 * index + offset.
    auto base = [](const fb::Arg &arg, std::string &) -> uint64_t {
      return 0x1000 * (uint64_t(arg.kind()) + 1) + 0x100 * arg.index() +
             arg.offset();
    };
    return decodePlan(artifact->plan(), /*withLaunch=*/true, base, out,
                      error);
  }
};

TEST_F(PlanDecodeTest, GemmWithoutBiasKeepsItsGemvVariants) {
  std::vector<Arg> args = gemmArgs();
  for (int64_t v : {1, 0, 0, 8, 1, 128, 0})
    args.push_back(Arg::integer(v));
  std::vector<DecodedCommand> commands;
  std::string error;
  ASSERT_TRUE(decode(args, commands, error)) << error;
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_EQ(commands[0].operands.size(), 3u);
  EXPECT_EQ(commands[0].gemvVariants.size(), 1u);
}

TEST_F(PlanDecodeTest, GemmCarriesItsBiasAsAFourthOperand) {
  std::vector<Arg> args = gemmArgs();
  appendArray(args, Arg::weight(4), {8}, false);
  std::vector<DecodedCommand> commands;
  std::string error;
  ASSERT_TRUE(decode(args, commands, error)) << error;
  ASSERT_EQ(commands.size(), 1u);
  const DecodedCommand &gemm = commands[0];
  ASSERT_EQ(gemm.operands.size(), 4u);
  EXPECT_TRUE(gemm.gemvVariants.empty());
  // Weight (kind 1) number 4.
  EXPECT_EQ(gemm.operands[3].address, 0x2000u + 0x400u);
  ASSERT_EQ(gemm.operands[3].sizes.size(), 1u);
  EXPECT_EQ(gemm.operands[3].sizes[0].value, 8);
  EXPECT_FALSE(gemm.operands[3].sizes[0].isScalar);
}

TEST_F(PlanDecodeTest, MalformedBiasesAreRefused) {
  struct Case {
    const char *what;
    std::vector<Arg> extra;
    const char *message;
  };
  std::vector<Arg> shortBias, matrixBias, stridedBias, withGemv, fifth;
  appendArray(shortBias, Arg::weight(4), {5}, false);
  appendArray(matrixBias, Arg::weight(4), {1, 8}, false);
  appendArray(stridedBias, Arg::weight(4), {8}, false);
  stridedBias.back() = Arg::integer(2);
  appendArray(withGemv, Arg::weight(4), {8}, false);
  for (int64_t v : {1, 0, 0, 8, 1, 128, 0})
    withGemv.push_back(Arg::integer(v));
  appendArray(fifth, Arg::weight(4), {8}, false);
  appendArray(fifth, Arg::weight(4), {8}, false);
  Case cases[] = {
      {"shorter than the weight's rows", shortBias, "as long as the weight"},
      {"2-D", matrixBias, "must be 1-D"},
      {"strided", stridedBias, "unit stride"},
      {"with GEMV variants", withGemv, "has no GEMV variants"},
      {"five operands", fifth, "three 2-D operands"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.what);
    std::vector<Arg> args = gemmArgs();
    args.insert(args.end(), c.extra.begin(), c.extra.end());
    std::vector<DecodedCommand> commands;
    std::string error;
    EXPECT_FALSE(decode(args, commands, error));
    EXPECT_NE(error.find("command 'gemm'"), std::string::npos) << error;
    EXPECT_NE(error.find(c.message), std::string::npos) << error;
  }
}

} // namespace
