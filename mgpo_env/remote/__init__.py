"""``mgpo/HighResVQA-v0`` over the network, on Meta's and Hugging Face's OpenEnv.

* :mod:`mgpo_env.remote.server`: an OpenEnv server (FastAPI, one WebSocket session per
  episode player) whose environment options are fixed when it starts
  (``mgpo serve`` or ``python -m mgpo_env.remote``);
* :mod:`mgpo_env.remote.client`: :class:`~mgpo_env.remote.client.HighResVQAClient`, an
  OpenEnv ``EnvClient``, and :class:`~mgpo_env.remote.client.RemoteHighResVQAEnv`, a
  ``gymnasium.Env`` over it that the trainer's rollout engine plays like a local one;
* :mod:`mgpo_env.remote.wire`: the messages both sides exchange.

Needs the ``serve`` extra (``pip install 'mgpo[serve]'``). Importing this package imports
nothing from OpenEnv; its modules do.
"""
