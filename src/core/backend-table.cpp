// The backend table's op names and its refusal of missing ops (ops.h).
#include <string>

#include "hashattn/error.h"
#include "hashattn/ops.h"

namespace hashattn {

const char* backend_op_name(backend_op op) {
  switch (op) {
    case backend_op::attend: return "attend";
    case backend_op::encode: return "encode";
    case backend_op::select_codes: return "select_codes";
    case backend_op::score_codes: return "score_codes";
    case backend_op::select_scores: return "select_scores";
  }
  return "unknown";
}

bool backend::has(backend_op op) const {
  switch (op) {
    case backend_op::attend: return attend != nullptr;
    case backend_op::encode: return encode != nullptr;
    case backend_op::select_codes: return select_codes != nullptr;
    case backend_op::score_codes: return score_codes != nullptr;
    case backend_op::select_scores: return select_scores != nullptr;
  }
  return false;
}

void backend::require(backend_op op) const {
  if (has(op)) return;
  fail(std::string("backend '") + name + "' cannot run op " + backend_op_name(op), "",
       "", missing && *missing ? missing : "the backend does not implement it");
}

}  // namespace hashattn
