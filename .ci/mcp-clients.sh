#!/usr/bin/env bash
# Real MCP clients against `loop-kpi`, for CI after `make test` (needs the venv, Node 20+ and the npm registry):
#   (a) MCP Inspector CLI over stdio, through mcp.json: tools/list and a tools/call of each tool;
#   (b) MCP Inspector CLI over streamable HTTP (`loop-kpi serve --sandbox`) with a bearer token minted by
#       `loop-kpi token`, plus the refusals without a token and without kpi:read;
#   (c) the MCP conformance suite against a second, `--no-auth` sandbox instance;
#   (d) MCP Inspector CLI signs in with OAuth at a real OpenID Connect provider (tests/oidc/, panva's oidc-provider on
#       loopback) from nothing but the /mcp URL, then calls tools/list and kpi_overview; and --stored-auth-only without
#       a token is refused (tests/oidc/inspector_sign_in.py drives it; it starts and stops the provider and the server).
# Nothing is installed globally: npx keeps the pinned packages in the user's npm cache. Servers started here are
# stopped on exit. Prints PASS/FAIL per check and ends with "N passed, M failed"; exits 1 if anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

INSPECTOR_PKG="@modelcontextprotocol/inspector@2.12.0"
CONFORMANCE_PKG="@modelcontextprotocol/conformance@0.1.13"  # 0.1.14+ needs fs.globSync (Node 22)
TOOLS=(kpi_overview kpi_mau kpi_conversion kpi_user_journey kpi_refund_analysis)
STEP_TIMEOUT=${MCP_CLIENTS_STEP_TIMEOUT:-300}  # per client run; the first npx run downloads the package
PY="$ROOT/.venv/bin/python"
LOOP_KPI="$ROOT/.venv/bin/loop-kpi"
# The servers read their settings from the environment: start from none of ours (a repo-root .env still applies).
while read -r name; do unset "$name"; done < <(compgen -e | grep -E '^(KPI_|AMPLITUDE_|REVENUECAT_|MCP_ALLOWED_OPERATIONS$)' || true)
export MCP_INSPECTOR_SECRET_STORE=memory  # no OS keychain on CI machines; nothing is stored
export NO_COLOR=1

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mcp-clients.XXXXXX")
SERVER_PIDS=()
PASSED=0
FAILED=0

cleanup() {
    local pid
    for pid in "${SERVER_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass() { PASSED=$((PASSED + 1)); echo "PASS  $1"; }
fail() {
    FAILED=$((FAILED + 1))
    echo "FAIL  $1"
    if [[ -n "${2:-}" && -s "$2" ]]; then sed 's/^/      | /' "$2" | tail -n 25; fi
}

# check NAME EXPECTED_EXIT VALIDATOR -- COMMAND...: run COMMAND (stdout to $WORK/out, stderr to $WORK/err), then
# require its exit code and, if VALIDATOR is not "-", that `python -c VALIDATOR $WORK/out` succeeds.
check() {
    local name=$1 expected=$2 validator=$3 code=0
    shift 4
    timeout "$STEP_TIMEOUT" "$@" >"$WORK/out" 2>"$WORK/err" </dev/null || code=$?
    if [[ "$code" != "$expected" ]]; then
        cat "$WORK/out" >>"$WORK/err"
        fail "$name (exit $code, expected $expected)" "$WORK/err"
    elif [[ "$validator" != "-" ]] && ! "$PY" -c "$validator" "$WORK/out" >"$WORK/why" 2>&1; then
        cat "$WORK/out" "$WORK/why" >"$WORK/report"  # the assertion last, where `tail` shows it
        fail "$name (unexpected output)" "$WORK/report"
    else
        pass "$name"
    fi
}

# Validators read the Inspector's JSON result from the file named in argv[1].
LISTS_THE_TOOLS="import json, sys
names = [t['name'] for t in json.load(open(sys.argv[1]))['tools']]
assert names == '${TOOLS[*]}'.split(), names"
STRUCTURED_RESULT="import json, sys
result = json.load(open(sys.argv[1]))
assert result.get('isError') is not True, result
assert isinstance(result.get('structuredContent'), dict), 'no structuredContent'
assert result['structuredContent']['data_source'] == 'sandbox', result['structuredContent'].get('data_source')"

LISTS_THE_RESOURCES="import json, sys
uris = [r['uri'] for r in json.load(open(sys.argv[1]))['resources']]
expected = ['kpi://definitions/' + t for t in '${TOOLS[*]}'.split()] + ['kpi://service/data-source']
assert [u for u in uris if u.startswith('kpi://')] == expected, uris"
LISTS_THE_PROMPTS="import json, sys
names = [p['name'] for p in json.load(open(sys.argv[1]))['prompts']]
assert names == ['weekly_kpi_brief', 'user_investigation', 'refund_spike_investigation'], names"

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_server NAME PORT [ARGS...]: `loop-kpi serve --sandbox` in the background; waits (bounded) for /healthz.
start_server() {
    local name=$1 port=$2 deadline
    shift 2
    "$LOOP_KPI" serve --sandbox --host 127.0.0.1 --port "$port" "$@" >"$WORK/$name.log" 2>&1 &
    SERVER_PIDS+=("$!")
    deadline=$((SECONDS + 60))
    until curl -fsS --max-time 2 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)) || ! kill -0 "${SERVER_PIDS[-1]}" 2>/dev/null; then
            fail "$name: loop-kpi serve on port $port became healthy" "$WORK/$name.log"
            return 1
        fi
        sleep 0.2
    done
    pass "$name: loop-kpi serve on port $port became healthy"
}

