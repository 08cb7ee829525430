"""An OpenEnv server for ``mgpo/HighResVQA-v0``: ``mgpo serve`` or ``python -m mgpo_env.remote``.

The server decides everything about the environment when it starts (dataset spec and its
options, protocol, pixel budgets, prompts): a request can only pick an episode
(``seed``, ``options={"index": i}`` or ``{"sample_id": s}``) and the image encoding
(``image_format="jpeg"`` or ``"png"``). Each WebSocket connection (``/ws``, OpenEnv's
session protocol) gets its own environment; all of them share one dataset object and one
cache of decoded originals, so a GRPO group played by G clients decodes its image once.

Hostile clients: options that name files (or anything but ``index``/``sample_id``) are
refused; a reply over ``max_action_bytes`` (UTF-8) is refused with 413 (HTTP) or an error
frame carrying ``"status": 413`` (WebSocket); malformed JSON gets 422 (HTTP) or an error
frame; a session whose client sends nothing for ``session_timeout_s`` is closed and
freed; errors in an episode are answered, never raised out of the server.

Example (a server in a thread, on an ephemeral port)::

    >>> from mgpo_env.remote.server import ServerSettings, ServerThread
    >>> settings = ServerSettings(dataset_kwargs={"num_samples": 2, "canvas_size": 448})
    >>> with ServerThread(settings) as server:  # doctest: +SKIP
    ...     print(server.url)
    http://127.0.0.1:...
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import gymnasium as gym
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from openenv.core.env_server.http_server import HTTPEnvServer
from openenv.core.env_server.interfaces import Environment
from openenv.core.env_server.types import ConcurrencyConfig, EnvironmentMetadata

from mgpo_datasets import DataError
from mgpo_datasets.registry import resolve_dataset
from mgpo_env.highres_vqa import RESET_OPTIONS, EpisodeFinishedError, InvalidActionError
from mgpo_env.image_store import DEFAULT_CACHE_BYTES, DEFAULT_MAX_IMAGE_PIXELS, ImageStore

from .wire import (
    DEFAULT_JPEG_QUALITY,
    IMAGE_FORMATS,
    HighResVQAAction,
    HighResVQAObservation,
    HighResVQAState,
    EncodingCache,
    check_image_format,
    info_to_wire,
)

ENV_ID = "mgpo/HighResVQA-v0"
DEFAULT_MAX_ACTION_BYTES = 64 * 1024
DEFAULT_SESSION_TIMEOUT_S = 300.0
DEFAULT_MAX_SESSIONS = 256
RESET_ARGUMENTS = ("seed", "episode_id", "options", "image_format")
# env_kwargs a server operator may not set (the server owns them) and what to use instead.
SERVER_OWNED_ENV_KWARGS = {
    "dataset": "--dataset",
    "dataset_kwargs": "--dataset-kwargs",
    "image_store": "(one store is shared by every session)",
    "render_mode": "(nothing is rendered on the server)",
}


class ActionTooLargeError(ValueError):
    """A reply longer than the server's ``max_action_bytes``."""


@dataclass
class ServerSettings:
    """Everything fixed when the server starts."""

    dataset: str = "synthetic"
    dataset_kwargs: dict = field(default_factory=dict)
    env_kwargs: dict = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 8000
    max_sessions: int = DEFAULT_MAX_SESSIONS
    max_action_bytes: int = DEFAULT_MAX_ACTION_BYTES
    session_timeout_s: float = DEFAULT_SESSION_TIMEOUT_S
    image_format: str = "jpeg"
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    log_level: str = "warning"

    def __post_init__(self) -> None:
        check_image_format(self.image_format)
        if not isinstance(self.dataset, str):
            raise TypeError(f"dataset must be a spec string, got {type(self.dataset).__name__}")
        for name in ("dataset_kwargs", "env_kwargs"):
            if not isinstance(getattr(self, name), dict):
                raise TypeError(f"{name} must be a JSON object (dict), got {getattr(self, name)!r}")
        owned = sorted(set(self.env_kwargs) & set(SERVER_OWNED_ENV_KWARGS))
        if owned:
            raise ValueError(f"env_kwargs may not set {owned}: use " + ", ".join(f"{k} -> {SERVER_OWNED_ENV_KWARGS[k]}" for k in owned))
        if self.max_sessions < 1 or self.max_action_bytes < 1 or self.session_timeout_s <= 0:
            raise ValueError("max_sessions, max_action_bytes and session_timeout_s must be positive")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality={self.jpeg_quality}; must be in [1, 100]")

    @property
    def max_frame_bytes(self) -> int:
        """Largest request or WebSocket frame read at all: the reply plus room for JSON escapes."""
        return 8 * self.max_action_bytes + 64 * 1024


