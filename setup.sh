#!/usr/bin/env bash
# Install what govmail needs on Debian 12 and run it.
#
#   ./setup.sh demo [DATA_DIR]      install slapd, ldap-utils and the Python venv, then run the main
#                                   job on the embedded default (SQLite + a local slapd govmail starts
#                                   itself) with its data in DATA_DIR (default: ./govmail-data)
#   ./setup.sh test [PYTEST ARGS]   install slapd, ldap-utils, Dovecot, Chromium, PostgreSQL (unless one already
#                                   answers) and the venv with the test extras, then run the test suite
#
# Both are idempotent: a second run installs nothing and is quick. Installing Debian packages needs
# root; everything else works as any user once the packages are there.
#
# Environment:
#   GOVMAIL_TEST_PG_URL    PostgreSQL for the tests; when set, it is checked and used as it is
#   GOVMAIL_TEST_PG_PORT   port probed on 127.0.0.1 for an already running PostgreSQL (default 5432)
#   GOVMAIL_TEST_PG_CLUSTER  Debian cluster started when none answers (default: main)
set -euo pipefail

CALLER_DIR=$(pwd)
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
STAMP="$VENV/.govmail-setup-stamp"
PG_PASSWORD_FILE="$VENV/pg-test-password"
APT_UPDATED=0
PHASE=0

phase() {
    PHASE=$((PHASE + 1))
    printf '\n==> [%d] %s\n' "$PHASE" "$*"
}
info() { printf '    %s\n' "$*"; }
die() {
    printf '\nsetup.sh: error: %s\n' "$*" >&2
    exit 1
}
usage() {  # $1: exit status (2 for a usage error, 0 for --help)
    cat >&2 <<'EOF'
usage: ./setup.sh demo [DATA_DIR]       install and run govmail on the embedded default
       ./setup.sh test [PYTEST ARGS...]  install and run the test suite
EOF
    exit "${1:-2}"
}

# ---------------------------------------------------------------------------------------------------
# Debian packages

missing_packages() {  # the given packages that are not installed, space-separated
    local pkg out=()
    for pkg in "$@"; do
        if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" != "install ok installed" ]]; then
            out+=("$pkg")
        fi
    done
    echo "${out[*]}"
}

install_packages() {  # install the missing ones among the given Debian packages
    local missing
    command -v dpkg-query >/dev/null || die "dpkg-query not found: this script is for Debian 12 (install $* by hand elsewhere)"
    missing=$(missing_packages "$@")
    if [[ -z "$missing" ]]; then
        info "installed already: $*"
        return
    fi
    if [[ $EUID -ne 0 ]]; then
        die "missing Debian packages: $missing
Install them as root, then run this again:
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing"
    fi
    command -v apt-get >/dev/null || die "apt-get not found; install these packages by hand: $missing"
    info "installing: $missing"
    if [[ $APT_UPDATED -eq 0 ]]; then
        apt-get update -q || die "apt-get update failed (network or /etc/apt/sources.list?); could not install: $missing"
        APT_UPDATED=1
    fi
    # word splitting of $missing is intended: one argument per package
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing \
        || die "apt-get install failed for: $missing (see apt's messages above)"
    missing=$(missing_packages "$@")
    [[ -z "$missing" ]] || die "still not installed after apt-get: $missing"
}

debian_phase() {  # packages needed by every mode, plus those given
    local pkgs=(slapd ldap-utils "$@")
    if ! command -v python3 >/dev/null; then
        pkgs+=(python3 python3-venv)
    fi
    phase "Debian packages: ${pkgs[*]}"
    install_packages "${pkgs[@]}"
}

# ---------------------------------------------------------------------------------------------------
# Python virtual environment

