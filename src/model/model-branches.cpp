// branch_decoder (model.h): several continuations of one prefix, decoded side by side.
// Per step, over the B active branches (all at position pos = P + steps()), in the session's prefill
// scratch (the session is idle while branches live): the multi-sequence decode step decode_rows
// (model-decode-rows.cpp) with the model's fp32 weight copies and sgemm.
// KV: each branch is a sequence forked from the session's (kv-pages.h): the prompt's full pages are
// shared (reference counts), the partly written last page is copied once, and the branch appends into
// pages of its own, added to the session's pool while the decoder lives. No row is copied per step.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/model-ops.h"
#include "hashattn/error.h"
#include "model/session-impl.h"

namespace hashattn {

struct branch_decoder::impl {
  session::impl* s = nullptr;
  std::vector<attention_policy*> pol;
  int64_t fork = 0, max_steps = 0, steps = 0;
  std::vector<uint8_t> alive;                        // [B]: took part in every step so far
  int64_t pool_pages = 0;                            // the pool's size before the branches' pages
  std::vector<kv_seq> seqs;                          // [B] the branches' sequences
  std::vector<int> rows;                             // active branch of each batch row
  std::vector<int32_t> row_toks;                     // their tokens
  std::vector<seq_row> srows;                        // the active rows' sequences
  std::vector<float> row_logits;                     // logits of the active rows
  std::vector<float> logits;                         // [B, n_vocab]
  index_lists lists;
};

branch_decoder::branch_decoder(session& s, std::vector<attention_policy*> policies, int64_t max_steps)
    : p_(std::make_unique<impl>()) {
  impl& b = *p_;
  b.s = s.p_.get();
  const session::impl& S = *b.s;
  if (policies.empty()) fail("branch decoder: no branches", "0 policies", ">= 1");
  for (size_t i = 0; i < policies.size(); ++i) {
    if (!policies[i]) fail("branch decoder: branch " + std::to_string(i) + " has no policy");
    for (size_t j = 0; j < i; ++j)
      if (policies[j] == policies[i])
        fail("branch decoder: branches " + std::to_string(j) + " and " + std::to_string(i) +
             " share one policy object (each branch needs its own state)");
  }
  if (max_steps < 1) fail("branch decoder: steps per branch", std::to_string(max_steps), ">= 1");
  if (S.n_past < 1) fail("branch decoder: nothing to fork from", "an empty session", "prefill a prompt first");
  if (S.n_past + max_steps > S.n_ctx)
    fail("branch decoder: context full", std::to_string(S.n_past) + " + " + std::to_string(max_steps) + " tokens",
         "at most " + std::to_string(S.n_ctx), "use a larger context or fewer steps");
  b.pol = std::move(policies);
  b.fork = S.n_past;
  b.max_steps = max_steps;
  const size_t B = b.pol.size();
  b.alive.assign(B, 1);
  // Pages of one branch: its copy of the partial prompt page and the pages of its new rows.
  kv_pages& pool = *b.s->pool;
  const int ps = pool.page_size();
  const int64_t per_branch = (b.fork + max_steps + ps - 1) / ps - b.fork / ps;
  b.pool_pages = pool.n_pages();
  pool.grow((int64_t)B * per_branch);
  b.s->seq->set_length(b.fork);
  b.seqs.reserve(B);
  for (size_t i = 0; i < B; ++i) {
    b.seqs.push_back(b.s->seq->fork());
    b.seqs.back().reserve(b.fork + max_steps);
  }
  b.logits.assign(B * (size_t)S.hp.n_vocab, 0.f);
}

branch_decoder::~branch_decoder() {
  impl& b = *p_;
  for (kv_seq& q : b.seqs) q.release();
  b.s->pool->shrink(b.pool_pages);  // the session's own pages stay as they were
}

int branch_decoder::n_branches() const { return (int)p_->pol.size(); }
int64_t branch_decoder::fork_pos() const { return p_->fork; }
int64_t branch_decoder::steps() const { return p_->steps; }

const float* branch_decoder::logits(int b) const {
  if (b < 0 || b >= n_branches())
    fail("branch decoder: branch", std::to_string(b), "0 .. " + std::to_string(n_branches() - 1));
  if (p_->steps == 0) fail("branch decoder: no logits yet", {}, {}, "call step() first");
  return p_->logits.data() + (size_t)b * p_->s->hp.n_vocab;
}

void branch_decoder::step(const int32_t* tokens, const uint8_t* active) {
  impl& b = *p_;
  session::impl& S = *b.s;
  const model_hparams& hp = S.hp;
  if (!tokens) fail("branch decoder: step without tokens");
  if (b.steps >= b.max_steps)
    fail("branch decoder: steps", std::to_string(b.steps + 1), "at most " + std::to_string(b.max_steps));
  b.rows.clear();
  for (int i = 0; i < n_branches(); ++i) {
    if (active && !active[i]) continue;
    if (!b.alive[i])
      fail("branch decoder: branch " + std::to_string(i) + " was left out of an earlier step and cannot resume");
    check_token_ids(*S.m, &tokens[i], 1, "branch decoder");
    b.rows.push_back(i);
  }
  const int64_t n = (int64_t)b.rows.size();
  if (n == 0) fail("branch decoder: step with no active branch");
  if (active)
    for (int i = 0; i < n_branches(); ++i)
      if (!active[i]) b.alive[i] = 0;
  const int64_t t = b.steps, pos = b.fork + t;
  b.row_toks.clear();
  for (int br : b.rows) b.row_toks.push_back(tokens[br]);
  b.srows.clear();
  for (int br : b.rows) b.srows.push_back(seq_row{&b.seqs[br], b.pol[br], pos});
  b.row_logits.resize((size_t)n * hp.n_vocab);
  S.decode_rows(b.srows.data(), b.row_toks.data(), n, b.row_logits.data(), wpath::f32);
  for (int64_t r = 0; r < n; ++r)
    std::memcpy(b.logits.data() + (size_t)b.rows[r] * hp.n_vocab, b.row_logits.data() + (size_t)r * hp.n_vocab,
                (size_t)hp.n_vocab * sizeof(float));
  ++b.steps;
}

}  // namespace hashattn
