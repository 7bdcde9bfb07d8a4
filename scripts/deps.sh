# scripts/deps.sh: sourced by scripts/test and scripts/quickstart. Installs what is missing on a fresh
# Debian machine (as root), or prints the exact apt-get line and stops (as another user).
LORALAB_PACKAGES="cmake make gcc pkg-config libopenblas-openmp-dev liblapacke-dev libhdf5-dev libyaml-dev \
libsqlite3-dev zlib1g-dev libjpeg62-turbo-dev libpng-dev gnuplot-nox dataset-fashion-mnist"

# Optional, for scripts/test: a one-node SLURM for it_slurm_array (tests/test_slurm.sh, docs/cluster.md). It runs
# with auth/none (munge comes as a dependency but is not used); without these packages that test SKIPs.
LORALAB_TEST_PACKAGES="slurmctld slurmd slurm-client"

# loralab_install_deps [OPTIONAL_PACKAGE ...]: the optional ones are installed too when running as root;
# as another user their absence is only noted.
loralab_install_deps() {
    local missing=() optional=()
    for p in $LORALAB_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || optional+=("$p")
    done
    if [ ${#optional[@]} -gt 0 ] && [ "$(id -u)" -ne 0 ]; then
        echo "optional packages missing (some tests will SKIP): ${optional[*]}" >&2
        optional=()
    fi
    [ ${#missing[@]} -eq 0 ] && [ ${#optional[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing Debian packages: ${missing[*]}" >&2
        echo "install them with:" >&2
        echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing: ${missing[*]}"
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    # optional packages must never fail the build: their tests SKIP without them
    if [ ${#optional[@]} -gt 0 ]; then
        echo "installing (optional): ${optional[*]}"
        apt-get install -y -qq --no-install-recommends "${optional[@]}" >/dev/null ||
            echo "optional packages could not be installed (their tests will SKIP): ${optional[*]}" >&2
    fi
}

# Configure and build into build/ (Release, warnings as errors when WERROR=ON).
loralab_build() {
    local top="$1"; shift
    cmake -S "$top" -B "$top/build" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
    cmake --build "$top/build" -j "$(nproc)"
}