venv_phase() {  # $1: pip extras ("" or "test")
    local extras=$1 spec=. want have=""
    [[ -n "$extras" ]] && spec=".[$extras]"
    phase "Python environment: $VENV (pip install -e '$spec')"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "govmail needs Python 3.11 or later; $(command -v python3) is $(python3 -V 2>&1) (Debian 12 has 3.11)"
    if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        rm -rf "$VENV"
        if ! python3 -m venv "$VENV" 2>/dev/null; then
            rm -rf "$VENV"
            info "python3 -m venv failed (ensurepip missing); installing Debian's python3-venv"
            install_packages python3-venv
            python3 -m venv "$VENV" || die "python3 -m venv $VENV failed even with python3-venv installed"
        fi
        info "created $VENV"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip \
            || die "could not upgrade pip in $VENV (is PyPI reachable?)"
    fi
    want="$(cat setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1)"
    [[ -f "$STAMP" ]] && have=$(cat "$STAMP")
    # The test extras include everything the demo needs.
    if [[ "$have" == "$want $extras" || ( -z "$extras" && "$have" == "$want test" ) ]]; then
        info "up to date (setup.cfg unchanged since the last install)"
        return
    fi
    PIP_NO_INPUT=1 "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec" \
        || die "pip install -e '$spec' failed (see pip's messages above)"
    echo "$want $extras" >"$STAMP"
    info "installed govmail $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("govmail"))')"
}

# ---------------------------------------------------------------------------------------------------
# PostgreSQL for the tests

pg_connects() {  # $1: SQLAlchemy URL; exit 0 when a connection works, else print why on stderr
    "$VENV/bin/python" - "$1" <<'PY'
import sys
import psycopg

url = sys.argv[1].replace("postgresql+psycopg://", "postgresql://", 1)
try:
    psycopg.connect(url, connect_timeout=5).close()
except Exception as exc:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    print(reason[:300], file=sys.stderr)
    sys.exit(1)
PY
}

as_postgres() {  # run a command as the postgres user, from a directory it can read
    (cd / && runuser -u postgres -- "$@")
}

