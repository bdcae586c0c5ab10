//===- Artifact.cpp - Loads and verifies .optpkg files --------------------===//
//
// Checks run from cheapest and most telling to most expensive, so that each
// kind of bad file gets the message that names its actual problem: a foreign
// file is "not an OptMLIR artifact" rather than a checksum mismatch, a
// truncated download says "truncated" rather than "corrupt".
//
//===----------------------------------------------------------------------===//

#include "runtime/artifact/Artifact.h"

#include <flatbuffers/flatbuffers.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <unordered_set>

namespace optrt {
namespace artifact {

namespace {

std::string str(uint64_t v) { return std::to_string(v); }

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "0x%llx", (unsigned long long)v);
  return buf;
}

/// Whether [offset, offset+length) fits in `limit` bytes, without overflow.
bool fits(uint64_t offset, uint64_t length, uint64_t limit) {
  return offset <= limit && length <= limit - offset;
}

template <typename E> bool inRange(E e) {
  return static_cast<unsigned>(e) <= static_cast<unsigned>(E::MAX);
}

/// 'name' for messages, with control and non-ASCII bytes escaped so that an
/// error stays one printable line whatever a forged file holds.
std::string quoted(const flatbuffers::String *s) {
  if (!s)
    return "(unnamed)";
  std::string out = "'";
  for (unsigned char c : s->string_view()) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += char(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  return out + "'";
}

/// A safetensors file starts with a u64 header length and then '{'.
bool looksLikeSafetensors(const uint8_t *p, size_t size) {
  if (size < 10 || p[8] != '{')
    return false;
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i)
    n |= uint64_t(p[i]) << (8 * i);
  return n > 0 && n <= size - 8;
}

/// Magic, versions, section bounds and checksums: everything before the
/// flatbuffer itself is trusted.
std::string checkContainer(const uint8_t *p, size_t size, FileHeader &h,
                           const VerifyOptions &options) {
  if (size == 0)
    return "not an OptMLIR artifact (the file is empty)";
  size_t magicLen = std::min(size, sizeof(kMagic));
  if (std::memcmp(p, kMagic, magicLen) != 0) {
    if (looksLikeSafetensors(p, size))
      return "not an OptMLIR artifact (bad magic; this looks like a "
             "safetensors checkpoint: compile it with optc first)";
    return "not an OptMLIR artifact (bad magic)";
  }
  if (size < 16)
    return "truncated: the file is " + str(size) +
           " bytes, shorter than the " + str(kHeaderSize) + "-byte header";
  // Versions come before anything else in the header is trusted: a newer
  // file may have a header this runtime cannot even parse. Only bytes 8..16
  // exist yet.
  uint8_t prefix[kHeaderSize] = {};
  std::memcpy(prefix, p, std::min<size_t>(size, kHeaderSize));
  h = decodeHeader(prefix);
  if (h.formatVersion == 0)
    return "not an OptMLIR artifact (format version 0)";
  if (h.formatVersion > kFormatVersion)
    return "artifact format version " + str(h.formatVersion) +
           " is newer than this runtime supports (" + str(kFormatVersion) +
           ")";
  if (h.schemaVersion > kSchemaVersion)
    return "artifact schema version " + str(h.schemaVersion) +
           " is newer than this runtime supports (" + str(kSchemaVersion) +
           ")";
  if (size < kHeaderSize)
    return "truncated: the file is " + str(size) +
           " bytes, shorter than the " + str(kHeaderSize) + "-byte header";
  if (h.fileSize > size)
    return "truncated: the file is " + str(size) + " bytes, its header says " +
           str(h.fileSize);
  if (!fits(h.flatbufferOffset, h.flatbufferSize, size))
    return "truncated: the metadata section (offset " +
           str(h.flatbufferOffset) + ", " + str(h.flatbufferSize) +
           " bytes) extends past the end of the file (" + str(size) +
           " bytes)";
  if (!fits(h.blobOffset, h.blobSize, size))
    return "truncated: the weight blob (offset " + str(h.blobOffset) + ", " +
           str(h.blobSize) + " bytes) extends past the end of the file (" +
           str(size) + " bytes)";
  if (checksum(p, kHeaderChecksumOffset) != h.headerChecksum)
    return "header checksum mismatch: the header is corrupt";

  // The header is intact from here on: anything odd is a writer bug or a
  // deliberately forged file.
  if (h.headerSize != kHeaderSize || h.reserved != 0)
    return "corrupt header: unexpected header size " + str(h.headerSize);
  if (h.fileSize != size)
    return "corrupt file: it is " + str(size) + " bytes, its header says " +
           str(h.fileSize);
  if (h.flags & ~uint64_t(kKnownFlags))
    return "artifact uses features this runtime does not support (flags " +
           hex(h.flags) + ")";
  if (h.flatbufferOffset < kHeaderSize ||
      h.flatbufferOffset % kFlatbufferAlignment != 0)
    return "corrupt header: metadata offset " + str(h.flatbufferOffset) +
           " is misplaced";
  if (h.blobOffset % kBlobAlignment != 0 ||
      h.blobOffset < h.flatbufferOffset + h.flatbufferSize)
    return "corrupt header: weight blob offset " + str(h.blobOffset) +
           " is not 4096-aligned after the metadata";
  if (h.flatbufferSize < 8 ||
      h.flatbufferSize >= FLATBUFFERS_MAX_BUFFER_SIZE)
    return "corrupt header: metadata size " + str(h.flatbufferSize) +
           " is out of range";

  if (checksum(p + h.flatbufferOffset, h.flatbufferSize) !=
      h.flatbufferChecksum)
    return "metadata checksum mismatch: the metadata section is corrupt";
  if (options.verifyWeightChecksum &&
      checksum(p + h.blobOffset, h.blobSize) != h.blobChecksum)
    return "weight blob checksum mismatch: the weights are corrupt";
  return "";
}

} // namespace

