#!/usr/bin/env bash
# The Debian package, end to end: build it (cargo deb), install it with dpkg -i, check its files,
# user, unit and config, run the installed binary once as the package's user, remove it, purge it.
#   tests/deb.sh            (root, or sudo without a password; otherwise it says SKIP and exits 0)
#   tests/deb.sh FILE.deb   test a package built before instead of running cargo deb
# Needs cargo-deb (`cargo install cargo-deb --locked`), promtool, curl, python3, systemd-analyze.
# The exporter it starts listens on a free 127.0.0.1 port and probes 127.0.0.1:25 (the package's
# default config): loopback only. Leaves no package, user, file or process behind, also on failure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

pkg=mailtls-exporter
user=mailtls_exporter
bin=/usr/bin/mailtls_exporter
conf=/etc/mailtls_exporter/mailtls_exporter.yml
unit=/usr/lib/systemd/system/mailtls_exporter.service
share=/usr/share/mailtls_exporter
doc=/usr/share/doc/$pkg

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
  else
    echo "SKIP  tests/deb.sh: installing a package needs root or password-less sudo"
    exit 0
  fi
fi
as_root() { $sudo env DEBIAN_FRONTEND=noninteractive "$@"; }

for tool in promtool curl python3 systemd-analyze dpkg-deb setpriv; do
  command -v "$tool" >/dev/null || { echo "FAIL  $tool not found"; exit 1; }
done
cargo deb --version >/dev/null 2>&1 ||
  { echo "FAIL  cargo-deb not installed: cargo install cargo-deb --locked"; exit 1; }

if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -qv "not-installed"; then
  echo "FAIL  $pkg is already known to dpkg on this machine; this test installs and purges it."
  echo "      Remove it first: apt-get purge $pkg"
  exit 1
fi
user_existed=0
getent passwd "$user" >/dev/null && user_existed=1

tmp="$(mktemp -d)"
daemon_pid=""    # the background job started below
exporter_pid=""  # the exporter process (the same as daemon_pid when run as root)
cleanup() {
  local rc=$?
  for p in $exporter_pid $daemon_pid; do
    as_root kill -KILL "$p" 2>/dev/null || true
  done
  [ -z "$daemon_pid" ] || wait "$daemon_pid" 2>/dev/null || true
  if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -qv "not-installed"; then
    echo "tests/deb.sh: cleanup: purging $pkg"
    as_root apt-get purge -y -qq "$pkg" >/dev/null 2>&1 || as_root dpkg --purge "$pkg" >/dev/null 2>&1 || true
  fi
  if [ "$user_existed" -eq 0 ] && getent passwd "$user" >/dev/null; then
    as_root deluser --quiet --system "$user" >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT

ok() { echo "ok    $*"; }
fail() { echo "FAIL  $*"; exit 1; }
# expect_mode PATH MODE OWNER:GROUP
expect_mode() {
  local got
  got="$(stat -c '%a %U:%G' "$1" 2>/dev/null)" || fail "$1 missing"
  [ "$got" = "$2 $3" ] || fail "$1: mode/owner '$got', want '$2 $3'"
  ok "$1 $2 $3"
}
status_of() { dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || echo "not-installed"; }

# --- build ---------------------------------------------------------------------------------
if [ $# -gt 0 ]; then
  deb="$1"
  [ -f "$deb" ] || fail "$deb: no such file"
  ok "testing $deb (not rebuilt)"
else
  echo "tests/deb.sh: cargo deb"
  start=$SECONDS
  cargo deb --locked >"$tmp/cargo-deb.out" 2>"$tmp/cargo-deb.err" ||
    { cat "$tmp/cargo-deb.err"; fail "cargo deb"; }
  # It prints the path of each package it wrote: the .deb and the -dbgsym .ddeb.
  deb="$(grep '\.deb$' "$tmp/cargo-deb.out" | tail -n 1)"
  [ -f "$deb" ] || fail "cargo deb did not print the .deb path (got '$deb')"
  ok "cargo deb: $deb ($((SECONDS - start)) s)"
fi

# --- the package as built --------------------------------------------------------------------
[ "$(dpkg-deb -f "$deb" Package)" = "$pkg" ] || fail "Package field is not $pkg"
depends="$(dpkg-deb -f "$deb" Depends)"
case "$depends" in *adduser*) ;; *) fail "Depends lacks adduser: $depends" ;; esac
case "$depends" in *libc6*) ;; *) fail "Depends lacks libc6 (shlibdeps): $depends" ;; esac
ok "control: Package $pkg, Depends $depends"
dpkg-deb -e "$deb" "$tmp/control"
printf '%s\n' /etc/default/mailtls_exporter "$conf" >"$tmp/want-conffiles"
sort "$tmp/control/conffiles" | diff -u "$tmp/want-conffiles" - || fail "conffiles differ"
ok "conffiles: $(tr '\n' ' ' <"$tmp/control/conffiles")"
grep -q 'adduser .*--system' "$tmp/control/postinst" || fail "postinst creates no system user"
grep -q 'deb-systemd-helper enable' "$tmp/control/postinst" || fail "postinst does not enable the unit"
grep -q '_dh_action=start' "$tmp/control/postinst" && grep -q 'deb-systemd-invoke .*mailtls_exporter.service' "$tmp/control/postinst" ||
  fail "postinst does not start the unit"
