// The policy vocabulary (policy.h): method names and aliases, "METHOD[/MODE][@DENSITY]" settings parsed
// and printed, densities as text, the default sinks and window, and a setting's budget at a context.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <sstream>

#include "hashattn/error.h"
#include "hashattn/policy.h"

namespace hashattn {

namespace {

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

// The integer after `prefix` when m is prefix + 1..4 digits in [lo, hi], else 0.
int suffix_number(const std::string& m, const std::string& prefix, int lo, int hi) {
  if (m.rfind(prefix, 0) != 0) return 0;
  const std::string c = m.substr(prefix.size());
  if (c.empty() || c.size() > 4 || !std::all_of(c.begin(), c.end(), ::isdigit)) return 0;
  const int v = std::stoi(c);
  return v >= lo && v <= hi ? v : 0;
}

}  // namespace

const char* policy_method_help() {
  return "dense, hash, hash-rrC (C = 2..64), simhash, simhash-BITS (1..4096), oracle, streaming, quest, dsparse";
}

std::string policy_method_canonical(const std::string& m0) {
  const std::string m = trim(m0);
  if (m == "dense" || m == "hash" || m == "oracle" || m == "streaming" || m == "quest") return m;
  if (m == "dsparse" || m == "double_sparsity" || m == "double-sparsity" || m == "ds") return "dsparse";
  if (m == "simhash") return "simhash-32";
  if (m == "hash-rerank") return "hash-rr4";
  if (int c = suffix_number(m, "hash-rr", 2, 64)) return "hash-rr" + std::to_string(c);
  if (int b = suffix_number(m, "simhash-", 1, 4096)) return "simhash-" + std::to_string(b);
  fail("attention policy", "'" + m0 + "'", std::string("one of ") + policy_method_help());
}

const std::vector<std::string>& policy_comparison_methods() {
  static const std::vector<std::string> m = {"dense", "hash",    "hash-rr4",   "oracle",     "streaming",
                                             "quest", "dsparse", "simhash-32", "simhash-256"};
  return m;
}

int policy_method_rank(const std::string& m) {
  const auto& order = policy_comparison_methods();
  if (m.rfind("hash-rr", 0) == 0) return 2;  // every re-ranking factor where hash-rr4 stands
  auto it = std::find(order.begin(), order.end(), m);
  return it == order.end() ? (int)order.size() : (int)(it - order.begin());
}

bool policy_spec::is_hash() const { return method == "hash" || method.rfind("hash-rr", 0) == 0; }
bool policy_spec::has_gqa_mode() const { return method != "dense" && method != "streaming"; }
int policy_spec::rerank() const { return suffix_number(method, "hash-rr", 2, 64); }
int policy_spec::simhash_bits() const { return suffix_number(method, "simhash-", 1, 4096); }

std::string policy_spec::label() const {
  return has_gqa_mode() ? method + "/" + gqa_mode_name(gqa) : method;
}

std::string policy_spec::str() const {
  if (is_dense()) return method;
  return label() + "@" + (density > 0 ? policy_density_name(density) : std::to_string(count));
}

double policy_density_parse(const std::string& s0) {
  const std::string s = trim(s0);
  double v = 0;
  try {
    const size_t slash = s.find('/');
    size_t pos = 0;
    if (slash != std::string::npos) {
      const double num = std::stod(s.substr(0, slash), &pos);
      if (pos != slash) throw std::invalid_argument("num");
      const std::string den = s.substr(slash + 1);
      const double dv = std::stod(den, &pos);
      if (pos != den.size() || dv == 0) throw std::invalid_argument("den");
      v = num / dv;
    } else {
      v = std::stod(s, &pos);
      if (pos != s.size()) throw std::invalid_argument("tail");
    }
  } catch (const std::exception&) {
    fail("density", "'" + s0 + "'", "a fraction like 1/32 or a number like 0.03125");
  }
  if (!(v > 0 && v <= 1)) fail("density", "'" + s0 + "'", "a value in (0, 1]");
  return v;
}

std::string policy_density_name(double d) {
  if (d >= 1) return "1";
  if (d <= 0) return "budget";
  const double inv = 1.0 / d;
  if (std::fabs(inv - std::round(inv)) < 1e-6) return "1/" + std::to_string((long)std::round(inv));
  std::ostringstream s;
  s.precision(4);
  s << d;
  return s.str();
}

policy_spec policy_spec_parse(const std::string& s0) {
  const std::string s = trim(s0);
  policy_spec p;
  std::string head = s;
  const size_t at = s.find('@');
  if (at != std::string::npos) {
    head = s.substr(0, at);
    const std::string b = trim(s.substr(at + 1));
    if (!b.empty() && std::all_of(b.begin(), b.end(), ::isdigit) && b.size() <= 9 && b.find('/') == std::string::npos &&
        std::stoll(b) > 1) {
      p.count = std::stoll(b);  // a whole number > 1: a token count
    } else {
      p.density = policy_density_parse(b);
    }
  }
  const size_t slash = head.find('/');
  p.method = policy_method_canonical(head.substr(0, slash));
  if (slash != std::string::npos) {
    const std::string mode = trim(head.substr(slash + 1));
    if (mode == "head") p.gqa = gqa_mode::per_head;
    else if (mode == "group") p.gqa = gqa_mode::per_group;
    else fail("GQA mode of '" + s0 + "'", "'" + mode + "'", "head or group");
    if (!p.has_gqa_mode()) fail("policy '" + s0 + "'", "a GQA mode", "none: " + p.method + " has no GQA mode");
  }
  if (!p.is_dense() && at == std::string::npos) p.density = 1.0 / 32;  // the default budget
  return p;
}

int64_t default_sinks_window(int64_t total) { return std::clamp<int64_t>(total / 8, 4, 128); }

budget_params policy_budget(const policy_spec& s, int64_t n) {
  budget_params b;
  int64_t total = 0;
  if (s.density > 0) {
    if (!(s.density <= 1)) fail("density", std::to_string(s.density), "a value in (0, 1]");
    b.density = s.density;
    total = (int64_t)std::floor(s.density * (double)n + 1e-9);
  } else {
    if (s.count <= 0) fail("policy '" + s.str() + "': budget", std::to_string(s.count), "a density or a count > 0");
    b.count = s.count;
    total = std::min<int64_t>(s.count, n);
  }
  if (s.sinks < -1 || s.window < -1) fail("sinks / window", "negative", ">= 0, or -1 for auto");
  const int64_t auto_sw = default_sinks_window(total);
  b.sinks = s.sinks >= 0 ? s.sinks : auto_sw;
  if (s.method == "streaming" && s.window < 0) b.window = std::max<int64_t>(total - b.sinks, 1);  // the whole budget
  else b.window = s.window >= 0 ? s.window : auto_sw;
  if (b.window < 1) fail("window", std::to_string(b.window), ">= 1 (the current token is always attended)");
  if (b.count > 0 && b.count < b.sinks + b.window)
    fail("budget of " + s.str(), std::to_string(b.count) + " tokens",
         ">= sinks " + std::to_string(b.sinks) + " + window " + std::to_string(b.window),
         "raise the budget or lower --sinks / --window");
  budget_validate(b);
  return b;
}

policy_config policy_config_for(const policy_spec& s, int64_t n) {
  policy_config c;
  c.budget = policy_budget(s, n);
  c.gqa = s.gqa;
  if (s.is_hash()) {
    c.name = "hash";
    c.rerank = s.rerank();
  } else if (s.simhash_bits()) {
    c.name = "simhash";
    c.bits = s.simhash_bits();
  } else if (s.method == "dsparse") {
    c.name = "double_sparsity";
  } else {
    c.name = s.method;
  }
  return c;
}

}  // namespace hashattn
