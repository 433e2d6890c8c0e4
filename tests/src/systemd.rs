//! A stand-in for systemd on a test sshd's host. These machines run no
//! systemd, so `FakeSystemd::install` puts shell scripts named `systemctl`,
//! `journalctl` and `sudo` first on the PATH of the sshd's sessions (its
//! `bin` directory). They speak exactly the command forms Shellway sends:
//!
//! - `systemctl show -p P1,P2,… -- unit…`: one `Key=Value` block per unit,
//!   in the order given, separated by blank lines;
//! - `systemctl start|stop|restart|reload|enable|disable -- unit`;
//! - `journalctl -u unit [-f] -n N --no-pager -o short-iso`;
//! - `sudo -n cmd args…`: runs the command when a line of the fake's
//!   sudoers file allows exactly `/usr/bin/cmd args…`, else refuses as
//!   sudo does without a password (`sudo: a password is required`, exit 1).
//!   (Real sudo is not installed here, and the tests run as root, whom it
//!   would never ask.)
//!
//! A running unit is a real background process (its own session, so a
//! canceled command does not take it along) that writes a journal line
//! every 200 ms; its pid is the unit's `MainPID`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Sshd;

const SYSTEMCTL: &str = r#"#!/bin/bash
# Fake systemctl for Shellway's tests (tests/src/systemd.rs).
S="__STATE__"
die() { echo "$1" >&2; exit "${2:-1}"; }
now() { date -u +%Y-%m-%dT%H:%M:%S+0000; }
journal() { echo "$(now) testhost $1[$2]: $3" >> "$S/units/$1/log"; }
running() { [ -f "$S/units/$1/pid" ] && kill -0 "$(cat "$S/units/$1/pid")" 2>/dev/null; }
known() { [ -d "$S/units/$1" ]; }
start() {
  known "$1" || die "Failed to start $1: Unit $1 not found." 5
  running "$1" && return 0
  if [ -f "$S/units/$1/broken" ]; then
    touch "$S/units/$1/failed"; rm -f "$S/units/$1/pid"
    journal "$1" 1 "Failed to start $1."
    die "Job for $1 failed because the control process exited with error code." 1
  fi
  rm -f "$S/units/$1/failed"
  setsid "$S/daemon" "$1" "$S/units/$1" </dev/null >/dev/null 2>&1 &
  echo $! > "$S/units/$1/pid"
  now > "$S/units/$1/since"
}
stop() {
  known "$1" || die "Failed to stop $1: Unit $1 not loaded." 5
  if running "$1"; then kill "$(cat "$S/units/$1/pid")" 2>/dev/null; fi
  rm -f "$S/units/$1/pid" "$S/units/$1/failed"
}
prop() { # unit property
  local u="$1" active=inactive sub=dead pid=0 since="" load=loaded file=disabled
  if ! known "$u"; then load=not-found; file=""
  elif running "$u"; then active=active; sub=running; pid=$(cat "$S/units/$u/pid"); since=$(cat "$S/units/$u/since")
  elif [ -f "$S/units/$u/failed" ]; then active=failed; sub=failed
  fi
  known "$u" && [ -f "$S/units/$u/enabled" ] && file=enabled
  case "$2" in
    LoadState) echo "LoadState=$load";; ActiveState) echo "ActiveState=$active";;
    SubState) echo "SubState=$sub";; UnitFileState) echo "UnitFileState=$file";;
    MainPID) echo "MainPID=$pid";; ActiveEnterTimestamp) echo "ActiveEnterTimestamp=$since";;
    *) echo "$2=";;
  esac
}
echo "systemctl $*" >> "$S/calls"
case "$1" in
  show)
    [ "$2" = "-p" ] && [ "$4" = "--" ] || die "fake systemctl: usage: show -p PROPS -- UNIT..." 2
    IFS=, read -r -a props <<< "$3"; shift 4; first=1
    # One write, as systemctl's buffered stdout does.
    out=$(for u in "$@"; do
      [ $first = 1 ] || echo; first=0
      for p in "${props[@]}"; do prop "$u" "$p"; done
    done)
    printf '%s\n' "$out";;
  start|stop|restart|reload|enable|disable)
    [ "$#" = 3 ] && [ "$2" = "--" ] || die "fake systemctl: usage: $1 -- UNIT" 2
    u="$3"
    case "$1" in
      start) start "$u"; journal "$u" 1 "Started $u.";;
      stop) stop "$u"; journal "$u" 1 "Stopped $u.";;
      restart) stop "$u"; start "$u"; journal "$u" 1 "Restarted $u.";;
      reload) running "$u" || die "Failed to reload $u: Job type reload is not applicable for unit $u." 1
              journal "$u" 1 "Reloaded $u.";;
      enable) known "$u" || die "Failed to enable unit: Unit file $u does not exist." 1
              touch "$S/units/$u/enabled"; echo "Created symlink /etc/systemd/system/multi-user.target.wants/$u." >&2;;
      disable) known "$u" || die "Failed to disable unit: Unit file $u does not exist." 1
              rm -f "$S/units/$u/enabled"; echo "Removed /etc/systemd/system/multi-user.target.wants/$u." >&2;;
    esac;;
  *) die "fake systemctl: unsupported: $*" 2;;
esac
"#;