grep -q 'deb-systemd-invoke stop' "$tmp/control/prerm" || fail "prerm does not stop the unit"
grep -q 'deluser' "$tmp/control/postrm" || fail "postrm does not remove the user on purge"
for s in postinst prerm postrm; do
  sh -n "$tmp/control/$s" || fail "$s: shell syntax"
done
ok "maintainer scripts: user, enable/start, stop, purge"

# --- install -------------------------------------------------------------------------------
echo "tests/deb.sh: dpkg -i"
as_root dpkg -i "$deb" >"$tmp/dpkg-i.out" 2>&1 || { cat "$tmp/dpkg-i.out"; fail "dpkg -i"; }
[ "$(status_of)" = "install ok installed" ] || fail "status after dpkg -i: $(status_of)"
ok "dpkg -i: install ok installed"

IFS=: read -r _ _ uid gid _ home shell < <(getent passwd "$user") || fail "user $user missing"
[ "$uid" -lt 1000 ] || fail "user $user is not a system user (uid $uid)"
[ "$(getent group "$user" | cut -d: -f3)" = "$gid" ] || fail "group $user is not the user's primary group"
case "$shell" in */nologin|/bin/false) ;; *) fail "user $user has a login shell: $shell" ;; esac
[ ! -e "$home" ] || fail "user $user has a home directory $home"
ok "system user $user: uid $uid, group $gid, home $home, shell $shell"

expect_mode "$bin" 755 root:root
expect_mode /etc/mailtls_exporter 750 "root:$user"
expect_mode "$conf" 640 "root:$user"
expect_mode /etc/default/mailtls_exporter 644 root:root
expect_mode "$unit" 644 root:root
for f in mailtls.rules.yml prometheus.yml probe-scrape.yml alertmanager.yml mailtls.json example.yml; do
  expect_mode "$share/$f" 644 root:root
done
for f in README.md README.deploy.md copyright; do
  expect_mode "$doc/$f" 644 root:root
done
grep -q 'License: Apache-2.0' "$doc/copyright" || fail "$doc/copyright names no license"
cmp -s grafana/mailtls.json "$share/mailtls.json" || fail "$share/mailtls.json differs from grafana/mailtls.json"
cmp -s deploy/prometheus/mailtls.rules.yml "$share/mailtls.rules.yml" || fail "installed rules differ"
promtool check rules "$share/mailtls.rules.yml" >/dev/null || fail "promtool check rules $share/mailtls.rules.yml"
ok "installed rules and dashboard are the repository's; rules pass promtool"

dpkg -L "$pkg" >"$tmp/list"
for f in "$bin" "$conf" /etc/default/mailtls_exporter "$unit" "$share/mailtls.rules.yml" \
         "$share/mailtls.json" "$share/alertmanager.yml" "$doc/copyright" "$doc/README.md"; do
  grep -qx "$f" "$tmp/list" || fail "dpkg -L $pkg does not list $f"
done
ok "dpkg -L $pkg lists $(grep -c . "$tmp/list") paths, every expected file among them"
# The package owns nothing outside these trees (no stray target/ paths and such).
if grep -v -E '^/(\.|usr|usr/bin|usr/share|usr/share/doc|usr/lib|usr/lib/systemd|usr/lib/systemd/system|etc|etc/default)$' "$tmp/list" |
   grep -v -E "^($bin|/etc/mailtls_exporter(/.*)?|/etc/default/mailtls_exporter|$unit|$share(/.*)?|$doc(/.*)?)$"; then
  fail "dpkg -L lists unexpected paths (above)"