postgres_phase() {
    local port=${GOVMAIL_TEST_PG_PORT:-5432} cluster=${GOVMAIL_TEST_PG_CLUSTER:-main}
    local url reason ver v line status password
    phase "PostgreSQL for the tests"
    if [[ -n "${GOVMAIL_TEST_PG_URL:-}" ]]; then
        reason=$(pg_connects "$GOVMAIL_TEST_PG_URL" 2>&1) \
            || die "GOVMAIL_TEST_PG_URL is set but does not connect: $reason"
        info "using GOVMAIL_TEST_PG_URL as given (${GOVMAIL_TEST_PG_URL##*@})"
        return
    fi
    url="postgresql+psycopg://postgres@127.0.0.1:$port/test"
    if reason=$(pg_connects "$url" 2>&1); then
        export GOVMAIL_TEST_PG_URL=$url
        info "PostgreSQL answers on 127.0.0.1:$port and trusts user postgres; using it"
        return
    fi
    if [[ -s "$PG_PASSWORD_FILE" ]]; then
        password=$(cat "$PG_PASSWORD_FILE")
        url="postgresql+psycopg://postgres:$password@127.0.0.1:$port/test"
    fi
    if [[ -s "$PG_PASSWORD_FILE" ]] && pg_connects "$url" 2>/dev/null; then
        export GOVMAIL_TEST_PG_URL=$url
        info "PostgreSQL answers on 127.0.0.1:$port; using user postgres with the password in $PG_PASSWORD_FILE"
        return
    fi
    info "no usable PostgreSQL on 127.0.0.1:$port ($reason)"
    if [[ $EUID -ne 0 ]]; then
        die "the tests need PostgreSQL. Either run this as root (it installs and starts Debian's
postgresql), or start one yourself and set GOVMAIL_TEST_PG_URL=postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB"
    fi
    install_packages postgresql
    ver=""
    for v in $(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -rV); do
        if [[ -d "/etc/postgresql/$v/$cluster" ]]; then
            ver=$v
            break
        fi
    done
    [[ -n "$ver" ]] || die "no PostgreSQL cluster '$cluster' under /etc/postgresql; create one with: pg_createcluster <version> $cluster"
    line=$(pg_lsclusters -h | awk -v v="$ver" -v c="$cluster" '$1 == v && $2 == c')
    port=$(awk '{print $3}' <<<"$line")
    status=$(awk '{print $4}' <<<"$line")
    if [[ "$status" != online* ]]; then
        info "starting cluster $ver/$cluster (port $port)"
        pg_ctlcluster --skip-systemctl-redirect "$ver" "$cluster" start \
            || die "could not start PostgreSQL $ver/$cluster; see /var/log/postgresql/postgresql-$ver-$cluster.log"
    else
        info "cluster $ver/$cluster is running (port $port)"
    fi
    for _ in $(seq 60); do
        pg_isready -q -h 127.0.0.1 -p "$port" && break
        sleep 0.5
    done
    pg_isready -h 127.0.0.1 -p "$port" >/dev/null \
        || die "PostgreSQL $ver/$cluster does not answer on 127.0.0.1:$port (listen_addresses in /etc/postgresql/$ver/$cluster/postgresql.conf?)"
    if [[ "$(as_postgres psql -X -q -At -p "$port" -d postgres -c "SELECT 1 FROM pg_database WHERE datname = 'test'")" != 1 ]]; then
        info "creating database test"
        as_postgres createdb -p "$port" test || die "createdb test failed on cluster $ver/$cluster"
    fi
    url="postgresql+psycopg://postgres@127.0.0.1:$port/test"
    if pg_connects "$url" 2>/dev/null; then
        export GOVMAIL_TEST_PG_URL=$url
        info "using $ver/$cluster on 127.0.0.1:$port (trust)"
        return
    fi
    # No trust over TCP (Debian's default pg_hba.conf asks for a password): give role postgres a
    # password of our own, set through the unix socket, and keep it for the next run.
    if [[ ! -s "$PG_PASSWORD_FILE" ]]; then
        (umask 077 && python3 -c 'import secrets; print(secrets.token_hex(16))' >"$PG_PASSWORD_FILE")
    fi
    password=$(cat "$PG_PASSWORD_FILE")
    info "setting a password for role postgres (kept in $PG_PASSWORD_FILE)"
    printf "ALTER ROLE postgres PASSWORD '%s';\n" "$password" \
        | as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$port" -d postgres \
        || die "could not set a password for role postgres on cluster $ver/$cluster"
    url="postgresql+psycopg://postgres:$password@127.0.0.1:$port/test"
    reason=$(pg_connects "$url" 2>&1) \
        || die "PostgreSQL $ver/$cluster refuses user postgres over TCP even with a password ($reason);
check /etc/postgresql/$ver/$cluster/pg_hba.conf, or set GOVMAIL_TEST_PG_URL"
    export GOVMAIL_TEST_PG_URL=$url
    info "using $ver/$cluster on 127.0.0.1:$port (password)"
}

# ---------------------------------------------------------------------------------------------------
# Modes

run_tests() {
    debian_phase dovecot-imapd dovecot-ldap chromium
    venv_phase test
    postgres_phase
    phase "Test suite: python -m pytest${*:+ $*}"
    local rc=0
    "$VENV/bin/python" -m pytest "$@" || rc=$?
    if [[ $rc -eq 5 ]]; then
        die "pytest collected no tests (exit 5); that counts as a failure"
    elif [[ $rc -ne 0 ]]; then
        printf '\nsetup.sh: error: the test suite failed (pytest exit %d)\n' "$rc" >&2
        exit "$rc"
    fi
    printf '\nAll tests passed (%d s in all).\n' "$SECONDS"
}

