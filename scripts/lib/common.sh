# Sourced by padtrim's scripts (bash): the Rust toolchain check every entry point makes before
# it builds anything, and progress lines for long steps that would otherwise be silent.

# step_seconds SECONDS -> "1m05s" / "42s"
step_seconds() {
    local s=$1
    if (( s >= 60 )); then printf '%dm%02ds' $((s / 60)) $((s % 60)); else printf '%ds' "$s"; fi
}

# require_rust ROOT: stop with one line (exit 2) unless cargo and rustc are at least the
# workspace's `rust-version` (Cargo.toml). Debian 12's own cargo 1.65 / rustc 1.63 are too old
# for the host crates (they only build the RISC-V runtime, see scripts/runtime-lib); when a
# rustup toolchain exists in ~/.cargo/bin but is not first in PATH, it is used instead.
require_rust() {
    local root=$1 min
    min=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' "$root/Cargo.toml" | head -n1)
    [[ -n "$min" ]] || { echo "padtrim: no rust-version in $root/Cargo.toml" >&2; exit 2; }
    local found
    found=$(rust_version_of cargo)
    if ! version_at_least "$found" "$min" && [[ -x "$HOME/.cargo/bin/cargo" ]] \
        && version_at_least "$(PATH="$HOME/.cargo/bin:$PATH" rust_version_of cargo)" "$min"; then
        echo "padtrim: using the rustup toolchain in $HOME/.cargo/bin (cargo ${found:-not found} in PATH is older than $min)" >&2
        export PATH="$HOME/.cargo/bin:$PATH"
        found=$(rust_version_of cargo)
    fi
    local rustc_found
    rustc_found=$(rust_version_of rustc)
    if ! version_at_least "$found" "$min" || ! version_at_least "$rustc_found" "$min"; then
        echo "padtrim needs Rust $min or newer (found cargo ${found:-none}, rustc ${rustc_found:-none}); Debian 12's rustc 1.63 is too old: install the current stable with rustup (rustup.rs), run '. \"\$HOME/.cargo/env\"', and try again" >&2
        exit 2
    fi
}

# rust_version_of TOOL -> "1.87.0", or nothing when TOOL is missing or says no version
rust_version_of() {
    command -v "$1" >/dev/null 2>&1 || return 0
    "$1" --version 2>/dev/null | sed -n 's/^[a-z]* \([0-9][0-9.]*\).*/\1/p' | head -n1
}

# version_at_least FOUND MIN: true when FOUND >= MIN (dotted numbers); false when FOUND is empty
version_at_least() {
    [[ -n "$1" ]] || return 1
    [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]
}

# run_logged LABEL LOG CMD...: run CMD with its output in LOG, and say while it runs what it is
# and how long it has taken. On a terminal one line is rewritten every 2 s (with the log's last
# line); otherwise (CI logs) a line is printed every PADTRIM_PROGRESS_INTERVAL seconds (default
# 60). Returns CMD's status; the last line says how it ended and how long it took.
run_logged() {
    local label=$1 log=$2
    shift 2
    local start=$SECONDS interval=${PADTRIM_PROGRESS_INTERVAL:-60} tty=0 next
    [[ -t 2 ]] && tty=1 && interval=2
    "$@" > "$log" 2>&1 &
    local pid=$!
    echo "$label: started (log: $log)" >&2
    next=$((SECONDS + interval))
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1
        if (( SECONDS >= next )) && kill -0 "$pid" 2>/dev/null; then
            next=$((SECONDS + interval))
            local last
            last=$(tail -n1 "$log" 2>/dev/null | tr -d '\r' | cut -c1-60)
            if (( tty )); then
                printf '\r\033[K%s: %s  %s' "$label" "$(step_seconds $((SECONDS - start)))" "$last" >&2
            else
                echo "$label: still running after $(step_seconds $((SECONDS - start))) ($(wc -l < "$log") log lines; last: $last)" >&2
            fi
        fi
    done
    local status=0
    wait "$pid" || status=$?
    (( tty )) && printf '\r\033[K' >&2
    if (( status == 0 )); then
        echo "$label: done in $(step_seconds $((SECONDS - start)))" >&2
    else
        echo "$label: failed (status $status) after $(step_seconds $((SECONDS - start))); log: $log" >&2
    fi
    return "$status"
}