fi
ok "no unexpected paths in the package"

# The installed unit, as installed (its binary exists now, its user too).
systemd-analyze verify "$unit" >"$tmp/verify" 2>&1 || { cat "$tmp/verify"; fail "systemd-analyze verify $unit"; }
if grep -q . "$tmp/verify"; then cat "$tmp/verify"; fail "systemd-analyze verify $unit printed warnings"; fi
ok "systemd-analyze verify $unit"
systemd-analyze security --offline=true --threshold=20 "$unit" >"$tmp/security" 2>&1 ||
  { tail -n 5 "$tmp/security"; fail "systemd-analyze security --offline: exposure above 2.0"; }
ok "systemd-analyze security --offline: $(grep -o 'Overall exposure level.*' "$tmp/security" | sed 's/\x1b\[[0-9;]*m//g')"
# deb-systemd-helper enables the unit with or without systemd running (it only writes links).
wants=/etc/systemd/system/multi-user.target.wants/mailtls_exporter.service
[ -L "$wants" ] && [ "$(readlink -f "$wants")" = "$(readlink -f "$unit")" ] ||
  fail "unit not enabled: $wants -> '$(readlink "$wants" || true)'"
ok "unit enabled: $wants -> $(readlink "$wants")"
if [ -d /run/systemd/system ]; then
  systemctl is-active --quiet mailtls_exporter || fail "unit not started (systemd is running)"
  ok "unit started (systemd is running)"
else
  ok "systemd is not PID 1 here: install succeeded, the unit was not started"
fi

# --- the installed binary, config and user ---------------------------------------------------
"$bin" check-config --config.file="$conf" >"$tmp/cc" 2>&1 || { cat "$tmp/cc"; fail "check-config (root)"; }
ok "$bin check-config --config.file=$conf"
run_as_user() { as_root setpriv --reuid="$user" --regid="$user" --init-groups -- "$@"; }
run_as_user "$bin" check-config --config.file="$conf" >"$tmp/cc" 2>&1 ||
  { cat "$tmp/cc"; fail "check-config as $user: the group cannot read the config"; }
ok "check-config as $user (group-readable config)"
if as_root setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$bin" check-config --config.file="$conf" >"$tmp/cc" 2>&1; then
  fail "user nobody can read $conf: it should be readable by root and group $user only"
fi
grep -q 'Permission denied' "$tmp/cc" || { cat "$tmp/cc"; fail "check-config as nobody failed, but not for lack of permission"; }
ok "user nobody cannot read $conf"

# Start it as the unit would (ExecStart= of the installed unit, ARGS from /etc/default), as the
# package's user, on a free loopback port.
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
exec_start="$(sed -n 's/^ExecStart=//p' "$unit")"
ARGS=""
# shellcheck disable=SC1091
. /etc/default/mailtls_exporter
read -r -a cmd <<<"${exec_start//\$ARGS/$ARGS} --web.listen-address=127.0.0.1:$port"
[ "${cmd[0]}" = "$bin" ] || fail "ExecStart does not run $bin: ${cmd[*]}"
# exec: $! is then the exporter itself (as root; under sudo it is sudo, which relays signals).
( exec $sudo setpriv --reuid="$user" --regid="$user" --init-groups -- "${cmd[@]}" ) >"$tmp/daemon.log" 2>&1 &
daemon_pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "$base/-/healthy" 2>/dev/null && break
  kill -0 "$daemon_pid" 2>/dev/null || { cat "$tmp/daemon.log"; fail "the installed exporter exited"; }
  sleep 0.1
done
curl -fsS "$base/-/healthy" >/dev/null || { cat "$tmp/daemon.log"; fail "$base/-/healthy"; }
ok "${cmd[*]} (as $user): /-/healthy"
pid="$(pgrep -f "^$bin .*--web.listen-address=127.0.0.1:$port\$")" || fail "no $bin process found"
exporter_pid="$pid"
[ "$(ps -o uid= -p "$pid" | tr -d ' ')" = "$uid" ] || fail "the exporter (pid $pid) does not run as $user"
ok "the exporter (pid $pid) runs as $user (uid $uid)"
# Wait for the first probe of 127.0.0.1:25 (refused or answered: either is a result).
for _ in $(seq 1 150); do
  curl -fsS "$base/metrics" >"$tmp/metrics" 2>/dev/null || true
  grep -q '^mailtls_probe_success{' "$tmp/metrics" && break
  sleep 0.2
