//===- AttentionCheck.cpp - Checks and times flash_attention on a GPU -----===//
//
// attention-check --dir DIR [--json FILE] [--only SUBSTRING] [--ptx]
//                 [--iters N] [--no-bench]
//
// The MLIR-free half of the flash-attention harness (README.md). Reads
// DIR/manifest.txt and loads DIR/flash_sm_90a.cubin (or the PTX, with
// --ptx or on another chip) through the runtime's CUDA layer (libcuda is
// loaded at run time). For every kernel it builds paged KV caches and
// ragged batches on the host (random block tables, lengths that are not
// multiples of the block size, sequences with earlier cached context,
// decode and short-prefill sequences the kernel must leave alone, q as a
// strided view), runs the kernel and compares with a float64 CPU
// reference: max abs error and relative L2 per case; every row of the
// kernel's sequences must be written, every other row untouched. Cache
// slots past each context and unused block-table entries hold NaN, so a
// read of them shows. Kernels with role=bench are then timed on causal
// prefill of 8 x 4k and 2 x 16k tokens (CUDA events, median), and checked
// on sampled rows of those runs. A short table comes last; --json writes
// every number.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/CudaDevice.h"
#include "runtime/cuda/CudaDriver.h"
#include "runtime/cuda/CudaModule.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace optrt::cuda;

namespace {

//===----------------------------------------------------------------------===//
// bf16 and random numbers
//===----------------------------------------------------------------------===//

uint16_t toBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u)
    return 0x7fc0;
  bits += 0x7fffu + ((bits >> 16) & 1u); // round to nearest even
  return uint16_t(bits >> 16);
}
float fromBf16(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
constexpr uint16_t kNaN = 0x7fc1;       // what poisoned cache slots hold
constexpr uint16_t kUnwritten = 0xffff; // what out holds before the launch

/// xorshift64*: fast enough to fill half a gigabyte of cache.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
  /// Uniform in [0, n).
  int64_t below(int64_t n) { return int64_t(next() % uint64_t(n)); }
  /// Uniform with unit variance.
  float unit() {
    return float((double(next() >> 11) * 0x1.0p-53 * 2.0 - 1.0) * 1.7320508);
  }
};

/// Runs f(i) for i in [0, n) on all cores.
template <typename F> void parallelFor(int64_t n, F f) {
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::atomic<int64_t> next{0};
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      for (int64_t i; (i = next.fetch_add(1)) < n;)
        f(i);
    });
  for (std::thread &t : pool)
    t.join();
}

void fillRandom(std::vector<uint16_t> &data, uint64_t seed, float scale) {
  const int64_t chunk = 1 << 20;
  int64_t chunks = (int64_t(data.size()) + chunk - 1) / chunk;
  parallelFor(chunks, [&](int64_t c) {
    Rng rng(seed * 1000003 + c);
    int64_t end = std::min<int64_t>(int64_t(data.size()), (c + 1) * chunk);
    for (int64_t i = c * chunk; i < end; ++i)
      data[i] = toBf16(rng.unit() * scale);
  });
}

//===----------------------------------------------------------------------===//
// The manifest
//===----------------------------------------------------------------------===//

struct KernelInfo {
  std::string name, variant, role;
  /// "flash" (owns sequences of minq or more queries) or "paged" (the split
  /// decode kernel: owns the others, needs a zeroed workspace).
  std::string kind = "flash";
  int hq = 0, hkv = 0, d = 0, blockSize = 0, window = 0, minq = 0;
  int rows = 0, gridXPerRow = 0, gridXFixed = 0, gridY = 0, block = 0,
      smem = 0;
  int64_t workspace = 0;
  double scale = 0;
  bool paged() const { return kind == "paged"; }
  /// Whether this kernel writes the rows of a sequence of n queries.
  bool owns(int n) const { return paged() ? n < minq : n >= minq; }
};

