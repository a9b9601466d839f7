// Llama-family language model on the CPU: load from GGUF, forward pass with a KV cache, sampler.
// Architectures: "llama" (RoPE on adjacent pairs; Llama 2/3.x, Mistral, SmolLM), "qwen2" (NEOX RoPE,
// q/k/v biases) and "gemma3" (NEOX RoPE; interleaved sliding-window and global layers, each kind with
// its own RoPE; per-head RMSNorm of q and k; norms before and after attention and FFN; GeGLU FFN;
// embeddings scaled by sqrt(n_embd); tied output). RoPE scaling: llama3 frequency factors (from the
// rope_freqs tensor or the rope.scaling.* metadata), YaRN and linear (rope.scaling.*).
// Attention policies act on global layers only: a sliding-window layer always attends densely to its
// window (model_hparams::attn_first).
// Weights stay quantized in the GGUF mapping; decode runs integer mat-vecs (16-bit activations), prefill dequantizes
// weight tiles for sgemm. Every hyperparameter comes from the file's metadata.
// KV cache (one per session): per layer, K and V each [n_ctx, n_head_kv, head_dim] fp16
//   (stride_tok = n_head_kv * head_dim, stride_head = head_dim); keys are stored post-RoPE.
// Attention goes through an attention_policy (policy.h): begin() at session creation,
// on_append() for every appended key (prefill too), and in decode dense attention when
// is_dense(), else select() + the sparse kernel. Prefill attention is dense and causal.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "hashattn/backend.h"
#include "hashattn/policy.h"

namespace hashattn {

namespace gguf {
class file;
}

enum class rope_layout : uint8_t { adjacent = 0, neox = 1 };
enum class ffn_act : uint8_t { silu = 0, gelu = 1 };  // SwiGLU, GeGLU (tanh approximation)

// RoPE of one kind of layer. The angle of pair i at position p: theta = p * base^(-2i/n_dims) / f_i
// (f_i: the frequency factors, when present); linear scaling multiplies it by freq_scale; YaRN
// (ext_factor != 0) mixes the scaled and unscaled angles per pair with the ramp between
// corr_lo and corr_hi and multiplies cos and sin by attn_factor * (1 + 0.1 ln(1 / freq_scale)).
struct rope_params {
  float base = 10000.f;
  float freq_scale = 1.f;   // 1 / rope.scaling.factor (linear, YaRN)
  float ext_factor = 0.f;   // YaRN: 1 (0: off)
  float attn_factor = 1.f;  // YaRN magnitude factor
  float corr_lo = 0.f, corr_hi = 0.f;  // YaRN correction dims
  bool freq_factors = false;  // divide by the model's rope frequency factors (rope_freqs / llama3)
};

struct model_hparams {
  std::string arch;          // general.architecture
  int n_layer = 0;
  int n_embd = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim = 0;
  int n_ff = 0;
  int64_t n_vocab = 0;
  int64_t n_ctx_train = 0;   // <arch>.context_length (YaRN: at least original_context_length x factor)
  float rope_base = 10000.f;
  int rope_dims = 0;         // dims rotated per head (<= head_dim)
  rope_layout rope = rope_layout::adjacent;
  float rms_eps = 1e-5f;
  bool tied_embeddings = false;  // logits from token_embd (no output.weight)
  bool qkv_bias = false;
  bool rope_freq_factors = false;  // frequency factors in use (rope_freqs.weight, or llama3 from the metadata)
  std::string rope_scaling = "none";  // none, linear, yarn, llama3 (as applied)
  // Architecture features (gemma3 sets them; llama and qwen2 keep the defaults).
  ffn_act act = ffn_act::silu;
  bool qk_norm = false;      // per-head RMSNorm of q and k (attn_q_norm, attn_k_norm [head_dim])
  bool post_norms = false;   // RMSNorm of the attention and FFN outputs before their residuals
  float embd_scale = 1.f;    // token embeddings multiplied by this (gemma: sqrt(n_embd))
  float attn_scale = 0.f;    // softmax scale of q.k; set at load (1/sqrt(head_dim))
  float logit_softcap = 0.f;  // > 0: logits = cap * tanh(logits / cap)
  int64_t yarn_orig_ctx = 0;  // YaRN's original context (rope.scaling.original_context_length)
  // Per layer: the sliding window in tokens (0: global attention) and which RoPE it uses
  // (index into rope_sets). Empty window list: every layer global, one RoPE.
  std::vector<int32_t> window;
  std::vector<uint8_t> rope_set;
  std::vector<rope_params> rope_sets;  // >= 1 after load; [0]: the global layers'

