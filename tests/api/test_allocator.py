"""The C memory allocator of a serving process (gateway.api.allocator)."""

from __future__ import annotations

import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from gateway.api.allocator import ALLOCATORS, AllocatorError, allocator_in_use, preload_for
from gateway.cli import app

LIBRARIES = {"mimalloc": "libmimalloc.so.2", "jemalloc": "libjemalloc.so.2"}


Finder = Callable[[str], str | None]
Start = Callable[[str], tuple[int, str]]


def installed(*names: str) -> Finder:
    """A ``find_library`` that finds only the allocators ``names``."""

    def find(library: str) -> str | None:
        return LIBRARIES[library] if library in names else None

    return find


def test_auto_preloads_mimalloc_before_jemalloc_and_nothing_when_neither_is_there() -> None:
    both = installed("mimalloc", "jemalloc")
    assert preload_for({}, find_library=both, platform="linux") == "libmimalloc.so.2"
    only_jemalloc = installed("jemalloc")
    assert preload_for({}, find_library=only_jemalloc, platform="linux") == "libjemalloc.so.2"
    assert preload_for({}, find_library=installed(), platform="linux") is None


def test_a_named_allocator_is_preloaded_or_refused_with_how_to_install_it() -> None:
    env = {"SILTA_ALLOCATOR": "jemalloc"}
    both = installed("mimalloc", "jemalloc")
    assert preload_for(env, find_library=both, platform="linux") == "libjemalloc.so.2"
    with pytest.raises(AllocatorError, match=r"libmimalloc is not installed.*libmimalloc2\.0"):
        preload_for({"SILTA_ALLOCATOR": "mimalloc"}, find_library=installed(), platform="linux")
    with pytest.raises(AllocatorError, match="tcmalloc is not one of auto, mimalloc"):
        preload_for({"SILTA_ALLOCATOR": "tcmalloc"}, find_library=both, platform="linux")


def test_nothing_is_preloaded_for_system_twice_or_off_linux() -> None:
    both = installed("mimalloc", "jemalloc")
    system = {"SILTA_ALLOCATOR": "System "}
    assert preload_for(system, find_library=both, platform="linux") is None
    again = {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}
    assert preload_for(again, find_library=both, platform="linux") is None
    assert preload_for({}, find_library=both, platform="darwin") is None
    with pytest.raises(AllocatorError, match="needs Linux"):
        preload_for({"SILTA_ALLOCATOR": "jemalloc"}, find_library=both, platform="darwin")


def test_the_allocator_in_use_is_read_from_the_process_maps(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2\n")
    assert allocator_in_use(maps) == "jemalloc"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n")
    assert allocator_in_use(maps) == "system"
    assert allocator_in_use(tmp_path / "missing") == "system"


def test_serve_refuses_an_allocator_it_cannot_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SILTA_ALLOCATOR", "tcmalloc")
    result = CliRunner().invoke(app, ["serve", "--database", "sqlite://"])
    assert result.exit_code == 2
    assert "SILTA_ALLOCATOR=tcmalloc is not one of" in result.output


def test_serve_restarts_with_every_option_it_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    restarted: list[list[str]] = []

    def restart(command: list[str]) -> None:
        restarted.append(command)
        raise AllocatorError("stopped before serving")

    monkeypatch.setattr("gateway.cli.restart_with_allocator", restart)
    monkeypatch.setenv("SILTA_DATABASE_URL", "sqlite:///from-the-environment.db")
    result = CliRunner().invoke(app, ["serve", "--port", "9999", "--log-level", "info"])
    assert result.exit_code == 2
    assert restarted == [
        [
            *("-m", "gateway.cli", "serve", "--host", "127.0.0.1", "--port", "9999"),
            *("--database", "sqlite:///from-the-environment.db", "--workers", "1"),
            *("--log-level", "info"),
        ]
    ]


# -- a real serving process ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Start]:
    """Starts ``silta serve`` with the given allocator setting; yields a function that
    returns (its process id once it answers, its first output line)."""
    started: list[subprocess.Popen[str]] = []

    def start(allocator: str) -> tuple[int, str]:
        port = _free_port()
        env = {**os.environ, "SILTA_ALLOCATOR": allocator, "SILTA_OUTBOX_DISPATCHER": "0"}
        env.pop("LD_PRELOAD", None)
        command = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)]
        command += ["--database", f"sqlite:///{tmp_path / f'{allocator}.db'}"]
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        started.append(process)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/fhir/metadata").status_code == 200:
                    assert process.stdout is not None
                    return process.pid, process.stdout.readline()
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError("silta serve did not answer within 60 s")

    yield start
    for process in started:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD is Linux's")
def test_serve_runs_on_the_installed_allocator_or_the_system_one(serve: Start) -> None:
    pid, banner = serve("system")
    assert "memory allocator: system" in banner
    assert "libjemalloc" not in Path(f"/proc/{pid}/maps").read_text()
    expected = next((name for name in ALLOCATORS if ctypes.util.find_library(name)), None)
    if expected is None:
        pytest.skip("neither libmimalloc nor libjemalloc is installed: nothing to preload")
    pid, banner = serve("auto")
    assert f"memory allocator: {expected}" in banner
    assert f"/lib{expected}.so" in Path(f"/proc/{pid}/maps").read_text()
