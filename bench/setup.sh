# Sourced by bench/process/run.sh and bench/spawn/run.sh (which set ROOT):
# installs the tools and peers that are missing, then builds agent-33 in
# release mode unless AGENT33 names a binary already.
#
#   bench_setup TOOL...    e.g. bench_setup hyperfine parallel python3 cc time

bench_setup() {
    local need=() tool
    for tool in "$@"; do
        case $tool in
            cc) command -v cc >/dev/null || need+=(gcc libc6-dev) ;;
            pgrep) command -v pgrep >/dev/null || need+=(procps) ;;
            time) [ -x /usr/bin/time ] || need+=(time) ;;
            *) command -v "$tool" >/dev/null || need+=("$tool") ;;
        esac
    done
    if [ ${#need[@]} -gt 0 ]; then
        apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}"
    fi
    export PATH="$HOME/.cargo/bin:$PATH"
    command -v rust-parallel >/dev/null || cargo install rust-parallel
    # GNU parallel asks once for a citation; a benchmark run is not a publication.
    mkdir -p "$HOME/.parallel" && touch "$HOME/.parallel/will-cite"
    if [ -z "${AGENT33:-}" ]; then
        (cd "$ROOT" && cargo build --release -p agent33-cli)
        AGENT33=${CARGO_TARGET_DIR:-$ROOT/target}/release/agent-33
    fi
}
