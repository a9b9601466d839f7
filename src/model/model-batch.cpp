// batch_engine (model.h): unrelated sequences in one KV page pool, decoded together.
// The engine owns a forward context (session::impl without a sequence of its own: weights, scratch,
// backend) and the pool; each sequence is a kv_seq (page table + length), an attention policy and its
// last logits. prefill() runs the session's prefill path on one sequence (prefill_seq); step() runs
// the multi-sequence decode step (decode_rows) on integer mat-vecs, in groups of at most
// kStepRows rows. Every precondition is checked before a row is written, so a refused call leaves
// every sequence as it was.
#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <string>

#include "cpu/model-ops.h"
#include "hashattn/error.h"
#include "model/session-impl.h"

namespace hashattn {

namespace {
std::string str(int64_t v) { return std::to_string(v); }
}  // namespace

struct batch_engine::impl {
  session::impl fw;  // forward context and pool (fw.seq, fw.policy unused)
  int max_seqs = 0;
  struct sequence {
    std::optional<kv_seq> kv;
    std::unique_ptr<attention_policy> pol;
    int64_t n_past = 0;
    double attended = 0, context = 0;
    std::vector<float> logits;
    bool has_logits = false;
  };
  std::map<int64_t, sequence> seqs;
  int64_t next_id = 0;
  std::vector<seq_row> rows;
  std::vector<float> out, kf;