class SharedResources:
    """What every session shares: the dataset object, the decoded-image and encoded-image caches, the env options."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        env_kwargs = dict(settings.env_kwargs)
        cache_bytes = env_kwargs.pop("image_cache_bytes", DEFAULT_CACHE_BYTES)
        max_image_pixels = env_kwargs.pop("max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS)
        self.dataset = resolve_dataset(settings.dataset, **settings.dataset_kwargs)
        self.images = ImageStore(cache_bytes, max_image_pixels=max_image_pixels)
        self.encodings = EncodingCache()
        self.env_kwargs = env_kwargs
        gym.make(ENV_ID, dataset=self.dataset, image_store=self.images, **env_kwargs).close()  # bad options fail at start

    def make_env(self) -> gym.Env:
        return gym.make(ENV_ID, dataset=self.dataset, image_store=self.images, **self.env_kwargs)


class HighResVQAEnvironment(Environment[HighResVQAAction, HighResVQAObservation, HighResVQAState]):
    """One session's ``mgpo/HighResVQA-v0``, speaking OpenEnv's reset/step/state."""

    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self, shared: SharedResources) -> None:
        super().__init__()
        self.shared = shared
        self.env = shared.make_env()
        self.image_format = shared.settings.image_format
        self._state = self._new_state(episode_id=None)
        self._images_sent = 0
        self._started = False

    def reset(self, seed: Optional[int] = None, episode_id: Optional[str] = None, **kwargs: Any) -> HighResVQAObservation:
        """Start an episode: ``seed``, ``options`` (``index`` or ``sample_id`` only) and ``image_format``."""
        unknown = sorted(set(kwargs) - set(RESET_ARGUMENTS))
        if unknown:
            raise ValueError(
                f"unknown reset argument(s) {unknown}; allowed: {list(RESET_ARGUMENTS)} "
                "(the dataset and the environment's options are fixed by the server)"
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        options = _checked_options(kwargs.get("options"))
        image_format = check_image_format(kwargs.get("image_format") or self.shared.settings.image_format)
        if episode_id is not None and (not isinstance(episode_id, str) or len(episode_id) > 255):
            raise ValueError("episode_id must be a str of at most 255 characters")
        obs, info = self.env.reset(seed=seed, options=options)
        self.image_format = image_format
        self._state = self._new_state(episode_id)
        self._images_sent = 0
        self._started = True
        return self._observation(obs, info, reward=None, terminated=False, truncated=False)

    def step(self, action: HighResVQAAction, timeout_s: Optional[float] = None, **kwargs: Any) -> HighResVQAObservation:
        message = action.message
        size = len(message.encode("utf-8", "surrogatepass"))
        if size > self.shared.settings.max_action_bytes:
            raise ActionTooLargeError(f"the reply is {size} bytes; this server accepts at most {self.shared.settings.max_action_bytes}")
        if not self._started:
            raise EpisodeFinishedError(
                "no episode in this session: reset first (a session closed for idling longer than the server's "
                "--session-timeout comes back empty; HTTP /step has no session at all: play over the WebSocket /ws)"
            )
        obs, reward, terminated, truncated, info = self.env.step(message)
        self._state.step_count += 1
        return self._observation(obs, info, reward=float(reward), terminated=bool(terminated), truncated=bool(truncated))

    @property
    def state(self) -> HighResVQAState:
        return self._state

    def get_metadata(self) -> EnvironmentMetadata:
        return EnvironmentMetadata(
            name=ENV_ID,
            description="Answer a question about a high-resolution image by naming a box to crop (MGPO).",
            version="0.1.0",
        )

    def close(self) -> None:
        self.env.close()

    def _new_state(self, episode_id: Optional[str]) -> HighResVQAState:
        env = self.env.unwrapped
        settings = self.shared.settings
        return HighResVQAState(
            episode_id=episode_id,
            step_count=0,
            dataset=settings.dataset,
            dataset_size=len(self.shared.dataset),
            protocol=env.protocol,
            max_turns=env.max_turns,
            min_pixels=env.budget.min_pixels,
            max_pixels=env.budget.max_pixels,
            box_frame=env.box_frame,
            observation_image_shape=tuple(env.observation_space["image"].shape[:2]),
            image_format=self.image_format,
            max_action_bytes=settings.max_action_bytes,
        )

    def _observation(self, obs: Mapping[str, Any], info: Mapping[str, Any], *, reward: Optional[float], terminated: bool, truncated: bool) -> HighResVQAObservation:
        env = self.env.unwrapped
        messages, images = _wire_messages(env.chat_messages())
        new = [
            self.shared.encodings.encoded_image(i, image, self.image_format, self.shared.settings.jpeg_quality)
            for i, image in enumerate(images)
            if i >= self._images_sent
        ]
        self._images_sent = len(images)
        return HighResVQAObservation(
            messages=messages,
            images=new,
            history=[dict(entry) for entry in obs["history"]],
            turn=int(info["turn"]),
            info=info_to_wire(info),
            terminated=terminated,
            truncated=truncated,
            done=terminated or truncated,
            reward=reward,
        )


def _checked_options(options: Any) -> Optional[dict[str, Any]]:
    """Reset options a client may give: only which sample to play, never a file."""
    if options is None:
        return None
    if not isinstance(options, dict):
        raise ValueError(f"options must be a JSON object, got {type(options).__name__}")
    unknown = sorted(set(options) - set(RESET_OPTIONS))
    if unknown:
        raise ValueError(
            f"reset option(s) {unknown} refused: a client may only choose {list(RESET_OPTIONS)}; "
            "datasets, images and paths are fixed by the server"
        )
    sample_id = options.get("sample_id")
    if sample_id is not None and not isinstance(sample_id, (str, int)):
        raise ValueError(f"options['sample_id'] must be a str, got {type(sample_id).__name__}")
    return dict(options)


def _wire_messages(chat: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[Any]]:
    """Chat messages with each image replaced by its index, and the images in order."""
    messages, images = [], []
    for message in chat:
        content = []
        for part in message["content"]:
            if part["type"] == "image":
                content.append({"type": "image", "index": len(images)})
                images.append(part["image"])
            else:
                content.append(dict(part))
        messages.append({"role": message["role"], "content": content})
    return messages, images


# ------------------------------------------------------------------ request guard
def frame_problem(frame: Any, max_action_bytes: int, max_frame_bytes: int, *, action_path: Sequence[str]) -> Optional[dict[str, Any]]:
    """Why a request body or WebSocket frame is refused before the environment sees it (None: pass it on).

    ``action_path`` is where the reply sits in the JSON (``("data", "message")`` in a
    WebSocket step, ``("action", "message")`` in an HTTP step).
    """
    raw = frame if isinstance(frame, (bytes, bytearray)) else str(frame).encode("utf-8", "surrogatepass")
    if len(raw) > max_frame_bytes:
        return {"status": 413, "code": "PAYLOAD_TOO_LARGE", "message": f"the request is {len(raw)} bytes; at most {max_frame_bytes} are read"}
    if not raw.lstrip()[:1] == b"{":
        return {"status": 400, "code": "INVALID_JSON", "message": "a request must be a JSON object"}
    if len(raw) <= max_action_bytes:  # JSON text is never shorter than the UTF-8 of a string inside it
        return None
    try:
        value: Any = json.loads(raw)
    except ValueError:
        return None  # the server's own parser answers malformed JSON
    for key in action_path:
        value = value.get(key) if isinstance(value, dict) else None
    if isinstance(value, str):
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > max_action_bytes:
            return {"status": 413, "code": "ACTION_TOO_LARGE", "message": f"the reply is {size} bytes; this server accepts at most {max_action_bytes}"}
    return None


class RequestGuard:
    """ASGI middleware: refuses oversized or non-object requests and closes idle WebSocket sessions.

    Runs before OpenEnv's routes, so a refused request costs the environment nothing.
    """

    def __init__(self, app: Any, *, max_action_bytes: int, max_frame_bytes: int, idle_timeout_s: float) -> None:
        self.app = app
        self.max_action_bytes = max_action_bytes
        self.max_frame_bytes = max_frame_bytes
        self.idle_timeout_s = idle_timeout_s

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await self.app(scope, self._websocket_receive(receive, send), send)
        elif scope["type"] == "http" and scope.get("method") in ("POST", "PUT", "PATCH"):
            await self._http(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _websocket_receive(self, receive: Any, send: Any) -> Any:
        connected = False

        async def guarded() -> dict:
            nonlocal connected
            while True:
                if connected:
                    try:
                        message = await asyncio.wait_for(receive(), self.idle_timeout_s)
                    except asyncio.TimeoutError:
                        try:
                            await send({"type": "websocket.close", "code": 1001, "reason": f"idle for {self.idle_timeout_s:g} s"})
                        except Exception:  # noqa: BLE001  (the peer may be gone already)
                            pass
                        return {"type": "websocket.disconnect", "code": 1001}
                else:
                    message = await receive()
                if message["type"] == "websocket.connect":
                    connected = True
                if message["type"] != "websocket.receive":
                    return message
                frame = message.get("text") if message.get("text") is not None else message.get("bytes", b"")
                problem = frame_problem(frame, self.max_action_bytes, self.max_frame_bytes, action_path=("data", "message"))
                if problem is None:
                    return message
                await send({"type": "websocket.send", "text": json.dumps({"type": "error", "data": problem})})

        return guarded

    async def _http(self, scope: dict, receive: Any, send: Any) -> None:
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_frame_bytes:
            await _json_response(send, 413, {"detail": f"the request is {int(declared)} bytes; at most {self.max_frame_bytes} are read", "code": "PAYLOAD_TOO_LARGE"})
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_frame_bytes:
                await _json_response(send, 413, {"detail": f"the request is over {self.max_frame_bytes} bytes", "code": "PAYLOAD_TOO_LARGE"})
                return
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        if scope.get("path") == "/step":
            problem = frame_problem(body, self.max_action_bytes, self.max_frame_bytes, action_path=("action", "message"))
            if problem is not None and problem["status"] == 413:
                await _json_response(send, 413, {"detail": problem["message"], "code": problem["code"]})
                return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _json_response(send: Any, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------------- app
def build_app(settings: ServerSettings) -> FastAPI:
    """The FastAPI app: OpenEnv's routes (``/ws``, ``/reset``, ``/step``, ``/state``, ``/schema``, ``/health``), ``/sessions``, the guard."""
    shared = SharedResources(settings)
    server = HTTPEnvServer(
        functools.partial(HighResVQAEnvironment, shared),
        HighResVQAAction,
        HighResVQAObservation,
        concurrency_config=ConcurrencyConfig(max_concurrent_envs=settings.max_sessions, session_timeout=settings.session_timeout_s),
        env_name="HighResVQA-v0",
        state_cls=HighResVQAState,
    )
    app = FastAPI(title="mgpo/HighResVQA-v0 (OpenEnv)", docs_url="/docs", openapi_url="/openapi.json")
    server.register_routes(app)
    app.state.env_server = server
    app.state.shared = shared

    @app.get("/sessions", tags=["Health"])
    def sessions() -> dict[str, int]:
        """Open sessions and the most allowed."""
        return {"active": server.active_sessions, "max": server.max_concurrent_envs}

    def refuse(status: int) -> Any:
        async def handler(request: Request, error: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(error), "code": type(error).__name__}, status_code=status)

        return handler

    app.add_exception_handler(ActionTooLargeError, refuse(413))
    app.add_exception_handler(EpisodeFinishedError, refuse(409))
    for error in (ValueError, TypeError, DataError, InvalidActionError):
        app.add_exception_handler(error, refuse(400))
    app.add_middleware(
        RequestGuard, max_action_bytes=settings.max_action_bytes, max_frame_bytes=settings.max_frame_bytes, idle_timeout_s=settings.session_timeout_s
    )
    return app