bool readManifest(const std::string &path, std::vector<KernelInfo> &kernels,
                  std::string &error) {
  std::ifstream is(path);
  if (!is) {
    error = "cannot read " + path;
    return false;
  }
  std::string line;
  while (std::getline(is, line)) {
    if (line.rfind("kernel ", 0) != 0)
      continue;
    std::istringstream fields(line.substr(7));
    std::map<std::string, std::string> kv;
    for (std::string field; fields >> field;) {
      size_t eq = field.find('=');
      if (eq != std::string::npos)
        kv[field.substr(0, eq)] = field.substr(eq + 1);
    }
    KernelInfo k;
    try {
      k.name = kv.at("name");
      k.variant = kv.at("variant");
      k.role = kv.at("role");
      k.hq = std::stoi(kv.at("hq"));
      k.hkv = std::stoi(kv.at("hkv"));
      k.d = std::stoi(kv.at("d"));
      k.blockSize = std::stoi(kv.at("b"));
      k.window = std::stoi(kv.at("window"));
      k.minq = std::stoi(kv.at("minq"));
      k.rows = std::stoi(kv.at("rows"));
      k.gridXPerRow = std::stoi(kv.at("gridxperrow"));
      k.gridY = std::stoi(kv.at("gridy"));
      k.block = std::stoi(kv.at("block"));
      k.smem = std::stoi(kv.at("smem"));
      k.scale = std::stod(kv.at("scale"));
      if (kv.count("kind"))
        k.kind = kv.at("kind");
      if (kv.count("gridxfixed"))
        k.gridXFixed = std::stoi(kv.at("gridxfixed"));
      if (kv.count("workspace"))
        k.workspace = std::stoll(kv.at("workspace"));
    } catch (const std::exception &) {
      error = "bad manifest line: " + line;
      return false;
    }
    kernels.push_back(k);
  }
  if (kernels.empty()) {
    error = "no kernels in " + path;
    return false;
  }
  return true;
}

//===----------------------------------------------------------------------===//
// One batch: host data, device copies, launch, reference
//===----------------------------------------------------------------------===//

struct Seq {
  int n;   // query rows this step
  int ctx; // context after this step (n of them are this step's)
};

struct Batch {
  const KernelInfo *kernel;
  std::vector<Seq> seqs;
  int T = 0, S = 0, qStride = 0, M = 0, numBlocks = 0, poisonBlock = 0;
  std::vector<int32_t> queryStart, contextLen, blockTable;
  std::vector<uint16_t> q, keyCache, valueCache, out;

  int64_t cacheRow(int s, int j) const {
    int b = kernel->blockSize;
    return int64_t(blockTable[int64_t(s) * M + j / b]) * b + j % b;
  }
};