show_command() {  # print a command as one could type it (arguments with spaces etc. quoted)
    local arg q="'" line=""
    for arg in "$@"; do
        if [[ "$arg" =~ ^[][A-Za-z0-9_./:=,@+-]+$ ]]; then
            line+=" $arg"
        else
            line+=" $q${arg//$q/$q\\$q$q}$q"
        fi
    done
    printf '    $%s\n' "$line"
}

toml_get() {  # $1: config file, $2: python expression over `c` (the parsed TOML)
    "$VENV/bin/python" -c 'import sys, tomllib; c = tomllib.load(open(sys.argv[1], "rb")); print(eval(sys.argv[2]))' "$1" "$2"
}

run_demo() {
    local data_dir=${1:-$ROOT/govmail-data}
    [[ "$data_dir" = /* ]] || data_dir="$CALLER_DIR/$data_dir"
    mkdir -p "$data_dir"
    data_dir=$(cd "$data_dir" && pwd)
    local config="$data_dir/govmail.toml" agency=000.00.15.H62
    local credentials="$data_dir/staff.credentials.csv" ldap_url base_dn
    export GOVMAIL_CONFIG=$config

    debian_phase
    venv_phase ""
    gm() {
        show_command govmail "$@"
        "$VENV/bin/govmail" "$@"
    }

    phase "Data directory $data_dir"
    gm init --data-dir "$data_dir" --port 3389
    ldap_url=$(toml_get "$config" 'c["directory"]["urls"][0]')
    base_dn=$(toml_get "$config" 'c["directory"]["base_dn"]')

    phase "Start: database migrations and the embedded slapd"
    gm up

    phase "Agencies of a sample province (samples/agencies.csv)"
    gm agency import "$ROOT/samples/agencies.csv"

    phase "The main job: accounts for a whole agency from its HR spreadsheet (samples/staff.csv)"
    gm account bulk-create "$ROOT/samples/staff.csv" --agency "$agency" \
        --results "$data_dir/staff.results.csv" --credentials "$credentials"
    info "per-row results: $data_dir/staff.results.csv; initial passwords (mode 0600): $credentials"
    info "(run again: every row is reported unchanged and nothing is created twice)"
    gm account list --agency "$agency"

    phase "Its LDAP entry"
    local search=(ldapsearch -x -H "$ldap_url" -D "cn=admin,$base_dn" -y "$data_dir/secrets/ldap-admin.password"
        -b "ou=people,$base_dn" -LLL '(uid=lamnt)' uid cn mail govmailStatus)
    show_command "${search[@]}"
    "${search[@]}"
    info "(cn:: is base64, as LDIF writes any value that is not plain ASCII)"

    phase "Health check"
    gm doctor || die "govmail doctor reports a failed check (see above)"

    cat <<EOF

Done in $SECONDS s. govmail is running on $data_dir (slapd at $ldap_url). Try next:

  export GOVMAIL_CONFIG=$config
  export PATH="$VENV/bin:\$PATH"

  # log in as Nguyễn Thị Lâm (lamnt) with her initial password from the credentials file
  ldapwhoami -x -H $ldap_url -D uid=lamnt,ou=people,$base_dn \\
      -w "\$(grep '^lamnt@' $credentials | cut -d, -f4 | tr -d '\\r')"

  govmail directory verify          # LDAP matches the SQL system of record?
  govmail account list --agency $agency --format json
  govmail stats regular-use --period $(date +%Y) --by level   # regular use (after mail flows)
  govmail portal grant lamnt@vinhphuc.gov.vn --agency $agency  # make her the agency's administrator
  govmail portal run                # then open http://127.0.0.1:8080 and sign in as lamnt
  govmail --help
  govmail directory stop            # stop the embedded slapd
EOF
}

# ---------------------------------------------------------------------------------------------------

[[ $# -ge 1 ]] || usage
mode=$1
shift
case "$mode" in
    demo)
        [[ $# -le 1 ]] || usage
        run_demo "$@"
        ;;
    test) run_tests "$@" ;;
    -h | --help | help) usage 0 ;;
    *) usage ;;
esac
