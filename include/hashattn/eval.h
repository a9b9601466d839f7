// Evaluation of attention policies: held-out texts, task generators, scoring, the runner that
// reuses one dense prefill per sample across every policy, and the report writers.
// Tasks (prompt lengths set with the model's own tokenizer, fixed seeds):
//   ppl        teacher-forced perplexity over held-out text; the last n_eval positions of each
//              window are decoded token by token through the policy; also mean KL(dense || policy).
//   passkey    "The pass key is NNNNN. Remember it. NNNNN is the pass key." at depths 0..100%
//              of a real-text haystack; passkey_noise: the same in the repeated "The grass is
//              green. ..." filler of the original passkey test.
//   RULER-style niah_single_noise, niah_single_essay, niah_multikey, niah_multivalue,
//              niah_multiquery, vt (variable tracking), cwe (common-words extraction); score =
//              fraction of reference strings contained in the output (string_match_all).
//   recall     per layer and head: attention-mass recall and top-32-in-budget overlap (metrics.h)
//              of the policy's attended lists against exact attention, measured on passkey prompts.
// "essay" haystacks are sentences of the held-out texts (Persuasion, KJV, Jargon File): the
// Austen novels used to train the hash encoders never appear here.
#pragma once
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "hashattn/model.h"
#include "hashattn/policy.h"
#include "hashattn/tokenizer.h"

namespace hashattn {

// ---- texts ----
// Normalizes a raw text file: lines of a paragraph are joined with single spaces, paragraphs are
// separated by "\n\n", indentation and runs of blanks collapse, and KJV verse labels ("Ge1:1 ")
// are dropped (each verse becomes its own paragraph).
std::string eval_text_normalize(const std::string& raw);
// Splits normalized text into sentences (ending at . ! ? followed by a blank, closing quotes kept).
std::vector<std::string> eval_split_sentences(const std::string& text);
// Words of a WordNet index file (index.noun, index.adj, ...): lower-case letters only, 3..12 long.
std::vector<std::string> eval_load_wordnet(const std::string& path);

struct eval_corpus {
  std::vector<std::string> names;                   // text names (file stems)
  std::vector<std::string> texts;                   // normalized texts
  std::vector<std::vector<std::string>> sentences;  // per text
  std::vector<std::string> nouns, adjectives;       // key words (WordNet), may be empty
};
// Loads texts (paths) and, when wordnet_dir is not empty, index.noun / index.adj from it.
// Throws when a file is missing or a text is too short to build a haystack.
eval_corpus eval_corpus_load(const std::vector<std::string>& text_paths, const std::string& wordnet_dir);

// ---- tasks ----
struct eval_sample {
  std::string task;
  int index = 0;
  std::vector<int32_t> prompt;    // chat-formatted prompt, answer prefix included
  std::vector<std::string> refs;  // every one should appear in the output
  int max_new_tokens = 16;
  double depth = -1;              // needle depth in [0, 1] (passkey), -1 when not applicable
  std::string source;             // haystack text name ("noise" for synthetic haystacks)
};

struct task_params {
  std::string task;               // one of eval_task_names()
  int64_t context = 4096;         // prompt tokens + max_new_tokens <= context
  uint64_t seed = 1234;
  bool chat = true;               // wrap in the model's chat template
};

// Every generated task name (ppl and recall are not generated here).
const std::vector<std::string>& eval_task_names();
bool eval_task_is_generated(const std::string& task);
// The prompt fitting of every generated task: the longest of a family of prompts render(n), n = 0 .. n_max
// (token count non-decreasing in n), with at most `limit` tokens; exponential then binary search, each n
// rendered once. n = -1 (no tokens) when even render(0) is longer than limit.
struct fitted_prompt {
  int64_t n = -1;
  std::vector<int32_t> tokens;
};
fitted_prompt eval_fit_prompt(const std::function<std::vector<int32_t>(int64_t)>& render, int64_t n_max,
                              int64_t limit);
// Sample i of a task: deterministic in (task, context, seed, i). The haystack is the longest that
// fits prompt + max_new_tokens into the context (eval_fit_prompt with the model's tokenizer). Throws
// when even an empty haystack does not fit.
eval_sample eval_make_sample(const task_params& p, int index, const eval_corpus& corpus, const tokenizer& tok,
                             const chat_template* chat);

// ---- scoring ----
// Fraction of refs contained in output (case-insensitive); 0 when refs is empty.
double string_match_all(const std::string& output, const std::vector<std::string>& refs);

// ---- option values ----
// Comma-separated densities (at least one; each as policy_density_parse).
std::vector<double> parse_density_list(const std::string& s);
// Comma-separated items, blanks trimmed, empty items dropped.
std::vector<std::string> split_list(const std::string& s);

// ---- policies under test ----
struct eval_policy_spec {
  std::string method = "dense";     // dense, hash, oracle, streaming, quest, dsparse, simhash-32, ...
  std::string gqa = "";             // "head", "group", or "" (method has no GQA mode)
  double density = 1.0;             // nominal density (1 for dense)
  // Makes a fresh policy for a context length (budgets may depend on it); empty -> dense.
  std::function<std::unique_ptr<attention_policy>(int64_t context)> make;
  std::string label() const;        // "hash/head", "streaming", ...
};

// ---- the probe: a policy wrapper that swaps inner policies over one prefill ----
// Keeps an fp32 copy of every appended key, so that a new inner policy can be installed over an
// existing KV cache (begin + on_append replay: its state is exactly what a fresh run builds).
// Measures per decode step and layer: attended tokens per query head, KV bytes read (union of a
// group's lists in per-head mode), and optionally recall against exact attention (metrics.h).
struct probe_stats {
  int64_t steps = 0;                  // decode steps x layers measured
  double attended_frac = 0;           // sum over measured (step, layer) of mean per-head attended / n
  double kv_read_frac = 0;            // sum of (K+V rows read, union per group) / (n * n_head_kv)
  double kv_read_bytes = 0;           // sum of bytes read from the fp16 cache
  // Sum of bytes the selector read: its auxiliary state (codes, page bounds, label channels: all of it,
  // every step) plus select_extra_read_bytes (the oracle's K scan, re-ranked candidates' keys).
  double select_read_bytes = 0;
  double dense_bytes = 0;             // sum of what dense attention would read (all K and V rows)
  // Recall (while enabled): [n_layer * n_head] sums over measured steps (allocated at the first).
  std::vector<double> top_overlap, mass_recall;
  int64_t recall_steps = 0;
};

class probe_policy : public attention_policy {
 public:
  probe_policy();
  ~probe_policy() override;
  std::string name() const override;
  bool is_dense() const override;
  double aux_bits_per_token_head() const override;
  void begin(int n_layer, const layer_shape& shape, int64_t max_ctx) override;
  void on_append(int layer, const float* k, int64_t pos0, int64_t n_new) override;
  void truncate(int64_t n) override;
  void select(int layer, const float* q, const kv_view& kv, index_lists& out) override;
  // (Dense decode does not call select: nothing is measured for a dense inner policy.)