/// Host data for `seqs`: blocks in random order, unused table entries and
/// slots past each context pointing at NaN.
void makeBatch(Batch &batch, uint64_t seed, float qScale, bool denseQ) {
  const KernelInfo &k = *batch.kernel;
  Rng rng(seed);
  batch.S = int(batch.seqs.size());
  batch.queryStart.assign(1, 0);
  int maxBlocks = 1;
  int used = 0;
  for (const Seq &s : batch.seqs) {
    batch.queryStart.push_back(batch.queryStart.back() + s.n);
    batch.contextLen.push_back(s.ctx);
    int blocks = (s.ctx + k.blockSize - 1) / k.blockSize;
    maxBlocks = std::max(maxBlocks, blocks);
    used += blocks;
  }
  batch.T = batch.queryStart.back();
  batch.M = maxBlocks + 3;
  batch.numBlocks = used + used / 8 + 2;
  batch.poisonBlock = batch.numBlocks - 1;
  std::vector<int32_t> order(batch.numBlocks - 1);
  for (int i = 0; i < int(order.size()); ++i)
    order[i] = i;
  for (int i = int(order.size()) - 1; i > 0; --i)
    std::swap(order[i], order[rng.below(i + 1)]);
  batch.blockTable.assign(int64_t(batch.S) * batch.M, batch.poisonBlock);
  int nextBlock = 0;
  for (int s = 0; s < batch.S; ++s) {
    int blocks = (batch.seqs[s].ctx + k.blockSize - 1) / k.blockSize;
    for (int i = 0; i < blocks; ++i)
      batch.blockTable[int64_t(s) * batch.M + i] = order[nextBlock++];
  }

  const int64_t rowElems = int64_t(k.hkv) * k.d;
  const int64_t cacheElems = int64_t(batch.numBlocks) * k.blockSize * rowElems;
  batch.keyCache.resize(cacheElems);
  batch.valueCache.resize(cacheElems);
  fillRandom(batch.keyCache, seed * 3 + 1, 1.0f);
  fillRandom(batch.valueCache, seed * 3 + 2, 1.0f);
  auto poisonRow = [&](int64_t row) {
    std::fill_n(batch.keyCache.begin() + row * rowElems, rowElems, kNaN);
    std::fill_n(batch.valueCache.begin() + row * rowElems, rowElems, kNaN);
  };
  for (int i = 0; i < k.blockSize; ++i)
    poisonRow(int64_t(batch.poisonBlock) * k.blockSize + i);
  for (int s = 0; s < batch.S; ++s) {
    int ctx = batch.seqs[s].ctx;
    int end = (ctx + k.blockSize - 1) / k.blockSize * k.blockSize;
    for (int j = ctx; j < end; ++j)
      poisonRow(batch.cacheRow(s, j));
  }

  // q as a view into a fused QKV output (k and v columns are NaN: a read
  // past the head shows), or dense.
  batch.qStride = denseQ ? k.hq * k.d : (k.hq + 2 * k.hkv) * k.d;
  batch.q.assign(int64_t(batch.T) * batch.qStride, kNaN);
  std::vector<uint16_t> qDense(int64_t(batch.T) * k.hq * k.d);
  fillRandom(qDense, seed * 3 + 3, qScale);
  for (int64_t t = 0; t < batch.T; ++t)
    std::copy_n(qDense.begin() + t * k.hq * k.d, k.hq * k.d,
                batch.q.begin() + t * batch.qStride);
  batch.out.assign(int64_t(batch.T) * k.hq * k.d, kUnwritten);
}

struct DeviceBatch {
  DeviceBuffer q, keyCache, valueCache, queryStart, contextLen, blockTable, out,
      workspace;
};

template <typename T>
bool upload(CudaStream &stream, DeviceBuffer &buffer,
            const std::vector<T> &data, std::string &error) {
  uint64_t bytes = std::max<uint64_t>(16, data.size() * sizeof(T));
  if (!buffer.create(bytes, error))
    return false;
  return data.empty() || stream.copyToDevice(buffer.ptr(), data.data(),
                                             data.size() * sizeof(T), error);
}

bool uploadBatch(CudaStream &stream, const Batch &batch, DeviceBatch &dev,
                 std::string &error) {
  return upload(stream, dev.q, batch.q, error) &&
         upload(stream, dev.keyCache, batch.keyCache, error) &&
         upload(stream, dev.valueCache, batch.valueCache, error) &&
         upload(stream, dev.queryStart, batch.queryStart, error) &&
         upload(stream, dev.contextLen, batch.contextLen, error) &&
         upload(stream, dev.blockTable, batch.blockTable, error) &&
         upload(stream, dev.out, batch.out, error) &&
         (batch.kernel->workspace == 0 ||
          (dev.workspace.create(uint64_t(batch.kernel->workspace), error) &&
           stream.memset(dev.workspace.ptr(), 0,
                         uint64_t(batch.kernel->workspace), error))) &&
         stream.synchronize(error);
}