const DAEMON: &str = r#"#!/bin/bash
# A unit's main process: a journal line every 200 ms until stopped.
u="$1"; d="$2"; n=0
trap 'echo "$(date -u +%Y-%m-%dT%H:%M:%S+0000) testhost $u[$$]: stopping" >> "$d/log"; exit 0' TERM
# Ends on its own once the test's scratch directory is gone, or after 10
# minutes: a test that died before stopping it leaves nothing running.
while [ -d "$d" ] && [ "$n" -lt 3000 ]; do
  n=$((n+1))
  echo "$(date -u +%Y-%m-%dT%H:%M:%S+0000) testhost $u[$$]: tick $n" >> "$d/log"
  sleep 0.2
done
"#;

const JOURNALCTL: &str = r#"#!/bin/bash
# Fake journalctl for Shellway's tests (tests/src/systemd.rs).
S="__STATE__"
echo "journalctl $*" >> "$S/calls"
[ "$1" = "-u" ] || { echo "fake journalctl: usage: -u UNIT [-f] -n N --no-pager -o short-iso" >&2; exit 2; }
u="$2"; shift 2; follow=""
[ "$1" = "-f" ] && { follow=1; shift; }
[ "$1" = "-n" ] && [ "$3" = "--no-pager" ] && [ "$4" = "-o" ] && [ "$5" = "short-iso" ] && [ "$#" = 5 ] \
  || { echo "fake journalctl: unsupported: $*" >&2; exit 2; }
n="$2"; log="$S/units/$u/log"
[ -f "$log" ] || { echo "-- No entries --"; [ -z "$follow" ] && exit 0; touch "$log" 2>/dev/null || exit 1; }
if [ -n "$follow" ]; then exec tail -n "$n" -F "$log"; else exec tail -n "$n" "$log"; fi
"#;

const SUDO: &str = r#"#!/bin/bash
# Fake `sudo -n` for Shellway's tests (tests/src/systemd.rs): allows
# exactly the commands its sudoers file lists, refuses the rest as real
# sudo does when it would need a password.
S="__STATE__"
[ "$1" = "-n" ] || { echo "fake sudo: only -n is supported" >&2; exit 1; }
shift
want="/usr/bin/$*"
while IFS= read -r line; do
  [ "${line#*NOPASSWD: }" = "$want" ] && exec "$@"
done < "$S/sudoers"
echo "sudo: a password is required" >&2
exit 1
"#;

/// The fakes installed on one sshd's host, and their state.
pub struct FakeSystemd {
    state: PathBuf,
}

fn write_script(path: &Path, text: &str, state: &Path) {
    std::fs::write(
        path,
        text.replace("__STATE__", &state.display().to_string()),
    )
    .unwrap();
    Command::new("chmod").arg("755").arg(path).status().unwrap();
}

impl FakeSystemd {
    /// Puts `systemctl`, `journalctl` and `sudo` on the PATH of `sshd`'s
    /// sessions; no units yet and an empty sudoers file.
    pub fn install(sshd: &Sshd) -> Self {
        let state = sshd.dir.join("systemd");
        std::fs::create_dir_all(state.join("units")).unwrap();
        std::fs::write(state.join("sudoers"), "").unwrap();
        let bin = sshd.dir.join("bin");
        write_script(&bin.join("systemctl"), SYSTEMCTL, &state);
        write_script(&bin.join("journalctl"), JOURNALCTL, &state);
        write_script(&bin.join("sudo"), SUDO, &state);
        write_script(&state.join("daemon"), DAEMON, &state);
        Self { state }
    }

    fn unit_dir(&self, unit: &str) -> PathBuf {
        self.state.join("units").join(unit)
    }

    /// A unit that starts and runs.
    pub fn add_unit(&self, unit: &str) {
        std::fs::create_dir_all(self.unit_dir(unit)).unwrap();
    }

    /// A unit whose start fails (it ends `failed`).
    pub fn add_broken_unit(&self, unit: &str) {
        self.add_unit(unit);
        std::fs::write(self.unit_dir(unit).join("broken"), "").unwrap();
    }

    /// Runs the fake `systemctl` here, as the host would (test setup).
    pub fn systemctl(&self, args: &[&str]) -> std::process::Output {
        let bin = self.state.parent().unwrap().join("bin").join("systemctl");
        Command::new(bin).args(args).output().unwrap()
    }

    /// The unit's main process, when it runs.
    pub fn pid(&self, unit: &str) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.unit_dir(unit).join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let alive = Command::new("kill")
            .args(["-0", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        alive.then_some(pid)
    }

    /// The unit's journal file (what `journalctl -u` reads).
    pub fn log_path(&self, unit: &str) -> PathBuf {
        self.unit_dir(unit).join("log")
    }

    /// Adds a sudoers line (as the API shows it) to what `sudo -n` allows.
    pub fn allow_sudo(&self, line: &str) {
        let path = self.state.join("sudoers");
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text.push_str(line);
        text.push('\n');
        std::fs::write(path, text).unwrap();
    }

    /// Every command line the fakes were called with, in order.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.state.join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for FakeSystemd {
    /// Stops every unit's process: nothing outlives the test.
    fn drop(&mut self) {
        let Ok(units) = std::fs::read_dir(self.state.join("units")) else {
            return;
        };
        for unit in units.flatten() {
            if let Ok(pid) = std::fs::read_to_string(unit.path().join("pid")) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
}
