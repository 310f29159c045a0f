"""Spool layout: names, paths, creation, the one-filesystem check."""

from __future__ import annotations

import os
import pathlib
import stat
import subprocess

import pytest

from mta.errors import SpoolError
from mta.spool.paths import SpoolPaths, bucket_of, parse_bucket, parse_evpid, parse_msgid


def test_names() -> None:
    assert bucket_of(0xAB000001) == "ab"
    assert bucket_of(0x00FFFFFF) == "00"
    assert parse_bucket("ab") == 0xAB
    assert parse_msgid("0a1b2c3d") == 0x0A1B2C3D
    assert parse_evpid("0a1b2c3d00000001") == 0x0A1B2C3D00000001
    for bad in ("AB", "a", "abc", "g0", ""):
        assert parse_bucket(bad) is None
    for bad in (
        "00000000", "0A1B2C3D", "0a1b2c3", "0a1b2c3d0", "message", " a1b2c3d", "0a1b2c3d.v1",
        "0a1b2c3d.tmp",
    ):  # fmt: skip
        assert parse_msgid(bad) is None
    for bad in ("0000000000000001", "0a1b2c3d00000000", "0a1b2c3d0000001", "0a1b2c3d0000000g"):
        assert parse_evpid(bad) is None


def test_paths(tmp_path: pathlib.Path) -> None:
    paths = SpoolPaths(tmp_path / "s")
    assert paths.root == str(tmp_path / "s")
    assert SpoolPaths("relative").root == os.path.join(os.getcwd(), "relative")
    assert paths.incoming_file(0x0A1B2C3D) == f"{tmp_path}/s/incoming/0a1b2c3d"
    assert paths.bucket_dir(0x0A1B2C3D) == f"{tmp_path}/s/queue/0a"
    assert paths.message_file(0x0A1B2C3D) == f"{tmp_path}/s/queue/0a/0a1b2c3d"
    # An envelope file lives next to its message, in the message's bucket.
    assert paths.envelope_file(0x0A1B2C3D_00000005) == f"{tmp_path}/s/queue/0a/0a1b2c3d00000005"
    assert paths.envelope_file(0xFF000001_FFFFFFFF) == f"{tmp_path}/s/queue/ff/ff000001ffffffff"


def test_create_is_idempotent_and_repairs_modes(tmp_path: pathlib.Path) -> None:
    paths = SpoolPaths(tmp_path / "s")
    paths.create()
    os.chmod(paths.queue, 0o755)
    paths.create()
    assert stat.S_IMODE(os.stat(paths.queue).st_mode) == 0o700
    assert sorted(os.listdir(paths.root)) == [
        "corrupt",
        "incoming",
        "offline",
        "queue",
        "temporary",
    ]


def test_another_filesystem_is_refused(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = SpoolPaths(tmp_path / "s")
    paths.create()
    real_stat = os.stat

    def fake_stat(path: str, *args: object, **kwargs: object) -> os.stat_result:
        result = real_stat(path)
        if str(path) == paths.corrupt:
            fields = list(result)
            fields[stat.ST_DEV] += 1
            return os.stat_result(fields)
        return result

    monkeypatch.setattr(os, "stat", fake_stat)
    with pytest.raises(SpoolError, match=r"corrupt under .* on another filesystem"):
        paths.check_one_filesystem()


def test_a_real_mount_inside_the_spool_is_refused(tmp_path: pathlib.Path) -> None:
    paths = SpoolPaths(tmp_path / "s")
    paths.create()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", paths.incoming],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        with pytest.raises(SpoolError, match=r"incoming .* another filesystem"):
            paths.create()
    finally:
        subprocess.run(["umount", paths.incoming], check=True)