std::string verifyMetadata(const fb::Artifact &root, uint64_t blobSize) {
  const fb::ModelInfo *model = root.model();
  if (!model)
    return "invalid artifact: no model metadata";
  if (!inRange(model->activation_dtype()))
    return "invalid model metadata: unknown activation dtype";
  if (const fb::RopeScaling *rope = model->rope_scaling())
    if (!inRange(rope->kind()))
      return "invalid model metadata: unknown rope scaling kind";

  const fb::KVCacheLayout *kv = root.kv_cache();
  if (kv) {
    if (kv->block_size() == 0)
      return "invalid KV cache layout: block size 0";
    if (!inRange(kv->dtype()) || kv->dtype() == fb::DType::Unknown)
      return "invalid KV cache layout: unknown dtype";
    if (!inRange(kv->order()))
      return "invalid KV cache layout: unknown layout order";
  }

  // Weights: unique names, dense sizes that match, disjoint blob ranges.
  struct Range {
    uint64_t offset, size;
    size_t index;
  };
  std::vector<Range> ranges;
  std::unordered_set<std::string_view> names;
  auto *weights = root.weights();
  size_t numWeights = weights ? weights->size() : 0;
  for (size_t i = 0; i < numWeights; ++i) {
    const fb::WeightEntry *w = weights->Get(i);
    std::string what = "invalid weight " + str(i);
    if (!w->name() || w->name()->size() == 0)
      return what + ": no name";
    what = "invalid weight " + quoted(w->name());
    if (!names.insert(w->name()->string_view()).second)
      return what + ": the name appears twice";
    if (!inRange(w->dtype()))
      return what + ": unknown dtype";
    if (!w->format())
      return what + ": no format";
    // flatbuffers 2.0's verifier checks vector alignment only to 4 bytes;
    // int64 elements read in place need 8 (the section itself is 8-aligned).
    if (w->shape() &&
        reinterpret_cast<uintptr_t>(w->shape()->data()) % alignof(int64_t))
      return what + ": misaligned shape";
    if (w->format()->string_view() == "dense") {
      std::vector<int64_t> shape;
      if (w->shape())
        shape.assign(w->shape()->begin(), w->shape()->end());
      std::optional<uint64_t> expected = denseByteSize(w->dtype(), shape);
      if (!expected)
        return what + ": bad dtype or shape";
      if (*expected != w->size())
        return what + ": " + str(w->size()) + " bytes, but a " +
               dtypeName(w->dtype()) + " tensor of its shape has " +
               str(*expected);
    }
    if (w->no_data())
      continue;
    if (w->offset() % kWeightAlignment != 0)
      return what + ": offset " + str(w->offset()) + " is not " +
             str(kWeightAlignment) + "-byte aligned";
    if (!fits(w->offset(), w->size(), blobSize))
      return what + ": bytes " + str(w->offset()) + ".." +
             str(w->offset() + w->size()) + " lie outside the weight blob (" +
             str(blobSize) + " bytes)";
    if (w->size() > 0)
      ranges.push_back({w->offset(), w->size(), i});
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const Range &a, const Range &b) { return a.offset < b.offset; });
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i - 1].offset + ranges[i - 1].size > ranges[i].offset)
      return "invalid weight index: " +
             quoted(weights->Get(ranges[i - 1].index)->name()) + " and " +
             quoted(weights->Get(ranges[i].index)->name()) + " overlap";

  // Kernels: their names become file names (--extract-kernels, caches).
  auto *kernels = root.kernels();
  size_t numKernels = kernels ? kernels->size() : 0;
  std::unordered_set<std::string_view> kernelNames;
  for (size_t i = 0; i < numKernels; ++i) {
    const fb::Kernel *k = kernels->Get(i);
    if (!k->name() || !isSafeKernelName(k->name()->str()))
      return "invalid kernel " + str(i) + ": name " + quoted(k->name()) +
             " is not a safe file name";
    if (!kernelNames.insert(k->name()->string_view()).second)
      return "invalid kernel " + quoted(k->name()) +
             ": the name appears twice";
    if (!inRange(k->format()))
      return "invalid kernel " + quoted(k->name()) + ": unknown format";
    if (!k->target())
      return "invalid kernel " + quoted(k->name()) + ": no target";
  }

  const fb::Plan *plan = root.plan();
  if (!plan)
    return "invalid artifact: no execution plan";
  auto *buffers = plan->buffers();
  size_t numBuffers = buffers ? buffers->size() : 0;
  for (size_t i = 0; i < numBuffers; ++i) {
    const fb::Buffer *b = buffers->Get(i);
    uint32_t a = b->alignment();
    if (a & (a - 1))
      return "invalid plan: buffer " + str(i) + " " + quoted(b->name()) +
             " has alignment " + str(a) + ", not a power of two";
    if (!inRange(b->kind()))
      return "invalid plan: buffer " + str(i) + " " + quoted(b->name()) +
             " has an unknown kind";
  }
  size_t numScalars = plan->runtime_scalars() ? plan->runtime_scalars()->size()
                                              : 0;
  auto *commands = plan->commands();
  size_t numCommands = commands ? commands->size() : 0;
  for (size_t c = 0; c < numCommands; ++c) {
    const fb::Command *cmd = commands->Get(c);
    std::string what = "invalid plan: command " + str(c) + " " +
                       quoted(cmd->name());
    if (!inRange(cmd->kind()))
      return what + " has an unknown kind " +
             str(static_cast<unsigned>(cmd->kind()));
    if (cmd->kernel() != kNoKernel) {
      if (cmd->kernel() >= numKernels)
        return what + " calls kernel " + str(cmd->kernel()) +
               ", but the artifact has " + str(numKernels) + " kernels";
      auto *entries = kernels->Get(cmd->kernel())->entry_points();
      size_t numEntries = entries ? entries->size() : 0;
      if (cmd->entry() >= numEntries)
        return what + " calls entry point " + str(cmd->entry()) +
               " of kernel " + quoted(kernels->Get(cmd->kernel())->name()) +
               ", which has " + str(numEntries);
    } else if (cmd->kind() == fb::CommandKind::KernelCall) {
      return what + " is a kernel call without a kernel";
    }
    if (cmd->max_tokens() != 0 && cmd->max_tokens() < cmd->min_tokens())
      return what + " runs in steps of " + str(cmd->min_tokens()) + " to " +
             str(cmd->max_tokens()) + " tokens, which is none";
    auto *args = cmd->args();
    size_t numArgs = args ? args->size() : 0;
    for (size_t a = 0; a < numArgs; ++a) {
      const fb::Arg *arg = args->Get(a);
      std::string where = what + " argument " + str(a);
      int64_t index = arg->index();
      switch (arg->kind()) {
      case fb::ArgKind::Buffer:
        if (index < 0 || uint64_t(index) >= numBuffers)
          return where + " references buffer " + std::to_string(index) +
                 ", but the plan has " + str(numBuffers) + " buffers";
        if (arg->offset() > buffers->Get(index)->size_bytes())
          return where + " has offset " + str(arg->offset()) +
                 " past the end of buffer " + quoted(buffers->Get(index)->name());
        break;
      case fb::ArgKind::Weight:
        if (index < 0 || uint64_t(index) >= numWeights)
          return where + " references weight " + std::to_string(index) +
                 ", but the artifact has " + str(numWeights) + " weights";
        if (arg->offset() > weights->Get(index)->size())
          return where + " has offset " + str(arg->offset()) +
                 " past the end of weight " + quoted(weights->Get(index)->name());
        break;
      case fb::ArgKind::KVCache:
        if (!kv)
          return where + " uses the KV cache, but the artifact has no KV "
                         "cache layout";
        if (index < 0 || uint64_t(index) >= kv->num_layers())
          return where + " references KV cache layer " +
                 std::to_string(index) + ", but the cache has " +
                 str(kv->num_layers()) + " layers";
        break;
      case fb::ArgKind::RuntimeScalar:
        if (index < 0 || uint64_t(index) >= numScalars)
          return where + " references runtime scalar " +
                 std::to_string(index) + ", but the plan has " +
                 str(numScalars);
        break;
      case fb::ArgKind::Int:
      case fb::ArgKind::Float:
        break;
      default:
        return where + " has an unknown kind " +
               str(static_cast<unsigned>(arg->kind()));
      }
    }
  }
  if (const fb::Tokenizer *tok = root.tokenizer())
    if (!tok->json())
      return "invalid tokenizer: no tokenizer.json text";
  return "";
}

