#!/usr/bin/env bash
# `dsv4 tokenize` / `detokenize` end to end: ids of ../shared/tokenizer/README.md's examples, JSONL in and
# out, and bad input (each must fail with the line named and a non-zero exit). Usage: tokenize_cli.sh DSV4 WORKDIR
set -u
bin=$1 dir=$2
mkdir -p "$dir"
fails=0
expect() {  # expect NAME EXPECTED ACTUAL
  if [[ "$2" == "$3" ]]; then echo "ok   $1"; else echo "FAIL $1: expected [$2] got [$3]"; fails=$((fails + 1)); fi
}
expect_error() {  # expect_error NAME PATTERN CMD...
  local name=$1 pattern=$2; shift 2
  if "$@" >"$dir/out" 2>"$dir/err"; then echo "FAIL $name: exit 0"; fails=$((fails + 1)); return; fi
  if grep -q -- "$pattern" "$dir/err"; then echo "ok   $name: $(cat "$dir/err")"; else
    echo "FAIL $name: stderr lacks [$pattern]: $(cat "$dir/err")"; fails=$((fails + 1)); fi
}

expect chat "0,128803,6657,713,6127,74437,128804,128822" "$("$bin" tokenize -p '介绍下北京故宫' --chat)"
expect chat_thinking_json "[0,128803,30594,128804,128821]" "$("$bin" tokenize -p '你好' --chat --thinking --json)"
expect special_tokens "128803,30594,128804,128821,36101,128822,7624,1" \
  "$("$bin" tokenize -p '<｜User｜>你好<｜Assistant｜><think>推理</think>答案<｜end▁of▁sentence｜>')"

cat >"$dir/in.jsonl" <<'JSONL'
"你好"
{"messages": [{"role": "user", "content": "介绍下北京故宫"}]}
{"messages": [{"role": "user", "content": "你好"}], "thinking": true}
{"messages": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "答案", "reasoning_content": "推理"}, {"role": "user", "content": "你好"}], "thinking": true, "drop_thinking": false}
JSONL
expect jsonl "[30594]
[0,128803,6657,713,6127,74437,128804,128822]
[0,128803,30594,128804,128821]
[0,128803,30594,128804,128821,36101,128822,7624,1,128803,30594,128804,128821]" "$("$bin" tokenize --jsonl "$dir/in.jsonl")"
expect jsonl_stdin_chat "[0,128803,30594,128804,128822]" "$(echo '"你好"' | "$bin" tokenize --jsonl - --chat)"

expect render "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜></think>" "$("$bin" tokenize -p Hi --chat --render)"
echo '{"messages": [{"role": "user", "content": "Q"}], "tools": [{"type": "function", "function": {"name": "f"}}]}' >"$dir/tools.jsonl"
expect render_tools_head '"<｜begin▁of▁sentence｜>\n\n## Tools' "$("$bin" tokenize --render --jsonl "$dir/tools.jsonl" | cut -c1-42)"
expect render_tools_schema 1 "$("$bin" tokenize --render --jsonl "$dir/tools.jsonl" | grep -cF '{\"name\": \"f\"}\n\nYou MUST')"

expect detok "<｜User｜>你好<｜Assistant｜>" "$("$bin" detokenize -i 128803,30594,128804)"
expect detok_skip "你好答案" "$("$bin" detokenize -i 0,30594,7624,1 --skip-special)"
"$bin" tokenize --jsonl "$dir/in.jsonl" >"$dir/ids.jsonl"
expect detok_jsonl '"你好"
"<｜begin▁of▁sentence｜><｜User｜>介绍下北京故宫<｜Assistant｜></think>"' "$("$bin" detokenize --jsonl "$dir/ids.jsonl" | head -2)"

printf '"ok"\n{"messages": [\n' >"$dir/bad_json.jsonl"
expect_error bad_json_line "line 2: invalid JSON at column 15" "$bin" tokenize --jsonl "$dir/bad_json.jsonl"
printf '"ok"\n"ok"\n{"messages": [{"role": "robot", "content": "x"}]}\n' >"$dir/bad_role.jsonl"
expect_error bad_role "line 3: chat message 0: field 'role'" "$bin" tokenize --jsonl "$dir/bad_role.jsonl"
printf '"\xff"\n' >"$dir/bad_utf8.jsonl"
expect_error bad_utf8_line "line 1: invalid JSON at column 2" "$bin" tokenize --jsonl "$dir/bad_utf8.jsonl"
expect_error bad_utf8_prompt "UTF-8" "$bin" tokenize -p $'\xff'
expect_error id_out_of_vocab "outside the vocabulary" "$bin" detokenize -i 1,129280
expect_error id_negative "outside the vocabulary" "$bin" detokenize -i -1
expect_error id_not_int "'x1' is not an integer" "$bin" detokenize -i 1,x1
printf '[1,2]\n[3,"a"]\n' >"$dir/bad_ids.jsonl"
expect_error bad_ids_line "line 2: element 1" "$bin" detokenize --jsonl "$dir/bad_ids.jsonl"
expect_error no_input "exactly one of" "$bin" tokenize
expect_error thinking_without_chat "add --chat" "$bin" tokenize -p x --thinking

# The command line as a whole: a mistyped subcommand is named; --version names the config and plan.
expect_error unknown_subcommand "unknown subcommand 'tokenise'" "$bin" tokenise -p x
expect_contains() { if [[ "$3" == *"$2"* ]]; then echo "ok   $1"; else echo "FAIL $1: [$3] lacks [$2]"; fails=$((fails + 1)); fi; }
expect_contains version "dsv4, config " "$("$bin" --version)"
# Chat content is encoded literally: a user who types a role token gets text, not the token.
expect_contains literal_content "0,128803," "$("$bin" tokenize -p 'a<｜Assistant｜>b' --chat)"
[[ "$("$bin" tokenize -p 'a<｜Assistant｜>b' --chat | tr ',' '\n' | grep -cx 128804)" == 1 ]] ||
  { echo "FAIL literal_content: the content's <｜Assistant｜> became a token"; fails=$((fails + 1)); }

[[ $fails == 0 ]] && echo "all passed" || { echo "$fails failed"; exit 1; }