  bool is_global(int l) const { return window.empty() || window[l] == 0; }
  // First key position that layer l attends to from a query at position pos (keys attn_first .. pos).
  int64_t attn_first(int l, int64_t pos) const {
    return is_global(l) ? 0 : pos - window[l] + 1 > 0 ? pos - window[l] + 1 : 0;
  }
  const rope_params& rope_of(int l) const { return rope_sets[rope_set.empty() ? 0 : rope_set[l]]; }
};

class model {
 public:
  // Opens and validates a GGUF model; throws hashattn::error naming what is missing or wrong.
  static std::unique_ptr<model> load(const std::string& path);
  static std::unique_ptr<model> from_gguf(std::shared_ptr<const gguf::file> f);
  ~model();
  model(const model&) = delete;
  model& operator=(const model&) = delete;

  const model_hparams& hparams() const;
  const gguf::file& file() const;
  // One line: architecture, sizes, tensor types.
  std::string describe() const;
  // Bytes of weights read by one decode step (all matrices, the output projection, one
  // embedding row); for the memory roofline.
  int64_t decode_weight_bytes() const;

  struct impl;
  const impl& internals() const { return *p_; }

 private:
  model();
  static std::unique_ptr<model> load_checked(std::shared_ptr<const gguf::file> f);
  std::unique_ptr<impl> p_;
};

// Whether the runtime runs the model of f (hashattn info): runs, else every missing piece found
// (architecture, RoPE scaling, tensor types, then the loader's refusal naming its key or tensor);
// notes on what runs differently from a dense reading of the file (sliding-window layers keep their
// window; sliding-window metadata that llama.cpp ignores; CPU-only features); the tokenizer's state.
struct model_support {
  bool runs = false;
  std::string summary;  // describe() when it runs
  std::vector<std::string> missing, notes;
  bool tokenizer_ok = false;
  std::string tokenizer;  // what it is, or why it cannot be built
};
model_support model_check(const gguf::file& f);

// Observer of the forward pass (e.g. training capture): called for every layer and every chunk
// (prefill) or token (decode) after RoPE, before attention, with fp32 activations
// q: [n, n_head, head_dim], k, v: [n, n_head_kv, head_dim] for positions pos0 .. pos0+n-1.
using forward_observer = std::function<void(int layer, const float* q, const float* k, const float* v,
                                            int64_t pos0, int64_t n)>;

struct session_params {
  int64_t n_ctx = 0;      // KV cache capacity in tokens (0: the model's training context)
  int n_threads = 0;      // 0: OpenMP default
  int64_t n_batch = 512;  // prefill chunk (tokens per batched forward)
  forward_observer observer;  // optional
  std::string backend = "cpu";  // the attention ops' backend (backend.h)
  int page_size = 16;           // tokens per KV page (a power of two): branches share the prompt's pages
};

class session {
 public:
  // policy == nullptr: dense attention.
  session(const model& m, const session_params& p, std::unique_ptr<attention_policy> policy = nullptr);
  ~session();
  session(const session&) = delete;
  session& operator=(const session&) = delete;

  // Appends n >= 1 tokens at positions n_past() .. n_past()+n-1 and runs the forward pass.
  // n == 1 takes the decode path (quantized mat-vecs, policy-driven attention); n > 1 the
  // batched prefill path. Returns the logits of the last token [n_vocab]. With all_logits, the
  // logits of every one of the n tokens are kept: logits_at(i), i < n.
  const float* eval(const int32_t* tokens, int64_t n, bool all_logits = false);
  const float* logits() const;
  const float* logits_at(int64_t i) const;

