// `hashattn train`: learns the per-head hash encoders of a model from its own post-RoPE queries and keys
// over training text and writes a hash-encoder GGUF bound to the model (src/train, src/hash/hash-file.cpp).
// Progress (window, layer, steps, loss, held-out top-32-in-budget overlap vs SimHash, ETA) goes to stderr.
// `--eval-text FILE...` measures top-k and attention-mass recall on held-out text after training (or, with
// `--eval --hash H.gguf`, of an existing file) and prints Markdown tables to stdout.
// `--data mixed` / `--data retrieval` train on generated chat-templated windows (make_mixed_windows; retrieval:
// more records and answered questions about earlier ones). `--init H.gguf` fine-tunes: training starts from
// that file's encoders (bound to the same model, of the same shape) instead of the random initialisation.
#include <fmt/core.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "command.h"
#include "hash-options.h"
#include "policy-options.h"
#include "hashattn/error.h"
#include "hashattn/gguf.h"
#include "hashattn/hash-file.h"
#include "hashattn/model.h"
#include "hashattn/tokenizer.h"
#include "hashattn/train.h"

namespace {

using namespace hashattn;

// "3", "0,2,5", "0-4,7" -> sorted unique list.
std::vector<int> parse_list(const std::string& s, const char* what) {
  std::vector<int> out;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    const std::string part = s.substr(i, j - i);
    try {
      const size_t dash = part.find('-', 1);
      size_t used = 0;
      if (dash == std::string::npos) {
        out.push_back(std::stoi(part, &used));
        if (used != part.size()) throw std::invalid_argument(part);
      } else {
        const int a = std::stoi(part.substr(0, dash)), b = std::stoi(part.substr(dash + 1), &used);
        if (used != part.size() - dash - 1 || b < a) throw std::invalid_argument(part);
        for (int x = a; x <= b; x++) out.push_back(x);
      }
    } catch (const std::exception&) {
      fail(std::string("--") + what, "'" + part + "'", "numbers or ranges like 0,2,5-7");
    }
    i = j + 1;
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::string hms(double s) {
  if (!(s >= 0) || !std::isfinite(s)) return "?";
  const int64_t t = (int64_t)std::llround(s);
  return t >= 60 ? fmt::format("{}m{:02d}s", t / 60, (int)(t % 60)) : fmt::format("{}s", t);
}

struct opts {
  std::string model, out, hash, mlp, gqa = "head", layers, heads, rank = "logit", loss = "listwise", data = "text", targets = "uniform";
  mix_params mix;
  bool no_chat = false;
  std::string dump_data;
  std::string init;                   // --init: hash file to start from
  CLI::Option* item_share_opt = nullptr;  // to tell an explicit --item-share from the default
  CLI::Option* question_share_opt = nullptr;
  std::string density = "1/16", eval_densities = "1/16,1/32";
  std::vector<std::string> texts, eval_texts;
  bool eval_only = false;
  train_params tp;
  int64_t eval_ctx = 8192;
  int eval_windows = 1, eval_queries = 64;
};

int run_train(opts& o) {
  if (!o.eval_only) {  // before the model loads and training starts (minutes)
    if (o.out.empty()) fail("-o", "missing", "the hash file to write, e.g. -o models/hash.gguf");
    if (o.texts.empty()) fail("--text", "missing", "training text files");
    cli::check_output_writable(o.out, "-o");
  }
  auto m = model::load(o.model);
  const bool tty = isatty(2);
  train_params& tp = o.tp;
  tp.gqa = cli::parse_gqa_option(o.gqa, "--gqa-mode");
  const cli::mlp_shape mlp = cli::parse_mlp_option(o.mlp, "--mlp");
  tp.mlp_layers = mlp.layers;
  if (mlp.layers > 1) tp.hidden = mlp.hidden;
  tp.labels.density = cli::parse_density_option(o.density);
  if (o.rank == "logit") tp.labels.rank = label_rank::logit;
  else if (o.rank == "value-norm") tp.labels.rank = label_rank::value_norm;
  else fail("--rank", o.rank, "logit or value-norm");
  if (o.loss == "bce") tp.loss = train_loss::bce;
  else if (o.loss == "listwise") tp.loss = train_loss::listwise;
  else fail("--loss", o.loss, "bce or listwise");
  if (o.targets == "uniform") tp.targets = train_targets::uniform;
  else if (o.targets == "attention") tp.targets = train_targets::attention;
  else fail("--targets", o.targets, "uniform or attention");
  if (!o.layers.empty()) tp.layers = parse_list(o.layers, "layers");
  if (!o.heads.empty()) tp.heads = parse_list(o.heads, "heads");
  const hash_binding binding = model_hash_binding(*m);
  // Fine-tuning: the initial weights, bound to this model and of the training's shape (train_init_check,
  // the trainer's own rule, run here before the texts load).
  hash_weights init_weights;
  if (!o.init.empty()) {
    if (o.eval_only) fail("--init", o.init, "no --init with --eval", "evaluate a file with --eval --hash FILE");
    hash_file_contents c = hash_file_load(o.init, &binding, 0);
    init_weights = std::move(c.weights);
    tp.init = &init_weights;
    const model_hparams& hp = m->hparams();
    try {
      train_init_check(tp, hp.n_layer, hp.n_head, hp.n_head_kv, hp.head_dim);
    } catch (const error& e) {
      throw error("--init " + o.init + ": " + e.what());
    }
  }

  recall_eval_params ep;
  ep.densities.clear();
  for (size_t i = 0; i <= o.eval_densities.size();) {
    size_t j = o.eval_densities.find(',', i);
    if (j == std::string::npos) j = o.eval_densities.size();
    ep.densities.push_back(cli::parse_density_option(o.eval_densities.substr(i, j - i)));
    i = j + 1;
  }
  ep.sinks = tp.labels.sinks;
  ep.window = tp.labels.window;
  ep.ctx = o.eval_ctx;
  ep.windows_per_text = o.eval_windows;
  ep.queries_per_window = o.eval_queries;
  ep.gqa = tp.gqa;
  ep.simhash_bits = {tp.bits, 256};
  if (tp.bits == 256) ep.simhash_bits = {256};
  ep.layers = tp.layers;
  ep.n_threads = tp.n_threads;
  ep.on_progress = [](const std::string& s) { fmt::print(stderr, "{}\n", s); };

  hash_weights weights;
  bool have_weights = false;
  if (o.eval_only) {
    if (!o.hash.empty()) {
      hash_file_contents c = hash_file_load(o.hash, &binding, 0);
      weights = std::move(c.weights);
      have_weights = true;
      if (weights.key_per_group && tp.gqa == gqa_mode::per_head)
        fail("--gqa-mode", "head", "group for this file (key encoders per KV head)");
      ep.simhash_bits = {weights.bits, 256};
    }
    if (o.eval_texts.empty()) o.eval_texts = o.texts;
    if (o.eval_texts.empty()) fail("--eval", "no text", "--text FILE... (held-out text)");
  } else {
    fmt::print(stderr, "train: {}\n", m->describe());
    if (tp.ctx == 0) tp.ctx = train_default_ctx(*m);
    if (o.data != "text" && o.data != "mixed" && o.data != "retrieval")
      fail("--data", o.data, "text, mixed or retrieval");
    auto texts = load_texts(*m, o.texts);
    int64_t ntok = 0;
    for (const auto& t : texts) ntok += (int64_t)t.tokens.size();
    if (o.data == "retrieval") {  // retrieval settings, unless given explicitly
      if (o.item_share_opt->count() == 0) o.mix.item_share = 0.4;
      if (o.question_share_opt->count() == 0) o.mix.question_share = 0.5;
    }
    if (o.data == "mixed" || o.data == "retrieval") {
      auto tok = tokenizer::from_gguf(m->file());
      const chat_template chat = chat_template_from_gguf(m->file());
      o.mix.ctx = tp.ctx;
      o.mix.n_windows = tp.n_windows + 1;  // + the held-out one
      o.mix.seed = tp.seed;
      texts = make_mixed_windows(texts, [&](const std::string& x) { return tok->encode(x, false, true); },
                                 o.no_chat ? nullptr : &chat, o.mix);
      if (!o.dump_data.empty()) {
        FILE* f = std::fopen(o.dump_data.c_str(), "wb");
        if (!f) fail("--dump-data", o.dump_data, "a writable file");
        for (const auto& t : texts) fmt::print(f, "===== {} =====\n{}\n", t.name, tok->decode(t.tokens));
        std::fclose(f);
      }
      fmt::print(stderr,
                 "train: {} {} windows of {} tokens ({}chat template, passages {}-{} tokens, item share {}{})\n",
                 texts.size(), o.data, tp.ctx, o.no_chat ? "no " : "", o.mix.passage_min, o.mix.passage_max,
                 o.mix.item_share,
                 o.mix.question_share > 0 ? fmt::format(", question share {}", o.mix.question_share) : "");
    }
    fmt::print(stderr, "train: {} texts, {} tokens; {} windows x {} tokens (+ half a window held out), {} steps per unit per window\n",
               texts.size(), ntok, tp.n_windows, tp.ctx, tp.steps_per_window);
    fmt::print(stderr, "train: {}\n", train_settings_string(tp));
    tp.on_progress = [tty, bits = tp.bits](const train_progress& p) {
      if (p.capture) {
        if (p.window < 0)
          fmt::print(stderr, "train: held-out window captured ({})\n", hms(p.elapsed_s));
        else if (!tty)
          fmt::print(stderr, "train: window {}/{} captured ({})\n", p.window + 1, p.n_windows, hms(p.elapsed_s));
        return;
      }
      const std::string line = fmt::format(
          "train: window {}/{} layer {:2d} ({}/{}) steps {}/{} loss {:.4f} held-out top-32-in-budget {:.3f} (simhash-{} {:.3f}, "
          "simhash-256 {:.3f}) elapsed {} ETA {}",
          p.window + 1, p.n_windows, p.layer, p.layer_index + 1, p.n_layers, p.steps, p.steps_total, p.loss,
          p.val_recall, bits, p.val_recall_simhash, p.val_recall_simhash256, hms(p.elapsed_s), hms(p.eta_s));
      if (tty) fmt::print(stderr, "\r{:<150}", line);
      else if (p.layer_index + 1 == p.n_layers || p.window + 1 == p.n_windows) fmt::print(stderr, "{}\n", line);
      if (tty && p.layer_index + 1 == p.n_layers) fmt::print(stderr, "\n");
    };
    train_result r = train_hash_encoders(*m, texts, tp);
    hash_train_info info;
    info.texts = r.texts;
    info.tokens = r.train_tokens;
    info.settings = train_settings_string(tp) + " data=" + o.data;
    if (o.data != "text" && o.mix.question_share > 0)
      info.settings += fmt::format(" item_share={} question_share={}", o.mix.item_share, o.mix.question_share);
    info.layers = tp.layers;
    info.heads = tp.heads;
    info.seconds = r.seconds_total;
    hash_file_save(o.out, r.weights, binding, info);
    double sr = 0, ss = 0, s256 = 0;
    for (const auto& l : r.layers) sr += l.val_recall, ss += l.val_recall_simhash, s256 += l.val_recall_simhash256;
    const double nl = r.layers.empty() ? 1 : (double)r.layers.size();
    fmt::print(stderr, "train: per layer held-out top-32-in-budget overlap at the label budget (learned vs simhash-{} and "
               "simhash-256):\n",
               tp.bits);
    for (const auto& l : r.layers)
      fmt::print(stderr, "  layer {:2d}: loss {:.4f} top-32 overlap {:.3f} vs {:.3f} / {:.3f}\n", l.layer, l.loss, l.val_recall,
                 l.val_recall_simhash, l.val_recall_simhash256);
    fmt::print(stderr,
               "train: mean held-out top-32-in-budget overlap {:.3f} (simhash-{} {:.3f}, simhash-256 {:.3f}); capture {:.1f} s, "
               "training {:.1f} s, total {:.1f} s\n",
               sr / nl, tp.bits, ss / nl, s256 / nl, r.seconds_capture, r.seconds_train, r.seconds_total);
    fmt::print(stderr, "train: wrote {}\n", o.out);
    weights = std::move(r.weights);
    have_weights = true;
  }
  if (!o.eval_texts.empty()) {
    const auto et = load_texts(*m, o.eval_texts);
    fmt::print(stderr, "eval: {} texts, context {}, {} windows per text, {} queries per window, sinks {}, window {}\n",
               et.size(), ep.ctx, ep.windows_per_text, ep.queries_per_window, ep.sinks, ep.window);
    const auto rows = eval_recall_texts(*m, et, have_weights ? &weights : nullptr, ep);
    fmt::print("{}", recall_markdown(rows));
  }
  return 0;
}

HASHATTN_COMMAND(
    "train", "Learn the hash encoders of a model from its own queries and keys (and measure their recall)",
    [](CLI::App& sub) -> std::function<int()> {
      auto o = std::make_shared<opts>();
      o->model = cli::default_model_path();
      train_params& tp = o->tp;
      o->mlp = cli::mlp_option_string(tp.mlp_layers, tp.hidden);
      sub.add_option("-m,--model", o->model, "model GGUF")->capture_default_str();
      sub.add_option("--text", o->texts, "training text files (with --eval: held-out texts)");
      sub.add_option("-o,--output", o->out, "hash-encoder GGUF to write");
      sub.add_option("--bits", tp.bits, "code width: 16, 32 or 64")->capture_default_str();
      sub.add_option("--mlp", o->mlp, "hidden sizes of the MLP (128,128: 3 layers; 128: 2; linear: 1)")->capture_default_str();
      sub.add_option("--ctx", tp.ctx, "tokens per training window (0: the model's context, at most 8192; cover the inference contexts)")
          ->capture_default_str();
      sub.add_option("--seed", tp.seed, "seed of initialisation, sampling and window choice")->capture_default_str();
      sub.add_option("--gqa-mode", o->gqa, "head: key encoders and labels per query head (the paper); group: per KV group")
          ->capture_default_str();
      sub.add_option("--layers", o->layers,
                     "layers to train, e.g. 0,5-7 (default all; others keep their initial weights: random, or "
                     "--init's)");
      sub.add_option("--heads", o->heads, "query heads (head mode) or KV heads (group mode) to train (default all)");
      sub.add_option("--windows", tp.n_windows, "training windows")->capture_default_str();
      sub.add_option("--queries", tp.queries_per_window, "sampled query positions per window")->capture_default_str();
      sub.add_option("--steps", tp.steps_per_window, "Adam steps per unit per window")->capture_default_str();
      sub.add_option("--batch-queries", tp.batch_queries, "queries per step")->capture_default_str();
      sub.add_option("--batch-pos", tp.batch_pos, "positives sampled per query per step")->capture_default_str();
      sub.add_option("--batch-neg", tp.batch_neg, "random middle keys per step")->capture_default_str();
      sub.add_flag("--all-negatives", tp.all_negatives,
                   "every middle key of the step's queries is a negative (the paper's dense negatives; instead of "
                   "--batch-neg; about ctx / batch-neg times the key-encoder work per step)");
      sub.add_option("--lr", tp.lr, "Adam learning rate")->capture_default_str();
      sub.add_option("--label-k", tp.labels.k_fixed, "labels per query: 32 = the paper (the keys that carry the attention); 0 = the budget's share (density x middle)")
          ->capture_default_str();
      sub.add_option("--density", o->density, "inference density the labels follow (with --label-k 0)")->capture_default_str();
      sub.add_option("--sinks", tp.labels.sinks, "first tokens always kept (not labelled); 16 = inference's auto split at 1/32 of 4K")->capture_default_str();
      sub.add_option("--window", tp.labels.window, "recent tokens always kept (not labelled)")->capture_default_str();
      sub.add_option("--rank", o->rank, "label ranking: logit or value-norm (attention weight x ||v||)")->capture_default_str();
      sub.add_option("--loss", o->loss, "bce (weighted BCE, the paper) or listwise (softmax over sampled keys)")
          ->capture_default_str();
      sub.add_option("--targets", o->targets,
                     "listwise targets over a query's labels: uniform, or attention (each label weighted by its "
                     "attention weight among the labels: soft targets)")
          ->capture_default_str();
      sub.add_option("--pos-weight", tp.pos_weight, "BCE positive class weight")->capture_default_str();
      sub.add_option("--score-scale", tp.score_scale, "logit scale of the soft score")->capture_default_str();
      sub.add_flag("--input-norm", tp.input_norm,
                   "standardize queries and keys per head and dimension while training (folded into the first "
                   "layer of the saved encoders; an ablation, off by default)");
      sub.add_option("--data", o->data,
                     "text: windows of the texts as they are; mixed: chat-templated windows of many passages and "
                     "generated items (numbers, names, identifiers, lists, records); retrieval: mixed with more "
                     "items and answered questions about earlier records (item share 0.4, question share 0.5 "
                     "unless given)")
          ->capture_default_str();
      o->item_share_opt = sub.add_option("--item-share", o->mix.item_share,
                                         "with --data mixed or retrieval: share of generated items among the pieces "
                                         "(retrieval: 0.4 unless given)")
                              ->capture_default_str();
      o->question_share_opt =
          sub.add_option("--question-share", o->mix.question_share,
                         "with --data mixed or retrieval: chance of an answered question about an earlier record "
                         "after each piece (retrieval: 0.5 unless given)")
              ->capture_default_str();
      sub.add_option("--passage-min", o->mix.passage_min, "with --data mixed or retrieval: shortest passage (tokens)")
          ->capture_default_str();
      sub.add_option("--passage-max", o->mix.passage_max, "with --data mixed or retrieval: longest passage (tokens)")
          ->capture_default_str();
      sub.add_option("--dump-data", o->dump_data,
                     "with --data mixed or retrieval: write the windows' text to this file");
      sub.add_flag("--no-chat", o->no_chat, "with --data mixed or retrieval: no chat template around the windows");
      sub.add_option("--init", o->init,
                     "fine-tune: start from this hash file (bound to the model; same --bits, --mlp and --gqa-mode) "
                     "instead of random weights; layers not trained keep its encoders");
      sub.add_option("--hard-neg", tp.hard_neg, "hard negatives (current false positives) per query per step (0: none)")
          ->capture_default_str();
      sub.add_option("--hard-pool", tp.hard_pool, "current false positives kept per query to draw hard negatives from")
          ->capture_default_str();
      sub.add_option("--val-queries", tp.val_queries, "held-out queries (0: no held-out recall)")->capture_default_str();
      cli::add_threads_option(sub, tp.n_threads, "--threads");
      sub.add_flag("--eval", o->eval_only, "only evaluate (--hash H.gguf, or baselines without it) on --text");
      sub.add_option("--hash", o->hash, "hash file to evaluate with --eval");
      sub.add_option("--eval-text", o->eval_texts, "held-out texts to evaluate recall on after training");
      sub.add_option("--eval-ctx", o->eval_ctx, "tokens per evaluation window")->capture_default_str();
      sub.add_option("--eval-windows", o->eval_windows, "evaluation windows per text")->capture_default_str();
      sub.add_option("--eval-queries", o->eval_queries, "queries per evaluation window (from its last three quarters)")
          ->capture_default_str();
      sub.add_option("--eval-densities", o->eval_densities, "densities of the middle to evaluate")->capture_default_str();
      return [o] { return run_train(*o); };
    });

}  // namespace
