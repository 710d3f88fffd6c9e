# Shared by the hack/ build scripts: their common flags and log/die, finding the Go
# toolchain, a build lock, and running `go` inside small wrapper modules. Source it
# first and call hack_args NAME FLAGS "$@"; define ENVBIN and BUILD_ROOT before
# go_build_setup LOCKFILE.

# Parses the flags a script accepts (FLAGS: a space-separated subset of --print-env
# --check --force) into output (paths|env), check_only and force, answers -h with the
# script's header comment, and defines log() and die() prefixed with NAME.
hack_args() {
  local name="$1" allowed=" $2 " arg
  shift 2
  output=paths check_only=0 force=0
  for arg in "$@"; do
    if [[ "$arg" == -h || "$arg" == --help ]]; then
      sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
      exit 0
    fi
    if [[ "$allowed" != *" $arg "* ]]; then
      echo "$name.sh: unknown argument: $arg (try --help)" >&2
      exit 2
    fi
    case "$arg" in
      --print-env) output=env ;;
      --check) check_only=1 ;;
      --force) force=1 ;;
    esac
  done
  HACK_NAME="$name"
}

log() { echo "$HACK_NAME: $*" >&2; }
die() { log "error: $*"; exit 1; }

go_build_setup() {
  if [[ -z "${GO:-}" ]]; then
    if command -v go >/dev/null 2>&1; then GO="$(command -v go)"
    elif [[ -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go
    else die "no Go toolchain found (set GO=/path/to/go); Go >= 1.26 is needed"
    fi
  fi
  export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"  # never download a toolchain
  export CGO_ENABLED=0
  log "using $("$GO" version)"
  mkdir -p "$ENVBIN" "$BUILD_ROOT"
  # One build at a time per cache (parallel test sessions, CI next to a shell).
  exec 9>"$BUILD_ROOT/$1"
  if ! flock -n 9; then
    log "another build holds $BUILD_ROOT/$1; waiting for it..."
    flock 9
  fi
}

# Reads the `go` directive of a go.mod file.
go_directive() { awk '$1 == "go" { print $2; exit }' "$1"; }

# Path of the go.mod of module@version in the module cache (downloads it).
module_gomod() {
  local json
  json="$("$GO" mod download -json "$1")" || { echo "$json" >&2; die "cannot download $1"; }
  sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' <<<"$json" | head -n1
}

# Runs go with its output appended to $GOLOG; on failure shows the tail and exits.
run_go() {
  if ! "$GO" "$@" >>"$GOLOG" 2>&1; then
    tail -n 30 "$GOLOG" >&2
    die "go $* failed (full output: $GOLOG)"
  fi
}

# Creates a fresh wrapper module in $1 named $2.
new_wrapper() {
  local dir="$1" name="$2"
  rm -rf "$dir"
  mkdir -p "$dir"
  GOLOG="$dir/go.log"
  cd "$dir"
  run_go mod init "$name"
}

# Path of module@version's folder in the module cache (downloads it; output in $GOLOG).
module_dir() {
  local json dir
  json="$("$GO" mod download -json "$1" 2>>"$GOLOG")" || { echo "$json" >&2; die "cannot download $1 (see $GOLOG)"; }
  dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json" | head -n1)"
  [[ -d "$dir" ]] || die "no module folder for $1: $json"
  echo "$dir"
}

# Files copied out of Go modules into a cached folder (CRDs that ship in a project's
# module), the whole flow of such a script after hack_args:
#   module_files VAR DIR "module@version path/in/module name" ...
# --check reports and exits 0 when DIR holds every name, else 1; --force copies again;
# otherwise DIR is filled once. Prints DIR (or VAR=DIR with --print-env).
module_files() {
  local var="$1" folder="$2" entry module file name
  shift 2
  local -a names=()
  for entry in "$@"; do read -r _ _ name <<<"$entry"; names+=("$name"); done
  _module_files_ok() {
    [[ -f "$folder/.complete" ]] || return 1
    for name in "${names[@]}"; do [[ -s "$folder/$name" ]] || return 1; done
  }
  if [[ "$check_only" == 1 ]] && ! _module_files_ok; then exit 1; fi
  if [[ "$check_only" == 0 ]] && { [[ "$force" == 1 ]] || ! _module_files_ok; }; then
    go_build_setup ".$HACK_NAME.lock"
    local start=$SECONDS tmp="$folder.tmp.$$"
    local -A dirs=()
    log "fetching through the Go module proxy..."
    GOLOG="$BUILD_ROOT/$HACK_NAME.log"
    : >"$GOLOG"
    cd "$BUILD_ROOT" || die "no $BUILD_ROOT"  # outside any module: `go mod download` fetches exactly module@version
    rm -rf "$tmp"
    mkdir -p "$tmp"
    trap 'rm -rf "'"$tmp"'"' EXIT  # a failed fetch leaves no half folder behind
    for entry in "$@"; do
      read -r module file name <<<"$entry"
      if [[ -z "${dirs[$module]:-}" ]]; then
        dirs[$module]="$(module_dir "$module")"
        log "  $module"
      fi
      [[ -s "${dirs[$module]}/$file" ]] || die "$module has no $file"
      cp "${dirs[$module]}/$file" "$tmp/$name"
    done
    touch "$tmp/.complete"
    rm -rf "$folder"
    mv "$tmp" "$folder"
    log "  fetched in $((SECONDS - start)) s"
  elif [[ "$check_only" == 0 ]]; then
    log "already fetched"
  fi
  if [[ "$output" == env ]]; then printf '%s=%q\n' "$var" "$folder"; else echo "$HACK_NAME: $folder"; fi
}
