"""The company side of a FedLedger task: a Flower ClientApp, one per SuperNode (one per company).

It answers four kinds of message from the coordinator's ServerApp:

- ``query.hello``: which company this node is;
- ``train``: fetch the global model named by hash (checked against the ledger), train on this
  company's own data, and contribute the clipped, noised, encrypted update (fl.rounds.contribute);
- ``query.verify``: recompute the round's aggregate from the ledger's hashes and vote;
- ``query.decrypt``: give a partial decryption of the round's recorded aggregate, and only of it.

Node config (``flower-supernode --node-config``): ``home`` (the network home), ``company`` (a
wallet label), ``partition-id`` and ``num-partitions``; optional ``store`` (artifact directory).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from fedledger.crypto import KeyShare, load_key_share
from fedledger.errors import FedLedgerError
from fedledger.fl.company import CompanySession
from fedledger.fl.rounds import Description, RoundError, TaskPlan, contribute, decryption_share, model_from_bytes, verify
from fedledger.privacy import randomized_response

app = ClientApp()


@dataclass
class _Company:
    session: CompanySession
    plans: dict[str, TaskPlan]
    shares: dict[str, KeyShare]
    datasets: dict[tuple[str, str, int], Any]


_companies: dict[tuple[str, str], _Company] = {}


def _company(context: Context) -> _Company:
    home, name = str(context.node_config["home"]), str(context.node_config["company"])
    key = (home, name)
    if key not in _companies:
        store = context.node_config.get("store")
        session = CompanySession.open(home, name, store=str(store) if store else None)
        _companies[key] = _Company(session, {}, {}, {})
    return _companies[key]


def _plan(company: _Company, task_id: str) -> TaskPlan:
    if task_id not in company.plans:
        company.plans[task_id] = TaskPlan.load(company.session.ledger, company.session.store, task_id)
    return company.plans[task_id]


def _reply(message: Message, values: dict[str, Any]) -> Message:
    return Message(RecordDict({"result": ConfigRecord(values)}), reply_to=message)


def _config(message: Message) -> dict[str, Any]:
    return dict(message.content["config"])


def _global_model(company: _Company, plan: TaskPlan, round_number: int, model_sha256: str) -> np.ndarray:
    """The model the round starts from, fetched by hash and checked against the ledger's record."""
    if round_number == 1:
        expected = plan.task["model"]["initial_weights_sha256"]
    else:
        expected = company.session.ledger.get_round(plan.task_id, round_number - 1).get("model_sha256", "")
    if model_sha256 != expected:
        raise RoundError(f"the coordinator sent model {model_sha256[:16]}… for round {round_number}; "
                         f"the ledger says it starts from {expected[:16]}…")
    return model_from_bytes(company.session.store.get(model_sha256))


def _local_data(company: _Company, context: Context, description: Description, seed: int,
                partitioner: str, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    from fedledger.fl import task as tasks
    from fedledger.fl.data import partition_dirichlet, partition_iid

    key = (description.model, partitioner, seed)
    if key not in company.datasets:
        data_path = context.node_config.get("data-path")
        company.datasets[key] = tasks.load_dataset(description.model, data_path=str(data_path) if data_path else None,
                                                   seed=seed)
    dataset = company.datasets[key]
    part, parts = int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    if partitioner == "dirichlet":
        indices = partition_dirichlet(dataset.y_train, parts, alpha=alpha, seed=seed)[part]
    else:
        indices = partition_iid(len(dataset.y_train), parts, seed=seed)[part]
    return dataset.x_train[indices], dataset.y_train[indices]


@app.query("hello")
def hello(message: Message, context: Context) -> Message:
    company = _company(context)
    return _reply(message, {"company": company.session.name, "msp_id": company.session.enrollment.identity.msp_id})


@app.train()
def train(message: Message, context: Context) -> Message:
    # torch is imported here, not at module level: Flower starts a ClientApp process per
    # message, and the committee's verify and decrypt messages need no torch (~1.3 s to import).
    from fedledger.fl import task as tasks

    config = _config(message)
    company = _company(context)
    plan = _plan(company, str(config["task-id"]))
    round_number = int(config["round"])
    global_model = _global_model(company, plan, round_number, str(config["model-sha256"]))
    x, y = _local_data(company, context, plan.description, int(config["seed"]), str(config["partitioner"]),
                       float(config["alpha"]))
    label_epsilon = float(config.get("label-epsilon", 0.0))
    if label_epsilon > 0:
        # Paper 000's label noise: each label is epsilon-LDP before it ever meets the model.
        num_classes = company.datasets[(plan.description.model, str(config["partitioner"]), int(config["seed"]))].num_classes
        y = randomized_response(y, num_classes=num_classes, epsilon=label_epsilon)
    dp_sgd = None
    if float(config.get("dp-sgd-noise", 0.0)) > 0:
        dp_sgd = {"noise_multiplier": float(config["dp-sgd-noise"]), "max_grad_norm": float(config["dp-sgd-clip"])}
    model = tasks.build_model(plan.description.model)
    tasks.set_flat(model, global_model)
    trained = tasks.train_local(model, x, y, epochs=int(config["local-epochs"]), batch_size=int(config["batch-size"]),
                                lr=float(config["lr"]), seed=int(config["seed"]) * 1000 + round_number, dp_sgd=dp_sgd)
    update = tasks.get_flat(model).astype(np.float64) - global_model.astype(np.float64)
    started = time.perf_counter()
    receipt = contribute(plan, company.session.ledger, company.session.store, company=company.session.name,
                         round_number=round_number, update=update, samples=trained.samples,
                         compute_millis=int(trained.seconds * 1000))
    protect_seconds = time.perf_counter() - started
    return _reply(message, {"company": receipt.company, "artifact-sha256": receipt.artifact_sha256,
                            "size-bytes": receipt.size_bytes, "samples": receipt.samples, "tx-id": receipt.tx_id,
                            "train-seconds": trained.seconds, "loss": trained.loss,
                            "encrypt-and-ledger-seconds": protect_seconds,
                            "local-epsilon": float(trained.epsilon or 0.0)})


@app.query("verify")
def verify_round(message: Message, context: Context) -> Message:
    config = _config(message)
    company = _company(context)
    plan = _plan(company, str(config["task-id"]))
    valid, reason = verify(plan, company.session.ledger, company.session.store, round_number=int(config["round"]))
    return _reply(message, {"company": company.session.name, "valid": valid, "reason": reason})


@app.query("decrypt")
def decrypt(message: Message, context: Context) -> Message:
    config = _config(message)
    company = _company(context)
    plan = _plan(company, str(config["task-id"]))
    if plan.task_id not in company.shares:
        # The share lives in this company's own org's private data; only it can read it back.
        raw = company.session.ledger.read_key_share(plan.task_id)
        share = load_key_share(raw, plan.key)
        if share.index != plan.member_index(company.session.name):
            raise FedLedgerError(f"{company.session.name}'s key share has index {share.index}, "
                                 f"expected {plan.member_index(company.session.name)}")
        company.shares[plan.task_id] = share
    partial = decryption_share(plan, company.session.ledger, company.session.store, company.shares[plan.task_id],
                               round_number=int(config["round"]), aggregate_sha256=str(config["aggregate-sha256"]))
    return _reply(message, {"company": company.session.name, "partial": partial})