  int64_t n_past() const;
  int64_t n_ctx() const;
  int n_threads() const;
  // Tokens attended / context tokens over every decode step and layer so far (the true density of
  // the policy: sinks + window + selected; 1 for dense or while the budget is below its floor).
  double attended_density() const;
  // Forgets tokens past n (KV cache and policy state).
  void truncate(int64_t n);
  attention_policy& policy();
  kv_view kv(int layer) const;
  const model& get_model() const;

  struct impl;

 private:
  friend class branch_decoder;
  std::unique_ptr<impl> p_;
};

// Several continuations of one prompt decoded side by side (the evaluation runs every policy under
// test this way). The branches fork from the session at its current length P = n_past(): they share
// its KV cache rows 0 .. P-1, and each keeps its own K/V for the positions it appends and its own
// attention policy. All active branches advance together: step() appends one token to each, at
// position P + steps(). The linear layers run batched over the active branches (fp32 activations,
// dequantized weights, sgemm: the prefill path's code; the model keeps fp32 copies of the weights from
// the first branch decoder on, 4 bytes per parameter, shared by its sessions); attention runs per branch through
// its policy (dense when is_dense(), else select() + the sparse kernel). KV: each branch is a sequence
// of KV pages forked from the session's (session_params.page_size): the prompt's full pages are shared,
// not copied; the partly written last page is copied once; the branch's new rows go to pages of its own,
// added to the session's pool while the decoder lives and given back when it is destroyed.
// While a branch_decoder lives, the session must not be used (its policy and observer see nothing of
// the branches), and it must be destroyed before the session.
class branch_decoder {
 public:
  // policies[b] (not owned; one per branch, distinct objects) must already hold the prefix: begin()
  // and on_append() of positions 0 .. P-1, as a policy of a session that prefilled them would.
  // max_steps: tokens each branch may append (P + max_steps <= the session's context).
  branch_decoder(session& s, std::vector<attention_policy*> policies, int64_t max_steps);
  ~branch_decoder();
  branch_decoder(const branch_decoder&) = delete;
  branch_decoder& operator=(const branch_decoder&) = delete;

  int n_branches() const;
  int64_t fork_pos() const;  // P
  int64_t steps() const;     // tokens appended so far (the same for every branch that took part)
  // Appends tokens[b] to every branch b with active[b] != 0 (active == nullptr: all). A branch left
  // out of a step cannot take part in later ones (its cache would have a hole). Returns the logits
  // of the stepped branches: logits(b).
  void step(const int32_t* tokens, const uint8_t* active = nullptr);
  const float* logits(int b) const;  // [n_vocab] of branch b's last step

 private:
  struct impl;
  std::unique_ptr<impl> p_;
};

// Unrelated sequences decoded together (continuous batching, as a server runs them). Each sequence has
// its own attention policy and a page table into one KV page pool (pages of page_size tokens, taken as
// the sequence grows, given back by close()). prefill() appends a prompt (or a chunk of one) to one
// sequence through the batched prefill path; step() appends one token to each of several sequences at
// their own positions in ONE forward pass: the linear layers multiply all rows by each quantized weight
// (integer mat-vecs, each row exactly as a single decode step computes it: a sequence's logits do not
// depend on the others in its step), attention runs per sequence through its policy. fork() starts a
// sequence as the first n tokens of another: full pages shared by reference count, the partial one
// copied; the new policy is told the shared keys (read back from their fp16 rows).
// Not thread-safe: one thread drives an engine.
struct batch_params {
  int64_t n_ctx = 0;       // tokens of one sequence at most (0: the model's training context)
  int max_seqs = 8;        // sequences open at once
  int64_t n_pages = 0;     // pages of the pool (0: max_seqs full sequences)
  int page_size = 16;      // tokens per page (a power of two)
  int n_threads = 0;       // 0: OpenMP default
  int64_t n_batch = 512;   // prefill chunk
  std::string backend = "cpu";
};

class batch_engine {
 public:
  batch_engine(const model& m, const batch_params& p);
  ~batch_engine();
  batch_engine(const batch_engine&) = delete;
  batch_engine& operator=(const batch_engine&) = delete;

