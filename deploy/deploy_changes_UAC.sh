#!/usr/bin/env bash
# deploy_changes_UAC.sh [REF]: deploy a version of utopia-handler, safely.
#
#   1. refuse if the repository has uncommitted local changes (nothing is touched then)
#   2. git fetch, then export REF (default origin/main) into releases/<commit>/src
#   3. install it into a fresh virtual environment releases/<commit>/venv (pinned by the lock)
#   4. back up the SQLite database (PostgreSQL: use pg_dump), then apply the migrations
#   5. switch the `current` symlink atomically and restart the services
#   6. check /readyz (or /healthz on versions without it) and that every unit is active;
#      if that fails: switch back to the previous release, restart, check again, exit non-zero
#
# Run as root, from anywhere. Every path and name can be changed through the environment:
#   UH_ROOT          /opt/utopia-handler            releases/ and the `current` symlink
#   UH_REPO          $UH_ROOT/repo                  the git clone to fetch into
#   UH_REMOTE        origin
#   UH_STATE_DIR     /var/lib/utopia-handler        working directory of the services
#   UH_ENV_FILE      /etc/utopia-handler/env        the services' settings
#   UH_UNITS         "utopia-handler-web utopia-handler-worker"
#   UH_HEALTH_URL    http://127.0.0.1:5050/readyz
#   UH_HEALTH_TIMEOUT 60 (seconds to become healthy)   UH_HEALTH_PASSES 3 (checks in a row)
#   UH_PYTHON        python3 (3.11 or newer)        UH_RUN_AS utopia-handler ("" = this user)
#   UH_KEEP_RELEASES 5
set -euo pipefail
umask 022

