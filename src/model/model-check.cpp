// model_check (model.h): whether a GGUF file runs here, and if not, everything that is missing
// (architecture, RoPE scaling, tensor types), found without loading the model; then the loader's own
// verdict (its first refusal, which names the key or tensor) when nothing else was found.
#include <map>

#include "cpu/matvec.h"
#include "hashattn/error.h"
#include "hashattn/gguf.h"
#include "hashattn/model.h"
#include "hashattn/tokenizer.h"

namespace hashattn {

model_support model_check(const gguf::file& f) {
  model_support s;
  const gguf::value* av = f.find("general.architecture");
  if (!av || av->type != gguf::value_type::STRING) {
    s.missing.push_back("metadata 'general.architecture' (a string naming the architecture)");
    return s;
  }
  const std::string arch = av->s, a = arch + ".";
  if (arch != "llama" && arch != "qwen2" && arch != "gemma3")
    s.missing.push_back("architecture '" + arch + "' (metadata 'general.architecture'; supported: llama, qwen2, gemma3)");
  if (const gguf::value* v = f.find(a + "rope.scaling.type"); v && v->type == gguf::value_type::STRING) {
    const std::string& t = v->s;
    if (t != "none" && t != "linear" && t != "yarn" && t != "llama3" && !t.empty())
      s.missing.push_back("RoPE scaling '" + t + "' (metadata '" + a + "rope.scaling.type'; supported: none, linear, yarn, llama3)");
  }
  // Tensor types: matrices need a mat-vec kernel, vectors a dequantizer.
  std::map<std::string, std::pair<int, std::string>> bad;  // type -> count, first tensor
  for (const auto& t : f.tensors()) {
    const bool ok = t.ne.size() >= 2 ? cpu::matvec_supported(t.type) : gguf::type_dequantizable(t.type);
    if (ok) continue;
    auto& b = bad[gguf::type_name(t.type)];
    if (b.first++ == 0) b.second = t.name;
  }
  for (const auto& [type, b] : bad)
    s.missing.push_back("tensor type " + type + " (" + std::to_string(b.first) + " tensors, e.g. '" + b.second +
                        "'; supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K .. Q6_K)");
  if (s.missing.empty()) {
    try {
      auto m = model::from_gguf(std::shared_ptr<const gguf::file>(&f, [](const gguf::file*) {}));
      const model_hparams& hp = m->hparams();
      s.runs = true;
      s.summary = m->describe();
      int n_swa = 0;
      for (int l = 0; l < hp.n_layer; ++l) n_swa += hp.is_global(l) ? 0 : 1;
      if (n_swa > 0)
        s.notes.push_back(std::to_string(n_swa) + " sliding-window layers keep their window (dense over it); sparse "
                          "attention policies select on the " + std::to_string(hp.n_layer - n_swa) + " global layers only");
      if (hp.arch != "gemma3")
        if (const gguf::value* v = f.find(a + "attention.sliding_window"))
          s.notes.push_back("metadata '" + a + "attention.sliding_window' = " + v->to_string() +
                            " is ignored, as llama.cpp does for " + arch + ": every layer attends globally");
      if (hp.rope_scaling != "none")
        s.notes.push_back("RoPE scaling " + hp.rope_scaling +
                          (hp.rope_scaling == "llama3" ? (f.find_tensor("rope_freqs.weight") ? " (rope_freqs tensor)" : " (from the metadata)") : ""));
      if (!hp.window.empty() || hp.rope_scaling == "linear" || hp.rope_scaling == "yarn" || hp.qk_norm)
        s.notes.push_back("CPU only: the GPU runtime runs llama and qwen2 layers without linear or YaRN RoPE scaling");
    } catch (const std::exception& e) {
      s.missing.push_back(e.what());
    }
  }
  if (!f.find("tokenizer.ggml.model")) {
    s.tokenizer = "none in the file (token ids only)";
  } else {
    try {
      auto t = tokenizer::from_gguf(f);
      s.tokenizer_ok = true;
      s.tokenizer = f.get_string("tokenizer.ggml.model") + ", pre-tokenizer " + t->pre() + ", " +
                    std::to_string(t->n_vocab()) + " tokens";
    } catch (const std::exception& e) {
      s.tokenizer = e.what();
    }
  }
  return s;
}

}  // namespace hashattn
