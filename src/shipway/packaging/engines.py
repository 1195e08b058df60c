"""Container engines: docker, podman and buildah behind one small interface.

Everything an engine does goes through one seam, a `Runner` (argv in, exit code and output
out): `SubprocessRunner` runs the real binary, tests pass a fake. An `Engine` only translates
operations (build, inspect, run, push, import a root filesystem) into each tool's argv.

The engine is found automatically, in the order docker, podman, buildah, or named. A docker
client without a reachable daemon is skipped, with the reason kept for the error message.
Extra flags for build and run come from `shipway.yaml` in the working directory and from
`SHIPWAY_ENGINE_BUILD_ARGS` / `SHIPWAY_ENGINE_RUN_ARGS`; some machines need them (rootless or
chroot builds, a particular OCI runtime, lower ulimits). In `shipway.yaml`, flags at the top
of the `engine` section apply to any engine, and those under an engine's own name only when
that engine is used (podman's `--isolation chroot` would break `docker build`)::

    engine:
      name: podman            # optional: otherwise found
      build_args: [...]       # any engine
      podman:
        build_args: --isolation chroot --network host
        run_args: --runtime runc
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from shipway.errors import BuildFailedError, EngineNotFoundError, InvalidInputError, PackagingError

ENGINES = ("docker", "podman", "buildah")
INSTALL_HINT = (
    "Install one: on Debian/Ubuntu `apt-get install podman` (or buildah), or Docker Engine "
    "(https://docs.docker.com/engine/install/); or name one with --engine."
)


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


class Runner(Protocol):
    def __call__(
        self, argv: Sequence[str], *, timeout: float | None = None, stdin: Any = None
    ) -> Result: ...


class SubprocessRunner:
    """Runs the real binary; output is captured so a failure can show it."""

    def __call__(
        self, argv: Sequence[str], *, timeout: float | None = None, stdin: Any = None
    ) -> Result:
        try:
            proc = subprocess.run(
                list(argv),
                stdin=stdin,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError:
            return Result(127, "", f"{argv[0]}: command not found")
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            return Result(124, out, f"{argv[0]} timed out after {timeout} s")
        return Result(proc.returncode, proc.stdout, proc.stderr)


@dataclass(frozen=True)
class EngineConfig:
    """Which engine, and the extra flags it needs on this machine."""

    name: str | None = None
    build_args: tuple[str, ...] = ()
    run_args: tuple[str, ...] = ()
    # (engine, build_args, run_args) from the engine's own section of shipway.yaml.
    per_engine: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = ()

    def for_engine(self, engine: str) -> EngineConfig:
        """The flags `engine` runs with: the common ones, then its own section's."""
        build, run = list(self.build_args), list(self.run_args)
        for name, extra_build, extra_run in self.per_engine:
            if name == engine:
                build += extra_build
                run += extra_run
        return EngineConfig(engine, tuple(build), tuple(run))

    @classmethod
    def load(cls, directory: Path | None = None, name: str | None = None) -> EngineConfig:
        path = (directory or Path.cwd()) / "shipway.yaml"
        section: dict[str, Any] = {}
        if path.is_file():
            import yaml

            data = yaml.safe_load(path.read_text()) or {}
            section = data.get("engine") or {} if isinstance(data, dict) else {}
            if not isinstance(section, dict):
                raise InvalidInputError(f"{path}: 'engine' must be a mapping.")
        build = [*_args(section.get("build_args")), *_env_args("SHIPWAY_ENGINE_BUILD_ARGS")]
        run = [*_args(section.get("run_args")), *_env_args("SHIPWAY_ENGINE_RUN_ARGS")]
        per_engine = []
        for engine in ENGINES:
            own = section.get(engine) or {}
            if not isinstance(own, dict):
                raise InvalidInputError(f"{path}: 'engine.{engine}' must be a mapping.")
            flags = tuple(_args(own.get("build_args"))), tuple(_args(own.get("run_args")))
            if any(flags):
                per_engine.append((engine, *flags))
        return cls(name or section.get("name"), tuple(build), tuple(run), tuple(per_engine))