# Tool arguments: a sandbox user, and a refund range inside the last three months (the sandbox ends today, UTC).
read -r REFUND_START REFUND_END < <("$PY" -c '
import datetime
today = datetime.datetime.now(datetime.UTC).date()
print(today - datetime.timedelta(days=60), today - datetime.timedelta(days=1))')
tool_args() {
    case "$1" in
        kpi_user_journey) echo "--tool-arg user_id=user_00042" ;;
        kpi_refund_analysis) echo "--tool-arg start_date=$REFUND_START end_date=$REFUND_END" ;;
        *) echo "" ;;
    esac
}

INSPECTOR=(npx --yes "$INSPECTOR_PKG" --cli)

# ---------------------------------------------------------------------------------------------- (a) stdio
# mcp.json's command is relative (.venv/bin/loop-kpi): the Inspector resolves it against its own working
# directory, which is the repository root here (from elsewhere, add --cwd <repo root>).
STDIO=("${INSPECTOR[@]}" --config "$ROOT/mcp.json" --server loop-kpi)
check "stdio: tools/list lists the five tools" 0 "$LISTS_THE_TOOLS" -- "${STDIO[@]}" --method tools/list
for tool in "${TOOLS[@]}"; do
    # shellcheck disable=SC2046 # tool_args is deliberately word-split into options
    check "stdio: tools/call $tool" 0 "$STRUCTURED_RESULT" -- \
        "${STDIO[@]}" --method tools/call --tool-name "$tool" $(tool_args "$tool")
done
check "stdio: resources/list lists the definitions and the data source" 0 "$LISTS_THE_RESOURCES" -- \
    "${STDIO[@]}" --method resources/list
check "stdio: prompts/list lists the three prompts" 0 "$LISTS_THE_PROMPTS" -- "${STDIO[@]}" --method prompts/list
check "stdio: an unknown user is a tool error (Inspector exits 5)" 5 - -- \
    "${STDIO[@]}" --method tools/call --tool-name kpi_user_journey --tool-arg user_id=no_such_user_999

# ---------------------------------------------------------------------------------------------- (b) HTTP + token
KPI_JWT_SECRET=$("$PY" -c 'import secrets, string; a = string.ascii_letters + string.digits; print("".join(secrets.choice(a) for _ in range(48)))')
export KPI_JWT_SECRET  # the server verifies with it; `loop-kpi token` signs with it
AUTH_PORT=$(free_port)
if start_server "http" "$AUTH_PORT"; then
    URL="http://127.0.0.1:$AUTH_PORT/mcp"
    TOKEN=$("$LOOP_KPI" token --sub ci)
    NO_SCOPE_TOKEN=$("$LOOP_KPI" token --sub ci --scope profile)
    HTTP=("${INSPECTOR[@]}" "$URL" --transport http --header "Authorization: Bearer $TOKEN")
    check "http: tools/list lists the five tools" 0 "$LISTS_THE_TOOLS" -- "${HTTP[@]}" --method tools/list
    for tool in "${TOOLS[@]}"; do
        # shellcheck disable=SC2046
        check "http: tools/call $tool" 0 "$STRUCTURED_RESULT" -- \
            "${HTTP[@]}" --method tools/call --tool-name "$tool" $(tool_args "$tool")
    done
    check "http: resources/list lists the definitions and the data source" 0 "$LISTS_THE_RESOURCES" -- \
        "${HTTP[@]}" --method resources/list
    check "http: prompts/list lists the three prompts" 0 "$LISTS_THE_PROMPTS" -- "${HTTP[@]}" --method prompts/list
    check "http: no token is refused (Inspector exits 3, auth_required)" 3 - -- \
        "${INSPECTOR[@]}" "$URL" --transport http --stored-auth-only --method tools/list
    check "http: a token without kpi:read is refused (Inspector exits 1, insufficient scope)" 1 - -- \
        "${INSPECTOR[@]}" "$URL" --transport http --header "Authorization: Bearer $NO_SCOPE_TOKEN" --method tools/list
fi
unset KPI_JWT_SECRET

# ---------------------------------------------------------------------------------------------- (c) conformance
OPEN_PORT=$(free_port)
if start_server "no-auth" "$OPEN_PORT" --no-auth; then
    for scenario in server-initialize ping tools-list resources-list prompts-list dns-rebinding-protection; do
        check "conformance: $scenario" 0 - -- npx --yes "$CONFORMANCE_PKG" server \
            --url "http://127.0.0.1:$OPEN_PORT/mcp" --scenario "$scenario" -o "$WORK/conformance/$scenario"
    done
fi

# ---------------------------------------------------------------------------------------------- (d) OAuth sign-in
# The driver starts the provider and `loop-kpi serve --sandbox` with KPI_JWT_ISSUER, plays the person at the browser
# (the provider's login and consent forms) and delivers the code to the Inspector's loopback callback listener.
OAUTH=("$PY" -m tests.oidc.inspector_sign_in --inspector "${INSPECTOR[*]}")
check "oauth: Inspector CLI signs in at a real OpenID Connect provider (DCR, code + PKCE), tools/list + kpi_overview" \
    0 - -- "${OAUTH[@]}" --scenario sign-in
check "oauth: Inspector CLI --stored-auth-only without a token is refused (exits 3, auth_required), no hang" \
    0 - -- "${OAUTH[@]}" --scenario stored-auth-only

echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