done
grep -q '^mailtls_probe_success{target="\[127.0.0.1\]"}' "$tmp/metrics" ||
  { cat "$tmp/daemon.log"; fail "no probe result for the default target [127.0.0.1] in /metrics"; }
grep -q '^mailtls_smtp_up{.*address="127.0.0.1"}' "$tmp/metrics" || fail "no mailtls_smtp_up for 127.0.0.1"
grep -q '^mailtls_config_last_reload_successful 1' "$tmp/metrics" || fail "config not loaded"
promtool check metrics <"$tmp/metrics" >"$tmp/promtool" 2>&1 || { cat "$tmp/promtool"; fail "promtool check metrics"; }
ok "/metrics: probe result for [127.0.0.1] (the default target), config loaded, promtool check metrics clean"

# --- remove ----------------------------------------------------------------------------------
# The exporter is still running: without systemd the package's prerm stops it (with systemd,
# deb-systemd-invoke stop does), so removal leaves no exporter behind.
echo "tests/deb.sh: apt-get remove"
as_root apt-get remove -y -qq "$pkg" >"$tmp/remove.out" 2>&1 || { cat "$tmp/remove.out"; fail "apt-get remove"; }
for _ in $(seq 1 50); do
  [ "$(ps -o stat= -p "$daemon_pid" 2>/dev/null | cut -c1)" = "Z" ] && break
  kill -0 "$daemon_pid" 2>/dev/null || break
  sleep 0.1
done
if ! [ "$(ps -o stat= -p "$daemon_pid" 2>/dev/null | cut -c1)" = "Z" ] && kill -0 "$daemon_pid" 2>/dev/null; then
  fail "the exporter (pid $daemon_pid) still runs after apt-get remove"
fi
rc=0
wait "$daemon_pid" || rc=$?
daemon_pid=""
exporter_pid=""
[ "$rc" -eq 0 ] || { cat "$tmp/daemon.log"; fail "the exporter exited $rc on removal (want a clean SIGTERM shutdown, 0)"; }
if pgrep -f "^$bin( |$)" >/dev/null; then fail "a $bin process is left: $(pgrep -af "^$bin( |$)")"; fi
ok "apt-get remove stopped the exporter (exit 0), no $bin process left"
[ ! -e "$bin" ] || fail "$bin still there after remove"
[ ! -e "$unit" ] || fail "$unit still there after remove"
[ ! -e "$share" ] || fail "$share still there after remove"
[ -f "$conf" ] || fail "$conf gone after remove (conffiles stay until purge)"
getent passwd "$user" >/dev/null || fail "user $user gone after remove (kept until purge)"
[ "$(status_of)" = "deinstall ok config-files" ] || fail "status after remove: $(status_of)"
ok "after remove: binary, unit, $share gone; conffiles and user kept (deinstall ok config-files)"

# --- purge -----------------------------------------------------------------------------------
echo "tests/deb.sh: apt-get purge"
as_root apt-get purge -y -qq "$pkg" >"$tmp/purge.out" 2>&1 || { cat "$tmp/purge.out"; fail "apt-get purge"; }
[ ! -e /etc/mailtls_exporter ] || fail "/etc/mailtls_exporter still there after purge"
[ ! -e /etc/default/mailtls_exporter ] || fail "/etc/default/mailtls_exporter still there after purge"
! getent passwd "$user" >/dev/null || fail "user $user still there after purge"
! getent group "$user" >/dev/null || fail "group $user still there after purge"
if as_root dpkg-statoverride --list | grep -q mailtls_exporter; then fail "stat overrides left after purge"; fi
for l in "$wants" /etc/systemd/system/mailtls_exporter.service; do
  [ ! -L "$l" ] && [ ! -e "$l" ] || fail "$l left after purge (enable link or mask)"
done
case "$(status_of)" in *not-installed) ;; *) fail "status after purge: $(status_of)" ;; esac
ok "after purge: conffiles, config directory, stat overrides, unit links, user and group gone"
echo "tests/deb.sh: all package checks passed"