def _uvicorn_config(app: FastAPI, settings: ServerSettings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_level=settings.log_level,
        ws_max_size=4 * settings.max_frame_bytes,  # larger frames are cut by uvicorn itself (close code 1009)
        ws_per_message_deflate=False,  # the payload is mostly JPEG/PNG in base64: deflate costs CPU and saves little
        timeout_graceful_shutdown=5,
    )


def _bound_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``(host, port)`` and already listening.

    uvicorn runs the app's startup (where ``serve`` prints the URL) before it starts serving
    the socket; listening from here on lets the kernel queue a client that connects in between,
    instead of refusing it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


class ServerThread:
    """The server in a background thread of this process (tests, notebooks); ``port=0`` picks a free port."""

    def __init__(self, settings: ServerSettings, *, start_timeout_s: float = 60.0) -> None:
        self.settings = settings
        self.start_timeout_s = start_timeout_s
        self.app = build_app(settings)
        self._socket = _bound_socket(settings.host, settings.port)
        self.port = self._socket.getsockname()[1]
        self._server = uvicorn.Server(_uvicorn_config(self.app, settings))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, name="mgpo-serve", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    @property
    def env_server(self) -> HTTPEnvServer:
        return self.app.state.env_server

    def start(self) -> "ServerThread":
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start within {self.start_timeout_s:g} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout_s)
        self._socket.close()

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve(settings: ServerSettings) -> None:
    """Run the server in this process until interrupted; prints its URL once it accepts connections."""
    app = build_app(settings)
    sock = _bound_socket(settings.host, settings.port)
    port = sock.getsockname()[1]
    shared: SharedResources = app.state.shared

    async def announce() -> None:
        print(
            f"mgpo serve: {ENV_ID} on http://{settings.host}:{port} (WebSocket ws://{settings.host}:{port}/ws); "
            f"dataset {settings.dataset!r} ({len(shared.dataset)} samples), up to {settings.max_sessions} sessions",
            flush=True,
        )

    app.router.on_startup.append(announce)
    uvicorn.Server(_uvicorn_config(app, settings)).run(sockets=[sock])


