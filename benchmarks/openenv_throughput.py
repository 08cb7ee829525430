"""Episodes per second of ``mgpo/HighResVQA-v0`` through the OpenEnv server, against the in-process environment.

Every way plays the same work: GRPO-like rounds in which 8 players each play one two-turn
episode (reset, a grounding reply with a box, an answer) on the round's sample, a fresh
sample id every round (so each round decodes its 4000x3000 JPEG once, as in training), the
observation images JPEG-encoded (quality 90). The ways, interleaved round by round:

* **server, OpenEnv client**: ``mgpo serve`` in its own process on 127.0.0.1; 8
  :class:`~mgpo_env.remote.client.HighResVQAClient` (OpenEnv ``EnvClient``, sync), one
  thread each. The server does everything the environment does, encodes the new images
  (JPEG), sends JSON over the WebSocket; the client parses it and keeps the bytes.
* **server, Gym adapter**: the same through :class:`~mgpo_env.remote.client.RemoteHighResVQAEnv`,
  which also decodes each received JPEG to rebuild the observation canvas.
* **in-process, 8 threads**: 8 ``gym.make("mgpo/HighResVQA-v0")`` sharing one image store
  (as the trainer makes them), one thread each, and each new image JPEG-encoded with the
  same encoder, quality and encoding cache as the server (what a caller that wants bytes
  must do: the group's shared view is encoded once on both sides).
* **in-process, 1 thread**: the same 8 environments played one after another.
* **in-process, no encoding** (8 threads): the environment alone, for reference.

The in-process baseline is the faster of the two in-process ways that encode. The server
runs with OMP_NUM_THREADS=1 like this process; both share the machine's cores.

Run::

    .venv/bin/python benchmarks/openenv_throughput.py             # ~2 min on 2 CPU cores
    .venv/bin/python benchmarks/openenv_throughput.py --rounds 2  # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional

import gymnasium as gym

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import mgpo_env  # noqa: E402,F401  (registers the environment)
from env_throughput import machine, write_images  # noqa: E402
from mgpo_env.image_store import ImageStore  # noqa: E402
from mgpo_env.remote.client import HighResVQAClient, RemoteHighResVQAEnv  # noqa: E402
from mgpo_env.remote.wire import DEFAULT_JPEG_QUALITY, EncodingCache  # noqa: E402

PLAYERS = 8
SIZE = (4000, 3000)
IMAGES = 4
WAYS = ("server_client", "server_gym", "local_threads", "local_serial", "local_no_encoding")
LABELS = {
    "server_client": "server, OpenEnv client (8 clients, 8 threads)",
    "server_gym": "server, Gym adapter (8 clients, 8 threads)",
    "local_threads": "in-process, 8 threads, JPEG-encoded",
    "local_serial": "in-process, 1 thread, JPEG-encoded",
    "local_no_encoding": "in-process, 8 threads, no encoding (reference)",
}
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "openenv_throughput.md"
ANSWER = "I compare the options with what I see. \\boxed{A}"


def box_reply(player: int) -> str:
    """Player ``player``'s grounding reply: a box of its own size in the ~1176x882 view."""
    side = 120 + 60 * player
    x, y = 40 + 50 * player, 30 + 40 * player
    return f"[{x}, {y}, {x + side}, {y + int(side * 0.75)}]"


def write_dataset(folder: Path, rounds: int) -> Path:
    """A JSONL with one sample id per (way, round), the ids cycling over a few generated images."""
    images = write_images(folder, SIZE, IMAGES, seed=0)
    lines = []
    for way in WAYS:
        for r in range(rounds):
            lines.append(
                {
                    "id": f"{way}-{r}",
                    "image": images[r % len(images)].name,
                    "question": "What is written on the small sign?",
                    "choices": ["STOP", "EXIT", "OPEN", "SALE"],
                    "answer": "A",
                    "boxes": [[1000, 800, 1400, 1100]],
                }
            )
    path = folder / "data.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


