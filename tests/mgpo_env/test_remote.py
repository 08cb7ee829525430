"""The OpenEnv server and client: parity with local environments, isolation, hostile clients.

Every server here runs in a thread of the test process on 127.0.0.1 with an ephemeral
port and is stopped at the end; every wait is bounded.
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

pytest.importorskip("openenv", reason="the 'serve' extra (OpenEnv) is not installed")
requests = pytest.importorskip("requests")
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect as ws_connect  # noqa: E402

from mgpo_env.remote.client import RemoteHighResVQAEnv  # noqa: E402
from mgpo_env.remote.server import ServerSettings, ServerThread, frame_problem  # noqa: E402
from mgpo_env.remote.wire import encode_image  # noqa: E402

TASK = {"num_samples": 12, "canvas_size": 1024, "target_size": 48, "clutter": 20}
ENV_KWARGS = {"max_pixels": 256 * 28 * 28, "min_pixels": 64 * 28 * 28}
TIMEOUT_S = 30
# The environment's own hostile replies (tests/mgpo_env/test_env.py), all under 64 KiB except the last.
HOSTILE_ACTIONS = ["", "\x00" * 10, "[" * 60_000, "```json\n" * 1000, "\\boxed{" * 1000, '{"bbox_2d": [1e308, -1e308, 1e308, 1e308]}', "[0, 0, 0, 0]"]


def local_env() -> gym.Env:
    return gym.make("mgpo/HighResVQA-v0", dataset_kwargs=TASK, **ENV_KWARGS)


@pytest.fixture(scope="module")
def server():
    with ServerThread(ServerSettings(port=0, dataset_kwargs=TASK, env_kwargs=ENV_KWARGS, max_sessions=32)) as running:
        yield running


def wait_for(condition, timeout_s: float = TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def replies(seed: int) -> list[str]:
    """Two replies for an episode: a box (valid, invalid or hostile, by seed) and an answer."""
    first = ["[10, 10, 300, 240]", "no box at all", HOSTILE_ACTIONS[seed % len(HOSTILE_ACTIONS)], "[0, 0, 50, 60]"][seed % 4]
    return [first, "\\boxed{%s}" % "ABCD"[seed % 4]]


def play(env: gym.Env, seed: int) -> list[tuple]:
    """An episode's every return value (observation without its pixels, reward, flags, info)."""
    obs, info = env.reset(seed=seed)
    steps = [(obs["history"], int(obs["turn"]), tuple(obs["image_size"]), info)]
    for reply in replies(seed):
        obs, reward, terminated, truncated, info = env.step(reply)
        steps.append((obs["history"], int(obs["turn"]), tuple(obs["image_size"]), reward, terminated, truncated, info))
    return steps


def test_eight_concurrent_clients_match_local_environments(server):
    """8 clients, each in its own thread, play 2 episodes each; every return value and image byte matches."""
    remotes = [RemoteHighResVQAEnv(server.url) for _ in range(8)]
    try:
        assert wait_for(lambda: server.env_server.active_sessions == 8)

        def client(k: int) -> list:
            played = []
            for seed in (k, 100 + k):
                steps = play(remotes[k], seed)
                played.append((seed, steps, remotes[k].image_bytes()))
            return played

        with ThreadPoolExecutor(8) as pool:
            results = [future.result(timeout=120) for future in [pool.submit(client, k) for k in range(8)]]
    finally:
        for remote in remotes:
            remote.close()
    reference = local_env()
    for played in results:
        for seed, steps, image_bytes in played:
            assert steps == play(reference, seed)
            assert image_bytes == [encode_image(image, "jpeg") for image in reference.unwrapped.chat_images()]
    assert wait_for(lambda: server.env_server.active_sessions == 0)


