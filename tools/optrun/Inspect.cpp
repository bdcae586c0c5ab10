//===- Inspect.cpp - optrun inspect ---------------------------------------===//
//
// Prints what an artifact holds and optionally extracts its kernels. The
// output is for people and for lit tests: one fact per line, stable order.
//
//===----------------------------------------------------------------------===//

#include "Commands.h"

#include "runtime/artifact/Artifact.h"

#include <CLI/CLI.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <sstream>
#include <sys/stat.h>

using namespace optrt::artifact;

namespace optrun {
namespace {

struct InspectOptions {
  std::string path;
  std::string extractDir;
  bool skipWeightChecksum = false;
  bool commands = false;
};

/// "1234 bytes" below 1 KiB, else "1234567 bytes (1.2 MiB)".
std::string bytes(uint64_t n) {
  std::string out = std::to_string(n) + " bytes";
  if (n < 1024)
    return out;
  static const char *units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = double(n) / 1024;
  int unit = 0;
  while (v >= 1024 && unit < 3) {
    v /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), " (%.1f %s)", v, units[unit]);
  return out + buf;
}

std::string num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

template <typename Vec> std::string joinStrings(const Vec *v) {
  if (!v || v->size() == 0)
    return "(none)";
  std::string out;
  for (const auto *s : *v)
    out += (out.empty() ? "" : ", ") + s->str();
  return out;
}

std::string str(const flatbuffers::String *s) { return s ? s->str() : ""; }

void printModel(const Artifact &a) {
  const optrt::fb::ModelInfo &m = a.model();
  std::printf("model:\n");
  std::printf("  architecture: %s\n", str(m.architecture()).c_str());
  std::printf("  vocab_size: %u\n", m.vocab_size());
  std::printf("  hidden_size: %u\n", m.hidden_size());
  std::printf("  intermediate_size: %u\n", m.intermediate_size());
  std::printf("  num_layers: %u\n", m.num_layers());
  std::printf("  num_heads: %u\n", m.num_heads());
  std::printf("  num_kv_heads: %u\n", m.num_kv_heads());
  std::printf("  head_dim: %u\n", m.head_dim());
  std::printf("  max_position_embeddings: %u\n", m.max_position_embeddings());
  std::printf("  rms_norm_eps: %s\n", num(m.rms_norm_eps()).c_str());
  std::printf("  rope_theta: %s\n", num(m.rope_theta()).c_str());
  if (const optrt::fb::RopeScaling *r = m.rope_scaling())
    std::printf("  rope_scaling: %s factor %s low_freq_factor %s "
                "high_freq_factor %s original_max_position_embeddings %u\n",
                ropeScalingKindName(r->kind()), num(r->factor()).c_str(),
                num(r->low_freq_factor()).c_str(),
                num(r->high_freq_factor()).c_str(),
                r->original_max_position_embeddings());
  else
    std::printf("  rope_scaling: none\n");
  if (m.sliding_window())
    std::printf("  sliding_window: %u\n", m.sliding_window());
  else
    std::printf("  sliding_window: none\n");
  std::printf("  tie_word_embeddings: %s\n",
              m.tie_word_embeddings() ? "true" : "false");
  if (m.bos_id() >= 0)
    std::printf("  bos_id: %d\n", m.bos_id());
  else
    std::printf("  bos_id: none\n");
  std::string eos;
  if (m.eos_ids())
    for (int32_t id : *m.eos_ids())
      eos += (eos.empty() ? "" : ", ") + std::to_string(id);
  std::printf("  eos_ids: %s\n", eos.empty() ? "(none)" : eos.c_str());
  std::printf("  activation_dtype: %s\n", dtypeName(m.activation_dtype()));
}

void printKVCache(const Artifact &a) {
  const optrt::fb::KVCacheLayout *kv = a.kvCache();
  if (!kv) {
    std::printf("kv_cache: none\n");
    return;
  }
  std::printf("kv_cache:\n");
  std::printf("  block_size: %u\n", kv->block_size());
  std::printf("  dtype: %s\n", dtypeName(kv->dtype()));
  std::printf("  order: %s\n", kvLayoutOrderName(kv->order()));
  std::printf("  num_layers: %u\n", kv->num_layers());
  std::printf("  num_kv_heads: %u\n", kv->num_kv_heads());
  std::printf("  head_dim: %u\n", kv->head_dim());
}

void printPlan(const Artifact &a) {
  const optrt::fb::Plan &p = a.plan();
  std::printf("plan:\n");
  std::printf("  max_tokens_per_step: %u\n", p.max_tokens_per_step());
  uint64_t total = 0;
  std::map<std::string, std::pair<size_t, uint64_t>> byKind;
  size_t numBuffers = p.buffers() ? p.buffers()->size() : 0;
  if (p.buffers())
    for (const optrt::fb::Buffer *b : *p.buffers()) {
      total += b->size_bytes();
      auto &entry = byKind[bufferKindName(b->kind())];
      ++entry.first;
      entry.second += b->size_bytes();
    }
  std::printf("  buffers: %zu, %s\n", numBuffers, bytes(total).c_str());
  for (const auto &[kind, entry] : byKind)
    std::printf("    %s: %zu, %s\n", kind.c_str(), entry.first,
                bytes(entry.second).c_str());
  std::map<std::string, size_t> commands;
  size_t numCommands = p.commands() ? p.commands()->size() : 0;
  if (p.commands())
    for (const optrt::fb::Command *c : *p.commands())
      ++commands[commandKindName(c->kind())];
  std::printf("  commands: %zu\n", numCommands);
  for (const auto &[kind, count] : commands)
    std::printf("    %s: %zu\n", kind.c_str(), count);
  std::printf("  runtime_scalars: %s\n",
              joinStrings(p.runtime_scalars()).c_str());
}

/// One line per command: index, kind, name (and entry point), then its
/// arguments (PlanAbi.h): arrays as "KIND INDEX ['weight name'] [sizes]
/// [strides]", integers as numbers, runtime scalars by name.
void printCommands(const Artifact &a) {
  const optrt::fb::Plan &p = a.plan();
  if (!p.commands())
    return;
  auto scalarName = [&](int64_t index) -> std::string {
    if (p.runtime_scalars() && index >= 0 &&
        index < int64_t(p.runtime_scalars()->size()))
      return p.runtime_scalars()->Get(index)->str();
    return "scalar" + std::to_string(index);
  };
  auto value = [&](const optrt::fb::Arg &arg) -> std::string {
    switch (arg.kind()) {
    case optrt::fb::ArgKind::Int:
      return std::to_string(arg.index());
    case optrt::fb::ArgKind::RuntimeScalar:
      return scalarName(arg.index());
    case optrt::fb::ArgKind::Float:
      return num(arg.value());
    default:
      return "?";
    }
  };
  std::printf("commands:\n");
  for (size_t c = 0; c < p.commands()->size(); ++c) {
    const optrt::fb::Command &command = *p.commands()->Get(c);
    std::string line = "  " + std::to_string(c) + " " +
                       commandKindName(command.kind()) + " " +
                       str(command.name());
    if (command.kernel() < a.numKernels()) {
      const auto *entries = a.kernel(command.kernel()).entry_points();
      if (entries && command.entry() < entries->size() &&
          entries->Get(command.entry())->str() != str(command.name()))
        line += " (" + entries->Get(command.entry())->str() + ")";
    }
    if (command.min_tokens() || command.max_tokens())
      line += " [tokens " + std::to_string(command.min_tokens()) + ".." +
              (command.max_tokens() ? std::to_string(command.max_tokens())
                                    : std::string()) +
              "]";
    const auto *args = command.args();
    std::string items;
    for (size_t i = 0; args && i < args->size();) {
      const optrt::fb::Arg &arg = *args->Get(i++);
      std::string item;
      switch (arg.kind()) {
      case optrt::fb::ArgKind::Buffer:
      case optrt::fb::ArgKind::Weight:
      case optrt::fb::ArgKind::KVCache: {
        item = std::string(arg.kind() == optrt::fb::ArgKind::Buffer ? "buffer"
                           : arg.kind() == optrt::fb::ArgKind::Weight
                               ? "weight"
                               : "kv_cache") +
               " " + std::to_string(arg.index());
        if (arg.kind() == optrt::fb::ArgKind::Weight && arg.index() >= 0 &&
            size_t(arg.index()) < a.numWeights())
          item += " '" + str(a.weight(arg.index()).name()) + "'";
        if (arg.offset())
          item += " +" + std::to_string(arg.offset());
        // [rank] [sizes] [strides]
        if (i < args->size() &&
            args->Get(i)->kind() == optrt::fb::ArgKind::Int) {
          int64_t rank = args->Get(i++)->index();
          for (int part = 0; part < 2; ++part) {
            std::string dims;
            for (int64_t d = 0; d < rank && i < args->size(); ++d)
              dims += (d ? ", " : "") + value(*args->Get(i++));
            item += " [" + dims + "]";
          }
        }
        break;
      }
      default:
        item = value(arg);
      }
      items += (items.empty() ? "" : ", ") + item;
    }
    std::printf("%s: %s\n", line.c_str(), items.c_str());
  }
}

void printKernels(const Artifact &a) {
  std::printf("kernels: %zu\n", a.numKernels());
  for (size_t i = 0; i < a.numKernels(); ++i) {
    const optrt::fb::Kernel &k = a.kernel(i);
    std::printf("  %s: target %s, format %s, %s, entry points: %s\n",
                str(k.name()).c_str(), str(k.target()).c_str(),
                kernelFormatName(k.format()),
                bytes(k.data() ? k.data()->size() : 0).c_str(),
                joinStrings(k.entry_points()).c_str());
  }
}

void printWeights(const Artifact &a) {
  uint64_t total = 0;
  size_t numVirtual = 0;
  for (size_t i = 0; i < a.numWeights(); ++i) {
    total += a.weight(i).size();
    numVirtual += a.weight(i).no_data();
  }
  std::printf("weights: %zu, %s", a.numWeights(), bytes(total).c_str());
  if (numVirtual)
    std::printf(", %zu virtual (no data: random weights)", numVirtual);
  std::printf("\n");
  for (size_t i = 0; i < a.numWeights(); ++i) {
    const optrt::fb::WeightEntry &w = a.weight(i);
    std::string shape;
    if (w.shape())
      for (int64_t d : *w.shape())
        shape += (shape.empty() ? "" : ", ") + std::to_string(d);
    std::printf("  %s: [%s] %s %s, %s%s\n", str(w.name()).c_str(),
                shape.c_str(), dtypeName(w.dtype()), str(w.format()).c_str(),
                bytes(w.size()).c_str(), w.no_data() ? ", virtual" : "");
  }
}

void printRest(const Artifact &a) {
  if (const optrt::fb::Tokenizer *t = a.tokenizer()) {
    std::string config;
    if (t->config_json())
      config =
          ", " + bytes(t->config_json()->size()) + " of tokenizer_config.json";
    std::printf(
        "tokenizer: %s, %s of tokenizer.json%s\n", str(t->kind()).c_str(),
        bytes(t->json() ? t->json()->size() : 0).c_str(), config.c_str());
  } else
    std::printf("tokenizer: none\n");

  std::string gen;
  if (const optrt::fb::GenerationDefaults *g = a.generation()) {
    auto add = [&](const char *name, auto value) {
      if (value)
        gen += std::string(gen.empty() ? "" : ", ") + name + " " +
               num(double(*value));
    };
    add("temperature", g->temperature());
    add("top_p", g->top_p());
    add("top_k", g->top_k());
    add("max_new_tokens", g->max_new_tokens());
    add("repetition_penalty", g->repetition_penalty());
  }
  std::printf("generation defaults: %s\n", gen.empty() ? "(none)" : gen.c_str());

  const optrt::fb::Provenance *pr = a.provenance();
  if (!pr) {
    std::printf("provenance: none\n");
    return;
  }
  std::printf("provenance:\n");
  std::printf("  compiler: %s\n", str(pr->compiler()).c_str());
  std::printf("  created: %s\n", str(pr->created()).c_str());
  size_t numSources = pr->sources() ? pr->sources()->size() : 0;
  std::printf("  sources: %zu\n", numSources);
  if (pr->sources())
    for (const optrt::fb::SourceFile *f : *pr->sources())
      std::printf("    %s: %s, %s\n", str(f->path()).c_str(),
                  bytes(f->size()).c_str(), str(f->checksum()).c_str());
  std::printf("  passes: %s\n", joinStrings(pr->passes()).c_str());
  std::printf("  options: %s\n", joinStrings(pr->options()).c_str());
}

int extractKernels(const Artifact &a, const std::string &dir) {
  if (::mkdir(dir.c_str(), 0777) != 0 && errno != EEXIST)
    return reportError(dir, std::string("cannot create directory: ") +
                                std::strerror(errno));
  for (size_t i = 0; i < a.numKernels(); ++i) {
    const optrt::fb::Kernel &k = a.kernel(i);
    // The verifier guarantees a plain file name: nothing escapes `dir`.
    std::string path =
        dir + "/" + str(k.name()) + kernelFormatExtension(k.format());
    std::unique_ptr<FILE, int (*)(FILE *)> f(std::fopen(path.c_str(), "wb"),
                                             &std::fclose);
    if (!f)
      return reportError(path, std::string("cannot write: ") +
                                   std::strerror(errno));
    size_t n = k.data() ? k.data()->size() : 0;
    if (n && std::fwrite(k.data()->data(), 1, n, f.get()) != n)
      return reportError(path, std::string("cannot write: ") +
                                   std::strerror(errno));
    if (std::fclose(f.release()) != 0)
      return reportError(path, std::string("cannot write: ") +
                                   std::strerror(errno));
    std::printf("extracted %s (%s)\n", path.c_str(), bytes(n).c_str());
  }
  return 0;
}

int runInspect(const InspectOptions &options) {
  std::string error;
  VerifyOptions verify;
  verify.verifyWeightChecksum = !options.skipWeightChecksum;
  std::unique_ptr<Artifact> a = Artifact::open(options.path, error, verify);
  if (!a)
    return reportError(options.path, error);

  const FileHeader &h = a->header();
  std::printf("artifact: %s\n", options.path.c_str());
  std::printf("  format_version: %u\n", h.formatVersion);
  std::printf("  schema_version: %u\n", h.schemaVersion);
  std::printf("  file_size: %s\n", bytes(a->fileSize()).c_str());
  std::printf("  metadata: %s\n", bytes(h.flatbufferSize).c_str());
  std::printf("  weight_blob: %s at offset %llu\n", bytes(h.blobSize).c_str(),
              (unsigned long long)h.blobOffset);
  printModel(*a);
  printKVCache(*a);
  printPlan(*a);
  if (options.commands)
    printCommands(*a);
  printKernels(*a);
  printWeights(*a);
  printRest(*a);
  std::fflush(stdout);
  if (!options.extractDir.empty())
    return extractKernels(*a, options.extractDir);
  return 0;
}

} // namespace

void addInspectCommand(CLI::App &app, int &exitCode) {
  auto options = std::make_shared<InspectOptions>();
  CLI::App *cmd = app.add_subcommand(
      "inspect", "Verify an artifact and print what it holds");
  cmd->add_option("artifact", options->path, "The .optpkg file")->required();
  cmd->add_option("--extract-kernels", options->extractDir,
                  "Write each kernel to DIR/NAME.{ptx,cubin,o,so}")
      ->type_name("DIR");
  cmd->add_flag("--skip-weight-checksum", options->skipWeightChecksum,
                "Do not hash the weight blob (faster on huge files)");
  cmd->add_flag("--commands", options->commands,
                "List every command of the plan with its arguments");
  cmd->callback([options, &exitCode] { exitCode = runInspect(*options); });
}

} // namespace optrun
