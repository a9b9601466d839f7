// Training of the hash encoders (HashAttention) from a model's own post-RoPE queries and keys, and the
// recall evaluation of hash selectors (learned, SimHash) against exact top-k.
// Capture: dense prefill of token windows of the training text; the forward observer copies the queries
// of sampled positions q [n_q, n_head, d]; keys k [n_tok, n_head_kv, d] (and value norms) are read back
// from the session's fp16 KV cache, one layer at a time. Only one window is held at a time.
// Labels: for a query at position p the middle region is [sinks, p + 1 - window); its label set is the
//   top-k middle keys by logit q.k (or by attention weight x ||v||), a fixed k (32: the paper, the default)
//   or k = floor(density * n_mid) (the inference budget's share of the middle). GQA group mode: one label set
//   per KV group, ranked by the group's summed attention weights.
// Loss: soft score sum_j tanh(q~_j) tanh(k~_j) (group mode: the mean over the group's query heads of
//   tanh(q~)), weighted BCE with positive weight 20 (the paper) or a listwise softmax loss; Adam.
//   Minibatches: some queries, a sample of each one's positives and random middle negatives, with
//   importance weights so that the loss estimates the full per-query loss over its middle region.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "hashattn/hash.h"
#include "hashattn/policy.h"

namespace hashattn {

class model;
struct chat_template;
class session;

// ---- text -> token windows ----
struct train_text {
  std::string name;              // shown in metadata and reports (file name without directories)
  std::vector<int32_t> tokens;   // tokenized without special tokens
};
// Reads and tokenizes files with the model's tokenizer; throws if a file is missing or empty.
std::vector<train_text> load_texts(const model& m, const std::vector<std::string>& paths);
struct token_window {
  int text = 0;       // index into the texts
  int64_t start = 0;  // first token
};
// Every non-overlapping window of n tokens (windows never cross texts), in text order.
std::vector<token_window> text_windows(const std::vector<train_text>& texts, int64_t n);

// Mixed windows ("data that looks like inference"): each window is one user turn in the chat template
// (none when chat is null) holding many unrelated passages of the texts (passage_min..passage_max tokens
// each, from random texts and offsets), interleaved with generated items (numbers, names, identifiers,
// lists, key-value records; a share item_share of the pieces), then a question about one record and the
// opened assistant turn; exactly ctx tokens each, deterministic in seed. Pieces are tokenized separately
// with encode (no special tokens added; the template's markers parsed) and concatenated.
// Retrieval data (question_share > 0): after each piece, once a record exists, with probability
// question_share an answered question about a uniformly chosen earlier record follows ("Question: what was
// given for KEY in the notes above? The value for KEY is VALUE."), so that many query positions retrieve a
// value stated far back. The "special code" items are pass-key-like, the records key-value lookups, the lists
// multi-needle-like. question_share 0 (the default) gives the plain mixed windows, unchanged.
struct mix_params {
  int64_t ctx = 8192;
  int n_windows = 3;
  int64_t passage_min = 48, passage_max = 400;
  double item_share = 0.25;
  double question_share = 0;  // in [0, 1): answered questions about earlier records after pieces
  uint64_t seed = 0;
};
void mix_params_validate(const mix_params& p);
std::vector<train_text> make_mixed_windows(const std::vector<train_text>& texts,
                                           const std::function<std::vector<int32_t>(const std::string&)>& encode,
                                           const chat_template* chat, const mix_params& p);
// ---- capture ----
// One layer of one window: keys, value norms and the queries of the sampled positions.
struct layer_capture {
  int n_head = 0, n_head_kv = 0, head_dim = 0;
  int64_t n_tok = 0;
  std::vector<float> k;       // [n_tok, n_head_kv, d] (the fp16 cache values)
  std::vector<float> vnorm;   // [n_tok, n_head_kv]  ||v||
  std::vector<int64_t> qpos;  // [n_q] ascending
  std::vector<float> q;       // [n_q, n_head, d]
  int64_t n_q() const { return (int64_t)qpos.size(); }
};
class window_capture {
 public:
  // Holds a session of `ctx` tokens; captures queries of the listed layers only.
  window_capture(const model& m, int64_t ctx, std::vector<int> layers, int n_threads);
  ~window_capture();
  // Dense prefill of tokens[0..n) from position 0; records the queries at positions qpos (ascending, < n).
  void run(const int32_t* tokens, int64_t n, const std::vector<int64_t>& qpos);
  // Layer l (one of the listed layers) of the last run.
  void get(int layer, layer_capture& out) const;

