"""The shell steps, run for real in a temporary folder (they are runnable by hand)."""
import os
import stat
import subprocess

from testdata import ROOT

INSTALL = ROOT / "scripts" / "install-file.sh"


def install(src, dest, mode=None):
    env = {"PATH": os.environ["PATH"], "SRC": str(src), "DEST": str(dest)}
    if mode:
        env["MODE"] = mode
    return subprocess.run(["bash", str(INSTALL)], env=env, capture_output=True, text=True)


def test_install_then_unchanged_then_backup(tmp_path):
    src, dest = tmp_path / "new.yaml", tmp_path / "etc" / "config.yaml"
    src.write_text("a: 1\n")
    first = install(src, dest, "0600")
    assert first.returncode == 0 and first.stdout == f"changed {dest}\n"
    assert dest.read_text() == "a: 1\n" and stat.S_IMODE(dest.stat().st_mode) == 0o600

    again = install(src, dest, "0600")
    assert again.stdout == f"unchanged {dest}\n"

    src.write_text("a: 2\n")
    changed = install(src, dest, "0600")
    assert changed.stdout == f"backup {dest}.gpuhub-backup\nchanged {dest}\n"
    assert (tmp_path / "etc" / "config.yaml.gpuhub-backup").read_text() == "a: 1\n"
    assert stat.S_IMODE((tmp_path / "etc" / "config.yaml.gpuhub-backup").stat().st_mode) == 0o600
    assert sorted(p.name for p in (tmp_path / "etc").iterdir()) == ["config.yaml", "config.yaml.gpuhub-backup"]


def test_mode_change_alone_is_a_change(tmp_path):
    src, dest = tmp_path / "s", tmp_path / "d"
    src.write_text("x\n")
    install(src, dest, "0644")
    assert install(src, dest, "0600").stdout.endswith(f"changed {dest}\n")
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600


def test_bad_input_changes_nothing(tmp_path):
    src, dest = tmp_path / "s", tmp_path / "d"
    src.write_text("x\n")
    dest.write_text("old\n")
    bad_mode = install(src, dest, "rwx")
    assert bad_mode.returncode == 2 and "MODE must be octal" in bad_mode.stderr
    missing = install(tmp_path / "nope", dest)
    assert missing.returncode == 2 and "is not a file" in missing.stderr
    assert dest.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "s"]
