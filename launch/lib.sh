# Shared by the launch scripts (sourced): one-line errors, quoting, dry-run execution.
# The sourcing script sets PROG and USAGE first.
# shellcheck shell=bash

die() {  # one clear line, then the usage, exit 2
  echo "$PROG: error: $*" >&2
  echo "usage: $USAGE" >&2
  exit 2
}

quote() {  # shell-quote each argument, space-separated, readable when nothing needs it
  local out="" a
  for a in "$@"; do
    if [[ -n "$a" && "$a" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      out+="$a "
    else
      out+="'${a//\'/\'\\\'\'}' "
    fi
  done
  printf '%s' "${out% }"
}

DRY_RUN=0
run() {  # print `+ cmd` (quoted), then run it unless --dry-run
  echo "+ $(quote "$@")"
  if (( DRY_RUN )); then return 0; fi
  "$@"
}

need_value() {  # need_value FLAG NARGS_LEFT
  (( $2 >= 2 )) || die "$1 needs a value"
}