bool launch(CudaKernel &fn, const KernelInfo &k, CudaStream &stream,
            DeviceBatch &dev, const Batch &batch, std::string &error) {
  CUdeviceptr ptrs[8] = {dev.q.ptr(),          dev.keyCache.ptr(),
                         dev.valueCache.ptr(), dev.queryStart.ptr(),
                         dev.contextLen.ptr(), dev.blockTable.ptr(),
                         dev.out.ptr(),        dev.workspace.ptr()};
  int32_t scalars[4] = {batch.T, batch.S, batch.qStride, batch.M};
  std::vector<void *> args;
  for (int i = 0; i < (k.paged() ? 8 : 7); ++i)
    args.push_back(&ptrs[i]);
  for (int32_t &v : scalars)
    args.push_back(&v);
  LaunchConfig config;
  config.grid[0] = unsigned(k.gridXPerRow * ((batch.T + k.rows - 1) / k.rows) +
                           k.gridXFixed);
  config.grid[1] = unsigned(k.gridY);
  config.block[0] = unsigned(k.block);
  config.sharedBytes = unsigned(k.smem);
  return launchKernel(fn, config, stream.handle(), args, error);
}

struct Errors {
  double maxAbs = 0, sumSqErr = 0, sumSqRef = 0;
  int64_t checked = 0, unwrittenOwned = 0, writtenForeign = 0, nonFinite = 0;
  /// The first few bad elements, "seq s row i head h dim e: got x ref y",
  /// to tell a layout bug (a pattern in the dims) from a mask bug (rows).
  std::vector<std::string> examples;
  double relL2() const {
    return sumSqRef > 0 ? std::sqrt(sumSqErr / sumSqRef) : 0.0;
  }
  void merge(const Errors &o) {
    maxAbs = std::max(maxAbs, o.maxAbs);
    sumSqErr += o.sumSqErr;
    sumSqRef += o.sumSqRef;
    checked += o.checked;
    unwrittenOwned += o.unwrittenOwned;
    writtenForeign += o.writtenForeign;
    nonFinite += o.nonFinite;
    for (const std::string &e : o.examples)
      if (examples.size() < 8)
        examples.push_back(e);
  }
  bool pass() const {
    return checked > 0 && unwrittenOwned == 0 && writtenForeign == 0 &&
           nonFinite == 0 && relL2() < 1e-2 && maxAbs < 5e-2;
  }
};

