// `dsv4 tokenize` and `dsv4 detokenize`: text or chat messages to token ids and back, one item or a
// JSONL stream of them (one process, no MPI, no weights). A bad line ends the run with an error naming
// the line; what was written for the lines before it stays on stdout.
#include <charconv>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>

#include "plan/error.hpp"
#include "runtime/cli/commands.hpp"
#include "runtime/cli/run.hpp"
#include "runtime/text/chat.hpp"
#include "runtime/text/tokenizer.hpp"

namespace dsv4::cli {
namespace {

using ojson = nlohmann::ordered_json;

struct TextSource {
  std::string tokenizer, weights;  // --tokenizer, else <weights>/tokenizer.json, else the repo's copy
  std::string jsonl;               // "-" = stdin
};

void add_source_options(CLI::App* c, TextSource& s) {
  c->add_option("--tokenizer", s.tokenizer, "tokenizer.json or its folder (default: <weights>/tokenizer.json, else data/tokenizer)");
  c->add_option("-w,--weights", s.weights, "converted weights folder whose tokenizer.json to use");
  c->add_option("--jsonl", s.jsonl, "read one item per line from FILE ('-' = stdin), write one result per line");
}

Tokenizer load_tokenizer(const TextSource& s) { return Tokenizer::load(resolve_tokenizer_path(s.tokenizer, s.weights)); }

// Runs `per_line` on every line of the --jsonl input; its errors come back prefixed with the line number.
template <class F>
void for_each_line(const std::string& path, F&& per_line) {
  std::ifstream file;
  std::istream* in = &std::cin;
  if (path != "-") {
    file.open(path, std::ios::binary);
    if (!file) throw Error("--jsonl: cannot open " + path);
    in = &file;
  }
  std::string line;
  for (int64_t n = 1; std::getline(*in, line); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    try {
      if (line.empty()) throw Error("empty line (expected one JSON item per line)");
      per_line(line);
    } catch (const std::exception& e) {  // dsv4::Error, or a JSON type error this code did not foresee
      throw Error((path == "-" ? std::string("stdin") : path) + " line " + std::to_string(n) + ": " + e.what());
    }
  }
  if (in->bad()) throw Error("--jsonl: read error on " + path);
}

ojson parse_line(const std::string& line) {
  try {
    return ojson::parse(line);
  } catch (const ojson::parse_error& e) {
    // what() reads "[json.exception.parse_error.101] parse error at line 1, column 15: ..."; the line is ours.
    const std::string w = e.what();
    const size_t at = w.find("column ");
    throw Error("invalid JSON at " + (at == std::string::npos ? w : w.substr(at)));
  }
}

void append_ids(std::string& out, const std::vector<int32_t>& ids, char open, char sep, char close) {
  char buf[16];
  if (open) out += open;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += sep;
    out.append(buf, std::to_chars(buf, buf + sizeof buf, ids[i]).ptr);
  }
  if (close) out += close;
}

// Buffered stdout: the JSONL modes write tens of thousands of short lines.
struct Out {
  std::string buf;
  void flush_if_full() {
    if (buf.size() >= (1 << 16)) flush();
  }
  void flush() {
    if (!buf.empty() && std::fwrite(buf.data(), 1, buf.size(), stdout) != buf.size()) throw Error("cannot write to stdout");
    buf.clear();
  }
};

// One JSONL item: a string (text; with --chat, one user message) or
// {"messages": [...], "thinking": bool, "tools": [...], "reasoning_effort": "high"|"max", "drop_thinking": bool}.
// Plain strings recognise special tokens; chat content is encoded literally (render_messages' ranges).
ChatPrompt item_text(const ojson& item, bool chat, bool thinking) {
  if (item.is_string()) {
    const std::string& s = item.get_ref<const std::string&>();
    if (!chat) return {s, {}};
    ChatMessage m;
    m.role = ChatRole::User;
    m.content = s;
    return render_messages(std::span(&m, 1), ChatOptions{.mode = thinking ? ThinkingMode::Thinking : ThinkingMode::Chat});
  }
  if (!item.is_object())
    throw Error(std::string("expected a JSON string or an object with \"messages\", got ") + item.type_name());
  ChatOptions o;
  o.mode = thinking ? ThinkingMode::Thinking : ThinkingMode::Chat;
  for (const auto& [key, v] : item.items()) {
    if (key == "messages" || key == "tools") continue;
    const auto want_bool = [&] {
      if (!v.is_boolean()) throw Error("\"" + key + "\": expected true or false, got " + v.type_name());
      return v.get<bool>();
    };
    if (key == "thinking") {
      o.mode = want_bool() ? ThinkingMode::Thinking : ThinkingMode::Chat;
    } else if (key == "drop_thinking") {
      o.drop_thinking = want_bool();
    } else if (key == "reasoning_effort") {
      if (v.is_null()) continue;
      if (v == "max") o.reasoning_effort = ReasoningEffort::Max;
      else if (v == "high") o.reasoning_effort = ReasoningEffort::High;
      else throw Error("\"reasoning_effort\": expected \"high\", \"max\" or null, got " + v.dump());
    } else {
      throw Error("unknown key \"" + key + "\" (expected messages, thinking, tools, reasoning_effort, drop_thinking)");
    }
  }
  if (!item.contains("messages")) throw Error("missing \"messages\"");
  std::vector<ChatMessage> messages = chat_messages_from_json(item["messages"]);
  if (item.contains("tools")) attach_tools(messages, item["tools"]);
  return render_messages(messages, o);
}

}  // namespace

