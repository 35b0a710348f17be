"""A company's SuperNode with its ClientApp kept warm: ``python -m fedledger.node.supernode <flags>``.

Flower 1.42's default isolation starts a new ``flwr-clientapp`` process for every message: each one
imports torch and scikit-learn, reopens the company's Fabric connection and reloads the task plan,
its key share and its data, several seconds on a small machine, five times a round. Flower's
``--isolation process`` mode leaves running the ClientApp to a process outside the SuperNode; here
that is a thread of the SuperNode's own process, which keeps the app, its imports and its caches
(``fedledger.fl.client_app``'s sessions, plans, shares and datasets) from one message to the next.

The thread takes tasks from the SuperNode's runtime API on the node's own loopback, as Flower's
SuperExec would, and runs the ClientApp of the FedLedger installed on this node: not code shipped
in the run's app bundle (the coordinator's copy), which it only checks by name.

Flower's fixed polling waits and object-pull backoffs are shortened in the SuperNode's loop and in
the worker's pulls, and the loop wakes the worker when it has stored a message, so an idle worker
does not poll (:mod:`fedledger.fl.flower_waits`).
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

FAB_ID = "fedledger/fedledger"
# How long the worker waits for the SuperNode's word that a message is stored before asking the
# runtime API for a task anyway.
TASK_POLL = 0.5

_log = logging.getLogger("fedledger.node.supernode")


class ClientAppWorker(threading.Thread):
    """Runs each ClientApp task of one SuperNode in this process, one at a time, app loaded once."""

    def __init__(self, runtime_address: str, load_app: Callable[[], Any], *, poll: float = TASK_POLL) -> None:
        super().__init__(name="clientapp-worker", daemon=True)
        self.runtime_address = runtime_address
        self._load_app = load_app
        self.poll = poll
        # Set by the SuperNode's loop when it has stored a message (flower_waits.signal_stored_messages).
        self.stored = threading.Event()

    def _client(self, *interceptors: Any) -> Any:
        from flwr.supercore.retry import make_simple_http_retry_invoker
        from flwr.supercore.runtime import RuntimeHttpClient

        return RuntimeHttpClient.from_server_address(server_address=self.runtime_address, insecure=True,
                                                     root_certificates=None, interceptors=list(interceptors),
                                                     retry_invoker=make_simple_http_retry_invoker())

    def run(self) -> None:
        from flwr.proto.runtime_pb2 import AcquireTaskRequest  # pylint: disable=no-name-in-module
        from flwr.supercore.constant import TaskType
        from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor

        app = self._load_app()
        tasks = self._client(RuntimeVersionHttpInterceptor(component_name="SuperExec"))
        request = AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP])
        while True:
            try:
                acquired = tasks.AcquireTask(request)
            except httpx.HTTPError as err:  # the SuperNode's runtime API is not up yet, or restarting
                _log.debug("no task from %s: %s", self.runtime_address, err)
                time.sleep(0.5)
                continue
            if acquired.HasField("task") and acquired.token:
                self.serve(app, acquired.token)
            else:
                # Woken the moment a message is stored; set after the empty answer, it returns at once.
                self.stored.wait(self.poll)
                self.stored.clear()

    def serve(self, app: Any, token: str) -> None:
        """Run one task: pull its message, answer it with ``app``, push the reply and the context."""
        from flwr.app import Error, Message
        from flwr.common.constant import ErrorCode, SubStatus
        from flwr.supercore.heartbeat import HeartbeatSender
        from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor, RuntimeVersionHttpInterceptor
        from flwr.supernode.runtime.run_clientapp import pull_task_input, push_message, push_task_output

        client = self._client(RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"),
                              RuntimeTokenHttpInterceptor(token))
        heartbeat = HeartbeatSender(lambda: _heartbeat(client))
        heartbeat.start()
        message = reply = context = None
        status, details = SubStatus.FAILED, "the ClientApp task failed"
        started = time.perf_counter()
        answered = started
        try:
            message, context, run, _fab = pull_task_input(client)
            if run.fab_id != FAB_ID:
                raise RuntimeError(f"this node runs only the {FAB_ID} ClientApp, not {run.fab_id!r}")
            pulled = time.perf_counter()
            reply = app(message=message, context=context)
            answered = time.perf_counter()
            status, details = SubStatus.COMPLETED, ""
            _log.info("%s: pulled in %.3f s, answered in %.3f s", message.metadata.message_type,
                      pulled - started, answered - pulled)
        except Exception as err:  # noqa: BLE001 - becomes the reply's error, as flwr-clientapp does
            _log.error("the ClientApp raised %s: %s", type(err).__name__, err)
            details = f"{type(err).__name__}: {err}"
            if message is not None:
                reply = Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=details), reply_to=message)
        finally:
            try:
                if reply is not None and context is not None:
                    push_message(client, reply, context)
                push_task_output(client=client, context=context, sub_status=status, details=details)
                _log.info("reply pushed in %.3f s", time.perf_counter() - answered)
            finally:
                heartbeat.stop()
                client.close()


def _heartbeat(client: Any) -> bool:
    """One task heartbeat; False (retried later) on a transport error, never a signal to the process."""
    from flwr.proto.runtime_pb2 import SendTaskHeartbeatRequest  # pylint: disable=no-name-in-module

    try:
        return bool(client.SendTaskHeartbeat(SendTaskHeartbeatRequest()).success)
    except httpx.HTTPError:
        return False


def _load_fedledger_app() -> Any:
    # Loaded (torch, scikit-learn and all) before the first task arrives, not while it waits.
    from fedledger.fl import client_app

    client_app.warm_up()
    return client_app.app


def main(argv: Sequence[str] | None = None) -> None:
    """Start the warm ClientApp worker, then run Flower's SuperNode in ``process`` isolation."""
    from flwr.supernode import start_client_internal
    from flwr.supernode.cli.flower_supernode import flower_supernode
    from flwr.supernode.runtime import run_clientapp

    from fedledger.fl.flower_waits import shorten_waits, signal_stored_messages

    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9094)
    known, _ = parser.parse_known_args(args)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    _log.addHandler(handler)
    _log.setLevel(logging.INFO)
    shorten_waits(start_client_internal)
    shorten_waits(run_clientapp)
    worker = ClientAppWorker(f"{known.host}:{known.port}", _load_fedledger_app)
    if not signal_stored_messages(start_client_internal, worker.stored):
        _log.warning("Flower's SuperNode loop has moved: the worker polls for tasks every %.1f s", worker.poll)
    worker.start()
    sys.argv = ["flower-supernode", *args, "--isolation", "process"]
    flower_supernode()


if __name__ == "__main__":
    main()
