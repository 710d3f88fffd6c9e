# Shared by the hack/ build scripts: finds the Go toolchain, takes a build lock, and
# runs `go` inside small wrapper modules. Source it after defining log(), die(),
# ENVBIN and BUILD_ROOT, then call go_build_setup LOCKFILE.

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
