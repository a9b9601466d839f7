// `hashattn make-model -o OUT.gguf`: writes a llama-architecture GGUF with random weights, for speed
// benchmarks (no quality), from a preset shape with any field overridden, and with --hash-out random
// hash encoders bound to it (src/model/synthetic-model.cpp, synthetic-hash.cpp). The shape, tensor
// count and size go to stdout (--dry-run stops there); progress, one line per 10 %, to stderr.
#include <fmt/core.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include "command.h"
#include "hash-options.h"
#include "hashattn/error.h"
#include "hashattn/model.h"
#include "hashattn/synthetic-model.h"
#include "hashattn/train.h"

namespace {

using namespace hashattn;

struct opts {
  std::string out, preset = "llama3.1-8b", type = "bf16", hash_out, hash_mlp, hash_gqa;
  synthetic_model_params shape;  // the values of the shape flags (applied when given)
  CLI::Option *layers, *embd, *ff, *heads, *kv_heads, *head_dim, *vocab, *ctx, *rope_base;
  int hash_bits = 0;
  bool dry_run = false;
};

std::string size_str(double bytes) {
  if (bytes >= 1e9) return fmt::format("{:.2f} GB ({:.2f} GiB)", bytes / 1e9, bytes / (1u << 30));
  return fmt::format("{:.2f} MB ({:.2f} MiB)", bytes / 1e6, bytes / (1u << 20));
}

// The preset with the given flags applied. Without --head-dim, a new --embd or --heads keeps
// head_dim = embd / heads.
synthetic_model_params model_params(const opts& o) {
  synthetic_model_params p = synthetic_model_preset(o.preset);
  const synthetic_model_params& f = o.shape;
  if (o.layers->count()) p.n_layer = f.n_layer;
  if (o.embd->count()) p.n_embd = f.n_embd;
  if (o.ff->count()) p.n_ff = f.n_ff;
  if (o.heads->count()) p.n_head = f.n_head;
  if (o.kv_heads->count()) p.n_head_kv = f.n_head_kv;
  if (o.vocab->count()) p.n_vocab = f.n_vocab;
  if (o.ctx->count()) p.n_ctx = f.n_ctx;
  if (o.rope_base->count()) p.rope_base = f.rope_base;
  if (o.head_dim->count()) {
    p.head_dim = f.head_dim;
  } else if (o.embd->count() || o.heads->count()) {
    if (p.n_head <= 0 || p.n_embd % p.n_head != 0)
      fail("--embd / --heads", std::to_string(p.n_embd) + " / " + std::to_string(p.n_head),
           "an embedding length that is a multiple of the heads", "or give --head-dim");
    p.head_dim = p.n_embd / p.n_head;
  }
  p.type = o.type == "f32" ? gguf::type::F32 : o.type == "f16" ? gguf::type::F16 : gguf::type::BF16;
  p.seed = f.seed;
  p.n_threads = f.n_threads;
  return p;
}

std::string shape_line(const synthetic_model_params& p) {
  return fmt::format("{} layers, n_embd {}, n_ff {}, heads {}/{} x {}, vocab {}, context {}, rope base {}{}, {}",
                     p.n_layer, p.n_embd, p.n_ff, p.n_head, p.n_head_kv, p.head_dim, p.n_vocab, p.n_ctx, p.rope_base,
                     p.rope_scaling ? fmt::format(" (Llama 3.1 scaling x{})", p.scaling.factor) : "",
                     gguf::type_name(p.type));
}

int run_make_model(opts& o) {
  synthetic_model_params p = model_params(o);
  synthetic_hash_params hp;
  const cli::mlp_shape mlp = cli::parse_mlp_option(o.hash_mlp, "--hash-mlp");
  hp.bits = o.hash_bits;
  hp.mlp_layers = mlp.layers;
  hp.hidden = mlp.hidden;
  hp.gqa = cli::parse_gqa_option(o.hash_gqa, "--hash-gqa-mode");
  hp.seed = p.seed;
  const synthetic_model_layout plan = synthetic_model_plan(p);  // validates the shape
  if (!o.hash_out.empty()) synthetic_hash_validate(hp, p.n_layer, p.n_head, p.n_head_kv, p.head_dim);
  fmt::print("make-model: {}: {}\n", o.preset, shape_line(p));
  fmt::print("make-model: {} tensors, {} parameters, {} bytes = {}\n", plan.n_tensors, plan.n_params,
             plan.file_bytes, size_str((double)plan.file_bytes));
  if (o.dry_run) {
    fmt::print("make-model: dry run, nothing written\n");
    return 0;
  }
  if (o.out.empty()) fail("-o", "missing", "the model file to write, e.g. -o models/synthetic-8b.gguf");
  cli::check_output_writable(o.out, "-o");
  if (!o.hash_out.empty()) {
    cli::check_output_writable(o.hash_out, "--hash-out");
    if (std::filesystem::path(o.hash_out).lexically_normal() == std::filesystem::path(o.out).lexically_normal())
      fail("--hash-out", o.hash_out, "a file other than -o");
  }
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::path(o.out).parent_path();
  const auto space = std::filesystem::space(dir.empty() ? "." : dir, ec);
  if (!ec && space.available < plan.file_bytes)
    fail("-o '" + o.out + "': free disk space", size_str((double)space.available),
         "at least " + size_str((double)plan.file_bytes));

  int next_tenth = 1;
  p.on_progress = [&](const synthetic_progress& s) {
    if (s.bytes_done * 10 < s.bytes_total * (uint64_t)next_tenth) return;
    while (s.bytes_done * 10 >= s.bytes_total * (uint64_t)next_tenth) next_tenth++;
    fmt::print(stderr, "make-model: {:3d}%{}, {:.2f} GB in {:.1f} s ({:.2f} GB/s)\n",
               (int)(100 * s.bytes_done / s.bytes_total),
               s.layer >= 0 ? fmt::format(" (layer {}/{})", s.layer + 1, p.n_layer) : std::string(),
               s.bytes_done / 1e9, s.seconds, s.seconds > 0 ? s.bytes_done / 1e9 / s.seconds : 0.0);
  };
  const auto t0 = std::chrono::steady_clock::now();
  synthetic_model_write(o.out, p);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print("make-model: wrote {} ({} bytes) in {:.1f} s ({:.2f} GB/s, flushed to disk)\n", o.out, plan.file_bytes,
             secs, plan.file_bytes / 1e9 / secs);
  const auto m = model::load(o.out);  // the file is what the runtime expects
  fmt::print("make-model: loads as {}\n", m->describe());
  if (!o.hash_out.empty()) {
    synthetic_hash_write(*m, o.hash_out, hp);
    fmt::print("make-model: wrote {} (random {}-bit hash encoders, MLP {}, per {}, bound to the model)\n", o.hash_out,
               hp.bits, cli::mlp_option_string(hp.mlp_layers, hp.hidden),
               hp.gqa == gqa_mode::per_group ? "KV group" : "query head");
  }
  return 0;
}

HASHATTN_COMMAND(
    "make-model",
    "Write a llama-architecture model with random weights (speed benchmarks), and random hash encoders for it",
    [](CLI::App& sub) -> std::function<int()> {
      auto o = std::make_shared<opts>();
      const train_params trainer;  // the hash encoders' defaults are the trainer's
      o->hash_bits = trainer.bits;
      o->hash_mlp = cli::mlp_option_string(trainer.mlp_layers, trainer.hidden);
      o->hash_gqa = trainer.gqa == gqa_mode::per_group ? "group" : "head";
      synthetic_model_params& f = o->shape;
      sub.add_option("-o,--output", o->out, "model GGUF to write");
      sub.add_option("--preset", o->preset, "shape: llama3.1-8b or tiny (2 layers, n_embd 256; for tests)")
          ->check(CLI::IsMember(synthetic_model_preset_names()))
          ->capture_default_str();
      o->layers = sub.add_option("--layers", f.n_layer, "layers (overrides the preset)");
      o->embd = sub.add_option("--embd", f.n_embd, "embedding length");
      o->ff = sub.add_option("--ff", f.n_ff, "feed-forward length");
      o->heads = sub.add_option("--heads", f.n_head, "query heads");
      o->kv_heads = sub.add_option("--kv-heads", f.n_head_kv, "KV heads (divides --heads)");
      o->head_dim =
          sub.add_option("--head-dim", f.head_dim, "head dim (default: embd / heads; heads x head dim = embd)");
      o->vocab = sub.add_option("--vocab", f.n_vocab, "vocabulary size (>= 258)");
      o->ctx = sub.add_option("--ctx", f.n_ctx, "training context length (metadata)");
      o->rope_base = sub.add_option("--rope-base", f.rope_base, "RoPE frequency base");
      sub.add_option("--type", o->type, "type of the matrices")
          ->check(CLI::IsMember({"bf16", "f16", "f32"}))
          ->capture_default_str();
      sub.add_option("--seed", f.seed, "seed of the weights (and of the hash encoders)")->capture_default_str();
      sub.add_option("--hash-out", o->hash_out, "also write random hash encoders bound to the model to this file");
      sub.add_option("--hash-bits", o->hash_bits, "code width of the hash encoders: 16, 32 or 64")
          ->capture_default_str();
      sub.add_option("--hash-mlp", o->hash_mlp, "hidden sizes of the encoders' MLP (as train --mlp)")
          ->capture_default_str();
      sub.add_option("--hash-gqa-mode", o->hash_gqa, "head: key encoders per query head; group: per KV head (as train)")
          ->capture_default_str();
      sub.add_flag("--dry-run", o->dry_run, "print the shape, tensor count and size; write nothing");
      cli::add_threads_option(sub, f.n_threads, "-t,--threads");
      return [o] { return run_make_model(*o); };
    });

}  // namespace