def _args(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def _env_args(var: str) -> list[str]:
    return shlex.split(os.environ.get(var, ""))


@dataclass
class Engine:
    """One container tool. `binary` is its path; `runner` runs it."""

    name: str
    binary: str
    config: EngineConfig = field(default_factory=EngineConfig)
    runner: Runner = field(default_factory=SubprocessRunner)

    def _run(self, *args: str, timeout: float | None = 600, check: bool = True) -> Result:
        result = self.runner([self.binary, *args], timeout=timeout)
        if check and result.code != 0:
            raise PackagingError(
                f"`{self.name} {' '.join(args[:2])}` failed (exit {result.code}): "
                f"{_tail(result.stderr or result.stdout, 5)}"
            )
        return result

    @property
    def _builder(self) -> list[str]:
        return ["bud"] if self.name == "buildah" else ["build"]

    def build(self, context: Path, tag: str, *, timeout: float = 1800) -> str:
        """Build `context/Dockerfile` as `tag`; returns the image id."""
        args = [*self._builder, *self.config.build_args, "-t", tag, "-f"]
        args += [str(context / "Dockerfile")]
        if self.name in ("podman", "buildah"):
            args[1:1] = ["--format", "docker"]  # OCI images drop HEALTHCHECK
        result = self.runner([self.binary, *args, str(context)], timeout=timeout)
        if result.code != 0:
            raise BuildFailedError(
                f"{self.name} could not build {tag} (exit {result.code}). "
                + failing_step(result.stdout + "\n" + result.stderr),
                "Nothing was recorded. Fix the step above and build again.",
            )
        return str(self.inspect(tag)["Id"]).removeprefix("sha256:")

    def inspect(self, image: str) -> dict[str, Any]:
        args = ["inspect", "--type", "image"] if self.name != "buildah" else ["inspect"]
        data = json.loads(self._run(*args, image, timeout=120).stdout or "null")
        if isinstance(data, list):
            data = data[0] if data else None
        if not isinstance(data, dict):
            raise PackagingError(f"{self.name} inspect {image} returned no image.")
        if self.name == "buildah":  # buildah's shape differs; keep what we use
            return {
                "Id": data.get("FromImageID", ""),
                "Size": data.get("Size", 0),
                "Config": data.get("OCIv1", {}).get("config", {}),
            }
        return data

    def image_exists(self, image: str) -> bool:
        if self.name == "docker":
            return self._run("image", "inspect", image, check=False, timeout=60).code == 0
        return self._run("image", "exists", image, check=False, timeout=60).code == 0

    def import_rootfs(self, tarball: Path, tag: str) -> None:
        """Make an image from a root filesystem tarball (for the local base image)."""
        if self.name == "buildah":
            ctx = tarball.parent
            (ctx / "Dockerfile.base").write_text(f"FROM scratch\nADD {tarball.name} /\n")
            self._run("bud", *self.config.build_args, "-t", tag, "-f", str(ctx / "Dockerfile.base"),
                      str(ctx), timeout=1800)  # fmt: skip
            return
        self._run("import", str(tarball), tag, timeout=1800)

    def run(
        self, image: str, *, port: int, container_port: int = 8080, name: str | None = None
    ) -> str:
        """Start `image` detached with `port` published; returns the container id."""
        if self.name == "buildah":
            raise PackagingError(
                "buildah builds images but does not run them.",
                "Run the image with podman or docker (--engine).",
            )
        args = ["run", "-d", *self.config.run_args]  # no --rm: keep the log of a crash
        args += ["-p", f"127.0.0.1:{port}:{container_port}"]
        if name:
            args += ["--name", name]
        out = self._run(*args, image, timeout=300).stdout.strip().splitlines()
        if not out:
            raise PackagingError(f"{self.name} run {image} printed no container id.")
        return out[-1]

    def run_task(
        self,
        image: str,
        *,
        env: dict[str, str] | None = None,
        volumes: dict[str, str] | None = None,
        args: Sequence[str] = (),
        timeout: float = 3600,
    ) -> Result:
        """Run `image` to completion (a training image): `--rm`, environment and bind mounts
        (`{host path: container path}`); returns its exit code and output."""
        if self.name == "buildah":
            raise PackagingError(
                "buildah builds images but does not run them.",
                "Run the image with podman or docker (--engine).",
            )
        argv = ["run", "--rm", *self.config.run_args]
        for key, value in sorted((env or {}).items()):
            argv += ["-e", f"{key}={value}"]
        for host, inside in sorted((volumes or {}).items()):
            argv += ["-v", f"{host}:{inside}"]
        return self.runner([self.binary, *argv, image, *args], timeout=timeout)

    def logs(self, container: str) -> str:
        result = self._run("logs", container, check=False, timeout=60)
        return result.stdout + result.stderr

    def stop(self, container: str) -> None:
        self._run("rm", "-f", "-t", "5", container, check=False, timeout=120)

    def remove_image(self, image: str) -> None:
        self._run("rmi", "-f", image, check=False, timeout=300)

    def tag(self, image: str, new: str) -> None:
        self._run("tag", image, new, timeout=60)

    def push(self, image: str, dest: str, *, tls_verify: bool) -> str:
        """Push `image` to `dest`; returns the manifest digest the registry stored."""
        import tempfile

        if self.name == "docker":
            self.tag(image, dest)
            out = self._run("push", dest, timeout=1800).stdout
            digest = next((w for w in out.split() if w.startswith("sha256:")), "")
            return digest
        with tempfile.TemporaryDirectory(prefix="shipway-push-") as tmp:
            digest_file = Path(tmp) / "digest"
            args = ["push", f"--tls-verify={'true' if tls_verify else 'false'}"]
            args += ["--digestfile", str(digest_file), image, f"docker://{dest}"]
            self._run(*args, timeout=1800)
            return digest_file.read_text().strip()

    def pull(self, ref: str, *, tls_verify: bool) -> None:
        args = (
            ["pull"]
            if self.name == "docker"
            else ["pull", f"--tls-verify={str(tls_verify).lower()}"]
        )
        self._run(*args, ref, timeout=1800)


def failing_step(output: str, lines: int = 25) -> str:
    """The last build step the engine started, with its output (the one that failed)."""
    text = output.strip().splitlines()
    start = max(
        (i for i, line in enumerate(text) if line.startswith(("STEP ", "Step ", "#"))),
        default=max(0, len(text) - lines),
    )
    shown = text[start:][-lines:]
    return "Failing step and its output:\n" + "\n".join(shown)


def _tail(text: str, n: int) -> str:
    return " | ".join(text.strip().splitlines()[-n:]) or "no output"


def docker_reachable(binary: str, runner: Runner) -> str | None:
    """None when the docker daemon answers, else why not."""
    result = runner([binary, "version", "--format", "{{.Server.Version}}"], timeout=15)
    if result.code == 0 and result.stdout.strip():
        return None
    return _tail(result.stderr or result.stdout, 1)


def find_engine(
    config: EngineConfig | None = None,
    *,
    runner: Runner | None = None,
    which: Any = shutil.which,
) -> Engine:
    """The named engine, or the first usable one of docker, podman, buildah."""
    config = config or EngineConfig.load()
    runner = runner or SubprocessRunner()
    if config.name is not None:
        if config.name not in ENGINES:
            raise InvalidInputError(
                f"Unknown container engine '{config.name}'.", f"Use one of {', '.join(ENGINES)}."
            )
        path = which(config.name)
        if path is None:
            raise EngineNotFoundError(f"{config.name} is not on PATH.", INSTALL_HINT)
        why = docker_reachable(path, runner) if config.name == "docker" else None
        if why is not None:
            raise EngineNotFoundError(f"docker's daemon is not reachable: {why}.", INSTALL_HINT)
        return Engine(config.name, path, config.for_engine(config.name), runner)
    looked: list[str] = []
    for name in ENGINES:
        path = which(name)
        if path is None:
            looked.append(f"{name} (not on PATH)")
            continue
        if name == "docker":
            why = docker_reachable(path, runner)
            if why is not None:
                looked.append(f"docker (client at {path}, daemon not reachable: {why})")
                continue
        return Engine(name, path, config.for_engine(name), runner)
    raise EngineNotFoundError(
        f"No usable container engine. Looked for: {'; '.join(looked)}.", INSTALL_HINT
    )
