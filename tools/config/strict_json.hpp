// JSON parsing that rejects duplicate keys in any object (nlohmann keeps the last one silently, so
// `"hidden_size": 256, ..., "hidden_size": 4096` would quietly pick 4096).
#pragma once
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plan/error.hpp"

namespace dsv4 {

// Throws dsv4::Error "<where>: invalid JSON: ..." or "<where>: duplicate key "k" in <path>".
template <class Json = nlohmann::json>
Json parse_json_no_duplicates(const std::string& text, const std::string& where) {
  std::vector<std::set<std::string>> keys;  // keys seen in each open object
  std::vector<std::string> path;            // key of each open object, for the message
  std::string last_key, dup, dup_at;
  auto cb = [&](int, typename Json::parse_event_t ev, Json& parsed) {
    using E = typename Json::parse_event_t;
    if (ev == E::object_start) {
      path.push_back(keys.empty() ? std::string() : last_key);
      keys.emplace_back();
    } else if (ev == E::object_end) {
      keys.pop_back();
      path.pop_back();
    } else if (ev == E::key && !keys.empty()) {
      last_key = parsed.template get<std::string>();
      if (!keys.back().insert(last_key).second && dup.empty()) {
        dup = last_key;
        for (size_t i = 1; i < path.size(); ++i) dup_at += (i > 1 ? "." : "") + path[i];
      }
    }
    return true;
  };
  Json j;
  try {
    j = Json::parse(text, cb);
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": invalid JSON: " + e.what());
  }
  if (!dup.empty())
    throw Error(where + ": duplicate key \"" + dup + "\"" + (dup_at.empty() ? "" : " in \"" + dup_at + "\"") +
                " (JSON readers disagree on which one counts)");
  return j;
}

}  // namespace dsv4