Subcommand add_tokenize(CLI::App& app) {
  struct Opt {
    TextSource src;
    std::string prompt;
    bool chat = false, thinking = false, json = false, render = false;
  };
  auto o = std::make_shared<Opt>();
  auto* c = app.add_subcommand("tokenize", "text or chat messages -> token ids (no MPI, no weights)");
  c->add_option("-p,--prompt", o->prompt, "text to tokenize (special token strings such as <｜User｜> are recognised)");
  c->add_flag("--chat", o->chat, "render the text as one user message through the V4 chat encoding first");
  c->add_flag("--thinking", o->thinking, "with --chat (and JSONL items without \"thinking\"): thinking mode");
  c->add_flag("--json", o->json, "print the ids of -p as a JSON array (default: comma-separated)");
  c->add_flag("--render", o->render, "print the text that would be tokenized (the chat-encoded prompt) instead of ids");
  add_source_options(c, o->src);
  c->footer(
      "JSONL items: a JSON string (text; with --chat one user message), or an object {\"messages\": [OpenAI-format "
      "messages], \"thinking\": bool, \"tools\": [...], \"reasoning_effort\": \"high\"|\"max\", \"drop_thinking\": bool}. "
      "Output: one JSON array of ids per line.");
  return {c, [o, c](ProcessArgs) {
            if (o->src.jsonl.empty() == (c->count("--prompt") == 0))
              throw Error("tokenize: give exactly one of -p TEXT or --jsonl FILE");
            if (o->thinking && !o->chat && o->src.jsonl.empty())
              throw Error("tokenize: --thinking applies to chat rendering; add --chat");
            if (o->render) {  // no tokenizer needed
              Out out;
              if (o->src.jsonl.empty()) {
                out.buf = item_text(ojson(o->prompt), o->chat, o->thinking).text + "\n";
                out.flush();
                return 0;
              }
              for_each_line(o->src.jsonl, [&](const std::string& line) {
                out.buf += ojson(item_text(parse_line(line), o->chat, o->thinking).text).dump() + "\n";
                out.flush_if_full();
              });
              out.flush();
              return 0;
            }
            const Tokenizer tok = load_tokenizer(o->src);
            Out out;
            if (o->src.jsonl.empty()) {
              const ChatPrompt p = item_text(ojson(o->prompt), o->chat, o->thinking);
              const std::vector<int32_t> ids = tok.encode(p.text, p.literal);
              if (o->json) append_ids(out.buf, ids, '[', ',', ']');
              else append_ids(out.buf, ids, 0, ',', 0);
              out.buf += '\n';
              out.flush();
              return 0;
            }
            for_each_line(o->src.jsonl, [&](const std::string& line) {
              const ChatPrompt p = item_text(parse_line(line), o->chat, o->thinking);
                append_ids(out.buf, tok.encode(p.text, p.literal), '[', ',', ']');
              out.buf += '\n';
              out.flush_if_full();
            });
            out.flush();
            return 0;
          }};
}