  // A new empty sequence with its policy (nullptr: dense); ids are never reused. Throws when max_seqs
  // sequences are open.
  int64_t open(std::unique_ptr<attention_policy> policy = nullptr);
  // A new sequence holding the first n tokens of `from` (1 <= n <= n_past(from)), with its own policy.
  int64_t fork(int64_t from, int64_t n, std::unique_ptr<attention_policy> policy = nullptr);
  // Gives the sequence's pages back. An unknown or closed id is an error.
  void close(int64_t id);
  // Appends n >= 1 tokens to one sequence (prefill path, chunks of n_batch); returns its last logits.
  const float* prefill(int64_t id, const int32_t* toks, int64_t n);
  // Appends toks[i] to sequence ids[i] for i < n (distinct open sequences) in one forward pass.
  // Checked before anything is written: ids, tokens, context, free pages.
  void step(const int64_t* ids, const int32_t* toks, int n);
  // The logits [n_vocab] of the sequence's last prefill or step.
  const float* logits(int64_t id) const;
  int64_t n_past(int64_t id) const;
  // Tokens attended / context tokens over the sequence's decode steps (1 before any).
  double attended_density(int64_t id) const;
  bool is_open(int64_t id) const;
  int n_open() const;
  int max_seqs() const;
  int64_t n_ctx() const;
  int n_threads() const;
  int64_t pages_total() const;
  int64_t pages_free() const;
  // Pages a sequence of n tokens takes (shared pages counted once in pages_free()).
  int64_t pages_for(int64_t n_tok) const;
  const model& get_model() const;

 private:
  struct impl;
  std::unique_ptr<impl> p_;
};

// Throws hashattn::error ("WHO: token id out of range") unless every id is in [0, n_vocab).
void check_token_ids(const model& m, const int32_t* toks, int64_t n, const std::string& who);

// ---- the inputs of policies, bound to a model ----
struct hash_binding;  // hash-file.h
// What ties a hash file to this model: its architecture, shape and tensor-layout digest
// (hash_binding_for of its file). The trainer writes it; hash_weights_load_for checks it.
hash_binding model_hash_binding(const model& m);
// Hash encoders from a hash file, checked against the model (architecture, shape, tensor-layout
// digest) before anything else; throws saying what differs.
std::shared_ptr<const hash_weights> hash_weights_load_for(const model& m, const std::string& path);
// Double Sparsity channels of every layer [n_layer, n_head_kv, channels], calibrated on the post-RoPE
// q and k of `tokens` (a training text, never evaluation data; >= 64 tokens).
std::vector<int32_t> double_sparsity_calibrate_model(const model& m, const std::vector<int32_t>& tokens, int channels,
                                                     int n_threads);

// Token sampling. temp <= 0: greedy (argmax, lowest id on ties). Otherwise top-k (0 = off)
// then softmax(logits / temp) then top-p (nucleus; 1 = off), renormalized, drawn with a
// seeded generator (same seed and logits: same tokens).
struct sampler_params {
  float temp = 0.f;
  int top_k = 0;
  float top_p = 1.f;
  uint64_t seed = 0;
};

class sampler {
 public:
  explicit sampler(const sampler_params& p);
  int32_t sample(const float* logits, int64_t n_vocab);
  // Probabilities of the candidates kept by the last sample() call (id, p), most likely first;
  // empty after a greedy draw. For tests and diagnostics.
  const std::vector<std::pair<int32_t, double>>& last_candidates() const { return cand_; }

 private:
  sampler_params p_;
  std::mt19937_64 rng_;
  std::vector<std::pair<int32_t, double>> cand_;
};

}  // namespace hashattn