def test_interleaved_episodes_on_one_thread_stay_isolated(server):
    """Step 8 sessions in turn, one reply each round: no session sees another's episode."""
    remotes = [RemoteHighResVQAEnv(server.url) for _ in range(8)]
    locals_ = [local_env() for _ in range(8)]
    try:
        for k in range(8):
            got, want = remotes[k].reset(seed=7 * k), locals_[k].reset(seed=7 * k)
            assert got[1] == want[1] and got[0]["history"] == want[0]["history"]
        for turn in range(2):
            for k in range(8):
                reply = replies(k)[turn]
                got, want = remotes[k].step(reply), locals_[k].step(reply)
                assert got[1:] == want[1:]
                assert got[0]["history"] == want[0]["history"]
        for k in range(8):
            assert remotes[k].image_bytes() == [encode_image(image, "jpeg") for image in locals_[k].unwrapped.chat_images()]
    finally:
        for remote in remotes:
            remote.close()


def test_png_observations_are_the_local_pixels(server):
    remote, reference = RemoteHighResVQAEnv(server.url, image_format="png"), local_env()
    try:
        for reply in (None, "[100, 50, 400, 300]", "\\boxed{B}"):
            got = remote.reset(seed=3) if reply is None else remote.step(reply)
            want = reference.reset(seed=3) if reply is None else reference.step(reply)
            assert np.array_equal(got[0]["image"], want[0]["image"])
            assert got[0]["image"].shape == reference.observation_space["image"].shape
            got_images, want_images = remote.chat_images(), reference.unwrapped.chat_images()
            assert len(got_images) == len(want_images) and all(np.array_equal(np.asarray(i), np.asarray(j)) for i, j in zip(got_images, want_images))
        messages, expected = remote.chat_messages(), reference.unwrapped.chat_messages()
        assert [[part["type"] for part in m["content"]] for m in messages] == [[part["type"] for part in m["content"]] for m in expected]
        assert [m["content"][-1] for m in messages if m["content"][-1]["type"] == "text"] == [m["content"][-1] for m in expected if m["content"][-1]["type"] == "text"]
    finally:
        remote.close()


def test_reset_options_choose_the_sample_but_never_a_file(server):
    remote, reference = RemoteHighResVQAEnv(server.url), local_env()
    try:
        assert remote.reset(options={"index": 5})[1] == reference.reset(options={"index": 5})[1]
        sample_id = reference.unwrapped.sample.sample_id
        assert remote.reset(options={"sample_id": sample_id})[1]["sample_id"] == sample_id
        for options in ({"dataset": "vstar:/etc"}, {"image": "/etc/passwd"}, {"path": "/etc/passwd"}, {"index": 0, "image_path": "/x.jpg"}):
            with pytest.raises(RuntimeError, match="refused"):
                remote.reset(options=options)
        with pytest.raises(RuntimeError, match="fixed by the server"):
            remote.client.reset(dataset="vstar:/etc")
        with pytest.raises(RuntimeError, match="index"):
            remote.reset(options={"index": 10**9})
        assert remote.reset(seed=1)[1] == reference.reset(seed=1)[1]  # the session still plays
    finally:
        remote.close()


def test_a_client_checks_the_server_runs_its_environment(server):
    with pytest.raises(ValueError, match="protocol: server 'two_turn', expected 'free'"):
        RemoteHighResVQAEnv(server.url, expect={"protocol": "free"})
    with pytest.raises(ValueError, match="dataset_size"):
        RemoteHighResVQAEnv(server.url, expect={"dataset_size": 99})
    assert wait_for(lambda: server.env_server.active_sessions == 0)


# ------------------------------------------------------------------ hostile HTTP
BIG = "a" * (64 * 1024 + 1)
HTTP_CASES = [
    # (name, path, body, expected status)
    ("reset with a dataset path in options", "/reset", {"seed": 0, "options": {"dataset": "vstar:/etc"}}, 400),
    ("reset with an image path in options", "/reset", {"options": {"image": "/etc/passwd"}}, 400),
    ("reset with a dataset argument", "/reset", {"dataset": "jsonl:/etc/passwd"}, 400),
    ("reset with an index out of range", "/reset", {"options": {"index": 10**9}}, 400),
    ("reset with a negative seed", "/reset", {"seed": -1}, 422),
    ("reset with malformed JSON", "/reset", b'{"seed": ', 422),
    ("step with malformed JSON", "/step", b"not json at all", 422),
    ("step with a reply of 64 KiB + 1", "/step", {"action": {"message": BIG}}, 413),
    ("step with a 2 MiB body", "/step", b'{"action": {"message": "' + b"x" * (2 << 20) + b'"}}', 413),
    ("step with a non-string reply", "/step", {"action": {"message": 5}}, 422),
    ("step with an unknown field", "/step", {"action": {"bogus": 1}}, 422),
    ("step without a session", "/step", {"action": {"message": "[0, 0, 10, 10]"}}, 409),
    ("a well-formed reset", "/reset", {"seed": 0}, 200),
]


