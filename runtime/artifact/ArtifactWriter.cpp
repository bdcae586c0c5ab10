//===- ArtifactWriter.cpp - Writes .optpkg files --------------------------===//

#include "runtime/artifact/ArtifactWriter.h"

#include "runtime/artifact/Artifact.h"
#include "runtime/artifact/ArtifactFormat.h"

#include <flatbuffers/flatbuffers.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace optrt {
namespace artifact {

namespace {

uint64_t alignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

using flatbuffers::FlatBufferBuilder;
using flatbuffers::Offset;

Offset<flatbuffers::Vector<Offset<flatbuffers::String>>>
packStrings(FlatBufferBuilder &b, const std::vector<std::string> &v) {
  return b.CreateVectorOfStrings(v);
}

Offset<fb::ModelInfo> packModel(FlatBufferBuilder &b, const ModelInfo &m) {
  auto arch = b.CreateString(m.architecture);
  auto eos = b.CreateVector(m.eosIds);
  Offset<fb::RopeScaling> rope;
  if (m.ropeScaling.kind != RopeScalingKind::None)
    rope = fb::CreateRopeScaling(b, m.ropeScaling.kind, m.ropeScaling.factor,
                                 m.ropeScaling.lowFreqFactor,
                                 m.ropeScaling.highFreqFactor,
                                 m.ropeScaling.originalMaxPositionEmbeddings);
  return fb::CreateModelInfo(
      b, arch, m.vocabSize, m.hiddenSize, m.intermediateSize, m.numLayers,
      m.numHeads, m.numKVHeads, m.headDim, m.maxPositionEmbeddings,
      m.rmsNormEps, m.ropeTheta, rope, m.slidingWindow, m.tieWordEmbeddings,
      m.bosId, eos, m.activationDType);
}

Offset<fb::Plan> packPlan(FlatBufferBuilder &b, const Plan &p) {
  std::vector<Offset<fb::Buffer>> buffers;
  for (const Buffer &buf : p.buffers)
    buffers.push_back(fb::CreateBuffer(b, b.CreateString(buf.name),
                                       buf.sizeBytes, buf.alignment,
                                       buf.kind));
  std::vector<Offset<fb::Command>> commands;
  for (const Command &c : p.commands) {
    std::vector<Offset<fb::Arg>> args;
    for (const Arg &a : c.args)
      args.push_back(fb::CreateArg(b, a.kind, a.index, a.offset, a.value));
    commands.push_back(fb::CreateCommand(b, c.kind, b.CreateString(c.name),
                                         c.kernel, c.entry,
                                         b.CreateVector(args), c.minTokens,
                                         c.maxTokens));
  }
  auto bufVec = b.CreateVector(buffers);
  auto cmdVec = b.CreateVector(commands);
  auto scalars = packStrings(b, p.runtimeScalars);
  return fb::CreatePlan(b, bufVec, p.maxTokensPerStep, cmdVec, scalars);
}

Offset<fb::Provenance> packProvenance(FlatBufferBuilder &b,
                                      const Provenance &p) {
  std::vector<Offset<fb::SourceFile>> sources;
  for (const SourceFile &s : p.sources)
    sources.push_back(fb::CreateSourceFile(b, b.CreateString(s.path), s.size,
                                           b.CreateString(s.checksum)));
  auto compiler = b.CreateString(p.compiler);
  auto created = b.CreateString(p.created);
  auto srcVec = b.CreateVector(sources);
  auto passes = packStrings(b, p.passes);
  auto options = packStrings(b, p.options);
  return fb::CreateProvenance(b, compiler, created, srcVec, passes, options);
}

/// Closes and removes the temporary file unless the write was committed.
struct TempFile {
  std::string path;
  int fd = -1;
  bool committed = false;
  ~TempFile() {
    if (fd >= 0)
      ::close(fd);
    if (!committed && !path.empty())
      ::unlink(path.c_str());
  }
};

/// Buffered sequential writer that hashes the blob bytes it passes on.
class Output {
public:
  explicit Output(int fd) : fd(fd) { buffer.reserve(kBufferSize); }

  bool write(const void *data, size_t n, StreamingChecksum *hash) {
    if (hash)
      hash->update(data, n);
    const uint8_t *p = static_cast<const uint8_t *>(data);
    while (n > 0) {
      size_t take = std::min(n, kBufferSize - buffer.size());
      buffer.insert(buffer.end(), p, p + take);
      p += take;
      n -= take;
      position += take;
      if (buffer.size() == kBufferSize && !flush())
        return false;
    }
    return true;
  }
  bool zeros(uint64_t n, StreamingChecksum *hash) {
    static const uint8_t kZeros[4096] = {};
    while (n > 0) {
      size_t take = size_t(std::min<uint64_t>(n, sizeof(kZeros)));
      if (!write(kZeros, take, hash))
        return false;
      n -= take;
    }
    return true;
  }
  bool flush() {
    const uint8_t *p = buffer.data();
    size_t n = buffer.size();
    while (n > 0) {
      ssize_t w = ::write(fd, p, n);
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0) {
        error = std::strerror(w < 0 ? errno : EIO);
        return false;
      }
      p += w;
      n -= size_t(w);
    }
    buffer.clear();
    return true;
  }
  uint64_t position = 0;
  std::string error;

private:
  static constexpr size_t kBufferSize = 1 << 20;
  int fd;
  std::vector<uint8_t> buffer;
};

std::string parentDir(const std::string &path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos)
    return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

} // namespace

