"""The shell steps, run for real in a temporary folder (they are runnable by hand)."""
import os
import stat
import subprocess
from pathlib import Path

from testdata import ROOT

INSTALL = ROOT / "scripts" / "install-file.sh"


def install(src, dest, mode=None, **more):
    """install-file.sh with its backups under the test's folder (never /var/backups here)."""
    backups = dest.parent.parent / "backups"
    env = {"PATH": os.environ["PATH"], "SRC": str(src or ""), "DEST": str(dest), "BACKUP_ROOT": str(backups), **more}
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
    backup = tmp_path / "backups" / str(dest).lstrip("/")
    assert changed.stdout == f"backup {backup}\nchanged {dest}\n"
    assert backup.read_text() == "a: 1\n" and stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "backups").stat().st_mode) == 0o700
    # Nothing left beside the target: no temp file, no backup in the target's folder.
    assert sorted(p.name for p in (tmp_path / "etc").iterdir()) == ["config.yaml"]


def test_a_staged_file_is_renamed_into_place_and_never_left(tmp_path):
    dest = tmp_path / "etc" / "config.yaml"
    dest.parent.mkdir()
    staged = dest.parent / ".gpuhub-stage.abc123"
    staged.write_text("a: 1\n")
    inode = staged.stat().st_ino
    result = install(staged, dest, "0600", REMOVE_SRC="true")
    assert result.returncode == 0, result.stderr
    assert dest.stat().st_ino == inode  # a rename: no copy, so no half-written window
    staged.write_text("a: 1\n")
    assert install(staged, dest, "0600", REMOVE_SRC="true").stdout == f"unchanged {dest}\n"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["config.yaml"]


def test_no_backup_for_work_files(tmp_path):
    src, dest = tmp_path / "s", tmp_path / "work" / "values.json"
    src.write_text("1\n")
    install(src, dest, "0600", BACKUP="false")
    src.write_text("2\n")
    assert install(src, dest, "0600", BACKUP="false").stdout == f"changed {dest}\n"
    assert not (tmp_path / "backups").exists()


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
    relative = install(src, Path("etc/x"))
    assert relative.returncode == 2 and "absolute path" in relative.stderr
    assert dest.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "s"]


def test_remove_keeps_the_previous_version_and_restore_puts_it_back(tmp_path):
    dest = tmp_path / "etc" / "config-v3.toml.tmpl"
    dest.parent.mkdir()
    dest.write_text("old\n")
    removed = install(None, dest, ACTION="remove")
    backup = tmp_path / "backups" / str(dest).lstrip("/")
    assert removed.stdout == f"backup {backup}\nremoved {dest}\n" and not dest.exists()
    assert install(None, dest, ACTION="remove").stdout == f"unchanged {dest} (absent)\n"
    restored = install(None, dest, ACTION="restore", PREVIOUS="kept")
    assert restored.stdout == f"restored {dest}\n" and dest.read_text() == "old\n"
    # A file that did not exist before the change it undoes goes away.
    fresh = tmp_path / "etc" / "new.yaml"
    fresh.write_text("new\n")
    assert install(None, fresh, ACTION="restore", PREVIOUS="none").stdout == f"removed {fresh}\n"
    assert not fresh.exists()
    bad = install(None, fresh, ACTION="restore")
    assert bad.returncode == 2 and "PREVIOUS" in bad.stderr