  // Installs a new inner policy (nullptr: dense) over the keys seen so far.
  void install(std::unique_ptr<attention_policy> p);
  // A probe for one branch of a branch_decoder forked at base's current length F: it reads base's kept
  // keys for positions < F (base must outlive it and stay unchanged) and keeps its own for up to
  // max_tail positions from F on; `inner` is installed over the prefix (nullptr: dense).
  static std::unique_ptr<probe_policy> fork(const probe_policy& base, std::unique_ptr<attention_policy> inner,
                                            int64_t max_tail);
  void set_measure_recall(bool on) { recall_on_ = on; }
  // Layers whose lists are replaced by every token (an ablation: those layers decode densely under every
  // inner policy); forks inherit them.
  void set_dense_layers(std::vector<int> layers) { dense_layers_ = std::move(layers); }
  void reset_stats();
  const probe_stats& stats() const { return stats_; }
  int64_t n_tok(int layer) const;
  int n_layer() const { return n_layer_; }
  const layer_shape& shape() const { return shape_; }

 private:
  void measure(int layer, const float* q, const kv_view& kv, const index_lists& l);
  const float* key_row(int layer, int64_t t) const;  // [n_head_kv, head_dim] of position t
  std::unique_ptr<attention_policy> inner_;
  int n_layer_ = 0;
  layer_shape shape_;
  int64_t max_ctx_ = 0;
  // Per layer [max_ctx - fork_, n_head_kv, head_dim]: the keys of positions fork_ .. (all of them when
  // not forked); positions < fork_ are base_'s.
  std::vector<std::vector<float>> keys_;
  const probe_policy* base_ = nullptr;
  int64_t fork_ = 0;
  std::vector<int64_t> n_tok_;
  bool recall_on_ = false;
  std::vector<int> dense_layers_;
  probe_stats stats_;
  std::vector<uint8_t> mark_;
  std::vector<double> sc_;
};

// ---- the runner ----
struct eval_run_params {
  std::vector<std::string> tasks;   // generated tasks, "ppl", "recall"
  std::vector<int64_t> contexts = {4096};
  int n_samples = 50;
  int first_sample = 0;             // sample indices first_sample .. first_sample + n_samples - 1
  uint64_t seed = 1234;
  int64_t sparse_tail = 64;         // retrieval tasks and recall: last prompt tokens read sparsely
  int ppl_eval_tokens = 64;         // ppl: positions decoded through the policy per window
  bool chat = true;
  int n_threads = 0;
  bool recall_all = false;          // also measure recall on the retrieval tasks (slower steps)
  int recall_stride = 4;            // measure recall on every recall_stride-th sparse step
  double time_limit_s = 0;          // > 0: stop starting samples after this many seconds
  // false (default): all settings of a sample decode side by side as branches of one branch_decoder
  // (linear layers batched over the settings; no per-setting speed). true: one setting at a time
  // through the session's decode path, with decode tokens/s per setting.
  bool sequential = false;
  // Layers every sparse setting decodes densely (an ablation; probe_policy::set_dense_layers); empty: none.
  std::vector<int> dense_layers;
  // Progress lines (stderr in the tool); may be empty.
  std::function<void(const std::string&)> log;
  // One line per generated answer (debugging); may be empty.
  std::function<void(const std::string&)> trace;
};

// A 95% confidence interval of a record's value (eval-math.h: Wilson for scores, from the standard error
// for KL and recall, in log space for perplexity); hi < lo: none (too few samples).
struct eval_ci {
  double lo = 0, hi = -1;
  bool valid() const { return hi >= lo; }
};

struct eval_record {
  std::string task, method, gqa;
  double density = 1;
  int64_t context = 0;
  int samples = 0;
  int first_sample = 0;             // sample indices first_sample .. first_sample + samples - 1 (one shard)
  std::string metric;               // score, ppl, kl, top32_overlap, mass_recall (metrics.h)
  double value = 0;
  double stderr_ = 0;               // standard error of the mean over samples (ppl: of the mean log-perplexity; 0 when n/a)
  eval_ci ci;                       // 95% interval of value
  double attended_frac = 0;         // mean attended / context per query head
  double kv_read_frac = 0;          // mean KV rows read / (context * n_head_kv)
  double kv_read_bytes = 0;         // mean bytes read from the fp16 KV cache per decode step
  double select_read_bytes = 0;     // mean bytes the selector read per decode step (aux state, extra keys)
  double total_read_frac = 0;       // (KV rows + selector bytes) / dense KV bytes, per decode step
  double prompt_tokens = 0;         // mean prompt length
  double seconds = 0;               // wall time spent in this setting's sparse tail + decode (batched: shared evenly)
  double decode_tok_s = 0;          // decode steps per second, recall steps excluded (sequential runs only; else 0)
  double top_overlap = -1;          // top-32-in-budget overlap, mean over layers, heads and measured steps (-1: not measured)
  double mass_recall = -1;
  std::string detail;               // JSON text: per-layer/head recall (recall task), else ""
  std::string label() const;
};

// Runs every (task, context, sample) once with a dense prefill shared by all policies. policies[0]
// need not be dense: a dense reference always runs (for KL); it is reported as method "dense".
std::vector<eval_record> eval_run(const model& m, const tokenizer& tok, const chat_template* chat,
                                  const eval_corpus& corpus, const std::vector<eval_policy_spec>& policies,
                                  const eval_run_params& p);

// ---- reports ----
std::string eval_records_json(const std::vector<eval_record>& recs, const std::string& meta_json);
std::vector<eval_record> eval_records_from_json(const std::string& json_text);
// One table per (task, context, metric): rows = method/gqa, columns = densities.
std::string eval_records_markdown(const std::vector<eval_record>& recs);
// Merges result files (in order) per (task, method, gqa, density, context, metric): records of disjoint
// sample ranges (shards of one grid, --first-sample) are pooled -- sample-weighted means, exact pooled
// standard error, perplexity as the exp of the sample-weighted mean log-perplexity (equal positions per
// window), seconds summed; a record whose samples overlap those already merged replaces them (a re-run
// wins). "average" records are dropped (eval_add_average recomputes them).
std::vector<eval_record> eval_records_merge(const std::vector<std::vector<eval_record>>& files);
// Average over the RULER/passkey tasks of each (method, gqa, density, context): task "average"; its
// interval is Wilson's over every answer of those tasks.
std::vector<eval_record> eval_add_average(const std::vector<eval_record>& recs);
// The one results writer of runs and reports: the Markdown tables of recs to `md` and, when json_path is
// not empty, the JSON records with meta_json (a JSON object's text) to that file; throws when it cannot
// be written.
void eval_write_results(const std::vector<eval_record>& recs, const std::string& meta_json,
                        const std::string& json_path, std::ostream& md);

}  // namespace hashattn