class Server:
    """``mgpo serve`` in a child process on an ephemeral port."""

    def __init__(self, dataset: Path) -> None:
        command = [sys.executable, "-m", "mgpo_env.remote", "--port", "0", "--dataset", f"jsonl:{dataset}", "--max-sessions", "64"]
        self.command = command
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        ready, _, _ = select.select([self.process.stdout], [], [], 120)
        line = self.process.stdout.readline() if ready else ""
        if " on http://" not in line:
            self.process.kill()
            raise RuntimeError(f"the server did not start: {line!r} {self.process.stderr.read()[-2000:]}")
        self.url = line.split(" on ")[1].split()[0]

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def client_episode(client: HighResVQAClient, sample_id: str, player: int) -> int:
    """One episode through the raw OpenEnv client; returns the encoded bytes received."""
    received = 0
    for result in (
        client.reset(options={"sample_id": sample_id}, image_format="jpeg"),
        client.step(box_reply(player)),
        client.step(ANSWER),
    ):
        received += sum(len(image.data) for image in result.observation.images)
    assert result.done
    return received


def gym_episode(env: gym.Env, sample_id: str, player: int, encode: Optional[EncodingCache]) -> int:
    """One episode through a Gym environment (local or remote); returns the encoded bytes made."""
    env.reset(options={"sample_id": sample_id})
    made, seen = 0, 0
    for reply in (None, box_reply(player), ANSWER):
        if reply is not None:
            _, _, terminated, _, _ = env.step(reply)
        images = env.unwrapped.chat_images()
        if encode is not None:
            for image in images[seen:]:
                made += len(encode.base64(image, "jpeg", DEFAULT_JPEG_QUALITY))
        seen = len(images)
    assert terminated
    return made


def timed_round(play: Callable[[int], object], pool: Optional[ThreadPoolExecutor]) -> float:
    started = time.perf_counter()
    if pool is None:
        for player in range(PLAYERS):
            play(player)
    else:
        for future in [pool.submit(play, player) for player in range(PLAYERS)]:
            future.result(timeout=300)
    return time.perf_counter() - started


def measure(rounds: int, folder: Path) -> tuple[dict[str, list[float]], dict[str, float], str]:
    dataset = write_dataset(folder, rounds)
    server = Server(dataset)
    try:
        clients = [HighResVQAClient(base_url=server.url, message_timeout_s=300).sync() for _ in range(PLAYERS)]
        for client in clients:
            client.connect()
        adapters = [RemoteHighResVQAEnv(server.url, message_timeout_s=300) for _ in range(PLAYERS)]
        store = ImageStore()
        local = [gym.make("mgpo/HighResVQA-v0", dataset=f"jsonl:{dataset}", image_store=store) for _ in range(PLAYERS)]
        encodings = EncodingCache()  # shared like the server's: a group's view is encoded once
        plays: dict[str, tuple[Callable[[str, int], object], bool]] = {
            "server_client": (lambda sid, k: client_episode(clients[k], sid, k), True),
            "server_gym": (lambda sid, k: gym_episode(adapters[k], sid, k, encode=None), True),
            "local_threads": (lambda sid, k: gym_episode(local[k], sid, k, encode=encodings), True),
            "local_serial": (lambda sid, k: gym_episode(local[k], sid, k, encode=encodings), False),
            "local_no_encoding": (lambda sid, k: gym_episode(local[k], sid, k, encode=None), True),
        }
        # Warm-up outside the timing: connections, first imports, one decode of each way's code path.
        warm = f"{WAYS[0]}-0"
        for way, (play, _) in plays.items():
            for k in range(PLAYERS):
                play(warm, k)
        times: dict[str, list[float]] = {way: [] for way in WAYS}
        server_cpu = {way: 0.0 for way in WAYS}
        with ThreadPoolExecutor(PLAYERS) as pool:
            for r in range(1, rounds):  # round 0's samples served the warm-up
                for way, (play, threaded) in plays.items():
                    sample_id = f"{way}-{r}"
                    cpu = server.cpu_seconds()
                    times[way].append(timed_round(lambda k, play=play, sample_id=sample_id: play(sample_id, k), pool if threaded else None))
                    server_cpu[way] += server.cpu_seconds() - cpu
                print(f"round {r}/{rounds - 1}: " + ", ".join(f"{way} {PLAYERS / times[way][-1]:.2f} eps/s" for way in WAYS), flush=True)
        for client in clients:
            client.close()
        for adapter in adapters:
            adapter.close()
        episodes = PLAYERS * (rounds - 1)
        server_ms = {way: 1000 * server_cpu[way] / episodes for way in WAYS}
        return times, server_ms, shlex.join(server.command).replace(str(folder), "<tmp>")
    finally:
        server.stop()