@pytest.mark.parametrize("name, path, body, status", HTTP_CASES, ids=[case[0] for case in HTTP_CASES])
def test_hostile_http_requests_get_a_4xx_and_the_server_lives(server, name, path, body, status):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = requests.post(server.url + path, data=data, headers={"content-type": "application/json"}, timeout=TIMEOUT_S)
    assert response.status_code == status, response.text
    if status != 200:
        assert response.json()["detail"]  # a reason, not an empty error
    assert requests.get(server.url + "/health", timeout=TIMEOUT_S).status_code == 200


# ------------------------------------------------------------- hostile WebSocket
def ws_url(server) -> str:
    return server.url.replace("http://", "ws://") + "/ws"


def exchange(ws, frame) -> dict:
    ws.send(frame if isinstance(frame, str) else json.dumps(frame))
    return json.loads(ws.recv(timeout=TIMEOUT_S))


def test_hostile_websocket_frames_get_errors_and_the_session_goes_on(server):
    with ws_connect(ws_url(server), open_timeout=TIMEOUT_S, max_size=None) as ws:
        before_reset = exchange(ws, {"type": "step", "data": {"message": "[0, 0, 5, 5]"}})
        assert before_reset["type"] == "error" and "reset" in before_reset["data"]["message"]
        assert exchange(ws, "not json")["data"]["code"] == "INVALID_JSON"
        assert exchange(ws, "[1, 2, 3]")["data"] == {"status": 400, "code": "INVALID_JSON", "message": "a request must be a JSON object"}
        assert exchange(ws, {"type": "launch"})["data"]["code"] == "UNKNOWN_TYPE"
        assert exchange(ws, {"type": "reset", "data": {"seed": "zero"}})["type"] == "error"
        assert exchange(ws, {"type": "reset", "data": {"seed": 0}})["type"] == "observation"
        too_big = exchange(ws, {"type": "step", "data": {"message": "ü" * 40_000}})  # 80,000 UTF-8 bytes
        assert too_big["data"]["status"] == 413 and too_big["data"]["code"] == "ACTION_TOO_LARGE"
        assert exchange(ws, {"type": "step", "data": {"message": 5}})["data"]["code"] == "VALIDATION_ERROR"
        for action in HOSTILE_ACTIONS:
            assert exchange(ws, {"type": "reset", "data": {"seed": 0}})["type"] == "observation"
            first = exchange(ws, {"type": "step", "data": {"message": action}})
            assert first["type"] == "observation" and not first["data"]["done"]
            last = exchange(ws, {"type": "step", "data": {"message": action}})
            assert last["data"]["done"] and last["data"]["reward"] == 0.0
        finished = exchange(ws, {"type": "step", "data": {"message": "x"}})
        assert finished["type"] == "error" and "reset" in finished["data"]["message"]
    assert requests.get(server.url + "/health", timeout=TIMEOUT_S).status_code == 200
    assert wait_for(lambda: server.env_server.active_sessions == 0)


@pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager")
def test_idle_and_vanished_clients_have_their_sessions_freed():
    settings = ServerSettings(port=0, dataset_kwargs=TASK, env_kwargs=ENV_KWARGS, session_timeout_s=0.5)
    with ServerThread(settings) as server:
        idle = ws_connect(ws_url(server), open_timeout=TIMEOUT_S, max_size=None)
        assert exchange(idle, {"type": "reset", "data": {"seed": 0}})["type"] == "observation"
        # A client that vanishes without a close handshake: its socket is simply dropped.
        vanished = ws_connect(ws_url(server), open_timeout=TIMEOUT_S, max_size=None)
        assert exchange(vanished, {"type": "reset", "data": {"seed": 1}})["type"] == "observation"
        assert server.env_server.active_sessions == 2
        vanished.socket.shutdown(socket.SHUT_RDWR)
        vanished.socket.close()
        assert wait_for(lambda: server.env_server.active_sessions == 0, timeout_s=10)
        with pytest.raises(ConnectionClosed) as closed:  # the server closed the idle one
            idle.recv(timeout=5)
        assert closed.value.rcvd.code == 1001 and "idle" in closed.value.rcvd.reason
        idle.close()
        # A Gym client idle past the timeout between episodes reconnects by itself at the next reset;
        # one idle in the middle of an episode is told so.
        remote = RemoteHighResVQAEnv(server.url)
        assert remote.reset(seed=0)[1]["turn"] == 0
        assert wait_for(lambda: server.env_server.active_sessions == 0, timeout_s=10)
        assert remote.reset(seed=2)[1] == local_env().reset(seed=2)[1]
        remote.step("[0, 0, 100, 100]")
        assert wait_for(lambda: server.env_server.active_sessions == 0, timeout_s=10)
        with pytest.raises(RuntimeError, match="session-timeout"):
            remote.step("\\boxed{A}")
        remote.close()


@hypothesis_settings(max_examples=60, deadline=None)
@given(message=st.text(max_size=300), limit=st.integers(1, 400), ascii_only=st.booleans())
def test_frame_problem_refuses_exactly_the_replies_over_the_limit(message, limit, ascii_only):
    frame = json.dumps({"type": "step", "data": {"message": message}}, ensure_ascii=ascii_only)
    problem = frame_problem(frame, limit, 10**6, action_path=("data", "message"))
    over = len(message.encode("utf-8", "surrogatepass")) > limit
    assert (problem is not None and problem["status"] == 413) == over
    assert problem is None or problem["status"] == 413


# ----------------------------------------------------------------------- command
@pytest.mark.slow
def test_python_m_entry_point_serves_until_stopped():
    command = [sys.executable, "-m", "mgpo_env.remote", "--port", "0", "--dataset-kwargs", json.dumps(TASK), "--env-kwargs", json.dumps(ENV_KWARGS)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([process.stdout], [], [], 60)  # the line is printed once the server accepts connections
        line = process.stdout.readline() if ready else ""
        assert line.startswith("mgpo serve: mgpo/HighResVQA-v0 on http://127.0.0.1:"), line + process.stderr.read() if not line else line
        url = line.split(" on ")[1].split()[0]
        remote, reference = RemoteHighResVQAEnv(url), local_env()
        assert remote.reset(seed=4)[1] == reference.reset(seed=4)[1]
        remote.close()
    finally:
        process.terminate()
        process.wait(timeout=TIMEOUT_S)


def test_the_announced_port_takes_connections_before_the_server_loop_runs():
    """serve() prints the URL from the app's startup, before uvicorn serves the socket: a client
    that connects then must be queued, not refused (seen under load in CI)."""
    import socket

    from mgpo_env.remote.server import _bound_socket

    sock = _bound_socket("127.0.0.1", 0)
    try:
        with socket.create_connection(sock.getsockname(), timeout=5):
            pass
    finally:
        sock.close()


def test_encoding_cache_encodes_each_image_once_and_never_mixes_them_up():
    from PIL import Image

    from mgpo_env.remote.wire import EncodingCache

    cache = EncodingCache(max_items=2)
    red, blue = Image.new("RGB", (40, 30), "red"), Image.new("RGB", (40, 30), "blue")
    assert cache.base64(red, "png") == cache.base64(red, "png") != cache.base64(blue, "png")
    assert cache.encodes == 2
    assert cache.encoded_image(0, red, "jpeg").to_bytes() == encode_image(red, "jpeg")  # another format: its own entry
    assert cache.encodes == 3 and cache.encoded_image(1, blue, "png").to_pil().getpixel((0, 0)) == (0, 0, 255)
