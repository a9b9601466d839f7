// Report writers for evaluation records: JSON (one object per record, plus a meta object), JSON
// reader (to merge runs and re-render), Markdown tables (one per task, context and metric: rows =
// policy/GQA mode, columns = densities, each value with its 95% interval; dense is the reference row),
// KV-read tables, the cross-task average of the string-match scores, and the one results writer.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "eval/eval-math.h"
#include "hashattn/error.h"
#include "hashattn/eval.h"
#include "hashattn/metrics.h"

namespace hashattn {

namespace {

std::string num(double v, int prec) {
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(prec);
  s << v;
  return s.str();
}

bool label_less(const eval_record& a, const eval_record& b) {
  int ra = policy_method_rank(a.method), rb = policy_method_rank(b.method);
  if (ra != rb) return ra < rb;
  if (a.method != b.method) return a.method < b.method;
  return a.gqa < b.gqa;
}

int task_rank(const std::string& t) {
  static const std::vector<std::string> order = {"ppl",
                                                 "passkey",
                                                 "passkey_noise",
                                                 "niah_single_noise",
                                                 "niah_single_essay",
                                                 "niah_multikey",
                                                 "niah_multivalue",
                                                 "niah_multiquery",
                                                 "vt",
                                                 "cwe",
                                                 "average",
                                                 "recall"};
  auto it = std::find(order.begin(), order.end(), t);
  return it == order.end() ? (int)order.size() : (int)(it - order.begin());
}

}  // namespace

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t a = item.find_first_not_of(" \t"), b = item.find_last_not_of(" \t");
    if (a != std::string::npos) out.push_back(item.substr(a, b - a + 1));
  }
  return out;
}

std::vector<double> parse_density_list(const std::string& s) {
  std::vector<double> out;
  for (const auto& item : split_list(s)) out.push_back(policy_density_parse(item));
  if (out.empty()) fail("--density", "'" + s + "'", "at least one density, e.g. 1/16,1/32");
  return out;
}

std::string eval_records_json(const std::vector<eval_record>& recs, const std::string& meta_json) {
  nlohmann::ordered_json j;
  j["meta"] = meta_json.empty() ? nlohmann::ordered_json::object() : nlohmann::ordered_json::parse(meta_json);
  j["records"] = nlohmann::ordered_json::array();
  for (const auto& r : recs) {
    nlohmann::ordered_json o;
    o["task"] = r.task;
    o["policy"] = r.method;
    o["gqa_mode"] = r.gqa;
    o["density"] = r.density;
    o["density_name"] = policy_density_name(r.density);
    o["context"] = r.context;
    o["samples"] = r.samples;
    o["first_sample"] = r.first_sample;
    o["metric"] = r.metric;
    o["value"] = r.value;
    o["stderr"] = r.stderr_;
    if (r.ci.valid()) o["ci95"] = {r.ci.lo, r.ci.hi};
    o["attended_frac"] = r.attended_frac;
    o["kv_read_frac"] = r.kv_read_frac;
    o["kv_read_bytes_per_step"] = r.kv_read_bytes;
    o["select_read_bytes_per_step"] = r.select_read_bytes;
    o["total_read_frac"] = r.total_read_frac;
    o["prompt_tokens"] = r.prompt_tokens;
    o["seconds"] = r.seconds;
    o["decode_tok_s"] = r.decode_tok_s;
    if (r.top_overlap >= 0) o[metric_top_overlap] = r.top_overlap;
    if (r.mass_recall >= 0) o["mass_recall"] = r.mass_recall;
    if (!r.detail.empty()) o["detail"] = nlohmann::ordered_json::parse(r.detail);
    j["records"].push_back(o);
  }
  return j.dump(1) + "\n";
}

