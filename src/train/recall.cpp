// Recall of hash selectors against exact attention (see train.h): codes of any width (learned through the
// inference encoder (the backend's encode op), or SimHash sign projections), bit-match scores over the middle
// region, top-k with ties to recent positions; the attended set (sinks + window + that top-k) and the
// oracle's (sinks + window + the middle's top-k by attention weight) are measured with metrics.h (attention-
// mass recall, top-32-in-budget overlap) against the query's exact attention. Codes: q [n_q, n_head, words], k [n_tok, n_key_enc, words] (uint64, LSB-first).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <random>
#include <sstream>

#include <fmt/core.h>

#include "hashattn/error.h"
#include "hashattn/metrics.h"
#include "hashattn/model.h"
#include "train/train-internal.h"

namespace hashattn {
using namespace train_detail;

eval_codes codes_learned(const hash_weights& w, int layer, const layer_capture& c, int n_threads) {
  if (w.n_head != c.n_head || w.n_head_kv != c.n_head_kv || w.head_dim != c.head_dim)
    fail("recall: hash weights", std::to_string(w.n_head) + "/" + std::to_string(w.n_head_kv) + " heads",
         std::to_string(c.n_head) + "/" + std::to_string(c.n_head_kv) + " heads (the captured model)");
  eval_codes out;
  out.bits = w.bits;
  out.key_per_group = w.key_per_group;
  const int G = c.n_head / c.n_head_kv, d = c.head_dim, nke = w.n_key_enc();
  const size_t cb = hash_code_bytes(w.bits);
  std::vector<uint8_t> buf((size_t)std::max<int64_t>(c.n_q() * c.n_head, c.n_tok * nke) * cb);
  hash_encode_params p;
  p.mlp = w.query(layer);
  p.x = c.q.data();
  p.n_rows = c.n_q();
  p.x_stride_row = (int64_t)c.n_head * d;
  p.x_stride_head = d;
  p.in_group = 1;
  p.codes = buf.data();
  p.code_stride_row = c.n_head;
  p.code_stride_enc = 1;
  p.n_threads = n_threads;
  out.q.resize((size_t)c.n_q() * c.n_head);
  const backend& be = backend_default();
  if (c.n_q() > 0) {
    be.call_encode(p);
    for (size_t i = 0; i < out.q.size(); i++) out.q[i] = code_get(buf.data(), w.bits, (int64_t)i);
  }
  p.mlp = w.key(layer);
  p.x = c.k.data();
  p.n_rows = c.n_tok;
  p.x_stride_row = (int64_t)c.n_head_kv * d;
  p.in_group = w.key_per_group ? 1 : G;
  p.code_stride_row = nke;
  be.call_encode(p);
  out.k.resize((size_t)c.n_tok * nke);
  for (size_t i = 0; i < out.k.size(); i++) out.k[i] = code_get(buf.data(), w.bits, (int64_t)i);
  return out;
}

eval_codes codes_simhash(const layer_capture& c, int bits, uint64_t seed) {
  if (bits <= 0 || bits > 4096) fail("simhash: bits", std::to_string(bits), "1 .. 4096");
  eval_codes out;
  out.bits = bits;
  out.key_per_group = true;
  const int W = out.words(), d = c.head_dim, G = c.n_head / c.n_head_kv;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> R((size_t)c.n_head_kv * bits * d);  // [n_head_kv, bits, d]
  for (float& x : R) x = nd(rng);
  auto code = [&](const float* x, int hk, uint64_t* dst) {
    std::fill(dst, dst + W, 0);
    for (int j = 0; j < bits; j++) {
      const float* r = R.data() + ((size_t)hk * bits + j) * d;
      double s = 0;
      for (int i = 0; i < d; i++) s += (double)x[i] * r[i];
      if (s > 0) dst[j / 64] |= uint64_t(1) << (j % 64);
    }
  };
  out.q.resize((size_t)c.n_q() * c.n_head * W);
  for (int64_t i = 0; i < c.n_q(); i++)
    for (int h = 0; h < c.n_head; h++)
      code(c.q.data() + ((size_t)i * c.n_head + h) * d, h / G, out.q.data() + ((size_t)i * c.n_head + h) * W);
  out.k.resize((size_t)c.n_tok * c.n_head_kv * W);
  for (int64_t t = 0; t < c.n_tok; t++)
    for (int hk = 0; hk < c.n_head_kv; hk++)
      code(c.k.data() + ((size_t)t * c.n_head_kv + hk) * d, hk,
           out.k.data() + ((size_t)t * c.n_head_kv + hk) * W);
  return out;
}

recall_stats eval_recall(const layer_capture& c, const eval_codes& codes, const label_params& p, gqa_mode mode,
                         const std::vector<int>& units) {
  const int G = c.n_head / c.n_head_kv, W = codes.words();
  const int64_t nq = c.n_q(), n = c.n_tok;
  const int n_units = mode == gqa_mode::per_head ? c.n_head : c.n_head_kv;
  const int nke = codes.key_per_group ? c.n_head_kv : c.n_head;
  HASHATTN_ASSERT((int64_t)codes.q.size() == nq * c.n_head * W && (int64_t)codes.k.size() == n * nke * W);
  std::vector<int> us = units;
  if (us.empty())
    for (int u = 0; u < n_units; u++) us.push_back(u);
  recall_stats st;
  std::vector<double> score(n), oval(n);
  std::vector<std::vector<double>> probs(G);
  std::vector<int32_t> sel, orc, att;
  // The attended set of a query at position pos: sinks [0, lo), the chosen middle, window [hi, pos].
  auto attended = [&](const middle_range& r, int64_t pos, const std::vector<int32_t>& mid) {
    att.clear();
    for (int64_t t = 0; t < r.lo; t++) att.push_back((int32_t)t);
    att.insert(att.end(), mid.begin(), mid.end());
    for (int64_t t = r.hi; t <= pos; t++) att.push_back((int32_t)t);
    return att;
  };
  auto recall_of = [&](const double* pr, int64_t pos, const std::vector<int32_t>& a) {
    attention_recall_params rp;
    rp.prob = pr;
    rp.n = pos + 1;
    rp.attended = a.data();
    rp.n_attended = (int64_t)a.size();
    return attention_recall_of(rp);
  };
  for (int u : us) {
    HASHATTN_ASSERT(u >= 0 && u < n_units);
    const int h0 = mode == gqa_mode::per_head ? u : u * G;
    const int nh = mode == gqa_mode::per_head ? 1 : G;
    for (int g = 0; g < nh; g++) head_probs(c, h0 + g, probs[g]);
    for (int64_t i = 0; i < nq; i++) {
      const middle_range r = label_middle(p, c.qpos[i]);
      if (r.k <= 0) continue;
      for (int64_t t = r.lo; t < r.hi; t++) {
        double s = 0, o = 0;
        for (int g = 0; g < nh; g++) {
          const int h = h0 + g;
          const int e = codes.key_per_group ? h / G : h;
          const uint64_t* qc = codes.q.data() + ((size_t)i * c.n_head + h) * W;
          const uint64_t* kc = codes.k.data() + ((size_t)t * nke + e) * W;
          int pc = 0;
          for (int w = 0; w < W; w++) pc += __builtin_popcountll(qc[w] ^ kc[w]);
          s += codes.bits - pc;
          o += probs[g][i * n + t];
        }
        score[t] = s;
        oval[t] = o;
      }
      top_k_desc(score.data(), r.lo, r.hi, r.k, sel);
      top_k_desc(oval.data(), r.lo, r.hi, r.k, orc);
      for (int g = 0; g < nh; g++) {
        const double* pr = probs[g].data() + i * n;
        const attention_recall a = recall_of(pr, c.qpos[i], attended(r, c.qpos[i], sel));
        const attention_recall o = recall_of(pr, c.qpos[i], attended(r, c.qpos[i], orc));
        st.top_overlap += a.top_overlap;
        st.mass_recall += a.mass;
        st.oracle_overlap += o.top_overlap;
        st.oracle_mass += o.mass;
        st.n++;
      }
    }
  }
  if (st.n > 0) {
    const double n_pairs = (double)st.n;
    st.top_overlap /= n_pairs, st.mass_recall /= n_pairs, st.oracle_overlap /= n_pairs, st.oracle_mass /= n_pairs;
  }
  return st;
}

std::vector<recall_row> eval_recall_texts(const model& m, const std::vector<train_text>& texts,
                                          const hash_weights* learned, const recall_eval_params& p) {
  const model_hparams& hp = m.hparams();
  std::vector<int> layers = p.layers;
  if (layers.empty())
    for (int l = 0; l < hp.n_layer; l++) layers.push_back(l);
  if (p.ctx < 64) fail("recall eval: context", std::to_string(p.ctx), ">= 64 tokens");
  if (p.queries_per_window < 1) fail("recall eval: queries per window", std::to_string(p.queries_per_window), ">= 1");
  if (learned && (learned->n_layer != hp.n_layer || learned->n_head != hp.n_head ||
                  learned->n_head_kv != hp.n_head_kv || learned->head_dim != hp.head_dim))
    fail("recall eval: hash weights", "another shape", "the model's layers and heads");
  if (learned && learned->key_per_group && p.gqa == gqa_mode::per_head)
    fail("recall eval: GQA mode", "head", "group for key encoders per KV head",
         "these weights were trained with --gqa-mode group");
  for (double d : p.densities)
    if (!(d > 0 && d <= 1)) fail("recall eval: density", std::to_string(d), "in (0, 1]");
  window_capture cap(m, p.ctx, layers, p.n_threads);
  std::vector<recall_row> rows;
  // Accumulate per (text, method, density, layer) over windows, weighting by the (query, list) count.
  std::map<std::tuple<std::string, std::string, double, int>, std::pair<recall_stats, int64_t>> acc;
  std::vector<std::tuple<std::string, std::string, double, int>> order;
  for (size_t ti = 0; ti < texts.size(); ti++) {
    std::vector<train_text> one = {texts[ti]};
    std::vector<token_window> wins = text_windows(one, p.ctx);
    if (wins.empty())
      fail("recall eval: text " + texts[ti].name, std::to_string(texts[ti].tokens.size()) + " tokens",
           "at least " + std::to_string(p.ctx) + " (the context)");
    // Spread the windows over the text, deterministically.
    const int nw = std::min<int>(p.windows_per_text, (int)wins.size());
    for (int wi = 0; wi < nw; wi++) {
      const token_window& w = wins[(size_t)wi * wins.size() / nw];
      const auto qpos = sample_positions(p.seed * 1000003 + ti * 7919 + wi, p.ctx / 4, p.ctx, p.queries_per_window);
      const auto t0 = std::chrono::steady_clock::now();
      cap.run(texts[ti].tokens.data() + w.start, p.ctx, qpos);
      if (p.on_progress)
        p.on_progress(fmt::format("eval {}: window {}/{} prefilled in {:.1f} s", texts[ti].name, wi + 1, nw,
                                  std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()));
      layer_capture c;
      for (int l : layers) {
        cap.get(l, c);
        std::vector<std::pair<std::string, eval_codes>> methods;
        if (learned) methods.emplace_back("learned-" + std::to_string(learned->bits), codes_learned(*learned, l, c, p.n_threads));
        for (int b : p.simhash_bits)
          methods.emplace_back("simhash-" + std::to_string(b), codes_simhash(c, b, p.seed * 7777 + (uint64_t)l * 131 + b));
        for (double dens : p.densities) {
          label_params lp;
          lp.density = dens;
          lp.sinks = p.sinks;
          lp.window = p.window;
          recall_stats oracle_st;
          bool have_oracle = false;
          for (auto& [name, codes] : methods) {
            const recall_stats st = eval_recall(c, codes, lp, p.gqa);
            auto key = std::make_tuple(texts[ti].name, name, dens, l);
            if (!acc.count(key)) order.push_back(key);
            auto& a = acc[key];
            a.first.top_overlap += st.top_overlap * st.n;
            a.first.mass_recall += st.mass_recall * st.n;
            a.first.oracle_overlap += st.oracle_overlap * st.n;
            a.first.oracle_mass += st.oracle_mass * st.n;
            a.first.n += st.n;
            oracle_st = st;
            have_oracle = true;
          }
          if (have_oracle) {
            auto key = std::make_tuple(texts[ti].name, std::string("oracle"), dens, l);
            if (!acc.count(key)) order.push_back(key);
            auto& a = acc[key];
            a.first.top_overlap += oracle_st.oracle_overlap * oracle_st.n;
            a.first.mass_recall += oracle_st.oracle_mass * oracle_st.n;
            a.first.oracle_overlap += oracle_st.oracle_overlap * oracle_st.n;
            a.first.oracle_mass += oracle_st.oracle_mass * oracle_st.n;
            a.first.n += oracle_st.n;
          }
        }
      }
    }
  }
  for (const auto& key : order) {
    const recall_stats& s = acc[key].first;
    recall_row r;
    r.text = std::get<0>(key);
    r.method = std::get<1>(key);
    r.density = std::get<2>(key);
    r.layer = std::get<3>(key);
    r.stats.n = s.n;
    if (s.n > 0) {
      r.stats.top_overlap = s.top_overlap / s.n;
      r.stats.mass_recall = s.mass_recall / s.n;
      r.stats.oracle_overlap = s.oracle_overlap / s.n;
      r.stats.oracle_mass = s.oracle_mass / s.n;
    }
    rows.push_back(r);
  }
  return rows;
}

namespace {
std::string density_str(double d) {
  const double inv = 1.0 / d;
  if (std::fabs(inv - std::round(inv)) < 1e-9) return "1/" + std::to_string((int64_t)std::round(inv));
  return fmt::format("{:.4g}", d);
}
}  // namespace

std::string recall_markdown(const std::vector<recall_row>& rows) {
  // Columns: method x density; one table per measure (top-k recall, mass recall); rows = layers, then the
  // mean over layers; texts pooled (mean weighted by measured pairs).
  std::vector<std::string> methods;
  std::vector<double> dens;
  std::vector<int> layers;
  std::vector<std::string> texts;
  for (const recall_row& r : rows) {
    if (std::find(methods.begin(), methods.end(), r.method) == methods.end()) methods.push_back(r.method);
    if (std::find(dens.begin(), dens.end(), r.density) == dens.end()) dens.push_back(r.density);
    if (std::find(layers.begin(), layers.end(), r.layer) == layers.end()) layers.push_back(r.layer);
    if (std::find(texts.begin(), texts.end(), r.text) == texts.end()) texts.push_back(r.text);
  }
  std::sort(layers.begin(), layers.end());
  auto cell = [&](const std::string& m, double d, int layer, bool mass) {
    double s = 0;
    int64_t n = 0;
    for (const recall_row& r : rows)
      if (r.method == m && r.density == d && (layer < 0 || r.layer == layer)) {
        s += (mass ? r.stats.mass_recall : r.stats.top_overlap) * r.stats.n;
        n += r.stats.n;
      }
    return n ? s / n : 0.0;
  };
  std::ostringstream o;
  std::string tx;
  for (size_t i = 0; i < texts.size(); i++) tx += (i ? ", " : "") + texts[i];
  for (int mass = 0; mass < 2; mass++) {
    o << "\n"
      << (mass ? "Attention-mass recall" : "Top-32-in-budget overlap")
      << " of the attended set (sinks + window + selected middle; metrics.h) (texts: " << tx << ")\n\n| layer |";
    for (double d : dens)
      for (const auto& m : methods)
        o << " " << m << " " << density_str(d) << " |";
    o << "\n|---|";
    for (size_t c = 0; c < dens.size() * methods.size(); c++) o << "---|";
    o << "\n";
    for (int pass = 0; pass < 2; pass++) {
      const std::vector<int> ls = pass == 0 ? layers : std::vector<int>{-1};
      for (int l : ls) {
        o << "| " << (l < 0 ? std::string("**mean**") : std::to_string(l)) << " |";
        for (double d : dens)
          for (const auto& m : methods)
            o << fmt::format(" {:.3f} |", cell(m, d, l, mass != 0));
        o << "\n";
      }
    }
  }
  return o.str();
}

}  // namespace hashattn