Artifact::~Artifact() {
  if (mapped)
    ::munmap(const_cast<uint8_t *>(base), size);
}

std::string Artifact::load(const VerifyOptions &options) {
  std::string problem = checkContainer(base, size, fileHeader, options);
  if (!problem.empty())
    return problem;
  const uint8_t *flat = base + fileHeader.flatbufferOffset;
  // Many small tables (one per command argument): raise the table limit
  // well past what real plans need, keep the depth limit.
  flatbuffers::Verifier verifier(flat, fileHeader.flatbufferSize, 64,
                                 1u << 26);
  if (!fb::VerifyArtifactBuffer(verifier))
    return "metadata failed flatbuffers verification: the file is malformed";
  rootTable = fb::GetArtifact(flat);
  if (rootTable->schema_version() != fileHeader.schemaVersion)
    return "metadata schema version " + str(rootTable->schema_version()) +
           " does not match the header's " + str(fileHeader.schemaVersion);
  problem = verifyMetadata(*rootTable, fileHeader.blobSize);
  if (!problem.empty())
    return problem;

  bool anyVirtual = false;
  for (size_t i = 0; i < numWeights(); ++i) {
    anyVirtual |= weight(i).no_data();
    weightIndex.emplace(weight(i).name()->string_view(), i);
  }
  if (anyVirtual && !hasVirtualWeights())
    return "invalid weight index: weights without data, but the header "
           "does not mark the artifact as having virtual weights";
  return "";
}

