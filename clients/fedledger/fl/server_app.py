"""The coordinator of a FedLedger task: a Flower ServerApp acting as the task's publisher and leader.

Per round it opens the round on the ledger, asks every participant's node to train and contribute,
aggregates the ciphertexts the ledger lists, asks the committee to verify and vote, collects t
partial decryptions of the recorded aggregate, updates the model and closes the round. It holds
the task's public key only: no key share, no plaintext update of any company.

Run config (``flwr run ... --run-config``): ``home``, ``coordinator`` (wallet label), ``task-id``,
``metrics-json``, ``local-epochs``, ``batch-size``, ``lr``, ``seed``, ``partitioner``, ``alpha``,
``round-timeout``, optional ``store``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from fedledger.fl import task as tasks
from fedledger.fl.company import CompanySession
from fedledger.fl.rounds import RoundError, TaskPlan, finish, lead, model_from_bytes, open_round

app = ServerApp()


def _say(text: str) -> None:
    print(f"[fedledger] {text}", file=sys.stderr, flush=True)


def _ask(grid: Grid, nodes: dict[int, str], message_type: str, config: dict[str, Any],
         timeout: float, *, enough: int | None = None) -> dict[str, dict[str, Any]]:
    """Send one message per node; return each answering company's result (errors are reported).

    Stops waiting once ``enough`` companies answered (a quorum, t partials), or once every node
    still owing an answer has left the federation: a company that crashed mid-round is reported
    missing instead of holding the round until the timeout.
    """
    messages = [Message(RecordDict({"config": ConfigRecord(config)}), dst_node_id=node, message_type=message_type)
                for node in nodes]
    owed = dict(zip(grid.push_messages(messages), nodes))
    results: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while owed and time.monotonic() < deadline:
        for reply in grid.pull_messages(list(owed)):
            node = owed.pop(reply.metadata.reply_to_message_id, reply.metadata.src_node_id)
            company = nodes.get(node, str(node))
            if reply.has_error():
                _say(f"{message_type} on {company} failed: {reply.error.reason}")
            else:
                results[company] = dict(reply.content["result"])
        if enough is not None and len(results) >= enough:
            break
        online = set(grid.get_node_ids())
        gone = [nodes[n] for n in owed.values() if n not in online]
        if owed and len(gone) == len(owed):
            _say(f"{message_type}: {', '.join(sorted(gone))} left the federation without answering")
            break
        time.sleep(0.2)
    for node in owed.values():
        if nodes[node] not in results:
            _say(f"{message_type}: no answer from {nodes[node]}")
    return results


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = dict(context.run_config)
    with CompanySession.open(str(cfg["home"]), str(cfg["coordinator"]),
                             store=str(cfg["store"]) if cfg.get("store") else None) as session:
        run(grid, session, cfg)


def _hello_map(grid: Grid, timeout: float) -> dict[int, str]:
    """Ask each connected node which company it is."""
    node_ids = list(grid.get_node_ids())
    messages = [Message(RecordDict({"config": ConfigRecord({})}), dst_node_id=n, message_type="query.hello")
                for n in node_ids]
    found: dict[int, str] = {}
    for reply in grid.send_and_receive(messages, timeout=timeout):
        if not reply.has_error():
            found[reply.metadata.src_node_id] = str(reply.content["result"]["company"])
    return found


def run(grid: Grid, session: CompanySession, cfg: dict[str, Any]) -> None:
    """Train the task to its last round (or its privacy budget), recording every step on the ledger."""
    ledger, store = session.ledger, session.store
    plan = TaskPlan.load(ledger, store, str(cfg["task-id"]))
    wanted = set(plan.participants) | set(plan.committee)
    timeout = float(cfg.get("round-timeout", 300))
    # SuperNodes register within seconds of starting; a company absent after a minute is absent.
    deadline = time.monotonic() + min(timeout, 60)
    nodes: dict[int, str] = {}
    while time.monotonic() < deadline and not wanted <= set(nodes.values()):
        nodes = _hello_map(grid, timeout=30)
        time.sleep(0.5)
    _say(f"task {plan.task_id}: nodes {sorted(nodes.values())}")
    if len(set(nodes.values()) & set(plan.participants)) < plan.task["min_participants"]:
        raise RoundError(f"only {sorted(nodes.values())} connected; task {plan.task_id} needs "
                         f"{plan.task['min_participants']} participants")
    dataset = tasks.load_dataset(plan.description.model, seed=int(cfg.get("seed", 0)))
    model_sha = plan.task["model"]["initial_weights_sha256"]
    global_model = model_from_bytes(store.get(model_sha))
    evaluator = tasks.build_model(plan.description.model)
    tasks.set_flat(evaluator, global_model)
    loss, accuracy = tasks.evaluate(evaluator, dataset.x_test, dataset.y_test)
    metrics: list[dict[str, Any]] = [{"round": 0, "accuracy": accuracy, "loss": loss, "epsilon": 0.0,
                                      "model_sha256": model_sha}]
    _say(f"round 0: accuracy {accuracy:.4f}")
    metrics_json = Path(str(cfg["metrics-json"])) if cfg.get("metrics-json") else None

    def save() -> None:
        if metrics_json is not None:
            metrics_json.write_text(json.dumps({"task_id": plan.task_id, "rounds": metrics}, indent=2, sort_keys=True))

    save()
    try:
        _rounds(grid, plan, ledger, store, cfg, nodes, metrics, save, dataset, evaluator, global_model, model_sha,
                timeout)
    except Exception as err:
        # The run's outcome is read from the metrics file: a failure must be in it, with its cause.
        metrics.append({"error": f"{type(err).__name__}: {err}"})
        save()
        raise


def _rounds(grid: Grid, plan: TaskPlan, ledger: Any, store: Any, cfg: dict[str, Any], nodes: dict[int, str],
            metrics: list[dict[str, Any]], save: Any, dataset: Any, evaluator: Any, global_model: Any,
            model_sha: str, timeout: float) -> None:
    budget = float(plan.task["dp"]["epsilon_budget"])
    participants = {n: c for n, c in nodes.items() if c in plan.participants}
    committee = {n: c for n, c in nodes.items() if c in plan.committee}
    for n in range(1, plan.task["rounds"] + 1):
        epsilon = plan.epsilon_after(n)
        if epsilon > budget:
            _say(f"stopping before round {n}: epsilon would reach {epsilon:.3f} > budget {budget}")
            metrics.append({"stopped": f"round {n} would spend epsilon {epsilon:.3f} > budget {budget}"})
            save()
            break
        times: dict[str, float] = {}
        t = time.perf_counter()
        tx_open = open_round(plan, ledger, n)
        common = {"task-id": plan.task_id, "round": n}
        train_config = {**common, "model-sha256": model_sha, "seed": int(cfg.get("seed", 0)),
                        "local-epochs": int(cfg.get("local-epochs", 1)), "batch-size": int(cfg.get("batch-size", 32)),
                        "lr": float(cfg.get("lr", 0.05)), "partitioner": str(cfg.get("partitioner", "iid")),
                        "alpha": float(cfg.get("alpha", 0.5)), "label-epsilon": float(cfg.get("label-epsilon", 0.0)),
                        "dp-sgd-noise": float(cfg.get("dp-sgd-noise", 0.0)),
                        "dp-sgd-clip": float(cfg.get("dp-sgd-clip", 1.0))}
        times["ledger_open"] = time.perf_counter() - t
        t = time.perf_counter()
        trained = _ask(grid, participants, "train", train_config, timeout)
        times["train_and_encrypt_wall"] = time.perf_counter() - t
        t = time.perf_counter()
        receipt = lead(plan, ledger, store, round_number=n)
        times["aggregate"] = time.perf_counter() - t
        missing = sorted(set(plan.participants) - set(receipt.included))
        t = time.perf_counter()
        # Every member is asked to vote and waited for: a missed vote costs the member stake.
        votes = _ask(grid, committee, "query.verify", common, timeout)
        times["verify"] = time.perf_counter() - t
        record = ledger.get_round(plan.task_id, n)
        if record["status"] != "verified":
            reason = f"the committee did not verify the aggregate: {votes}"
            ledger.fail_round(plan.task_id, n, reason=reason[:500])
            raise RoundError(f"round {n}: {reason}")
        t = time.perf_counter()
        shares = _ask(grid, committee, "query.decrypt", {**common, "aggregate-sha256": receipt.aggregate_sha256},
                      timeout, enough=plan.key.threshold)
        partials = [bytes(r["partial"]) for r in shares.values()]
        result = finish(plan, ledger, store, round_number=n, global_model=global_model, partials=partials)
        times["decrypt_and_close"] = time.perf_counter() - t
        global_model, model_sha = result.model, result.model_sha256
        tasks.set_flat(evaluator, global_model)
        loss, accuracy = tasks.evaluate(evaluator, dataset.x_test, dataset.y_test)
        entry = {"round": n, "accuracy": accuracy, "loss": loss, "epsilon": epsilon, "model_sha256": model_sha,
                 "included": list(receipt.included), "missing": missing, "aggregate_sha256": receipt.aggregate_sha256,
                 "votes": {c: bool(v["valid"]) for c, v in votes.items()},
                 "decrypted_by": sorted(shares), "seconds": times,
                 "client_seconds": {c: {"train": float(r["train-seconds"]),
                                        "encrypt_and_ledger": float(r["encrypt-and-ledger-seconds"])}
                                    for c, r in trained.items()},
                 "tx_ids": {"open": tx_open, "aggregate": receipt.tx_id, "close": result.tx_id,
                            **{f"update:{c}": str(r["tx-id"]) for c, r in trained.items()}}}
        metrics.append(entry)
        _say(f"round {n}: accuracy {accuracy:.4f} loss {loss:.4f} epsilon {epsilon:.3f} "
             f"updates {len(receipt.included)}{' missing ' + ','.join(missing) if missing else ''}")
        save()