std::vector<eval_record> eval_records_from_json(const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    fail(std::string("eval: results JSON does not parse: ") + e.what());
  }
  if (!j.is_object() || !j.contains("records") || !j["records"].is_array())
    fail("eval: results JSON: expected an object with a \"records\" array");
  std::vector<eval_record> out;
  for (const auto& o : j["records"]) {
    eval_record r;
    try {
      r.task = o.at("task").get<std::string>();
      r.method = o.at("policy").get<std::string>();
      r.gqa = o.value("gqa_mode", std::string());
      r.density = o.at("density").get<double>();
      r.context = o.at("context").get<int64_t>();
      r.samples = o.at("samples").get<int>();
      r.first_sample = o.value("first_sample", 0);
      r.metric = o.at("metric").get<std::string>();
      r.value = o.at("value").get<double>();
      r.stderr_ = o.value("stderr", 0.0);
      if (o.contains("ci95")) {
        const auto& c = o.at("ci95");
        if (!c.is_array() || c.size() != 2) fail("eval: results JSON: ci95 must be [lo, hi]");
        r.ci = {c[0].get<double>(), c[1].get<double>()};
      }
      r.attended_frac = o.value("attended_frac", 0.0);
      r.kv_read_frac = o.value("kv_read_frac", 0.0);
      r.kv_read_bytes = o.value("kv_read_bytes_per_step", 0.0);
      r.select_read_bytes = o.value("select_read_bytes_per_step", 0.0);
      r.total_read_frac = o.value("total_read_frac", 0.0);
      r.prompt_tokens = o.value("prompt_tokens", 0.0);
      r.seconds = o.value("seconds", 0.0);
      r.decode_tok_s = o.value("decode_tok_s", 0.0);
      r.top_overlap = o.value(metric_top_overlap, -1.0);  // (older files' "topk_recall" had another definition)
      r.mass_recall = o.value("mass_recall", -1.0);
      if (o.contains("detail")) r.detail = o["detail"].dump();
    } catch (const std::exception& e) {
      fail(std::string("eval: results JSON: a record lacks a field or has a wrong type: ") + e.what());
    }
    out.push_back(std::move(r));
  }
  return out;
}

namespace {

// b pooled into a (disjoint samples); see eval_records_merge.
void pool_into(eval_record& a, const eval_record& b) {
  const double na = a.samples, nb = b.samples, n = na + nb;
  if (nb <= 0) return;
  if (na <= 0) {
    a = b;
    return;
  }
  auto wmean = [&](double x, double y) { return (na * x + nb * y) / n; };
  // Mean of the values that were measured (< 0 or 0 mark "not measured" for these fields).
  auto wmean_valid = [&](double x, double y, double invalid_below) {
    const bool vx = x > invalid_below, vy = y > invalid_below;
    return vx && vy ? wmean(x, y) : vx ? x : y;
  };
  // Pooled mean and exact pooled standard error (ppl: of the log-perplexity, equal positions per window).
  const bool log_space = a.metric == "ppl";
  const double xa = log_space ? std::log(a.value) : a.value, xb = log_space ? std::log(b.value) : b.value;
  const double m = wmean(xa, xb);
  const double ss = a.stderr_ * a.stderr_ * na * (na - 1) + b.stderr_ * b.stderr_ * nb * (nb - 1) +
                    na * (xa - m) * (xa - m) + nb * (xb - m) * (xb - m);
  a.value = log_space ? std::exp(m) : m;
  a.stderr_ = n > 1 ? std::sqrt(ss / (n - 1) / n) : 0;
  a.attended_frac = wmean(a.attended_frac, b.attended_frac);
  a.kv_read_frac = wmean(a.kv_read_frac, b.kv_read_frac);
  a.kv_read_bytes = wmean(a.kv_read_bytes, b.kv_read_bytes);
  a.select_read_bytes = wmean(a.select_read_bytes, b.select_read_bytes);
  a.total_read_frac = wmean(a.total_read_frac, b.total_read_frac);
  a.prompt_tokens = wmean(a.prompt_tokens, b.prompt_tokens);
  a.decode_tok_s = wmean_valid(a.decode_tok_s, b.decode_tok_s, 0);
  a.top_overlap = wmean_valid(a.top_overlap, b.top_overlap, -0.5);
  a.mass_recall = wmean_valid(a.mass_recall, b.mass_recall, -0.5);
  a.seconds += b.seconds;
  if (!a.detail.empty() && !b.detail.empty()) {  // per-layer/head recall arrays
    nlohmann::json ja = nlohmann::json::parse(a.detail), jb = nlohmann::json::parse(b.detail);
    for (const char* key : {metric_top_overlap, metric_mass_recall})
      if (ja.contains(key) && jb.contains(key) && ja[key].size() == jb[key].size())
        for (size_t i = 0; i < ja[key].size(); ++i)
          ja[key][i] = wmean(ja[key][i].get<double>(), jb[key][i].get<double>());
    a.detail = ja.dump();
  } else if (a.detail.empty()) {
    a.detail = b.detail;
  }
  a.first_sample = std::min(a.first_sample, b.first_sample);
  a.samples = (int)n;
  a.ci = eval_interval(a.metric, a.value, a.stderr_, a.samples);
}

}  // namespace