std::unique_ptr<Artifact> Artifact::open(const std::string &path,
                                         std::string &error,
                                         const VerifyOptions &options) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = std::string("cannot open: ") + std::strerror(errno);
    return nullptr;
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    error = std::string("cannot stat: ") + std::strerror(errno);
    ::close(fd);
    return nullptr;
  }
  if (!S_ISREG(st.st_mode)) {
    error = S_ISDIR(st.st_mode) ? "is a directory, not an artifact file"
                                : "not a regular file";
    ::close(fd);
    return nullptr;
  }
  std::unique_ptr<Artifact> artifact(new Artifact());
  artifact->size = size_t(st.st_size);
  if (artifact->size > 0) {
    void *p = ::mmap(nullptr, artifact->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      error = std::string("cannot map: ") + std::strerror(errno);
      ::close(fd);
      return nullptr;
    }
    artifact->base = static_cast<const uint8_t *>(p);
    artifact->mapped = true;
  } else {
    static const uint8_t kEmpty[8] = {};
    artifact->base = kEmpty;
  }
  ::close(fd); // the mapping keeps the file alive
  error = artifact->load(options);
  if (!error.empty())
    return nullptr;
  return artifact;
}

std::unique_ptr<Artifact> Artifact::fromBytes(const void *data, size_t size,
                                              std::string &error,
                                              const VerifyOptions &options) {
  std::unique_ptr<Artifact> artifact(new Artifact());
  // An 8-aligned copy: flatbuffers reads scalars in place.
  artifact->owned.reset(new uint64_t[size / 8 + 1]);
  if (size > 0)
    std::memcpy(artifact->owned.get(), data, size);
  artifact->base = reinterpret_cast<const uint8_t *>(artifact->owned.get());
  artifact->size = size;
  error = artifact->load(options);
  if (!error.empty())
    return nullptr;
  return artifact;
}