 private:
  struct impl;
  std::unique_ptr<impl> p_;
};
// n query positions drawn uniformly without replacement from [lo, hi), ascending.
std::vector<int64_t> sample_positions(uint64_t seed, int64_t lo, int64_t hi, int64_t n);

// ---- labels ----
enum class label_rank : uint8_t { logit = 0, value_norm = 1 };
// Defaults (docs/QUALITY.md, "Training toward inference"): top-32 labels (the paper) and sinks = window = 16,
// the inference split of the smallest budget in use (auto sinks/window = budget / 8: 16 at 1/32 of 4K), so
// that every key a selector must rank at inference is a training key.
struct label_params {
  double density = 1.0 / 16;  // k = floor(density * n_mid) when k_fixed == 0
  int64_t k_fixed = 32;       // > 0: fixed k per query (32 = the paper); 0: the budget's share
  int64_t sinks = 16;
  int64_t window = 16;
  label_rank rank = label_rank::logit;
};
struct middle_range {
  int64_t lo = 0, hi = 0, k = 0;  // middle [lo, hi), k labels (k <= hi - lo)
};
middle_range label_middle(const label_params& p, int64_t pos);
// Label sets of one unit (a query head, or a KV group in group mode) for every captured query:
// labels[i] = ascending positions (ties broken towards recent positions).
std::vector<std::vector<int32_t>> make_labels(const layer_capture& c, const label_params& p, gqa_mode mode,
                                              int unit);

// ---- training ----
enum class train_loss : uint8_t { bce = 0, listwise = 1 };
// Listwise targets over a query's labels: uniform, or attention (soft targets: each label's share is its
// attention weight renormalized over the labels, so the keys that carry the attention weigh most).
enum class train_targets : uint8_t { uniform = 0, attention = 1 };
struct train_progress {
  int window = 0, n_windows = 0;     // training window (0-based) and count
  int layer = 0, layer_index = 0, n_layers = 0;
  int64_t steps = 0;                 // optimizer steps done per unit so far
  int64_t steps_total = 0;
  double loss = 0;                   // mean loss of this window's steps of this layer
  // Held-out top-32-in-budget overlap (recall_stats.top_overlap at the label budget), -1 if not measured.
  double val_recall = -1;            // learned codes
  double val_recall_simhash = -1;    // the same for SimHash with the same bits
  double val_recall_simhash256 = -1; // the same for SimHash with 256 bits (the stronger baseline)
  double elapsed_s = 0, eta_s = 0;
  bool capture = false;              // true: a capture step (prefill) finished
};
struct train_params {
  int bits = 32;
  int mlp_layers = 3;   // 1..3 linear layers
  int hidden = 128;
  gqa_mode gqa = gqa_mode::per_head;  // per_group: key encoders per KV head, group labels
  label_params labels;
  train_loss loss = train_loss::listwise;  // listwise beat BCE on held-out training text (docs/QUALITY.md)
  train_targets targets = train_targets::uniform;
  double pos_weight = 20;    // BCE positive class weight (the paper)
  double score_scale = 0.3;  // logit = scale * soft score (BCE) / softmax temperature (listwise); the paper: 1
  double lr = 3e-3;
  int64_t ctx = 0;           // tokens per training window; 0: the model's context, at most 8192. Queries are
                             // sampled over the whole window: the codes do not extrapolate to positions
                             // (RoPE angles) beyond it, so it should cover the contexts used at inference.
  int n_windows = 2;         // training windows (drawn from all windows of the texts)
  int queries_per_window = 4096;
  int steps_per_window = 240; // optimizer steps per unit per window
  int batch_queries = 64;
  int batch_pos = 8;         // positives sampled per query per step
  int batch_neg = 256;       // random middle keys per step
  // Every middle key of the step's queries is a negative (the paper's dense negatives: the weighted loss is
  // then the exact loss over each query's middle, not an estimate); batch_neg is not used. Costs about
  // ctx / batch_neg times the key-encoder work of a step.
  bool all_negatives = false;
  int val_queries = 64;      // held-out queries (half a window more, not trained on)
  // Standardize each encoder's input (per layer, head and dimension: mean and spread of the first training
  // window's queries / keys) while training; folded into the first linear layer of the saved encoders, so
  // inference and the file format are unchanged. Off by default: held-out recall 0.01 lower in every layer
  // (docs/QUALITY.md, ablations).
  bool input_norm = false;
  // Hard negatives (hard_negatives): per query and step, hard_neg keys drawn from its pool of the hard_pool
  // current false positives (codes of the encoders at the window's start, per layer); 0: none.
  int hard_neg = 0;
  int hard_pool = 32;
  uint64_t seed = 0;
  std::vector<int> layers;   // empty: all
  std::vector<int> heads;    // empty: all (query heads in head mode, KV heads in group mode)
  int n_threads = 0;         // 0: all
  // Start from these weights (fine-tuning) instead of the seeded random initialisation; layers/heads not
  // trained keep them. Their shape must equal the training's (model shape, bits, MLP layers, hidden size,
  // key encoders per KV head in group mode); not with input_norm. Not owned: must outlive the training.
  const hash_weights* init = nullptr;
  std::function<void(const train_progress&)> on_progress;
};
void train_params_validate(const train_params& p, int n_layer, int n_head, int n_head_kv);
// Throws unless p.init (if set) has the shape the training would allocate: every difference named.
void train_init_check(const train_params& p, int n_layer, int n_head, int n_head_kv, int head_dim);
struct train_layer_stats {
  int layer = 0;
  double loss = 0;           // mean loss of the last window
  double val_recall = 0;     // held-out top-32-in-budget overlap at the label budget (as train_progress), learned
  double val_recall_simhash = 0;
  double val_recall_simhash256 = 0;
};
struct train_result {
  train_params params;       // as used (ctx resolved), without on_progress
  hash_weights weights;      // untrained layers/heads keep their initialisation (seeded random, or init)
  std::vector<train_layer_stats> layers;
  std::vector<std::string> texts;
  int64_t train_tokens = 0;  // tokens prefilled for training windows
  int64_t val_tokens = 0;
  double seconds_capture = 0, seconds_train = 0, seconds_total = 0;
};
train_result train_hash_encoders(const model& m, const std::vector<train_text>& texts, const train_params& p);
// The training window when train_params.ctx is 0: the model's context, at most 8192.
int64_t train_default_ctx(const model& m);
// One line "key=value ..." of the settings (stored in the hash file); ends with "init=file" when training
// started from given weights (p.init), and has no init key for the random initialisation.
std::string train_settings_string(const train_params& p);

// ---- recall evaluation ----
// Codes of any width (SimHash 256 included): words = ceil(bits / 64) uint64 per code.
struct eval_codes {
  int bits = 0;
  bool key_per_group = false;  // key codes per KV head (else per query head)
  std::vector<uint64_t> q;     // [n_q, n_head, words]
  std::vector<uint64_t> k;     // [n_tok, n_key_enc, words]
  int words() const { return (bits + 63) / 64; }
};
// Learned codes of one layer (the inference encoder, hash_encode_cpu).
eval_codes codes_learned(const hash_weights& w, int layer, const layer_capture& c, int n_threads);
// SimHash: bits Gaussian directions per KV head, shared by keys and the group's queries.
eval_codes codes_simhash(const layer_capture& c, int bits, uint64_t seed);
// The attended set of a query: sinks + window + the k selected middle tokens (label_params' split and k).
// Both measures are metrics.h's, over the query's exact attention (every key up to its position).
struct recall_stats {
  double top_overlap = 0;     // top-32-in-budget overlap of the attended set, mean over (query, head)
  double mass_recall = 0;     // attention-mass recall of the attended set, mean over (query, head)
  double oracle_overlap = 0;  // the same two for the oracle's set (middle top-k by attention weight)
  double oracle_mass = 0;
  int64_t n = 0;              // (query, head) pairs measured (group mode: every head of the group)
};
// Selection: the k highest middle scores (b - popcount(q xor k); group mode: summed over the group),
// ties to the most recent; oracle: top-k by logit (group: by summed attention weights). k from p
// (rank is ignored: the oracle ranks by attention). units: lists to measure (empty: all).
recall_stats eval_recall(const layer_capture& c, const eval_codes& codes, const label_params& p, gqa_mode mode,
                         const std::vector<int>& units = {});

// Hard negatives of one unit (query head, or KV group in group mode): for every captured query, the pool
// middle keys of highest code score (b - popcount(q xor k); group mode: summed over the group), labels
// excluded, ties to the most recent; ascending positions. labels: make_labels' sets of the same unit.
struct hard_negative_params {
  label_params labels;  // the middle split
  gqa_mode gqa = gqa_mode::per_head;
  int pool = 32;
};
std::vector<std::vector<int32_t>> hard_negatives(const layer_capture& c, const eval_codes& codes,
                                                 const std::vector<std::vector<int32_t>>& labels,
                                                 const hard_negative_params& p, int unit);
struct recall_eval_params {
  std::vector<double> densities = {1.0 / 16, 1.0 / 32};
  int64_t sinks = 128, window = 128;
  int64_t ctx = 8192;             // tokens per evaluation window
  int windows_per_text = 1;
  int queries_per_window = 64;    // drawn from [ctx/4, ctx)
  gqa_mode gqa = gqa_mode::per_head;
  std::vector<int> simhash_bits = {32, 256};
  uint64_t seed = 1;
  std::vector<int> layers;        // empty: all
  int n_threads = 0;
  std::function<void(const std::string&)> on_progress;
};
struct recall_row {
  std::string text;     // evaluation text
  std::string method;   // "learned-32", "simhash-32", "simhash-256", "oracle"
  double density = 0;
  int layer = 0;
  recall_stats stats;
};
// Rows for every (text, method, density, layer). learned may be null (baselines only).
std::vector<recall_row> eval_recall_texts(const model& m, const std::vector<train_text>& texts,
                                          const hash_weights* learned, const recall_eval_params& p);
// Markdown: per-layer tables (top-32-in-budget overlap and attention-mass recall per method and density)
// and the mean over layers.
std::string recall_markdown(const std::vector<recall_row>& rows);

}  // namespace hashattn