/// Compares `batch.out` (read back) with a float64 reference on the rows
/// `rowsOf(s)` of every sequence the kernel owns, and checks that the
/// other sequences' rows are untouched.
Errors checkBatch(const Batch &batch, bool sampleRows, uint64_t seed) {
  const KernelInfo &k = *batch.kernel;
  const int hq = k.hq, d = k.d, group = k.hq / k.hkv;
  const int64_t outRow = int64_t(hq) * d, cacheRowElems = int64_t(k.hkv) * d;
  struct Task {
    int s, i;
  };
  std::vector<Task> tasks;
  Errors total;
  Rng rng(seed);
  for (int s = 0; s < batch.S; ++s) {
    const Seq &seq = batch.seqs[s];
    int start = batch.queryStart[s];
    if (!k.owns(seq.n)) {
      for (int64_t e = int64_t(start) * outRow;
           e < int64_t(start + seq.n) * outRow; ++e)
        if (batch.out[e] != kUnwritten)
          ++total.writtenForeign;
      continue;
    }
    // Every row must have been written.
    for (int64_t e = int64_t(start) * outRow;
         e < int64_t(start + seq.n) * outRow; ++e)
      if (batch.out[e] == kUnwritten)
        ++total.unwrittenOwned;
    if (!sampleRows || seq.n <= 128) {
      for (int i = 0; i < seq.n; ++i)
        tasks.push_back({s, i});
    } else {
      for (int i : {0, 1, 63, 64, seq.n / 3, seq.n / 2, seq.n - 65, seq.n - 64,
                    seq.n - 2, seq.n - 1})
        tasks.push_back({s, i});
      for (int r = 0; r < 12; ++r)
        tasks.push_back({s, int(rng.below(seq.n))});
    }
  }
  std::vector<Errors> partial(tasks.size());
  parallelFor(int64_t(tasks.size()), [&](int64_t ti) {
    const Task &task = tasks[ti];
    const Seq &seq = batch.seqs[task.s];
    int t = batch.queryStart[task.s] + task.i;
    int pos = seq.ctx - seq.n + task.i;
    int lo = k.window > 0 ? std::max(0, pos - k.window + 1) : 0;
    std::vector<double> scores(pos - lo + 1), acc(d);
    std::vector<int64_t> rows(pos - lo + 1);
    for (int j = lo; j <= pos; ++j)
      rows[j - lo] = batch.cacheRow(task.s, j);
    Errors &err = partial[ti];
    for (int h = 0; h < hq; ++h) {
      int kvh = h / group;
      const uint16_t *qrow = &batch.q[int64_t(t) * batch.qStride + h * d];
      double mx = -INFINITY;
      for (int j = lo; j <= pos; ++j) {
        const uint16_t *krow =
            &batch.keyCache[rows[j - lo] * cacheRowElems + kvh * d];
        double dot = 0;
        for (int e = 0; e < d; ++e)
          dot += double(fromBf16(qrow[e])) * fromBf16(krow[e]);
        scores[j - lo] = dot * k.scale;
        mx = std::max(mx, scores[j - lo]);
      }
      double sum = 0;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int j = lo; j <= pos; ++j) {
        double p = std::exp(scores[j - lo] - mx);
        sum += p;
        const uint16_t *vrow =
            &batch.valueCache[rows[j - lo] * cacheRowElems + kvh * d];
        for (int e = 0; e < d; ++e)
          acc[e] += p * fromBf16(vrow[e]);
      }
      const uint16_t *orow = &batch.out[int64_t(t) * outRow + h * d];
      for (int e = 0; e < d; ++e) {
        double ref = acc[e] / sum;
        float got = fromBf16(orow[e]);
        double diff = std::abs(got - ref);
        if ((!std::isfinite(got) || diff > 5e-2) && err.examples.size() < 2)
          err.examples.push_back(
              "seq " + std::to_string(task.s) + " row " +
              std::to_string(task.i) + " (pos " + std::to_string(pos) +
              ") head " + std::to_string(h) + " dim " + std::to_string(e) +
              ": got " + std::to_string(got) + " ref " + std::to_string(ref));
        if (!std::isfinite(got)) {
          ++err.nonFinite;
          continue;
        }
        err.maxAbs = std::max(err.maxAbs, diff);
        err.sumSqErr += diff * diff;
        err.sumSqRef += ref * ref;
        ++err.checked;
      }
    }
  });
  for (const Errors &e : partial)
    total.merge(e);
  return total;
}

//===----------------------------------------------------------------------===//
// Cases
//===----------------------------------------------------------------------===//

struct CaseSpec {
  std::string label;
  std::vector<Seq> seqs;
  float qScale = 1.0f;
  bool denseQ = false;
};

/// Ragged batches: decode rows (n = 1) and short prefills the kernel must
/// skip, long prefills with and without earlier context, lengths that are
/// not multiples of the tile or the block size.
std::vector<CaseSpec> checkCases(const KernelInfo &k) {
  int m = k.minq;
  std::vector<CaseSpec> cases;
  // The longest single sequence the kernel owns: flash_attention takes m
  // queries and more, the split kernel fewer.
  int single = k.paged() ? m - 1 : m;
  cases.push_back(
      {"single " + std::to_string(single), {{single, single}}, 1.0f, true});
  cases.push_back({"ragged",
                   {{1, 37},
                    {m + 1, m + 1},
                    {m - 1, m + 200},
                    {300, 300},
                    {1, 1},
                    {200, 517},
                    {130, 130 + 16 * 7},
                    {m, 1000}},
                   1.0f,
                   false});
  cases.push_back(
      {"long+prefix", {{1500, 1500 + 333}, {3, 900}, {777, 777}}, 1.0f, false});
  cases.push_back({"peaky", {{257, 300}, {1, 50}, {96, 96}}, 4.0f, false});
  if (k.paged()) {
    // Decode steps of fewer than 64 tokens split the context over blocks
    // (the last split merges): one token, a few, contexts from 1 key to
    // 20k, not multiples of the block size; and chunks of 2-63 queries.
    cases.push_back({"decode 1x1", {{1, 1}}, 1.0f, false});
    cases.push_back({"decode 1x20001", {{1, 20001}}, 1.0f, true});
    cases.push_back({"decode 7 mixed",
                     {{1, 1}, {1, 17}, {1, 100}, {1, 1000}, {1, 4097},
                      {1, 33}, {1, 2}},
                     1.0f,
                     false});
    cases.push_back(
        {"decode 40x777", std::vector<Seq>(40, {1, 777}), 1.0f, false});
    cases.push_back({"chunks", {{2, 500}, {63, 63}, {5, 3000}}, 4.0f, false});
  }
  return cases;
}