std::string Artifact::verify(const void *data, size_t size,
                             const VerifyOptions &options) {
  std::string error;
  fromBytes(data, size, error, options);
  return error;
}

size_t Artifact::numKernels() const {
  return rootTable->kernels() ? rootTable->kernels()->size() : 0;
}
const fb::Kernel &Artifact::kernel(size_t i) const {
  return *rootTable->kernels()->Get(i);
}
size_t Artifact::numWeights() const {
  return rootTable->weights() ? rootTable->weights()->size() : 0;
}
const fb::WeightEntry &Artifact::weight(size_t i) const {
  return *rootTable->weights()->Get(i);
}
std::optional<size_t> Artifact::findWeight(std::string_view name) const {
  auto it = weightIndex.find(name);
  if (it == weightIndex.end())
    return std::nullopt;
  return it->second;
}
const uint8_t *Artifact::weightData(size_t i) const {
  const fb::WeightEntry &w = weight(i);
  return w.no_data() ? nullptr : blobData() + w.offset();
}

namespace {
std::string s(const flatbuffers::String *v) { return v ? v->str() : ""; }
std::vector<std::string>
strings(const flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>> *v) {
  std::vector<std::string> out;
  if (v)
    for (const auto *e : *v)
      out.push_back(e->str());
  return out;
}
template <typename T> std::optional<T> opt(flatbuffers::Optional<T> v) {
  return v ? std::optional<T>(*v) : std::nullopt;
}
} // namespace