ROOT=${UH_ROOT:-/opt/utopia-handler}
REPO=${UH_REPO:-$ROOT/repo}
REMOTE=${UH_REMOTE:-origin}
REF=${1:-${UH_REF:-origin/main}}
STATE_DIR=${UH_STATE_DIR:-/var/lib/utopia-handler}
ENV_FILE=${UH_ENV_FILE:-/etc/utopia-handler/env}
read -r -a UNITS <<<"${UH_UNITS:-utopia-handler-web utopia-handler-worker}"
HEALTH_URL=${UH_HEALTH_URL:-http://127.0.0.1:5050/readyz}
HEALTH_TIMEOUT=${UH_HEALTH_TIMEOUT:-60}
HEALTH_PASSES=${UH_HEALTH_PASSES:-3}
PYTHON=${UH_PYTHON:-python3}
RUN_AS=${UH_RUN_AS-utopia-handler}
KEEP=${UH_KEEP_RELEASES:-5}

# As the units do (Environment=DATA_DIR=...), unless the settings file names its own.
if ! grep -qs '^[[:space:]]*DATA_DIR=' "$ENV_FILE"; then
    export DATA_DIR=$STATE_DIR
fi

say() { printf '==> %s\n' "$*"; }
fail() {
    printf 'deploy_changes_UAC: %s\n' "$*" >&2
    exit 1
}

# The services' own user runs the application's commands, so files it creates stay its own.
as_service() {
    if [[ -n $RUN_AS && $(id -u) -eq 0 ]]; then
        (cd "$STATE_DIR" && runuser -u "$RUN_AS" -- "$@")
    else
        (cd "$STATE_DIR" && "$@")
    fi
}

# The HTTP status of GET $1, or 000 when nothing answers.
http_status() {
    "$PYTHON" - "$1" <<'PY'
import sys
import urllib.error
import urllib.request

try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as answer:
        print(answer.status)
except urllib.error.HTTPError as error:
    print(error.code)
except Exception:
    print("000")
PY
}

units_active() {
    local unit
    for unit in "${UNITS[@]}"; do
        systemctl is-active --quiet "$unit" || return 1
    done
}

# Healthy = the health URL answers 200 and every unit is active, HEALTH_PASSES times in a row.
healthy() {
    local url=$HEALTH_URL passes=0 status=000 deadline=$((SECONDS + HEALTH_TIMEOUT))
    while ((SECONDS < deadline)); do
        status=$(http_status "$url")
        if [[ $status == 404 && $url == */readyz ]]; then
            url=${url%/readyz}/healthz
            say "this version has no /readyz; checking $url instead"
            continue
        fi
        if [[ $status == 200 ]] && units_active; then
            passes=$((passes + 1))
            if ((passes >= HEALTH_PASSES)); then
                say "healthy: $url answered 200 and ${UNITS[*]} are active"
                return 0
            fi
        else
            passes=0
        fi
        sleep 1
    done
    say "NOT healthy after ${HEALTH_TIMEOUT}s: $url last answered $status"
    return 1
}

switch_to() {
    ln -sfn "$1" "$ROOT/.current.new"
    mv -Tf "$ROOT/.current.new" "$ROOT/current" # rename(2): never a moment without `current`
}

restart_units() {
    say "restarting ${UNITS[*]}"
    systemctl restart "${UNITS[@]}" || say "systemctl restart failed (exit $?)"
}

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
    fail "$PYTHON is not Python 3.11 or newer; set UH_PYTHON (e.g. UH_PYTHON=python3.11)"

# 1. Local changes ---------------------------------------------------------------------------
[[ -d $REPO/.git ]] || fail "$REPO is not a git clone (set UH_REPO)"
cd "$REPO"
if [[ -n $(git status --porcelain) ]]; then
    git status --short >&2
    fail "$REPO has uncommitted local changes; commit or discard them first. Nothing was changed."
fi

mkdir -p "$ROOT/releases"
exec 9>"$ROOT/.deploy.lock"
flock -n 9 || fail "another deploy is running (lock: $ROOT/.deploy.lock)"

# 2. Fetch -----------------------------------------------------------------------------------
say "fetching from $REMOTE into $REPO"
git fetch --quiet --tags "$REMOTE"
commit=$(git rev-parse --verify --quiet "$REF^{commit}") || fail "no such version: $REF"
short=${commit:0:12}
release=$ROOT/releases/$short
if git symbolic-ref --quiet HEAD >/dev/null; then
    unpushed=$(git rev-list --count "$commit..HEAD")
    if ((unpushed > 0)); then
        say "warning: $(git symbolic-ref --short HEAD) has $unpushed local commit(s) not in $REF; they are not deployed"
    fi
fi
previous=""
if [[ -L $ROOT/current ]]; then
    previous=$(readlink -f "$ROOT/current")
fi
say "deploying $REF = $short ($(git log -1 --format=%s "$commit"))"
if [[ ${previous##*/} == "$short" ]]; then
    say "$short is already the current release; nothing to do"
    exit 0
fi
say "current release: ${previous:-none (first install)}"

# 3. Install into a fresh virtual environment -------------------------------------------------
if [[ -f $release/.installed && -x $release/venv/bin/utopia-handler ]]; then
    say "release $short was installed before; reusing $release"
else
    rm -rf "$release"
    mkdir -p "$release/src"
    say "exporting $short into $release/src"
    git archive "$commit" | tar -x -C "$release/src"
    say "creating a fresh virtual environment in $release/venv"
    if "$PYTHON" -m pip --version >/dev/null 2>&1; then
        # This Python's own pip installs into the new environment: seconds faster than seeding
        # a pip into every release, which then never needs one.
        "$PYTHON" -m venv --without-pip "$release/venv"
        pip=("$PYTHON" -m pip --python "$release/venv/bin/python")
    else
        "$PYTHON" -m venv "$release/venv"
        pip=("$release/venv/bin/python" -m pip)
    fi
    say "installing utopia-handler and its pinned dependencies (requirements/lock.txt)"
    # The lock pins every version; -c installs only what the package needs (no test tools).
    "${pip[@]}" install --quiet --disable-pip-version-check \
        -c "$release/src/requirements/lock.txt" "$release/src"
    "$release/venv/bin/utopia-handler" --help >/dev/null
    printf '%s\n' "$commit" >"$release/.installed"
fi
cli=("$release/venv/bin/utopia-handler" --env-file "$ENV_FILE")

# 4. Backup and migrations, before anything switches ---------------------------------------------
if [[ -n $previous ]]; then
    settings=$(as_service "${cli[@]}" check-config --lenient) ||
        fail "the new release cannot read $ENV_FILE (see above); nothing was switched"
    database=$(sed -n 's/^database_url = //p' <<<"$settings")
    if [[ $database == sqlite* ]]; then
        backup=$STATE_DIR/backups/before-$short-$(date -u +%Y%m%dT%H%M%SZ).db
        say "backing up the SQLite database to $backup"
        as_service "${cli[@]}" db backup "$backup" || fail "the backup failed; nothing was switched"
        # Keep the ten newest of these.
        find "$STATE_DIR/backups" -maxdepth 1 -name 'before-*.db' -printf '%T@ %p\n' |
            sort -rn | tail -n +11 | cut -d' ' -f2- | xargs -r rm -f --
    else
        say "the database is not SQLite: no automatic backup (take one with pg_dump)"
    fi
fi
say "applying database migrations"
as_service "${cli[@]}" db upgrade || fail "migrations failed; still running ${previous:-nothing}, nothing was switched"

# 5. Switch and restart -------------------------------------------------------------------------
say "switching $ROOT/current to $release"
switch_to "$release"
restart_units

# 6. Check, or roll back ------------------------------------------------------------------------
if healthy; then
    # Old releases go, except the newest $KEEP and the one we came from.
    while IFS= read -r old; do
        if [[ ${old##*/} != "$short" && ${old##*/} != "${previous##*/}" ]]; then
            say "removing old release $old"
            rm -rf "$old"
        fi
    done < <(find "$ROOT/releases" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %p\n' |
        sort -rn | tail -n +"$((KEEP + 1))" | cut -d' ' -f2-)
    say "deployed $short"
    exit 0
fi

if [[ -z $previous ]]; then
    fail "$short is not healthy and there is no earlier release to go back to; see journalctl -u ${UNITS[0]}"
fi
say "ROLLING BACK to $previous"
switch_to "$previous"
restart_units
if healthy; then
    printf 'deploy_changes_UAC: %s failed its health check; ROLLED BACK to %s, which is healthy.\n' \
        "$short" "$(basename "$previous")" >&2
    printf 'deploy_changes_UAC: see journalctl -u %s for why %s did not come up.\n' \
        "${UNITS[0]}" "$short" >&2
    exit 1
fi
printf 'deploy_changes_UAC: %s failed, and the rollback to %s is NOT healthy either: act now (journalctl -u %s).\n' \
    "$short" "$(basename "$previous")" "${UNITS[0]}" >&2
exit 2