struct Result {
  std::string kernel, variant, label;
  int hq, hkv, d, window;
  Errors errors;
  double ms = 0, tflops = 0;
  /// Decode kernels: K and V bytes read over the time, GB/s.
  double gbps = 0;
  bool bench = false;
};

std::string fmt(double v, const char *f = "%.3g") {
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}

} // namespace

int main(int argc, char **argv) {
  std::string dir = ".", jsonPath, only;
  bool forcePtx = false, bench = true;
  int iters = 10;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--dir" && i + 1 < argc)
      dir = argv[++i];
    else if (arg == "--json" && i + 1 < argc)
      jsonPath = argv[++i];
    else if (arg == "--only" && i + 1 < argc)
      only = argv[++i];
    else if (arg == "--iters" && i + 1 < argc)
      iters = std::max(1, std::atoi(argv[++i]));
    else if (arg == "--ptx")
      forcePtx = true;
    else if (arg == "--no-bench")
      bench = false;
    else {
      std::cerr << "usage: attention-check --dir DIR [--json FILE] [--only "
                   "SUBSTRING] [--ptx] [--iters N] [--no-bench]\n";
      return 2;
    }
  }

  std::string error;
  std::vector<KernelInfo> kernels;
  if (!readManifest(dir + "/manifest.txt", kernels, error)) {
    std::cerr << "attention-check: " << error << "\n";
    return 1;
  }
  std::unique_ptr<CudaDevice> device = CudaDevice::create(0, error);
  if (!device) {
    std::cerr << "attention-check: " << error << "\n";
    return 1;
  }
  const DeviceInfo &info = device->info();
  std::cout << "device: " << info.name << " (sm_" << info.computeMajor
            << info.computeMinor << ", " << info.smCount << " SMs)\n";
  bool useCubin = !forcePtx && info.computeMajor == 9 && info.computeMinor == 0;
  std::string imagePath =
      dir + (useCubin ? "/flash_sm_90a.cubin" : "/flash_sm_90a.ptx");
  std::ifstream is(imagePath, std::ios::binary);
  std::string image((std::istreambuf_iterator<char>(is)),
                    std::istreambuf_iterator<char>());
  auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<CudaModule> module = CudaModule::load(image, error);
  if (!module) {
    std::cerr << "attention-check: loading " << imagePath << ": " << error
              << "\n";
    return 1;
  }
  std::cout << "loaded " << imagePath << " in "
            << fmt(std::chrono::duration<double>(
                       std::chrono::steady_clock::now() - t0)
                       .count(),
                   "%.2f")
            << " s\n";
  CudaStream stream;
  if (!stream.create(error)) {
    std::cerr << "attention-check: " << error << "\n";
    return 1;
  }

  std::vector<Result> results;
  bool allPass = true, deviceLost = false;
  uint64_t seed = 1;
  auto runCase = [&](const KernelInfo &k, CudaKernel &fn, const CaseSpec &spec,
                     bool sample, Result &result) -> bool {
    Batch batch;
    batch.kernel = &k;
    batch.seqs = spec.seqs;
    makeBatch(batch, ++seed, spec.qScale, spec.denseQ);
    DeviceBatch dev;
    if (!uploadBatch(stream, batch, dev, error) ||
        !launch(fn, k, stream, dev, batch, error) ||
        !stream.synchronize(error) ||
        !stream.copyToHost(batch.out.data(), dev.out.ptr(),
                           batch.out.size() * 2, error) ||
        !stream.synchronize(error))
      return false;
    result.errors = checkBatch(batch, sample, seed);
    if (result.bench && bench) {
      CudaEvent start, stop;
      if (!start.create(true, error) || !stop.create(true, error))
        return false;
      std::vector<float> times;
      for (int it = 0; it < iters + 2; ++it) {
        float ms = 0;
        if (!start.record(stream, error) ||
            !launch(fn, k, stream, dev, batch, error) ||
            !stop.record(stream, error) || !stop.synchronize(error) ||
            !CudaEvent::elapsedMs(start, stop, ms, error))
          return false;
        if (it >= 2) // warm-up
          times.push_back(ms);
      }
      std::sort(times.begin(), times.end());
      result.ms = times[times.size() / 2];
      double flops = 0, kvBytes = 0;
      for (const Seq &s : spec.seqs) {
        flops += 4.0 * double(s.n) * s.n * k.d * k.hq / 2;
        kvBytes += 2.0 * s.ctx * k.hkv * k.d * 2;
      }
      result.tflops = flops / (result.ms * 1e-3) / 1e12;
      if (k.paged()) {
        result.tflops = 0;
        result.gbps = kvBytes / (result.ms * 1e-3) / 1e9;
      }
    }
    return true;
  };

  for (const KernelInfo &k : kernels) {
    if (!only.empty() && k.name.find(only) == std::string::npos &&
        k.variant.find(only) == std::string::npos)
      continue;
    CudaKernel fn;
    if (!module->getKernel(k.name, fn, error)) {
      std::cerr << "attention-check: " << error << "\n";
      allPass = false;
      continue;
    }
    std::vector<std::pair<CaseSpec, bool>> cases;
    for (const CaseSpec &c : checkCases(k))
      cases.push_back({c, false});
    if (k.role == "bench" && k.paged()) {
      // Decode at 8k to 32k of context: bound by reading the KV cache.
      for (auto [count, ctx] : std::vector<std::pair<int, int>>{
               {1, 32768}, {8, 8192}, {16, 16384}, {64, 8192}})
        cases.push_back({{"decode " + std::to_string(count) + "x" +
                              std::to_string(ctx),
                          std::vector<Seq>(count, {1, ctx}), 1.0f, true},
                         true});
    } else if (k.role == "bench") {
      CaseSpec b4k{"causal 8x4k", std::vector<Seq>(8, {4096, 4096}), 1.0f,
                   true};
      CaseSpec b16k{"causal 2x16k", std::vector<Seq>(2, {16384, 16384}), 1.0f,
                    true};
      cases.push_back({b4k, true});
      cases.push_back({b16k, true});
    }
    for (auto &[spec, isBench] : cases) {
      Result r{k.name, k.variant, spec.label, k.hq, k.hkv, k.d, k.window};
      r.bench = isBench;
      auto start = std::chrono::steady_clock::now();
      if (!runCase(k, fn, spec, /*sample=*/isBench, r)) {
        std::cerr << "attention-check: " << k.name << " [" << spec.label
                  << "]: " << error << "\n";
        allPass = false;
        if (error.find("ILLEGAL") != std::string::npos ||
            error.find("LAUNCH_FAILED") != std::string::npos ||
            error.find("MISALIGNED") != std::string::npos) {
          deviceLost = true;
          break;
        }
        continue;
      }
      double secs = std::chrono::duration<double>(
                        std::chrono::steady_clock::now() - start)
                        .count();
      bool pass = r.errors.pass();
      allPass &= pass;
      std::cout << (pass ? "PASS " : "FAIL ") << k.name << " [" << spec.label
                << "] max_abs " << fmt(r.errors.maxAbs) << " rel_l2 "
                << fmt(r.errors.relL2()) << " checked " << r.errors.checked;
      if (r.errors.unwrittenOwned || r.errors.writtenForeign ||
          r.errors.nonFinite)
        std::cout << " unwritten " << r.errors.unwrittenOwned
                  << " foreign_written " << r.errors.writtenForeign
                  << " nonfinite " << r.errors.nonFinite;
      if (r.bench && bench)
        std::cout << " | " << fmt(r.ms, "%.3f") << " ms "
                  << (k.paged() ? fmt(r.gbps, "%.0f") + " GB/s of KV"
                                : fmt(r.tflops, "%.1f") + " TFLOP/s");
      std::cout << " (" << fmt(secs, "%.1f") << " s)\n";
      if (!pass)
        for (const std::string &e : r.errors.examples)
          std::cout << "    " << e << "\n";
      std::cout << std::flush;
      results.push_back(r);
    }
    if (deviceLost)
      break;
  }

  // Summary: worst errors per group (head dim x GQA ratio x window), then
  // speed.
  std::map<std::string, Errors> groups;
  for (const Result &r : results) {
    std::string key = "d" + std::to_string(r.d) + " gqa" +
                      std::to_string(r.hq / r.hkv) +
                      (r.window ? " window" : " causal") + " " + r.variant;
    groups[key].merge(r.errors);
  }
  std::cout << "\n== correctness (worst per group) ==\n";
  std::printf("%-34s %10s %10s %12s %s\n", "group", "max_abs", "rel_l2",
              "checked", "ok");
  for (auto &[key, e] : groups)
    std::printf("%-34s %10.3g %10.3g %12lld %s\n", key.c_str(), e.maxAbs,
                e.relL2(), (long long)e.checked, e.pass() ? "yes" : "NO");
  if (bench) {
    std::cout << "\n== speed (bf16 causal prefill, d128, 32 heads) ==\n";
    std::printf("%-16s %-6s %-14s %10s %10s\n", "variant", "kv", "shape", "ms",
                "TFLOP/s");
    for (const Result &r : results)
      if (r.bench && r.gbps == 0)
        std::printf("%-16s %-6d %-14s %10.3f %10.1f\n", r.variant.c_str(),
                    r.hkv, r.label.c_str(), r.ms, r.tflops);
    std::cout << "\n== speed (bf16 split decode attention, d128, 32 heads) "
                 "==\n";
    std::printf("%-16s %-6s %-16s %10s %14s\n", "variant", "kv", "shape", "ms",
                "KV GB/s");
    for (const Result &r : results)
      if (r.bench && r.gbps > 0)
        std::printf("%-16s %-6d %-16s %10.3f %14.0f\n", r.variant.c_str(),
                    r.hkv, r.label.c_str(), r.ms, r.gbps);
  }

  if (!jsonPath.empty()) {
    std::ofstream os(jsonPath);
    os << "{\"device\": \"" << info.name << "\", \"results\": [\n";
    for (size_t i = 0; i < results.size(); ++i) {
      const Result &r = results[i];
      os << "  {\"kernel\": \"" << r.kernel << "\", \"variant\": \""
         << r.variant << "\", \"case\": \"" << r.label << "\", \"hq\": " << r.hq
         << ", \"hkv\": " << r.hkv << ", \"d\": " << r.d
         << ", \"window\": " << r.window
         << ", \"max_abs\": " << fmt(r.errors.maxAbs, "%.6g")
         << ", \"rel_l2\": " << fmt(r.errors.relL2(), "%.6g")
         << ", \"checked\": " << r.errors.checked
         << ", \"pass\": " << (r.errors.pass() ? "true" : "false")
         << ", \"bench\": " << (r.bench ? "true" : "false")
         << ", \"ms\": " << fmt(r.ms, "%.6g")
         << ", \"tflops\": " << fmt(r.tflops, "%.6g")
         << ", \"kv_gbps\": " << fmt(r.gbps, "%.6g") << "}"
         << (i + 1 < results.size() ? ",\n" : "\n");
    }
    os << "]}\n";
  }
  std::cout << (allPass ? "\nALL PASS\n" : "\nFAILURES\n");
  return allPass ? 0 : 1;
}
