// scan_stop (serve.h): how much of a request's pending output text may be sent.
#include "hashattn/serve.h"

namespace hashattn::serve {

stop_scan scan_stop(const std::string& pending, const std::vector<std::string>& stop) {
  stop_scan r;
  for (const std::string& s : stop) {
    const size_t at = s.empty() ? std::string::npos : pending.find(s);
    if (at != std::string::npos && (r.stop_at == std::string::npos || at < r.stop_at)) r.stop_at = at;
  }
  if (r.stop_at != std::string::npos) {
    r.emit = r.stop_at;
    return r;
  }
  // Hold back the longest tail that is the start of a stop string.
  size_t hold = 0;
  for (const std::string& s : stop)
    for (size_t k = std::min(s.size() - 1, pending.size()); k > hold; --k)
      if (pending.compare(pending.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
  r.emit = utf8_complete_prefix(pending.substr(0, pending.size() - hold));
  return r;
}

}  // namespace hashattn::serve