  sequence& get(int64_t id, const char* who) {
    auto it = seqs.find(id);
    if (it == seqs.end())
      fail(std::string("batch engine: ") + who + ": sequence " + str(id),
           id >= 0 && id < next_id ? "closed" : "unknown", "an open sequence");
    return it->second;
  }
  const sequence& get(int64_t id, const char* who) const { return const_cast<impl*>(this)->get(id, who); }
  int64_t add(std::unique_ptr<attention_policy> pol, kv_seq kv) {
    if ((int)seqs.size() >= max_seqs)
      fail("batch engine: open a sequence", str((int64_t)seqs.size()) + " open",
           "at most " + str(max_seqs) + " (batch_params.max_seqs)", "close one first");
    sequence s;
    s.kv.emplace(std::move(kv));
    s.pol = pol ? std::move(pol) : make_dense_policy();
    s.pol->begin(fw.hp.n_layer, layer_shape{fw.hp.n_head, fw.hp.n_head_kv, fw.hp.head_dim}, fw.n_ctx);
    s.logits.assign(fw.hp.n_vocab, 0.f);
    const int64_t id = next_id++;
    seqs.emplace(id, std::move(s));
    return id;
  }
  // New pages a sequence needs to hold n tokens.
  int64_t new_pages(const sequence& s, int64_t n) const {
    return std::max<int64_t>(0, (n - s.kv->capacity() + fw.pool->page_size() - 1) / fw.pool->page_size());
  }
};

batch_engine::batch_engine(const model& m, const batch_params& p) : p_(std::make_unique<impl>()) {
  impl& e = *p_;
  if (p.max_seqs < 1) fail("batch engine: sequences", str(p.max_seqs), ">= 1");
  if (p.n_pages < 0) fail("batch engine: pages", str(p.n_pages), ">= 0 (0: max_seqs full sequences)");
  const int64_t ctx = p.n_ctx > 0 ? p.n_ctx : m.hparams().n_ctx_train;
  const int64_t per_seq = p.page_size > 0 ? (ctx + p.page_size - 1) / p.page_size : 0;
  const int64_t n_pages = p.n_pages > 0 ? p.n_pages : per_seq * p.max_seqs;
  e.fw.init(m, "batch engine", p.n_ctx, p.n_threads, p.backend, p.n_batch, p.page_size, n_pages * p.page_size);
  e.max_seqs = p.max_seqs;
}

batch_engine::~batch_engine() = default;

int64_t batch_engine::open(std::unique_ptr<attention_policy> policy) {
  return p_->add(std::move(policy), kv_seq(*p_->fw.pool));
}

int64_t batch_engine::fork(int64_t from, int64_t n, std::unique_ptr<attention_policy> policy) {
  impl& e = *p_;
  const impl::sequence& src = e.get(from, "fork");
  if (n < 1 || n > src.n_past) fail("batch engine: fork of sequence " + str(from), str(n) + " tokens",
                                    "1 .. " + str(src.n_past));
  const int ps = e.fw.pool->page_size();
  if (n % ps != 0 && e.fw.pool->n_free() < 1)
    fail("batch engine: fork: the KV pool is full", "0 free pages", "1 (the partly written page is copied)");
  const int64_t id = e.add(std::move(policy), src.kv->fork(n));
  impl::sequence& s = e.seqs.at(id);
  s.n_past = n;
  // The new policy is told the shared keys, read back from their fp16 rows.
  const int kvd = e.fw.kv_dim;
  e.kf.resize((size_t)n * kvd);
  for (int l = 0; l < e.fw.hp.n_layer; ++l) {
    for (int64_t t = 0; t < n; ++t) cpu::f16_to_f32_row(s.kv->k_row(l, t), e.kf.data() + t * kvd, kvd);
    s.pol->on_append(l, e.kf.data(), 0, n);
  }
  return id;
}

void batch_engine::close(int64_t id) {
  impl& e = *p_;
  e.get(id, "close").kv->release();
  e.seqs.erase(id);
}

const float* batch_engine::prefill(int64_t id, const int32_t* toks, int64_t n) {
  impl& e = *p_;
  impl::sequence& s = e.get(id, "prefill");
  if (n < 1 || !toks) fail("batch engine: prefill of an empty token list", str(n), ">= 1 token");
  if (s.n_past + n > e.fw.n_ctx)
    fail("batch engine: context full", str(s.n_past) + " + " + str(n) + " tokens", "at most " + str(e.fw.n_ctx));
  check_token_ids(*e.fw.m, toks, n, "batch engine");
  const int64_t need = e.new_pages(s, s.n_past + n);
  if (need > e.fw.pool->n_free())
    fail("batch engine: the KV pool is full", str(need) + " pages needed", str(e.fw.pool->n_free()) + " free");
  s.kv->reserve(s.n_past + n);
  for (int64_t c = 0; c < n; c += e.fw.n_batch) {
    const int64_t m = std::min(e.fw.n_batch, n - c);
    e.fw.prefill_seq(*s.kv, *s.pol, s.n_past, toks + c, m, s.logits.data(), false);
    s.n_past += m;
  }
  s.has_logits = true;
  return s.logits.data();
}

void batch_engine::step(const int64_t* ids, const int32_t* toks, int n) {
  impl& e = *p_;
  if (n < 1 || !ids || !toks) fail("batch engine: step with no sequence", str(n), ">= 1");
  int64_t need = 0;
  for (int i = 0; i < n; ++i) {
    const impl::sequence& s = e.get(ids[i], "step");
    for (int j = 0; j < i; ++j)
      if (ids[j] == ids[i]) fail("batch engine: step: sequence " + str(ids[i]) + " given twice");
    if (s.n_past + 1 > e.fw.n_ctx)
      fail("batch engine: context full for sequence " + str(ids[i]), str(s.n_past) + " + 1 tokens",
           "at most " + str(e.fw.n_ctx));
    need += e.new_pages(s, s.n_past + 1);
  }
  check_token_ids(*e.fw.m, toks, n, "batch engine");
  if (need > e.fw.pool->n_free())
    fail("batch engine: the KV pool is full", str(need) + " pages needed", str(e.fw.pool->n_free()) + " free");
  const int64_t V = e.fw.hp.n_vocab;
  for (int c = 0; c < n; c += kStepRows) {
    const int m = std::min(kStepRows, n - c);
    e.rows.clear();
    for (int i = c; i < c + m; ++i) {
      impl::sequence& s = e.seqs.at(ids[i]);
      s.kv->reserve(s.n_past + 1);
      e.rows.push_back(seq_row{&*s.kv, s.pol.get(), s.n_past, &s.attended, &s.context});
    }
    e.out.resize((size_t)m * V);
    e.fw.decode_rows(e.rows.data(), toks + c, m, e.out.data(), wpath::quant);
    for (int i = c; i < c + m; ++i) {
      impl::sequence& s = e.seqs.at(ids[i]);
      std::memcpy(s.logits.data(), e.out.data() + (size_t)(i - c) * V, (size_t)V * sizeof(float));
      s.has_logits = true;
      ++s.n_past;
    }
  }
}

const float* batch_engine::logits(int64_t id) const {
  const impl::sequence& s = p_->get(id, "logits");
  if (!s.has_logits) fail("batch engine: no logits yet for sequence " + str(id), {}, {}, "prefill or step first");
  return s.logits.data();
}

int64_t batch_engine::n_past(int64_t id) const { return p_->get(id, "n_past").n_past; }
double batch_engine::attended_density(int64_t id) const {
  const impl::sequence& s = p_->get(id, "density");
  return s.context > 0 ? s.attended / s.context : 1.0;
}
bool batch_engine::is_open(int64_t id) const { return p_->seqs.count(id) != 0; }
int batch_engine::n_open() const { return (int)p_->seqs.size(); }
int batch_engine::max_seqs() const { return p_->max_seqs; }
int64_t batch_engine::n_ctx() const { return p_->fw.n_ctx; }
int batch_engine::n_threads() const { return p_->fw.nt; }
int64_t batch_engine::pages_total() const { return p_->fw.pool->n_pages(); }
int64_t batch_engine::pages_free() const { return p_->fw.pool->n_free(); }
int64_t batch_engine::pages_for(int64_t n_tok) const {
  const int ps = p_->fw.pool->page_size();
  return (std::max<int64_t>(0, n_tok) + ps - 1) / ps;
}
const model& batch_engine::get_model() const { return *p_->fw.m; }

}  // namespace hashattn
