//===- HostModuleTest.cpp - Loading host kernel code from memory ----------===//

#include "runtime/host/HostModule.h"
#include "runtime/host/MemRef.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <unistd.h>
#include <vector>

using namespace optrt;

namespace {

std::vector<uint8_t> readFixture() {
  // OPTRT_HOST_FIXTURE overrides the build-time path (to run the binary on
  // another machine).
  const char *path = std::getenv("OPTRT_HOST_FIXTURE");
  std::ifstream in(path ? path : HOST_FIXTURE_PATH, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

TEST(HostModule, LoadsFromMemoryAndCalls) {
  std::vector<uint8_t> bytes = readFixture();
  ASSERT_GT(bytes.size(), 64u) << HOST_FIXTURE_PATH;
  std::string error;
  std::unique_ptr<HostModule> module =
      HostModule::load(bytes.data(), bytes.size(), &error);
  ASSERT_TRUE(module) << error;
  bytes.assign(bytes.size(), 0); // the module must not keep using them

  using Scale =
      void(MemRefDescriptor<float, 1> *, MemRefDescriptor<float, 1> *, float);
  Scale *scale = module->lookupFunction<Scale>("_mlir_ciface_scale");
  ASSERT_NE(scale, nullptr);
  std::vector<float> in = {1, 2, 3, 4, 5}, out(5, 0);
  auto inDesc = makeMemRef(in.data(), {5});
  auto outDesc = makeMemRef(out.data(), {5});
  scale(&inDesc, &outDesc, 2.5f);
  for (size_t i = 0; i < in.size(); ++i)
    EXPECT_EQ(out[i], 2.5f * in[i]);

  EXPECT_EQ(module->lookup("no_such_symbol"), nullptr);
}

TEST(HostModule, ModulesAreIndependent) {
  // Each load is its own copy (own globals), even while another is loaded
  // and after one is unloaded and its fd number reused.
  std::vector<uint8_t> bytes = readFixture();
  std::string error;
  auto first = HostModule::load(bytes.data(), bytes.size(), &error);
  ASSERT_TRUE(first) << error;
  auto second = HostModule::load(bytes.data(), bytes.size(), &error);
  ASSERT_TRUE(second) << error;
  using Counter = int();
  Counter *a = first->lookupFunction<Counter>("fixture_counter");
  Counter *b = second->lookupFunction<Counter>("fixture_counter");
  ASSERT_TRUE(a && b);
  EXPECT_NE(reinterpret_cast<void *>(a), reinterpret_cast<void *>(b));
  EXPECT_EQ(a(), 1);
  EXPECT_EQ(a(), 2);
  EXPECT_EQ(b(), 1);
  first.reset();
  auto third = HostModule::load(bytes.data(), bytes.size(), &error);
  ASSERT_TRUE(third) << error;
  EXPECT_EQ(third->lookupFunction<Counter>("fixture_counter")(), 1);
  EXPECT_EQ(b(), 2);
}

TEST(HostModule, LeavesNoFiles) {
  std::vector<uint8_t> bytes = readFixture();
  char cwd[4096];
  ASSERT_NE(getcwd(cwd, sizeof(cwd)), nullptr);
  std::string error;
  auto module = HostModule::load(bytes.data(), bytes.size(), &error);
  ASSERT_TRUE(module) << error;
  // The object is known to the loader only by its /proc/self/fd path.
  std::ifstream maps("/proc/self/maps");
  std::string line;
  bool sawMemfd = false;
  while (std::getline(maps, line))
    sawMemfd |= line.find("optmlir-host-kernels") != std::string::npos;
  EXPECT_TRUE(sawMemfd);
}

TEST(HostModule, RejectsGarbage) {
  std::string error;
  std::vector<uint8_t> garbage(4096);
  for (size_t i = 0; i < garbage.size(); ++i)
    garbage[i] = static_cast<uint8_t>(i * 131 + 7);
  EXPECT_FALSE(HostModule::load(garbage.data(), garbage.size(), &error));
  EXPECT_NE(error.find("not an ELF file"), std::string::npos) << error;
  EXPECT_EQ(error.find('\n'), std::string::npos);

  error.clear();
  EXPECT_FALSE(HostModule::load(nullptr, 0, &error));
  EXPECT_FALSE(error.empty());
  EXPECT_FALSE(HostModule::load(garbage.data(), 0, nullptr)); // no error out
}

TEST(HostModule, RejectsWrongElfKinds) {
  std::vector<uint8_t> bytes = readFixture();
  ASSERT_GT(bytes.size(), 64u);
  std::string error;

  std::vector<uint8_t> relocatable = bytes;
  relocatable[16] = 1 /* ET_REL */;
  relocatable[17] = 0;
  EXPECT_FALSE(
      HostModule::load(relocatable.data(), relocatable.size(), &error));
  EXPECT_NE(error.find("not a shared object"), std::string::npos) << error;

  std::vector<uint8_t> arm = bytes;
  arm[18] = 183; // EM_AARCH64
  arm[19] = 0;
  EXPECT_FALSE(HostModule::load(arm.data(), arm.size(), &error));
  EXPECT_NE(error.find("not for x86-64"), std::string::npos) << error;
}

TEST(HostModule, RejectsTruncatedObject) {
  std::vector<uint8_t> bytes = readFixture();
  std::vector<uint8_t> truncated(bytes.begin(), bytes.begin() + 200);
  std::string error;
  EXPECT_FALSE(HostModule::load(truncated.data(), truncated.size(), &error));
  EXPECT_NE(error.find("cannot load host kernels"), std::string::npos);
  EXPECT_EQ(error.find('\n'), std::string::npos) << error;
}

} // namespace