std::vector<uint8_t> packArtifact(const ArtifactSpec &spec) {
  FlatBufferBuilder b(1 << 16);
  auto model = packModel(b, spec.model);
  Offset<fb::KVCacheLayout> kv;
  if (spec.kvCache)
    kv = fb::CreateKVCacheLayout(b, spec.kvCache->blockSize,
                                 spec.kvCache->dtype, spec.kvCache->order,
                                 spec.kvCache->numLayers,
                                 spec.kvCache->numKVHeads,
                                 spec.kvCache->headDim);
  auto plan = packPlan(b, spec.plan);

  std::vector<Offset<fb::Kernel>> kernels;
  for (const Kernel &k : spec.kernels) {
    auto name = b.CreateString(k.name);
    auto target = b.CreateString(k.target);
    auto entries = packStrings(b, k.entryPoints);
    // Kernel code aligned so that an in-place ELF/cubin load is possible.
    b.ForceVectorAlignment(k.data.size(), 1, 16);
    auto data = b.CreateVector(k.data);
    kernels.push_back(fb::CreateKernel(b, name, target, k.format, entries,
                                       data));
  }
  auto kernelVec = b.CreateVector(kernels);

  std::vector<Offset<fb::WeightEntry>> weights;
  for (const WeightInfo &w : spec.weights)
    weights.push_back(fb::CreateWeightEntry(
        b, b.CreateString(w.name), w.dtype, b.CreateVector(w.shape),
        b.CreateString(w.format), w.offset, w.size, w.noData));
  auto weightVec = b.CreateVector(weights);

  Offset<fb::Tokenizer> tokenizer;
  if (spec.tokenizer) {
    auto kind = b.CreateString(spec.tokenizer->kind);
    auto json = b.CreateString(spec.tokenizer->json);
    Offset<flatbuffers::String> configJson;
    if (!spec.tokenizer->configJson.empty())
      configJson = b.CreateString(spec.tokenizer->configJson);
    tokenizer = fb::CreateTokenizer(b, kind, json, configJson);
  }
  const GenerationDefaults &g = spec.generation;
  auto generation = fb::CreateGenerationDefaults(
      b, g.temperature ? flatbuffers::Optional<float>(*g.temperature)
                       : flatbuffers::nullopt,
      g.topP ? flatbuffers::Optional<float>(*g.topP) : flatbuffers::nullopt,
      g.topK ? flatbuffers::Optional<int32_t>(*g.topK) : flatbuffers::nullopt,
      g.maxNewTokens ? flatbuffers::Optional<int32_t>(*g.maxNewTokens)
                     : flatbuffers::nullopt,
      g.repetitionPenalty ? flatbuffers::Optional<float>(*g.repetitionPenalty)
                          : flatbuffers::nullopt);
  auto provenance = packProvenance(b, spec.provenance);

  auto root = fb::CreateArtifact(b, kSchemaVersion, model, kv, plan, kernelVec,
                                 weightVec, tokenizer, generation, provenance);
  fb::FinishArtifactBuffer(b, root);
  return std::vector<uint8_t>(b.GetBufferPointer(),
                              b.GetBufferPointer() + b.GetSize());
}

ArtifactWriter::ArtifactWriter(ArtifactSpec s) : spec(std::move(s)) {
  spec.weights.clear();
}

void ArtifactWriter::addWeight(WeightInfo info, const void *data) {
  info.noData = false;
  weights.push_back({std::move(info), data, nullptr});
}

void ArtifactWriter::addWeight(WeightInfo info, WeightProducer producer) {
  info.noData = false;
  weights.push_back({std::move(info), nullptr, std::move(producer)});
}

void ArtifactWriter::addVirtualWeight(WeightInfo info) {
  info.noData = true;
  weights.push_back({std::move(info), nullptr, nullptr});
}

bool ArtifactWriter::layoutWeights(std::string &error) {
  spec.weights.clear();
  uint64_t cursor = 0;
  for (PendingWeight &w : weights) {
    WeightInfo &info = w.info;
    if (info.size == 0 && info.format == "dense") {
      std::optional<uint64_t> size = denseByteSize(info.dtype, info.shape);
      if (!size) {
        error = "weight '" + info.name + "': cannot compute the size of a " +
                dtypeName(info.dtype) + " tensor of this shape";
        return false;
      }
      info.size = *size;
    }
    if (info.noData) {
      info.offset = 0;
    } else {
      info.offset = alignUp(cursor, kWeightAlignment);
      cursor = info.offset + info.size;
    }
    spec.weights.push_back(info);
  }
  blobSize = cursor;
  return true;
}

std::vector<uint8_t> ArtifactWriter::buildFlatbuffer(std::string &error) {
  if (!layoutWeights(error))
    return {};
  return packArtifact(spec);
}