std::vector<eval_record> eval_records_merge(const std::vector<std::vector<eval_record>>& files) {
  struct merged {
    eval_record r;
    std::vector<std::pair<int, int>> ranges;  // sample ranges [first, first + samples) pooled so far
  };
  std::map<std::tuple<std::string, std::string, std::string, double, int64_t, std::string>, size_t> index;
  std::vector<merged> out;
  for (const auto& file : files)
    for (const auto& r : file) {
      if (r.task == "average") continue;
      const auto key = std::make_tuple(r.task, r.method, r.gqa, r.density, r.context, r.metric);
      const std::pair<int, int> range{r.first_sample, r.first_sample + r.samples};
      auto it = index.find(key);
      if (it == index.end()) {
        index[key] = out.size();
        out.push_back({r, {range}});
        continue;
      }
      merged& m = out[it->second];
      bool overlap = false;
      for (const auto& q : m.ranges) overlap |= range.first < q.second && q.first < range.second;
      if (overlap) {
        m = {r, {range}};
      } else {
        pool_into(m.r, r);
        m.ranges.push_back(range);
      }
    }
  std::vector<eval_record> recs;
  for (auto& m : out) recs.push_back(std::move(m.r));
  return recs;
}

std::vector<eval_record> eval_add_average(const std::vector<eval_record>& recs) {
  // Average of the "score" metric over the tasks each (method, gqa, density, context) has.
  struct agg {
    eval_record r;
    double sum = 0;
    int n = 0;
    int min_samples = 1 << 30;
    int answers = 0;  // samples of all its tasks
    double att = 0, kvf = 0, tot = 0;
  };
  std::map<std::tuple<std::string, std::string, double, int64_t>, agg> m;
  for (const auto& r : recs) {
    if (r.metric != "score" || r.task == "average") continue;
    auto& a = m[{r.method, r.gqa, r.density, r.context}];
    if (a.n == 0) a.r = r;
    a.sum += r.value;
    a.n += 1;
    a.min_samples = std::min(a.min_samples, r.samples);
    a.answers += r.samples;
    a.att += r.attended_frac, a.kvf += r.kv_read_frac, a.tot += r.total_read_frac;
  }
  std::vector<eval_record> out = recs;
  for (auto& [k, a] : m) {
    eval_record r = a.r;
    r.task = "average";
    r.value = a.sum / a.n;
    r.stderr_ = 0;
    r.samples = a.min_samples;
    // Wilson over every answer of its tasks (exact for the pooled proportion when the tasks have equal
    // sample counts).
    r.ci = eval_wilson(std::min(1.0, std::max(0.0, r.value)), a.answers);
    r.attended_frac = a.att / a.n;
    r.kv_read_frac = a.kvf / a.n;
    r.total_read_frac = a.tot / a.n;
    r.seconds = 0;
    r.decode_tok_s = 0;
    r.top_overlap = r.mass_recall = -1;
    r.detail.clear();
    out.push_back(r);
  }
  return out;
}