# ------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="synthetic", help="dataset spec, as in 'mgpo train' (e.g. 'vstar:/data/vstar')")
    parser.add_argument("--dataset-kwargs", type=_json_object, default={}, help="the dataset loader's keyword arguments, as JSON")
    parser.add_argument(
        "--env-kwargs", type=_json_object, default={}, help="HighResVQA-v0 keyword arguments, as JSON (protocol, min_pixels, max_pixels, box_frame, ...)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free port; the URL is printed)")
    parser.add_argument("--max-sessions", type=int, default=DEFAULT_MAX_SESSIONS, help="concurrent sessions (one per client environment)")
    parser.add_argument("--max-action-bytes", type=int, default=DEFAULT_MAX_ACTION_BYTES, help="longest reply accepted, in UTF-8 bytes")
    parser.add_argument(
        "--session-timeout", dest="session_timeout_s", type=float, default=DEFAULT_SESSION_TIMEOUT_S, help="close a session idle this many seconds"
    )
    parser.add_argument("--image-format", choices=IMAGE_FORMATS, default="jpeg", help="default image encoding (a client may ask for the other)")
    parser.add_argument("--jpeg-quality", type=int, default=DEFAULT_JPEG_QUALITY, help="JPEG quality of the images sent")
    parser.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"))


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    names = [f for f in ServerSettings.__dataclass_fields__ if hasattr(args, f)]
    return ServerSettings(**{name: getattr(args, name) for name in names})


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
        serve(settings)
    except (ValueError, TypeError, DataError, FileNotFoundError, OSError) as error:
        print(f"mgpo serve: {error}", file=sys.stderr)
        return 2
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="mgpo serve", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


if __name__ == "__main__":
    sys.exit(main())