ArtifactSpec Artifact::toSpec() const {
  ArtifactSpec spec;
  const fb::ModelInfo &m = model();
  ModelInfo &o = spec.model;
  o.architecture = s(m.architecture());
  o.vocabSize = m.vocab_size();
  o.hiddenSize = m.hidden_size();
  o.intermediateSize = m.intermediate_size();
  o.numLayers = m.num_layers();
  o.numHeads = m.num_heads();
  o.numKVHeads = m.num_kv_heads();
  o.headDim = m.head_dim();
  o.maxPositionEmbeddings = m.max_position_embeddings();
  o.rmsNormEps = m.rms_norm_eps();
  o.ropeTheta = m.rope_theta();
  if (const fb::RopeScaling *r = m.rope_scaling())
    o.ropeScaling = {r->kind(), r->factor(), r->low_freq_factor(),
                     r->high_freq_factor(),
                     r->original_max_position_embeddings()};
  o.slidingWindow = m.sliding_window();
  o.tieWordEmbeddings = m.tie_word_embeddings();
  o.bosId = m.bos_id();
  if (m.eos_ids())
    o.eosIds.assign(m.eos_ids()->begin(), m.eos_ids()->end());
  o.activationDType = m.activation_dtype();

  if (const fb::KVCacheLayout *kv = kvCache())
    spec.kvCache = KVCacheLayout{kv->block_size(),   kv->dtype(),
                                 kv->order(),        kv->num_layers(),
                                 kv->num_kv_heads(), kv->head_dim()};

  const fb::Plan &p = plan();
  if (p.buffers())
    for (const fb::Buffer *b : *p.buffers())
      spec.plan.buffers.push_back(
          {s(b->name()), b->size_bytes(), b->alignment(), b->kind()});
  spec.plan.maxTokensPerStep = p.max_tokens_per_step();
  if (p.commands())
    for (const fb::Command *c : *p.commands()) {
      Command cmd{c->kind(),  s(c->name()),     c->kernel(),
                  c->entry(), {},               c->min_tokens(),
                  c->max_tokens()};
      if (c->args())
        for (const fb::Arg *a : *c->args())
          cmd.args.push_back({a->kind(), a->index(), a->offset(), a->value()});
      spec.plan.commands.push_back(std::move(cmd));
    }
  spec.plan.runtimeScalars = strings(p.runtime_scalars());

  for (size_t i = 0; i < numKernels(); ++i) {
    const fb::Kernel &k = kernel(i);
    Kernel out{s(k.name()), s(k.target()), k.format(),
               strings(k.entry_points()), {}};
    if (k.data())
      out.data.assign(k.data()->begin(), k.data()->end());
    spec.kernels.push_back(std::move(out));
  }
  for (size_t i = 0; i < numWeights(); ++i) {
    const fb::WeightEntry &w = weight(i);
    WeightInfo out{s(w.name()), w.dtype(), {}, s(w.format()),
                   w.offset(),  w.size(),  w.no_data()};
    if (w.shape())
      out.shape.assign(w.shape()->begin(), w.shape()->end());
    spec.weights.push_back(std::move(out));
  }
  if (const fb::Tokenizer *t = tokenizer())
    spec.tokenizer = Tokenizer{s(t->kind()), s(t->json()), s(t->config_json())};
  if (const fb::GenerationDefaults *g = generation()) {
    spec.generation.temperature = opt(g->temperature());
    spec.generation.topP = opt(g->top_p());
    spec.generation.topK = opt(g->top_k());
    spec.generation.maxNewTokens = opt(g->max_new_tokens());
    spec.generation.repetitionPenalty = opt(g->repetition_penalty());
  }
  if (const fb::Provenance *pr = provenance()) {
    spec.provenance.compiler = s(pr->compiler());
    spec.provenance.created = s(pr->created());
    if (pr->sources())
      for (const fb::SourceFile *f : *pr->sources())
        spec.provenance.sources.push_back(
            {s(f->path()), f->size(), s(f->checksum())});
    spec.provenance.passes = strings(pr->passes());
    spec.provenance.options = strings(pr->options());
  }
  return spec;
}

} // namespace artifact
} // namespace optrt