std::string eval_records_markdown(const std::vector<eval_record>& recs) {
  std::ostringstream o;
  // Group: (task, context, metric).
  std::map<std::tuple<int, std::string, int64_t, std::string>, std::vector<const eval_record*>> groups;
  for (const auto& r : recs) groups[{task_rank(r.task), r.task, r.context, r.metric}].push_back(&r);
  for (const auto& [g, rs] : groups) {
    const auto& [rank, task, ctx, metric] = g;
    std::set<double, std::greater<double>> dens;
    for (auto* r : rs)
      if (r->method != "dense") dens.insert(r->density);
    if (dens.empty()) dens.insert(1.0);  // dense only: one column
    std::vector<const eval_record*> rows;  // one per label
    std::vector<std::string> labels;
    std::vector<const eval_record*> sorted = rs;
    std::stable_sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return label_less(*a, *b); });
    for (auto* r : sorted)
      if (std::find(labels.begin(), labels.end(), r->label()) == labels.end()) labels.push_back(r->label());
    const bool pct = metric == "score" || metric == metric_top_overlap || metric == metric_mass_recall;
    int samples = 0;
    for (auto* r : rs) samples = std::max(samples, r->samples);
    o << "### " << task << ", context " << ctx << ", " << metric << (pct ? " (%)" : "") << ", up to " << samples
      << " samples; [95% interval]\n\n";
    o << "| policy |";
    for (double d : dens) o << " " << policy_density_name(d) << " |";
    o << "\n|---|";
    for (size_t i = 0; i < dens.size(); ++i) o << "---:|";
    o << "\n";
    for (const auto& lab : labels) {
      o << "| " << lab << " |";
      for (double d : dens) {
        const eval_record* hit = nullptr;
        for (auto* r : rs)
          if (r->label() == lab && (r->method == "dense" || std::fabs(r->density - d) < 1e-12)) hit = r;
        if (!hit) {
          o << " - |";
          continue;
        }
        const double scale = pct ? 100 : 1;
        const int prec = metric == "kl" ? 4 : (metric == "ppl" ? 3 : 1);
        o << " " << num(scale * hit->value, prec);
        if (hit->ci.valid()) o << " [" << num(scale * hit->ci.lo, prec) << ", " << num(scale * hit->ci.hi, prec) << "]";
        if (hit->samples < samples) o << " (n=" << hit->samples << ")";
        o << " |";
      }
      o << "\n";
    }
    o << "\n";
  }
  // KV rows read per decode step relative to dense, over the retrieval tasks of each context.
  struct kv_acc {
    double att = 0, rows = 0, total = 0;
  };
  std::map<std::tuple<int64_t, std::string, std::string, double>, kv_acc> kv;
  std::map<std::tuple<int64_t, std::string, std::string, double>, int> kvn;
  std::set<int64_t> ctxs;
  for (const auto& r : recs) {
    if (r.metric != "score" || r.task == "average" || r.method == "dense") continue;
    auto k = std::make_tuple(r.context, r.method, r.gqa, r.density);
    kv[k].att += r.attended_frac;
    kv[k].rows += r.kv_read_frac;
    kv[k].total += r.total_read_frac;
    kvn[k] += 1;
    ctxs.insert(r.context);
  }
  for (int64_t ctx : ctxs) {
    std::set<double, std::greater<double>> dens;
    std::vector<std::pair<std::string, std::string>> labs;
    for (const auto& [k, v] : kv) {
      if (std::get<0>(k) != ctx) continue;
      dens.insert(std::get<3>(k));
      std::pair<std::string, std::string> l{std::get<1>(k), std::get<2>(k)};
      if (std::find(labs.begin(), labs.end(), l) == labs.end()) labs.push_back(l);
    }
    std::stable_sort(labs.begin(), labs.end(), [](auto& a, auto& b) {
      int ra = policy_method_rank(a.first), rb = policy_method_rank(b.first);
      return ra != rb ? ra < rb : a < b;
    });
    o << "### KV read per decode step, context " << ctx
      << ": attended tokens per head / KV rows read (union over a GQA group) / all bytes read (rows + the "
         "selector's codes, bounds, channels or keys), % of dense\n\n| policy |";
    for (double d : dens) o << " " << policy_density_name(d) << " |";
    o << "\n|---|";
    for (size_t i = 0; i < dens.size(); ++i) o << "---:|";
    o << "\n";
    for (const auto& [m, gq] : labs) {
      o << "| " << (gq.empty() ? m : m + "/" + gq) << " |";
      for (double d : dens) {
        auto it = kv.find({ctx, m, gq, d});
        if (it == kv.end()) {
          o << " - |";
          continue;
        }
        const int n = kvn[{ctx, m, gq, d}];
        o << " " << num(100 * it->second.att / n, 2) << " / " << num(100 * it->second.rows / n, 2) << " / "
          << num(100 * it->second.total / n, 2) << " |";
      }
      o << "\n";
    }
    o << "\n";
  }
  return o.str();
}

void eval_write_results(const std::vector<eval_record>& recs, const std::string& meta_json,
                        const std::string& json_path, std::ostream& md) {
  md << eval_records_markdown(recs);
  if (json_path.empty()) return;
  std::ofstream f(json_path);
  f << eval_records_json(recs, meta_json);
  if (!f) fail("cannot write '" + json_path + "'");
}

}  // namespace hashattn
