// hashattn eval: runs the evaluation tasks (ppl, passkey, RULER-style, recall) for a grid of
// policies x GQA modes x densities x contexts, sharing one dense prefill per sample, and writes a
// Markdown table (stdout) and JSON records (--json). --report re-renders (and merges) JSON files.
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "command.h"
#include "cpu/cpu-kernels.h"
#include "hashattn/error.h"
#include "hashattn/eval.h"
#include "hashattn/gguf.h"
#include "hashattn/model.h"
#include "hashattn/tokenizer.h"
#include "policy-options.h"

namespace hashattn::cli {
namespace {

struct eval_options {
  std::string model_path;
  std::string tasks = "passkey";
  std::string contexts = "4096";
  int samples = 50;
  int first_sample = 0;
  uint64_t seed = 1234;
  int64_t sparse_tail = 64;
  int ppl_tokens = 64;
  std::string texts;
  std::string wordnet = "/usr/share/wordnet";
  std::string json_out;
  bool no_chat = false;
  int threads = 0;
  double time_limit = 0;
  bool recall = false;
  int recall_stride = 4;
  bool answers = false;
  bool sequential = false;
  bool quiet = false;
  std::string dense_layers;
  std::vector<std::string> report;
  policy_options pol;
};

int64_t parse_context(const std::string& s) {
  std::string t = s;
  int64_t mul = 1;
  if (!t.empty() && (t.back() == 'K' || t.back() == 'k')) mul = 1024, t.pop_back();
  try {
    size_t pos = 0;
    long long v = std::stoll(t, &pos);
    if (pos != t.size() || v <= 0) throw std::invalid_argument("ctx");
    return v * mul;
  } catch (const std::exception&) {
    fail("--context", "'" + s + "'", "a token count like 4096 or 4K");
  }
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot open '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

int run_report(const eval_options& o) {
  check_output_writable(o.json_out, "--json");
  std::vector<std::vector<eval_record>> files;
  for (const auto& p : o.report) files.push_back(eval_records_from_json(read_all(p)));
  // Shards of disjoint samples are pooled; a later file wins where samples overlap.
  const std::vector<eval_record> base = eval_records_merge(files);
  nlohmann::json meta;
  meta["merged_from"] = o.report;
  eval_write_results(eval_add_average(base), meta.dump(), o.json_out, std::cout);
  return 0;
}

// The command line as typed (Linux /proc), for the JSON meta record.
std::string command_line() {
  std::ifstream f("/proc/self/cmdline", std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  for (char& c : s)
    if (c == '\0') c = ' ';
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

int run_eval(const eval_options& o) {
  if (!o.report.empty()) return run_report(o);
  check_output_writable(o.json_out, "--json");
  auto m = model::load(o.model_path);
  auto tok = tokenizer::from_gguf(m->file());
  chat_template chat = chat_template_from_gguf(m->file());

  eval_run_params p;
  p.tasks = split_list(o.tasks);
  p.contexts.clear();
  for (const auto& c : split_list(o.contexts)) p.contexts.push_back(parse_context(c));
  p.n_samples = o.samples;
  p.first_sample = o.first_sample;
  p.seed = o.seed;
  p.sparse_tail = o.sparse_tail;
  p.ppl_eval_tokens = o.ppl_tokens;
  p.chat = !o.no_chat;
  p.n_threads = o.threads;
  p.time_limit_s = o.time_limit;
  p.sequential = o.sequential;
  p.recall_all = o.recall;
  p.recall_stride = o.recall_stride;
  for (const auto& l : split_list(o.dense_layers)) {
    try {
      size_t pos = 0;
      p.dense_layers.push_back(std::stoi(l, &pos));
      if (pos != l.size()) throw std::invalid_argument("layer");
    } catch (const std::exception&) {
      fail("--dense-layers", "'" + l + "'", "layer indices, comma separated");
    }
  }
  if (!o.quiet) p.log = [](const std::string& s) { std::fprintf(stderr, "eval: %s\n", s.c_str()); };
  if (o.answers) p.trace = [](const std::string& s) { std::printf("%s\n", s.c_str()); std::fflush(stdout); };

  bool need_words = false;
  for (const auto& t : p.tasks) need_words |= t.rfind("niah", 0) == 0 || t == "cwe";
  std::vector<std::string> texts = split_list(o.texts);
  if (texts.empty()) {
    const std::string d = std::string(HASHATTN_SOURCE_DIR) + "/data/texts/";
    texts = {d + "persuasion.txt", d + "kjv.txt", d + "jargon.txt"};
  }
  eval_corpus corpus = eval_corpus_load(texts, need_words ? o.wordnet : "");

  policy_options po = o.pol;
  po.n_threads = o.threads;
  po.seed = o.seed;
  policy_builder builder(*m, po);
  std::vector<std::string> methods = split_list(po.attn);
  std::vector<double> dens;
  if (!po.density.empty()) dens = parse_density_list(po.density);
  else if (po.budget <= 0) dens = {1.0 / 32};
  else dens = {0.0};
  builder.prepare(methods, dens, p.contexts);
  auto specs = builder.eval_specs();

  std::fprintf(stderr, "eval: %s | %zu settings x %zu tasks x %zu contexts x %d samples\n", m->describe().c_str(),
               specs.size(), p.tasks.size(), p.contexts.size(), p.n_samples);
  auto recs = eval_run(*m, *tok, &chat, corpus, specs, p);
  nlohmann::json meta;
  meta["command"] = command_line();
  meta["model"] = m->describe();
  meta["texts"] = texts;
  meta["tasks"] = p.tasks;
  meta["contexts"] = p.contexts;
  meta["samples_requested"] = p.n_samples;
  meta["seed"] = p.seed;
  meta["sparse_tail"] = p.sparse_tail;
  meta["ppl_eval_tokens"] = p.ppl_eval_tokens;
  meta["chat"] = p.chat;
  meta["sinks"] = po.sinks;
  meta["window"] = po.window;
  meta["simd"] = backend_default().target();
  char buf[64];
  std::time_t now = std::time(nullptr);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  meta["date"] = buf;
  eval_write_results(eval_add_average(recs), meta.dump(), o.json_out, std::cout);
  return 0;
}

HASHATTN_COMMAND(command{
    "eval", "Evaluate attention policies: perplexity, passkey, RULER-style tasks, attention recall",
    [](CLI::App& sub) -> std::function<int()> {
      auto o = std::make_shared<eval_options>();
      o->model_path = default_model_path();
      sub.add_option("-m,--model", o->model_path, "Model GGUF")->capture_default_str();
      sub.add_option("--task", o->tasks,
                     "Tasks, comma separated: ppl, passkey, niah_single_noise, niah_single_essay, niah_multikey, "
                     "niah_multivalue, niah_multiquery, vt, cwe, recall")
          ->capture_default_str();
      sub.add_option("--context", o->contexts, "Context lengths in tokens, comma separated (4096 or 4K)")
          ->capture_default_str();
      sub.add_option("--samples", o->samples, "Samples per task and context")->capture_default_str();
      sub.add_option("--first-sample", o->first_sample, "Index of the first sample (passkey depth = index mod 11 / 10)")
          ->capture_default_str();
      sub.add_option("--seed", o->seed, "Seed of the task generators")->capture_default_str();
      sub.add_option("--sparse-tail", o->sparse_tail,
                     "Last prompt tokens decoded through the policy (the question is read sparsely); 0 = all dense")
          ->capture_default_str();
      sub.add_option("--ppl-tokens", o->ppl_tokens, "ppl: positions per window decoded through the policy")
          ->capture_default_str();
      sub.add_option("--text", o->texts,
                     "Held-out texts for haystacks and perplexity, comma separated (default: Persuasion, KJV, "
                     "Jargon File in data/texts)");
      sub.add_option("--wordnet", o->wordnet, "WordNet dictionary folder (index.noun, index.adj)")
          ->capture_default_str();
      sub.add_option("--json", o->json_out, "Write the records as JSON");
      sub.add_flag("--no-chat", o->no_chat, "Do not wrap prompts in the model's chat template");
      add_threads_option(sub, o->threads, "-t,--threads");
      sub.add_option("--time-limit", o->time_limit, "Stop starting samples after this many seconds (0 = none)")
          ->capture_default_str();
      sub.add_flag("--recall", o->recall, "Also measure attention recall on the retrieval tasks");
      sub.add_option("--recall-stride", o->recall_stride, "Measure recall on every N-th sparse step")
          ->capture_default_str();
      sub.add_flag("--answers", o->answers, "Print every answer (one line per sample and setting)");
      sub.add_flag("--sequential", o->sequential,
                   "Decode one setting at a time (measures each setting's decode tokens/s); default: all settings "
                   "of a sample side by side, linear layers batched over them (several times faster)");
      sub.add_flag("-q,--quiet", o->quiet, "No progress lines on stderr");
      sub.add_option("--dense-layers", o->dense_layers,
                     "Ablation: layers (comma separated, from 0) that every sparse setting decodes densely");
      sub.add_option("--report", o->report, "Merge JSON result files and print the tables (no model run); shards of disjoint samples "
                     "(--first-sample) are pooled, a later file wins where samples overlap");
      o->pol.attn = "dense,hash";
      o->pol.gqa_mode = "head";
      o->pol.add_to(sub, true);
      return [o]() {
        return run_eval(*o);
      };
    }});

}  // namespace
}  // namespace hashattn::cli
