#!/usr/bin/env bash
# The gradlog action's step (action.yml): run gradlog once, which writes the job summary (cut
# to GitHub's 1 MiB) and the comment's Markdown (cut to one comment's 65,536 characters, less
# the marker's line); then, on a pull request, create or update the one sticky comment.
# Exits with gradlog's code, after commenting: a finding past --fail-on still gets its comment.
#
# Settings, all from action.yml: GRADLOG_COMMAND, GRADLOG_PATHS, GRADLOG_ARGS, GRADLOG_COMMENT,
# GRADLOG_MARKER, GITHUB_TOKEN, and the variables Actions sets (GITHUB_STEP_SUMMARY,
# GITHUB_OUTPUT, GITHUB_EVENT_NAME, GITHUB_EVENT_PATH, GITHUB_API_URL, RUNNER_TEMP...).
# GRADLOG names the program (default gradlog; the tests run the checkout's).
set -uo pipefail

gradlog=${GRADLOG:-gradlog}
command=${GRADLOG_COMMAND:-batch}
marker=${GRADLOG_MARKER:-<!-- gradlog-report -->}
comment=${GRADLOG_COMMENT:-true}

fail() {
  echo "::error title=gradlog action::$1"
  exit 2
}

case "$command" in report | batch) ;; *) fail "command: expected report or batch, got '$command'" ;; esac
case "$comment" in true | false) ;; *) fail "comment: expected true or false, got '$comment'" ;; esac

# split at white space, never glob-expanded here: gradlog expands globs itself
set -f
# shellcheck disable=SC2206
paths=(${GRADLOG_PATHS:-})
# shellcheck disable=SC2206
args=(${GRADLOG_ARGS:-})
set +f
[ "${#paths[@]}" -gt 0 ] || fail "paths: no log given"
if [ "$command" = report ] && [ "${#paths[@]}" -ne 1 ]; then
  fail "paths: the report command takes one log (${#paths[@]} given); use command: batch"
fi

out=$(mktemp -d "${RUNNER_TEMP:-/tmp}/gradlog.XXXXXX") || fail "cannot make a temporary folder"
report="$out/comment.md"
room=$((65536 - ${#marker} - 1)) # the marker's line is part of the comment
run_url="${GITHUB_SERVER_URL:-https://github.com}/${GITHUB_REPOSITORY:-}/actions/runs/${GITHUB_RUN_ID:-}"

# shellcheck disable=SC2086
# (${args[@]+...}: an empty array under set -u, in the bash 3.2 of macOS runners too)
$gradlog "$command" "${paths[@]}" ${args[@]+"${args[@]}"} --format markdown --github \
  --max-chars "$room" --full-report "in the job summary of $run_url" -o "$report"
rc=$?
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  {
    echo "report=$report"
    echo "exit-code=$rc"
  } >>"$GITHUB_OUTPUT"
fi
[ -s "$report" ] || exit "$rc" # bad input or usage: gradlog said why, in one line

case "${GITHUB_EVENT_NAME:-}" in
pull_request | pull_request_target)
  if [ "$comment" = true ]; then
    # shellcheck disable=SC2086
    if ! $gradlog comment "$report" --marker "$marker"; then
      # a fork's pull request gets a read-only token: the report is still in the summary
      echo "::warning title=gradlog action::could not comment on the pull request; the report is in the job summary"
    fi
  fi
  ;;
esac
exit "$rc"