bool ArtifactWriter::write(const std::string &path, std::string &error,
                           const WriteOptions &options) {
  std::vector<uint8_t> flat = buildFlatbuffer(error);
  if (flat.empty())
    return false;
  if (options.validate) {
    auto *root = fb::GetArtifact(flat.data());
    std::string problem = verifyMetadata(*root, blobSize);
    if (!problem.empty()) {
      error = "refusing to write an invalid artifact: " + problem;
      return false;
    }
  }

  FileHeader header;
  header.flatbufferOffset = kHeaderSize;
  header.flatbufferSize = flat.size();
  header.flatbufferChecksum = checksum(flat.data(), flat.size());
  header.blobOffset = alignUp(kHeaderSize + flat.size(), kBlobAlignment);
  header.blobSize = blobSize;
  header.fileSize = header.blobOffset + blobSize;
  for (const PendingWeight &w : weights)
    if (w.info.noData)
      header.flags |= kFlagVirtualWeights;

  TempFile temp;
  std::string pattern = path + ".tmp-XXXXXX";
  std::vector<char> name(pattern.begin(), pattern.end());
  name.push_back('\0');
  temp.fd = ::mkstemp(name.data());
  if (temp.fd < 0) {
    error = std::string("cannot create a file next to it: ") +
            std::strerror(errno);
    return false;
  }
  temp.path = name.data();
  // mkstemp creates 0600; give the artifact the usual permissions.
  mode_t mask = ::umask(0);
  ::umask(mask);
  ::fchmod(temp.fd, 0666 & ~mask);

  Output out(temp.fd);
  auto ioError = [&] {
    error = "write failed: " + out.error;
    return false;
  };
  uint8_t zeroHeader[kHeaderSize] = {};
  if (!out.write(zeroHeader, kHeaderSize, nullptr) ||
      !out.write(flat.data(), flat.size(), nullptr) ||
      !out.zeros(header.blobOffset - out.position, nullptr))
    return ioError();

  StreamingChecksum blobHash;
  uint64_t blobStart = out.position;
  for (const PendingWeight &w : weights) {
    if (w.info.noData)
      continue;
    uint64_t at = out.position - blobStart;
    if (!out.zeros(w.info.offset - at, &blobHash))
      return ioError();
    uint64_t written = 0;
    bool sinkFailed = false;
    ByteSink sink = [&](const void *data, size_t n) {
      // Never past the declared size: a producer bug must not shift the rest.
      if (sinkFailed || n > w.info.size - written) {
        sinkFailed = true;
        return false;
      }
      if (!out.write(data, n, &blobHash)) {
        sinkFailed = true;
        return false;
      }
      written += n;
      if (progress)
        progress(w.info.offset + written, blobSize, w.info.name);
      return true;
    };
    if (w.producer) {
      std::string producerError;
      bool ok = w.producer(sink, producerError);
      if (!out.error.empty())
        return ioError();
      if (!ok) {
        error = "weight '" + w.info.name + "': " +
                (producerError.empty() ? "producer failed" : producerError);
        return false;
      }
    } else if (w.info.size > 0) {
      if (!w.data) {
        error = "weight '" + w.info.name + "': no data";
        return false;
      }
      // 64 MiB pieces so that progress moves on huge tensors.
      const uint8_t *p = static_cast<const uint8_t *>(w.data);
      for (uint64_t done = 0; done < w.info.size;) {
        size_t n = size_t(std::min<uint64_t>(w.info.size - done, 64u << 20));
        if (!sink(p + done, n))
          break;
        done += n;
      }
      if (!out.error.empty())
        return ioError();
    }
    if (sinkFailed || written != w.info.size) {
      error = "weight '" + w.info.name + "': produced " +
              (sinkFailed ? std::string("more than ")
                          : std::to_string(written) + " bytes, not ") +
              "the declared " + std::to_string(w.info.size) + " bytes";
      return false;
    }
  }
  if (!out.flush())
    return ioError();
  header.blobChecksum = blobHash.digest();

  uint8_t headerBytes[kHeaderSize];
  encodeHeader(header, headerBytes);
  if (::pwrite(temp.fd, headerBytes, kHeaderSize, 0) != ssize_t(kHeaderSize)) {
    error = std::string("write failed: ") + std::strerror(errno);
    return false;
  }
  if (::fsync(temp.fd) != 0) {
    error = std::string("fsync failed: ") + std::strerror(errno);
    return false;
  }
  int fd = temp.fd;
  temp.fd = -1;
  if (::close(fd) != 0) {
    error = std::string("close failed: ") + std::strerror(errno);
    return false;
  }
  if (::rename(temp.path.c_str(), path.c_str()) != 0) {
    error = std::string("cannot rename into place: ") + std::strerror(errno);
    return false;
  }
  temp.committed = true;
  // Make the rename itself durable; failure here loses nothing written.
  int dir = ::open(parentDir(path).c_str(), O_RDONLY | O_DIRECTORY);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
  return true;
}

} // namespace artifact
} // namespace optrt