namespace {

// Comma- or space-separated integers, optionally in brackets ("1,2,3", "[1, 2, 3]").
bool id_separator(char c) { return c == ' ' || c == ',' || c == '\t' || c == '[' || c == ']'; }

std::vector<int32_t> parse_id_list(std::string_view s) {
  std::vector<int32_t> ids;
  size_t i = 0;
  const auto skip = [&] {
    while (i < s.size() && id_separator(s[i])) ++i;
  };
  for (skip(); i < s.size(); skip()) {
    int64_t v = 0;
    const auto r = std::from_chars(s.data() + i, s.data() + s.size(), v);
    if (r.ec != std::errc() || (r.ptr < s.data() + s.size() && !id_separator(*r.ptr))) {
      size_t j = i;
      while (j < s.size() && !id_separator(s[j])) ++j;
      throw Error("'" + std::string(s.substr(i, j - i)) + "' is not an integer token id");
    }
    if (v < INT32_MIN || v > INT32_MAX) throw Error("token id " + std::to_string(v) + " is out of range");
    ids.push_back(int32_t(v));
    i = size_t(r.ptr - s.data());
  }
  return ids;
}

std::vector<int32_t> ids_from_json(const ojson& j) {
  if (!j.is_array()) throw Error(std::string("expected a JSON array of token ids, got ") + j.type_name());
  std::vector<int32_t> ids;
  ids.reserve(j.size());
  for (size_t k = 0; k < j.size(); ++k) {
    const ojson& v = j[k];
    if (!v.is_number_integer() || v.get<int64_t>() < INT32_MIN || v.get<int64_t>() > INT32_MAX)
      throw Error("element " + std::to_string(k) + ": expected an integer token id, got " + v.dump());
    ids.push_back(int32_t(v.get<int64_t>()));
  }
  return ids;
}

void check_ids(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  for (size_t k = 0; k < ids.size(); ++k)
    if (ids[k] < 0 || ids[k] >= tok.size())
      throw Error("token id " + std::to_string(ids[k]) + " (element " + std::to_string(k) +
                  ") is outside the vocabulary 0.." + std::to_string(tok.size() - 1));
}

}  // namespace

Subcommand add_detokenize(CLI::App& app) {
  struct Opt {
    TextSource src;
    std::string ids;
    bool skip_special = false;
  };
  auto o = std::make_shared<Opt>();
  auto* c = app.add_subcommand("detokenize", "token ids -> text (no MPI, no weights)");
  c->add_option("-i,--ids", o->ids, "token ids, comma-separated (e.g. 0,128803,30594)");
  c->add_flag("--skip-special", o->skip_special, "drop tokens flagged special (BOS, EOS, pad)");
  add_source_options(c, o->src);
  c->footer("JSONL items: a JSON array of ids per line. Output: one JSON string per line. Invalid UTF-8 becomes U+FFFD.");
  return {c, [o, c](ProcessArgs) {
            if (o->src.jsonl.empty() == (c->count("--ids") == 0))
              throw Error("detokenize: give exactly one of -i IDS or --jsonl FILE");
            const Tokenizer tok = load_tokenizer(o->src);
            Out out;
            if (o->src.jsonl.empty()) {
              std::vector<int32_t> ids;
              try {
                ids = parse_id_list(o->ids);
                check_ids(tok, ids);
              } catch (const Error& e) {
                throw Error(std::string("--ids: ") + e.what());
              }
              out.buf = tok.decode(ids, o->skip_special) + "\n";
              out.flush();
              return 0;
            }
            for_each_line(o->src.jsonl, [&](const std::string& line) {
              const std::vector<int32_t> ids = ids_from_json(parse_line(line));
              check_ids(tok, ids);
              out.buf += ojson(tok.decode(ids, o->skip_special)).dump();
              out.buf += '\n';
              out.flush_if_full();
            });
            out.flush();
            return 0;
          }};
}

}  // namespace dsv4::cli