def report(times: dict[str, list[float]], server_ms: dict[str, float], rounds: int, server_command: str, argv: list[str]) -> str:
    rate = {way: PLAYERS / statistics.median(times[way]) for way in WAYS}
    baseline_way = max(("local_threads", "local_serial"), key=lambda way: rate[way])
    baseline = rate[baseline_way]
    lines = [
        "# OpenEnv server throughput on loopback",
        "",
        f"Command: `.venv/bin/python benchmarks/openenv_throughput.py {shlex.join(argv)}`".replace(" `", " `").rstrip(),
        f"Server (started by the script): `{server_command.replace(sys.executable, 'python')}`",
        "",
        f"Machine: {machine()}; shared with other work while measured. {versions()}",
        "",
        f"Work: rounds of {PLAYERS} two-turn episodes (reset, grounding reply with a box, answer) on one sample,",
        f"a fresh sample id each round (one decode of a {SIZE[0]}x{SIZE[1]} JPEG a round), observation images",
        f"JPEG-encoded at quality {DEFAULT_JPEG_QUALITY}; {rounds - 1} timed rounds per way after a warm-up round,",
        "ways interleaved round by round; eps/s = episodes per second, from the median round.",
        "",
        "| way | eps/s | x in-process baseline | server CPU ms / episode |",
        "|---|---:|---:|---:|",
    ]
    for way in WAYS:
        cpu = f"{server_ms[way]:.0f}" if way.startswith("server") else "-"
        mark = " (baseline)" if way == baseline_way else ""
        lines.append(f"| {LABELS[way]}{mark} | {rate[way]:.2f} | {rate[way] / baseline:.2f} | {cpu} |")
    lines += [
        "",
        f"Target: the server through the OpenEnv client at >= 0.7x the in-process rate: "
        f"**{rate['server_client'] / baseline:.2f}x** ({'met' if rate['server_client'] >= 0.7 * baseline else 'NOT met'}); "
        f"through the Gym adapter {rate['server_gym'] / baseline:.2f}x.",
        "",
        "What each side does:",
        "",
        "* server ways: the server process runs the environment (decode, view, crop, prompts, the",
        "  observation canvas, info, grading), JPEG-encodes each new image, base64 + JSON over one",
        "  WebSocket per client; the OpenEnv client parses the JSON and keeps the base64 images; the",
        "  Gym adapter also decodes each received JPEG and rebuilds the observation canvas.",
        "* in-process ways: the same environment in this process (8 environments sharing one image",
        "  store, as the trainer makes them); the JPEG ways encode each new image as the server does.",
        "* both sides encode through one shared `EncodingCache`, so the view a group's 8 episodes",
        "  share is encoded once a round on each side; each crop is encoded once.",
        "* the server's WebSocket has per-message deflate off (base64 JPEG barely compresses).",
        "",
        "Round times (s): " + "; ".join(f"{way}: " + ", ".join(f"{t:.2f}" for t in times[way]) for way in WAYS),
        "",
    ]
    return "\n".join(lines)


def versions() -> str:
    from importlib.metadata import version

    names = ("openenv", "fastapi", "uvicorn", "websockets", "gymnasium", "pillow")
    return "Versions: " + ", ".join(f"{name} {version(name)}" for name in names) + "."


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="rounds per way, the first one a warm-up")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    if args.rounds < 2:
        parser.error("--rounds must be >= 2 (the first round warms up)")
    with tempfile.TemporaryDirectory(prefix="openenv-throughput-") as folder:
        times, server_ms, command = measure(args.rounds, Path(folder))
    text = report(times, server_ms, args.rounds, command, argv)
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
